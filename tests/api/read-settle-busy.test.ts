/**
 * A read settles a due user whose lock another request holds once that lock
 * is released. It settles with its own now, so it shows the auto-close even
 * when the holder read the clock before the deadline and settles nothing.
 * The read waits for such locks at most READ_SETTLE_WAIT_MS, then shows the
 * user as stored.
 */
import pino from 'pino';
import { afterEach, expect, it, vi } from 'vitest';

import { ADMIN, ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { startDueSessions } from '../support/due-sessions.js';
import { SEND_EVENTS } from '../support/replay.js';
import { captureLogs } from '../support/logs.js';

const STARTED_AT = Date.parse('2026-03-02T09:00:00Z');
/** Lifetime of the lock that the test holds, far longer than any wait of a read. */
const HELD_LOCK_TTL_MS = 600_000;

const READ = `query ($users: [ID!], $window: WindowInput!) {
  segments(filter: { users: $users }) { nodes { end endReason } }
  report(window: $window, expression: { segments: { users: $users } }) { totalSeconds }
}`;

type ReadData = {
  segments: { nodes: Array<{ end: string | null; endReason: string | null }> };
  report: { totalSeconds: number };
};

let server: TestServer | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await server?.close();
  server = undefined;
});

/** Creates a member with one open session whose deadline has passed, and returns the member's id and the session's start. */
async function startDueMember(started: TestServer, clock: ManualClock): Promise<{ userId: string; startAt: number }> {
  const member = await started.createUser('busy-member');
  const startAt = await startDueSessions(started, clock, [member.id], await started.adminToken());
  return { userId: member.id, startAt };
}

/** Runs the segments and report read of `userId` over the hour from `startAt`, with a token issued at the clock's time. */
async function readUser(started: TestServer, userId: string, startAt: number) {
  const token = await started.login(ADMIN.username, ADMIN.password);
  const window = { start: new Date(startAt).toISOString(), end: new Date(startAt + 3600_000).toISOString() };
  return started.gql<ReadData>(READ, { users: [userId], window }, token);
}

/**
 * Makes the second read that finds `userId` busy join the first read's wait
 * for the lock. That wait ends with `endWait` once the second read has
 * joined it.
 */
function mockJoinedWait(started: TestServer, userId: string, endWait: (acquire: TestServer['app']['store']['acquireUserLock']) => Promise<never>) {
  const store = started.app.store;
  const intake = started.app.services.intake;
  const counts = { busyReads: 0, waitedAcquires: 0 };
  const settle = intake.settle.bind(intake);
  let secondReadBusy!: () => void;
  const secondReadFoundBusy = new Promise<void>((resolve) => {
    secondReadBusy = resolve;
  });
  vi.spyOn(intake, 'settle').mockImplementation(async (settledUserId, waitMs) => {
    try {
      return await settle(settledUserId, waitMs);
    } catch (error) {
      if (settledUserId === userId) {
        counts.busyReads += 1;
        if (counts.busyReads === 2) {
          secondReadBusy();
        }
      }
      throw error;
    }
  });
  const acquire = store.acquireUserLock.bind(store);
  let firstWaitStarted!: () => void;
  const firstReadWaits = new Promise<void>((resolve) => {
    firstWaitStarted = resolve;
  });
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    if (lockedUserId !== userId || options.waitMs === 0) {
      return acquire(lockedUserId, options);
    }
    counts.waitedAcquires += 1;
    firstWaitStarted();
    await secondReadFoundBusy;
    // The second read joins the wait in the microtasks after its settle failed.
    await new Promise((resolve) => setImmediate(resolve));
    return endWait(acquire);
  });
  return { counts, firstReadWaits };
}

