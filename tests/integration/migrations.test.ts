/**
 * The migrator on embedded PGlite and on PostgreSQL: a second run applies
 * nothing, concurrent runs apply each migration once, and a migration that
 * changed after it was applied stops the run before anything else applies.
 * A migration statement that waits longer than its lock timeout fails the
 * run with an error that names the migration.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MIGRATIONS_DIR, openDatabase, type Database } from '../../src/storage/postgres/database.js';
import { MigrationLockTimeoutError, migrate, readMigrations, type Migration } from '../../src/storage/postgres/migrator.js';
import { createTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

interface MigrationRow {
  migration_name: string;
  checksum: string;
  finished: boolean;
}

async function migrationRows(db: Database): Promise<MigrationRow[]> {
  return db.sql.query<MigrationRow>(
    `SELECT migration_name, checksum, finished_at IS NOT NULL AS finished
     FROM "_prisma_migrations" ORDER BY migration_name`,
  );
}

async function tableExists(db: Database, table: string): Promise<boolean> {
  const rows = await db.sql.query<{ name: string | null }>(`SELECT to_regclass($1)::text AS name`, [table]);
  return rows[0]?.name !== null && rows[0]?.name !== undefined;
}

function withChecksum(name: string, sql: string): Migration {
  return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
}

async function openPostgres(url: string): Promise<Database> {
  return openDatabase({
    databaseUrl: url,
    dataDir: tmpdir(),
    poolSize: 2,
    statementTimeoutMs: 10_000,
    logger: pino({ level: 'silent' }),
  });
}

/**
 * Registers the sequential cases on one database. `open` returns a fresh,
 * empty database, and each test continues from the state the previous one left.
 */
function sequentialCases(open: () => Promise<{ db: Database; close: () => Promise<void> }>): void {
  let db: Database;
  let close: () => Promise<void>;
  let migrations: Migration[];

  beforeAll(async () => {
    ({ db, close } = await open());
    migrations = await readMigrations(MIGRATIONS_DIR);
  });

  afterAll(async () => {
    await close?.();
  });

  it('first run applies all', async () => {
    expect(migrations.length).toBeGreaterThan(0);
    const names = migrations.map((migration) => migration.name);

    const result = await db.migrate();
    expect(result.applied).toEqual(names);
    expect(result.alreadyApplied).toEqual([]);

    const rows = await migrationRows(db);
    expect(rows.map((row) => row.migration_name)).toEqual(names);
    expect(rows.map((row) => row.checksum)).toEqual(migrations.map((migration) => migration.checksum));
    expect(rows.every((row) => row.finished)).toBe(true);
    expect(await tableExists(db, 'users')).toBe(true);
  });

  it('second run applies nothing', async () => {
    const result = await db.migrate();
    expect(result.applied).toEqual([]);
    expect(result.alreadyApplied).toEqual(migrations.map((migration) => migration.name));
    expect(await migrationRows(db)).toHaveLength(migrations.length);
  });

  it('new migration applied alone', async () => {
    const extra = withChecksum('99990101000000_test_extra', 'CREATE TABLE migration_test_extra (id integer PRIMARY KEY);');

    const result = await migrate(db.sql, [...migrations, extra]);
    expect(result.applied).toEqual([extra.name]);
    expect(await tableExists(db, 'migration_test_extra')).toBe(true);
    expect(await migrationRows(db)).toHaveLength(migrations.length + 1);
  });

  it('edited migration rejected', async () => {
    const [first, ...rest] = migrations;
    if (first === undefined) {
      throw new Error('No migrations found.');
    }
    const edited = withChecksum(first.name, `${first.sql}\n-- edited after it was applied\n`);
    const later = withChecksum('99990201000000_test_later', 'CREATE TABLE migration_test_later (id integer PRIMARY KEY);');
    const before = await migrationRows(db);

    await expect(migrate(db.sql, [edited, ...rest, later])).rejects.toThrow(
      new RegExp(`Migration ${first.name} was changed after it was applied`),
    );

    // The run is one transaction: the later migration is not applied either.
    expect(await tableExists(db, 'migration_test_later')).toBe(false);
    expect(await migrationRows(db)).toEqual(before);
  });

  it('tampered checksum rejected', async () => {
    const [first] = migrations;
    await db.sql.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, [
      '0'.repeat(64),
      first?.name,
    ]);

    await expect(db.migrate()).rejects.toThrow(/was changed after it was applied/);
    await expect(db.migrate()).rejects.toThrow(`recorded ${'0'.repeat(64)}`);
  });
}

describe('migrations on PGlite', () => {
  sequentialCases(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'em-migrate-'));
    const db = await openDatabase({
      dataDir,
      poolSize: 1,
      statementTimeoutMs: 10_000,
      logger: pino({ level: 'silent' }),
    });
    return {
      db,
      close: async () => {
        await db.close();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  });
});

