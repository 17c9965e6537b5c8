/**
 * Migrations marked to run outside a transaction, on embedded PGlite and on
 * PostgreSQL: they apply statement by statement between the transactional
 * ones, are recorded only when every statement succeeded, start again from
 * their first statement after a failure, and run once when several
 * processes migrate at once. On PostgreSQL, their CREATE INDEX CONCURRENTLY
 * lets inserts into the table go on while the build waits.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { MIGRATIONS_DIR, openDatabase, type Database } from '../../src/storage/postgres/database.js';
import {
  MigrationLockTimeoutError,
  NO_TRANSACTION_MARKER,
  migrate,
  nonTransactionalStatements,
  readMigrations,
  type Migration,
  type MigrationResult,
} from '../../src/storage/postgres/migrator.js';
import { createTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const FLAG_INDEXES_MIGRATION = '20261209090000_event_flag_indexes';
const FLAG_INDEXES = [
  'events_flagged_listing_idx',
  'events_user_id_flagged_listing_idx',
  'events_correction_listing_idx',
  'events_user_id_correction_listing_idx',
];

function withChecksum(name: string, sql: string): Migration {
  return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
}

function noTransaction(name: string, statements: string[]): Migration {
  return withChecksum(name, [NO_TRANSACTION_MARKER, ...statements].join('\n') + '\n');
}

async function recordedNames(db: Database): Promise<string[]> {
  const rows = await db.sql.query<{ migration_name: string }>(
    `SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY migration_name`,
  );
  return rows.map((row) => row.migration_name);
}

/** Returns whether the index is valid, or null when it does not exist. */
async function indexValid(db: Database, name: string): Promise<boolean | null> {
  const rows = await db.sql.query<{ valid: boolean }>(
    `SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)`,
    [name],
  );
  return rows[0]?.valid ?? null;
}

/** The table that the test migrations index, with unique values in `a` and `b`. */
const CREATE_ITEMS = withChecksum(
  '99990101000000_test_items',
  `CREATE TABLE items (a integer NOT NULL, b integer NOT NULL);
   INSERT INTO items SELECT n, n FROM generate_series(1, 100) AS n;`,
);

const INDEX_STATEMENTS = [
  'DROP INDEX CONCURRENTLY IF EXISTS items_a_key;',
  'CREATE UNIQUE INDEX CONCURRENTLY items_a_key ON items (a);',
  '-- Fails while `b` has duplicates.',
  'DROP INDEX CONCURRENTLY IF EXISTS items_b_key;',
  'CREATE UNIQUE INDEX CONCURRENTLY items_b_key ON items (b);',
];

const INDEX_ITEMS = noTransaction('99990102000000_test_items_indexes', INDEX_STATEMENTS);

const AFTER_ITEMS = withChecksum('99990103000000_test_after_items', 'CREATE TABLE after_items (id integer);');

const ITEM_MIGRATIONS = [CREATE_ITEMS, INDEX_ITEMS, AFTER_ITEMS];
const ITEM_MIGRATION_NAMES = ITEM_MIGRATIONS.map((migration) => migration.name);