it('read settles user after lock release', async () => {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS });
  const store = server.app.store;
  const { userId, startAt } = await startDueMember(server, clock);

  // Another request holds the user's lock, as a request of another process
  // that read its now before the deadline would, and settles nothing.
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
  // Release the lock once the read's first attempt at it has failed, so
  // the release comes while the read still has time to wait.
  const acquire = store.acquireUserLock.bind(store);
  let released: Promise<boolean> | null = null;
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    try {
      return await acquire(lockedUserId, options);
    } catch (error) {
      if (lockedUserId === userId && released === null) {
        released = store.releaseUserLock(heldLock);
      }
      throw error;
    }
  });

  const read = await readUser(server, userId, startAt);

  expect(released, 'the read tried the held lock').not.toBeNull();
  expect(await released, 'the held lock was released').toBe(true);
  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
  // The session's minute of activity. An open session would run to now, 32 minutes after its start.
  expect(read.data?.report.totalSeconds).toBe(60);
});

it('read waits for holder in process', async () => {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS });
  const intake = server.app.services.intake;
  const { userId, startAt } = await startDueMember(server, clock);

  // A preference change of the same process holds the user's turn and lock
  // until `failHolder` is called, then fails before it settles anything.
  let failHolder = (): void => {};
  const holderFails = new Promise<void>((resolve) => {
    failHolder = resolve;
  });
  const holderError = intake
    .replay(userId, async () => {
      await holderFails;
      throw new Error('injected failure of the preference write');
    })
    .then(
      () => null,
      (error: unknown) => error,
    );
  // The holder fails once the read has found the user busy.
  const settle = intake.settle.bind(intake);
  let foundBusy = false;
  vi.spyOn(intake, 'settle').mockImplementation(async (settledUserId, waitMs) => {
    try {
      return await settle(settledUserId, waitMs);
    } catch (error) {
      if (settledUserId === userId) {
        foundBusy = true;
        failHolder();
      }
      throw error;
    }
  });

  const read = await readUser(server, userId, startAt);

  expect(await holderError).toEqual(new Error('injected failure of the preference write'));
  expect(foundBusy, 'the read found the user busy').toBe(true);
  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
  expect(read.data?.report.totalSeconds).toBe(60);
});

it('read returns when lock outlasts wait', async () => {
  const clock = new ManualClock(STARTED_AT);
  const logs = captureLogs('debug');
  server = await startTestServer(import.meta.filename, {
    clock,
    ...WITHOUT_WORKERS,
    logger: logs.logger,
    env: { READ_SETTLE_WAIT_MS: '200' },
  });
  const { userId, startAt } = await startDueMember(server, clock);
  const heldLock = await server.app.store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });

  const read = await readUser(server, userId, startAt);
  await server.app.store.releaseUserLock(heldLock);

  // The read shows the session as stored, still open, and runs it to now.
  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes).toEqual([{ end: null, endReason: null }]);
  expect(read.data?.report.totalSeconds).toBe(32 * 60);
  const skipped = logs.entries().filter((entry) => entry.msg.includes('stayed locked'));
  expect(skipped.map((entry) => entry.userId)).toEqual([userId]);
  expect(skipped[0]?.waitMs, 'the wait of READ_SETTLE_WAIT_MS, not of USER_LOCK_WAIT_MS').toBeLessThanOrEqual(200);
  expect(skipped.map((entry) => entry.level)).toEqual([pino.levels.values.debug]);

  // Once the lock is free, the next read settles the user.
  const later = await readUser(server, userId, startAt);
  expect(later.data?.segments.nodes).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
});

/**
 * Holds a due member's lock, starts a read that waits for it, and sends a
 * write of the same user while the read waits. Returns the write's reply.
 */
async function writeBesideWaitingRead(env: Record<string, string>) {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS, env });
  const started = server;
  const store = started.app.store;
  const { userId, startAt } = await startDueMember(started, clock);
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
  let readWaits = (): void => {};
  const readWaiting = new Promise<void>((resolve) => {
    readWaits = resolve;
  });
  const acquire = store.acquireUserLock.bind(store);
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    if (options.waitMs > 0) {
      readWaits();
    }
    return acquire(lockedUserId, options);
  });

  const read = readUser(started, userId, startAt);
  await readWaiting;
  const adminToken = await started.adminToken();
  const write = await started.gql(SEND_EVENTS, { events: [{ userId, type: 'heartbeat', occurredAt: new Date(startAt).toISOString() }] }, adminToken);
  await read;
  await store.releaseUserLock(heldLock);
  return write;
}

