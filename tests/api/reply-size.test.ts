/**
 * The reply budget of queries (MAX_REPLY_BYTES): the events and segments of
 * all root fields of one query share it, each counting 256 bytes plus its
 * `meta` as JSON, and so do report intervals and buckets, 96 bytes each. A query over it gets HTTP 400 with LIMIT_EXCEEDED and no
 * data, and mutation replies are not counted. The rows that a query reads
 * with `meta` share the maximum too, and a read stops once they exceed it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { META_READ_BYTES } from '../../src/services/queries.js';
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
/** Session pairs that the reader sends: 200 events, 100 segments, five times the budget with meta. */
const READER_PAIRS = 100;

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

/** The rows that one SQL statement returned to the server. */
interface StatementRows {
  text: string;
  rows: number;
  /** Bytes of the rows' `meta` values as JSON. */
  metaBytes: number;
}

describe('reply size limit', () => {
  let server: TestServer;
  let member: { id: string; token: string };
  let reader: { id: string; token: string };
  const statements: StatementRows[] = [];

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
    reader = await server.createUser('reply-size-reader');
    const sendCount = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;
    const readerEvents = sessionEvents(2 * READER_PAIRS, Date.parse('2026-01-22T08:00:00Z'));
    const readerSent = await server.gql(sendCount, { events: readerEvents }, reader.token);
    expect(readerSent.errors).toBeUndefined();
    expect(readerSent.data?.sendEvents.storedCount).toBe(2 * READER_PAIRS);

    const sql = server.app.db.sql;
    const query = sql.query.bind(sql);
    sql.query = (async (text: string, ...rest: unknown[]) => {
      const rows = (await (query as (...args: unknown[]) => Promise<unknown>)(text, ...rest)) as Array<{ meta?: unknown }>;
      const metaBytes = rows.reduce((sum, row) => sum + (row.meta == null ? 0 : Buffer.byteLength(JSON.stringify(row.meta))), 0);
      statements.push({ text, rows: rows.length, metaBytes });
      return rows;
    }) as typeof sql.query;
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

  it.each([
    ['nested values', { a: 1, b: [1, 2, { c: 'd' }], e: {}, f: [], g: null, h: true }, 0],
    ['escapes and non-ASCII text', { text: 'żluť 😀', escaped: 'line\nbreak "q" \\ \u0001' }, 0],
    ['numbers', { n: 1.5, large: 12345678901234567890, negative: -0.25, zero: 0 }, 0],
    ['separators inside strings', { 'key": x': 'a, b: c' }, -2],
    // The estimate counts 1,008 of the 2,008 bytes of this JSON, and PostgreSQL sends 2,009.
    ['a string of separators', { s: ', '.repeat(1000) }, -1000],
    ['numbers with an exponent', { tiny: 1e-7 }, 5],
  ])('estimates the read size of %s', async (_case, meta, difference) => {
    const [row] = await server.app.db.sql.query<{ bytes: number }>(
      `SELECT ${META_READ_BYTES} AS bytes FROM (SELECT $1::jsonb AS meta) value`,
      [JSON.stringify(meta)],
    );

    expect(row!.bytes - Buffer.byteLength(JSON.stringify(meta))).toBe(difference);
  });

  describe('rows read', () => {
    /** Runs `query` as the reader and returns the reply with the statements that read events or segments. */
    async function readAsReader(query: string) {
      statements.length = 0;
      const reply = await server.gql(query, {}, reader.token);
      const reads = statements.filter((statement) => /\b(FROM|JOIN) (events|segments)\b/.test(statement.text));
      return { reply, reads };
    }

    /** Bytes of the rows that fit the budget, and one row more: the row whose read crosses it. */
    const READ_BOUND = MAX_REPLY_BYTES + OBJECT_BYTES + META_BYTES;

    it('stops a page read at the budget', async () => {
      // 200 events x 2,500 bytes = 500,000 bytes; 40 events fill the budget.
      const { reply, reads } = await readAsReader(`{ events(first: 200) { nodes { meta } } }`);

      expectReplyLimit(reply);
      expect(reads, 'page reads').toHaveLength(1);
      expect(reads[0]!.rows, 'rows read').toBe(41);
      expect(reads[0]!.metaBytes, 'meta bytes read').toBe(41 * META_BYTES);
    });

    it('stops backward pages at the budget', async () => {
      const { reply, reads } = await readAsReader(`{ events(last: 200) { edges { node { meta } } } }`);

      expectReplyLimit(reply);
      expect(reads, 'page reads').toHaveLength(1);
      expect(reads[0]!.rows, 'rows read').toBe(41);
    });

    it('makes aliases read in turn', async () => {
      // Each alias alone fits, with 30 x 2,500 = 75,000 bytes, and the second
      // crosses the budget, so the others read nothing.
      const { reply, reads } = await readAsReader(aliased(5, 'events(first: 30)', 'nodes { meta }'));

      expectReplyLimit(reply);
      const metaBytes = reads.reduce((sum, read) => sum + read.metaBytes, 0);
      expect(metaBytes, 'meta bytes read').toBeLessThanOrEqual(READ_BOUND);
      expect(reads.length, 'page reads').toBe(2);
    });

    it('stops the events of segments at the budget', async () => {
      // The page of segments is read without meta, and its 100 start events with it.
      const { reply, reads } = await readAsReader(`{ segments(first: 100) { nodes { startEvent { meta } } } }`);

      expectReplyLimit(reply);
      const eventReads = reads.filter((read) => !/FROM segments\b/.test(read.text));
      expect(eventReads, 'event reads').toHaveLength(1);
      expect(eventReads[0]!.rows, 'events read').toBe(41);
      const metaBytes = reads.reduce((sum, read) => sum + read.metaBytes, 0);
      expect(metaBytes, 'meta bytes read').toBeLessThanOrEqual(READ_BOUND);
    });

    it('stops segment aliases at the budget', async () => {
      const query = aliased(20, 'segments(first: 100)', 'nodes { meta startEvent { meta } endEvent { meta } }');
      const { reply, reads } = await readAsReader(query);

      expectReplyLimit(reply);
      const metaBytes = reads.reduce((sum, read) => sum + read.metaBytes, 0);
      expect(metaBytes, 'meta bytes read').toBeLessThanOrEqual(READ_BOUND);
    });

    it('serves root fields that fit together', async () => {
      // The reply counts 25,000 bytes for each of `a` and `c`, and 50,000 for
      // `b`: 100,000 bytes, the maximum. The reads count 100,000 bytes too:
      // 10 events in `a` and in `c`, 10 segments and their 10 start events in
      // `b`. The page of `d` is read without meta and counts in neither.
      const query = `{
        a: events(first: 10) { pageInfo { hasNextPage } nodes { meta } }
        b: segments(first: 10) { nodes { meta startEvent { meta } } }
        c: events(last: 10) { pageInfo { hasPreviousPage } edges { node { meta } } }
        d: segments(first: 100) { pageInfo { hasNextPage } }
      }`;
      const { reply, reads } = await readAsReader(query);

      expect(reply.status).toBe(200);
      expect(reply.errors).toBeUndefined();
      expect(reply.data?.a.nodes).toHaveLength(10);
      expect(reply.data?.a.nodes[9].meta).toEqual(META);
      expect(reply.data?.a.pageInfo.hasNextPage).toBe(true);
      expect(reply.data?.b.nodes).toHaveLength(10);
      expect(reply.data?.b.nodes[9].meta).toEqual(META);
      expect(reply.data?.b.nodes[9].startEvent.meta).toEqual(META);
      expect(reply.data?.c.edges).toHaveLength(10);
      expect(reply.data?.c.edges[9].node.meta).toEqual(META);
      expect(reply.data?.c.pageInfo.hasPreviousPage).toBe(true);
      expect(reply.data?.d.pageInfo.hasNextPage).toBe(false);
      const metaBytes = reads.reduce((sum, read) => sum + read.metaBytes, 0);
      expect(metaBytes, 'meta bytes read').toBe(40 * META_BYTES);
    });

    it('serves pages in order', async () => {
      const query = `query ($after: String) { events(first: 30, after: $after) { pageInfo { hasNextPage endCursor } nodes { occurredAt meta } } }`;
      const occurred: string[] = [];
      let after: string | null = null;
      for (let page = 0; page < 7; page += 1) {
        type Page = { events: { pageInfo: { hasNextPage: boolean; endCursor: string }; nodes: Array<{ occurredAt: string }> } };
        const reply: GraphQLResponse<Page> = await server.gql<Page>(query, { after }, reader.token);
        expect(reply.status).toBe(200);
        const events = reply.data!.events;
        occurred.push(...events.nodes.map((node) => node.occurredAt));
        after = events.pageInfo.endCursor;
        expect(events.pageInfo.hasNextPage, `hasNextPage of page ${page}`).toBe(page < 6);
      }

      expect(occurred).toHaveLength(2 * READER_PAIRS);
      expect(occurred).toEqual([...occurred].sort());
      expect(new Set(occurred).size).toBe(2 * READER_PAIRS);
    });
  });

  it('counts report intervals of aliases', async () => {
    // 96 bytes an interval: 1,000 intervals fit, and two aliases of 600 do not.
    const intervals = (count: number) =>
      Array.from({ length: count }, (_, index) => {
        const start = Date.parse('2026-01-01T00:00:00Z') + index * 60_000;
        return { start: new Date(start).toISOString(), end: new Date(start + 1000).toISOString() };
      });
    const query = (count: number) => `query ($expression: SetExpression!) {
      ${Array.from({ length: count }, (_, index) => `r${index}: report(expression: $expression, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }) { intervals { start } }`).join('\n')}
    }`;

    const fits = await server.gql(query(1), { expression: { intervals: intervals(1000) } }, member.token);
    expect(fits.status).toBe(200);
    expect(fits.errors).toBeUndefined();
    expect(fits.data?.r0.intervals).toHaveLength(1000);

    const over = await server.gql(query(2), { expression: { intervals: intervals(600) } }, member.token);
    expectReplyLimit(over);
    expect(over.errors![0]!.extensions?.value).toBe(1200 * 96);
  });

  it('counts report buckets of aliases', async () => {
    // 720 hourly buckets of 96 bytes each: one report fits, and two do not.
    const report = `report(expression: { intervals: [] }, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-31T00:00:00Z" }, bucket: { unit: HOUR, timeZone: "UTC" }) { buckets { seconds } }`;

    const fits = await server.gql(`{ r0: ${report} }`, {}, member.token);
    expect(fits.status).toBe(200);
    expect(fits.errors).toBeUndefined();
    expect(fits.data?.r0.buckets).toHaveLength(720);

    const over = await server.gql(`{ r0: ${report} r1: ${report} }`, {}, member.token);
    expectReplyLimit(over);
    expect(over.errors![0]!.extensions?.value).toBe(1440 * 96);
  });

  it('counts group intervals of aliases', async () => {
    // A member's report has one group, the member's own, with the literal intervals.
    const intervals = Array.from({ length: 600 }, (_, index) => {
      const start = Date.parse('2026-01-01T00:00:00Z') + index * 60_000;
      return { start: new Date(start).toISOString(), end: new Date(start + 1000).toISOString() };
    });
    const report = `report(expression: $expression, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }, groupBy: USER) { groups { intervals { start } } }`;
    const query = (count: number) =>
      `query ($expression: SetExpression!) { ${Array.from({ length: count }, (_, index) => `r${index}: ${report}`).join('\n')} }`;

    const fits = await server.gql(query(1), { expression: { intervals } }, member.token);
    expect(fits.status).toBe(200);
    expect(fits.errors).toBeUndefined();
    expect(fits.data?.r0.groups[0].intervals).toHaveLength(600);

    const over = await server.gql(query(2), { expression: { intervals } }, member.token);
    expectReplyLimit(over);
    expect(over.errors![0]!.extensions?.value).toBe(1200 * 96);
  });

  it('counts group buckets of aliases', async () => {
    const report = `report(expression: { intervals: [] }, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-31T00:00:00Z" }, groupBy: USER, bucket: { unit: HOUR, timeZone: "UTC" }) { groups { buckets { seconds } } }`;

    const fits = await server.gql(`{ r0: ${report} }`, {}, member.token);
    expect(fits.status).toBe(200);
    expect(fits.errors).toBeUndefined();
    expect(fits.data?.r0.groups[0].buckets).toHaveLength(720);

    const over = await server.gql(`{ r0: ${report} r1: ${report} }`, {}, member.token);
    expectReplyLimit(over);
    expect(over.errors![0]!.extensions?.value).toBe(1440 * 96);
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
