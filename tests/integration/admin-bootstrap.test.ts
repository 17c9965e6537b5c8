/**
 * The first admin from ADMIN_USERNAME and ADMIN_PASSWORD when several
 * instances start on one empty PostgreSQL database at once, each with its
 * own connection pool, as separate processes have. Exactly one of them
 * creates its admin, whatever usernames the others were given.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { createApp, type App } from '../../src/app.js';
import { loadConfig } from '../../src/config/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const INSTANCES = 4;

describeWithPostgres('first admin bootstrap', () => {
  let database: TestDatabase;
  let dataDir: string;
  const apps: App[] = [];

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_admin_bootstrap' });
    dataDir = mkdtempSync(join(tmpdir(), 'em-admin-bootstrap-'));
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('concurrent starts create one admin', async () => {
    const starts = Array.from({ length: INSTANCES }, (_, index) => {
      const config = loadConfig({
        NODE_ENV: 'test',
        DATABASE_URL: database.url,
        DATA_DIR: dataDir,
        JWT_SECRET: 'test-secret-that-is-at-least-32-bytes-long',
        ADMIN_USERNAME: `admin${index}`,
        ADMIN_PASSWORD: `admin-password-${index}`,
        PASSWORD_SCRYPT_LOG2_N: '14',
      });
      return createApp(config, { logger: pino({ level: 'silent' }), sweeper: false, rollups: false, replays: false });
    });
    const results = await Promise.allSettled(starts);
    for (const result of results) {
      if (result.status === 'fulfilled') {
        apps.push(result.value);
      }
    }
    expect(results.map((result) => result.status), 'start outcomes').toEqual(Array(INSTANCES).fill('fulfilled'));

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const admins = await client.query<{ username: string }>(`SELECT username FROM users WHERE role = 'ADMIN'`);
      expect(admins.rows, 'admins').toHaveLength(1);
      expect(admins.rows[0]?.username, 'admin username').toMatch(/^admin[0-9]$/);
    } finally {
      await client.end();
    }
  }, 60_000);
});