// Behind: the read waits longer than the write and keeps the user's turn in
// this process meanwhile, so the write fails while the read waits. After: the
// read gives up first, so the write gets the user's turn and then spends the
// rest of its wait on the lock. Either way the error names the whole wait.
it.each([
  ['behind', '300', '1000', 300],
  ['after', '1000', '200', 1000],
] as const)('write %s waiting read names whole wait', async (_order, lockWaitMs, readWaitMs, waitMs) => {
  const write = await writeBesideWaitingRead({ USER_LOCK_WAIT_MS: lockWaitMs, READ_SETTLE_WAIT_MS: readWaitMs });

  expect(write.errors?.[0]?.extensions?.reason).toBe('USER_BUSY');
  expect(write.errors?.[0]?.extensions?.waitMs).toBe(waitMs);
  expect(write.errors?.[0]?.message).toContain(`for the whole wait of ${waitMs} ms`);
});

it('concurrent reads share one wait', async () => {
  const READS = 5;
  const clock = new ManualClock(STARTED_AT);
  // A wait far longer than the test, so that the first read still waits when
  // the last one arrives, however slowly the requests come in.
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS, env: { READ_SETTLE_WAIT_MS: '600000' } });
  const started = server;
  const store = started.app.store;
  const intake = started.app.services.intake;
  const { userId, startAt } = await startDueMember(started, clock);
  const tokens = await Promise.all(Array.from({ length: READS }, () => started.login(ADMIN.username, ADMIN.password)));
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });

  // Release the lock once every read has found the user busy, so that all
  // of them are waiting, or joined a wait, when it comes free.
  const settle = intake.settle.bind(intake);
  let busyReads = 0;
  vi.spyOn(intake, 'settle').mockImplementation(async (settledUserId, waitMs) => {
    try {
      return await settle(settledUserId, waitMs);
    } catch (error) {
      if (settledUserId === userId) {
        busyReads += 1;
        if (busyReads === READS) {
          await store.releaseUserLock(heldLock);
        }
      }
      throw error;
    }
  });
  const acquire = store.acquireUserLock.bind(store);
  let waitedAcquires = 0;
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    if (lockedUserId === userId && options.waitMs > 0) {
      waitedAcquires += 1;
    }
    return acquire(lockedUserId, options);
  });

  const window = { start: new Date(startAt).toISOString(), end: new Date(startAt + 3600_000).toISOString() };
  const reads = await Promise.all(tokens.map((token) => started.gql<ReadData>(READ, { users: [userId], window }, token)));

  expect(busyReads).toBe(READS);
  expect(waitedAcquires, 'reads that waited for the lock').toBe(1);
  for (const [index, read] of reads.entries()) {
    expect(read.errors, `read ${index}`).toBeUndefined();
    expect(read.data?.segments.nodes, `read ${index}`).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
  }
});

it('joined read outlasts shorter wait', async () => {
  const clock = new ManualClock(STARTED_AT);
  // A wait far longer than the test, so that only the mock below ends one.
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS, env: { READ_SETTLE_WAIT_MS: '600000' } });
  const started = server;
  const store = started.app.store;
  const { userId, startAt } = await startDueMember(started, clock);
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });

  // The first read's wait ends with the user still locked, as at the end of
  // its READ_SETTLE_WAIT_MS, and the lock comes free right after, within
  // the wait of the second read, which started later.
  const { counts, firstReadWaits } = mockJoinedWait(started, userId, async (acquire) => {
    const busy = await acquire(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 }).then(
      () => new Error('the held lock was free'),
      (error: unknown) => error,
    );
    await store.releaseUserLock(heldLock);
    throw busy;
  });

  const firstRead = readUser(started, userId, startAt);
  await firstReadWaits;
  const secondRead = await readUser(started, userId, startAt);
  await firstRead;

  expect(counts.busyReads).toBe(2);
  expect(counts.waitedAcquires, 'reads that waited for the lock').toBe(1);
  expect(secondRead.errors).toBeUndefined();
  expect(secondRead.data?.segments.nodes).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
});

