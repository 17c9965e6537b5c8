/**
 * Password hashing with scrypt (RFC 7914) from node:crypto.
 *
 * A stored hash describes itself, so hashes made with older parameters still
 * verify after PASSWORD_SCRYPT_LOG2_N changes:
 *
 *     scrypt$ln=17,r=8,p=1$<salt, base64>$<derived key, base64>
 *
 * `ln` is log2 of the cost N. The salt is 32 random bytes and the derived key
 * 64 bytes. Passwords are normalised to Unicode NFC first, so the composed and
 * decomposed spellings of one password match.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

import { badInput } from '../domain/errors.js';

export interface PasswordHashOptions {
  /** log2 of the scrypt cost N. 17 is the minimum in the OWASP Password Storage Cheat Sheet. */
  log2N: number;
}

/** Maximum password length in UTF-8 bytes, which bounds the hashing work per request. */
export const MAX_PASSWORD_BYTES = 1024;

const SCHEME = 'scrypt';
const BLOCK_SIZE = 8;
const PARALLELIZATION = 1;
const SALT_BYTES = 32;
const KEY_BYTES = 64;

// Bounds for parameters read from stored hashes. A corrupted or planted hash
// must not make one login allocate gigabytes or run for minutes.
const MIN_LOG2_N = 14;
const MAX_LOG2_N = 20;
const MAX_BLOCK_SIZE = 16;
const MAX_PARALLELIZATION = 4;
// The strongest hash this module creates (ln=20, r=8, p=1) needs about 1 GiB.
const MAX_MEMORY_BYTES = memoryBytes(MAX_LOG2_N, BLOCK_SIZE, PARALLELIZATION);
const MIN_SALT_BYTES = 16;
const MAX_SALT_BYTES = 64;
const MIN_KEY_BYTES = 32;
const MAX_KEY_BYTES = 128;

/** Thrown when a stored password hash cannot be parsed or has parameters out of bounds. */
export class InvalidPasswordHashError extends Error {
  constructor(problem: string) {
    // The message never includes the stored string, because it is a secret too.
    super(`Invalid stored password hash: ${problem}.`);
    this.name = 'InvalidPasswordHashError';
  }
}

interface ParsedHash {
  log2N: number;
  blockSize: number;
  parallelization: number;
  salt: Buffer;
  key: Buffer;
}

/**
 * Hashes a password into the self-describing format above.
 *
 * @throws DomainError BAD_USER_INPUT when the password is empty or longer than
 *   MAX_PASSWORD_BYTES.
 */
export async function hashPassword(plain: string, options: PasswordHashOptions): Promise<string> {
  const password = normalizePassword(plain);
  if (password.length === 0) {
    throw badInput('INVALID_PASSWORD', 'The password is empty. Choose a non-empty password.');
  }
  if (password.length > MAX_PASSWORD_BYTES) {
    throw badInput(
      'INVALID_PASSWORD',
      `The password is ${password.length} bytes long, above the maximum of ${MAX_PASSWORD_BYTES} bytes.`,
      { value: password.length, max: MAX_PASSWORD_BYTES },
    );
  }
  checkLog2N(options.log2N);

  const parsed: ParsedHash = {
    log2N: options.log2N,
    blockSize: BLOCK_SIZE,
    parallelization: PARALLELIZATION,
    salt: randomBytes(SALT_BYTES),
    key: Buffer.alloc(0),
  };
  parsed.key = await deriveKey(password, parsed, KEY_BYTES);
  return formatHash(parsed);
}

/**
 * Checks a password against a stored hash, using the parameters in the hash
 * and a constant-time comparison. A password longer than MAX_PASSWORD_BYTES
 * never matches.
 *
 * @throws InvalidPasswordHashError when `stored` is malformed. That means the
 *   stored data is corrupt, which the caller should log, not report as a
 *   wrong password.
 */
export async function verifyPassword(plain: string, stored: string): Promise<boolean> {
  const parsed = parseHash(stored);
  const password = normalizePassword(plain);
  if (password.length > MAX_PASSWORD_BYTES) {
    return false;
  }

  const candidate = await deriveKey(password, parsed, parsed.key.length);
  return timingSafeEqual(candidate, parsed.key);
}

const dummyHashes = new Map<number, Promise<string>>();

/**
 * Runs the same scrypt work as `verifyPassword` against a fixed dummy hash and
 * returns false. Call it when the username is unknown, so the response time
 * does not reveal whether the user exists.
 */
export async function verifyDummyPassword(
  plain: string,
  options: PasswordHashOptions,
): Promise<false> {
  let dummy = dummyHashes.get(options.log2N);
  if (dummy === undefined) {
    dummy = hashPassword(randomBytes(16).toString('hex'), options);
    dummyHashes.set(options.log2N, dummy);
  }
  await verifyPassword(plain, await dummy);
  return false;
}

