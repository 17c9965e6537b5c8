/**
 * Intake across processes. Two servers on one database and one Redis key
 * prefix receive interleaved events for the same users at once, and must end
 * with the segments of one serial replay. Two sweepers must auto-close each
 * open instance exactly once. A server whose Redis is unreachable must reject
 * events quickly with SERVICE_UNAVAILABLE, store nothing, and keep serving.
 */
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTokenService } from '../../src/auth/tokens.js';
import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  SEND_EVENTS,
  chunk,
  dataOf,
  generateStream,
  replayInFreshServer,
  sendWithRetry,
  settleAndReadTimelines,
  type EventNode,
} from '../support/replay.js';
import { seededRandom } from '../support/random.js';
import { describeWithPostgres, describeWithRedis } from '../support/services.js';

const NOW = Date.parse('2026-01-20T18:00:00Z');
const ENV = {
  SWEEPER_INTERVAL_MS: '20',
  SWEEPER_LEASE_MS: '1000',
  USER_LOCK_WAIT_MS: '2000',
  // The manual clock moves two hours in one test, past the default token lifetime.
  JWT_TTL_SECONDS: '86400',
};

/** Starts a second server on the data of `first`: same database, same Redis key prefix. */
async function startSecond(first: TestServer, clock: ManualClock): Promise<TestServer> {
  if (first.databaseUrl === null) {
    throw new Error('a second process needs DATABASE_URL');
  }
  return startTestServer(import.meta.filename, {
    clock,
    env: ENV,
    databaseUrl: first.databaseUrl,
    keyPrefix: first.app.config.redis.keyPrefix,
  });
}

/** Runs the jobs with at most `parallel` of them in flight. */
async function runPool(jobs: Array<() => Promise<void>>, parallel: number): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: parallel }, async () => {
    while (next < jobs.length) {
      const job = jobs[next];
      next += 1;
      await job?.();
    }
  });
  await Promise.all(workers);
}

