/**
 * Deadlines when two holders of a user meet. A sweep that finds the user
 * busy must not leave the deadline at the lease end, and a fold whose lock
 * expired must leave the deadline set to the holder that took the lock over.
 * A fold whose lock Redis lost with its other keys must still schedule its
 * deadline, because no other holder exists to do it.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Deriver } from '../../src/services/derive.js';
import { Sweeper } from '../../src/services/sweeper.js';
import { appendClientEvents } from '../../src/storage/postgres/intake-store.js';
import { startTestServer, type TestServer } from '../support/app.js';
import { heartbeatRow } from '../support/intake-rows.js';

const SWEEP_INTERVAL_MS = 1000;
const LEASE_MS = 30_000;

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, { sweeper: false });
});

afterAll(async () => {
  await server?.close();
});

async function userWithOpenSession(name: string): Promise<{ id: string; token: string }> {
  const user = await server.createUser(name);
  const reply = await server.gql(
    `mutation ($event: EventInput!) { sendEvent(event: $event) { duplicate } }`,
    { event: { type: 'session_started', occurredAt: new Date(Date.now() - 60_000).toISOString() } },
    user.token,
  );
  expect(reply.errors).toBeUndefined();
  return user;
}

/**
 * Creates a user whose sessions auto-close 1 s after their start, starts one
 * 500 ms ago, and waits until its deadline has passed. Returns the user and
 * the start instant in ms.
 */
async function userPastOneSecondDeadline(name: string): Promise<{ user: { id: string; token: string }; startedAt: number }> {
  const user = await server.createUser(name);
  const preference = await server.gql(
    `mutation { setAutoClosePreference(input: { pairType: "session", timeoutSeconds: 1, endAt: DEADLINE }) { timeoutSeconds } }`,
    {},
    user.token,
  );
  expect(preference.errors).toBeUndefined();
  const startedAt = Date.now() - 500;
  const sent = await server.gql(
    `mutation ($event: EventInput!) { sendEvent(event: $event) { duplicate } }`,
    { event: { type: 'session_started', occurredAt: new Date(startedAt).toISOString() } },
    user.token,
  );
  expect(sent.errors).toBeUndefined();
  await sleep(1200);
  return { user, startedAt };
}

/** Returns a sweeper on the test server's services, with the lease and interval above. */
function sweeperOfServer(): Sweeper {
  const { store, services, db } = server.app;
  return new Sweeper({
    sql: db.sql,
    store,
    intake: services.intake,
    clock: services.clock,
    logger: pino({ level: 'silent' }),
    intervalMs: SWEEP_INTERVAL_MS,
    leaseMs: LEASE_MS,
    batchSize: 100,
    repairIntervalMs: 60_000,
  });
}

describe('sweep of a busy user', () => {
  it('retries at the next sweep', async () => {
    const { store } = server.app;
    const user = await userWithOpenSession('busy-at-sweep');
    // A request holds the lock, and its deadline is already due.
    const holder = await store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });
    await store.scheduleDeadline(user.id, Date.now() - 1);
    const sweeper = sweeperOfServer();

    const before = Date.now();
    await sweeper.sweepOnce();
    const deadline = await store.peekDeadline(user.id);
    await store.releaseUserLock(holder);

    expect(deadline).not.toBeNull();
    expect(deadline!).toBeGreaterThanOrEqual(before);
    expect(deadline!).toBeLessThanOrEqual(Date.now() + SWEEP_INTERVAL_MS);
  });
});

describe('fold under an expired lock', () => {
  it('keeps the new holder deadline', async () => {
    const { store, services, db } = server.app;
    const user = await userWithOpenSession('lock-taken-over');
    const stale = await store.acquireUserLock(user.id, { ttlMs: 100, waitMs: 0 });
    await sleep(200);
    // Another process takes the expired lock and sets its watchdog deadline.
    const taker = await store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });
    const watchdog = Date.now() + 30_000;
    await store.scheduleDeadline(user.id, watchdog);
    const deriver = new Deriver(db.sql, store, () => services.pairTypes.cachedList(), pino({ level: 'silent' }));

    await deriver.derive(stale, Date.now());
    const deadline = await store.peekDeadline(user.id);
    await store.releaseUserLock(taker);

    expect(deadline).toBe(watchdog);
  });
});

describe('fold after Redis lost its keys', () => {
  it('keeps the deadline it computed', async () => {
    const { store, services, db } = server.app;
    const user = await server.createUser('redis-lost-mid-request');
    const lock = await store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });
    // Redis restarts empty, and a sweeper reseeds the deadline set before
    // the request stores its events, so the seed finds nothing of the user.
    await store.flushForTests();
    const sweeper = sweeperOfServer();
    await sweeper.sweepOnce();
    expect(await store.peekDeadline(user.id)).toBeNull();

    // The request stores a session start and folds it under its lock, whose key Redis lost.
    const startedAt = Date.now() - 60_000;
    const start = {
      ...heartbeatRow(user.id, 1),
      type: 'session_started',
      role: 'START' as const,
      pairType: 'session',
      pairKey: '',
      occurredAt: startedAt,
      receivedAt: Date.now(),
    };
    await appendClientEvents(db.sql, [start], [{ id: user.id, lastEventSeq: 1, maxOccurredAt: startedAt, expectedSeq: 0 }]);
    const deriver = new Deriver(db.sql, store, () => services.pairTypes.cachedList(), pino({ level: 'silent' }));
    const derived = await deriver.derive(lock, Date.now());

    // No other holder settles the user, so only this deadline closes the session.
    expect(derived.nextDeadline).not.toBeNull();
    expect(await store.peekDeadline(user.id)).toBe(derived.nextDeadline);
  });
});

describe('read after a passed deadline', () => {
  const SEGMENTS = `{ segments(first: 10) { nodes { open end endReason } } }`;
  const REPORT = `query ($window: WindowInput!) {
    report(expression: { segments: { pairTypes: ["session"] } }, window: $window) { totalSeconds }
  }`;

  it('shows the auto-close before any sweep', async () => {
    // The server runs no sweeper, so only the read itself can apply the deadline.
    const { user, startedAt } = await userPastOneSecondDeadline('read-after-deadline');
    const window = { start: new Date(startedAt - 60_000).toISOString(), end: new Date(startedAt + 3_600_000).toISOString() };
    const report = await server.gql<{ report: { totalSeconds: number } }>(REPORT, { window }, user.token);
    const segments = await server.gql<{ segments: { nodes: Array<{ open: boolean; endReason: string }> } }>(SEGMENTS, {}, user.token);

    expect(report.data?.report.totalSeconds).toBe(1);
    expect(segments.data?.segments.nodes).toEqual([
      { open: false, end: new Date(startedAt + 1000).toISOString(), endReason: 'AUTO_CLOSE' },
    ]);
  });
});

describe('read among many due users', () => {
  it('settles the reader first', async () => {
    const { user } = await userPastOneSecondDeadline('crowded-reader');
    // Sixty other users fell due before the reader, whose own deadline has passed too.
    for (let index = 0; index < 60; index += 1) {
      await server.app.store.scheduleDeadline(randomUUID(), Date.now() - 60_000 + index);
    }

    const read = await server.gql<{ segments: { nodes: Array<{ open: boolean }> } }>(
      `{ segments(first: 10) { nodes { open } } }`,
      {},
      user.token,
    );

    expect(read.data?.segments.nodes.map((node) => node.open)).toEqual([false]);
  });
});
