/**
 * A read settles due users only once its arguments are valid, and only the
 * users it reads. A read that reads no user, such as `filter: { users: [] }`
 * or a report of literal intervals, settles none, and a rejected read
 * settles none before its error.
 */
import { afterAll, beforeAll, beforeEach, expect, it, vi, type MockInstance } from 'vitest';

import { ADMIN, ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { startDueSessions } from '../support/due-sessions.js';
import { dataOf } from '../support/replay.js';

const STARTED_AT = Date.parse('2026-02-12T09:00:00Z');
/** One more entry than `filter.users` accepts. */
const TOO_MANY_USERS = 1001;

const clock = new ManualClock(STARTED_AT);
let server: TestServer;
let settle: MockInstance;

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS });
  settle = vi.spyOn(server.app.services.intake, 'settle');
});

afterAll(async () => {
  await server?.close();
});

beforeEach(() => {
  settle.mockClear();
});

interface DueUser {
  id: string;
  /** The user's own token. */
  token: string;
  /** A token of the admin, issued now. */
  adminToken: string;
  /** The window of the user's session. */
  window: { start: string; end: string };
}

let userCount = 0;

/**
 * Creates a member with an open session and moves the clock past the
 * session's deadline. Each case has its own user, so that a case that
 * settles every due user cannot hide a later case that settles too.
 */
async function createDueUser(): Promise<DueUser> {
  userCount += 1;
  const input = { username: `rejected-${userCount}`, password: 'rejected-password-1', role: 'MEMBER' };
  // Tokens live for an hour of the clock, which each case moves on, so each
  // case logs in again.
  const adminToken = await server.login(ADMIN.username, ADMIN.password);
  const create = `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`;
  const userId = dataOf(await server.gql<{ createUser: { id: string } }>(create, { input }, adminToken), 'createUser').createUser.id;
  const startAt = await startDueSessions(server, clock, [userId], adminToken);
  return {
    id: userId,
    token: await server.login(input.username, input.password),
    adminToken: await server.login(ADMIN.username, ADMIN.password),
    window: { start: new Date(startAt).toISOString(), end: new Date(startAt + 3600_000).toISOString() },
  };
}

/** Returns whether the user's deadline is still scheduled at or before now, so no read settled it. */
async function isStillDue(userId: string): Promise<boolean> {
  const deadline = await server.app.store.peekDeadline(userId);
  return deadline !== null && deadline <= clock.now();
}

/**
 * `count` user ids: `userId` first, then ids that belong to no user. The
 * other ids sort after `userId`, so `userId` leads in both orders.
 */
function idsStartingWith(userId: string, count: number): string[] {
  const ids = Array.from({ length: count - 1 }, (_, index) => `ffffffff-0000-4000-8000-${String(index).padStart(12, '0')}`);
  return [userId, ...ids];
}

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) { totalSeconds }
}`;

it.each(['segments', 'events'])('%s with empty users settle none', async (field) => {
  const user = await createDueUser();

  const result = await server.gql(`{ ${field}(filter: { users: [] }) { nodes { id } } }`, {}, user.adminToken);

  expect(result.errors).toBeUndefined();
  expect(result.data?.[field].nodes).toEqual([]);
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it('report of literal intervals settles none', async () => {
  const user = await createDueUser();

  const result = await server.gql(REPORT, { expression: { intervals: [user.window] }, window: user.window }, user.adminToken);

  expect(result.errors).toBeUndefined();
  expect(result.data?.report.totalSeconds).toBe(3600);
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it.each([
  {
    name: 'too many users',
    query: `query ($users: [ID!]) { segments(filter: { users: $users }) { nodes { id } } }`,
    users: (userId: string) => idsStartingWith(userId, TOO_MANY_USERS),
    reason: 'LIMIT_EXCEEDED',
  },
  {
    name: 'malformed user id',
    query: `query ($users: [ID!]) { events(filter: { users: $users }) { nodes { id } } }`,
    users: (userId: string) => ['zzz', userId],
    reason: 'INVALID_USER_ID',
  },
  {
    name: 'invalid page size',
    query: `query ($users: [ID!]) { segments(filter: { users: $users }, first: 0) { nodes { id } } }`,
    users: (userId: string) => [userId],
    reason: 'INVALID_PAGE_SIZE',
  },
])('read with $name settles none', async ({ query, users, reason }) => {
  const user = await createDueUser();

  const result = await server.gql(query, { users: users(user.id) }, user.adminToken);

  expect(result.errors?.[0]?.extensions?.reason).toBe(reason);
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it('unscoped read with invalid window settles none', async () => {
  const user = await createDueUser();
  const window = { start: user.window.end, end: user.window.start };

  const result = await server.gql(`query ($window: WindowInput) { segments(window: $window) { nodes { id } } }`, { window }, user.adminToken);

  expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_WINDOW');
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it('report with malformed user id settles none', async () => {
  const user = await createDueUser();
  const expression = { segments: { users: ['alice', user.id] } };

  const result = await server.gql(REPORT, { expression, window: user.window }, user.adminToken);

  expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_USER_ID');
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it('member naming another user settles none', async () => {
  const user = await createDueUser();
  const other = '00000000-0000-4000-8000-00000000beef';

  const result = await server.gql(`query ($users: [ID!]) { segments(filter: { users: $users }) { nodes { id } } }`, { users: [other] }, user.token);

  expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  expect(settle).not.toHaveBeenCalled();
  expect(await isStillDue(user.id)).toBe(true);
});

it('valid read settles its due user', async () => {
  // The checks above would pass if reads never settled anyone.
  const user = await createDueUser();

  const result = await server.gql(`{ segments { nodes { endReason } } }`, {}, user.token);

  expect(result.errors).toBeUndefined();
  expect(result.data?.segments.nodes).toEqual([{ endReason: 'AUTO_CLOSE' }]);
  expect(settle).toHaveBeenCalledWith(user.id, 0);
  expect(await isStillDue(user.id)).toBe(false);
});