describeWithRedis('two processes on shared data', () => {
  describeWithPostgres('interleaved intake', () => {
    const clock = new ManualClock(NOW);
    let first: TestServer;
    let second: TestServer;

    beforeAll(async () => {
      first = await startTestServer(import.meta.filename, { clock, env: ENV });
      second = await startSecond(first, clock);
    });

    afterAll(async () => {
      await second?.close();
      await first?.close();
    });

    it('equals one serial replay', async () => {
      const userCount = 4;
      const streams = Array.from({ length: userCount }, (_, index) =>
        generateStream({
          idPrefix: `u${index}`,
          seed: 1000 + index,
          count: 80,
          startAt: NOW - 16 * 3600 * 1000,
          maxGapSeconds: 1200,
        }),
      );
      const users: Array<{ id: string; token: string }> = [];
      for (let index = 0; index < userCount; index += 1) {
        users.push(await first.createUser(`shared-${index}`));
      }

      // Deal each stream in chunks of 1 to 4 events to one server or the other.
      const random = seededRandom(7);
      const jobs: Record<'first' | 'second', Array<() => Promise<void>>> = { first: [], second: [] };
      let stored = 0;
      streams.forEach((stream, index) => {
        const user = users[index] as (typeof users)[number];
        let cursor = 0;
        while (cursor < stream.length) {
          const size = 1 + Math.floor(random() * 4);
          const batch = stream.slice(cursor, cursor + size);
          cursor += size;
          const target = random() < 0.5 ? 'first' : 'second';
          const server = target === 'first' ? first : second;
          jobs[target].push(async () => {
            const result = await sendWithRetry(server, user.token, batch);
            stored += result.storedCount;
          });
        }
      });
      await Promise.all([runPool(jobs.first, 3), runPool(jobs.second, 3)]);
      expect(stored).toBe(userCount * 80);

      // Everything pending has been folded once the sweepers and requests are done.
      const { timelines: actual, lateCount } = await settleAndReadTimelines(first, users);
      // The interleaving must really have delivered events out of time order.
      expect(lateCount).toBeGreaterThan(0);
      const expected = await replayInFreshServer(import.meta.filename, streams, { now: NOW, env: ENV });

      expect(actual).toHaveLength(expected.length);
      actual.forEach((timeline, index) => {
        expect(timeline.segments.length).toBeGreaterThan(5);
        expect(timeline).toEqual(expected[index]);
      });
    }, 60_000);
  });

  describeWithPostgres('two sweepers', () => {
    const start = Date.parse('2026-01-20T09:00:00Z');
    const clock = new ManualClock(start + 60_000);
    let first: TestServer;
    let second: TestServer;

    beforeAll(async () => {
      first = await startTestServer(import.meta.filename, { clock, env: ENV });
      second = await startSecond(first, clock);
    });

    afterAll(async () => {
      await second?.close();
      await first?.close();
    });

    it('auto-close each instance exactly once', async () => {
      const adminToken = await first.adminToken();
      const userIds: string[] = [];
      for (let index = 0; index < 30; index += 1) {
        const created = await first.gql(
          `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
          { input: { username: `sleepy-${index}`, password: `sleepy-${index}-password`, role: 'MEMBER' } },
          adminToken,
        );
        userIds.push(dataOf(created, 'createUser').createUser.id);
      }
      const events = userIds.flatMap((userId) => [
        { type: 'session_started', occurredAt: new Date(start).toISOString(), userId },
        { type: 'task_started', occurredAt: new Date(start + 1000).toISOString(), userId },
      ]);
      for (const batch of chunk(events, 20)) {
        dataOf(await first.gql(SEND_EVENTS, { events: batch }, adminToken), 'sendEvents');
      }

      // Past every deadline (30 minutes after the task start): both sweepers race for the users.
      clock.set(start + 2 * 3600 * 1000);
      const openQuery = `{ segments(filter: { open: true }, first: 1000) { nodes { id } } }`;
      const until = performance.now() + 10_000;
      while (dataOf(await first.gql(openQuery, {}, adminToken), 'segments').segments.nodes.length > 0) {
        if (performance.now() > until) {
          throw new Error('the sweepers did not close every segment within 10 s');
        }
        await sleep(25);
      }
      // Give a late duplicate sweep the chance to show up.
      await Promise.all([first.app.sweeper.sweepOnce(), second.app.sweeper.sweepOnce()]);

      const corrections = dataOf(
        await first.gql(
          `{ events(filter: { origins: [CORRECTION] }, first: 1000) { nodes { rule type causeEventId user { id } } } }`,
          {},
          adminToken,
        ),
        'events',
      ).events.nodes as Array<Pick<EventNode, 'rule' | 'type' | 'causeEventId'> & { user: { id: string } }>;

      const autoCloses = corrections.filter((event) => event.rule === 'AUTO_CLOSE');
      const childEnds = corrections.filter((event) => event.rule === 'CHILD_CLOSED_WITH_PARENT');
      expect(autoCloses).toHaveLength(userIds.length);
      expect(new Set(autoCloses.map((event) => event.causeEventId)).size).toBe(userIds.length);
      expect(new Set(autoCloses.map((event) => event.user.id))).toEqual(new Set(userIds));
      expect(childEnds).toHaveLength(userIds.length);
      expect(new Set(childEnds.map((event) => event.causeEventId)).size).toBe(userIds.length);

      const segments = dataOf(
        await first.gql(`{ segments(first: 1000) { nodes { pairType end endReason } } }`, {}, adminToken),
        'segments',
      ).segments.nodes as Array<{ pairType: string; end: string; endReason: string }>;
      // LAST_ACTIVITY: the last activity is the task start, so each session
      // ends there and each task closes empty at its own start. Empty
      // segments are not listed, which leaves one session per user.
      expect(segments).toHaveLength(userIds.length);
      for (const segment of segments) {
        expect(segment.pairType).toBe('session');
        expect(segment.end).toBe(new Date(start + 1000).toISOString());
        expect(segment.endReason).toBe('AUTO_CLOSE');
      }
    });
  });
});

describe('Redis unreachable', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const address = probe.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    server = await startTestServer(import.meta.filename, {
      env: {
        REDIS_URL: `redis://127.0.0.1:${port}`,
        REDIS_COMMAND_TIMEOUT_MS: '300',
        REDIS_CONNECT_TIMEOUT_MS: '200',
      },
    });

    // Logging in needs Redis (the rate limiter), so the token is issued directly.
    const [admin] = await server.app.db.sql.query<{ id: string }>(`SELECT id FROM users WHERE username = 'admin'`);
    const tokens = createTokenService({
      secret: server.app.config.auth.jwtSecret as string,
      issuer: server.app.config.auth.jwtIssuer,
      audience: server.app.config.auth.jwtAudience,
      ttlSeconds: 600,
      clockToleranceSeconds: 5,
      logger: pino({ level: 'silent' }),
    });
    token = (await tokens.issue({ id: (admin as { id: string }).id, role: 'ADMIN' })).token;
  });

  afterAll(async () => {
    await server?.close();
  });

  async function storedEventCount(): Promise<number> {
    const [row] = await server.app.db.sql.query<{ count: number }>(`SELECT count(*)::int AS count FROM events`);
    return (row as { count: number }).count;
  }

  it('sendEvent fails fast with SERVICE_UNAVAILABLE', async () => {
    const response = await server.gql(
      `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id } } }`,
      { event: { id: 'lost', type: 'session_started', occurredAt: '2026-01-20T09:00:00Z' } },
      token,
    );

    expect(response.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    // Redis never becomes reachable, so only the 300 ms wait for a connection
    // (REDIS_COMMAND_TIMEOUT_MS) ends the request, and without it the test times out.
    expect(response.errors?.[0]?.message).toContain('not connected within 300 ms');
    expect(await storedEventCount()).toBe(0);
  });

  it('REST events fail with 503', async () => {
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify([{ type: 'heartbeat', occurred_at: '2026-01-20T09:00:00Z' }]),
    });

    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('SERVICE_UNAVAILABLE');
    expect(await storedEventCount()).toBe(0);
  });

  it('keeps serving health and reads', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);

    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);

    const events = await server.gql(`{ events { nodes { id } } }`, {}, token);
    expect(dataOf(events, 'events').events.nodes).toEqual([]);
  });
});
