/**
 * Login rate limits per username and per client address, over HTTP. The
 * server trusts X-Forwarded-For here, so each test picks its client address.
 */
import { Writable } from 'node:stream';

import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

const MAX_ATTEMPTS = 3;
const LOGIN = `mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`;

interface LoginReply {
  status: number;
  retryAfter: string | null;
  token: string | undefined;
  error: { code?: string; reason?: string; message?: string; retryAfterSeconds?: number } | undefined;
}

/** The message of the line that logs the first rejection by a login limit in its window. */
const REJECTED_MESSAGE = 'login rejected by the rate limit (logged once per limit and window)';

interface LogEntry {
  msg: string;
  username?: string;
  userId?: string;
  usernameDigest?: string;
  clientAddress?: string;
  operation?: string;
  limit?: string;
  retryAfterSeconds?: number;
}

describe('login rate limits over HTTP', () => {
  let server: TestServer;
  const logLines: string[] = [];

  beforeAll(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter((line) => line.trim() !== ''));
        callback();
      },
    });
    server = await startTestServer(import.meta.filename, {
      logger: pino({ level: 'info' }, stream),
      sweeper: false,
      env: {
        TRUST_PROXY: 'true',
        LOGIN_RATE_LIMIT_MAX_ATTEMPTS: String(MAX_ATTEMPTS),
        LOGIN_RATE_LIMIT_WINDOW_SECONDS: '600',
      },
    });
    for (const name of ['limit-victim', 'limit-other', 'limit-reset', 'limit-graphql', 'limit-burst', 'limit-dotted', 'limit-forwarded']) {
      await server.createUser(name);
    }
  });

  afterAll(async () => {
    await server?.close();
  });

  async function login(username: string, password: string, address: string): Promise<LoginReply> {
    const response = await fetch(`${server.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
      body: JSON.stringify({ username, password }),
    });
    const body = (await response.json()) as { token?: string; error?: LoginReply['error'] };
    return {
      status: response.status,
      retryAfter: response.headers.get('retry-after'),
      token: body.token,
      error: body.error,
    };
  }

  /** Returns the logged rejections by the login limits that `match` selects. */
  function rejectionLines(match: (entry: LogEntry) => boolean): LogEntry[] {
    return logLines
      .map((line) => JSON.parse(line) as LogEntry)
      .filter((entry) => entry.msg === REJECTED_MESSAGE && match(entry));
  }

  it('per username across addresses', async () => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const reply = await login('limit-victim', 'not-the-password', `198.51.100.${attempt}`);
      expect(reply.error?.reason).toBe('INVALID_CREDENTIALS');
    }

    // The right password from a fresh address fails, because the username budget is spent.
    const blocked = await login('limit-victim', 'limit-victim-password', '198.51.100.50');
    expect(blocked.status).toBe(429);
    expect(Number(blocked.retryAfter)).toBeGreaterThan(0);
    expect(blocked.token).toBeUndefined();
    expect(blocked.error?.code).toBe('UNAUTHENTICATED');
    expect(blocked.error?.reason).toBe('RATE_LIMITED');
    expect(blocked.error?.message).toContain(`limit is ${MAX_ATTEMPTS}`);
    expect(blocked.error?.retryAfterSeconds).toBeGreaterThan(0);
    expect(blocked.error?.retryAfterSeconds).toBeLessThanOrEqual(600);

    // Usernames that differ only in case share one budget.
    const upper = await login('LIMIT-VICTIM', 'limit-victim-password', '198.51.100.51');
    expect(upper.error?.reason).toBe('RATE_LIMITED');

    // The same fresh address still serves other users.
    const other = await login('limit-other', 'limit-other-password', '198.51.100.50');
    expect(other.status).toBe(200);
    expect(other.token).toBeTypeOf('string');
  });

  it('dotted capital I shares no account', async () => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const reply = await login('limit-dotted', 'not-the-password', `198.51.100.${100 + attempt}`);
      expect(reply.error?.reason).toBe('INVALID_CREDENTIALS');
    }

    // PostgreSQL lowercases U+0130 to "i", but JavaScript to "i" and U+0307,
    // so this name would reach the account with a budget of its own.
    const dotted = await login('l\u0130mit-dotted', 'limit-dotted-password', '198.51.100.150');
    expect(dotted.token).toBeUndefined();
    expect(dotted.status).not.toBe(200);
  });

  it('per address across usernames', async () => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const reply = await login(`limit-guess-${attempt}`, 'not-the-password', '192.0.2.10');
      expect(reply.error?.reason).toBe('INVALID_CREDENTIALS');
    }

    const blocked = await login('limit-other', 'limit-other-password', '192.0.2.10');
    expect(blocked.status).toBe(429);
    expect(blocked.error?.reason).toBe('RATE_LIMITED');
    expect(blocked.token).toBeUndefined();

    const elsewhere = await login('limit-other', 'limit-other-password', '192.0.2.11');
    expect(elsewhere.status).toBe(200);
  });

  it('counts the address the proxy added', async () => {
    // A proxy appends the address it saw to the X-Forwarded-For that the client sent.
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const reply = await login(`limit-forged-${attempt}`, 'not-the-password', `203.0.113.${attempt}, 192.0.2.150`);
      expect(reply.error?.reason).toBe('INVALID_CREDENTIALS');
    }

    const forged = await login('limit-forwarded', 'limit-forwarded-password', '203.0.113.99, 192.0.2.150');
    expect(forged.status, 'status with another forged address').toBe(429);
    expect(forged.error?.reason).toBe('RATE_LIMITED');
    expect(forged.token).toBeUndefined();

    const elsewhere = await login('limit-forwarded', 'limit-forwarded-password', '203.0.113.99, 192.0.2.151');
    expect(elsewhere.status, 'status from another client').toBe(200);
  });

  it('IPv6 counted per /64', async () => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      await login(`limit-v6-${attempt}`, 'not-the-password', `2001:db8:1:2::${attempt}`);
    }

    const sameNetwork = await login('limit-other', 'limit-other-password', '2001:db8:1:2::ffff');
    expect(sameNetwork.error?.reason).toBe('RATE_LIMITED');

    const otherNetwork = await login('limit-other', 'limit-other-password', '2001:db8:1:3::1');
    expect(otherNetwork.status).toBe(200);
  });

  it('success resets username budget', async () => {
    // Two rounds of MAX_ATTEMPTS - 1 failures exceed the limit in total, but
    // the successful login between them clears the username count.
    for (let round = 0; round < 2; round += 1) {
      for (let attempt = 1; attempt < MAX_ATTEMPTS; attempt += 1) {
        const reply = await login('limit-reset', 'not-the-password', `203.0.113.${round * 10 + attempt}`);
        expect(reply.error?.reason).toBe('INVALID_CREDENTIALS');
      }
      const success = await login('limit-reset', 'limit-reset-password', `203.0.113.${round * 10 + 9}`);
      expect(success.status).toBe(200);
    }
  });

  it('concurrent failures stop at limit', async () => {
    const replies = await Promise.all(
      Array.from({ length: MAX_ATTEMPTS + 7 }, () => login('limit-burst', 'not-the-password', '192.0.2.77')),
    );

    const checked = replies.filter((reply) => reply.error?.reason === 'INVALID_CREDENTIALS');
    const limited = replies.filter((reply) => reply.error?.reason === 'RATE_LIMITED');
    expect(checked).toHaveLength(MAX_ATTEMPTS);
    expect(limited).toHaveLength(7);
    for (const reply of limited) {
      expect(reply.status).toBe(429);
    }
  });

  it('correct logins at once wait only for running ones', async () => {
    const names = Array.from({ length: MAX_ATTEMPTS + 5 }, (_, index) => `limit-crowd-${index}`);
    for (const name of names) {
      await server.createUser(name);
    }

    const replies = await Promise.all(names.map((name) => login(name, `${name}-password`, '192.0.2.88')));

    expect(replies.filter((reply) => reply.status === 200).length).toBeGreaterThanOrEqual(1);
    const waiting = names.filter((_, index) => replies[index]?.status !== 200);
    for (const name of waiting) {
      const reply = replies[names.indexOf(name)]!;
      expect(reply.status).toBe(429);
      expect(reply.error?.reason).toBe('RATE_LIMITED');
      expect(reply.retryAfter).toBe('1');
      // Correct logins leave nothing behind, so each passes once the others ended.
      expect((await login(name, `${name}-password`, '192.0.2.88')).status).toBe(200);
    }
  });

  it('burst on many usernames stops at limit', async () => {
    const replies = await Promise.all(
      Array.from({ length: MAX_ATTEMPTS + 7 }, (_, index) => login(`limit-spray-${index}`, 'not-the-password', '192.0.2.99')),
    );

    expect(replies.filter((reply) => reply.error?.reason === 'INVALID_CREDENTIALS')).toHaveLength(MAX_ATTEMPTS);
    const limited = replies.filter((reply) => reply.error?.reason === 'RATE_LIMITED');
    expect(limited).toHaveLength(7);
    expect(limited.map((reply) => reply.status)).toEqual(limited.map(() => 429));
  });

  it('limited changePassword keeps the token', async () => {
    const member = await server.createUser('limit-change');
    const change = async (current: string) => {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': '100.64.1.1', authorization: `Bearer ${member.token}` },
        body: JSON.stringify({
          query: 'mutation ($c: String!) { changePassword(currentPassword: $c, newPassword: "limit-change-next-1") }',
          variables: { c: current },
        }),
      });
      const body = (await response.json()) as { errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
      return { status: response.status, retryAfter: response.headers.get('retry-after'), error: body.errors?.[0] };
    };
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      expect((await change('not-the-password')).error?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    }

    const limited = await change('limit-change-password');
    expect(limited.status).toBe(429);
    expect(limited.error?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'RATE_LIMITED' });
    expect(Number(limited.retryAfter)).toBe(limited.error?.extensions?.retryAfterSeconds);
    expect(limited.error?.message).toContain('The password was not changed.');
    expect((await server.gql('{ me { id } }', {}, member.token)).data?.me?.id).toBe(member.id);
    const lines = rejectionLines((entry) => entry.username === 'limit-change');
    expect(lines, 'logged rejections').toHaveLength(1);
    expect(lines[0]?.operation, 'operation').toBe('changePassword');
    expect(lines[0]?.userId, 'user id').toBe(member.id);
  });

  it('limited login logged once per window', async () => {
    const member = await server.createUser('limit-logged');
    const wrongPassword = 'Limit-Logged-Wrong-4711';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      expect((await login('limit-logged', wrongPassword, `198.18.0.${attempt}`)).error?.reason).toBe('INVALID_CREDENTIALS');
    }

    const first = await login('limit-logged', 'limit-logged-password', '198.18.0.50');
    expect(first.error?.reason, 'first rejection').toBe('RATE_LIMITED');
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const again = await login(attempt % 2 === 0 ? 'LIMIT-LOGGED' : 'limit-logged', wrongPassword, `198.18.0.${50 + attempt}`);
      expect(again.error?.reason, `rejection ${attempt + 1}`).toBe('RATE_LIMITED');
    }

    const lines = rejectionLines((entry) => entry.username === 'limit-logged');
    expect(lines, 'lines for the username').toHaveLength(1);
    expect(lines[0]?.userId, 'user id').toBe(member.id);
    expect(lines[0]?.clientAddress, 'address of the first rejection').toBe('198.18.0.50');
    expect(lines[0]?.operation, 'operation').toBe('login');
    expect(lines[0]?.limit, 'limit').toBe('username');
    expect(lines[0]?.retryAfterSeconds, 'retry after').toBe(Number(first.retryAfter));
    const log = logLines.join('\n');
    expect(log, 'wrong password').not.toContain(wrongPassword);
    expect(log, 'right password').not.toContain('limit-logged-password');
    expect(log, 'token').not.toContain(member.token);
  });

  it('limited unknown username logged by digest', async () => {
    const typedAsUsername = 'Limit-Typed-Secret-4711';
    for (let attempt = 1; attempt <= MAX_ATTEMPTS + 3; attempt += 1) {
      await login(typedAsUsername, 'not-the-password', `198.18.1.${attempt}`);
    }

    const lines = rejectionLines((entry) => entry.clientAddress === `198.18.1.${MAX_ATTEMPTS + 1}`);
    expect(lines, 'lines for the first rejection').toHaveLength(1);
    expect(lines[0]?.usernameDigest, 'digest').toMatch(/^[0-9a-f]{16}$/);
    expect(lines[0]?.username, 'username').toBeUndefined();
    expect(rejectionLines((entry) => entry.usernameDigest === lines[0]?.usernameDigest), 'lines for the digest').toHaveLength(1);
    expect(logLines.join('\n'), 'username typed').not.toContain(typedAsUsername);
  });

  it('address limit logged once for many usernames', async () => {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      await login(`limit-address-guess-${attempt}`, 'not-the-password', '198.18.2.1');
    }

    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const reply = await login(`limit-address-spray-${attempt}`, 'not-the-password', '198.18.2.1');
      expect(reply.error?.reason, `spray ${attempt}`).toBe('RATE_LIMITED');
    }

    const lines = rejectionLines((entry) => entry.clientAddress === '198.18.2.1');
    expect(lines, 'lines for the address').toHaveLength(1);
    expect(lines[0]?.limit, 'limit').toBe('address');
  });

  it('GraphQL login limited too', async () => {
    const gqlLogin = async (password: string, address: string) => {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': address },
        body: JSON.stringify({ query: LOGIN, variables: { u: 'limit-graphql', p: password } }),
      });
      const body = (await response.json()) as { data: unknown; errors?: Array<{ extensions?: Record<string, unknown> }> };
      return { ...body, status: response.status, retryAfter: response.headers.get('retry-after') };
    };
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      const reply = await gqlLogin('not-the-password', `100.64.0.${attempt}`);
      expect(reply.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    }

    const blocked = await gqlLogin('limit-graphql-password', '100.64.0.99');
    expect(blocked.data).toBeNull();
    expect(blocked.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(blocked.errors?.[0]?.extensions?.reason).toBe('RATE_LIMITED');
    expect(blocked.status).toBe(429);
    expect(Number(blocked.retryAfter)).toBeGreaterThan(0);
    expect(Number(blocked.retryAfter)).toBe(blocked.errors?.[0]?.extensions?.retryAfterSeconds);
  });
});
