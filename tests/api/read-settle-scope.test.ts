/**
 * Reads apply passed auto-close deadlines before they return. A read that
 * names its users must settle every one of them that is due, even when
 * other users fall due earlier, so an analyst or admin reading one user sees
 * that user's auto-close without waiting for the sweeper. A read of every
 * user settles up to READ_SETTLE_MAX_USERS due users. The settles take
 * turns, at most 2 per read and READ_SETTLE_CONCURRENCY per process.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, expect, it, vi } from 'vitest';

import { ADMIN, ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { startDueSessions } from '../support/due-sessions.js';
import { dataOf, SEND_EVENTS } from '../support/replay.js';

const STARTED_AT = Date.parse('2026-02-10T09:00:00Z');
/** Users who fall due before the two named users of the first test. */
const CROWD = 55;
/** Due users of each test after the first, more than the 50 that one read settled at most before. */
const NAMED = 60;
/** READ_SETTLE_CONCURRENCY of the server: more than one read's 2 settles at once. */
const PROCESS_SETTLES = 3;

const clock = new ManualClock(STARTED_AT);
let server: TestServer;
/** Users that the tests after the first start sessions for. */
let sessionUsers: string[];

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, {
    clock,
    ...WITHOUT_WORKERS,
    env: { READ_SETTLE_CONCURRENCY: String(PROCESS_SETTLES) },
  });
  const admin = await server.adminToken();
  const create = `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`;
  sessionUsers = [];
  for (let index = 0; index < NAMED; index += 1) {
    const input = { username: `session-${index}`, password: 'session-password-1', role: 'MEMBER' };
    sessionUsers.push(dataOf(await server.gql<{ createUser: { id: string } }>(create, { input }, admin), 'createUser').createUser.id);
  }
});

afterAll(async () => {
  await server?.close();
});

it('read naming users settles them', async () => {
  const admin = await server.adminToken();
  const create = `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`;
  const userIds: string[] = [];
  for (let index = 0; index < CROWD + 2; index += 1) {
    const input = { username: `settle-${index}`, password: 'settle-password-1', role: 'MEMBER' };
    userIds.push(dataOf(await server.gql<{ createUser: { id: string } }>(create, { input }, admin), 'createUser').createUser.id);
  }
  const [listed, reported] = userIds.slice(CROWD);
  // Each session has activity a minute after its start, so its auto-close
  // is not empty. The two named users start last, so their deadlines are
  // the latest of all.
  const events = userIds.flatMap((userId, index) => {
    const startAt = STARTED_AT + (index >= CROWD ? 60_000 : index * 100);
    return [
      { userId, type: 'session_started', occurredAt: new Date(startAt).toISOString() },
      { userId, type: 'heartbeat', occurredAt: new Date(startAt + 60_000).toISOString() },
    ];
  });
  clock.set(STARTED_AT + 180_000);
  dataOf(await server.gql(SEND_EVENTS, { events }, admin), 'sendEvents');

  // Past every deadline: the default timeout is 30 minutes. Both reads share
  // one request, so neither relies on a settle of an earlier request.
  clock.set(STARTED_AT + 120_000 + 31 * 60_000);
  const read = await server.gql<{
    segments: { nodes: Array<{ end: string | null; endReason: string | null }> };
    report: { totalSeconds: number };
  }>(
    `query ($listed: [ID!], $reported: [ID!], $window: WindowInput!) {
      segments(filter: { users: $listed }) { nodes { end endReason } }
      report(window: $window, expression: { segments: { users: $reported } }) { totalSeconds }
    }`,
    {
      listed: [listed],
      reported: [reported],
      window: { start: new Date(STARTED_AT).toISOString(), end: new Date(STARTED_AT + 3600_000).toISOString() },
    },
    admin,
  );

  expect(read.errors).toBeUndefined();
  expect(read.data?.segments.nodes).toEqual([{ end: new Date(STARTED_AT + 120_000).toISOString(), endReason: 'AUTO_CLOSE' }]);
  expect(read.data?.report.totalSeconds).toBe(60);
});

it('report naming 200,000 users is rejected', async () => {
  // Enough ids that spreading them into one call's arguments overflows the
  // stack. The report must reject the list by its length instead.
  const admin = await server.adminToken();
  const users = Array.from({ length: 200_000 }, (_, index) => `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`);
  const result = await server.gql(
    `query ($expression: SetExpression!, $window: WindowInput!) { report(expression: $expression, window: $window) { totalSeconds } }`,
    {
      expression: { segments: { users } },
      window: { start: new Date(STARTED_AT).toISOString(), end: new Date(STARTED_AT + 3600_000).toISOString() },
    },
    admin,
  );

  expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_EXPRESSION');
  expect(result.errors?.[0]?.message).toContain('has 200000 entries, above the maximum of 1000');
});

interface Sessions {
  /** A token of the admin, issued after the sessions were sent. */
  adminToken: string;
  /** A report window that contains every session and starts with them. */
  window: { start: string; end: string };
}

/** Starts due sessions for `userIds`, as `startDueSessions` does, and returns a fresh admin token and their window. */
async function startSessions(userIds: readonly string[]): Promise<Sessions> {
  // Tokens live for an hour of the clock, which each test moves on.
  const before = await server.login(ADMIN.username, ADMIN.password);
  const startAt = await startDueSessions(server, clock, userIds, before);
  return {
    adminToken: await server.login(ADMIN.username, ADMIN.password),
    window: { start: new Date(startAt).toISOString(), end: new Date(startAt + 3600_000).toISOString() },
  };
}

