/**
 * The `events` and `segments` listings against a naive filter written
 * here: every filter alone and combined, windows on the boundaries of the
 * stored data, every small page size forward and backward, and cursors
 * reused with other filters, other users and after new events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf } from '../support/replay.js';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const UNKNOWN_USER = '00000000-0000-4000-8000-000000000000';

interface EventNode {
  id: string;
  user: { id: string };
  type: string;
  pairType: string | null;
  pairKey: string | null;
  occurredAt: string;
  origin: 'CLIENT' | 'CORRECTION';
  rule: string | null;
  flags: string[];
}

interface SegmentNode {
  id: string;
  user: { id: string };
  pairType: string;
  pairKey: string;
  start: string;
  end: string | null;
  open: boolean;
  parentSegmentId: string | null;
}

interface PageInfo {
  hasNextPage: boolean;
  hasPreviousPage: boolean;
  startCursor: string | null;
  endCursor: string | null;
}

interface Page<T> {
  pageInfo: PageInfo;
  edges: Array<{ cursor: string; node: T }>;
  nodes: T[];
}

type Field = 'events' | 'segments';

// Pages that select `meta` are read within the reply budget by other SQL
// than `listMany`, which selects no `meta`, so both reads are compared.
const EVENT_NODE = 'id user { id } type pairType pairKey occurredAt origin rule flags meta';
const SEGMENT_NODE = 'id user { id } pairType pairKey start end open parentSegmentId meta';

const ARGUMENT_TYPES: Record<Field, string> = { events: 'EventFilter', segments: 'SegmentFilter' };

/** Builds the page query of `field` with its paging variables. */
function pageQuery(field: Field): string {
  const node = field === 'events' ? EVENT_NODE : SEGMENT_NODE;
  return `query ($filter: ${ARGUMENT_TYPES[field]}, $window: WindowInput, $first: Int, $after: String, $last: Int, $before: String) {
    ${field}(filter: $filter, window: $window, first: $first, after: $after, last: $last, before: $before) {
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id } }
      nodes { ${node} }
    }
  }`;
}

interface Listing {
  filter?: Record<string, unknown> | null;
  window?: { start: string; end: string } | null;
}

function at(day: number, time: string): string {
  return new Date(`2026-03-${String(day).padStart(2, '0')}T${time}Z`).toISOString();
}

function overlaps(list: readonly string[] | null | undefined, value: string | null): boolean {
  return list === null || list === undefined || (value !== null && list.includes(value));
}

/** Returns whether an event passes the naive `events` filter, which checks each condition of the schema in turn. */
function matchesEvent(event: EventNode, { filter, window }: Listing): boolean {
  const conditions = (filter ?? {}) as Record<string, string[] | undefined>;
  if (!overlaps(conditions.users, event.user.id)) return false;
  if (!overlaps(conditions.types, event.type)) return false;
  if (!overlaps(conditions.pairTypes, event.pairType)) return false;
  if (!overlaps(conditions.origins, event.origin)) return false;
  if (conditions.flags !== undefined && (event.origin !== 'CLIENT' || !event.flags.some((flag) => conditions.flags!.includes(flag)))) return false;
  if (conditions.rules !== undefined && (event.rule === null || !conditions.rules.includes(event.rule))) return false;
  if (window !== null && window !== undefined) {
    const time = Date.parse(event.occurredAt);
    if (time < Date.parse(window.start) || time >= Date.parse(window.end)) return false;
  }
  return true;
}

/** Returns whether a segment passes the naive `segments` filter: it overlaps the half-open window, and an open one has no end. */
function matchesSegment(segment: SegmentNode, { filter, window }: Listing): boolean {
  const conditions = (filter ?? {}) as { users?: string[]; pairTypes?: string[]; pairKeys?: string[]; open?: boolean };
  if (!overlaps(conditions.users, segment.user.id)) return false;
  if (!overlaps(conditions.pairTypes, segment.pairType)) return false;
  if (!overlaps(conditions.pairKeys, segment.pairKey)) return false;
  if (conditions.open !== undefined && conditions.open !== (segment.end === null)) return false;
  if (window !== null && window !== undefined) {
    if (Date.parse(segment.start) >= Date.parse(window.end)) return false;
    if (segment.end !== null && Date.parse(segment.end) <= Date.parse(window.start)) return false;
  }
  return true;
}

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decode(cursor: string): unknown[] {
  return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
}

