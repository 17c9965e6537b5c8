/**
 * Pages of events and segments, and the events of segments, read `meta`
 * only when the query selects it on them, because the values can be large. The test
 * records the SQL of the page reads and checks the replies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

describe('page reads of meta', () => {
  let server: TestServer;
  let member: { id: string; token: string };
  const statements: string[] = [];

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, WITHOUT_WORKERS);
    member = await server.createUser('page-meta');
    await server.gql(
      SEND,
      {
        events: [
          { type: 'session_started', occurredAt: '2026-01-05T09:00:00Z', meta: { device: 'phone' } },
          { type: 'session_ended', occurredAt: '2026-01-05T09:10:00Z' },
        ],
      },
      member.token,
    );
    const sql = server.app.db.sql;
    const query = sql.query.bind(sql);
    sql.query = (async (text: string, ...rest: unknown[]) => {
      statements.push(text);
      return (query as (...args: unknown[]) => Promise<unknown>)(text, ...rest);
    }) as typeof sql.query;
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Runs `query` and returns its data with the SQL of its page read of `table`. */
  async function pageRead(query: string, table: 'events' | 'segments') {
    statements.length = 0;
    const data = dataOf(await server.gql(query, {}, member.token), table);
    const page = statements.filter((text) => new RegExp(`FROM ${table}\\b`).test(text) && /ORDER BY/.test(text));
    expect(page, 'page reads').toHaveLength(1);
    return { data, sql: page[0]! };
  }

  it.each(['events', 'segments'] as const)('%s without meta', async (table) => {
    const { data, sql } = await pageRead(`{ ${table} { nodes { id } } }`, table);

    expect(sql, 'SQL').toContain('NULL::jsonb AS meta');
    expect((data[table] as { nodes: unknown[] }).nodes.length, 'nodes').toBeGreaterThan(0);
  });

  it.each(['events', 'segments'] as const)('%s with meta in a fragment', async (table) => {
    const type = table === 'events' ? 'Event' : 'Segment';
    const { data, sql } = await pageRead(`{ ${table} { nodes { ...M } } } fragment M on ${type} { meta }`, table);

    expect(sql, 'SQL').not.toContain('NULL::jsonb AS meta');
    const metas = (data[table] as { nodes: Array<{ meta: unknown }> }).nodes.map((node) => node.meta);
    expect(metas, 'meta values').toContainEqual({ device: 'phone' });
  });

  it.each(['events', 'segments'] as const)('%s with meta skipped', async (table) => {
    const { data, sql } = await pageRead(`{ ${table} { nodes { id meta @skip(if: true) } } }`, table);

    expect(sql, 'SQL').toContain('NULL::jsonb AS meta');
    expect((data[table] as { nodes: unknown[] }).nodes.length, 'nodes').toBeGreaterThan(0);
  });

  it('segments with meta of their events only', async () => {
    const { data, sql } = await pageRead(`{ segments { nodes { startEvent { meta } } } }`, 'segments');

    expect(sql, 'SQL').toContain('NULL::jsonb AS meta');
    const metas = (data.segments as { nodes: Array<{ startEvent: { meta: unknown } }> }).nodes.map((node) => node.startEvent.meta);
    expect(metas, 'meta values').toContainEqual({ device: 'phone' });
  });

  it.each([
    ['without meta', 'id', true],
    ['with meta', 'id meta', false],
  ])('segment events %s', async (_case, selection, withoutMeta) => {
    statements.length = 0;
    const query = `{ segments { nodes { startEvent { ${selection} } endEvent { ${selection} } } } }`;
    const data = dataOf(await server.gql(query, {}, member.token), 'segments');
    const reads = statements.filter((text) => /(FROM|JOIN) events\b/.test(text) && !/FROM segments\b/.test(text));

    expect(reads, 'event reads').toHaveLength(1);
    expect(reads[0]!.includes('NULL::jsonb AS meta'), 'SQL without meta').toBe(withoutMeta);
    const nodes = (data.segments as { nodes: Array<{ startEvent: { id: string } }> }).nodes;
    expect(nodes.length, 'nodes').toBeGreaterThan(0);
    expect(nodes[0]!.startEvent.id, 'start event id').toMatch(/^[0-9a-f-]{36}$/);
  });
});
