/**
 * Reads apply passed auto-close deadlines before they return. A read that
 * names its users must settle those users, even when more users than one
 * read settles are due, so an analyst or admin reading one user sees that
 * user's auto-close without waiting for the sweeper.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { dataOf, SEND_EVENTS } from '../support/replay.js';

const STARTED_AT = Date.parse('2026-02-10T09:00:00Z');
/** More users than one read settles when it names none (SETTLE_BEFORE_READ_MAX). */
const CROWD = 55;

const clock = new ManualClock(STARTED_AT);
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, { clock, ...WITHOUT_WORKERS });
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
