/**
 * Starts the whole service on a free loopback port for API tests: real
 * PostgreSQL (a fresh database per call) and Redis (a fresh key prefix) when
 * DATABASE_URL and REDIS_URL are set, otherwise embedded PGlite in a
 * temporary directory and the in-process store, the service's own defaults.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pino from 'pino';

import { createApp, type App, type AppOptions } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import type { Clock } from '../../src/services/index.js';
import { createTestDatabase } from './database.js';
import { postgresUrl, redisUrl, uniqueKeyPrefix } from './services.js';

export const ADMIN = { username: 'admin', password: 'admin-password-1' };
/** Options that keep the sweeper, the rollup builder and the replay worker off, for tests that need no background work. */
export const WITHOUT_WORKERS = { sweeper: false, rollups: false, replays: false } as const;

/** A clock that tests move by hand. */
export class ManualClock implements Clock {
  constructor(private current: number) {}
  now(): number {
    return this.current;
  }
  set(ms: number): void {
    this.current = ms;
  }
  advance(ms: number): void {
    this.current += ms;
  }
}

export interface GraphQLResponse<T = Record<string, unknown>> {
  status: number;
  data?: T;
  errors?: Array<{
    message: string;
    locations?: Array<{ line: number; column: number }>;
    path?: unknown[];
    extensions?: Record<string, unknown>;
  }>;
}

export interface TestServer {
  app: App;
  url: string;
  databaseUrl: string | null;
  /** Posts a GraphQL operation over HTTP. */
  gql<T = Record<string, any>>(
    query: string,
    variables?: Record<string, unknown>,
    token?: string,
    operationName?: string,
  ): Promise<GraphQLResponse<T>>;
  login(username: string, password: string): Promise<string>;
  adminToken(): Promise<string>;
  /** Creates a user through the API and returns its id and token. */
  createUser(username: string, role?: 'MEMBER' | 'ANALYST' | 'ADMIN'): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

export interface StartOptions extends AppOptions {
  env?: Record<string, string>;
  /** Reuse this database instead of creating one (for a second process on the same data). */
  databaseUrl?: string;
  dataDir?: string;
  keyPrefix?: string;
}

export async function startTestServer(testFile: string, options: StartOptions = {}): Promise<TestServer> {
  const basePg = postgresUrl();
  const baseRedis = redisUrl();
  let database: { url: string; drop: () => Promise<void> } | null = null;
  if (options.databaseUrl !== undefined) {
    database = { url: options.databaseUrl, drop: async () => {} };
  } else if (basePg !== undefined) {
    database = await createTestDatabase(basePg);
  }
  const ownsDataDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'em-test-'));

  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    HOST: '127.0.0.1',
    PORT: '0',
    DATA_DIR: dataDir,
    JWT_SECRET: 'test-secret-that-is-at-least-32-bytes-long',
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    PASSWORD_SCRYPT_LOG2_N: '14',
    SWEEPER_INTERVAL_MS: '200',
    ...(database !== null ? { DATABASE_URL: database.url } : {}),
    ...(baseRedis !== undefined
      ? { REDIS_URL: baseRedis, REDIS_KEY_PREFIX: options.keyPrefix ?? uniqueKeyPrefix(testFile) }
      : {}),
    ...options.env,
  };
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  let app: App;
  let url: string;
  try {
    app = await createApp(loadConfig(env), { logger, ...options });
    try {
      url = await app.listen();
    } catch (error) {
      await app.close();
      throw error;
    }
  } catch (error) {
    // A server that did not start leaves neither its database nor its data folder behind.
    await database?.drop();
    if (ownsDataDir) {
      rmSync(dataDir, { recursive: true, force: true });
    }
    throw error;
  }

  let adminToken: string | null = null;
  const server: TestServer = {
    app,
    url,
    databaseUrl: database?.url ?? null,
    async gql(query, variables, token, operationName) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ query, variables, operationName }),
      });
      const body = (await response.json()) as Omit<GraphQLResponse, 'status'>;
      return { status: response.status, ...body } as never;
    },
    async login(username, password) {
      const result = await server.gql<{ login: { token: string } }>(
        `mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
        { u: username, p: password },
      );
      if (result.data?.login === undefined) {
        throw new Error(`login of ${username} failed: ${JSON.stringify(result.errors)}`);
      }
      return result.data.login.token;
    },
    async adminToken() {
      adminToken ??= await server.login(ADMIN.username, ADMIN.password);
      return adminToken;
    },
    async createUser(username, role = 'MEMBER') {
      const password = `${username}-password`;
      const result = await server.gql<{ createUser: { id: string } }>(
        `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
        { input: { username, password, role } },
        await server.adminToken(),
      );
      if (result.data?.createUser === undefined) {
        throw new Error(`createUser ${username} failed: ${JSON.stringify(result.errors)}`);
      }
      return { id: result.data.createUser.id, token: await server.login(username, password) };
    },
    async close() {
      // A test of a failed close still gets its database and data folder removed.
      try {
        await app.close();
      } finally {
        if (options.databaseUrl === undefined) {
          await database?.drop();
        }
        if (ownsDataDir) {
          rmSync(dataDir, { recursive: true, force: true });
        }
      }
    },
  };
  return server;
}