/** Tells whether a stored hash uses other parameters than new hashes would, so it should be replaced at the next login. */
export function needsRehash(stored: string, options: PasswordHashOptions): boolean {
  const parsed = parseHash(stored);
  return (
    parsed.log2N !== options.log2N ||
    parsed.blockSize !== BLOCK_SIZE ||
    parsed.parallelization !== PARALLELIZATION ||
    parsed.salt.length !== SALT_BYTES ||
    parsed.key.length !== KEY_BYTES
  );
}

function normalizePassword(plain: string): Buffer {
  return Buffer.from(plain.normalize('NFC'), 'utf8');
}

function checkLog2N(log2N: number): void {
  if (!Number.isInteger(log2N) || log2N < MIN_LOG2_N || log2N > MAX_LOG2_N) {
    throw new RangeError(
      `scrypt log2N is ${log2N}, but it must be an integer from ${MIN_LOG2_N} to ${MAX_LOG2_N}.`,
    );
  }
}

function formatHash(parsed: ParsedHash): string {
  const parameters = `ln=${parsed.log2N},r=${parsed.blockSize},p=${parsed.parallelization}`;
  const salt = parsed.salt.toString('base64').replace(/=+$/, '');
  const key = parsed.key.toString('base64').replace(/=+$/, '');
  return `${SCHEME}$${parameters}$${salt}$${key}`;
}

const HASH_PATTERN = /^scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function parseHash(stored: string): ParsedHash {
  const match = HASH_PATTERN.exec(stored);
  if (match === null) {
    throw new InvalidPasswordHashError('it does not have the form scrypt$ln=<n>,r=<n>,p=<n>$<salt>$<key>');
  }

  const [, log2NText, blockSizeText, parallelizationText, saltText, keyText] = match as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const log2N = Number(log2NText);
  const blockSize = Number(blockSizeText);
  const parallelization = Number(parallelizationText);

  if (log2N < MIN_LOG2_N || log2N > MAX_LOG2_N) {
    throw new InvalidPasswordHashError(`ln is ${log2N}, outside ${MIN_LOG2_N}..${MAX_LOG2_N}`);
  }
  if (blockSize < 1 || blockSize > MAX_BLOCK_SIZE) {
    throw new InvalidPasswordHashError(`r is ${blockSize}, outside 1..${MAX_BLOCK_SIZE}`);
  }
  if (parallelization < 1 || parallelization > MAX_PARALLELIZATION) {
    throw new InvalidPasswordHashError(`p is ${parallelization}, outside 1..${MAX_PARALLELIZATION}`);
  }
  if (memoryBytes(log2N, blockSize, parallelization) > MAX_MEMORY_BYTES) {
    throw new InvalidPasswordHashError(`ln=${log2N}, r=${blockSize}, p=${parallelization} need more than ${MAX_MEMORY_BYTES} bytes`);
  }

  const salt = decodeBase64(saltText);
  const key = decodeBase64(keyText);
  if (salt === null || salt.length < MIN_SALT_BYTES || salt.length > MAX_SALT_BYTES) {
    throw new InvalidPasswordHashError(`the salt must be ${MIN_SALT_BYTES} to ${MAX_SALT_BYTES} bytes of base64`);
  }
  if (key === null || key.length < MIN_KEY_BYTES || key.length > MAX_KEY_BYTES) {
    throw new InvalidPasswordHashError(`the key must be ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} bytes of base64`);
  }

  return { log2N, blockSize, parallelization, salt, key };
}

/**
 * Decodes unpadded standard base64, or returns null when the text is not the
 * canonical encoding of its bytes (Buffer.from silently skips invalid input).
 */
function decodeBase64(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'base64');
  const canonical = bytes.toString('base64').replace(/=+$/, '');
  return canonical === text ? bytes : null;
}

/**
 * Estimates the memory that OpenSSL's scrypt allocates: the V array of
 * 128 * r * (N + 2) bytes and the B array of 128 * r * p bytes.
 */
function memoryBytes(log2N: number, blockSize: number, parallelization: number): number {
  return 128 * blockSize * (2 ** log2N + 2 + parallelization);
}

function deriveKey(password: Buffer, parsed: ParsedHash, keyBytes: number): Promise<Buffer> {
  const options: ScryptOptions = {
    N: 2 ** parsed.log2N,
    r: parsed.blockSize,
    p: parsed.parallelization,
    // The default maxmem of Node 20 is 32 MiB, below the 128 MiB that
    // N = 2^17, r = 8 needs. Add 1 MiB of headroom over the estimate.
    maxmem: memoryBytes(parsed.log2N, parsed.blockSize, parsed.parallelization) + 2 ** 20,
  };

  return new Promise((resolve, reject) => {
    scrypt(password, parsed.salt, keyBytes, options, (error, derivedKey) => {
      if (error !== null) {
        reject(error);
      } else {
        resolve(derivedKey);
      }
    });
  });
}
