/**
 * Cross-check of the report engine against PostgreSQL multiranges. Random
 * segments are stored through the API. Random nested expressions are
 * evaluated through `report` over HTTP, and the same expressions are computed
 * in SQL on the same database with `range_agg`, `+`, `*` and `-` on
 * tstzmultirange. The generators are seeded, so a failure can be replayed.
 * Interval lists, counts and totals must agree to the millisecond, also for
 * open segments, which run to min(now, window end) under a hand-moved clock.
 *
 * The events span a rollup chunk border (2026-02-06T00:00Z). The expressions
 * run in three states of the rollups. First, late events have changed
 * segments whose chunks were already built, so the triggers must have marked
 * them stale. Then every chunk is rebuilt. Last, one user's tasks are marked
 * stale again while the rest stay built.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { chunkOf } from '../../src/domain/interval/chunks.js';
import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { seededRandom } from '../support/random.js';
import { describeWithPostgres } from '../support/services.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!, $groupBy: GroupBy) {
  report(expression: $expression, window: $window, groupBy: $groupBy) {
    count
    totalSeconds
    truncated
    intervals { start end }
    groups { user { id } count totalSeconds truncated intervals { start end } }
  }
}`;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

const DEFINE_CALL = `mutation {
  definePairType(input: {
    name: "call", startType: "call_started", endType: "call_ended",
    autoClose: { timeoutSeconds: 172800, endAt: DEADLINE }
  }) { name }
}`;

const HOUR_MS = 3_600_000;

/** Start of the stored events, which span the following 20 hours across the chunk border at midnight. */
const BASE = Date.parse('2026-02-05T14:00:00Z');
const CHUNK_BORDER = Date.parse('2026-02-06T00:00:00Z');
const EVENT_SPAN_MS = 20 * HOUR_MS;

const PAIR_TYPES = ['session', 'task', 'call'] as const;
const PAIR_KEYS = ['', 'a', 'b', 'x'] as const;
const META_FILTERS = [{ project: 'apollo' }, { level: 2 }, { project: 'gemini', level: 1 }] as const;

const EXPRESSION_COUNT = 300;
const GROUPED_EXPRESSION_COUNT = 40;
const MAX_DEPTH = 5;

type Random = () => number;

function integerBelow(random: Random, limit: number): number {
  return Math.floor(random() * limit);
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[integerBelow(random, items.length)]!;
}

