/**
 * Reports on random data checked against a brute-force reference. Random
 * events around several daylight-saving changes are stored through
 * `sendEvents`, and the resulting segments are read back page by page. The
 * reference then evaluates random nested expressions on them by testing each
 * elementary interval between sorted endpoints, and computes bucket
 * boundaries by stepping through the window and asking Intl for the local
 * date and offset. Reports with and without `groupBy: USER` and `bucket`
 * must agree with it to the millisecond.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';
import { localFields } from '../support/local-time.js';
import { seededRandom } from '../support/random.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!, $groupBy: GroupBy, $bucket: BucketInput) {
  report(expression: $expression, window: $window, groupBy: $groupBy, bucket: $bucket) {
    count
    totalSeconds
    truncated
    intervals { start end seconds }
    buckets { start end seconds }
    groups { user { id username } count totalSeconds truncated intervals { start end } buckets { start end seconds } }
  }
}`;

const SEGMENTS = `query ($filter: SegmentFilter, $window: WindowInput, $first: Int, $after: String, $last: Int, $before: String) {
  segments(filter: $filter, window: $window, first: $first, after: $after, last: $last, before: $before) {
    edges { cursor node { id user { id } pairType pairKey start end open meta } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/**
 * The events span 2026-03-24 to 2026-04-08, across the European spring
 * change on 03-29 and the southern autumn changes of early April in
 * Australia, Chile, Lord Howe and Chatham.
 */
const EVENTS_START = Date.parse('2026-03-24T00:00:00Z');
const EVENTS_END = Date.parse('2026-04-08T00:00:00Z');
const NOW = EVENTS_END + 6 * HOUR_MS;

const TIME_ZONES = [
  'UTC',
  'Europe/Prague',
  'America/Santiago',
  'Australia/Lord_Howe',
  'Pacific/Chatham',
  'Asia/Kathmandu',
  'America/St_Johns',
  'Australia/Adelaide',
  'Asia/Kolkata',
] as const;

type Unit = 'HOUR' | 'DAY' | 'WEEK' | 'MONTH';

/** Maximum length in ms of a random window per bucket unit, which keeps the reference's walk short. */
const MAX_WINDOW_BY_UNIT: Record<Unit, number> = { HOUR: 2 * DAY_MS, DAY: 8 * DAY_MS, WEEK: 40 * DAY_MS, MONTH: 40 * DAY_MS };

/** A seeded generator of numbers in [0, 1), so that a failure can be replayed. */
type Random = () => number;

