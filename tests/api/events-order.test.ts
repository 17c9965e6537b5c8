/**
 * The order of events that share an instant in the `events` connection, and
 * of segments that share a start in `segments`. Both follow the fold, on one
 * page and across pages of one item in both directions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf } from '../support/replay.js';

/** A page of labels read through a connection, with its cursors. */
interface LabelPage {
  labels: string[];
  startCursor: string | null;
  endCursor: string | null;
}

/** Reads `count` items one page of one item at a time, forward and then backward, and returns the labels in ascending order for each direction. */
async function readOneByOne(
  read: (variables: Record<string, unknown>) => Promise<LabelPage>,
  count: number,
): Promise<{ forward: string[]; backward: string[] }> {
  const forward: string[] = [];
  let after: string | null = null;
  for (let index = 0; index < count; index += 1) {
    const current = await read({ first: 1, after });
    forward.push(...current.labels);
    after = current.endCursor;
  }

  const backward: string[] = [];
  let before: string | null = null;
  for (let index = 0; index < count; index += 1) {
    const current = await read({ last: 1, before });
    backward.unshift(...current.labels);
    before = current.startCursor;
  }
  return { forward, backward };
}

function at(time: string): string {
  return new Date(`2026-01-20T${time}Z`).toISOString();
}

/**
 * Returns eight starts of `startType` with distinct pair keys, each sent
 * with no session open at `<hour>0:00` to `<hour>7:00` and followed by a
 * session end half an hour later.
 */
function startsWithoutSession(startType: string, hour: number): Array<{ type: string; pairKey?: string; occurredAt: string }> {
  return Array.from({ length: 8 }, (_, index) => [
    { type: startType, pairKey: `k${index}`, occurredAt: at(`${hour}${index}:00:00`) },
    { type: 'session_ended', occurredAt: at(`${hour}${index}:30:00`) },
  ]).flat();
}

