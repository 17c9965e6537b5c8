/**
 * The PostgreSQL and Redis that a benchmark run uses: the URLs from
 * DATABASE_URL and REDIS_URL or local defaults, a fresh database per run and a
 * key prefix of its own, and their removal at the end.
 */
import pg from 'pg';
import { Redis } from 'ioredis';

export const DEFAULT_DATABASE_URL = 'postgresql://postgres@127.0.0.1:5432/test';
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export interface ServiceUrls {
  /** URL of an existing database to connect to when creating and dropping the run's database. */
  baseDatabaseUrl: string;
  redisUrl: string;
  /** Names of the variables that were unset, so the defaults above were used. */
  defaulted: string[];
}

export function resolveServiceUrls(env: NodeJS.ProcessEnv): ServiceUrls {
  const defaulted: string[] = [];
  const read = (name: string, fallback: string): string => {
    const value = env[name]?.trim();
    if (value === undefined || value === '') {
      defaulted.push(name);
      return fallback;
    }
    return value;
  };
  return {
    baseDatabaseUrl: read('DATABASE_URL', DEFAULT_DATABASE_URL),
    redisUrl: read('REDIS_URL', DEFAULT_REDIS_URL),
    defaulted,
  };
}

/** Returns `url` with its database name replaced. */
export function withDatabaseName(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
}

/** Runs one statement on a short-lived connection to `url`. */
async function runOnce(url: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Creates the run's database, whose name must be a plain lower-case identifier. */
export async function createDatabase(baseUrl: string, name: string): Promise<string> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) {
    throw new RangeError(`Database name ${JSON.stringify(name)} is not a plain identifier.`);
  }
  await runOnce(baseUrl, `CREATE DATABASE ${name}`);
  return withDatabaseName(baseUrl, name);
}

export async function dropDatabase(baseUrl: string, name: string): Promise<void> {
  await runOnce(baseUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** Opens a pool on the run's database with the session zone pinned to UTC, as the service does. */
export function openPool(url: string, max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max, options: '-c TimeZone=UTC' });
  // DROP DATABASE ... WITH (FORCE) at the end of a run terminates idle
  // connections still in a phase's pool (SQLSTATE 57P01); anything else is reported.
  pool.on('error', (error: Error & { code?: string }) => {
    if (error.code !== '57P01') {
      process.stderr.write(`bench: idle PostgreSQL connection failed: ${error.message}\n`);
    }
  });
  return pool;
}

/** Reads the versions of PostgreSQL and Redis for the report. */
export async function readServiceVersions(
  pool: pg.Pool,
  redisUrl: string,
): Promise<{ postgres: string; redis: string }> {
  const rows = await pool.query<{ server_version: string }>('SHOW server_version');
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const info = await redis.info('server');
    const version = /^redis_version:(.+)$/m.exec(info)?.[1]?.trim() ?? 'unknown';
    return { postgres: rows.rows[0]?.server_version ?? 'unknown', redis: version };
  } finally {
    redis.disconnect();
  }
}

/** Deletes every Redis key under `prefix`, which must be the run's own. */
export async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let deleted = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) {
        deleted += await redis.del(...keys);
      }
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}

const SETTLE_POLL_MS = 250;

/**
 * Vacuums and analyses the run's database, then waits up to `maxWaitMs` until
 * no autovacuum worker runs in it. A timed run that starts after this pays
 * for its own writes only. Without it, vacuuming the rows that the previous
 * run wrote would fall into the next run's time and PostgreSQL CPU. Returns
 * whether the database was quiet before the wait ran out.
 */
export async function settleDatabase(pool: pg.Pool, maxWaitMs = 30_000): Promise<boolean> {
  await pool.query('VACUUM (ANALYZE)');
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const { rows } = await pool.query<{ workers: string }>(
      `SELECT count(*) AS workers FROM pg_stat_activity
       WHERE backend_type = 'autovacuum worker' AND datname = current_database()`,
    );
    if (Number(rows[0]?.workers ?? 0) === 0) {
      return true;
    }
    if (Date.now() >= deadline) {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
  }
}
