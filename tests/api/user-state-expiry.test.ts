/**
 * A user's engine state and lock fence in Redis expire after
 * USER_STATE_IDLE_TTL_SECONDS without a lock of the user, while the deadline
 * set keeps the user's next deadline. Each test makes the keys expire early
 * with PEXPIRE and waits until Redis dropped them. Requests, sweeps and
 * reads must then rebuild the state from PostgreSQL with the same segments,
 * and a pending deadline must still close its pairs. The new fence must
 * still stop a holder whose lock expired before the keys did.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { Deriver } from '../../src/services/derive.js';
import { appendClientEvents } from '../../src/storage/postgres/intake-store.js';
import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { heartbeatRow } from '../support/intake-rows.js';
import {
  chunk,
  dataOf,
  generateStream,
  inTimeOrder,
  replayInFreshServer,
  SEND_EVENTS,
  settleAndReadTimelines,
  type StreamEvent,
} from '../support/replay.js';
import { describeWithRedis, redisUrl, uniqueKeyPrefix } from '../support/services.js';

const NOW = Date.UTC(2026, 4, 12, 12);
const MINUTE = 60_000;
/** Auto-close timeout of the built-in pair types on this server (DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS unset). */
const TIMEOUT_MS = 1800 * 1000;
const IDLE_TTL_SECONDS = 86_400;

const SEGMENTS = `query ($filter: SegmentFilter) { segments(filter: $filter, first: 10) { nodes { pairType end endReason } } }`;

