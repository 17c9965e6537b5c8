/**
 * The `seconds` of an open segment and the reports of the same request run
 * open segments to one and the same now, so a dashboard that shows both
 * gets matching numbers.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';

const OPENED_AT = Date.parse('2026-03-02T09:00:00Z');
const clock = new ManualClock(OPENED_AT + 600_000);
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock });
});

afterAll(async () => {
  await server?.close();
});

/** Creates a member and sends `events` for it, and returns its token. */
async function memberWithEvents(username: string, events: Array<{ type: string; occurredAt: string }>): Promise<string> {
  const member = await server.createUser(username);
  const sent = await server.gql(
    `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`,
    { events },
    member.token,
  );
  expect(sent.errors).toBeUndefined();
  return member.token;
}

/** Runs `work` with a clock that moves 1 s on at every read, as if each step took a second. */
async function withTickingClock<T>(work: () => Promise<T>): Promise<T> {
  let reads = 0;
  const now = clock.now.bind(clock);
  clock.now = () => now() + 1000 * reads++;
  try {
    return await work();
  } finally {
    clock.now = now;
  }
}

it('open segment seconds match reports', async () => {
  const token = await memberWithEvents('open-seconds', [{ type: 'session_started', occurredAt: new Date(OPENED_AT).toISOString() }]);

  const reply = await withTickingClock(() =>
    server.gql(
      `query ($window: WindowInput!) {
        segments(filter: { open: true }) { nodes { seconds } }
        report(expression: { segments: { pairTypes: ["session"] } }, window: $window) { totalSeconds }
      }`,
      { window: { start: '2026-03-02T00:00:00Z', end: '2026-03-03T00:00:00Z' } },
      token,
    ),
  );

  expect(reply.errors, JSON.stringify(reply.errors)).toBeUndefined();
  const seconds = reply.data!.segments.nodes.map((node: { seconds: number }) => node.seconds);
  expect(seconds).toHaveLength(1);
  expect(seconds[0]).toBe(reply.data!.report.totalSeconds);
});

it('open segments share one now', async () => {
  const token = await memberWithEvents('open-seconds-pair', [
    { type: 'session_started', occurredAt: new Date(OPENED_AT).toISOString() },
    { type: 'task_started', occurredAt: new Date(OPENED_AT + 60_000).toISOString() },
  ]);

  // Two reads of the ticking clock, one per segment, would disagree by 1 s.
  const reply = await withTickingClock(() =>
    server.gql('{ segments(filter: { open: true }) { nodes { pairType seconds } } }', {}, token),
  );

  expect(reply.errors, JSON.stringify(reply.errors)).toBeUndefined();
  const seconds = new Map<string, number>(
    reply.data!.segments.nodes.map((node: { pairType: string; seconds: number }) => [node.pairType, node.seconds]),
  );
  expect([...seconds.keys()].sort(), 'open pair types').toEqual(['session', 'task']);
  // The task started 60 s after the session, and both run to the same end.
  expect(seconds.get('session')! - seconds.get('task')!, 'difference').toBe(60);
});
