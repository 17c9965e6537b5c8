/**
 * Opens the database: PostgreSQL through `pg` and `@prisma/adapter-pg` when a
 * URL is given, otherwise embedded PGlite in a data directory. Both give the
 * same Prisma client and the same `SqlClient`, so every code path above this
 * module is shared.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import type { Logger } from 'pino';

import { dataDirError } from '../../config/errors.js';

import { PrismaClient } from './generated/client.js';
import { DEFAULT_MIGRATION_LOCK_TIMEOUT_MS, migrate, readMigrations, type Migration, type MigrationResult } from './migrator.js';
import { sqlClientForPGlite, sqlClientForPool, StatementNames, type SqlPool } from './sql.js';

/** Minimum time in ms that the connection of a migration run may take to open. */
const MIGRATION_CONNECT_TIMEOUT_MS = 10_000;

export const MIGRATIONS_DIR = resolve(
  dirname(fileURLToPath(import.meta.url)),
  '../../../prisma/migrations',
);

export interface DatabaseOptions {
  /** PostgreSQL connection string; absent selects embedded PGlite. */
  databaseUrl?: string | undefined;
  /** Data directory of the embedded database (PGlite files go to `<dataDir>/pglite`). */
  dataDir: string;
  poolSize: number;
  statementTimeoutMs: number;
  /** Whether the frequent statements stay prepared on each connection (default true). */
  preparedStatements?: boolean;
  /** Maximum wait in ms of a migration statement for a lock; 0 waits without limit (default DEFAULT_MIGRATION_LOCK_TIMEOUT_MS). */
  migrationLockTimeoutMs?: number;
  logger: Logger;
}

export interface Database {
  kind: 'postgres' | 'pglite';
  sql: SqlPool;
  prisma: PrismaClient;
  /**
   * Applies pending migrations (safe to call from several processes at once):
   * those of prisma/migrations, or `migrations` when given.
   */
  migrate(migrations?: Migration[]): Promise<MigrationResult>;
  ping(): Promise<void>;
  /** Counts of the connection pool, or null for embedded PGlite, which has one connection and no pool. */
  poolStats: (() => { total: number; idle: number; waiting: number }) | null;
  close(): Promise<void>;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl !== undefined && options.databaseUrl !== '') {
    return openPostgres(options.databaseUrl, options);
  }
  return openPGlite(options);
}

/** The message of the error with which `pg` fails a statement after `query_timeout`. */
export const QUERY_READ_TIMEOUT_MESSAGE = 'Query read timeout';

/**
 * Returns how long the client waits for a statement's reply: the server's
 * statement timeout, plus as much again up to 5 s. A slow statement then
 * fails with PostgreSQL's own error, and only a connection that stopped
 * replying fails here.
 */
function queryTimeoutMs(statementTimeoutMs: number): number {
  return statementTimeoutMs + Math.min(5_000, statementTimeoutMs);
}

/**
 * A `pg` client that closes its connection when a reply does not come within
 * `query_timeout`. `pg` fails the statement then but keeps the connection,
 * whose later statements would wait behind the one that never finishes.
 * Closing it fails those with a connection error, and the pool discards it,
 * also when the client comes back without an error, as @prisma/adapter-pg 7
 * returns it after a failed COMMIT or ROLLBACK.
 */
class StallClosingClient extends pg.Client {
  override query(...args: unknown[]): never {
    const last = args.length > 0 ? args[args.length - 1] : undefined;
    if (typeof last === 'function') {
      args[args.length - 1] = (error: unknown, result: unknown) => {
        this.closeIfStalled(error);
        (last as (error: unknown, result: unknown) => void)(error, result);
      };
    }
    const result = (super.query as (...queryArgs: unknown[]) => unknown)(...args);
    if (result instanceof Promise) {
      result.catch((error: unknown) => this.closeIfStalled(error));
    }
    return result as never;
  }

