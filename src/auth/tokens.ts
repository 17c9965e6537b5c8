/**
 * Issue and verification of access tokens: JWTs signed with HS256 (HMAC with
 * SHA-256) through jose.
 */
import { randomUUID, webcrypto } from 'node:crypto';

import { jwtVerify, SignJWT, errors as joseErrors } from 'jose';
import type { Logger } from 'pino';

import { DomainError } from '../domain/errors.js';
import { isRole, type Role } from './viewer.js';

/** Maximum token length that `verify` parses. Tokens issued here are about 330 characters long. */
export const MAX_TOKEN_LENGTH = 4096;

const ALGORITHM = 'HS256';
const MIN_SECRET_BYTES = 32;

/**
 * Returns whether `segment` is the one base64url text of its bytes. Decoders
 * ignore the unused low bits of the last character, so several texts give
 * the same bytes. Accepting only the signer's text gives each token one spelling.
 */
function isCanonicalBase64url(segment: string): boolean {
  return Buffer.from(segment, 'base64url').toString('base64url') === segment;
}

export interface TokenServiceOptions {
  /** HMAC key, at least 32 bytes. A string is used as its UTF-8 bytes. */
  secret: string | Uint8Array;
  issuer: string;
  audience: string;
  ttlSeconds: number;
  /** Allowed difference between the clocks of issuer and verifier when checking `exp` and `iat`. */
  clockToleranceSeconds: number;
  /** Receives the precise reason of each rejected token, at debug level. */
  logger: Logger;
  /** Current time in ms since the epoch. Tests replace it. */
  now?: () => number;
}

export interface IssuedToken {
  token: string;
  expiresAt: Date;
}

/**
 * Claims of a verified token.
 *
 * The role is informational. It is the role at issue time and may be out of
 * date, so the server must read the user's current role from the database
 * before authorizing anything.
 */
export interface TokenClaims {
  userId: string;
  role: Role;
  /**
   * When the user logged in with a password, in seconds since the epoch: the
   * `auth_time` claim, which renewed tokens carry over, or `iat` for a token
   * without one.
   */
  authTime: number;
  /** The account's token version when the token was issued: the `token_version` claim, or 0 for a token without one. */
  tokenVersion: number;
}

export interface TokenService {
  /**
   * Signs a token for `user`. `authTime` carries the login time of a renewed
   * token over (now by default), and the token expires at `notAfter` (ms) if
   * that comes before the end of its usual lifetime. The token carries the
   * account's `tokenVersion` (0 by default).
   */
  issue(user: { id: string; role: Role; tokenVersion?: number }, options?: { authTime?: number; notAfter?: number }): Promise<IssuedToken>;
  /** @throws DomainError UNAUTHENTICATED with reason `INVALID_TOKEN`, for every kind of bad token. */
  verify(token: string): Promise<TokenClaims>;
}