it('joined read keeps its own wait bound', async () => {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS, env: { READ_SETTLE_WAIT_MS: '300' } });
  const started = server;
  const store = started.app.store;
  const { userId, startAt } = await startDueMember(started, clock);
  await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });

  // The first read starts its wait first, but reaches the user only once the
  // second read waits for its lock, so it joins a wait that ends later.
  let secondWaitStarted!: () => void;
  const secondReadWaits = new Promise<void>((resolve) => {
    secondWaitStarted = resolve;
  });
  const peek = store.peekDeadlines.bind(store);
  let heldPeek = false;
  vi.spyOn(store, 'peekDeadlines').mockImplementation(async (userIds) => {
    if (!heldPeek && userIds.includes(userId)) {
      heldPeek = true;
      await secondReadWaits;
    }
    return peek(userIds);
  });
  // The second read's wait lasts until the first read returns, or 5 s when
  // the first read waits for it, far beyond READ_SETTLE_WAIT_MS either way.
  let firstReadDone = false;
  let firstReadAnswered!: () => void;
  const firstReadAnswers = new Promise<void>((resolve) => {
    firstReadAnswered = resolve;
  });
  let secondWaitOver = false;
  const acquire = store.acquireUserLock.bind(store);
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    if (lockedUserId !== userId || options.waitMs === 0) {
      return acquire(lockedUserId, options);
    }
    secondWaitStarted();
    await Promise.race([firstReadAnswers, new Promise((resolve) => setTimeout(resolve, 5000))]);
    secondWaitOver = true;
    return acquire(lockedUserId, { ...options, waitMs: 0 });
  });

  const firstRead = readUser(started, userId, startAt).then((read) => {
    firstReadDone = true;
    firstReadAnswered();
    return read;
  });
  await vi.waitFor(() => expect(heldPeek).toBe(true));
  const secondRead = readUser(started, userId, startAt);
  const first = await firstRead;
  const secondWaitOverAtFirstAnswer = secondWaitOver;
  await secondRead;

  expect(firstReadDone).toBe(true);
  expect(secondWaitOverAtFirstAnswer, 'the joined wait was over when the first read answered').toBe(false);
  expect(first.errors).toBeUndefined();
  expect(first.data?.segments.nodes).toEqual([{ end: null, endReason: null }]);
});

it('read waits again after an earlier wait', async () => {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS });
  const started = server;
  const store = started.app.store;
  const { userId, startAt } = await startDueMember(started, clock);

  // Each read finds the user's lock held, and the holder releases it once
  // the read's first attempt at it has failed.
  const acquire = store.acquireUserLock.bind(store);
  let heldLock: Awaited<ReturnType<typeof store.acquireUserLock>> | null = null;
  let released: Promise<boolean> | null = null;
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    try {
      return await acquire(lockedUserId, options);
    } catch (error) {
      if (lockedUserId === userId && heldLock !== null && released === null) {
        released = store.releaseUserLock(heldLock);
      }
      throw error;
    }
  });
  async function readWhileHeld(sessionStart: number) {
    heldLock = await acquire(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
    released = null;
    const read = await readUser(started, userId, sessionStart);
    expect(released, 'the read tried the held lock').not.toBeNull();
    expect(await released, 'the held lock was released').toBe(true);
    return read;
  }

  const first = await readWhileHeld(startAt);
  expect(first.data?.segments.nodes).toEqual([{ end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' }]);

  // A second session, due in turn, whose read finds the user busy again.
  const secondStart = await startDueSessions(started, clock, [userId], await started.adminToken());
  const second = await readWhileHeld(secondStart);

  expect(second.errors).toBeUndefined();
  expect(second.data?.segments.nodes).toEqual([
    { end: new Date(startAt + 60_000).toISOString(), endReason: 'AUTO_CLOSE' },
    { end: new Date(secondStart + 60_000).toISOString(), endReason: 'AUTO_CLOSE' },
  ]);
  expect(second.data?.report.totalSeconds).toBe(60);
});

it('read waits for a lock at most its own wait', async () => {
  const clock = new ManualClock(STARTED_AT);
  server = await startTestServer(import.meta.filename, {
    clock,
    ...WITHOUT_WORKERS,
    env: { USER_LOCK_WAIT_MS: '5000', READ_SETTLE_WAIT_MS: '200' },
  });
  const store = server.app.store;
  const { userId, startAt } = await startDueMember(server, clock);
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
  const acquire = store.acquireUserLock.bind(store);
  const waits: number[] = [];
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    if (lockedUserId === userId) {
      waits.push(options.waitMs);
    }
    return acquire(lockedUserId, options);
  });

  const read = await readUser(server, userId, startAt);
  await store.releaseUserLock(heldLock);

  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes).toEqual([{ end: null, endReason: null }]);
  expect(Math.max(...waits), 'the longest wait for the lock, READ_SETTLE_WAIT_MS and not USER_LOCK_WAIT_MS').toBeLessThanOrEqual(200);
  expect(waits.some((waitMs) => waitMs > 0), 'the read waited for the lock').toBe(true);
});

