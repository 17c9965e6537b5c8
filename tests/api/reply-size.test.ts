/**
 * The reply budget of queries (MAX_REPLY_BYTES): the events and segments of
 * all root fields of one query share it, each counting 256 bytes plus its
 * `meta` as JSON. A query over it gets HTTP 400 with LIMIT_EXCEEDED and no
 * data, and mutation replies are not counted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, WITHOUT_WORKERS, type GraphQLResponse, type TestServer } from '../support/app.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const MAX_REPLY_BYTES = 100_000;
/** Bytes that each event and segment counts besides its meta. */
const OBJECT_BYTES = 256;
/** `{"blob":"xx..."}` is 11 bytes of JSON around the string, so this meta is 2,244 bytes and an event with it counts 2,500. */
const META = { blob: 'x'.repeat(2233) };
const META_BYTES = 2244;
/** Session pairs that the member sends: 40 events, 20 segments. */
const PAIRS = 20;

const SEND_EVENTS = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount results { event { meta } } } }`;

/** Returns a query with `count` aliases of `field`, each selecting `selection`. */
function aliased(count: number, field: string, selection: string): string {
  const fields = Array.from({ length: count }, (_, index) => `a${index}: ${field} { ${selection} }`);
  return `query { ${fields.join('\n')} }`;
}

/** Returns `count` events of session pairs, a minute apart from `start`, each with META. */
function sessionEvents(count: number, start: number): Array<Record<string, unknown>> {
  return Array.from({ length: count }, (_, index) => ({
    type: index % 2 === 0 ? 'session_started' : 'session_ended',
    occurredAt: new Date(start + index * 60_000).toISOString(),
    meta: META,
  }));
}

function expectReplyLimit(reply: GraphQLResponse): void {
  expect(reply.status).toBe(400);
  expect(reply).not.toHaveProperty('data');
  expect(reply.errors).toHaveLength(1);
  const error = reply.errors![0]!;
  expect(error.extensions?.code).toBe('BAD_USER_INPUT');
  expect(error.extensions?.reason).toBe('LIMIT_EXCEEDED');
  expect(error.extensions?.limit).toBe('MAX_REPLY_BYTES');
  expect(error.extensions?.max).toBe(MAX_REPLY_BYTES);
  expect(error.extensions?.value).toBeGreaterThan(MAX_REPLY_BYTES);
  expect(error.message).toContain(`maximum of ${MAX_REPLY_BYTES} bytes (MAX_REPLY_BYTES)`);
  expect(error.message).toContain('smaller pages');
}

describe('reply size limit', () => {
  let server: TestServer;
  let member: { id: string; token: string };

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      clock: new ManualClock(NOW),
      env: { MAX_REPLY_BYTES: String(MAX_REPLY_BYTES) },
    });
    member = await server.createUser('reply-size-member');
    const sent = await server.gql(SEND_EVENTS, { events: sessionEvents(2 * PAIRS, Date.parse('2026-01-20T08:00:00Z')) }, member.token);
    expect(sent.errors).toBeUndefined();
    expect(sent.data?.sendEvents.storedCount).toBe(2 * PAIRS);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('counts meta in the test data', () => {
    expect(Buffer.byteLength(JSON.stringify(META))).toBe(META_BYTES);
  });

  it('serves aliases up to the maximum', async () => {
    // 2 aliases x 20 events x (256 + 2,244) bytes = 100,000 bytes, the maximum.
    const reply = await server.gql(aliased(2, 'events(first: 20)', 'nodes { meta }'), {}, member.token);

    expect(reply.status).toBe(200);
    expect(reply.errors).toBeUndefined();
    expect(reply.data?.a0.nodes).toHaveLength(20);
    expect(reply.data?.a1.nodes).toHaveLength(20);
    expect(reply.data?.a1.nodes[19].meta).toEqual(META);
  });

  it('rejects one event over the maximum', async () => {
    const query = `query {
      a0: events(first: 20) { nodes { meta } }
      a1: events(first: 20) { nodes { meta } }
      a2: events(first: 1) { nodes { id } }
    }`;
    const reply = await server.gql(query, {}, member.token);

    expectReplyLimit(reply);
    expect(reply.errors![0]!.extensions?.value).toBe(MAX_REPLY_BYTES + OBJECT_BYTES);
  });

  it('rejects the segment aliases of a whole reply', async () => {
    // One alias counts 20 x 3 x 2,500 = 150,000 bytes. With `me`, 19 aliases
    // fill REQUEST_MAX_ROOT_FIELDS (20), and the data of `me` goes too.
    const segments = aliased(19, 'segments(first: 20)', 'nodes { meta startEvent { meta } endEvent { meta } }');
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
      body: JSON.stringify({ query: segments.replace('query {', 'query { me { id }') }),
    });
    const text = await response.text();
    const reply = { status: response.status, ...JSON.parse(text) } as GraphQLResponse;

    expectReplyLimit(reply);
    expect(text.length).toBeLessThan(2000);
  });

  it('rejects event aliases over the maximum', async () => {
    const reply = await server.gql(aliased(20, 'events(first: 40)', 'edges { node { meta } }'), {}, member.token);

    expectReplyLimit(reply);
  });

  it.each([
    // Each alias counts its 20 edges and its 20 nodes: 40 x 256 = 10,240 bytes.
    [9, 200],
    [10, 400],
  ])('counts %i aliases of pages without meta', async (aliases, status) => {
    const reply = await server.gql(aliased(aliases, 'events(first: 20)', 'edges { node { id } } nodes { id }'), {}, member.token);

    expect(reply.status).toBe(status);
    if (status === 200) {
      expect(reply.errors).toBeUndefined();
      expect(reply.data?.[`a${aliases - 1}`].nodes).toHaveLength(20);
    } else {
      expectReplyLimit(reply);
    }
  });

  it('starts afresh for each request', async () => {
    const query = aliased(2, 'events(first: 20)', 'nodes { meta }');
    const first = await server.gql(query, {}, member.token);
    const second = await server.gql(query, {}, member.token);

    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.data?.a0.nodes).toHaveLength(20);
  });

  it('leaves mutation replies uncounted', async () => {
    // 60 events x 2,500 bytes = 150,000 bytes of reply, which a query could not take.
    const sender = await server.createUser('reply-size-sender');
    const reply = await server.gql(SEND_EVENTS, { events: sessionEvents(60, Date.parse('2026-01-21T08:00:00Z')) }, sender.token);

    expect(reply.status).toBe(200);
    expect(reply.errors).toBeUndefined();
    expect(reply.data?.sendEvents.storedCount).toBe(60);
    expect(reply.data?.sendEvents.results[59].event.meta).toEqual(META);
  });
});