describe('listing order at one instant', () => {
  let server: TestServer;

  beforeAll(async () => {
    // No auto-close falls between the events: the timeout is 30 days.
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(Date.parse('2026-01-25T00:00:00Z')),
      sweeper: false,
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(30 * 24 * 3600) },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('same instant in fold order', async () => {
    // Each task starts without a session, so a session_started correction
    // shares its instant and position. Each session end closes the task, and
    // that task_ended correction shares the end's instant and position.
    const carol = await server.createUser('carol');
    const events = startsWithoutSession('task_started', 0);
    dataOf(await server.gql(SEND_EVENTS, { events }, carol.token), 'sendEvents');
    const TYPES = `query ($first: Int, $after: String, $last: Int, $before: String) {
      events(first: $first, after: $after, last: $last, before: $before) {
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { type origin } }
      }
    }`;
    const expected = Array.from({ length: 8 }, () => [
      'session_started CORRECTION',
      'task_started CLIENT',
      'task_ended CORRECTION',
      'session_ended CLIENT',
    ]).flat();
    const read = async (variables: Record<string, unknown>): Promise<LabelPage> => {
      const { events: page } = dataOf(await server.gql(TYPES, variables, carol.token), 'events') as {
        events: { pageInfo: Omit<LabelPage, 'labels'>; edges: Array<{ node: { type: string; origin: string } }> };
      };
      return { ...page.pageInfo, labels: page.edges.map((edge) => `${edge.node.type} ${edge.node.origin}`) };
    };

    expect((await read({ first: 50 })).labels).toEqual(expected);
    const { forward, backward } = await readOneByOne(read, expected.length);
    expect(forward).toEqual(expected);
    expect(backward).toEqual(expected);
  });

  it('arrival numbers in storing order', async () => {
    // Two heartbeats share an instant and a late one comes first in time,
    // so neither occurredAt nor the listing order shows the storing order.
    const hana = await server.createUser('hana');
    const first = [
      { id: 'a', type: 'heartbeat', occurredAt: at('05:00:00') },
      { id: 'b', type: 'heartbeat', occurredAt: at('05:00:00') },
      { id: 'c', type: 'task_started', occurredAt: at('05:10:00') },
    ];
    dataOf(await server.gql(SEND_EVENTS, { events: first }, hana.token), 'sendEvents');
    const second = [
      { id: 'd', type: 'heartbeat', occurredAt: at('04:00:00') },
      { id: 'a', type: 'heartbeat', occurredAt: at('05:00:00') },
    ];
    dataOf(await server.gql(SEND_EVENTS, { events: second }, hana.token), 'sendEvents');

    const reply = await server.gql('{ events(first: 50) { nodes { clientId type origin arrival } } }', {}, hana.token);
    const nodes = (reply.data?.events?.nodes ?? []) as Array<{ clientId: string | null; type: string; origin: string; arrival: number | null }>;

    expect(nodes.map((node) => `${node.clientId ?? node.type} ${node.arrival}`)).toEqual([
      'd 4',
      'a 1',
      'b 2',
      'session_started null',
      'c 3',
    ]);
  });

  it('auto-close end after its start', async () => {
    // With a one-minute timeout that ends at the last activity, a session
    // with no activity after its start ends at the instant it started.
    const dave = await server.createUser('dave');
    const preference = await server.gql(
      'mutation { setAutoClosePreference(input: { pairType: "session", timeoutSeconds: 60, endAt: LAST_ACTIVITY }) { pairType } }',
      {},
      dave.token,
    );
    expect(preference.errors).toBeUndefined();
    const events = Array.from({ length: 6 }, (_, index) => [
      { type: 'session_started', occurredAt: at(`0${index}:00:00`) },
      { type: 'heartbeat', occurredAt: at(`0${index}:30:00`) },
    ]).flat();
    dataOf(await server.gql(SEND_EVENTS, { events }, dave.token), 'sendEvents');

    const reply = await server.gql('{ events(first: 50) { nodes { type origin rule } } }', {}, dave.token);
    const nodes = (reply.data?.events?.nodes ?? []) as Array<{ type: string; origin: string; rule: string | null }>;

    expect(nodes.map((node) => `${node.type} ${node.rule ?? node.origin}`)).toEqual(
      Array.from({ length: 6 }, () => ['session_started CLIENT', 'session_ended AUTO_CLOSE', 'heartbeat CLIENT']).flat(),
    );
  });

  it('same start in fold order', async () => {
    // Each task starts without a session, so the session opened for it
    // starts at the same instant and position.
    const erin = await server.createUser('erin');
    const events = startsWithoutSession('task_started', 1);
    dataOf(await server.gql(SEND_EVENTS, { events }, erin.token), 'sendEvents');
    const PAIRS = `query ($first: Int, $after: String, $last: Int, $before: String) {
      segments(first: $first, after: $after, last: $last, before: $before) {
        pageInfo { startCursor endCursor }
        edges { node { pairType } }
      }
    }`;
    const read = async (variables: Record<string, unknown>): Promise<LabelPage> => {
      const { segments: page } = dataOf(await server.gql(PAIRS, variables, erin.token), 'segments') as {
        segments: { pageInfo: Omit<LabelPage, 'labels'>; edges: Array<{ node: { pairType: string } }> };
      };
      return { ...page.pageInfo, labels: page.edges.map((edge) => edge.node.pairType) };
    };
    const expected = Array.from({ length: 8 }, () => ['session', 'task']).flat();

    expect((await read({ first: 50 })).labels).toEqual(expected);
    const { forward, backward } = await readOneByOne(read, expected.length);
    expect(forward).toEqual(expected);
    expect(backward).toEqual(expected);
  });

  it('same start in depth order', async () => {
    // A step of a task opens a task and a session at its own position. Both
    // the task and the step have a parent, so only depth orders them.
    const admin = await server.adminToken();
    const define = 'mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }';
    const step = { name: 'step', startType: 'step_started', endType: 'step_ended', parent: 'task' };
    dataOf(await server.gql(define, { input: step }, admin), 'definePairType');
    const frank = await server.createUser('frank');
    const events = startsWithoutSession('step_started', 1);
    dataOf(await server.gql(SEND_EVENTS, { events }, frank.token), 'sendEvents');

    const reply = await server.gql('{ segments(first: 50) { nodes { pairType } } }', {}, frank.token);
    const labels = (dataOf(reply, 'segments').segments.nodes as Array<{ pairType: string }>).map((node) => node.pairType);
    expect(labels).toEqual(Array.from({ length: 8 }, () => ['session', 'task', 'step']).flat());
  });
});
