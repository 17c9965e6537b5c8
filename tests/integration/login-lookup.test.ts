/**
 * The account lookup of a login. Usernames match without regard to case and
 * with `_` as a literal character. A known username costs the same single
 * database query as an unknown one, so that the time of a failed login does
 * not tell them apart.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createLoginRateLimiter } from '../../src/auth/rate-limit.js';
import { createTokenService } from '../../src/auth/tokens.js';
import { DomainError } from '../../src/domain/errors.js';
import { UserService } from '../../src/services/users.js';
import type { PrismaClient } from '../../src/storage/postgres/generated/client.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { createMemoryStore } from '../../src/storage/redis/memory-store.js';
import { startTestServer, type TestServer } from '../support/app.js';

const LOGIN = `mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { user { id username } } }`;
/** PASSWORD_SCRYPT_LOG2_N of the test server, so that no login here rehashes a password. */
const SCRYPT_LOG2_N = 14;

/**
 * Wraps `prisma` so that each call of a raw query method or of a model
 * method is recorded in `calls` by name, such as `$queryRaw` or `user.findUnique`.
 */
function countingPrisma(prisma: PrismaClient, calls: string[]): PrismaClient {
  const recorded = (name: string, method: (...args: unknown[]) => unknown, self: object) =>
    (...args: unknown[]) => {
      calls.push(name);
      return method.apply(self, args);
    };
  return new Proxy(prisma, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof property !== 'string') {
        return value;
      }
      if (typeof value === 'function') {
        return /^\$(queryRaw|executeRaw|transaction|runCommandRaw)/.test(property)
          ? recorded(property, value as (...args: unknown[]) => unknown, target)
          : value;
      }
      if (typeof value === 'object' && value !== null && !property.startsWith('$')) {
        const delegate = value;
        return new Proxy(delegate, {
          get(model, method) {
            const member: unknown = Reflect.get(model, method, model);
            return typeof member === 'function' && typeof method === 'string'
              ? recorded(`${property}.${method}`, member as (...args: unknown[]) => unknown, model)
              : member;
          },
        });
      }
      return value;
    },
  });
}

/** Wraps `sql` so that each statement it runs is recorded in `calls`. */
function countingSql(sql: SqlClient, calls: string[]): SqlClient {
  return {
    query: (text, params, options) => {
      calls.push('sql.query');
      return sql.query(text, params, options);
    },
    queryArrays: (text, params, options) => {
      calls.push('sql.queryArrays');
      return sql.queryArrays(text, params, options);
    },
    exec: (script) => {
      calls.push('sql.exec');
      return sql.exec(script);
    },
    transaction: (work) => {
      calls.push('sql.transaction');
      return sql.transaction(work);
    },
  };
}

describe('login account lookup', () => {
  let server: TestServer;

  beforeAll(async () => {
    // Every failed login here comes from 127.0.0.1, so the address limit is the maximum.
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      rollups: false,
      replays: false,
      env: { LOGIN_RATE_LIMIT_MAX_ATTEMPTS: '1000' },
    });
    await server.createUser('Lookup_User');
    await server.createUser('lookup.dot');
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  async function loginOverHttp(username: string, password: string) {
    const response = await server.gql<{ login: { user: { id: string; username: string } } }>(LOGIN, { u: username, p: password });
    return { user: response.data?.login?.user, reason: response.errors?.[0]?.extensions?.reason };
  }

  it.each(['Lookup_User', 'lookup_user', 'LOOKUP_USER'])('matches %s without regard to case', async (username) => {
    const reply = await loginOverHttp(username, 'Lookup_User-password');

    expect(reply.reason, 'error reason').toBeUndefined();
    expect(reply.user?.username, 'username of the account').toBe('Lookup_User');
  });

  it.each(['LookupXUser', 'Lookup-User', 'Lookup.User', 'Lookup%User', 'Lookup_Use_', 'Lookup_%'])(
    'underscore matches only itself: %s',
    async (username) => {
      const reply = await loginOverHttp(username, 'Lookup_User-password');

      expect(reply.user, 'logged-in user').toBeUndefined();
      expect(reply.reason, 'error reason').toBe('INVALID_CREDENTIALS');
    },
  );

  it('dot matches only itself', async () => {
    const reply = await loginOverHttp('lookupxdot', 'lookup.dot-password');

    expect(reply.user, 'logged-in user').toBeUndefined();
    expect(reply.reason, 'error reason').toBe('INVALID_CREDENTIALS');
  });

  describe('database queries per login', () => {
    const calls: string[] = [];
    let users: UserService;

    beforeAll(() => {
      const logger = pino({ level: 'silent' });
      users = new UserService({
        prisma: countingPrisma(server.app.db.prisma, calls),
        sql: countingSql(server.app.db.sql, calls),
        tokens: createTokenService({
          secret: 'login-lookup-secret-of-at-least-32-bytes',
          issuer: 'login-lookup-test',
          audience: 'login-lookup-test',
          ttlSeconds: 60,
          clockToleranceSeconds: 0,
          logger,
        }),
        rateLimiter: createLoginRateLimiter(createMemoryStore(), { maxAttempts: 100, windowSeconds: 60 }),
        passwordScryptLog2N: SCRYPT_LOG2_N,
        logger,
      });
    });

    /** Logs in through the counting service and returns the queries it ran and whether it passed. */
    async function queriesOfLogin(username: string, password: string): Promise<{ queries: string[]; passed: boolean }> {
      calls.length = 0;
      const passed = await users.login(username, password, '192.0.2.1').then(
        () => true,
        (error: unknown) => {
          expect(error, `${username}: error`).toBeInstanceOf(DomainError);
          expect((error as DomainError).reason, `${username}: reason`).toBe('INVALID_CREDENTIALS');
          return false;
        },
      );
      return { queries: [...calls], passed };
    }

    it('known and unknown usernames alike', async () => {
      const known = await queriesOfLogin('lookup_user', 'not-the-password');
      const unknown = await queriesOfLogin('lookup_nobody', 'not-the-password');

      expect(known.passed, 'known username passed').toBe(false);
      expect(unknown.passed, 'unknown username passed').toBe(false);
      expect(known.queries, 'queries for a known username').toEqual(['$queryRaw']);
      expect(unknown.queries, 'queries for an unknown username').toEqual(['$queryRaw']);
    });

    it('successful login runs one query', async () => {
      const success = await queriesOfLogin('LOOKUP_USER', 'Lookup_User-password');

      expect(success.passed, 'login passed').toBe(true);
      expect(success.queries, 'queries').toEqual(['$queryRaw']);
    });
  });
});
