import { SignJWT, base64url, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { pino } from 'pino';
import { webcrypto } from 'node:crypto';

import { describe, expect, it, vi } from 'vitest';

import { MAX_TOKEN_LENGTH, createTokenService, type TokenService } from '../../src/auth/tokens.js';
import { DomainError } from '../../src/domain/errors.js';

const SECRET = 'test-secret-that-is-at-least-32-bytes-long';
const KEY = new TextEncoder().encode(SECRET);
const ISSUER = 'event-master';
const AUDIENCE = 'event-master';
const TTL_SECONDS = 3600;
const TOLERANCE_SECONDS = 5;

// A fixed clock: 2026-01-15T10:00:00Z.
const NOW_MS = Date.UTC(2026, 0, 15, 10, 0, 0);
const NOW_SECONDS = NOW_MS / 1000;

function capturingLogger(): { logger: pino.Logger; output: () => string } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  return { logger, output: () => lines.join('') };
}

function service(nowMs = NOW_MS, logger = pino({ level: 'silent' })): TokenService {
  return createTokenService({
    secret: SECRET,
    issuer: ISSUER,
    audience: AUDIENCE,
    ttlSeconds: TTL_SECONDS,
    clockToleranceSeconds: TOLERANCE_SECONDS,
    logger,
    now: () => nowMs,
  });
}

interface CustomToken {
  claims?: Record<string, unknown>;
  omit?: ('exp' | 'iat' | 'sub' | 'iss' | 'aud')[];
  iat?: number;
  exp?: number;
}

/**
 * Signs a token with HS256 and the test secret. It has every claim a valid
 * token has, minus `omit`, with `claims` replacing or adding values.
 */
async function signCustom({ claims = {}, omit = [], iat, exp }: CustomToken = {}): Promise<string> {
  const payload: Record<string, unknown> = {
    sub: 'user-1',
    iss: ISSUER,
    aud: AUDIENCE,
    iat: iat ?? NOW_SECONDS,
    exp: exp ?? NOW_SECONDS + TTL_SECONDS,
    role: 'MEMBER',
  };
  for (const claim of omit) {
    delete payload[claim];
  }
  return new SignJWT({ ...payload, ...claims }).setProtectedHeader({ alg: 'HS256' }).sign(KEY);
}

