/**
 * Benchmark accounts. They are inserted with SQL and one shared password
 * hash, because creating hundreds of users through `createUser` would hash a
 * password per user and only lengthen the setup. Each still logs in over
 * HTTP for its token.
 */
import { randomUUID } from 'node:crypto';

import type pg from 'pg';

import { hashPassword } from '../../src/auth/password.js';
import type { GraphQLClient } from './http.js';
import { runPool } from './stats.js';

export const BENCH_PASSWORD = 'bench-password-1';

/** Hashes the shared password with the cost the benchmark server uses for new users (2^14). */
export async function benchPasswordHash(): Promise<string> {
  return hashPassword(BENCH_PASSWORD, { log2N: 14 });
}

export interface BenchUser {
  id: string;
  username: string;
  token: string;
}

/** Inserts MEMBER users with the given names and returns their ids in the same order. */
export async function insertUsers(pool: pg.Pool, usernames: readonly string[], passwordHash: string): Promise<string[]> {
  const ids = usernames.map(() => randomUUID());
  await pool.query(
    `INSERT INTO users (id, username, role, password_hash)
     SELECT id, username, 'MEMBER', $3 FROM unnest($1::uuid[], $2::text[]) AS t(id, username)`,
    [ids, [...usernames], passwordHash],
  );
  return ids;
}

/** Inserts the users and logs each in over HTTP, a few at a time. */
export async function createBenchUsers(
  pool: pg.Pool,
  client: GraphQLClient,
  usernames: readonly string[],
  passwordHash: string,
): Promise<BenchUser[]> {
  const ids = await insertUsers(pool, usernames, passwordHash);
  const users: BenchUser[] = usernames.map((username, index) => ({ id: ids[index]!, username, token: '' }));
  await runPool(4, users.length, async (index) => {
    const user = users[index]!;
    user.token = await client.login(user.username, BENCH_PASSWORD);
  });
  return users;
}