type SegmentNodes = { nodes: Array<{ user: { id: string }; endReason: string | null }> };

it('segments naming 60 due users settle all', async () => {
  const { adminToken, window } = await startSessions(sessionUsers);

  const read = await server.gql<{ segments: SegmentNodes }>(
    `query ($users: [ID!], $window: WindowInput) {
      segments(filter: { users: $users }, window: $window, first: 1000) { nodes { user { id } endReason } }
    }`,
    { users: sessionUsers, window },
    adminToken,
  );

  expect(read.errors).toBeUndefined();
  const nodes = read.data!.segments.nodes;
  expect(nodes.map((node) => node.user.id).sort()).toEqual([...sessionUsers].sort());
  expect(nodes.filter((node) => node.endReason !== 'AUTO_CLOSE')).toEqual([]);
});

it('report naming 60 due users settles all', async () => {
  const { adminToken, window } = await startSessions(sessionUsers);

  const read = await server.gql<{ report: { totalSeconds: number } }>(
    `query ($expression: SetExpression!, $window: WindowInput!) { report(expression: $expression, window: $window) { totalSeconds } }`,
    { expression: { segments: { users: sessionUsers } }, window },
    adminToken,
  );

  // Every session covers the same minute. One that stayed open would run to now.
  expect(read.errors).toBeUndefined();
  expect(read.data?.report.totalSeconds).toBe(60);
});

it('unscoped read settles over 50 due users', async () => {
  const { adminToken, window } = await startSessions(sessionUsers);

  const read = await server.gql<{ segments: SegmentNodes }>(
    `query ($window: WindowInput) { segments(window: $window, first: 1000) { nodes { user { id } endReason } } }`,
    { window },
    adminToken,
  );

  expect(read.errors).toBeUndefined();
  const nodes = read.data!.segments.nodes;
  expect(nodes).toHaveLength(NAMED);
  expect(nodes.filter((node) => node.endReason !== 'AUTO_CLOSE')).toEqual([]);
});

it('reads settle users claimed elsewhere', async () => {
  const [named, unnamed] = sessionUsers as [string, string];
  const { adminToken, window } = await startSessions([named, unnamed]);
  // The sweeper of another process claims both users and stops before it
  // settles them, as when that process is killed. Its lease is 30 s.
  const claimed = await server.app.store.claimDueUsers(clock.now(), 30_000, 10);
  expect([...claimed].sort()).toEqual([named, unnamed].sort());

  const namedRead = await server.gql<{ segments: SegmentNodes }>(
    `query ($users: [ID!], $window: WindowInput) {
      segments(filter: { users: $users }, window: $window) { nodes { user { id } endReason } }
    }`,
    { users: [named], window },
    adminToken,
  );
  expect(namedRead.errors).toBeUndefined();
  expect(namedRead.data!.segments.nodes.map((node) => node.endReason)).toEqual(['AUTO_CLOSE']);

  const unscopedRead = await server.gql<{ segments: SegmentNodes }>(
    `query ($window: WindowInput) { segments(window: $window, first: 1000) { nodes { user { id } endReason } } }`,
    { window },
    adminToken,
  );
  expect(unscopedRead.errors).toBeUndefined();
  const unnamedNodes = unscopedRead.data!.segments.nodes.filter((node) => node.user.id === unnamed);
  expect(unnamedNodes.map((node) => node.endReason)).toEqual(['AUTO_CLOSE']);
});

it('settles take turns per read and process', async () => {
  const intake = server.app.services.intake;
  const settle = intake.settle.bind(intake);
  let calls = 0;
  let running = 0;
  const maxRunning: number[] = [];
  const spy = vi.spyOn(intake, 'settle').mockImplementation(async (userId, waitMs) => {
    calls += 1;
    running += 1;
    maxRunning[maxRunning.length - 1] = Math.max(maxRunning.at(-1)!, running);
    try {
      // Long enough that the settles of one request overlap.
      await sleep(20);
      return await settle(userId, waitMs);
    } finally {
      running -= 1;
    }
  });
  const half = NAMED / 2;
  const query = `query ($first: [ID!], $second: [ID!]) {
    first: segments(filter: { users: $first }) { nodes { endReason } }
    second: segments(filter: { users: $second }) { nodes { endReason } }
  }`;

  try {
    // One read: its own limit of 2 applies.
    const single = await startSessions(sessionUsers);
    maxRunning.push(0);
    const singleRead = await server.gql(query, { first: sessionUsers, second: [] }, single.adminToken);
    expect(singleRead.errors).toBeUndefined();

    // Two reads in one request: the process limit applies to both.
    const double = await startSessions(sessionUsers);
    maxRunning.push(0);
    const doubleRead = await server.gql(query, { first: sessionUsers.slice(0, half), second: sessionUsers.slice(half) }, double.adminToken);
    expect(doubleRead.errors).toBeUndefined();
  } finally {
    spy.mockRestore();
  }

  expect(maxRunning).toEqual([2, PROCESS_SETTLES]);
  expect(calls).toBe(2 * NAMED);
});