/** Picks a subset of `items` in random order, empty only when `allowEmpty`. */
function subset<T>(random: Random, items: readonly T[], allowEmpty: boolean): T[] {
  const chosen = items.filter(() => random() < 0.5);
  if (chosen.length === 0 && !allowEmpty) {
    chosen.push(pick(random, items));
  }
  return chosen.sort(() => random() - 0.5);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

interface Window {
  start: number;
  end: number;
}

/** A SetExpression as sent in GraphQL variables. */
type Expression = Record<string, unknown>;

interface SegmentsLeaf {
  pairTypes?: string[];
  users?: string[];
  pairKeys?: string[];
  meta?: Record<string, unknown>;
  includeOpen?: boolean;
}

/** Generates one user's events in time order: pairs of every type, keys, meta and point events. */
function generateEvents(random: Random): Array<Record<string, unknown>> {
  const events: Array<Record<string, unknown>> = [];
  let at = BASE + integerBelow(random, 10 * 60_000);

  while (at < BASE + EVENT_SPAN_MS) {
    const pairType = pick(random, PAIR_TYPES);
    const roll = random();
    const event: Record<string, unknown> = { occurredAt: iso(at) };

    if (roll < 0.1) {
      event['type'] = 'ping';
    } else {
      const starts = roll < 0.6;
      event['type'] = `${pairType}_${starts ? 'started' : 'ended'}`;
      if (pairType !== 'session') {
        event['pairKey'] = pick(random, pairType === 'task' ? ['', 'a', 'b'] : ['', 'x']);
      }
      if (starts && random() < 0.6) {
        event['meta'] = { project: pick(random, ['apollo', 'gemini']), level: 1 + integerBelow(random, 2) };
      }
    }
    events.push(event);

    // Steps from 1 ms to 30 minutes, with arbitrary milliseconds.
    at += 1 + integerBelow(random, 30 * 60_000);
  }
  return events;
}

function generateLeaf(random: Random, window: Window, users: readonly string[]): Expression {
  if (random() < 0.25) {
    const intervals: Array<{ start: string; end: string }> = [];
    const count = integerBelow(random, 5);
    const from = window.start - 6 * HOUR_MS;
    const range = window.end - window.start + 12 * HOUR_MS;
    for (let index = 0; index < count; index += 1) {
      const start = from + integerBelow(random, range);
      const end = start + 1 + integerBelow(random, 10 * HOUR_MS);
      intervals.push({ start: iso(start), end: iso(end) });
    }
    return { intervals };
  }

  const leaf: SegmentsLeaf = {};
  if (random() < 0.5) {
    leaf.pairTypes = subset(random, PAIR_TYPES, random() < 0.1);
  }
  if (random() < 0.4) {
    leaf.users = subset(random, users, random() < 0.05);
  }
  if (random() < 0.3) {
    leaf.pairKeys = subset(random, PAIR_KEYS, false);
  }
  if (random() < 0.2) {
    leaf.meta = { ...pick(random, META_FILTERS) };
  }
  const open = random();
  if (open < 0.35) {
    leaf.includeOpen = false;
  } else if (open < 0.5) {
    leaf.includeOpen = true;
  }
  return { segments: leaf };
}

function generateExpression(random: Random, window: Window, users: readonly string[], depth = 1): Expression {
  if (depth >= MAX_DEPTH || random() < 0.25) {
    return generateLeaf(random, window, users);
  }

  const child = (): Expression => generateExpression(random, window, users, depth + 1);
  const operands = (): Expression[] => Array.from({ length: 1 + integerBelow(random, 3) }, child);
  switch (pick(random, ['union', 'intersect', 'difference', 'complement'] as const)) {
    case 'union':
      return { union: operands() };
    case 'intersect':
      return { intersect: operands() };
    case 'difference':
      return { difference: { from: child(), subtract: child() } };
    case 'complement':
      return { complement: child() };
  }
}

/** Draws a window from 1 minute to 30 hours long, somewhere around the stored events. */
function generateWindow(random: Random): Window {
  const start = BASE - 2 * HOUR_MS + integerBelow(random, EVENT_SPAN_MS);
  const length = 60_000 + integerBelow(random, 30 * HOUR_MS);
  return { start, end: start + length };
}

/**
 * Translates an expression into SQL over tstzmultirange. Leaves that name no
 * users read every user, or `boundUser` when one is given (groupBy USER).
 */
class MultirangeQuery {
  readonly params: unknown[] = [];
  private readonly window: string;
  /** Parameter of min(now, window end), bound on first use because PostgreSQL rejects unused parameters. */
  private openEndParameter: string | null = null;

  constructor(
    window: Window,
    private readonly openEnd: number,
    private readonly boundUser: string | null,
  ) {
    this.window = `tstzmultirange(tstzrange(${this.bind(iso(window.start))}::timestamptz, ${this.bind(iso(window.end))}::timestamptz))`;
  }

  /** Returns the SQL text that lists the result's ranges as epoch milliseconds in order. */
  select(expression: Expression): string {
    return `SELECT (extract(epoch FROM lower(r)) * 1000)::float8 AS start_ms,
                   (extract(epoch FROM upper(r)) * 1000)::float8 AS end_ms
            FROM unnest(${this.translate(expression)} * ${this.window}) AS r
            ORDER BY 1`;
  }

  private bind(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }

  private translate(expression: Expression): string {
    const [field, operand] = Object.entries(expression)[0]!;
    switch (field) {
      case 'segments':
        return `(${this.leaf(operand as SegmentsLeaf)} * ${this.window})`;
      case 'intervals': {
        const ranges = (operand as Array<{ start: string; end: string }>).map(
          (interval) => `tstzrange(${this.bind(interval.start)}::timestamptz, ${this.bind(interval.end)}::timestamptz)`,
        );
        return `(tstzmultirange(${ranges.join(', ')}) * ${this.window})`;
      }
      case 'union':
        return `(${(operand as Expression[]).map((item) => this.translate(item)).join(' + ')})`;
      case 'intersect':
        return `(${(operand as Expression[]).map((item) => this.translate(item)).join(' * ')})`;
      case 'difference': {
        const { from, subtract } = operand as { from: Expression; subtract: Expression };
        return `(${this.translate(from)} - ${this.translate(subtract)})`;
      }
      case 'complement':
        return `(${this.window} - ${this.translate(operand as Expression)})`;
      default:
        throw new Error(`Unknown expression field ${field}.`);
    }
  }

  private leaf(leaf: SegmentsLeaf): string {
    this.openEndParameter ??= `${this.bind(iso(this.openEnd))}::timestamptz`;
    const openEnd = this.openEndParameter;
    const conditions: string[] = [];
    const users = leaf.users ?? (this.boundUser === null ? undefined : [this.boundUser]);
    if (users !== undefined) {
      conditions.push(`user_id = ANY(${this.bind(users)}::uuid[])`);
    }
    if (leaf.pairTypes !== undefined) {
      conditions.push(`pair_type = ANY(${this.bind(leaf.pairTypes)}::text[])`);
    }
    if (leaf.pairKeys !== undefined) {
      conditions.push(`pair_key = ANY(${this.bind(leaf.pairKeys)}::text[])`);
    }
    if (leaf.meta !== undefined) {
      conditions.push(`meta @> ${this.bind(JSON.stringify(leaf.meta))}::jsonb`);
    }
    // An open segment that starts at or after its end, min(now, window end), is empty.
    conditions.push(
      leaf.includeOpen === false ? 'end_at IS NOT NULL' : `(end_at IS NOT NULL OR start_at < ${openEnd})`,
    );
    return `(SELECT coalesce(range_agg(tstzrange(start_at, coalesce(end_at, ${openEnd}))), '{}'::tstzmultirange)
             FROM segments WHERE ${conditions.join(' AND ')})`;
  }
}

interface ApiResult {
  count: number;
  totalSeconds: number;
  truncated: boolean;
  intervals: Array<{ start: string; end: string }>;
}

function toMilliseconds(intervals: ApiResult['intervals']): Array<[number, number]> {
  return intervals.map((interval) => [Date.parse(interval.start), Date.parse(interval.end)]);
}

describeWithPostgres('report algebra against PostgreSQL multiranges', () => {
  let server: TestServer;
  let clock: ManualClock;
  let database: pg.Client;
  let adminToken: string;
  let adminId: string;
  const members: string[] = [];

  beforeAll(async () => {
    expect(chunkOf(CHUNK_BORDER)).toBe(chunkOf(CHUNK_BORDER - 1) + 1);
    clock = new ManualClock(BASE);
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      // The tests rebuild rollups themselves, at chosen points.
      rollups: false,
      env: {
        // Sessions and tasks idle for 4 hours close while events arrive, but calls stay open.
        DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(4 * 3600),
        ROLLUP_DELAY_MS: '0',
        // Tokens issued at BASE must outlive every clock value used below.
        JWT_TTL_SECONDS: String(86_400),
      },
    });
    adminToken = await server.adminToken();
    const me = await server.gql(`{ me { id } }`, {}, adminToken);
    adminId = me.data?.me.id;

    const defined = await server.gql(DEFINE_CALL, {}, adminToken);
    expect(defined.errors).toBeUndefined();

    // Every token is issued at BASE, before the clock moves.
    const accounts = [];
    for (const name of ['ada', 'bert', 'cleo']) {
      accounts.push(await server.createUser(name, 'MEMBER'));
    }

    const random = seededRandom(20_260_202);
    const lateEvents: Array<Array<Record<string, unknown>>> = [];
    for (const { id, token } of accounts) {
      members.push(id);
      const events = generateEvents(random);

      // Batches in time order, with the clock just past each batch, so no
      // timestamp lies in the future.
      for (let offset = 0; offset < events.length; offset += 15) {
        const batch = events.slice(offset, offset + 15);
        clock.set(Date.parse(batch[batch.length - 1]!['occurredAt'] as string) + 1000);
        const sent = await server.gql(SEND, { events: batch }, token);
        expect(sent.errors, JSON.stringify(sent.errors)).toBeUndefined();
      }
      lateEvents.push(generateEvents(random).filter(() => random() < 0.1));
    }

    // Build every chunk, then let late events change earlier segments
    // (applied at their place in time) without rebuilding.
    expect(await server.app.rollups.buildOnce()).toBeGreaterThan(0);
    expect(await server.app.rollups.staleCount()).toBe(0);
    for (const [index, { token }] of accounts.entries()) {
      const sent = await server.gql(SEND, { events: lateEvents[index] }, token);
      expect(sent.errors, JSON.stringify(sent.errors)).toBeUndefined();
    }
    expect(await server.app.rollups.staleCount()).toBeGreaterThan(0);

    database = new pg.Client({ connectionString: server.databaseUrl! });
    await database.connect();
  });

  afterAll(async () => {
    await database?.end();
    await server?.close();
  });

  async function compute(query: MultirangeQuery, expression: Expression): Promise<Array<[number, number]>> {
    const result = await database.query<{ start_ms: number; end_ms: number }>(query.select(expression), query.params);
    return result.rows.map((row) => [Math.round(row.start_ms), Math.round(row.end_ms)]);
  }

  function expectSame(api: ApiResult, expected: Array<[number, number]>, context: string): void {
    const totalMs = expected.reduce((sum, [start, end]) => sum + (end - start), 0);
    expect(toMilliseconds(api.intervals), context).toEqual(expected);
    expect(api.count, context).toBe(expected.length);
    expect(api.totalSeconds, context).toBe(totalMs / 1000);
    expect(api.truncated, context).toBe(false);
  }

  it('stores every kind of segment', async () => {
    const result = await database.query<{ pair_type: string; open: boolean; empty: boolean; count: number }>(
      `SELECT pair_type, end_at IS NULL AS open, end_at = start_at AS empty, count(*)::int AS count
       FROM segments GROUP BY 1, 2, 3`,
    );
    const counts = new Map(result.rows.map((row) => [`${row.pair_type}:${row.open}:${row.empty}`, row.count]));

    // The random cases below are only as strong as this data: every pair
    // type closed, some open segments, and metadata to filter on.
    for (const pairType of PAIR_TYPES) {
      expect(counts.get(`${pairType}:false:false`), pairType).toBeGreaterThan(3);
    }
    const open = result.rows.filter((row) => row.open).reduce((sum, row) => sum + row.count, 0);
    expect(open).toBeGreaterThan(1);
    const withMeta = await database.query(`SELECT 1 FROM segments WHERE meta @> '{"project": "apollo"}'`);
    expect(withMeta.rowCount).toBeGreaterThan(3);
  });

  /** Moves the rollups to the state of a test phase: 0 as the late events left them, 1 all rebuilt, 2 one user's tasks stale. */
  async function enterPhase(phase: number): Promise<void> {
    if (phase === 1) {
      await server.app.rollups.buildOnce();
      expect(await server.app.rollups.staleCount()).toBe(0);
    }
    if (phase === 2) {
      // A no-op update fires the triggers, which mark every chunk of those segments stale.
      await database.query(`UPDATE segments SET end_at = end_at WHERE user_id = $1 AND pair_type = 'task'`, [members[0]]);
      expect(await server.app.rollups.staleCount()).toBeGreaterThan(0);
    }
  }

  it('matches multiranges on random expressions', async () => {
    const random = seededRandom(7);
    const users = [...members, adminId];

    for (let round = 0; round < EXPRESSION_COUNT; round += 1) {
      if (round % (EXPRESSION_COUNT / 3) === 0) {
        await enterPhase(round / (EXPRESSION_COUNT / 3));
      }
      const window = generateWindow(random);
      const now = BASE + 6 * HOUR_MS + integerBelow(random, 17 * HOUR_MS);
      const expression = generateExpression(random, window, users);
      clock.set(now);

      const result = await server.gql(
        REPORT,
        { expression, window: { start: iso(window.start), end: iso(window.end) } },
        adminToken,
      );
      const context = `round ${round}, now ${iso(now)}, window ${iso(window.start)}..${iso(window.end)}: ${JSON.stringify(expression)}`;
      expect(result.errors, context).toBeUndefined();

      const expected = await compute(new MultirangeQuery(window, Math.min(now, window.end), null), expression);
      expectSame(result.data?.report as ApiResult, expected, context);
    }
  });

  it('matches multiranges per group', async () => {
    const random = seededRandom(11);
    const users = [...members, adminId];

    for (let round = 0; round < GROUPED_EXPRESSION_COUNT; round += 1) {
      if (round === GROUPED_EXPRESSION_COUNT / 2) {
        await enterPhase(1);
      }
      const window = generateWindow(random);
      const now = BASE + 6 * HOUR_MS + integerBelow(random, 17 * HOUR_MS);
      const expression = generateExpression(random, window, users);
      clock.set(now);

      const result = await server.gql(
        REPORT,
        { expression, window: { start: iso(window.start), end: iso(window.end) }, groupBy: 'USER' },
        adminToken,
      );
      const context = `round ${round}, now ${iso(now)}, window ${iso(window.start)}..${iso(window.end)}: ${JSON.stringify(expression)}`;
      expect(result.errors, context).toBeUndefined();
      const report = result.data?.report as ApiResult & { groups: Array<ApiResult & { user: { id: string } }> };
      const openEnd = Math.min(now, window.end);

      expectSame(report, await compute(new MultirangeQuery(window, openEnd, null), expression), context);
      expect(report.groups.map((group) => group.user.id).sort(), context).toEqual([...users].sort());
      for (const group of report.groups) {
        const expected = await compute(new MultirangeQuery(window, openEnd, group.user.id), expression);
        expectSame(group, expected, `${context}, group ${group.user.id}`);
      }
    }
  });
});
