/**
 * Applies the SQL migrations in `prisma/migrations/<timestamp>_<name>/migration.sql`
 * in name order and records them in Prisma's `_prisma_migrations` table, so
 * that `prisma migrate deploy` (where Prisma's native schema engine is
 * available) finds the same history. Prisma's own migrate commands cannot run
 * here because their engine cannot be downloaded.
 *
 * All pending migrations run in one transaction under a transaction-scoped
 * advisory lock: a second process starting at the same time waits, then finds
 * nothing pending. Their statements wait for other locks, such as a table
 * lock that a long transaction holds, at most `lockTimeoutMs`. While a
 * statement such as ALTER TABLE waits for its lock, every query on that table
 * queues behind it, so an unbounded wait would stop all traffic.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { SqlClient } from './sql.js';

/** Advisory lock key Prisma's migrate engine also takes, so the two never interleave. */
const MIGRATION_LOCK_KEY = 72707369;

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: string[];
}

export interface MigrateOptions {
  /** Maximum wait in ms of one statement for a lock, as PostgreSQL's lock_timeout; 0 waits without limit. */
  lockTimeoutMs: number;
}

/** Lock timeout of migrations when the caller gives none, the default of DB_MIGRATION_LOCK_TIMEOUT_MS. */
export const DEFAULT_MIGRATION_LOCK_TIMEOUT_MS = 5000;

/** SQLSTATE lock_not_available, which a statement fails with after lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03';

/** The failure of a migration statement that waited longer than the lock timeout for a lock. */
export class MigrationLockTimeoutError extends Error {
  /**
   * @param migration The name of the migration whose statement timed out, or
   *   null for the statements on the `_prisma_migrations` table before it.
   */
  constructor(
    readonly migration: string | null,
    readonly lockTimeoutMs: number,
    options: { cause: unknown },
  ) {
    const subject = migration === null ? 'Reading the migration history (_prisma_migrations)' : `Migration ${migration}`;
    super(
      `${subject} failed: it waited more than ${lockTimeoutMs} ms (DB_MIGRATION_LOCK_TIMEOUT_MS) for a lock ` +
        'that another session holds, so no pending migration was applied. Find the blocking session in pg_locks and ' +
        'pg_stat_activity, such as a long or idle transaction, and let it finish or end it with pg_terminate_backend. ' +
        'Then try again, or raise DB_MIGRATION_LOCK_TIMEOUT_MS.',
      options,
    );
    this.name = 'MigrationLockTimeoutError';
  }
}

export async function readMigrations(directory: string): Promise<Migration[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    const sql = await readFile(join(directory, name, 'migration.sql'), 'utf8');
    migrations.push({ name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

/**
 * Applies the pending migrations.
 *
 * @throws Error when an applied migration changed on disk.
 * @throws MigrationLockTimeoutError when a statement waited longer than `lockTimeoutMs` for a lock.
 */
export async function migrate(
  db: SqlClient,
  migrations: Migration[],
  options: MigrateOptions = { lockTimeoutMs: DEFAULT_MIGRATION_LOCK_TIMEOUT_MS },
): Promise<MigrationResult> {
  const progress: { running: string | null } = { running: null };
  try {
    return await migrateInTransaction(db, migrations, options, progress);
  } catch (error) {
    if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) {
      throw new MigrationLockTimeoutError(progress.running, options.lockTimeoutMs, { cause: error });
    }
    throw error;
  }
}

async function migrateInTransaction(
  db: SqlClient,
  migrations: Migration[],
  options: MigrateOptions,
  progress: { running: string | null },
): Promise<MigrationResult> {
  return db.transaction(async (tx) => {
    // A migration that fills or indexes a large table can take longer than
    // DB_STATEMENT_TIMEOUT_MS, which limits the pool's statements, and so can
    // another process's wait for the lock while one migrates.
    await tx.query('SET LOCAL statement_timeout = 0');
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
    // Set after the advisory lock, so that lock_timeout does not also limit
    // the wait for another process's migrations.
    await tx.query(`SELECT set_config('lock_timeout', $1, true)`, [`${options.lockTimeoutMs}ms`]);
    await tx.exec(`
      CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
        "id" VARCHAR(36) PRIMARY KEY NOT NULL,
        "checksum" VARCHAR(64) NOT NULL,
        "finished_at" TIMESTAMPTZ,
        "migration_name" VARCHAR(255) NOT NULL,
        "logs" TEXT,
        "rolled_back_at" TIMESTAMPTZ,
        "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
        "applied_steps_count" INTEGER NOT NULL DEFAULT 0
      )`);

    const rows = await tx.query<{ migration_name: string; checksum: string }>(
      `SELECT migration_name, checksum FROM "_prisma_migrations"
       WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
    );
    const done = new Map(rows.map((row) => [row.migration_name, row.checksum]));

    const result: MigrationResult = { applied: [], alreadyApplied: [] };
    for (const migration of migrations) {
      const checksum = done.get(migration.name);
      if (checksum !== undefined) {
        if (checksum !== migration.checksum) {
          throw new Error(
            `Migration ${migration.name} was changed after it was applied (checksum ${migration.checksum}, recorded ${checksum}). Restore the original file and add a new migration instead.`,
          );
        }
        result.alreadyApplied.push(migration.name);
        continue;
      }

      progress.running = migration.name;
      await tx.exec(migration.sql);
      await tx.query(
        `INSERT INTO "_prisma_migrations"
           (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
         VALUES ($1, $2, now(), $3, now(), 1)`,
        [randomUUID(), migration.checksum, migration.name],
      );
      result.applied.push(migration.name);
    }
    return result;
  });
}