export function createTokenService(options: TokenServiceOptions): TokenService {
  const key =
    typeof options.secret === 'string' ? new TextEncoder().encode(options.secret) : options.secret;
  if (key.byteLength < MIN_SECRET_BYTES) {
    throw new RangeError(
      `The JWT secret is ${key.byteLength} bytes long, but it must be at least ${MIN_SECRET_BYTES} bytes.`,
    );
  }

  const { issuer, audience, ttlSeconds, clockToleranceSeconds, logger } = options;
  const now = options.now ?? Date.now;
  // Imported once, because jose imports raw key bytes again for every token
  // it checks. That import took about a third of each check's CPU time in a
  // loop of 5,000 checks on a 2-core AMD EPYC host. A failed import is not
  // kept, so the next call tries again.
  let imported: Promise<webcrypto.CryptoKey> | undefined;
  const hmacKey = (): Promise<webcrypto.CryptoKey> =>
    (imported ??= webcrypto.subtle
      .importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
      .catch((error: unknown) => {
        imported = undefined;
        throw error;
      }));

  async function issue(
    user: { id: string; role: Role; tokenVersion?: number },
    issueOptions: { authTime?: number; notAfter?: number } = {},
  ): Promise<IssuedToken> {
    const issuedAtSeconds = Math.floor(now() / 1000);
    const cap = issueOptions.notAfter === undefined ? Infinity : Math.floor(issueOptions.notAfter / 1000);
    const expiresAtSeconds = Math.min(issuedAtSeconds + ttlSeconds, cap);

    const token = await new SignJWT({
      role: user.role,
      // Capped at iat, which verify requires, should this process's clock lag the one that logged the user in.
      auth_time: Math.min(issueOptions.authTime ?? issuedAtSeconds, issuedAtSeconds),
      token_version: user.tokenVersion ?? 0,
    })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt(issuedAtSeconds)
      .setExpirationTime(expiresAtSeconds)
      .setJti(randomUUID())
      .sign(await hmacKey());

    return { token, expiresAt: new Date(expiresAtSeconds * 1000) };
  }

  async function verify(token: string): Promise<TokenClaims> {
    // Checked before parsing, so an oversized header costs no base64 or JSON work.
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) {
      throw rejectToken(logger, `token is longer than ${MAX_TOKEN_LENGTH} characters or not a string`);
    }

    const nonCanonical = token.split('.').findIndex((segment) => !isCanonicalBase64url(segment));
    if (nonCanonical !== -1) {
      throw rejectToken(logger, `segment ${nonCanonical + 1} is not canonical base64url`);
    }

    // Imported outside the try below, because a key that cannot be imported is a server fault, not a bad token.
    const verifyKey = await hmacKey();
    let payload: Record<string, unknown>;
    try {
      const result = await jwtVerify(token, verifyKey, {
        // Pinning the algorithm rejects `alg: none`, other HMAC sizes and
        // public-key algorithms, regardless of the `alg` header.
        algorithms: [ALGORITHM],
        issuer,
        audience,
        requiredClaims: ['exp', 'iat', 'sub'],
        clockTolerance: clockToleranceSeconds,
        // Also rejects an `iat` in the future (beyond the tolerance) and a
        // token issued longer ago than the lifetime this service issues,
        // whatever its `exp` claims. A younger token is accepted even when its
        // `exp` lies further out than this service would set it.
        maxTokenAge: ttlSeconds,
        currentDate: new Date(now()),
      });
      payload = result.payload;
    } catch (error) {
      throw rejectToken(logger, describeJoseError(error));
    }

    const { sub, role, iat, auth_time: authTime, token_version: tokenVersion } = payload;
    if (typeof sub !== 'string') {
      throw rejectToken(logger, 'sub claim is not a string');
    }
    if (sub === '') {
      throw rejectToken(logger, 'sub claim is empty');
    }
    if (!isRole(role)) {
      throw rejectToken(logger, 'role claim is missing or unknown');
    }
    // This service sets auth_time to the login time, at or before iat. Any
    // other value would make renewToken compute a session end out of range.
    if (authTime !== undefined && !(isNonNegativeInteger(authTime) && authTime <= (iat as number))) {
      throw rejectToken(logger, 'auth_time claim is not an instant at or before iat');
    }
    if (tokenVersion !== undefined && !isNonNegativeInteger(tokenVersion)) {
      throw rejectToken(logger, 'token_version claim is not a non-negative integer');
    }
    return {
      userId: sub,
      role,
      authTime: authTime ?? (iat as number),
      tokenVersion: tokenVersion ?? 0,
    };
  }

  return { issue, verify };
}

function isNonNegativeInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * Logs why a token was rejected and builds the error for the client. Every
 * rejection gets the same message, so a client learns nothing about which
 * check failed.
 */
function rejectToken(logger: Logger, reason: string): DomainError {
  logger.debug({ reason }, 'rejected access token');
  return invalidTokenError();
}

/**
 * Builds the one error for every rejected token, including those rejected
 * outside `verify` (a malformed Authorization header, a deleted user).
 */
export function invalidTokenError(): DomainError {
  return new DomainError(
    'UNAUTHENTICATED',
    'INVALID_TOKEN',
    'The access token is invalid, expired or revoked. Log in again to get a new token.',
  );
}

function describeJoseError(error: unknown): string {
  if (error instanceof joseErrors.JOSEError) {
    return `${error.code}: ${error.message}`;
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}
