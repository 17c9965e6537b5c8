/**
 * `npm run rebuild -- --full` as a child process on a PostgreSQL database
 * that a server filled: it recomputes the derived rows and leaves no report
 * rollup chunk stale. Without PostgreSQL or Redis it exits with a one-line
 * message that names the setting. It does the same when its migrations wait
 * longer than DB_MIGRATION_LOCK_TIMEOUT_MS for a lock. Its output puts a
 * count of one with a singular noun, as in "1 user".
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { JWT_SECRET_FILE_NAME } from '../../src/config/index.js';
import { startTestServer } from '../support/app.js';
import { runCli, unusedLoopbackPort, useTemporaryDirectory, type CliResult } from '../support/cli.js';
import { createTestDatabase, openMigratedTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

/** Runs the rebuild without JWT_SECRET, with its data folder in `dataDir`. */
function runRebuild(databaseUrl: string, dataDir: string): Promise<CliResult> {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    DATA_DIR: dataDir,
  };
  return runCli('src/cli/rebuild.ts', ['--full'], env, { timeoutMs: 60_000 });
}

describeWithPostgres('rebuild command', () => {
  let database: TestDatabase | undefined;
  let client: pg.Client;

  beforeAll(async () => {
    // The server stores a closed session and a closed task. Its builder waits
    // 10 minutes before a rebuild, so their chunks stay stale.
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli_rebuild' });
    const server = await startTestServer(import.meta.filename, {
      databaseUrl: database.url,
      env: { ROLLUP_DELAY_MS: '600000' },
    });
    const member = await server.createUser('rebuilder', 'MEMBER');
    const sent = await server.gql(
      `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`,
      {
        events: [
          { type: 'session_started', occurredAt: '2026-03-02T08:00:00Z' },
          { type: 'task_started', pairKey: 'a', occurredAt: '2026-03-02T08:10:00Z' },
          { type: 'task_ended', pairKey: 'a', occurredAt: '2026-03-02T08:20:00Z' },
          { type: 'session_ended', occurredAt: '2026-03-02T08:30:00Z' },
        ],
      },
      member.token,
    );
    expect(sent.errors).toBeUndefined();
    // The test server does not drop a database it was given.
    await server.close();

    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  }, 60_000);

  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  it('rebuilds stale rollup chunks', async () => {
    const before = await client.query<{ count: number }>('SELECT count(*)::int AS count FROM segment_rollup_stale');
    expect(before.rows[0]?.count).toBeGreaterThan(0);

    // The full rebuild does the replay that a pair type change queued. It also
    // applies a change old enough to be queued, and leaves a recent one to the servers.
    await client.query(
      `INSERT INTO pending_replays (user_id, pair_types, requested_at)
       SELECT id, ARRAY['task'], now() FROM users WHERE username = 'rebuilder'`,
    );
    await client.query(
      `INSERT INTO pair_type_changes (pair_type, skip_overrides, changed_at)
       VALUES ('task', true, now() - interval '1 minute'), ('session', false, now() + interval '1 minute')`,
    );

    const dataDir = mkdtempSync(join(tmpdir(), 'em-rebuild-'));
    const result = await runRebuild((database as TestDatabase).url, dataDir);
    // The rebuild serves no requests, so it needs no token secret.
    const secretCreated = existsSync(join(dataDir, JWT_SECRET_FILE_NAME));
    rmSync(dataDir, { recursive: true, force: true });
    expect(result.code, result.stderr).toBe(0);
    expect(secretCreated, 'secret file created').toBe(false);
    expect(`${result.stdout}${result.stderr}`, 'output').not.toContain('JWT_SECRET');
    expect(result.stdout).toMatch(/Rebuilt derived data and engine state for 2 users\./);
    expect(result.stdout).toMatch(/Rebuilt [1-9]\d* report rollup chunks?\./);

    const after = await client.query<{ count: number }>('SELECT count(*)::int AS count FROM segment_rollup_stale');
    expect(after.rows[0]?.count).toBe(0);
    const queued = await client.query<{ count: number }>('SELECT count(*)::int AS count FROM pending_replays');
    expect(queued.rows[0]?.count, 'replays still queued').toBe(0);
    const changes = await client.query<{ pair_type: string }>('SELECT pair_type FROM pair_type_changes');
    expect(changes.rows, 'changes left for the servers').toEqual([{ pair_type: 'session' }]);
    expect(result.stdout).toContain('The rebuild applied 1 pair type change that');
    const rollups = await client.query<{ pair_type: string; all_keys: boolean; pair_key: string }>(
      `SELECT pair_type, all_keys, pair_key FROM segment_rollups ORDER BY pair_type, all_keys, pair_key`,
    );
    expect(rollups.rows).toEqual([
      { pair_type: 'session', all_keys: false, pair_key: '' },
      { pair_type: 'session', all_keys: true, pair_key: '' },
      { pair_type: 'task', all_keys: false, pair_key: 'a' },
      { pair_type: 'task', all_keys: true, pair_key: '' },
    ]);
  }, 90_000);
});

