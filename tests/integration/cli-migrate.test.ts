/**
 * `npm run migrate` as a child process: on a temporary DATA_DIR (embedded
 * PGlite) and, with DATABASE_URL, on a fresh PostgreSQL database that two
 * copies migrate at the same time.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MIGRATIONS_DIR, openDatabase } from '../../src/storage/postgres/database.js';
import { readMigrations } from '../../src/storage/postgres/migrator.js';
import { runCli, type CliResult } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

function runMigrate(args: string[], extraEnv: Record<string, string>): Promise<CliResult> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    NODE_ENV: 'test',
    ...extraEnv,
  };
  return runCli('src/cli/migrate.ts', args, env);
}

function appliedNames(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((line) => /^Applied \d{14}_/.test(line))
    .map((line) => line.slice('Applied '.length));
}

async function migrationNames(): Promise<string[]> {
  return (await readMigrations(MIGRATIONS_DIR)).map((migration) => migration.name);
}

// The tests run in order on one DATA_DIR, each from the state the previous one left.
describe('migrate CLI on PGlite', () => {
  let dataDir: string;
  let names: string[];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'em-cli-migrate-'));
    names = await migrationNames();
  });

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('first run applies all', async () => {
    const result = await runMigrate([], { DATA_DIR: dataDir });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`Database: embedded PGlite in ${dataDir}`);
    expect(appliedNames(result.stdout)).toEqual(names);
    expect(result.stdout).toContain(`Applied ${names.length} migration`);
  });

  it('second run applies nothing', async () => {
    const result = await runMigrate([], { DATA_DIR: dataDir });
    expect(result.code).toBe(0);
    expect(appliedNames(result.stdout)).toEqual([]);
    expect(result.stdout).toContain(`No pending migrations; ${names.length} migration`);
  });

  it('warns of a migration it lacks', async () => {
    const future = '29991231000000_from_a_newer_version';
    const record = async (sql: string, parameters: unknown[]) => {
      const db = await openDatabase({ dataDir, poolSize: 1, statementTimeoutMs: 10_000, logger: pino({ level: 'silent' }) });
      try {
        await db.sql.query(sql, parameters);
      } finally {
        await db.close();
      }
    };
    await record(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, finished_at, applied_steps_count) VALUES ($1, $2, $1, now(), 1)`,
      [future, 'f'.repeat(64)],
    );

    try {
      const result = await runMigrate([], { DATA_DIR: dataDir });
      expect(result.code).toBe(0);
      expect(result.stderr).toContain(
        `warning: the database has 1 applied migration that this version does not contain: ${future}.`,
      );
      expect(result.stdout).toContain(`No pending migrations; ${names.length} migration`);
    } finally {
      await record(`DELETE FROM "_prisma_migrations" WHERE migration_name = $1`, [future]);
    }
  });

  it('changed checksum exits 1', async () => {
    const db = await openDatabase({ dataDir, poolSize: 1, statementTimeoutMs: 10_000, logger: pino({ level: 'silent' }) });
    try {
      await db.sql.query(`UPDATE "_prisma_migrations" SET checksum = $1 WHERE migration_name = $2`, ['f'.repeat(64), names[0]]);
    } finally {
      await db.close();
    }

    const result = await runMigrate([], { DATA_DIR: dataDir });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`Migration ${names[0]} was changed after it was applied`);
    expect(appliedNames(result.stdout)).toEqual([]);
  });

  it.concurrent.each([
    [['--help'], 0, 'Usage: npm run migrate'],
    [['-h'], 0, 'Usage: npm run migrate'],
    [['--force'], 2, "Unknown option '--force'"],
    [['extra'], 2, "Unexpected argument 'extra'"],
  ])('arguments %j exit %i', async (args, code, text) => {
    const result = await runMigrate(args, { DATA_DIR: dataDir });
    expect(result.code).toBe(code);
    expect(result.stdout + result.stderr).toContain(text);
  });

  it('invalid configuration exits 2', async () => {
    const result = await runMigrate([], { DATA_DIR: dataDir, DATABASE_URL: 'mysql://127.0.0.1/app' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('Invalid configuration');
    expect(result.stderr).toContain('DATABASE_URL');
  });

  it('DATA_DIR that is a file exits 2', async () => {
    const file = join(dataDir, 'not-a-directory');
    writeFileSync(file, 'x\n');

    const result = await runMigrate([], { DATA_DIR: file });

    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`DATA_DIR is "${file}"`);
    expect(result.stderr).toContain('ENOTDIR');
  });

  it('unreachable PostgreSQL exits 1', async () => {
    const probe = createServer();
    await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
    const address = probe.address();
    await new Promise<void>((done) => probe.close(() => done()));
    const port = typeof address === 'object' && address !== null ? address.port : 1;
    const password = 'pg-password-not-printed';

    const result = await runMigrate([], {
      DATA_DIR: dataDir,
      DATABASE_URL: `postgresql://postgres:${password}@127.0.0.1:${port}/missing`,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('failed');
    expect(result.stderr).toContain('ECONNREFUSED');
    expect(result.stderr).toContain(`postgresql://postgres:***@127.0.0.1:${port}/missing (DATABASE_URL) failed`);
    expect(result.stderr).toContain('Check that PostgreSQL is running');
    expect(result.stdout + result.stderr).not.toContain(password);
  });
});

describeWithPostgres('migrate CLI on PostgreSQL', () => {
  let databaseUrl: string;
  let database: TestDatabase | undefined;
  let names: string[];

  beforeAll(async () => {
    names = await migrationNames();
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli_migrate' });
    databaseUrl = database.url;
  });

  afterAll(async () => {
    await database?.drop();
  });

  async function recordedNames(): Promise<string[]> {
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const result = await client.query<{ migration_name: string }>(
        `SELECT migration_name FROM "_prisma_migrations" ORDER BY migration_name`,
      );
      return result.rows.map((row) => row.migration_name);
    } finally {
      await client.end();
    }
  }

  it('two processes apply once', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'em-cli-migrate-pg-'));
    try {
      const env = { DATA_DIR: dataDir, DATABASE_URL: databaseUrl };
      const [first, second] = await Promise.all([runMigrate([], env), runMigrate([], env)]);

      expect(first.code).toBe(0);
      expect(second.code).toBe(0);
      // Each migration is reported by exactly one of the two processes.
      expect([...appliedNames(first.stdout), ...appliedNames(second.stdout)].sort()).toEqual(names);
      expect(await recordedNames()).toEqual(names);

      const third = await runMigrate([], env);
      expect(third.code).toBe(0);
      expect(appliedNames(third.stdout)).toEqual([]);
      expect(await recordedNames()).toEqual(names);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
