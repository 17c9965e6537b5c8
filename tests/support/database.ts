/**
 * Fresh PostgreSQL databases for tests, created beside the one DATABASE_URL
 * names and dropped with every connection to them.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';

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
 */
export async function createTestDatabase(
  baseUrl: string,
  options: { prefix?: string; settings?: readonly string[] } = {},
): Promise<TestDatabase> {
  const name = `${options.prefix ?? 'em_test'}_${randomBytes(6).toString('hex')}`;
  await runOnBase(baseUrl, [
    `CREATE DATABASE ${name}`,
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