/** Returns every subset of `items` with at most `max` entries, the empty list included. */
function subsets<T>(items: readonly T[], max: number): T[][] {
  const result: T[][] = [[]];
  for (const item of items) {
    for (const existing of [...result]) {
      if (existing.length < max) result.push([...existing, item]);
    }
  }
  return result;
}

describe('listing differential', () => {
  let server: TestServer;
  let clock: ManualClock;
  let adminToken: string;
  let alice: { id: string; token: string };
  let bob: { id: string; token: string };
  let carol: { id: string; token: string };
  let allEvents: EventNode[];
  let allSegments: SegmentNode[];
  let allEventsCursor: string;

  /** Returns a cursor of the first event with the value at `index` replaced. */
  function withValue(index: number, value: unknown): string {
    const values = decode(allEventsCursor);
    values[index] = value;
    return encode(values);
  }

  async function send(token: string, events: Array<Record<string, unknown>>): Promise<void> {
    dataOf(await server.gql(SEND_EVENTS, { events }, token), 'sendEvents');
  }

  async function page<T extends { id: string }>(field: Field, variables: Record<string, unknown>, token = adminToken): Promise<Page<T>> {
    const response = await server.gql(pageQuery(field), variables, token);
    const page = dataOf(response, field)[field] as Page<T>;
    expect(page.edges.map((edge) => edge.node.id)).toEqual(page.nodes.map((node) => node.id));
    return page;
  }

  /**
   * Runs many listings in one request, as aliases, each with the page size
   * maximum, and returns the ids of each.
   */
  async function listMany(field: Field, listings: readonly Listing[], token = adminToken): Promise<string[][]> {
    const results: string[][] = [];
    for (let offset = 0; offset < listings.length; offset += 50) {
      const batch = listings.slice(offset, offset + 50);
      const argumentsText = batch
        .map((_, index) => `$f${index}: ${ARGUMENT_TYPES[field]}, $w${index}: WindowInput`)
        .join(', ');
      const fields = batch
        .map((_, index) => `l${index}: ${field}(filter: $f${index}, window: $w${index}, first: 1000) { pageInfo { hasNextPage } nodes { id } }`)
        .join('\n');
      const variables: Record<string, unknown> = {};
      batch.forEach((listing, index) => {
        variables[`f${index}`] = listing.filter ?? null;
        variables[`w${index}`] = listing.window ?? null;
      });
      const data = dataOf(await server.gql(`query (${argumentsText}) { ${fields} }`, variables, token), field) as Record<
        string,
        { pageInfo: { hasNextPage: boolean }; nodes: Array<{ id: string }> }
      >;
      batch.forEach((_, index) => {
        const listed = data[`l${index}`]!;
        expect(listed.pageInfo.hasNextPage).toBe(false);
        results.push(listed.nodes.map((node) => node.id));
      });
    }
    return results;
  }

  function expectedIds(field: Field, listing: Listing): string[] {
    if (field === 'events') {
      return allEvents.filter((event) => matchesEvent(event, listing)).map((event) => event.id);
    }
    return allSegments.filter((segment) => matchesSegment(segment, listing)).map((segment) => segment.id);
  }

  async function readEverything(): Promise<void> {
    const events = await page<EventNode>('events', { first: 1000 });
    const segments = await page<SegmentNode>('segments', { first: 1000 });
    expect(events.pageInfo.hasNextPage).toBe(false);
    expect(segments.pageInfo.hasNextPage).toBe(false);
    allEvents = events.nodes;
    allEventsCursor = events.edges[0]!.cursor;
    allSegments = segments.nodes;
  }

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: {
        DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(30 * 24 * 3600),
        REQUEST_MAX_ROOT_FIELDS: '60',
        PAGE_SIZE_MAX: '1000',
      },
    });
    adminToken = await server.adminToken();
    alice = await server.createUser('alice');
    bob = await server.createUser('bob');
    carol = await server.createUser('carol');
    dataOf(
      await server.gql(
        `mutation { definePairType(input: { name: "call", startType: "call_started", endType: "call_ended",
          autoClose: { timeoutSeconds: 600, endAt: DEADLINE } }) { name } }`,
        {},
        adminToken,
      ),
      'definePairType',
    );
    dataOf(
      await server.gql(
        `mutation { definePairType(input: { name: "pause", startType: "pause_started", endType: "pause_ended",
          autoClose: { timeoutSeconds: 60, endAt: LAST_ACTIVITY } }) { name } }`,
        {},
        adminToken,
      ),
      'definePairType',
    );

    await send(alice.token, [
      { id: 'a1', type: 'session_started', occurredAt: at(10, '08:00:00'), meta: { project: 'x' } },
      { id: 'a2', type: 'task_started', pairKey: 'a', occurredAt: at(10, '08:10:00'), meta: { kind: 1 } },
      { id: 'a3', type: 'task_started', pairKey: 'b', occurredAt: at(10, '08:20:00') },
      { id: 'a4', type: 'task_ended', pairKey: 'a', occurredAt: at(10, '08:30:00') },
      { id: 'a5', type: 'heartbeat', occurredAt: at(10, '08:30:00') },
      // Closes task b with its parent.
      { id: 'a6', type: 'session_ended', occurredAt: at(10, '09:00:00') },
      { id: 'a7', type: 'task_ended', pairKey: 'b', occurredAt: at(10, '09:05:00') },
      // A task with no session gets a synthesised session start.
      { id: 'a8', type: 'task_started', occurredAt: at(10, '10:00:00') },
      // Ends the task at 10:30 and opens another one.
      { id: 'a9', type: 'task_started', occurredAt: at(10, '10:30:00') },
    ]);
    await send(alice.token, [{ id: 'a10', type: 'heartbeat', occurredAt: at(10, '09:30:00') }]);

    await send(bob.token, [
      { id: 'b1', type: 'session_started', occurredAt: at(10, '09:00:00') },
      { id: 'b2', type: 'session_ended', occurredAt: at(10, '10:00:00') },
      { id: 'b3', type: 'session_started', occurredAt: at(10, '10:00:00') },
      { id: 'b4', type: 'session_ended', occurredAt: at(10, '11:00:00') },
      { id: 'b5', type: 'call_started', pairKey: 'x', occurredAt: at(10, '11:00:00') },
      { id: 'b6', type: 'session_started', occurredAt: at(10, '11:30:00') },
    ]);

    await send(carol.token, [
      { id: 'c1', type: 'session_started', occurredAt: at(10, '09:00:00') },
      // No activity follows within its timeout, so it closes at its start and is empty.
      { id: 'c4', type: 'pause_started', occurredAt: at(10, '10:00:00') },
      { id: 'c2', type: 'heartbeat', occurredAt: at(1, '09:00:00') },
      { id: 'c3', type: 'heartbeat', occurredAt: at(10, '13:00:00') },
    ]);
    await readEverything();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('seed has the intended shapes', () => {
    const rules = new Set(allEvents.map((event) => event.rule).filter((rule) => rule !== null));
    const flags = new Set(allEvents.flatMap((event) => event.flags));
    expect([...rules].sort()).toEqual(['AUTO_CLOSE', 'CHILD_CLOSED_WITH_PARENT', 'DUPLICATE_START', 'MISSING_PARENT_START']);
    expect([...flags].sort()).toEqual(['FUTURE_TIMESTAMP', 'LATE_BEYOND_HORIZON', 'LATE_EVENT', 'ORPHAN_END']);
    expect(allSegments.filter((segment) => segment.open).length).toBeGreaterThanOrEqual(3);
    const emptyEnd = allEvents.find((event) => event.type === 'pause_ended');
    expect(emptyEnd?.rule, 'the pause is auto-closed').toBe('AUTO_CLOSE');
    expect(emptyEnd?.occurredAt, 'at its start').toBe(at(10, '10:00:00'));
    expect(allSegments.filter((segment) => segment.pairType === 'pause'), 'empty segments are not listed').toEqual([]);
    for (const segment of allSegments) {
      expect(segment.open).toBe(segment.end === null);
      if (segment.end !== null) expect(Date.parse(segment.end)).toBeGreaterThan(Date.parse(segment.start));
    }
  });

  it('full listings are in their documented order', () => {
    const times = allEvents.map((event) => Date.parse(event.occurredAt));
    expect(times).toEqual([...times].sort((a, b) => a - b));
    const starts = allSegments.map((segment) => Date.parse(segment.start));
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
    // A parent comes before the child that started in it.
    const index = new Map(allSegments.map((segment, position) => [segment.id, position]));
    for (const [position, segment] of allSegments.entries()) {
      if (segment.parentSegmentId !== null) expect(index.get(segment.parentSegmentId)).toBeLessThan(position);
    }
  });

  it('corrections sit beside their cause', () => {
    const position = (predicate: (event: EventNode) => boolean): number => {
      const index = allEvents.findIndex(predicate);
      expect(index, 'event found').toBeGreaterThanOrEqual(0);
      return index;
    };
    const byRule = (rule: string, type: string) => position((event) => event.rule === rule && event.type === type);
    const byType = (userId: string, type: string, occurredAt: string) =>
      position((event) => event.origin === 'CLIENT' && event.user.id === userId && event.type === type && event.occurredAt === occurredAt);

    // A correction synthesised for a client event comes just before it.
    expect(byRule('MISSING_PARENT_START', 'session_started')).toBe(byType(alice.id, 'task_started', at(10, '10:00:00')) - 1);
    expect(byRule('DUPLICATE_START', 'task_ended')).toBe(byType(alice.id, 'task_started', at(10, '10:30:00')) - 1);
    expect(byRule('CHILD_CLOSED_WITH_PARENT', 'task_ended')).toBe(byType(alice.id, 'session_ended', at(10, '09:00:00')) - 1);
    // An auto-close end comes after the activity it ends at.
    expect(byRule('AUTO_CLOSE', 'pause_ended')).toBeGreaterThan(byType(carol.id, 'pause_started', at(10, '10:00:00')));
  });

  it('segment filters match the naive filter', async () => {
    const listings: Listing[] = [];
    for (const users of [null, ...subsets([alice.id, bob.id, carol.id, UNKNOWN_USER], 2)]) {
      for (const pairTypes of [null, [], ['session'], ['task', 'call'], ['pause', 'nope']]) {
        for (const pairKeys of [null, [], [''], ['a', 'x']]) {
          for (const open of [null, true, false]) {
            const filter: Record<string, unknown> = {};
            if (users !== null) filter.users = users;
            if (pairTypes !== null) filter.pairTypes = pairTypes;
            if (pairKeys !== null) filter.pairKeys = pairKeys;
            if (open !== null) filter.open = open;
            listings.push({ filter });
          }
        }
      }
    }
    const listed = await listMany('segments', listings);
    listings.forEach((listing, index) => {
      expect(listed[index], JSON.stringify(listing.filter)).toEqual(expectedIds('segments', listing));
    });
  });

  it('event filters match the naive filter', async () => {
    const listings: Listing[] = [];
    for (const users of [null, [], [alice.id], [bob.id, carol.id]]) {
      for (const types of [null, [], ['heartbeat'], ['task_started', 'session_ended']]) {
        for (const pairTypes of [null, ['task'], ['session', 'call'], ['pause']]) {
          for (const origins of [null, [], ['CLIENT'], ['CORRECTION'], ['CLIENT', 'CORRECTION']]) {
            const filter: Record<string, unknown> = {};
            if (users !== null) filter.users = users;
            if (types !== null) filter.types = types;
            if (pairTypes !== null) filter.pairTypes = pairTypes;
            if (origins !== null) filter.origins = origins;
            listings.push({ filter });
          }
        }
      }
    }
    const rules = ['AUTO_CLOSE', 'CHILD_CLOSED_WITH_PARENT', 'DUPLICATE_START', 'MISSING_PARENT_START'];
    const flags = ['FUTURE_TIMESTAMP', 'LATE_BEYOND_HORIZON', 'LATE_EVENT', 'ORPHAN_END'];
    for (const users of [null, [alice.id], [carol.id]]) {
      for (const flagList of [null, ...subsets(flags, 2)]) {
        for (const ruleList of [null, [], ['AUTO_CLOSE'], ['DUPLICATE_START', 'MISSING_PARENT_START']]) {
          const filter: Record<string, unknown> = {};
          if (users !== null) filter.users = users;
          if (flagList !== null) filter.flags = flagList;
          if (ruleList !== null) filter.rules = ruleList;
          listings.push({ filter });
        }
      }
    }
    const listed = await listMany('events', listings);
    listings.forEach((listing, index) => {
      expect(listed[index], JSON.stringify(listing.filter)).toEqual(expectedIds('events', listing));
    });
  });

  it('windows on data boundaries match the naive filter', async () => {
    const instants = new Set<number>();
    for (const segment of allSegments) {
      instants.add(Date.parse(segment.start));
      if (segment.end !== null) instants.add(Date.parse(segment.end));
    }
    for (const event of allEvents) instants.add(Date.parse(event.occurredAt));
    const sorted = [...instants].sort((a, b) => a - b);
    const boundaries = [Date.parse('0100-01-01T00:00:00Z'), sorted[0]! - 1, ...sorted, sorted.at(-1)! + 1, NOW + 86_400_000];
    const windows: Array<{ start: string; end: string }> = [];
    for (const [i, start] of boundaries.entries()) {
      for (const end of boundaries.slice(i + 1)) {
        windows.push({ start: new Date(start).toISOString(), end: new Date(end).toISOString() });
      }
      windows.push({ start: new Date(start).toISOString(), end: new Date(start + 1).toISOString() });
    }
    windows.push({ start: '0100-01-01T00:00:00.000Z', end: '9999-12-31T23:59:59.999Z' });
    for (const field of ['events', 'segments'] as const) {
      const listings = windows.map((window) => ({ window }));
      const filtered = windows.map((window) => ({
        window,
        filter: field === 'events' ? { users: [alice.id, bob.id], origins: ['CORRECTION'] } : { pairTypes: ['task', 'call'], open: false },
      }));
      const listed = await listMany(field, [...listings, ...filtered]);
      [...listings, ...filtered].forEach((listing, index) => {
        expect(listed[index], `${field} ${JSON.stringify(listing)}`).toEqual(expectedIds(field, listing));
      });
    }
  });

  it('members see the naive filter of their own rows', async () => {
    for (const user of [alice, bob, carol]) {
      for (const field of ['events', 'segments'] as const) {
        const [own] = await listMany(field, [{}], user.token);
        expect(own).toEqual(expectedIds(field, { filter: { users: [user.id] } }));
      }
    }
  });

  const PAGED: Array<{ field: Field; listing: () => Listing }> = [
    { field: 'events', listing: () => ({}) },
    { field: 'events', listing: () => ({ filter: { users: [alice.id, carol.id], types: ['heartbeat', 'task_started', 'session_started'] } }) },
    { field: 'events', listing: () => ({ window: { start: at(10, '08:30:00'), end: at(10, '11:00:00') } }) },
    { field: 'segments', listing: () => ({}) },
    { field: 'segments', listing: () => ({ filter: { pairTypes: ['session'] }, window: { start: at(10, '09:00:00'), end: at(10, '11:30:00') } }) },
    { field: 'segments', listing: () => ({ filter: { open: true } }) },
  ];

  it.each(PAGED.flatMap((paged, index) => [1, 2, 3, 4].map((size) => ({ ...paged, index, size }))))(
    '$field listing $index pages of $size forward',
    async ({ field, listing, size }) => {
      const expected = expectedIds(field, listing());
      const seen: string[] = [];
      let after: string | null = null;
      for (let count = 0; count <= expected.length + 1; count += 1) {
        const current: Page<{ id: string }> = await page(field, { ...listing(), first: size, after });
        const ids = current.nodes.map((node) => node.id);
        seen.push(...ids);
        expect(current.pageInfo.hasPreviousPage, 'hasPreviousPage').toBe(after !== null);
        expect(current.pageInfo.startCursor, 'startCursor').toBe(current.edges[0]?.cursor ?? null);
        expect(current.pageInfo.endCursor, 'endCursor').toBe(current.edges.at(-1)?.cursor ?? null);
        expect(current.pageInfo.hasNextPage, 'hasNextPage').toBe(seen.length < expected.length);
        if (!current.pageInfo.hasNextPage) break;
        expect(ids).toHaveLength(size);
        after = current.pageInfo.endCursor;
      }
      expect(seen).toEqual(expected);
    },
  );

  it.each(PAGED.flatMap((paged, index) => [1, 2, 3, 4].map((size) => ({ ...paged, index, size }))))(
    '$field listing $index pages of $size backward',
    async ({ field, listing, size }) => {
      const expected = expectedIds(field, listing());
      const seen: string[] = [];
      let before: string | null = null;
      for (let count = 0; count <= expected.length + 1; count += 1) {
        const current: Page<{ id: string }> = await page(field, { ...listing(), last: size, before });
        const ids = current.nodes.map((node) => node.id);
        seen.unshift(...ids);
        expect(current.pageInfo.hasNextPage, 'hasNextPage').toBe(before !== null);
        expect(current.pageInfo.startCursor, 'startCursor').toBe(current.edges[0]?.cursor ?? null);
        expect(current.pageInfo.endCursor, 'endCursor').toBe(current.edges.at(-1)?.cursor ?? null);
        expect(current.pageInfo.hasPreviousPage, 'hasPreviousPage').toBe(seen.length < expected.length);
        if (!current.pageInfo.hasPreviousPage) break;
        expect(ids).toHaveLength(size);
        before = current.pageInfo.startCursor;
      }
      expect(seen).toEqual(expected);
    },
  );

  it('empty listing has null cursors', async () => {
    for (const field of ['events', 'segments'] as const) {
      for (const paging of [{ first: 3 }, { last: 3 }]) {
        const current = await page(field, { filter: { users: [UNKNOWN_USER] }, ...paging });
        expect(current.edges).toEqual([]);
        expect(current.pageInfo).toEqual({ hasNextPage: false, hasPreviousPage: false, startCursor: null, endCursor: null });
      }
    }
  });

  it('cursor of one listing positions another', async () => {
    // A cursor is a position in the listing order, so it starts any other
    // listing after the same position.
    for (const field of ['events', 'segments'] as const) {
      const everything = await page<{ id: string }>(field, { first: 1000 });
      const position = new Map(everything.nodes.map((node, index) => [node.id, index]));
      const others: Listing[] =
        field === 'events'
          ? [{ filter: { users: [bob.id] } }, { filter: { origins: ['CORRECTION'] } }, { window: { start: at(10, '09:00:00'), end: at(10, '12:00:00') } }]
          : [{ filter: { users: [carol.id] } }, { filter: { open: true } }, { window: { start: at(10, '10:00:00'), end: at(10, '10:30:00') } }];
      for (const cursorIndex of [0, 3, Math.floor(everything.edges.length / 2), everything.edges.length - 1]) {
        const cursor = everything.edges[cursorIndex]!.cursor;
        for (const other of others) {
          const expected = expectedIds(field, other).filter((id) => position.get(id)! > cursorIndex);
          const forward = await page<{ id: string }>(field, { ...other, first: 1000, after: cursor });
          expect(forward.nodes.map((node) => node.id), JSON.stringify(other)).toEqual(expected);
          const backwardExpected = expectedIds(field, other).filter((id) => position.get(id)! < cursorIndex);
          const backward = await page<{ id: string }>(field, { ...other, last: 1000, before: cursor });
          expect(backward.nodes.map((node) => node.id), JSON.stringify(other)).toEqual(backwardExpected);
        }
      }
    }
  });

  it('foreign cursor sets the flag past it', async () => {
    // The first and last events are Carol's, so Alice's listing contains
    // nothing after the last, and Bob's nothing before the first.
    const everything = await page<EventNode>('events', { first: 1000 });
    expect(everything.nodes.at(-1)!.user.id).toBe(carol.id);
    expect(everything.nodes[0]!.user.id).toBe(carol.id);

    const backward = await page('events', { filter: { users: [alice.id] }, last: 2, before: everything.pageInfo.endCursor });
    const forward = await page('events', { filter: { users: [bob.id] }, first: 2, after: everything.pageInfo.startCursor });

    expect(backward.pageInfo.hasNextPage).toBe(true);
    expect(forward.pageInfo.hasPreviousPage).toBe(true);
  });

  it('cursor of another user positions a member listing', async () => {
    for (const field of ['events', 'segments'] as const) {
      const aliceList = await page<{ id: string }>(field, { first: 1000 }, alice.token);
      const everything = await page<{ id: string }>(field, { first: 1000 });
      const position = new Map(everything.nodes.map((node, index) => [node.id, index]));
      const cursorNode = aliceList.edges[2]!;
      const cursorIndex = position.get(cursorNode.node.id)!;
      const bobAfter = await page<{ id: string }>(field, { first: 1000, after: cursorNode.cursor }, bob.token);
      const expected = expectedIds(field, { filter: { users: [bob.id] } }).filter((id) => position.get(id)! > cursorIndex);
      expect(bobAfter.nodes.map((node) => node.id)).toEqual(expected);
    }
  });

  // Stores events, so it runs last.
  it.each(['events', 'segments'] as const)('%s cursor reused after new rows', async (field) => {
    const first = await page<{ id: string }>(field, { first: 5 });
    const cursorId = first.nodes.at(-1)!.id;
    const cursorTime =
      field === 'events'
        ? allEvents.find((event) => event.id === cursorId)!.occurredAt
        : allSegments.find((segment) => segment.id === cursorId)!.start;

    // New rows after the cursor, at its instant for other users, and a late one before it.
    const later = Date.parse(cursorTime) + 60_000;
    await send(bob.token, [
      { type: 'session_started', pairKey: `${field}-same`, occurredAt: cursorTime },
      { type: 'heartbeat', occurredAt: new Date(later).toISOString() },
    ]);
    await send(carol.token, [{ type: 'call_started', pairKey: field, occurredAt: at(10, '11:59:00') }]);
    await send(alice.token, [{ type: 'heartbeat', occurredAt: new Date(Date.parse(cursorTime) - 60_000).toISOString() }]);
    await readEverything();
    const everything = field === 'events' ? allEvents : allSegments;
    const cursorIndex = everything.findIndex((node) => node.id === cursorId);

    const seen: string[] = [];
    let after = first.pageInfo.endCursor;
    for (let count = 0; count < 100 && after !== null; count += 1) {
      const current = await page<{ id: string }>(field, { first: 3, after });
      seen.push(...current.nodes.map((node) => node.id));
      after = current.pageInfo.hasNextPage ? current.pageInfo.endCursor : null;
    }

    expect(seen).toEqual(everything.slice(cursorIndex + 1).map((node) => node.id));
    expect(seen.filter((id) => first.nodes.some((node) => node.id === id))).toEqual([]);
  });

  // Stores events, so it runs after the other tests that read the seed.
  it('new user at cursor instant sorts before it', async () => {
    // Rows of several users at one instant are ordered by each user's own
    // sequence of events, so the first event of a new user sorts first.
    const everything = await page<EventNode>('events', { first: 1000 });
    const cursorIndex = everything.nodes.findIndex((node) => node.user.id === alice.id && node.occurredAt === at(10, '09:30:00'));
    const cursor = everything.edges[cursorIndex]!.cursor;
    const dave = await server.createUser('dave');
    await send(dave.token, [{ type: 'heartbeat', occurredAt: at(10, '09:30:00') }]);
    await readEverything();
    const daveEvent = allEvents.find((event) => event.user.id === dave.id)!;
    const aliceEvent = everything.nodes[cursorIndex]!;

    const after = await page<{ id: string }>('events', { first: 1000, after: cursor });

    expect(allEvents.indexOf(daveEvent)).toBeLessThan(allEvents.findIndex((event) => event.id === aliceEvent.id));
    expect(after.nodes.map((node) => node.id)).not.toContain(daveEvent.id);
  });

  // Stores events and moves the clock, so it runs after the tests that read the seed.
  it('auto-close lands before a later cursor', async () => {
    // An auto-close is written once its deadline passes, at the pair's last
    // activity, so it can sort before a cursor that a listing of several
    // users has already passed.
    const erin = await server.createUser('erin');
    const frank = await server.createUser('frank');
    clock.set(Date.parse('2026-03-10T12:30:00Z'));
    await send(erin.token, [{ type: 'pause_started', occurredAt: '2026-03-10T12:30:00Z' }]);
    clock.set(Date.parse('2026-03-10T12:30:30Z'));
    await send(frank.token, [{ type: 'heartbeat', occurredAt: '2026-03-10T12:30:30Z' }]);
    const before = await page<EventNode>('events', { first: 1000 });
    expect(before.nodes.at(-1)!.user.id).toBe(frank.id);

    clock.set(Date.parse('2026-03-10T12:32:00Z'));
    const after = await page<EventNode>('events', { first: 1000, after: before.pageInfo.endCursor });
    await readEverything();
    const autoClose = allEvents.find((event) => event.user.id === erin.id && event.rule === 'AUTO_CLOSE');

    expect(autoClose?.occurredAt).toBe('2026-03-10T12:30:00.000Z');
    expect(after.nodes).toEqual([]);
    expect(allEvents.indexOf(autoClose!)).toBeLessThan(allEvents.findIndex((event) => event.user.id === frank.id));
  });

  it('cursor of the other field is rejected', async () => {
    const events = await page<{ id: string }>('events', { first: 1 });
    const segments = await page<{ id: string }>('segments', { first: 1 });
    for (const [field, cursor, other] of [
      ['segments', events.pageInfo.endCursor, 'events'],
      ['events', segments.pageInfo.endCursor, 'segments'],
    ] as const) {
      for (const paging of [{ first: 2, after: cursor }, { last: 2, before: cursor }]) {
        const response = await server.gql(pageQuery(field), paging, adminToken);
        const error = response.errors?.[0];

        expect(response.status).toBe(400);
        expect(error?.extensions?.reason).toBe('INVALID_CURSOR');
        expect(error?.extensions?.argument).toBe('after' in paging ? 'after' : 'before');
        expect(error?.message).toContain(`it is a cursor of \`${other}\``);
      }
    }
  });

  it.each([
    { name: 'not base64 JSON', cursor: () => '!!!', problem: 'it is not a cursor that `events` returned' },
    { name: 'empty', cursor: () => '', problem: 'it is not a cursor that `events` returned' },
    { name: 'an object', cursor: () => encode({ at: 1 }), problem: 'it is not a cursor that `events` returned' },
    { name: 'too short', cursor: () => encode([1]), problem: 'it is not a cursor that `events` returned' },
    { name: 'an instant out of range', cursor: () => withValue(0, 1e20), problem: 'its value 1 is not a valid instant' },
    { name: 'a fractional instant', cursor: () => withValue(0, 1.5), problem: 'its value 1 is not a valid instant' },
    { name: 'a position beyond int', cursor: () => withValue(2, 2 ** 31), problem: 'its value 3 is not a valid int' },
    { name: 'a string flag', cursor: () => withValue(3, 'true'), problem: 'its value 4 is not a valid boolean' },
    { name: 'a malformed id', cursor: () => withValue(5, 'x'), problem: 'its value 6 is not a valid uuid' },
  ])('tampered cursor $name names the problem', async ({ cursor, problem }) => {
    const response = await server.gql(pageQuery('events'), { first: 2, after: cursor() }, adminToken);
    const error = response.errors?.[0];

    expect(response.status).toBe(400);
    expect(error?.extensions?.reason).toBe('INVALID_CURSOR');
    expect(error?.message).toContain(problem);
    expect(error?.message).toContain('pass an endCursor from a previous `events` page');
  });

  it('cursor with changed values is a position', async () => {
    // A cursor is not signed: one edited to other valid values starts the
    // page at the position that they name.
    const values = decode(allEventsCursor);
    values[0] = Date.parse(at(10, '10:00:00'));
    values[1] = values[0];
    const response = await page<EventNode>('events', { first: 1000, after: encode(values) });

    expect(response.nodes.length).toBeGreaterThan(0);
    for (const node of response.nodes) {
      expect(Date.parse(node.occurredAt)).toBeGreaterThanOrEqual(Date.parse(at(10, '10:00:00')));
    }
  });

  it.each([
    { paging: { first: 2, last: 2 }, given: ['first', 'last'] },
    { paging: { first: 2, before: 'x' }, given: ['first', 'before'] },
    { paging: { after: 'x', last: 2, before: 'y' }, given: ['after', 'last', 'before'] },
  ])('mixed directions name $given', async ({ paging, given }) => {
    for (const field of ['events', 'segments'] as const) {
      const response = await server.gql(pageQuery(field), paging, adminToken);
      const error = response.errors?.[0];

      expect(response.status).toBe(400);
      expect(error?.extensions?.reason).toBe('INVALID_PAGINATION');
      expect(error?.extensions?.arguments).toEqual(given);
      expect(error?.message).toContain(`The request gives ${given.join(', ')}`);
    }
  });

  it.each([
    { paging: { first: 1001 }, argument: 'first' },
    { paging: { last: 1001 }, argument: 'last' },
  ])('page size above the maximum names $argument', async ({ paging, argument }) => {
    for (const field of ['events', 'segments'] as const) {
      const response = await server.gql(pageQuery(field), paging, adminToken);
      const error = response.errors?.[0];

      expect(response.status).toBe(400);
      expect(error?.extensions).toMatchObject({ reason: 'LIMIT_EXCEEDED', limit: 'PAGE_SIZE_MAX', value: 1001, max: 1000, argument });
      expect(error?.message).toContain(`${argument} is 1001, above the maximum of 1000 (PAGE_SIZE_MAX)`);
    }
  });
});