it('read logs a failed settle and reads stored rows', async () => {
  const clock = new ManualClock(STARTED_AT);
  const logs = captureLogs('info');
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS, logger: logs.logger });
  const intake = server.app.services.intake;
  const { userId, startAt } = await startDueMember(server, clock);
  // The settle fails for another reason than a busy lock, which a wait for the lock would not fix.
  vi.spyOn(intake, 'settle').mockRejectedValueOnce(new Error('injected settle failure'));

  const read = await readUser(server, userId, startAt);

  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes, 'the session as stored').toEqual([{ end: null, endReason: null }]);
  const warnings = logs.entries().filter((entry) => entry.msg === 'settling a due user before a read failed');
  expect(warnings.map((entry) => entry.userId)).toEqual([userId]);
  expect(warnings[0]?.err?.message).toBe('injected settle failure');
});

it('failed joined wait logs once', async () => {
  const clock = new ManualClock(STARTED_AT);
  const logs = captureLogs('debug');
  // A wait far longer than the test, so that only the mock below ends one.
  server = await startTestServer(import.meta.filename, {
    clock,
    ...WITHOUT_WORKERS,
    logger: logs.logger,
    env: { READ_SETTLE_WAIT_MS: '600000' },
  });
  const started = server;
  const { userId, startAt } = await startDueMember(started, clock);
  await started.app.store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
  // The first read's wait fails once the second read has joined it, as when
  // Redis fails during the wait.
  const { counts, firstReadWaits } = mockJoinedWait(started, userId, async () => {
    throw new Error('injected failure of the lock wait');
  });

  const firstRead = readUser(started, userId, startAt);
  await firstReadWaits;
  const secondRead = await readUser(started, userId, startAt);
  const first = await firstRead;

  expect(counts.busyReads).toBe(2);
  expect(counts.waitedAcquires, 'reads that waited for the lock').toBe(1);
  for (const [index, read] of [first, secondRead].entries()) {
    expect(read.errors, `read ${index}`).toBeUndefined();
    expect(read.data?.segments.nodes, `read ${index}: the session as stored`).toEqual([{ end: null, endReason: null }]);
  }
  const warnings = logs.entries().filter((entry) => entry.msg === 'settling a due user before a read failed');
  expect(warnings.map((entry) => entry.userId)).toEqual([userId]);
  expect(warnings[0]?.err?.message).toBe('injected failure of the lock wait');
  const joined = logs.entries().filter((entry) => entry.msg.startsWith('a joined wait for a due user failed'));
  expect(joined.map((entry) => entry.userId), 'the joined read logs at debug').toEqual([userId]);
  expect(joined[0]?.err?.message).toBe('injected failure of the lock wait');
});
