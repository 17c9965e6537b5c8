/**
 * Report leaf loads take turns for PostgreSQL connections: one request runs
 * at most 2 at once, and one process at most REPORT_MAX_CONCURRENT_LOADS, so
 * that a report with many leaves cannot hold the whole pool. The test locks
 * the segments table, so every load that starts waits for the lock, and
 * counts the waiting connections.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type GraphQLResponse, type TestServer } from '../support/app.js';
import { describeWithPostgres } from '../support/services.js';

const WINDOW = { start: '2026-01-05T00:00:00Z', end: '2026-01-06T00:00:00Z' };

/** Two reports, each a union of ten leaves with a `meta` condition, which read segments. */
const REPORTS = `query ($expression: SetExpression!, $window: WindowInput!) {
  a: report(expression: $expression, window: $window) { count }
  b: report(expression: $expression, window: $window) { count }
}`;
const EXPRESSION = { union: Array.from({ length: 10 }, (_, index) => ({ segments: { meta: { leaf: index } } })) };

describeWithPostgres('report leaf loads', () => {
  let server: TestServer;
  let blocker: pg.Client;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { DB_POOL_SIZE: '8', REPORT_MAX_CONCURRENT_LOADS: '3' },
    });
    blocker = new pg.Client({ connectionString: server.databaseUrl as string });
    await blocker.connect();
  });

  afterAll(async () => {
    await blocker?.end();
    await server?.close();
  });

  /** Counts the server's connections that wait for a lock. */
  async function waitingLoads(): Promise<number> {
    // Inside a transaction, PostgreSQL keeps the first view of the activity statistics.
    await blocker.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await blocker.query<{ waiting: number }>(
      `SELECT count(*)::int AS waiting FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`,
    );
    return rows[0]!.waiting;
  }

  /** Waits until at least `count` loads wait, then a while longer, and returns how many wait then. */
  async function waitingAfter(count: number): Promise<number> {
    const deadline = Date.now() + 10_000;
    while ((await waitingLoads()) < count) {
      if (Date.now() > deadline) {
        throw new Error(`fewer than ${count} leaf loads waited within 10 s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // Loads beyond the limit would start within this time.
    await new Promise((resolve) => setTimeout(resolve, 300));
    return waitingLoads();
  }

  it('hold few connections', async () => {
    const first = await server.createUser('loads-first');
    const second = await server.createUser('loads-second');
    let replies: Array<GraphQLResponse<Record<string, any>>>;
    await blocker.query('BEGIN');
    try {
      await blocker.query('LOCK TABLE segments IN ACCESS EXCLUSIVE MODE');
      const firstReply = server.gql(REPORTS, { expression: EXPRESSION, window: WINDOW }, first.token);
      expect(await waitingAfter(2), 'loads of one request').toBe(2);

      const secondReply = server.gql(REPORTS, { expression: EXPRESSION, window: WINDOW }, second.token);
      expect(await waitingAfter(3), 'loads of two requests').toBe(3);

      await blocker.query('COMMIT');
      replies = await Promise.all([firstReply, secondReply]);
    } catch (error) {
      await blocker.query('ROLLBACK');
      throw error;
    }

    for (const reply of replies) {
      expect(reply.errors, JSON.stringify(reply.errors)).toBeUndefined();
      expect(reply.data?.a.count, 'count').toBe(0);
    }
  }, 30_000);
});
