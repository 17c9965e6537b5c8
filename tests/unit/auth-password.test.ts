import { scrypt } from 'node:crypto';

import { describe, expect, it, vi } from 'vitest';

import {
  InvalidPasswordHashError,
  MAX_PASSWORD_BYTES,
  hashPassword,
  needsRehash,
  verifyDummyPassword,
  verifyPassword,
} from '../../src/auth/password.js';
import { DomainError } from '../../src/domain/errors.js';

// The wrapper calls the real scrypt and records each derivation's arguments.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, scrypt: vi.fn(actual.scrypt) };
});

// N = 2^14 keeps each hash at a few milliseconds. One test covers the default 17.
const FAST = { log2N: 14 };

const HASH_FORMAT = /^scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{43}\$[A-Za-z0-9+/]{86}$/;

describe('hashPassword', () => {
  it('round trips', async () => {
    const stored = await hashPassword('correct horse battery staple', FAST);

    expect(stored).toMatch(HASH_FORMAT);
    expect(await verifyPassword('correct horse battery staple', stored)).toBe(true);
  });

  it('salts every hash', async () => {
    const first = await hashPassword('same password', FAST);
    const second = await hashPassword('same password', FAST);

    expect(first).not.toBe(second);
    expect(await verifyPassword('same password', second)).toBe(true);
  });

  it('works at default cost 17', async () => {
    // 128 MiB of scrypt memory: fails unless maxmem is raised above Node's 32 MiB default.
    const stored = await hashPassword('strong default', { log2N: 17 });

    expect(stored.startsWith('scrypt$ln=17,r=8,p=1$')).toBe(true);
    expect(await verifyPassword('strong default', stored)).toBe(true);
    expect(await verifyPassword('strong defaulT', stored)).toBe(false);
  });

  it('rejects empty password', async () => {
    const error = await hashPassword('', FAST).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('BAD_USER_INPUT');
    expect((error as DomainError).reason).toBe('INVALID_PASSWORD');
  });

  it('rejects oversized password', async () => {
    const error = await hashPassword('a'.repeat(MAX_PASSWORD_BYTES + 1), FAST).catch(
      (caught: unknown) => caught,
    );

    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('BAD_USER_INPUT');
    expect((error as DomainError).details).toMatchObject({ max: MAX_PASSWORD_BYTES });
  });

  it.each([13, 21, 16.5])('rejects log2N %s', async (log2N) => {
    await expect(hashPassword('password', { log2N })).rejects.toThrow(RangeError);
  });
});

describe('verifyPassword', () => {
  it('rejects wrong password', async () => {
    const stored = await hashPassword('right', FAST);

    expect(await verifyPassword('wrong', stored)).toBe(false);
    expect(await verifyPassword('Right', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('matches NFC and NFD spellings', async () => {
    const composed = 'caf\u00e9';
    const decomposed = 'cafe\u0301';
    const stored = await hashPassword(composed, FAST);

    expect(await verifyPassword(decomposed, stored)).toBe(true);
  });

  it('rejects oversized candidate', async () => {
    const stored = await hashPassword('right', FAST);

    expect(await verifyPassword('a'.repeat(MAX_PASSWORD_BYTES + 1), stored)).toBe(false);
  });

  const SALT = 'A'.repeat(43);
  const KEY = 'A'.repeat(86);

  it.each([
    ['empty', ''],
    ['other scheme', `bcrypt$ln=14,r=8,p=1$${SALT}$${KEY}`],
    ['missing key', `scrypt$ln=14,r=8,p=1$${SALT}`],
    ['extra part', `scrypt$ln=14,r=8,p=1$${SALT}$${KEY}$${KEY}`],
    ['parameters reordered', `scrypt$r=8,ln=14,p=1$${SALT}$${KEY}`],
    ['cost too low', `scrypt$ln=10,r=8,p=1$${SALT}$${KEY}`],
    ['cost too high', `scrypt$ln=30,r=8,p=1$${SALT}$${KEY}`],
    ['block size zero', `scrypt$ln=14,r=0,p=1$${SALT}$${KEY}`],
    ['block size too high', `scrypt$ln=14,r=64,p=1$${SALT}$${KEY}`],
    ['parallelization too high', `scrypt$ln=14,r=8,p=9$${SALT}$${KEY}`],
    ['memory too high', `scrypt$ln=20,r=16,p=1$${SALT}$${KEY}`],
    ['salt not base64', `scrypt$ln=14,r=8,p=1$${'!'.repeat(43)}$${KEY}`],
    ['salt too short', `scrypt$ln=14,r=8,p=1$AAAA$${KEY}`],
    ['key too short', `scrypt$ln=14,r=8,p=1$${SALT}$AAAA`],
    ['salt with padding', `scrypt$ln=14,r=8,p=1$${SALT}=$${KEY}`],
    ['non-canonical base64', `scrypt$ln=14,r=8,p=1$${'A'.repeat(42)}B$${KEY}`],
    ['trailing newline', `scrypt$ln=14,r=8,p=1$${SALT}$${KEY}\n`],
  ])('rejects malformed hash: %s', async (_case, stored) => {
    const error = await verifyPassword('password', stored).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(InvalidPasswordHashError);
    if (stored !== '') {
      expect((error as Error).message).not.toContain(stored);
    }
  });
});

describe('verifyDummyPassword', () => {
  it('always returns false', async () => {
    expect(await verifyDummyPassword('anything', FAST)).toBe(false);
    expect(await verifyDummyPassword('', FAST)).toBe(false);
  });

  it('runs the same scrypt work as a verification', async () => {
    const options = { log2N: 15 };
    const stored = await hashPassword('password', options);
    // The first call also hashes the dummy password, so only later calls count.
    await verifyDummyPassword('warm-up', options);

    const realDerivations = await recordDerivations(() => verifyPassword('guess', stored));
    const dummyDerivations = await recordDerivations(() => verifyDummyPassword('guess', options));

    expect(realDerivations).toHaveLength(1);
    expect(realDerivations[0]?.scryptOptions).toMatchObject({ N: 2 ** 15, r: 8, p: 1 });
    expect(dummyDerivations).toEqual(realDerivations);
  });
});

/** Runs `action` and returns the sizes and options of each scrypt call it made. */
async function recordDerivations(action: () => Promise<unknown>) {
  const scryptSpy = vi.mocked(scrypt);
  scryptSpy.mockClear();
  await action();
  return scryptSpy.mock.calls.map(([password, salt, keyBytes, scryptOptions]) => ({
    passwordBytes: Buffer.byteLength(password as Buffer),
    saltBytes: Buffer.byteLength(salt as Buffer),
    keyBytes,
    scryptOptions,
  }));
}

describe('needsRehash', () => {
  it('detects changed cost', async () => {
    const stored = await hashPassword('password', FAST);

    expect(needsRehash(stored, FAST)).toBe(false);
    expect(needsRehash(stored, { log2N: 15 })).toBe(true);
  });
});