/** Registers the cases that run on both backends. `open` returns a fresh, empty database. */
function sharedCases(open: () => Promise<{ db: Database; close: () => Promise<void> }>): void {
  async function withDatabase(work: (db: Database) => Promise<void>): Promise<void> {
    const { db, close } = await open();
    try {
      await work(db);
    } finally {
      await close();
    }
  }

  it('builds event flag indexes', async () => {
    await withDatabase(async (db) => {
      const migrations = await readMigrations(MIGRATIONS_DIR);
      const flagIndexes = migrations.find((migration) => migration.name === FLAG_INDEXES_MIGRATION);
      expect(flagIndexes, 'migration on disk').toBeDefined();
      expect(nonTransactionalStatements(flagIndexes!), 'statements outside a transaction').toHaveLength(8);

      const result = await db.migrate();

      expect(result.applied, 'applied').toEqual(migrations.map((migration) => migration.name));
      expect(await recordedNames(db), 'recorded').toEqual(migrations.map((migration) => migration.name));
      for (const name of FLAG_INDEXES) {
        expect(await indexValid(db, name), name).toBe(true);
      }
    });
  });

  it('applies between transactional ones', async () => {
    await withDatabase(async (db) => {
      const result = await migrate(db.sql, ITEM_MIGRATIONS);

      expect(result.applied, 'applied').toEqual(ITEM_MIGRATION_NAMES);
      expect(await recordedNames(db), 'recorded').toEqual(ITEM_MIGRATION_NAMES);
      expect(await indexValid(db, 'items_a_key'), 'items_a_key').toBe(true);
      expect(await indexValid(db, 'items_b_key'), 'items_b_key').toBe(true);

      const again = await migrate(db.sql, ITEM_MIGRATIONS);
      expect(again.applied, 'applied by the second run').toEqual([]);
      expect(again.alreadyApplied, 'found applied by the second run').toEqual(ITEM_MIGRATION_NAMES);
    });
  });

  it('failed statement not recorded, retry applies', async () => {
    await withDatabase(async (db) => {
      await migrate(db.sql, [CREATE_ITEMS]);
      await db.sql.query('UPDATE items SET b = 0 WHERE a <= 2');

      const error: unknown = await migrate(db.sql, ITEM_MIGRATIONS).then(
        () => null,
        (failure: unknown) => failure,
      );

      expect(error, 'error').toBeInstanceOf(Error);
      expect((error as Error).message, 'failed statement').toContain(`Migration ${INDEX_ITEMS.name} failed at statement 4 of 4`);
      expect((error as Error).message, 'earlier statements').toContain('Its 3 earlier statements stay applied');
      expect(await recordedNames(db), 'recorded').toEqual([CREATE_ITEMS.name]);
      expect(await indexValid(db, 'items_a_key'), 'index of an earlier statement').toBe(true);
      // A failed concurrent build leaves its index behind, INVALID.
      expect(await indexValid(db, 'items_b_key'), 'index of the failed statement').toBe(false);

      await db.sql.query('UPDATE items SET b = a');
      const result = await migrate(db.sql, ITEM_MIGRATIONS);

      expect(result.applied, 'applied by the retry').toEqual([INDEX_ITEMS.name, AFTER_ITEMS.name]);
      expect(await recordedNames(db), 'recorded after the retry').toEqual(ITEM_MIGRATION_NAMES);
      expect(await indexValid(db, 'items_a_key'), 'items_a_key').toBe(true);
      expect(await indexValid(db, 'items_b_key'), 'items_b_key').toBe(true);
    });
  });

  it('unsplittable script rejected first', async () => {
    await withDatabase(async (db) => {
      const dollar = noTransaction('99990102000000_test_dollar', [
        `DO $$ BEGIN CREATE TABLE dollar_done (id integer); END $$;`,
      ]);
      await expect(migrate(db.sql, [CREATE_ITEMS, dollar]), 'dollar quote').rejects.toThrow(
        `Migration ${dollar.name} runs outside a transaction, but line 2 has a dollar quote`,
      );

      const misplaced = withChecksum('99990102000000_test_misplaced', `CREATE TABLE misplaced (id integer);\n${NO_TRANSACTION_MARKER}\n`);
      await expect(migrate(db.sql, [CREATE_ITEMS, misplaced]), 'marker on line 2').rejects.toThrow(
        `Migration ${misplaced.name} has "${NO_TRANSACTION_MARKER}" on line 2`,
      );

      // Nothing was applied, not even the migration before it.
      expect(await recordedNames(db), 'recorded').toEqual([]);
      const tables = await db.sql.query<{ name: string | null }>(`SELECT to_regclass('items')::text AS name`);
      expect(tables[0]?.name, 'items table').toBeNull();
    });
  });

  it('standard_conforming_strings off rejected first', async () => {
    await withDatabase(async (db) => {
      // The pool has one connection, so the migration session gets this setting.
      await db.sql.query('SET standard_conforming_strings = off');
      try {
        await expect(migrate(db.sql, ITEM_MIGRATIONS), 'error').rejects.toThrow(
          `Migration ${INDEX_ITEMS.name} runs outside a transaction, and its statement splitter requires standard_conforming_strings = on, but the migration session has "off". Nothing was applied.`,
        );
      } finally {
        await db.sql.query('RESET standard_conforming_strings');
      }

      expect(await recordedNames(db), 'recorded').toEqual([]);
      const tables = await db.sql.query<{ name: string | null }>(`SELECT to_regclass('items')::text AS name`);
      expect(tables[0]?.name, 'items table').toBeNull();
    });
  });

  it('session settings restored', async () => {
    await withDatabase(async (db) => {
      const before = await db.sql.query<{ lock: string; statement: string }>(
        `SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement`,
      );

      await migrate(db.sql, ITEM_MIGRATIONS, { lockTimeoutMs: 1234 });

      const after = await db.sql.query<{ lock: string; statement: string; locks: number }>(
        `SELECT current_setting('lock_timeout') AS lock, current_setting('statement_timeout') AS statement,
           (SELECT count(*)::int FROM pg_locks
            WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS locks`,
      );
      expect(after[0]?.lock, 'lock_timeout').toBe(before[0]?.lock);
      expect(after[0]?.statement, 'statement_timeout').toBe(before[0]?.statement);
      expect(after[0]?.locks, 'advisory locks held').toBe(0);
    });
  });
}

