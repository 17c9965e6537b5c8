/**
 * An idle pooled PostgreSQL connection that the server ends, as a restart or
 * pg_terminate_backend does, is logged in one short line with the error's
 * message and SQLSTATE code, without the failed client object that pg-pool
 * attaches to the error.
 */
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openDatabase, type Database } from '../../src/storage/postgres/database.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

describeWithPostgres('idle PostgreSQL connection failure', () => {
  // The test server trusts local connections, so it accepts any password.
  const password = 'idle-error-password-not-logged';
  let database: TestDatabase;
  let db: Database;
  let databaseUrl: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_idle_error' });
    const url = new URL(database.url);
    url.username = 'postgres';
    url.password = password;
    databaseUrl = url.toString();
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(chunk.toString('utf8'));
        callback();
      },
    });
    db = await openDatabase({
      databaseUrl,
      dataDir: '.',
      poolSize: 1,
      statementTimeoutMs: 10_000,
      logger: pino({ level: 'info' }, stream),
    });
  });

  afterAll(async () => {
    await db?.close();
    await database?.drop();
  });

  it('logs message and code only', async () => {
    const rows = await db.sql.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    try {
      await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    } finally {
      await admin.end();
    }
    for (let attempt = 0; attempt < 100 && logLines.length === 0; attempt += 1) {
      await sleep(50);
    }

    const entries = logLines.map((line) => JSON.parse(line) as { msg: string; error?: Record<string, unknown>; err?: unknown });
    const failure = entries.find((entry) => entry.msg === 'idle PostgreSQL connection failed');
    expect(failure, logLines.join('\n')).toBeDefined();
    expect(failure?.err, 'whole error object').toBeUndefined();
    expect(failure?.error, 'logged error').toEqual({
      message: 'terminating connection due to administrator command',
      code: '57P01',
    });
    const line = logLines.join('');
    expect(line, 'password').not.toContain(password);
    expect(line, 'database name').not.toContain(database.name);
    expect(line, 'client object').not.toContain('connectionParameters');
  });
});
