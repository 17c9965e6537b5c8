/**
 * Fresh PostgreSQL databases for tests, created beside the one DATABASE_URL
 * names and dropped with every connection to them.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';
import pino from 'pino';

import { openDatabase, type Database } from '../../src/storage/postgres/database.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

async function runOnBase(baseUrl: string, statements: readonly string[]): Promise<void> {
  const client = new pg.Client({ connectionString: baseUrl });
  await client.connect();
  try {
    for (const statement of statements) {
      await client.query(statement);
    }
  } finally {
    await client.end();
  }
}

/**
 * Creates an empty database on the server of `baseUrl`. `settings` are
 * `ALTER DATABASE ... SET` clauses such as `timezone TO 'Asia/Kolkata'`.
 * `icuLocale`, such as `en-US`, makes ICU that locale's default collation
 * (PostgreSQL 15 or later, built with ICU).
 */
export async function createTestDatabase(
  baseUrl: string,
  options: { prefix?: string; settings?: readonly string[]; icuLocale?: string } = {},
): Promise<TestDatabase> {
  const name = `${options.prefix ?? 'em_test'}_${randomBytes(6).toString('hex')}`;
  const collation =
    options.icuLocale === undefined ? '' : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${options.icuLocale}'`;
  await runOnBase(baseUrl, [
    `CREATE DATABASE ${name}${collation}`,
    ...(options.settings ?? []).map((setting) => `ALTER DATABASE ${name} SET ${setting}`),
  ]);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => runOnBase(baseUrl, [`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]),
  };
}

/** Creates a database beside DATABASE_URL's, opens it through the service's own code and migrates it. */
export async function openMigratedTestDatabase(
  baseUrl: string,
  options: { prefix: string; poolSize: number; preparedStatements?: boolean },
): Promise<{ db: Database; url: string; drop(): Promise<void> }> {
  const database = await createTestDatabase(baseUrl, { prefix: options.prefix });
  const db = await openDatabase({
    databaseUrl: database.url,
    dataDir: '.',
    poolSize: options.poolSize,
    statementTimeoutMs: 60_000,
    preparedStatements: options.preparedStatements,
    logger: pino({ level: 'silent' }),
  });
  await db.migrate();
  return {
    db,
    url: database.url,
    async drop() {
      await db.close();
      await database.drop();
    },
  };
}

/** Returns a client that runs every call on `sql` except those that `overrides` replaces, for tests that watch or break statements. */
export function wrapSql(sql: SqlClient, overrides: Partial<SqlClient>): SqlClient {
  return {
    query: sql.query.bind(sql),
    queryArrays: sql.queryArrays.bind(sql),
    exec: sql.exec.bind(sql),
    transaction: sql.transaction.bind(sql),
    ...overrides,
  };
}