describe('migrations outside a transaction on PGlite', () => {
  sharedCases(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'em-migrate-notx-'));
    const db = await openDatabase({ dataDir, poolSize: 1, statementTimeoutMs: 10_000, logger: pino({ level: 'silent' }) });
    return {
      db,
      close: async () => {
        await db.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
});

describeWithPostgres('migrations outside a transaction on PostgreSQL', () => {
  async function openPostgres(url: string, options: { poolSize?: number; statementTimeoutMs?: number } = {}): Promise<Database> {
    return openDatabase({
      databaseUrl: url,
      dataDir: tmpdir(),
      poolSize: options.poolSize ?? 2,
      statementTimeoutMs: options.statementTimeoutMs ?? 10_000,
      migrationLockTimeoutMs: 0,
      logger: pino({ level: 'silent' }),
    });
  }

  sharedCases(async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    // One connection, so that a setting the migrator left behind shows on the next statement.
    const db = await openPostgres(database.url, { poolSize: 1 });
    return {
      db,
      close: async () => {
        await db.close();
        await database.drop();
      },
    };
  });

  /** Waits until a backend of the database waits for a lock that `pid` holds, and returns its pid. */
  async function waitUntilBlockedBy(client: pg.Client, pid: number): Promise<number> {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const rows = await client.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND $1 = ANY(pg_blocking_pids(pid))`,
        [pid],
      );
      if (rows.rows[0] !== undefined) {
        return rows.rows[0].pid;
      }
      await sleep(50);
    }
    throw new Error(`No backend waited for a lock of backend ${pid} within 200 checks.`);
  }

  /**
   * Opens a write transaction on `items` through `blocker` and returns its
   * backend pid. PostgreSQL ends the transaction after 20 s, so that a failed
   * check cannot leave a build waiting for it for good.
   */
  async function beginItemsWrite(blocker: pg.Client): Promise<number> {
    await blocker.query(`SET idle_in_transaction_session_timeout = '20s'`);
    await blocker.query('BEGIN');
    await blocker.query('INSERT INTO items VALUES (1000, 1000)');
    return (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  }

  it('runs once when processes race', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    const databases = await Promise.all([0, 1, 2].map(() => openPostgres(database.url, { statementTimeoutMs: 100 })));
    try {
      // The sleep, longer than the pools' statement timeout, keeps the other
      // runs waiting for the lock until the build starts. A run blocked in
      // pg_advisory_lock would hold a snapshot that the concurrent build
      // waits for, and the two would deadlock.
      const slow = noTransaction(INDEX_ITEMS.name, ['SELECT pg_sleep(0.3);', ...INDEX_STATEMENTS]);
      const names = [CREATE_ITEMS.name, slow.name, AFTER_ITEMS.name];

      const results = await Promise.all(databases.map((db) => db.migrate([CREATE_ITEMS, slow, AFTER_ITEMS])));

      const appliers = results.filter((result) => result.applied.length > 0);
      expect(appliers.map((result) => result.applied), 'runs that applied').toEqual([names]);
      expect(
        results.filter((result) => result.applied.length === 0).map((result) => result.alreadyApplied),
        'runs that found them applied',
      ).toEqual([names, names]);
      const rows = await databases[0]!.sql.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM "_prisma_migrations" WHERE migration_name = $1`,
        [slow.name],
      );
      expect(rows[0]?.count, 'records of the migration').toBe(1);
      expect(await indexValid(databases[0]!, 'items_b_key'), 'items_b_key').toBe(true);
    } finally {
      await Promise.all(databases.map((db) => db.close()));
      await database.drop();
    }
  });

  it('inserts go on during the build', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    const db = await openPostgres(database.url);
    const blocker = new pg.Client({ connectionString: database.url });
    const writer = new pg.Client({ connectionString: database.url });
    const watcher = new pg.Client({ connectionString: database.url });
    let migrating: Promise<unknown> | undefined;
    try {
      const migrations = await readMigrations(MIGRATIONS_DIR);
      await db.migrate(migrations.filter((migration) => migration.name !== FLAG_INDEXES_MIGRATION));
      const userId = randomUUID();
      await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'writer', 'MEMBER', 'x')`, [userId]);
      const insertEvent = `INSERT INTO events (id, user_id, seq, client_id, type, role, occurred_at, received_at, origin, pos_at, pos_seq)
        VALUES (gen_random_uuid(), $1, $2::int, 'c' || $2::int, 'heartbeat', 'POINT', now(), now(), 'CLIENT', now(), $2::int)`;

      // An intake transaction that is still open when the migration starts.
      // The index builds wait for it. PostgreSQL ends it after 20 s, so that
      // a failed check cannot leave the migration waiting for good.
      await Promise.all([blocker.connect(), writer.connect(), watcher.connect()]);
      await blocker.query(`SET idle_in_transaction_session_timeout = '20s'`);
      await blocker.query('BEGIN');
      await blocker.query(insertEvent, [userId, 1]);
      const blockerPid = (await blocker.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

      migrating = db.migrate(migrations);
      const migratorPid = await waitUntilBlockedBy(watcher, blockerPid);

      // A plain CREATE INDEX queues for a SHARE lock behind the open
      // transaction, and this insert would queue behind it until the lock timeout.
      await writer.query(`SET lock_timeout = '5s'`);
      await expect(writer.query(insertEvent, [userId, 2]), 'insert while the build waits').resolves.toBeDefined();
      const waiting = await watcher.query<{ query: string }>(`SELECT query FROM pg_stat_activity WHERE pid = $1`, [migratorPid]);
      expect(waiting.rows[0]?.query, 'statement of the waiting migration').toMatch(/^CREATE INDEX CONCURRENTLY/);

      await blocker.query('COMMIT');
      const result = (await migrating) as MigrationResult;

      expect(result.applied, 'applied').toEqual([FLAG_INDEXES_MIGRATION]);
      for (const name of FLAG_INDEXES) {
        expect(await indexValid(db, name), name).toBe(true);
      }
      const events = await db.sql.query<{ count: number }>(
        `SELECT count(*)::int AS count FROM events WHERE user_id = $1 AND origin = 'CLIENT' AND NOT orphan`,
        [userId],
      );
      expect(events[0]?.count, 'events of the writer').toBe(2);
    } finally {
      await Promise.all([blocker.end(), writer.end(), watcher.end()]);
      // With the blocker gone, a migration that a failed check left running ends.
      await migrating?.catch(() => undefined);
      await db.close();
      await database.drop();
    }
  });

  it('concurrent build waits past the lock timeout', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    const db = await openPostgres(database.url);
    const blocker = new pg.Client({ connectionString: database.url });
    const watcher = new pg.Client({ connectionString: database.url });
    let migrating: Promise<MigrationResult> | undefined;
    try {
      await migrate(db.sql, [CREATE_ITEMS]);
      await Promise.all([blocker.connect(), watcher.connect()]);
      const blockerPid = await beginItemsWrite(blocker);

      let settled = false;
      migrating = migrate(db.sql, [CREATE_ITEMS, INDEX_ITEMS, AFTER_ITEMS], { lockTimeoutMs: 200 });
      void migrating.then(
        () => (settled = true),
        () => (settled = true),
      );
      await waitUntilBlockedBy(watcher, blockerPid);
      // With the 200 ms lock timeout, the build would have failed by now.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      expect(settled, 'migration settled while the build waits').toBe(false);

      await blocker.query('COMMIT');
      const result = await migrating;

      expect(result.applied, 'applied').toEqual([INDEX_ITEMS.name, AFTER_ITEMS.name]);
      expect(await indexValid(db, 'items_a_key'), 'items_a_key').toBe(true);
      const setting = await db.sql.query<{ value: string }>(`SELECT current_setting('lock_timeout') AS value`);
      expect(setting[0]?.value, 'lock_timeout of the pool afterwards').toBe('0');
    } finally {
      await Promise.all([blocker.end(), watcher.end()]);
      await migrating?.catch(() => undefined);
      await db.close();
      await database.drop();
    }
  });

  it('reports a build whose connection ended', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    const db = await openPostgres(database.url);
    const blocker = new pg.Client({ connectionString: database.url });
    const watcher = new pg.Client({ connectionString: database.url });
    try {
      await migrate(db.sql, [CREATE_ITEMS]);
      await Promise.all([blocker.connect(), watcher.connect()]);
      const blockerPid = await beginItemsWrite(blocker);

      const migrating = migrate(db.sql, [CREATE_ITEMS, INDEX_ITEMS], { lockTimeoutMs: 200 }).then(
        () => null,
        (failure: unknown) => failure,
      );
      const migratorPid = await waitUntilBlockedBy(watcher, blockerPid);
      await watcher.query('SELECT pg_terminate_backend($1)', [migratorPid]);
      const error = await migrating;

      // Not the error of restoring lock_timeout on the closed connection.
      expect((error as Error | null)?.message, 'message').toContain(
        `Migration ${INDEX_ITEMS.name} failed at statement 2 of 4: terminating connection due to administrator command.`,
      );
      expect((error as Error | null)?.message, 'earlier statement').toContain('Its earlier statement stays applied');
      expect(await recordedNames(db), 'recorded').toEqual([CREATE_ITEMS.name]);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      await Promise.all([blocker.end(), watcher.end()]);
      await db.close();
      await database.drop();
    }
  });

  it('lock wait of a marked migration times out', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_notx' });
    const db = await openPostgres(database.url);
    const blocker = new pg.Client({ connectionString: database.url });
    try {
      await migrate(db.sql, [CREATE_ITEMS]);
      const before = withChecksum('99990101500000_test_before_alter', 'CREATE TABLE before_alter (id integer);');
      // ALTER TABLE is no concurrent statement, so the lock timeout limits its wait.
      const alter = noTransaction('99990102000000_test_items_alter', [
        'CREATE TABLE IF NOT EXISTS side_items (id integer);',
        'ALTER TABLE items ADD COLUMN IF NOT EXISTS c integer;',
      ]);
      await blocker.connect();
      await beginItemsWrite(blocker);

      const error: unknown = await migrate(db.sql, [CREATE_ITEMS, before, alter, AFTER_ITEMS], { lockTimeoutMs: 200 }).then(
        () => null,
        (failure: unknown) => failure,
      );

      expect(error, 'error class').toBeInstanceOf(MigrationLockTimeoutError);
      expect((error as Error).message, 'message').toContain(
        `Migration ${alter.name} failed: it waited more than 200 ms (DB_MIGRATION_LOCK_TIMEOUT_MS) for a lock`,
      );
      expect((error as Error).message, 'migrations before it').toContain(
        `The pending migration before it was applied, up to ${before.name}.`,
      );
      expect((error as Error).message, 'earlier statements').toContain('Its earlier statements stay applied');
      expect(await recordedNames(db), 'recorded').toEqual([CREATE_ITEMS.name, before.name]);

      await blocker.query('COMMIT');
      const result = await migrate(db.sql, [CREATE_ITEMS, before, alter, AFTER_ITEMS], { lockTimeoutMs: 200 });

      expect(result.applied, 'retry').toEqual([alter.name, AFTER_ITEMS.name]);
    } finally {
      await blocker.end();
      await db.close();
      await database.drop();
    }
  });
});
