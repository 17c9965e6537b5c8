/**
 * Events that intake stored but has not applied yet: an events page read in
 * that gap must not show them, because the corrections that their fold
 * writes sort before them and would be skipped by a cursor past them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import type { IntakeStep } from '../../src/services/derive.js';
import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';

let server: TestServer;
const stalledUsers = new Set<string>();
// Users whose batches stall from the second on, so that one request can hold an applied batch and a stalled one.
const stalledAfterFirst = new Map<string, number>();

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, {
    ...WITHOUT_WORKERS,
    // Before the auto-close deadline of the task and its session.
    clock: new ManualClock(Date.parse('2026-03-02T09:10:00Z')),
    fault: (step: IntakeStep, userId: string) => {
      if (step === 'events-stored' && stalledUsers.has(userId)) {
        throw new Error('injected fault: stop between storing and applying');
      }
      const batches = stalledAfterFirst.get(userId);
      if (step === 'events-stored' && batches !== undefined) {
        stalledAfterFirst.set(userId, batches + 1);
        if (batches >= 1) {
          throw new Error('injected fault: stop between storing and applying');
        }
      }
    },
  });
});

afterAll(async () => {
  await server?.close();
});

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;
const PAGE = `query ($users: [ID!], $after: String) {
  events(filter: { users: $users }, first: 10, after: $after) {
    edges { cursor node { type origin rule } }
    pageInfo { endCursor }
  }
}`;

it('pages skip no correction of a stalled batch', async () => {
  const member = await server.createUser('stalled-member');
  stalledUsers.add(member.id);
  const stalled = await server.gql(SEND, { events: [{ type: 'task_started', occurredAt: '2026-03-02T09:00:00Z' }] }, member.token);
  expect(stalled.errors?.[0]?.extensions?.eventsStored).toBe(true);
  stalledUsers.delete(member.id);

  const admin = await server.adminToken();
  const first = await server.gql(PAGE, { users: [member.id] }, admin);
  const firstTypes = first.data!.events.edges.map((edge: any) => edge.node.type);

  // The next batch of the user applies the stalled event too.
  const next = await server.gql(SEND, { events: [{ type: 'heartbeat', occurredAt: '2026-03-02T09:05:00Z' }] }, member.token);
  expect(next.errors).toBeUndefined();

  const second = await server.gql(PAGE, { users: [member.id], after: first.data!.events.pageInfo.endCursor }, admin);
  const secondTypes = second.data!.events.edges.map((edge: any) => edge.node.type);
  const whole = await server.gql(PAGE, { users: [member.id] }, admin);
  const wholeTypes = whole.data!.events.edges.map((edge: any) => edge.node.type);

  expect(wholeTypes).toEqual(['session_started', 'task_started', 'heartbeat']);
  expect([...firstTypes, ...secondTypes]).toEqual(wholeTypes);
});

it('lists a late event of a stalled batch', async () => {
  const member = await server.createUser('stalled-late');
  const applied = await server.gql(SEND, { events: [{ type: 'heartbeat', occurredAt: '2026-03-02T09:05:00Z' }] }, member.token);
  expect(applied.errors).toBeUndefined();
  // Ten days before the applied event, beyond the default 7-day horizon, so intake stores it as ignored.
  stalledUsers.add(member.id);
  const stalled = await server.gql(SEND, { events: [{ type: 'heartbeat', occurredAt: '2026-02-20T09:00:00Z' }] }, member.token);
  expect(stalled.errors?.[0]?.extensions?.eventsStored).toBe(true);
  stalledUsers.delete(member.id);

  const admin = await server.adminToken();
  const page = await server.gql(
    'query ($users: [ID!]) { events(filter: { users: $users }, first: 10) { nodes { occurredAt flags } } }',
    { users: [member.id] },
    admin,
  );
  expect(page.errors, JSON.stringify(page.errors)).toBeUndefined();
  // An ignored event is never applied, so the page lists it while the batch is still unapplied.
  expect(page.data!.events.nodes).toEqual([
    { occurredAt: '2026-02-20T09:00:00.000Z', flags: ['LATE_BEYOND_HORIZON'] },
    { occurredAt: '2026-03-02T09:05:00.000Z', flags: [] },
  ]);
});

it('stalled field after intake keeps its message', async () => {
  const alone = await server.createUser('stalled-alone');
  stalledUsers.add(alone.id);
  const single = await server.gql(SEND, { events: [{ type: 'heartbeat', occurredAt: '2026-03-02T09:05:00Z' }] }, alone.token);
  stalledUsers.delete(alone.id);
  expect(single.errors?.[0]?.extensions?.eventsStored, 'eventsStored alone').toBe(true);

  const member = await server.createUser('stalled-second');
  stalledAfterFirst.set(member.id, 0);
  const reply = await server.gql(
    `mutation {
      first: sendEvents(events: [{ type: "heartbeat", occurredAt: "2026-03-02T09:05:00Z" }]) { storedCount }
      second: sendEvents(events: [{ type: "heartbeat", occurredAt: "2026-03-02T09:06:00Z" }]) { storedCount }
    }`,
    {},
    member.token,
  );
  stalledAfterFirst.delete(member.id);

  expect(reply.errors?.[0]?.path, 'path').toEqual(['second']);
  expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
  // The message already states that its events are stored, so markErrorsAfterIntake adds nothing for the field before it.
  expect(reply.errors?.[0]?.message, 'message').toBe(single.errors?.[0]?.message);
});