  private closeIfStalled(error: unknown): void {
    if (error instanceof Error && error.message === QUERY_READ_TIMEOUT_MESSAGE) {
      // end() marks the client closed at once, so that the pool discards it on
      // release and later statements fail without waiting for the socket's
      // 'close' event. end() destroys the socket only while a statement is
      // running, and otherwise waits for the peer, so the destroy follows.
      void this.end();
      (this as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    }
  }
}

/**
 * Builds the settings of every pool. The session time zone is pinned to UTC:
 * @prisma/adapter-pg 7 writes timestamptz parameters without an offset, so a
 * server whose zone is not UTC would shift every stored instant.
 */
function poolConfig(url: string, options: DatabaseOptions): pg.PoolConfig {
  return {
    connectionString: url,
    max: options.poolSize,
    options: `-c TimeZone=UTC -c statement_timeout=${options.statementTimeoutMs}`,
    connectionTimeoutMillis: options.statementTimeoutMs,
    // TCP keepalive finds a peer that vanished without closing (a partition,
    // a frozen host) on idle connections too. The first probe goes out after
    // 30 s without traffic, in place of the kernel's default of 2 hours
    // (tcp_keepalive_time). With Linux's default interval and count of probes
    // (75 s, 9), such a connection is closed about 12 minutes later.
    keepAlive: true,
    keepAliveInitialDelayMillis: 30_000,
  };
}

/**
 * Returns the message and SQLSTATE code of an error on an idle pooled
 * connection. pg-pool 3 attaches the failed client to the error as `client`,
 * and logging that object writes several kilobytes per line, including the
 * connection parameters and the backend's cancel key.
 */
export function summarizeIdleError(error: Error): { message: string; code?: string } {
  const code = (error as { code?: unknown }).code;
  return {
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
  };
}

function openPostgres(url: string, options: DatabaseOptions): Database {
  const pool = new pg.Pool({
    ...poolConfig(url, options),
    Client: StallClosingClient,
    query_timeout: queryTimeoutMs(options.statementTimeoutMs),
  });
  pool.on('error', (error) => {
    options.logger.error({ error: summarizeIdleError(error) }, 'idle PostgreSQL connection failed');
  });

  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  const sql = sqlClientForPool(pool, options.preparedStatements === false ? null : new StatementNames());

  return {
    kind: 'postgres',
    sql,
    prisma,
    migrate: async (migrations?: Migration[]) => {
      // Migrations lift the statement timeout, and may wait for another
      // process's migration, so their connection has no client-side timeout.
      // It is opened once per start, so its connect may take at least
      // MIGRATION_CONNECT_TIMEOUT_MS however short DB_STATEMENT_TIMEOUT_MS is.
      const migrationPool = new pg.Pool({
        ...poolConfig(url, options),
        max: 1,
        connectionTimeoutMillis: Math.max(options.statementTimeoutMs, MIGRATION_CONNECT_TIMEOUT_MS),
      });
      try {
        return await migrate(sqlClientForPool(migrationPool, null), migrations ?? (await readMigrations(MIGRATIONS_DIR)), {
          lockTimeoutMs: options.migrationLockTimeoutMs ?? DEFAULT_MIGRATION_LOCK_TIMEOUT_MS,
        });
      } finally {
        await migrationPool.end();
      }
    },
    ping: async () => {
      await sql.query('SELECT 1');
    },
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    close: async () => {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}

/** Error of an open of the embedded database in DATA_DIR that another live process holds. */
export class DataDirectoryInUseError extends Error {
  override readonly name = 'DataDirectoryInUseError';
}

/**
 * PGlite is one process's database: a second process opening the same
 * directory would corrupt it. A lock file with the owner's pid keeps a CLI
 * command from opening it while the server runs.
 */
function lockDataDirectory(directory: string): () => void {
  const lockFile = join(directory, 'event-master.pid');
  try {
    const owner = Number(readFileSync(lockFile, 'utf8').trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new DataDirectoryInUseError(
        `The embedded database in ${directory} is in use by process ${owner}. Stop that process first, or set DATABASE_URL to use PostgreSQL, which several processes can share. ` +
          `If process ${owner} is no Event Master process, a server that crashed left ${lockFile} behind and the system reused its process id, so delete ${lockFile}.`,
      );
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw error;
    }
  }
  writeFileSync(lockFile, `${process.pid}\n`);
  return () => rmSync(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function openPGlite(options: DatabaseOptions): Promise<Database> {
  const directory = join(resolve(options.dataDir), 'pglite');
  try {
    mkdirSync(directory, { recursive: true });
  } catch (error) {
    throw dataDirError(options.dataDir, directory, error);
  }
  // Imported here rather than at the top, so that a server on PostgreSQL does
  // not load PGlite. Loading it added 32 MB to an idle server's resident memory
  // (240 to 272 MB, Node 20, measured once from /proc/<pid>/status).
  const [{ PGlite }, { PrismaPGlite }] = await Promise.all([import('@electric-sql/pglite'), import('pglite-prisma-adapter')]);
  const unlock = lockDataDirectory(resolve(options.dataDir));
  const db = await PGlite.create(directory);
  await db.exec(`SET TimeZone = 'UTC'`);

  const prisma = new PrismaClient({ adapter: new PrismaPGlite(db) });
  const sql = sqlClientForPGlite(db);

  return {
    kind: 'pglite',
    sql,
    prisma,
    migrate: async (migrations?: Migration[]) =>
      migrate(sql, migrations ?? (await readMigrations(MIGRATIONS_DIR)), {
        lockTimeoutMs: options.migrationLockTimeoutMs ?? DEFAULT_MIGRATION_LOCK_TIMEOUT_MS,
      }),
    ping: async () => {
      await sql.query('SELECT 1');
    },
    poolStats: null,
    close: async () => {
      await prisma.$disconnect();
      await db.close();
      unlock();
    },
  };
}