describeWithPostgres('rebuild command with one user', () => {
  let database: TestDatabase | undefined;
  const dataDir = useTemporaryDirectory('em-rebuild-one-');

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli_rebuild_one' });
  });

  afterAll(async () => {
    await database?.drop();
  });

  it('counts in the singular', async () => {
    // The rebuild migrates the empty database and creates the admin, its only user.
    const result = await runCli(
      'src/cli/rebuild.ts',
      ['--full'],
      {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? tmpdir(),
        NODE_ENV: 'test',
        LOG_LEVEL: 'warn',
        DATABASE_URL: (database as TestDatabase).url,
        DATA_DIR: dataDir(),
        ADMIN_USERNAME: 'admin',
        ADMIN_PASSWORD: 'admin-password-1',
        PASSWORD_SCRYPT_LOG2_N: '14',
      },
      { timeoutMs: 60_000 },
    );

    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout, 'summary').toContain('Rebuilt derived data and engine state for 1 user.');
    expect(result.stderr, 'progress').toContain('rebuilt 1 of 1 user\n');
    expect(result.stdout, 'rollup chunks').toContain('Rebuilt 0 report rollup chunks.');
  }, 90_000);
});

describe('rebuild command without its services', () => {
  const password = 'service-password-not-printed';
  const dataDir = useTemporaryDirectory('em-rebuild-down-');

  function runRebuildWith(env: Record<string, string>): Promise<CliResult> {
    return runCli(
      'src/cli/rebuild.ts',
      [],
      {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? tmpdir(),
        NODE_ENV: 'production',
        LOG_LEVEL: 'error',
        DATA_DIR: dataDir(),
        ...env,
      },
      { timeoutMs: 60_000 },
    );
  }

  it('unreachable PostgreSQL exits 1', async () => {
    const port = await unusedLoopbackPort();
    const result = await runRebuildWith({
      DATABASE_URL: `postgresql://postgres:${password}@127.0.0.1:${port}/missing`,
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });

    expect(result.code, 'exit code').toBe(1);
    expect(result.stderr, 'message').toContain(
      `error: connecting to PostgreSQL at postgresql://postgres:***@127.0.0.1:${port}/missing (DATABASE_URL) ` +
        `failed: connect ECONNREFUSED 127.0.0.1:${port}. Check that PostgreSQL is running`,
    );
    expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
    expect(result.stdout + result.stderr, 'password').not.toContain(password);
  }, 60_000);

  it('unreachable Redis exits 1', async () => {
    // The database is embedded PGlite in DATA_DIR, so only Redis is missing.
    const port = await unusedLoopbackPort();
    const result = await runRebuildWith({
      REDIS_URL: `redis://:${password}@127.0.0.1:${port}`,
      REDIS_COMMAND_TIMEOUT_MS: '300',
    });

    expect(result.code, 'exit code').toBe(1);
    expect(result.stderr, 'message').toMatch(
      new RegExp(
        `^error: connecting to Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}/? \\(REDIS_URL\\) ` +
          'failed: not connected within 300 ms \\(REDIS_COMMAND_TIMEOUT_MS\\), status \\w+ ' +
          `\\(last connection error: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)\\. Check that Redis is running`,
        'm',
      ),
    );
    expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
    expect(result.stdout + result.stderr, 'password').not.toContain(password);
  }, 60_000);
});

