/**
 * A Redis that restarts from an older RDB snapshot brings back deadlines as
 * they were when it was saved. The sweeper must not trust them: a deadline
 * that became earlier after the snapshot, here by a shorter auto-close
 * preference, still closes the pair once it passes. The test runs its own
 * redis-server, because it kills and restarts it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { describeWithPrivateRedis, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';
import { SEND_EVENTS } from '../support/replay.js';

const NOW = Date.UTC(2026, 4, 12, 12);
const MINUTE = 60_000;

const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { pairType } }`;

describeWithPrivateRedis('deadlines after a Redis snapshot restore', () => {
  const clock = new ManualClock(NOW);
  let redis: PrivateRedis;
  let server: TestServer;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    server = await startTestServer(import.meta.filename, { clock, sweeper: false, env: { REDIS_URL: redis.url } });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  /** Waits until `/readyz` reports both services reachable again. */
  async function waitUntilReady(): Promise<void> {
    for (;;) {
      const response = await fetch(`${server.url}/readyz`);
      if (response.status === 200) {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it('closes pairs whose snapshot deadline is late', async () => {
    const user = await server.createUser('snapshot-late-deadline');
    const lastActivity = NOW - MINUTE;
    const sent = await server.gql(
      SEND_EVENTS,
      {
        events: [
          { id: 'late-start', type: 'session_started', occurredAt: new Date(NOW - 2 * MINUTE).toISOString() },
          { id: 'late-heartbeat', type: 'heartbeat', occurredAt: new Date(lastActivity).toISOString() },
        ],
      },
      user.token,
    );
    expect(sent.errors, 'errors of sendEvents').toBeUndefined();
    // Seeds the deadline set and marks it complete, as a running server has.
    await server.app.sweeper.sweepOnce();
    // The snapshot contains the deadline of the default timeout, 30 minutes after the last activity.
    await redis.save();

    const preference = await server.gql(
      SET_PREFERENCE,
      { input: { pairType: 'session', timeoutSeconds: 120, endAt: 'LAST_ACTIVITY' } },
      user.token,
    );
    expect(preference.errors, 'errors of setAutoClosePreference').toBeUndefined();

    await redis.kill();
    await redis.restart();
    await waitUntilReady();
    clock.set(lastActivity + 5 * MINUTE);
    await server.app.sweeper.sweepOnce();

    // Read from PostgreSQL, because a read through the API settles the user
    // it names and would close the pair without the sweeper.
    const segments = await server.app.db.sql.query<{ end_at: Date | null; end_reason: string | null }>(
      `SELECT end_at, end_reason FROM segments WHERE user_id = $1`,
      [user.id],
    );
    expect(segments, 'segments').toHaveLength(1);
    expect(segments[0]?.end_reason, 'end reason').toBe('AUTO_CLOSE');
    expect(segments[0]?.end_at?.toISOString(), 'end').toBe(new Date(lastActivity).toISOString());
  }, 60_000);

  it('leaves a seed cut by a restart unmarked', async () => {
    const user = await server.createUser('snapshot-restart-mid-seed');
    const sent = await server.gql(
      SEND_EVENTS,
      { events: [{ id: 'mid-seed-start', type: 'session_started', occurredAt: new Date(NOW).toISOString() }] },
      user.token,
    );
    expect(sent.errors, 'errors of sendEvents').toBeUndefined();
    // A restart makes the marker of the earlier server run invalid, so the next sweep seeds.
    await redis.kill();
    await redis.restart();
    await waitUntilReady();

    // Redis restarts again after the seed wrote its first deadline, so the
    // new server run lacks that deadline and the set is not complete there.
    const store = server.app.store;
    const scheduleDeadline = store.scheduleDeadline.bind(store);
    let restarted = false;
    store.scheduleDeadline = async (userId, deadline) => {
      await scheduleDeadline(userId, deadline);
      if (!restarted) {
        restarted = true;
        await redis.kill();
        await redis.restart();
        await waitUntilReady();
      }
    };
    try {
      await server.app.sweeper.sweepOnce();
    } finally {
      store.scheduleDeadline = scheduleDeadline;
    }

    expect(restarted, 'restart during the seed').toBe(true);
    expect(await store.deadlinesComplete(), 'deadline set complete').toBe(false);
    await server.app.sweeper.sweepOnce();
    expect(await store.deadlinesComplete(), 'deadline set complete after the next sweep').toBe(true);
  }, 60_000);
});
