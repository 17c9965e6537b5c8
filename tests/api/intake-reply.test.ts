/**
 * The reply of sendEvents builds the events it has just stored from memory,
 * and reads only duplicates back. Every field of those events must equal
 * what a later `events` query reads from the database. The cases cover the
 * flags set at intake and the ORPHAN_END flag set by the fold. They also
 * cover a future time replaced by the receipt time, an event ignored beyond
 * the lateness horizon, and meta.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const FIELDS = 'id clientId type role pairType pairKey occurredAt receivedAt meta origin rule causeEventId flags';

const SEND = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) { results { duplicate event { ${FIELDS} } } }
}`;

const EVENTS = `query ($filter: EventFilter) {
  events(filter: $filter, first: 100) { nodes { ${FIELDS} } }
}`;

interface EventNode {
  id: string;
  flags: string[];
  occurredAt: string;
  [field: string]: unknown;
}

let server: TestServer;
let user: { id: string; token: string };

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, {
    clock: new ManualClock(NOW),
    env: { LATENESS_HORIZON_SECONDS: '3600', CLOCK_SKEW_SECONDS: '60' },
  });
  user = await server.createUser('reply-fields');
});

afterAll(async () => {
  await server?.close();
});

async function send(events: Array<Record<string, unknown>>): Promise<Array<{ duplicate: boolean; event: EventNode }>> {
  const response = await server.gql(SEND, { events }, user.token);
  return dataOf(response, 'sendEvents').sendEvents.results;
}

function minutesBefore(minutes: number): string {
  return new Date(NOW - minutes * 60_000).toISOString();
}

it('matches the stored events field by field', async () => {
  const first = await send([
    {
      id: 'start',
      type: 'session_started',
      occurredAt: minutesBefore(50),
      meta: { zone: 'b', a: 1, nested: { level: 2, list: [1, { yy: 1, x: 2 }] }, '10': 'ten', é: true, z: null },
    },
    { id: 'orphan', type: 'task_ended', pairKey: 'never-started', occurredAt: minutesBefore(40) },
    { id: 'beat', type: 'heartbeat', occurredAt: minutesBefore(30) },
    { id: 'future', type: 'heartbeat', occurredAt: new Date(NOW + 3_600_000).toISOString() },
    { id: 'no-time', type: 'heartbeat' },
  ]);
  const second = await send([
    { id: 'too-late', type: 'heartbeat', occurredAt: minutesBefore(24 * 60) },
    { id: 'late', type: 'heartbeat', occurredAt: minutesBefore(45) },
    { id: 'beat', type: 'heartbeat', occurredAt: minutesBefore(30) },
  ]);
  const replied = [...first, ...second];

  const stored = dataOf(await server.gql(EVENTS, { filter: { users: [user.id] } }, user.token), 'events').events
    .nodes as EventNode[];
  const storedById = new Map(stored.map((event) => [event.id, event]));

  expect(replied.map((result) => result.duplicate)).toEqual([false, false, false, false, false, false, false, true]);
  for (const { event } of replied) {
    expect(event).toEqual(storedById.get(event.id));
    // toEqual ignores key order; the serialised replies must match as well.
    expect(JSON.stringify(event)).toBe(JSON.stringify(storedById.get(event.id)));
  }

  const byClientId = new Map(replied.map(({ event }) => [event.clientId, event]));
  expect(byClientId.get('orphan')?.flags).toEqual(['ORPHAN_END']);
  expect(byClientId.get('future')?.flags).toEqual(['FUTURE_TIMESTAMP']);
  expect(byClientId.get('future')?.occurredAt).toBe(new Date(NOW).toISOString());
  expect(byClientId.get('too-late')?.flags).toEqual(['LATE_BEYOND_HORIZON']);
  expect(byClientId.get('late')?.flags).toEqual(['LATE_EVENT']);
  expect(byClientId.get('start')?.meta).toEqual({
    zone: 'b',
    a: 1,
    nested: { level: 2, list: [1, { yy: 1, x: 2 }] },
    '10': 'ten',
    é: true,
    z: null,
  });
});