function below(random: Random, limit: number): number {
  return Math.floor(random() * limit);
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[below(random, items.length)]!;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

interface Window {
  start: number;
  end: number;
}

interface StoredSegment {
  userId: string;
  pairType: string;
  pairKey: string;
  start: number;
  /** Null while open. */
  end: number | null;
  meta: Record<string, unknown> | null;
}

type Expression = Record<string, any>;
type Pieces = Array<[number, number]>;

/** Generates one user's events in time order: sessions with tasks of keys a and b inside them, and some meta. */
function generateEvents(random: Random, leaveOpen: boolean): Array<Record<string, unknown>> {
  const events: Array<Record<string, unknown>> = [];
  let at = EVENTS_START + below(random, 6 * HOUR_MS);
  while (at < EVENTS_END - 12 * HOUR_MS) {
    const sessionEnd = at + 5 * MINUTE_MS + below(random, 20 * HOUR_MS);
    const meta = random() < 0.7 ? { project: pick(random, ['apollo', 'gemini']) } : undefined;
    events.push({ type: 'session_started', occurredAt: iso(at), ...(meta === undefined ? {} : { meta }) });
    const tasks: Array<Record<string, unknown>> = [];
    for (const key of ['a', 'b']) {
      let taskAt = at + below(random, HOUR_MS);
      while (random() < 0.6 && taskAt < sessionEnd) {
        const taskEnd = Math.min(sessionEnd, taskAt + 1 + below(random, 3 * HOUR_MS));
        const taskMeta = random() < 0.3 ? { project: 'apollo' } : undefined;
        tasks.push({ type: 'task_started', pairKey: key, occurredAt: iso(taskAt), ...(taskMeta === undefined ? {} : { meta: taskMeta }) });
        tasks.push({ type: 'task_ended', pairKey: key, occurredAt: iso(taskEnd) });
        taskAt = taskEnd + below(random, 2 * HOUR_MS);
      }
    }
    // Stable sort keeps a task's end before a start at the same instant.
    tasks.sort((a, b) => Date.parse(a['occurredAt'] as string) - Date.parse(b['occurredAt'] as string));
    events.push(...tasks.filter((event) => Date.parse(event['occurredAt'] as string) < sessionEnd));
    events.push({ type: 'session_ended', occurredAt: iso(sessionEnd) });
    at = sessionEnd + below(random, 30 * HOUR_MS);
  }
  if (leaveOpen) {
    events.push({ type: 'session_started', occurredAt: iso(EVENTS_END - 2 * HOUR_MS), meta: { project: 'apollo' } });
  }
  return events;
}

function generateLeaf(random: Random, window: Window, userIds: readonly string[]): Expression {
  if (random() < 0.2) {
    const intervals = Array.from({ length: below(random, 4) }, () => {
      const start = window.start - DAY_MS + below(random, window.end - window.start + 2 * DAY_MS);
      return { start: iso(start), end: iso(start + below(random, 2 * DAY_MS)) };
    });
    return { intervals };
  }
  const leaf: Record<string, unknown> = {};
  if (random() < 0.8) leaf['pairTypes'] = random() < 0.5 ? ['session'] : ['task'];
  if (random() < 0.4) leaf['users'] = userIds.filter(() => random() < 0.5);
  if (random() < 0.3) leaf['pairKeys'] = random() < 0.5 ? ['a'] : ['b', ''];
  if (random() < 0.2) leaf['meta'] = { project: pick(random, ['apollo', 'gemini']) };
  if (random() < 0.3) leaf['includeOpen'] = random() < 0.5;
  return { segments: leaf };
}

function generateExpression(random: Random, window: Window, userIds: readonly string[], depth: number): Expression {
  if (depth <= 1 || random() < 0.3) {
    return generateLeaf(random, window, userIds);
  }
  const roll = random();
  const child = () => generateExpression(random, window, userIds, depth - 1);
  if (roll < 0.3) return { union: Array.from({ length: 1 + below(random, 3) }, child) };
  if (roll < 0.55) return { intersect: Array.from({ length: 1 + below(random, 3) }, child) };
  if (roll < 0.8) return { difference: { from: child(), subtract: child() } };
  return { complement: child() };
}

/** Returns whether the reference segment matches a leaf, for the group's user when the leaf names none. */
function leafSelects(leaf: Record<string, any>, segment: StoredSegment, defaultUser: string | null): boolean {
  const users: string[] | null = leaf['users'] ?? (defaultUser === null ? null : [defaultUser]);
  if (users !== null && !users.includes(segment.userId)) return false;
  if (leaf['pairTypes'] !== undefined && !leaf['pairTypes'].includes(segment.pairType)) return false;
  if (leaf['pairKeys'] !== undefined && !leaf['pairKeys'].includes(segment.pairKey)) return false;
  if (leaf['includeOpen'] === false && segment.end === null) return false;
  if (leaf['meta'] !== undefined) {
    for (const [key, value] of Object.entries(leaf['meta'] as Record<string, unknown>)) {
      if (segment.meta?.[key] !== value) return false;
    }
  }
  return true;
}

/** Evaluates `expression` by brute force: membership of each elementary interval between all endpoints. */
function referenceEvaluate(
  expression: Expression,
  window: Window,
  segments: readonly StoredSegment[],
  defaultUser: string | null,
): Pieces {
  const openEnd = Math.min(NOW, window.end);
  const endOf = (segment: StoredSegment) => segment.end ?? openEnd;
  const points = new Set<number>([window.start, window.end]);
  for (const segment of segments) {
    points.add(segment.start);
    points.add(endOf(segment));
  }
  const collectLiterals = (node: Expression): void => {
    if (node['intervals'] !== undefined) {
      for (const item of node['intervals']) {
        points.add(Date.parse(item.start));
        points.add(Date.parse(item.end));
      }
    }
    for (const child of node['union'] ?? node['intersect'] ?? []) collectLiterals(child);
    if (node['difference'] !== undefined) {
      collectLiterals(node['difference'].from);
      collectLiterals(node['difference'].subtract);
    }
    if (node['complement'] !== undefined) collectLiterals(node['complement']);
  };
  collectLiterals(expression);

  const contains = (node: Expression, t: number): boolean => {
    if (node['segments'] !== undefined) {
      return segments.some((segment) => segment.start <= t && t < endOf(segment) && leafSelects(node['segments'], segment, defaultUser));
    }
    if (node['intervals'] !== undefined) {
      return node['intervals'].some((item: { start: string; end: string }) => Date.parse(item.start) <= t && t < Date.parse(item.end));
    }
    if (node['union'] !== undefined) return node['union'].some((child: Expression) => contains(child, t));
    if (node['intersect'] !== undefined) return node['intersect'].every((child: Expression) => contains(child, t));
    if (node['difference'] !== undefined) {
      return contains(node['difference'].from, t) && !contains(node['difference'].subtract, t);
    }
    return !contains(node['complement'], t);
  };

  const sorted = [...points].filter((point) => point >= window.start && point <= window.end).sort((a, b) => a - b);
  const pieces: Pieces = [];
  for (let index = 0; index + 1 < sorted.length; index += 1) {
    const start = sorted[index]!;
    const end = sorted[index + 1]!;
    if (!contains(expression, start)) continue;
    const last = pieces.at(-1);
    if (last !== undefined && last[1] === start) {
      last[1] = end;
    } else {
      pieces.push([start, end]);
    }
  }
  return pieces;
}

/** ISO week of a calendar date, as `year-Wweek`: the week's Thursday decides its year. */
function isoWeek(year: number, month: number, day: number): string {
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = date + (3 - weekday) * DAY_MS;
  const weekYear = new Date(thursday).getUTCFullYear();
  const week = 1 + Math.floor((thursday - Date.UTC(weekYear, 0, 1)) / (7 * DAY_MS));
  return `${weekYear}-W${week}`;
}

/** Name of the bucket that contains `ms`: two instants share a bucket exactly when their labels are equal. */
function bucketLabel(ms: number, unit: Unit, timeZone: string): string {
  const parts = localFields(ms, timeZone);
  const date = `${parts['year']}-${parts['month']}-${parts['day']}`;
  switch (unit) {
    case 'HOUR':
      return `${date}T${parts['hour']} ${parts['timeZoneName']}`;
    case 'DAY':
      return date;
    case 'WEEK':
      return isoWeek(Number(parts['year']), Number(parts['month']), Number(parts['day']));
    case 'MONTH':
      return `${parts['year']}-${parts['month']}`;
  }
}

/**
 * Returns the bucket boundaries inside the window, found by steps of five
 * minutes and a binary search to the millisecond. It assumes at most one
 * boundary per step, which holds for the zones and dates of this file.
 */
function referenceBoundaries(window: Window, unit: Unit, timeZone: string): number[] {
  const boundaries: number[] = [];
  const last = window.end - 1;
  let at = window.start;
  let label = bucketLabel(at, unit, timeZone);
  while (at < last) {
    const next = Math.min(at + 5 * MINUTE_MS, last);
    if (bucketLabel(next, unit, timeZone) === label) {
      at = next;
      continue;
    }

    let low = at;
    let high = next;
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (bucketLabel(middle, unit, timeZone) === label) {
        low = middle;
      } else {
        high = middle;
      }
    }
    boundaries.push(high);
    at = high;
    label = bucketLabel(high, unit, timeZone);
  }
  return boundaries;
}

