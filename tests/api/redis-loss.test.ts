/**
 * Losing Redis loses no data: a Redis that restarts empty takes the open
 * pairs, the deadlines, the lock fences and the engine states with it, and
 * the server must rebuild all of them from PostgreSQL. Each test empties the
 * server's key prefix between two phases of intake and checks that the
 * timelines equal those of a fresh server that never lost anything, and
 * that deadlines set before the loss still close their pairs.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  chunk,
  dataOf,
  generateStream,
  inTimeOrder,
  readTimeline,
  replayInFreshServer,
  SEND_EVENTS,
  settleAndReadTimelines,
  type SegmentNode,
  type StreamEvent,
} from '../support/replay.js';
import { Redis } from 'ioredis';

import { describeWithRedis, redisUrl, uniqueKeyPrefix } from '../support/services.js';
import { deleteRedisKeys } from '../../bench/lib/services.js';

const NOW = Date.UTC(2026, 4, 12, 12);
const MINUTE = 60_000;
/** Auto-close timeout of the built-in pair types on this server (DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS unset). */
const TIMEOUT_MS = 1800 * 1000;
/** SWEEPER_REPAIR_INTERVAL_MS of the test server, the minimum that the setting accepts. */
const REPAIR_INTERVAL_MS = 100;

describeWithRedis('intake after Redis lost its keys', () => {
  const clock = new ManualClock(NOW);
  const keyPrefix = uniqueKeyPrefix(import.meta.filename);
  let server: TestServer;

  let redis: Redis;

  beforeAll(async () => {
    // The shortest repair interval, so that each test's sweep scans PostgreSQL
    // for users whose deadline Redis lost.
    server = await startTestServer(import.meta.filename, {
      clock,
      keyPrefix,
      sweeper: false,
      env: { SWEEPER_REPAIR_INTERVAL_MS: String(REPAIR_INTERVAL_MS) },
    });
    redis = new Redis(redisUrl()!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
  }, 60_000);

  afterAll(async () => {
    redis?.disconnect();
    await server?.close();
    await emptyPrefix();
  });

  /** Deletes every key of the server's prefix, as a Redis restart without persistence does. Returns how many there were. */
  async function emptyPrefix(): Promise<number> {
    return deleteRedisKeys(redisUrl()!, keyPrefix);
  }

  async function sendAll(token: string, events: readonly StreamEvent[], batchSize: number): Promise<void> {
    for (const batch of chunk(events, batchSize)) {
      dataOf(await server.gql(SEND_EVENTS, { events: batch }, token), 'sendEvents');
    }
  }

  it('rebuilds open pairs from PostgreSQL', async () => {
    // Gaps average about 300 s, so the streams end shortly before now and
    // their last pairs are still open when the keys go.
    const streams = [1, 2, 3].map((seed) =>
      generateStream({ idPrefix: `loss-${seed}`, seed, count: 120, startAt: NOW - 120 * 300_000, maxGapSeconds: 600 }),
    );
    const users = [];
    for (const [index, stream] of streams.entries()) {
      const user = await server.createUser(`loss-${index}`);
      users.push(user);
      const ordered = inTimeOrder(stream);
      // The first part in time order, and the rest after the loss with its
      // first events sent last, so they arrive late and rewind the user.
      await sendAll(user.token, ordered.slice(0, 80), 25);
    }

    expect(await emptyPrefix()).toBeGreaterThan(0);

    for (const [index, stream] of streams.entries()) {
      const rest = inTimeOrder(stream).slice(80);
      await sendAll(users[index]!.token, [...rest.slice(10), ...rest.slice(0, 10)], 15);
    }
    const { timelines } = await settleAndReadTimelines(server, users);
    const expected = await replayInFreshServer(import.meta.filename, streams, { now: NOW });

    expect(timelines).toHaveLength(expected.length);
    for (const [index, timeline] of timelines.entries()) {
      expect(timeline, `user loss-${index}`).toEqual(expected[index]);
    }
  }, 120_000);

  it('closes pairs whose deadline was lost', async () => {
    const user = await server.createUser('lost-deadline');
    const lastActivity = clock.now() - MINUTE;
    dataOf(
      await server.gql(
        SEND_EVENTS,
        {
          events: [
            { type: 'session_started', occurredAt: new Date(clock.now() - 10 * MINUTE).toISOString() },
            { type: 'task_started', pairKey: 'a', occurredAt: new Date(clock.now() - 5 * MINUTE).toISOString() },
            { type: 'heartbeat', occurredAt: new Date(lastActivity).toISOString() },
          ],
        },
        user.token,
      ),
      'sendEvents',
    );

    expect(await emptyPrefix()).toBeGreaterThan(0);
    clock.set(lastActivity + TIMEOUT_MS + MINUTE);
    // No request of this user comes: only the sweeper can find the pair due.
    await server.app.sweeper.sweepOnce();

    const raw = await readTimeline(server, await server.adminToken(), user.id);
    const closed = raw.segments.map((segment: SegmentNode) => ({
      pairType: segment.pairType,
      end: segment.end,
      endReason: segment.endReason,
    }));
    expect(closed).toEqual([
      { pairType: 'session', end: new Date(lastActivity).toISOString(), endReason: 'AUTO_CLOSE' },
      // The task's timeout is the session's, so it closes with its parent.
      { pairType: 'task', end: new Date(lastActivity).toISOString(), endReason: 'PARENT_CLOSED' },
    ]);
  }, 60_000);

  it('closes pairs when the deadline set goes last', async () => {
    const user = await server.createUser('deadlines-deleted-last');
    const lastActivity = clock.now() - MINUTE;
    const events = [
      { id: 'deleted-last-start', type: 'session_started', occurredAt: new Date(clock.now() - 10 * MINUTE).toISOString() },
      { id: 'deleted-last-heartbeat', type: 'heartbeat', occurredAt: new Date(lastActivity).toISOString() },
    ];
    await sendAll(user.token, events, events.length);

    // A deletion of the prefix key by key, such as SCAN with DEL, can reach
    // the deadline set last, after a sweep that ran in between reseeded it.
    const url = redisUrl()!;
    expect(await deleteRedisKeys(url, `${keyPrefix}{`)).toBeGreaterThan(0);
    await deleteRedisKeys(url, `${keyPrefix}counter:`);
    await server.app.sweeper.sweepOnce();
    expect(await deleteRedisKeys(url, `${keyPrefix}deadlines`)).toBe(1);

    clock.set(lastActivity + TIMEOUT_MS + MINUTE);
    // No request of this user comes: only the sweeper can find the pair due.
    await server.app.sweeper.sweepOnce();

    const raw = await readTimeline(server, await server.adminToken(), user.id);
    expect(raw.segments).toHaveLength(1);
    expect(raw.segments[0]?.endReason).toBe('AUTO_CLOSE');
    expect(raw.segments[0]?.end).toBe(new Date(lastActivity).toISOString());
  }, 60_000);

  it('applies events after fence rollback', async () => {
    const user = await server.createUser('fence-behind');
    const heartbeat = (id: string, minutesAgo: number) => ({
      id,
      type: 'heartbeat',
      occurredAt: new Date(clock.now() - minutesAgo * MINUTE).toISOString(),
    });
    await sendAll(user.token, [heartbeat('fence-0', 20)], 1);
    const fenceKey = `${keyPrefix}{u:${user.id}}:fence`;
    const savedFence = await redis.get(fenceKey);
    expect(savedFence).not.toBeNull();
    for (const index of [1, 2, 3]) {
      await sendAll(user.token, [heartbeat(`fence-${index}`, 20 - index)], 1);
    }

    // A Redis restarted from a snapshot saved before the last three requests
    // brings back a counter below the fence that PostgreSQL stores.
    await redis.set(fenceKey, savedFence!);
    const reply = await server.gql(SEND_EVENTS, { events: [heartbeat('fence-4', 10)] }, user.token);

    expect(reply.errors).toBeUndefined();
    const heads = await server.app.db.sql.query<{ applied_seq: number; last_event_seq: number }>(
      `SELECT applied_seq, last_event_seq FROM users WHERE id = $1`,
      [user.id],
    );
    expect(heads[0]?.last_event_seq).toBe(5);
    expect(heads[0]?.applied_seq).toBe(5);
  }, 60_000);

  it('closes pairs missing from restored deadlines', async () => {
    // Several users, so that the scan for users with open segments must find
    // more than the first of them in the index.
    const users = await Promise.all(['a', 'b', 'c'].map((name) => server.createUser(`deadline-after-snapshot-${name}`)));
    const lastActivity = clock.now() - MINUTE;
    for (const user of users) {
      const events = [
        { id: 'snapshot-start', type: 'session_started', occurredAt: new Date(clock.now() - 10 * MINUTE).toISOString() },
        { id: 'snapshot-heartbeat', type: 'heartbeat', occurredAt: new Date(lastActivity).toISOString() },
      ];
      await sendAll(user.token, events, events.length);
    }

    // A snapshot saved while the set was complete and before these users had
    // a deadline brings back the marker of a complete set without them.
    const deadlinesKey = `${keyPrefix}deadlines`;
    for (const user of users) {
      expect(await redis.zrem(deadlinesKey, user.id)).toBe(1);
    }
    const markers = await redis.zrangebyscore(deadlinesKey, '+inf', '+inf');
    expect(markers.filter((member) => member.startsWith('complete:')), 'marker of a complete set').toHaveLength(1);

    clock.set(lastActivity + TIMEOUT_MS + MINUTE);
    // Waits out the repair interval that an earlier sweep of this file started.
    await new Promise((resolve) => setTimeout(resolve, 2 * REPAIR_INTERVAL_MS));
    // No request of these users comes: only the sweeper can find the pairs due.
    await server.app.sweeper.sweepOnce();

    // Read from PostgreSQL, because a read through the API settles the users
    // it names and would close the pairs without the sweeper.
    for (const user of users) {
      const segments = await server.app.db.sql.query<{ end_at: Date | null; end_reason: string | null }>(
        `SELECT end_at, end_reason FROM segments WHERE user_id = $1`,
        [user.id],
      );
      expect(segments, user.id).toHaveLength(1);
      expect(segments[0]?.end_reason, user.id).toBe('AUTO_CLOSE');
      expect(segments[0]?.end_at?.toISOString(), user.id).toBe(new Date(lastActivity).toISOString());
    }
  }, 60_000);
});
