/**
 * A connection that PostgreSQL closes while a transaction's code runs
 * between two statements, as a replay's fold of a page does, must fail that
 * transaction and leave the process and the pool working.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { sqlClientForPool, type SqlClient } from '../../src/storage/postgres/sql.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

describeWithPostgres('transactions on a lost connection', () => {
  let database: TestDatabase;
  let pool: pg.Pool;
  let admin: pg.Client;
  let sql: SqlClient;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_sql_tx' });
    pool = new pg.Pool({ connectionString: database.url, max: 2 });
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    sql = sqlClientForPool(pool, null);
  });

  afterAll(async () => {
    await admin?.end();
    await pool?.end();
    await database?.drop();
  });

  it('fails the transaction, not the process', async () => {
    const outcome = sql.transaction(async (tx) => {
      const [row] = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await admin.query('SELECT pg_terminate_backend($1)', [row!.pid]);
      // The client emits 'error' while no statement of the transaction runs.
      await sleep(300);
      await tx.query('SELECT 1');
    });

    await expect(outcome, 'transaction').rejects.toThrow();
    expect(await sql.query('SELECT 1 AS one'), 'pool after the failure').toEqual([{ one: 1 }]);
  });
});
