/**
 * Two `definePairType` calls at once, each valid against the pair types it
 * started from, must not together store a parent cycle or one event type in
 * two pair types. Each call goes to its own server process, as behind a load
 * balancer. The test holds a lock on the pair types table, so that both
 * calls get as far as they can before either writes, and releases it once
 * both wait.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type GraphQLResponse, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const DEFINE = `mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name parent } }`;

interface PairTypeInput {
  name: string;
  startType: string;
  endType: string;
  parent?: string;
  autoClose?: { timeoutSeconds: number; endAt: string };
}

describeWithPostgres('definePairType calls at once', () => {
  let server: TestServer;
  let secondServer: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, WITHOUT_WORKERS);
    secondServer = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, databaseUrl: server.databaseUrl as string });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await secondServer?.close();
    await server?.close();
  });

  async function define(input: PairTypeInput, on: TestServer = server): Promise<GraphQLResponse> {
    return on.gql(DEFINE, { input }, adminToken);
  }

  /** Sends the definitions to the two servers while the pair types table is locked, and returns their replies once it is unlocked. */
  async function defineAtOnce(first: PairTypeInput, second: PairTypeInput): Promise<GraphQLResponse[]> {
    const blocker = new pg.Client({ connectionString: server.databaseUrl as string });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE pair_types IN SHARE ROW EXCLUSIVE MODE');
      const replies = Promise.all([define(first), define(second, secondServer)]);
      // Wait until both calls wait: one for the table, the other for its turn.
      const deadline = Date.now() + 10_000;
      for (;;) {
        // Inside a transaction, PostgreSQL keeps the first view of the activity statistics.
        await blocker.query('SELECT pg_stat_clear_snapshot()');
        const { rows } = await blocker.query<{ waiting: number }>(
          `SELECT count(*)::int AS waiting FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND wait_event_type = 'Lock'`,
        );
        if (rows[0]!.waiting >= 2) {
          break;
        }
        if (Date.now() > deadline) {
          throw new Error(`only ${rows[0]!.waiting} of the two calls waited within 10 s`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await blocker.query('COMMIT');
      return await replies;
    } finally {
      await blocker.end();
    }
  }

  function reasonsOf(replies: readonly GraphQLResponse[]): Array<string | null> {
    return replies.map((reply) => (reply.errors?.[0]?.extensions?.reason as string | undefined) ?? null);
  }

  it('rejects a concurrent parent cycle', async () => {
    await define({ name: 'cyc-a', startType: 'cyc-a_started', endType: 'cyc-a_ended' });
    await define({ name: 'cyc-b', startType: 'cyc-b_started', endType: 'cyc-b_ended' });

    const replies = await defineAtOnce(
      { name: 'cyc-a', startType: 'cyc-a_started', endType: 'cyc-a_ended', parent: 'cyc-b' },
      { name: 'cyc-b', startType: 'cyc-b_started', endType: 'cyc-b_ended', parent: 'cyc-a' },
    );

    expect(reasonsOf(replies).sort(), 'error reasons').toEqual(['PARENT_CYCLE', null]);
    const types = dataOf(await server.gql(`{ pairTypes { name parent } }`, {}, adminToken), 'pairTypes').pairTypes as Array<{
      name: string;
      parent: string | null;
    }>;
    const parents = types.filter((type) => type.name.startsWith('cyc-')).map((type) => type.parent);
    expect(parents, 'parents of the two types').toContain(null);
  });

  it('gives up on a long-held turn', async () => {
    const holder = new pg.Client({ connectionString: server.databaseUrl as string });
    await holder.connect();
    try {
      // The key of the advisory lock that definePairType calls take turns under.
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock(72707371)');
      const started = performance.now();
      const reply = await define({ name: 'waits', startType: 'waits_started', endType: 'waits_ended' });
      const elapsedMs = performance.now() - started;
      await holder.query('ROLLBACK');

      expect(reply.errors?.[0]?.extensions?.code, 'code').toBe('SERVICE_UNAVAILABLE');
      expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('PAIR_TYPES_BUSY');
      expect(elapsedMs, 'wait in ms').toBeGreaterThanOrEqual(3000);
    } finally {
      await holder.end();
    }
    const retried = await define({ name: 'waits', startType: 'waits_started', endType: 'waits_ended' });
    expect(retried.errors, 'errors of the retry').toBeUndefined();
  }, 20_000);

  it('grants turns in arrival order', async () => {
    const holder = new pg.Client({ connectionString: server.databaseUrl as string });
    await holder.connect();

    /** Waits until `count` sessions wait for the advisory lock of definePairType. */
    async function waitForWaiters(count: number): Promise<void> {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { rows } = await holder.query<{ waiting: number }>(
          `SELECT count(*)::int AS waiting FROM pg_locks WHERE locktype = 'advisory' AND objid = 72707371 AND NOT granted`,
        );
        if (rows[0]!.waiting >= count) {
          return;
        }
        if (Date.now() > deadline) {
          throw new Error(`only ${rows[0]!.waiting} of ${count} calls waited for their turn within 10 s`);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }

    try {
      // Each round lets the earlier call wait first, so the later call's
      // timeout must be the one that stays.
      const rounds: Array<[earlier: number, later: number]> = [
        [600, 1200],
        [1800, 2400],
        [3000, 3600],
      ];
      for (const [round, [earlier, later]] of rounds.entries()) {
        await holder.query('BEGIN');
        await holder.query('SELECT pg_advisory_xact_lock(72707371)');
        const input = { name: 'ordered', startType: 'ordered_started', endType: 'ordered_ended' };
        const first = define({ ...input, autoClose: { timeoutSeconds: earlier, endAt: 'LAST_ACTIVITY' } });
        await waitForWaiters(1);
        const second = define({ ...input, autoClose: { timeoutSeconds: later, endAt: 'LAST_ACTIVITY' } }, secondServer);
        await waitForWaiters(2);
        await holder.query('COMMIT');
        const replies = await Promise.all([first, second]);

        expect(reasonsOf(replies), `round ${round} errors`).toEqual([null, null]);
        const types = dataOf(await server.gql(`{ pairTypes { name autoClose { timeoutSeconds } } }`, {}, adminToken), 'pairTypes')
          .pairTypes as Array<{ name: string; autoClose: { timeoutSeconds: number } }>;
        expect(types.find((type) => type.name === 'ordered')?.autoClose.timeoutSeconds, `round ${round} timeout`).toBe(later);
      }
    } finally {
      await holder.end();
    }
  }, 40_000);

  it('rejects a concurrent shared event type', async () => {
    const replies = await defineAtOnce(
      { name: 'shared-x', startType: 'shared-1', endType: 'shared-2' },
      { name: 'shared-y', startType: 'shared-2', endType: 'shared-3' },
    );

    expect(reasonsOf(replies).sort(), 'error reasons').toEqual(['EVENT_TYPE_IN_USE', null]);
    const types = dataOf(await server.gql(`{ pairTypes { name } }`, {}, adminToken), 'pairTypes').pairTypes as Array<{
      name: string;
    }>;
    expect(types.filter((type) => type.name.startsWith('shared-')), 'stored types').toHaveLength(1);
  });
});
