/**
 * The `events` and `segments` connections: keyset paging, the page size
 * limit, window filtering (segments that overlap the window) and access
 * (members read only their own data, analysts read everyone's).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf, generateStream } from '../support/replay.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');

const EVENTS = `query ($filter: EventFilter, $window: WindowInput, $first: Int, $after: String, $last: Int, $before: String) {
  events(filter: $filter, window: $window, first: $first, after: $after, last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id occurredAt user { id } } }
  }
}`;

const SEGMENTS = `query ($filter: SegmentFilter, $window: WindowInput, $first: Int, $after: String, $last: Int, $before: String) {
  segments(filter: $filter, window: $window, first: $first, after: $after, last: $last, before: $before) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id start end open user { id } } }
  }
}`;

interface Node {
  id: string;
  occurredAt?: string;
  start?: string;
  end?: string | null;
  user: { id: string };
}

interface Page {
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  edges: Array<{ cursor: string; node: Node }>;
}

function at(time: string): string {
  return new Date(`2026-01-20T${time}Z`).toISOString();
}

describe('events and segments queries', () => {
  let server: TestServer;
  let adminToken: string;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  let analyst: { id: string; token: string };

  async function page(field: 'events' | 'segments', variables: Record<string, unknown>, token: string): Promise<Page> {
    const response = await server.gql(field === 'events' ? EVENTS : SEGMENTS, variables, token);
    return dataOf(response, field)[field] as Page;
  }

  /** Reads every page of `size` and returns the nodes in order, checking the cursors on the way. */
  async function readAllPages(
    field: 'events' | 'segments',
    variables: Record<string, unknown>,
    token: string,
    size: number,
  ): Promise<Node[]> {
    const nodes: Node[] = [];
    let after: string | null = null;
    for (let pages = 0; pages < 1000; pages += 1) {
      const current = await page(field, { ...variables, first: size, after }, token);
      expect(current.edges.length).toBeLessThanOrEqual(size);
      nodes.push(...current.edges.map((edge) => edge.node));
      if (!current.pageInfo.hasNextPage) {
        expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)?.cursor ?? null);
        return nodes;
      }
      expect(current.edges).toHaveLength(size);
      expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)?.cursor);
      after = current.pageInfo.endCursor;
    }
    throw new Error('paging did not end within 1000 pages');
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(30 * 24 * 3600), PAGE_SIZE_MAX: '50', PAGE_SIZE_DEFAULT: '50' },
    });
    adminToken = await server.adminToken();
    alice = await server.createUser('alice');
    bob = await server.createUser('bob');
    analyst = await server.createUser('analyst', 'ANALYST');

    const aliceStream = generateStream({
      idPrefix: 'alice',
      seed: 11,
      count: 25,
      startAt: Date.parse('2026-01-19T00:00:00Z'),
    });
    dataOf(await server.gql(SEND_EVENTS, { events: aliceStream }, alice.token), 'sendEvents');
    dataOf(
      await server.gql(
        SEND_EVENTS,
        {
          events: [
            { type: 'session_started', occurredAt: at('09:00:00') },
            { type: 'session_ended', occurredAt: at('10:00:00') },
            { type: 'session_started', occurredAt: at('12:00:00') },
          ],
        },
        bob.token,
      ),
      'sendEvents',
    );
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    { field: 'events' as const, size: 1 },
    { field: 'events' as const, size: 7 },
    { field: 'segments' as const, size: 1 },
    { field: 'segments' as const, size: 4 },
  ])('$field pages of $size cover everything once', async ({ field, size }) => {
    const everything = (await page(field, { first: 50 }, alice.token)).edges.map((edge) => edge.node);
    expect(everything.length).toBeGreaterThan(size);
    expect(everything.length).toBeLessThan(50);

    const paged = await readAllPages(field, {}, alice.token, size);

    expect(paged.map((node) => node.id)).toEqual(everything.map((node) => node.id));
    expect(new Set(paged.map((node) => node.id)).size).toBe(paged.length);
  });

  it.each([
    { field: 'events' as const, size: 4 },
    { field: 'segments' as const, size: 3 },
  ])('$field pages backward from the end', async ({ field, size }) => {
    const everything = (await page(field, { first: 50 }, alice.token)).edges.map((edge) => edge.node.id);

    const pages: string[][] = [];
    let before: string | null = null;
    for (let count = 0; count < 100; count += 1) {
      const current = await page(field, { last: size, before }, alice.token);
      pages.unshift(current.edges.map((edge) => edge.node.id));
      expect(current.pageInfo.startCursor).toBe(current.edges[0]?.cursor ?? null);
      expect(current.pageInfo.endCursor).toBe(current.edges.at(-1)?.cursor ?? null);
      expect(current.pageInfo.hasNextPage).toBe(before !== null);
      if (!current.pageInfo.hasPreviousPage) {
        break;
      }
      expect(current.edges).toHaveLength(size);
      before = current.pageInfo.startCursor;
    }

    // The first backward page has the newest items, in ascending order like every page.
    expect(pages.at(-1)).toEqual(everything.slice(-size));
    expect(pages.flat()).toEqual(everything);
  });

  it('forward pages report what lies before', async () => {
    const first = await page('events', { first: 5 }, alice.token);
    expect(first.pageInfo.hasPreviousPage).toBe(false);
    expect(first.pageInfo.startCursor).toBe(first.edges[0]?.cursor);

    const second = await page('events', { first: 5, after: first.pageInfo.endCursor }, alice.token);
    expect(second.pageInfo.hasPreviousPage).toBe(true);
  });

  it.each([
    { name: 'first with last', variables: { first: 2, last: 2 } },
    { name: 'after with before', variables: { after: 'x', before: 'y' } },
    { name: 'first with before', variables: { first: 2, before: 'y' } },
  ])('rejects $name', async ({ variables }) => {
    for (const query of [EVENTS, SEGMENTS]) {
      const response = await server.gql(query, variables, alice.token);

      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_PAGINATION');
    }
  });

  it('names last in its size error', async () => {
    const response = await server.gql(EVENTS, { last: 0 }, alice.token);

    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_PAGE_SIZE');
    expect(response.errors?.[0]?.message).toContain('last is 0');
  });

  it('events come in time order', async () => {
    const nodes = await readAllPages('events', {}, alice.token, 9);
    const times = nodes.map((node) => Date.parse(node.occurredAt as string));

    expect(times).toEqual([...times].sort((a, b) => a - b));
  });

  it('pages the window and filter together', async () => {
    const window = { start: '2026-01-19T01:00:00Z', end: '2026-01-19T03:00:00Z' };
    const filter = { types: ['session_started', 'task_started'] };
    const everything = (await page('events', { window, filter, first: 50 }, alice.token)).edges.map((edge) => edge.node);
    const paged = await readAllPages('events', { window, filter }, alice.token, 2);

    expect(paged.map((node) => node.id)).toEqual(everything.map((node) => node.id));
    for (const node of paged) {
      expect(node.occurredAt! >= '2026-01-19T01:00:00.000Z').toBe(true);
      expect(node.occurredAt! < '2026-01-19T03:00:00.000Z').toBe(true);
    }
  });

  it.each([
    { name: 'above the maximum', first: 51, reason: 'LIMIT_EXCEEDED' },
    { name: 'zero', first: 0, reason: 'INVALID_PAGE_SIZE' },
    { name: 'negative', first: -1, reason: 'INVALID_PAGE_SIZE' },
  ])('rejects a page size $name', async ({ first, reason }) => {
    for (const query of [EVENTS, SEGMENTS]) {
      const response = await server.gql(query, { first }, alice.token);

      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe(reason);
    }
  });

  it('names the page size limit', async () => {
    const response = await server.gql(EVENTS, { first: 51 }, alice.token);

    expect(response.errors?.[0]?.extensions).toMatchObject({ limit: 'PAGE_SIZE_MAX', value: 51, max: 50 });
    expect(response.errors?.[0]?.message).toContain('PAGE_SIZE_MAX');
  });

  it('rejects an invalid cursor', async () => {
    const response = await server.gql(EVENTS, { first: 5, after: 'not-a-cursor' }, alice.token);

    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_CURSOR');
  });

  it('names startCursor for a bad before', async () => {
    const response = await server.gql(EVENTS, { last: 5, before: 'not-a-cursor' }, alice.token);

    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_CURSOR');
    expect(response.errors?.[0]?.message).toContain('pass a startCursor');
  });

  it('rejects an empty window', async () => {
    const window = { start: at('10:00:00'), end: at('10:00:00') };
    const response = await server.gql(SEGMENTS, { window }, bob.token);

    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_WINDOW');
  });

  it('explains a window below 1 ms', async () => {
    // Digits below the millisecond are dropped, so both ends become 10:00:00.000.
    const window = { start: '2026-01-01T10:00:00.0001Z', end: '2026-01-01T10:00:00.0009Z' };
    const response = await server.gql(SEGMENTS, { window }, bob.token);

    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_WINDOW');
    expect(response.errors?.[0]?.message).toContain('kept to the millisecond');
  });

  it('names both ends of a reversed window', async () => {
    const window = { start: at('11:00:00'), end: at('10:00:00') };
    const response = await server.gql(SEGMENTS, { window }, bob.token);
    const extensions = response.errors?.[0]?.extensions;

    expect(extensions?.reason, 'reason').toBe('INVALID_WINDOW');
    expect(extensions?.start, 'start').toBe(at('11:00:00'));
    expect(extensions?.end, 'end').toBe(at('10:00:00'));
    expect(response.errors?.[0]?.message, 'no hint about milliseconds').not.toContain('kept to the millisecond');
  });

  // Bob has [09:00, 10:00) and an open session from 12:00.
  it.each([
    { start: '08:00:00', end: '09:00:00', expected: [] },
    { start: '08:00:00', end: '09:00:01', expected: [at('09:00:00')] },
    { start: '09:59:59', end: '10:00:00', expected: [at('09:00:00')] },
    { start: '10:00:00', end: '12:00:00', expected: [] },
    { start: '09:30:00', end: '12:00:01', expected: [at('09:00:00'), at('12:00:00')] },
    { start: '13:00:00', end: '14:00:00', expected: [at('12:00:00')] },
  ])('segments in [$start, $end)', async ({ start, end, expected }) => {
    const window = { start: at(start), end: at(end) };
    const nodes = (await page('segments', { window, first: 50 }, bob.token)).edges.map((edge) => edge.node);

    expect(nodes.map((node) => node.start)).toEqual(expected);
  });

  it('events window is half-open', async () => {
    const window = { start: at('09:00:00'), end: at('10:00:00') };
    const nodes = (await page('events', { window, first: 50 }, bob.token)).edges.map((edge) => edge.node);

    expect(nodes.map((node) => node.occurredAt)).toEqual([at('09:00:00')]);
  });

  it('members see only their own', async () => {
    for (const field of ['events', 'segments'] as const) {
      const nodes = await readAllPages(field, {}, bob.token, 50);

      expect(nodes.length).toBeGreaterThan(0);
      expect(new Set(nodes.map((node) => node.user.id))).toEqual(new Set([bob.id]));
    }
  });

  it.each(['events', 'segments'] as const)('member naming another user in %s is forbidden', async (field) => {
    for (const users of [[alice.id], [bob.id, alice.id]]) {
      const response = await server.gql(field === 'events' ? EVENTS : SEGMENTS, { filter: { users } }, bob.token);

      expect(response.data).toEqual({ [field]: null });
      expect(response.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      expect(response.status).toBe(403);
    }
  });

  it('member naming itself is allowed', async () => {
    const nodes = (await page('segments', { filter: { users: [bob.id] } }, bob.token)).edges;

    expect(nodes).toHaveLength(2);
  });

  it.each([
    { role: 'analyst', token: () => analyst.token },
    { role: 'admin', token: () => adminToken },
  ])('$role sees everyone', async ({ token }) => {
    for (const field of ['events', 'segments'] as const) {
      const all = await readAllPages(field, {}, token(), 50);
      expect(new Set(all.map((node) => node.user.id))).toEqual(new Set([alice.id, bob.id]));

      const onlyAlice = await readAllPages(field, { filter: { users: [alice.id] } }, token(), 50);
      const aliceOwn = await readAllPages(field, {}, alice.token, 50);
      expect(onlyAlice.map((node) => node.id)).toEqual(aliceOwn.map((node) => node.id));
    }
  });

  it('requires a token', async () => {
    const response = await server.gql(EVENTS, {});

    expect(response.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});