function encodeSegment(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

async function expectRejected(token: string, tokens: TokenService = service()): Promise<DomainError> {
  const error = await tokens.verify(token).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(DomainError);
  const domainError = error as DomainError;
  expect(domainError.kind).toBe('UNAUTHENTICATED');
  expect(domainError.reason).toBe('INVALID_TOKEN');
  expect(domainError.message).toBe(
    'The access token is invalid, expired or revoked. Log in again to get a new token.',
  );
  return domainError;
}

describe('token issue', () => {
  it('renewal keeps auth_time', async () => {
    const tokens = service();
    const loginAt = NOW_SECONDS - 5000;
    const { token, expiresAt } = await tokens.issue({ id: 'user-1', role: 'MEMBER' }, { authTime: loginAt, notAfter: NOW_MS + 600_000 });

    expect(await tokens.verify(token)).toEqual({ userId: 'user-1', role: 'MEMBER', authTime: loginAt, tokenVersion: 0 });
    // The session end comes before the usual hour.
    expect(expiresAt.getTime()).toBe(NOW_MS + 600_000);
  });

  it('carries the token version', async () => {
    const tokens = service();
    const { token } = await tokens.issue({ id: 'user-1', role: 'MEMBER', tokenVersion: 7 });

    expect((await tokens.verify(token)).tokenVersion).toBe(7);
    expect(decodeJwt(token).token_version).toBe(7);
  });

  it('renewal on a lagging clock verifies', async () => {
    const loginInstance = service(NOW_MS);
    // Three seconds behind, within the five-second tolerance.
    const laggingInstance = service(NOW_MS - 3000);
    const login = await loginInstance.issue({ id: 'user-1', role: 'MEMBER' });

    const claims = await laggingInstance.verify(login.token);
    const renewed = await laggingInstance.issue({ id: 'user-1', role: 'MEMBER' }, { authTime: claims.authTime });

    expect((await loginInstance.verify(renewed.token)).authTime).toBe(NOW_SECONDS - 3);
    expect((await laggingInstance.verify(renewed.token)).userId).toBe('user-1');
  });

  it('auth_time defaults to iat', async () => {
    const token = await signCustom({ iat: NOW_SECONDS - 600 });
    expect(await service().verify(token)).toEqual({ userId: 'user-1', role: 'MEMBER', authTime: NOW_SECONDS - 600, tokenVersion: 0 });
  });

  it('valid token passes', async () => {
    const tokens = service();
    const { token, expiresAt } = await tokens.issue({ id: 'user-1', role: 'ANALYST' });

    expect(await tokens.verify(token)).toEqual({ userId: 'user-1', role: 'ANALYST', authTime: NOW_SECONDS, tokenVersion: 0 });
    expect(expiresAt.toISOString()).toBe('2026-01-15T11:00:00.000Z');
  });

  it('sets header and claims', async () => {
    const { token } = await service().issue({ id: 'user-1', role: 'ADMIN' });
    const header = decodeProtectedHeader(token);
    const payload = decodeJwt(token);

    expect(header).toEqual({ alg: 'HS256', typ: 'JWT' });
    expect(payload.sub).toBe('user-1');
    expect(payload.role).toBe('ADMIN');
    expect(payload.iss).toBe(ISSUER);
    expect(payload.aud).toBe(AUDIENCE);
    expect(payload.iat).toBe(NOW_SECONDS);
    expect(payload.exp).toBe(NOW_SECONDS + TTL_SECONDS);
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('gives each token own jti', async () => {
    const tokens = service();
    const first = decodeJwt((await tokens.issue({ id: 'user-1', role: 'MEMBER' })).token);
    const second = decodeJwt((await tokens.issue({ id: 'user-1', role: 'MEMBER' })).token);

    expect(first.jti).not.toBe(second.jti);
  });

  it('rejects short secret', () => {
    expect(() =>
      createTokenService({
        secret: 'x'.repeat(31),
        issuer: ISSUER,
        audience: AUDIENCE,
        ttlSeconds: TTL_SECONDS,
        clockToleranceSeconds: TOLERANCE_SECONDS,
        logger: pino({ level: 'silent' }),
      }),
    ).toThrow(RangeError);
  });
});

describe('token verify rejects', () => {
  it('alg none', async () => {
    const header = encodeSegment({ alg: 'none', typ: 'JWT' });
    const payload = encodeSegment(decodeJwt(await signCustom()));

    await expectRejected(`${header}.${payload}.`);
  });

  it('tampered signature', async () => {
    const token = await signCustom();
    const [header, payload, signature = ''] = token.split('.');
    const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);

    await expectRejected(`${header}.${payload}.${flipped}`);
  });

  it('another spelling of the signature', async () => {
    const token = await signCustom();
    const [header, payload, signature = ''] = token.split('.');
    // The last of the 43 characters of a 32-byte signature carries 2 unused
    // bits, so the characters that differ only there decode to the same bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(signature.at(-1) ?? '');
    const respelled = signature.slice(0, -1) + alphabet[last ^ 1];
    expect(base64url.decode(respelled)).toEqual(base64url.decode(signature));

    await expectRejected(`${header}.${payload}.${respelled}`);
  });

  it('tampered payload', async () => {
    const token = await signCustom();
    const [header, payload = '', signature] = token.split('.');
    const claims = JSON.parse(new TextDecoder().decode(base64url.decode(payload)));
    const forged = encodeSegment({ ...claims, role: 'ADMIN' });

    await expectRejected(`${header}.${forged}.${signature}`);
  });

  it('HS512 with same secret', async () => {
    const token = await new SignJWT({ role: 'MEMBER' })
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject('user-1')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(NOW_SECONDS)
      .setExpirationTime(NOW_SECONDS + 60)
      .sign(KEY);

    await expectRejected(token);
  });

  it('RS256 with generated key', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const token = await new SignJWT({ role: 'MEMBER' })
      .setProtectedHeader({ alg: 'RS256' })
      .setSubject('user-1')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(NOW_SECONDS)
      .setExpirationTime(NOW_SECONDS + 60)
      .sign(privateKey);

    await expectRejected(token);
  });

  it('exp in past', async () => {
    await expectRejected(await signCustom({ iat: NOW_SECONDS - 120, exp: NOW_SECONDS - 60 }));
  });

  it('token from expired issue', async () => {
    const { token } = await service(NOW_MS - (TTL_SECONDS + 60) * 1000).issue({
      id: 'user-1',
      role: 'MEMBER',
    });

    await expectRejected(token);
  });

  it.each(['exp', 'iat', 'sub', 'iss', 'aud'] as const)('%s missing', async (claim) => {
    await expectRejected(await signCustom({ omit: [claim] }));
  });

  it('wrong issuer', async () => {
    await expectRejected(await signCustom({ claims: { iss: 'someone-else' } }));
  });

  it('wrong audience', async () => {
    await expectRejected(await signCustom({ claims: { aud: 'other-service' } }));
  });

  it('empty sub', async () => {
    await expectRejected(await signCustom({ claims: { sub: '' } }));
  });

  it.each([
    ['a number', 12345],
    ['a list', ['user-1']],
  ])('sub %s logged as not a string', async (_name, sub) => {
    const { logger, output } = capturingLogger();

    await expectRejected(await signCustom({ claims: { sub } }), service(NOW_MS, logger));

    expect(output()).toContain('sub claim is not a string');
    expect(output()).not.toContain('sub claim is empty');
  });

  it('unknown role', async () => {
    await expectRejected(await signCustom({ claims: { role: 'ROOT' } }));
  });

  it.each([
    ['far in the past', -1e15],
    ['after iat', NOW_SECONDS + 1],
    ['fractional', NOW_SECONDS - 0.5],
    ['a string', String(NOW_SECONDS)],
  ])('auth_time %s', async (_name, authTime) => {
    await expectRejected(await signCustom({ claims: { auth_time: authTime } }));
  });

  it.each([
    ['negative', -1],
    ['fractional', 1.5],
    ['a string', '1'],
  ])('token_version %s', async (_name, version) => {
    await expectRejected(await signCustom({ claims: { token_version: version } }));
  });

  it('iat in future', async () => {
    await expectRejected(await signCustom({ iat: NOW_SECONDS + 60, exp: NOW_SECONDS + 120 }));
  });

  it('lifetime beyond ttl', async () => {
    // Valid signature and unexpired, but issued longer ago than any token we issue lives.
    const iat = NOW_SECONDS - TTL_SECONDS - 60;
    await expectRejected(await signCustom({ iat, exp: NOW_SECONDS + 3600 }));
  });

  it.each([
    ['empty', ''],
    ['one word', 'garbage'],
    ['three dots', 'a.b.c'],
    ['bad base64 json', `${encodeSegment({ alg: 'HS256' })}.%%%%.abc`],
  ])('garbage: %s', async (_case, token) => {
    await expectRejected(token);
  });

  it('oversized header', async () => {
    const header = encodeSegment({ alg: 'HS256', padding: 'x'.repeat(MAX_TOKEN_LENGTH) });
    const token = `${header}.${encodeSegment({ sub: 'user-1' })}.c2lnbmF0dXJl`;

    expect(token.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
    await expectRejected(token);
  });
});

describe('token clock tolerance', () => {
  it('accepts exp within tolerance', async () => {
    const token = await signCustom({ iat: NOW_SECONDS - 600, exp: NOW_SECONDS - (TOLERANCE_SECONDS - 2) });

    expect(await service().verify(token)).toMatchObject({ userId: 'user-1', role: 'MEMBER' });
  });

  it('rejects exp beyond tolerance', async () => {
    await expectRejected(
      await signCustom({ iat: NOW_SECONDS - 600, exp: NOW_SECONDS - (TOLERANCE_SECONDS + 1) }),
    );
  });

  it('accepts iat slightly ahead', async () => {
    const token = await signCustom({ iat: NOW_SECONDS + (TOLERANCE_SECONDS - 2) });

    expect(await service().verify(token)).toMatchObject({ userId: 'user-1', role: 'MEMBER' });
  });
});

describe('token rejection logging', () => {
  it('logs reason at debug only', async () => {
    const { logger, output } = capturingLogger();
    const token = await signCustom({ iat: NOW_SECONDS - 120, exp: NOW_SECONDS - 60 });

    await expectRejected(token, service(NOW_MS, logger));

    expect(output()).toContain('"level":20');
    expect(output()).toContain('exp');
    expect(output()).not.toContain(SECRET);
    expect(output()).not.toContain(token);
  });
});

describe('key import', () => {
  it('retries a failed import and reports it as a fault', async () => {
    const tokens = service();
    const token = await signCustom();
    const importKey = vi.spyOn(webcrypto.subtle, 'importKey').mockRejectedValueOnce(new Error('injected import failure'));
    try {
      const failed = await tokens.verify(token).catch((error: unknown) => error);
      // Not an INVALID_TOKEN: the token is fine, the server is not.
      expect(failed).not.toBeInstanceOf(DomainError);
      expect((failed as Error).message).toBe('injected import failure');
      await expect(tokens.verify(token)).resolves.toMatchObject({ userId: 'user-1', role: 'MEMBER' });
      expect(importKey).toHaveBeenCalledTimes(2);
    } finally {
      importKey.mockRestore();
    }
  });

  it('verifies tokens signed with the raw secret', async () => {
    const tokens = service();
    const issued = await tokens.issue({ id: 'user-2', role: 'ANALYST' });
    await expect(tokens.verify(await signCustom())).resolves.toMatchObject({ userId: 'user-1', role: 'MEMBER' });
    await expect(tokens.verify(issued.token)).resolves.toMatchObject({ userId: 'user-2', role: 'ANALYST' });
  });
});