describeWithPostgres('rebuild command with another default', () => {
  let database: TestDatabase | undefined;
  const dataDir = useTemporaryDirectory('em-rebuild-default-');

  afterAll(async () => {
    await database?.drop();
  });

  it('names the changed built-in policy', async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli_rebuild_default' });
    const run = () =>
      runCli(
        'src/cli/rebuild.ts',
        ['--full'],
        {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? tmpdir(),
          NODE_ENV: 'test',
          DATABASE_URL: (database as TestDatabase).url,
          DATA_DIR: dataDir(),
          DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: '3600',
        },
        { timeoutMs: 60_000 },
      );

    const first = await run();
    expect(first.code, 'first exit code').toBe(0);
    expect(first.stdout, 'first output').toContain(
      'The built-in pair types session and task now auto-close after 3600 s (DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS)',
    );

    const second = await run();
    expect(second.code, 'second exit code').toBe(0);
    expect(second.stdout, 'second output').not.toContain('DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS');
  }, 60_000);
});

describeWithPostgres('rebuild command with Redis down', () => {
  let database: TestDatabase | undefined;

  afterAll(async () => {
    await database?.drop();
  });

  it('leaves the built-in policy unchanged', async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli_rebuild_down' });
    const port = await unusedLoopbackPort();
    const result = await runCli(
      'src/cli/rebuild.ts',
      [],
      {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? tmpdir(),
        NODE_ENV: 'production',
        LOG_LEVEL: 'error',
        DATABASE_URL: database.url,
        REDIS_URL: `redis://127.0.0.1:${port}`,
        REDIS_COMMAND_TIMEOUT_MS: '300',
        DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: '3600',
      },
      { timeoutMs: 60_000 },
    );
    expect(result.code, 'exit code').toBe(1);
    expect(result.stderr, 'message').toContain('error: connecting to Redis');

    // The migrations ran, so the built-in pair types exist with the default policy.
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const policies = await client.query<{ name: string; timeout_seconds: number }>(
        'SELECT name, timeout_seconds FROM pair_types WHERE built_in ORDER BY name',
      );
      const changes = await client.query<{ count: string }>('SELECT count(*) FROM pair_type_changes');
      expect(policies.rows, 'built-in policies').toEqual([
        { name: 'session', timeout_seconds: 1800 },
        { name: 'task', timeout_seconds: 1800 },
      ]);
      expect(changes.rows[0]?.count, 'recorded pair type changes').toBe('0');
    } finally {
      await client.end();
    }
  }, 60_000);
});

describeWithPostgres('rebuild command behind a locked table', () => {
  const dataDir = useTemporaryDirectory('em-rebuild-locked-');

  it('migration lock timeout exits 1', async () => {
    const database = await openMigratedTestDatabase(postgresUrl() as string, { prefix: 'em_test_rebuild_locked', poolSize: 1 });
    const blocker = new pg.Client({ connectionString: database.url });
    try {
      // The rebuild applies pending migrations first and reads the migration
      // history for that, which this lock keeps it from.
      await blocker.connect();
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE "_prisma_migrations" IN ACCESS EXCLUSIVE MODE');

      const result = await runCli(
        'src/cli/rebuild.ts',
        ['--full'],
        {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? tmpdir(),
          NODE_ENV: 'production',
          LOG_LEVEL: 'error',
          DATA_DIR: dataDir(),
          DATABASE_URL: database.url,
          DB_MIGRATION_LOCK_TIMEOUT_MS: '200',
        },
        { timeoutMs: 60_000 },
      );

      expect(result.code, 'exit code').toBe(1);
      expect(result.stderr, 'message').toContain(
        'error: Reading the migration history (_prisma_migrations) failed: it waited more than 200 ms (DB_MIGRATION_LOCK_TIMEOUT_MS)',
      );
      expect(result.stderr, 'next step').toContain('Then try again, or raise DB_MIGRATION_LOCK_TIMEOUT_MS.');
      expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
    } finally {
      await blocker.end();
      await database.drop();
    }
  }, 60_000);
});

describe('rebuild arguments', () => {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), NODE_ENV: 'test' };

  // Concurrent: these runs stop before they read the configuration.
  it.concurrent.each([
    [['--help'], 0, 'Usage: npm run rebuild'],
    [['-h'], 0, 'Usage: npm run rebuild'],
    [['--ful'], 2, "error: Unknown option '--ful'"],
    [['--full=yes'], 2, "error: Option '--full' does not take an argument"],
    [['alice'], 2, "error: Unexpected argument 'alice'"],
  ])('arguments %j exit %i', async (args, code, text) => {
    const result = await runCli('src/cli/rebuild.ts', args, env);
    expect(result.code).toBe(code);
    expect(result.stdout + result.stderr).toContain(text);
  });
});