function referenceBuckets(pieces: Pieces, window: Window, boundaries: readonly number[]) {
  const edges = [window.start, ...boundaries, window.end];
  const buckets: Array<{ start: string; end: string; seconds: number }> = [];
  for (let index = 0; index + 1 < edges.length; index += 1) {
    const start = edges[index]!;
    const end = edges[index + 1]!;
    let ms = 0;
    for (const [pieceStart, pieceEnd] of pieces) {
      ms += Math.max(0, Math.min(end, pieceEnd) - Math.max(start, pieceStart));
    }
    buckets.push({ start: iso(start), end: iso(end), seconds: ms / 1000 });
  }
  return buckets;
}

function asIntervals(pieces: Pieces) {
  return pieces.map(([start, end]) => ({ start: iso(start), end: iso(end), seconds: (end - start) / 1000 }));
}

function totalSeconds(pieces: Pieces): number {
  return pieces.reduce((sum, [start, end]) => sum + (end - start), 0) / 1000;
}

describe('reports on random data', () => {
  let server: TestServer;
  let adminToken: string;
  /** Every user, in username order as groups list them. */
  let users: Array<{ id: string; username: string }>;
  let segments: StoredSegment[];

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      sweeper: false,
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    adminToken = await server.adminToken();
    const random = seededRandom(20260405);
    const names = ['Carol', 'alice', 'bob'];
    for (const [index, name] of names.entries()) {
      const account = await server.createUser(name, 'MEMBER');
      const result = await server.gql(SEND, { events: generateEvents(random, index !== 1) }, account.token);
      expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
    }
    const listed = await server.gql(`{ users { id username } }`, {}, adminToken);
    users = listed.data?.users;
    expect(users.map((user) => user.username)).toEqual(['admin', 'alice', 'bob', 'Carol']);

    const edges = await readAllPages({}, 7, 'forward');
    segments = edges.map(({ node }) => ({
      userId: node.user.id,
      pairType: node.pairType,
      pairKey: node.pairKey,
      start: Date.parse(node.start),
      end: node.end === null ? null : Date.parse(node.end),
      meta: node.meta,
    }));
  }, 120_000);

  afterAll(async () => {
    await server?.close();
  });

  type Edge = { cursor: string; node: any };

  /** Reads every segment page by page, from the start with `first` or from the end with `last`, and returns the edges in order. */
  async function readAllPages(variables: Record<string, unknown>, size: number, direction: 'forward' | 'backward'): Promise<Edge[]> {
    const forward = direction === 'forward';
    const edges: Edge[] = [];
    let cursor: string | null = null;
    for (;;) {
      const paging = forward ? { first: size, after: cursor } : { last: size, before: cursor };
      const result: GraphQLResponse<Record<string, any>> = await server.gql(SEGMENTS, { ...variables, ...paging }, adminToken);
      expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
      const page: { edges: Edge[]; pageInfo: Record<string, any> } = result.data?.segments;
      if (forward) {
        edges.push(...page.edges);
      } else {
        edges.unshift(...page.edges);
      }
      const hasMore = forward ? page.pageInfo.hasNextPage : page.pageInfo.hasPreviousPage;
      if (!hasMore) return edges;
      cursor = forward ? page.pageInfo.endCursor : page.pageInfo.startCursor;
    }
  }

  it('stores enough segments', () => {
    expect(segments.length).toBeGreaterThan(100);
    expect(segments.filter((segment) => segment.end === null)).toHaveLength(2);
    const starts = segments.map((segment) => segment.start);
    expect(starts).toEqual([...starts].sort((a, b) => a - b));
  });

  it('pages segments backward as forward', async () => {
    const forward = await readAllPages({}, 7, 'forward');
    const backward = await readAllPages({}, 5, 'backward');

    expect(backward.map((edge) => edge.node.id)).toEqual(forward.map((edge) => edge.node.id));
  });

  it('lists the segments that overlap random windows', async () => {
    const random = seededRandom(7);
    for (let round = 0; round < 15; round += 1) {
      const start = EVENTS_START + below(random, EVENTS_END - EVENTS_START + DAY_MS);
      const window = { start, end: start + 1 + below(random, 2 * DAY_MS) };
      const edges = await readAllPages({ window: { start: iso(window.start), end: iso(window.end) } }, 4, 'forward');
      const expected = segments.filter((segment) => segment.start < window.end && (segment.end === null || segment.end > window.start));

      expect(edges.map((edge) => Date.parse(edge.node.start))).toEqual(expected.map((segment) => segment.start));
    }
  });

  it('matches the reference on random expressions', async () => {
    const random = seededRandom(11);
    const userIds = users.map((user) => user.id);
    for (let round = 0; round < 60; round += 1) {
      const start = EVENTS_START - DAY_MS + below(random, EVENTS_END - EVENTS_START + 4 * DAY_MS);
      const window = { start, end: start + HOUR_MS + below(random, 6 * DAY_MS) };
      const expression = generateExpression(random, window, userIds, 5);
      const variables = { expression, window: { start: iso(window.start), end: iso(window.end) } };
      const label = JSON.stringify(variables);

      const result = await server.gql(REPORT, variables, adminToken);
      expect(result.errors, label).toBeUndefined();
      const report = result.data?.report;
      const expected = referenceEvaluate(expression, window, segments, null);

      expect(report.intervals, label).toEqual(asIntervals(expected));
      expect(report.count, label).toBe(expected.length);
      expect(report.totalSeconds, label).toBeCloseTo(totalSeconds(expected), 6);
      expect(report.truncated, label).toBe(false);
    }
  }, 120_000);

  it('matches the reference per group and bucket', async () => {
    const random = seededRandom(23);
    const userIds = users.map((user) => user.id);
    for (let round = 0; round < 40; round += 1) {
      const unit = pick(random, ['HOUR', 'DAY', 'DAY', 'WEEK', 'MONTH'] as const);
      const timeZone = pick(random, TIME_ZONES);
      const longest = MAX_WINDOW_BY_UNIT[unit];
      const start = EVENTS_START - DAY_MS + below(random, EVENTS_END - EVENTS_START + 2 * DAY_MS);
      const window = { start, end: start + HOUR_MS + below(random, longest) };
      const expression = generateExpression(random, window, userIds, 4);
      const variables = {
        expression,
        window: { start: iso(window.start), end: iso(window.end) },
        groupBy: 'USER',
        bucket: { unit, timeZone },
      };
      const label = JSON.stringify(variables);

      const result = await server.gql(REPORT, variables, adminToken);
      expect(result.errors, label).toBeUndefined();
      const report = result.data?.report;
      const boundaries = referenceBoundaries(window, unit, timeZone);
      const whole = referenceEvaluate(expression, window, segments, null);

      expect(report.intervals, label).toEqual(asIntervals(whole));
      expect(report.buckets, label).toEqual(referenceBuckets(whole, window, boundaries));
      expect(report.groups.map((group: any) => group.user.id), label).toEqual(userIds);
      for (const group of report.groups) {
        const pieces = referenceEvaluate(expression, window, segments, group.user.id);
        const groupLabel = `${label} group ${group.user.username}`;

        expect(group.intervals, groupLabel).toEqual(asIntervals(pieces).map(({ start, end }) => ({ start, end })));
        expect(group.count, groupLabel).toBe(pieces.length);
        expect(group.totalSeconds, groupLabel).toBeCloseTo(totalSeconds(pieces), 6);
        expect(group.buckets, groupLabel).toEqual(referenceBuckets(pieces, window, boundaries));
      }
    }
  }, 240_000);

  it('buckets a window across a year end', async () => {
    const window = { start: Date.parse('2025-12-20T13:17:00Z'), end: Date.parse('2026-12-10T05:00:00Z') };
    for (const [unit, timeZone] of [
      ['DAY', 'America/Santiago'],
      ['WEEK', 'Australia/Lord_Howe'],
      ['MONTH', 'Pacific/Chatham'],
      ['DAY', 'Asia/Kathmandu'],
    ] as const) {
      const expression = { segments: { pairTypes: ['session'] } };
      const variables = { expression, window: { start: iso(window.start), end: iso(window.end) }, bucket: { unit, timeZone } };
      const result = await server.gql(REPORT, variables, adminToken);
      expect(result.errors, `${unit} ${timeZone}`).toBeUndefined();

      const whole = referenceEvaluate(expression, window, segments, null);
      expect(result.data?.report.buckets, `${unit} ${timeZone}`).toEqual(
        referenceBuckets(whole, window, referenceBoundaries(window, unit, timeZone)),
      );
    }
  }, 120_000);
});