describeWithRedis('user keys after their idle expiry', () => {
  const clock = new ManualClock(NOW);
  const keyPrefix = uniqueKeyPrefix(import.meta.filename);
  let server: TestServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      keyPrefix,
      sweeper: false,
      env: { USER_STATE_IDLE_TTL_SECONDS: String(IDLE_TTL_SECONDS) },
    });
    redis = new Redis(redisUrl()!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
  }, 60_000);

  afterAll(async () => {
    await server?.app.store.flushForTests();
    redis?.disconnect();
    await server?.close();
  });

  const stateKey = (userId: string): string => `${keyPrefix}{u:${userId}}:state`;
  const fenceKey = (userId: string): string => `${keyPrefix}{u:${userId}}:fence`;
  const lockKey = (userId: string): string => `${keyPrefix}{u:${userId}}:lock`;

  /** Checks that the user's state and fence carry the configured idle TTL. */
  async function expectIdleTtl(userId: string): Promise<void> {
    for (const key of [stateKey(userId), fenceKey(userId)]) {
      const ttl = await redis.pttl(key);
      expect(ttl, `TTL of ${key}`).toBeGreaterThan(0);
      expect(ttl, `TTL of ${key}`).toBeLessThanOrEqual(IDLE_TTL_SECONDS * 1000);
    }
  }

  /** Lets `keys` expire at once and waits until Redis no longer has them. */
  async function expireNow(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      expect(await redis.pexpire(key, 1), `PEXPIRE of ${key}`).toBe(1);
    }
    while ((await redis.exists(...keys)) > 0) {
      await sleep(5);
    }
  }

  async function sendAll(token: string, events: readonly StreamEvent[], batchSize: number): Promise<void> {
    for (const batch of chunk(events, batchSize)) {
      dataOf(await server.gql(SEND_EVENTS, { events: batch }, token), 'sendEvents');
    }
  }

  /** Creates a user with a session that stays open after a heartbeat a minute ago, and returns it with that instant. */
  async function userWithIdleSession(name: string): Promise<{ user: { id: string; token: string }; lastActivity: number }> {
    const user = await server.createUser(name);
    const lastActivity = clock.now() - MINUTE;
    await sendAll(
      user.token,
      [
        { id: `${name}-start`, type: 'session_started', occurredAt: new Date(clock.now() - 10 * MINUTE).toISOString() },
        { id: `${name}-heartbeat`, type: 'heartbeat', occurredAt: new Date(lastActivity).toISOString() },
      ],
      2,
    );
    return { user, lastActivity };
  }

  it('rebuilds expired state for requests', async () => {
    const streams = [1, 2].map((seed) =>
      generateStream({ idPrefix: `expiry-${seed}`, seed, count: 100, startAt: clock.now() - 100 * 300_000, maxGapSeconds: 600 }),
    );
    const users = [];
    for (const [index, stream] of streams.entries()) {
      const user = await server.createUser(`expiry-${index}`);
      users.push(user);
      await sendAll(user.token, inTimeOrder(stream).slice(0, 70), 25);
      await expectIdleTtl(user.id);
    }

    for (const user of users) {
      await expireNow([stateKey(user.id), fenceKey(user.id)]);
    }
    // The rest with its first events sent last, so they arrive late and rewind the user.
    for (const [index, stream] of streams.entries()) {
      const rest = inTimeOrder(stream).slice(70);
      await sendAll(users[index]!.token, [...rest.slice(10), ...rest.slice(0, 10)], 15);
      await expectIdleTtl(users[index]!.id);
    }
    const { timelines } = await settleAndReadTimelines(server, users);
    const expected = await replayInFreshServer(import.meta.filename, streams, { now: clock.now() });

    expect(timelines).toHaveLength(expected.length);
    for (const [index, timeline] of timelines.entries()) {
      expect(timeline, `user expiry-${index}`).toEqual(expected[index]);
    }
  }, 120_000);

  it('sweep closes pairs of expired state', async () => {
    const { user, lastActivity } = await userWithIdleSession('expiry-sweep');
    const deadline = await server.app.store.peekDeadline(user.id);
    expect(deadline, 'deadline before the expiry').toBe(lastActivity + TIMEOUT_MS);

    await expireNow([stateKey(user.id), fenceKey(user.id)]);
    // The deadline set has no TTL, so the deadline outlives the state.
    expect(await server.app.store.peekDeadline(user.id), 'deadline after the expiry').toBe(deadline);
    clock.set(lastActivity + TIMEOUT_MS + MINUTE);
    // No request of this user comes: only the sweeper can close the pair.
    await server.app.sweeper.sweepOnce();

    // Read from PostgreSQL, because a read through the API settles the user it names.
    const segments = await server.app.db.sql.query<{ end_at: Date | null; end_reason: string | null }>(
      `SELECT end_at, end_reason FROM segments WHERE user_id = $1`,
      [user.id],
    );
    expect(segments).toHaveLength(1);
    expect(segments[0]?.end_reason).toBe('AUTO_CLOSE');
    expect(segments[0]?.end_at?.toISOString()).toBe(new Date(lastActivity).toISOString());
    expect(await server.app.store.peekDeadline(user.id), 'deadline after the sweep').toBeNull();
    await expectIdleTtl(user.id);
  }, 60_000);

  it('read closes pairs of expired state', async () => {
    const { user, lastActivity } = await userWithIdleSession('expiry-read');

    await expireNow([stateKey(user.id), fenceKey(user.id)]);
    clock.set(lastActivity + TIMEOUT_MS + MINUTE);
    // The server runs no sweeper, so only the read itself can apply the deadline.
    const read = await server.gql<{ segments: { nodes: Array<{ pairType: string; end: string; endReason: string }> } }>(
      SEGMENTS,
      { filter: { users: [user.id] } },
      user.token,
    );

    expect(read.errors).toBeUndefined();
    expect(read.data?.segments.nodes).toEqual([
      { pairType: 'session', end: new Date(lastActivity).toISOString(), endReason: 'AUTO_CLOSE' },
    ]);
    await expectIdleTtl(user.id);
  }, 60_000);

  it('new fence stops stale holder', async () => {
    const { store, services, db } = server.app;
    const { user } = await userWithIdleSession('expiry-stale-holder');
    const stale = await store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });

    // The holder stalls until its lock, and after a long idle time the
    // user's fence and state, have expired. Then a request takes the user.
    await expireNow([lockKey(user.id), fenceKey(user.id), stateKey(user.id)]);
    const later = new Date(clock.now()).toISOString();
    await sendAll(user.token, [{ id: 'expiry-stale-holder-later', type: 'heartbeat', occurredAt: later }], 1);
    const heads = await db.sql.query<{ fence: string; derived_version: number }>(
      `SELECT fence::text, derived_version FROM users WHERE id = $1`,
      [user.id],
    );
    const fenceAfterRequest = Number(heads[0]?.fence);
    expect(fenceAfterRequest, 'fence of the request').toBeGreaterThan(stale.fence);

    // The stalled holder resumes: it stores one more event and folds it.
    const at = clock.now();
    const row = { ...heartbeatRow(user.id, 4), occurredAt: at, receivedAt: at };
    await appendClientEvents(db.sql, [row], [{ id: user.id, lastEventSeq: 4, maxOccurredAt: at, expectedSeq: 3 }]);
    const deriver = new Deriver(db.sql, store, () => services.pairTypes.cachedList(), pino({ level: 'silent' }));

    await expect(deriver.derive(stale, at)).rejects.toMatchObject({ reason: 'LOCK_LOST' });
    const after = await db.sql.query<{ fence: string; derived_version: number; applied_seq: number }>(
      `SELECT fence::text, derived_version, applied_seq FROM users WHERE id = $1`,
      [user.id],
    );
    expect(Number(after[0]?.fence), 'fence after the stale fold').toBe(fenceAfterRequest);
    expect(after[0]?.derived_version, 'derived version after the stale fold').toBe(heads[0]?.derived_version);
    expect(after[0]?.applied_seq, 'applied seq after the stale fold').toBe(3);
  }, 60_000);
});