describeWithPostgres('migrations on PostgreSQL', () => {
  describe('sequential', () => {
    sequentialCases(async () => {
      const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_migrate' });
      const db = await openPostgres(database.url);
      return {
        db,
        close: async () => {
          await db.close();
          await database.drop();
        },
      };
    });
  });

  it('runs past the statement timeout', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_migrate' });
    const open = () =>
      openDatabase({
        databaseUrl: database.url,
        dataDir: tmpdir(),
        poolSize: 1,
        statementTimeoutMs: 100,
        migrationLockTimeoutMs: 100,
        logger: pino({ level: 'silent' }),
      });
    const [first, second] = await Promise.all([open(), open()]);
    try {
      // Longer than the pools' statement timeout, as a backfill of a large
      // table can be. The second run waits as long for the advisory lock,
      // which the migration lock timeout does not limit.
      const slow = withChecksum('20990101000000_slow', 'SELECT pg_sleep(0.3); CREATE TABLE slow_done (id int);');
      const results = await Promise.all([first.migrate([slow]), second.migrate([slow])]);

      expect(results.map((result) => result.applied.length).sort(), 'migrations applied by each run').toEqual([0, 1]);
      expect(await tableExists(first, 'slow_done'), 'table of the slow migration').toBe(true);
      await expect(first.sql.query('SELECT pg_sleep(0.3)'), 'statement outside a migration').rejects.toThrow(/statement timeout/);
    } finally {
      await Promise.all([first.close(), second.close()]);
      await database.drop();
    }
  });

  it('lock wait times out', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_migrate' });
    const db = await openDatabase({
      databaseUrl: database.url,
      dataDir: tmpdir(),
      poolSize: 1,
      statementTimeoutMs: 10_000,
      migrationLockTimeoutMs: 200,
      logger: pino({ level: 'silent' }),
    });
    const blocker = new pg.Client({ connectionString: database.url });
    try {
      await db.migrate();
      const before = await migrationRows(db);
      // A transaction that read from users holds a lock that ALTER TABLE
      // waits for. PostgreSQL ends the transaction after 20 s, so that a
      // migration without a lock timeout finishes, and this test fails, in
      // place of waiting for good.
      await blocker.connect();
      await blocker.query(`SET idle_in_transaction_session_timeout = '20s'`);
      await blocker.query('BEGIN');
      await blocker.query('SELECT count(*) FROM users');
      const alter = withChecksum('99990301000000_test_alter', 'ALTER TABLE users ADD COLUMN lock_test integer;');
      const later = withChecksum('99990302000000_test_after_alter', 'CREATE TABLE migration_test_after_alter (id integer);');

      const error: unknown = await migrate(db.sql, [alter, later], { lockTimeoutMs: 200 }).then(
        () => null,
        (failure: unknown) => failure,
      );

      expect(error, 'error class').toBeInstanceOf(MigrationLockTimeoutError);
      expect((error as Error).message, 'message').toContain(
        'Migration 99990301000000_test_alter failed: it waited more than 200 ms (DB_MIGRATION_LOCK_TIMEOUT_MS) for a lock',
      );
      expect((error as Error).message, 'advice').toContain('pg_stat_activity');
      expect(await tableExists(db, 'migration_test_after_alter'), 'later migration applied').toBe(false);
      expect(await migrationRows(db), 'recorded migrations').toEqual(before);

      // db.migrate() takes the timeout from the options of openDatabase.
      await blocker.query('LOCK TABLE "_prisma_migrations" IN ACCESS EXCLUSIVE MODE');
      await expect(db.migrate(), 'history table locked').rejects.toThrow(
        'Reading the migration history (_prisma_migrations) failed: it waited more than 200 ms',
      );
    } finally {
      await blocker.end();
      await db.close();
      await database.drop();
    }
  });

  it('concurrent runs apply once', async () => {
    const database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_migrate' });
    const databases = await Promise.all([0, 1, 2].map(() => openPostgres(database.url)));
    try {
      const names = (await readMigrations(MIGRATIONS_DIR)).map((migration) => migration.name);

      const results = await Promise.all(databases.map((db) => db.migrate()));

      // Exactly one run applied everything, and the others found nothing pending.
      const appliers = results.filter((result) => result.applied.length > 0);
      expect(appliers).toHaveLength(1);
      expect(appliers[0]?.applied).toEqual(names);
      const waiters = results.filter((result) => result.applied.length === 0);
      expect(waiters.map((result) => result.alreadyApplied)).toEqual([names, names]);

      const rows = await migrationRows(databases[0] as Database);
      expect(rows.map((row) => row.migration_name)).toEqual(names);
    } finally {
      await Promise.all(databases.map((db) => db.close()));
      await database.drop();
    }
  });
});

describe('username case migration on PGlite', () => {
  const NAME = '20261205090000_username_case';
  const dirs: string[] = [];
  const dbs: Database[] = [];

  async function fresh(): Promise<Database> {
    const dataDir = mkdtempSync(join(tmpdir(), 'em-migrate-case-'));
    dirs.push(dataDir);
    const db = await openDatabase({ dataDir, poolSize: 1, statementTimeoutMs: 10_000, logger: pino({ level: 'silent' }) });
    dbs.push(db);
    return db;
  }

  async function addUser(db: Database, username: string): Promise<void> {
    await db.sql.query(
      `INSERT INTO users (id, username, role, password_hash) VALUES (gen_random_uuid(), $1, 'MEMBER', 'x')`,
      [username],
    );
  }

  afterAll(async () => {
    for (const db of dbs) {
      await db.close();
    }
    for (const dir of dirs) {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a case variant', async () => {
    const db = await fresh();
    await migrate(db.sql, await readMigrations(MIGRATIONS_DIR));
    await addUser(db, 'Case-Owner');

    await expect(addUser(db, 'case-owner')).rejects.toThrow(/users_username_lower_key/);
    expect(await tableExists(db, 'users_username_lower_key')).toBe(true);
  });

  it('keeps existing case variants', async () => {
    const db = await fresh();
    const migrations = await readMigrations(MIGRATIONS_DIR);
    await migrate(
      db.sql,
      migrations.filter((migration) => migration.name !== NAME),
    );
    await addUser(db, 'Clash');
    await addUser(db, 'clash');

    await migrate(db.sql, migrations);

    expect((await migrationRows(db)).map((row) => row.migration_name)).toContain(NAME);
    expect(await tableExists(db, 'users_username_lower_key')).toBe(false);
  });
});
