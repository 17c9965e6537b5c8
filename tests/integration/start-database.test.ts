/**
 * A start whose DATABASE_URL names a PostgreSQL server that refuses the
 * connection exits with code 1 and logs one line that names the setting, with
 * the password masked and without a stack trace. So does a start whose
 * migrations wait longer than DB_MIGRATION_LOCK_TIMEOUT_MS for a lock.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { runCli, unusedLoopbackPort, useTemporaryDirectory } from '../support/cli.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

describe('start without PostgreSQL', () => {
  const password = 'pg-password-not-printed';
  const dataDir = useTemporaryDirectory('em-start-database-');

  it('unreachable PostgreSQL exits 1', async () => {
    const port = await unusedLoopbackPort();
    const result = await runCli(
      'src/main.ts',
      [],
      {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: dataDir(),
        DATABASE_URL: `postgresql://postgres:${password}@127.0.0.1:${port}/missing`,
      },
      { timeoutMs: 60_000 },
    );
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain(
      `Event Master cannot start: connecting to PostgreSQL at postgresql://postgres:***@127.0.0.1:${port}/missing ` +
        `(DATABASE_URL) failed: connect ECONNREFUSED 127.0.0.1:${port}. Check that PostgreSQL is running`,
    );
    expect(output, 'stack trace').not.toMatch(/^\s+at /m);
    // The log is JSON under production, where a stack trace would be a "stack" field.
    expect(output, 'stack field').not.toContain('"stack"');
    expect(output, 'password').not.toContain(password);
  }, 60_000);
});

describeWithPostgres('start behind a locked table', () => {
  const dataDir = useTemporaryDirectory('em-start-locked-');

  it('migration lock timeout exits 1', async () => {
    const database = await openMigratedTestDatabase(postgresUrl() as string, { prefix: 'em_test_start_locked', poolSize: 1 });
    const blocker = new pg.Client({ connectionString: database.url });
    try {
      // The start reads the migration history, which this lock keeps it from.
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE "_prisma_migrations" IN ACCESS EXCLUSIVE MODE');

      const result = await runCli(
        'src/main.ts',
        [],
        {
          PATH: process.env.PATH ?? '',
          NODE_ENV: 'production',
          HOST: '127.0.0.1',
          PORT: '0',
          DATA_DIR: dataDir(),
          DATABASE_URL: database.url,
          DB_MIGRATION_LOCK_TIMEOUT_MS: '200',
        },
        { timeoutMs: 60_000 },
      );
      const output = result.stdout + result.stderr;

      expect(result.code, 'exit code').toBe(1);
      expect(output, 'message').toContain(
        'Event Master cannot start: Reading the migration history (_prisma_migrations) failed: it waited more than 200 ms (DB_MIGRATION_LOCK_TIMEOUT_MS)',
      );
      expect(output, 'stack field').not.toContain('"stack"');
      expect(output, 'stack trace').not.toMatch(/^\s+at /m);
    } finally {
      await blocker.end();
      await database.drop();
    }
  }, 60_000);
});
