/**
 * Report limits over HTTP: every oversized or malformed request is rejected
 * with BAD_USER_INPUT naming the limit and the value, and the server keeps
 * serving valid reports afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) {
    count
    totalSeconds
    truncated
    intervals { start end seconds }
  }
}`;

const REPORT_GROUPED = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window, groupBy: USER) {
    count
    truncated
    groups { user { username } count totalSeconds truncated intervals { start } }
  }
}`;

const WINDOW = { start: '2026-01-05T00:00:00.000Z', end: '2026-01-06T00:00:00.000Z' };

/** Truncation limit set for this server, so a small literal set exceeds it. */
const MAX_INTERVALS = 5;
/** REPORT_MAX_LEAF_ENTRIES of this server, below its default of 10,000, so the tests show the setting in effect. */
const MAX_LEAF_ENTRIES = 5000;

/** `count` distinct strings that start with `prefix`. */
function strings(count: number, prefix: string): string[] {
  return Array.from({ length: count }, (_, index) => `${prefix}${index}`);
}

type GraphQLError = NonNullable<GraphQLResponse['errors']>[number];

/** JSON text of `depth` nested complements around an empty literal leaf. */
function nestedComplementJson(depth: number): string {
  return `${'{"complement":'.repeat(depth - 1)}{"intervals":[]}${'}'.repeat(depth - 1)}`;
}

/** Builds a report query with `depth` nested complements written inline in the document. */
function inlineNestedComplement(depth: number): string {
  const expression = `${'{ complement: '.repeat(depth - 1)}{ intervals: [] }${' }'.repeat(depth - 1)}`;
  return `{ report(expression: ${expression}, window: { start: "${WINDOW.start}", end: "${WINDOW.end}" }) { count } }`;
}

/** Disjoint one-second intervals, one per minute from the window start. */
function literalIntervals(count: number): Array<{ start: string; end: string }> {
  const base = Date.parse(WINDOW.start);
  const intervals: Array<{ start: string; end: string }> = [];
  for (let index = 0; index < count; index += 1) {
    const start = base + index * 60_000;
    intervals.push({ start: new Date(start).toISOString(), end: new Date(start + 1000).toISOString() });
  }
  return intervals;
}

function firstError(result: GraphQLResponse): GraphQLError {
  expect(result.errors, JSON.stringify(result.data)).toBeDefined();
  return result.errors![0]!;
}

function expectLimitError(error: GraphQLError, limit: string, value: number, max: number): void {
  expect(error.extensions?.code).toBe('BAD_USER_INPUT');
  expect(error.extensions?.reason).toBe('LIMIT_EXCEEDED');
  expect(error.extensions?.limit).toBe(limit);
  expect(error.extensions?.value).toBe(value);
  expect(error.extensions?.max).toBe(max);
  expect(error.message).toContain(limit);
  expect(error.message).toContain(String(value));
  expect(error.message).toContain(String(max));
}

describe('report limits over HTTP', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: { REPORT_MAX_INTERVALS: String(MAX_INTERVALS), REPORT_MAX_LEAF_ENTRIES: String(MAX_LEAF_ENTRIES) },
    });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  /**
   * Posts a request body given as JSON text. JSON.stringify recurses, so a
   * value nested 10,000 levels deep is written by hand.
   */
  async function postJsonText(body: string): Promise<GraphQLResponse<Record<string, any>>> {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
    return { status: response.status, ...((await response.json()) as Omit<GraphQLResponse<Record<string, any>>, 'status'>) };
  }

  /** Runs a valid report, so each rejection is shown to leave the server working. */
  async function expectStillServing(): Promise<void> {
    const result = await server.gql(
      REPORT,
      {
        expression: { complement: { intervals: [{ start: '2026-01-05T06:00:00Z', end: '2026-01-05T18:00:00Z' }] } },
        window: WINDOW,
      },
      token,
    );

    expect(result.status).toBe(200);
    expect(result.errors).toBeUndefined();
    expect(result.data?.report.count).toBe(2);
    expect(result.data?.report.totalSeconds).toBe(12 * 3600);
  }

  describe('expression size as a variable', () => {
    it('rejects depth 10,000', async () => {
      const body = `{"query":${JSON.stringify(REPORT)},"variables":{"window":${JSON.stringify(WINDOW)},"expression":${nestedComplementJson(10_000)}}}`;
      const result = await postJsonText(body);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_DEPTH', 33, 32);
      await expectStillServing();
    });

    it('rejects depth 10,000 as a DifferenceInput', async () => {
      const query = `query ($d: DifferenceInput!, $window: WindowInput!) {
        report(expression: { difference: $d }, window: $window) { count }
      }`;
      const difference = `{"from":{"intervals":[]},"subtract":${nestedComplementJson(10_000)}}`;
      const body = `{"query":${JSON.stringify(query)},"variables":{"window":${JSON.stringify(WINDOW)},"d":${difference}}}`;
      const result = await postJsonText(body);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_DEPTH', 33, 32);
      await expectStillServing();
    });

    it('accepts the maximum depth of 32', async () => {
      const body = `{"query":${JSON.stringify(REPORT)},"variables":{"window":${JSON.stringify(WINDOW)},"expression":${nestedComplementJson(32)}}}`;
      const result = await postJsonText(body);

      expect(result.errors).toBeUndefined();
      // 31 complements of the empty set: an odd count gives the whole window.
      expect(result.data?.report.totalSeconds).toBe(86_400);
    });

    it('rejects 100,000 literal intervals', async () => {
      const variables = { expression: { intervals: literalIntervals(100_000) }, window: WINDOW };
      const result = await server.gql(REPORT, variables, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_LITERAL_INTERVALS', 100_000, 10_000);
      await expectStillServing();
    });

    it('accepts a meta filter of 1000 keys', async () => {
      const meta = Object.fromEntries(Array.from({ length: 1000 }, (_, index) => [`key${index}`, index]));
      const result = await server.gql(REPORT, { expression: { segments: { meta } }, window: WINDOW }, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.count).toBe(0);
    });

    it.each([
      ['1001 keys', Object.fromEntries(Array.from({ length: 1001 }, (_, index) => [`key${index}`, index]))],
      ['400,000 keys', Object.fromEntries(Array.from({ length: 400_000 }, (_, index) => [`key${index}`, index]))],
      ['keys and items nested', { tags: Array.from({ length: 500 }, (_, index) => ({ [`key${index}`]: index })) }],
    ])('rejects a meta filter of %s', async (_case, meta) => {
      const result = await server.gql(REPORT, { expression: { segments: { meta } }, window: WINDOW }, token);
      const error = firstError(result);

      expect(result.status, 'HTTP status').toBe(400);
      expect(error.extensions?.code, 'code').toBe('BAD_USER_INPUT');
      expect(error.extensions?.reason, 'reason').toBe('INVALID_EXPRESSION');
      expect(error.message, 'message').toContain('expression.segments.meta has more than 1000 keys and array items');
      await expectStillServing();
    });

    it('names an unsent variable in a meta filter', async () => {
      const query = `query ($x: String, $window: WindowInput!) {
        report(window: $window, expression: { segments: { meta: { room: $x } } }) { count }
      }`;
      const result = await server.gql(query, { window: WINDOW }, token);
      const error = firstError(result);

      expect(result.status, 'HTTP status').toBe(400);
      expect(error.extensions?.reason, 'reason').toBe('INVALID_EXPRESSION');
      expect(error.message, 'message').toContain(
        'expression.segments.meta.room is missing, because it names a variable that the request did not send',
      );
    });

    it('rejects leaf entries over the maximum', async () => {
      // Five leaves at the maximum of 1000 entries per list and per meta filter.
      const meta = Object.fromEntries(strings(1000, 'key').map((key) => [key, 1]));
      const operands = Array.from({ length: 5 }, (_, index) => ({
        segments: { pairTypes: strings(1000, `type${index}-`), pairKeys: strings(1000, `key${index}-`), meta },
      }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 15_000, MAX_LEAF_ENTRIES);
      expect(firstError(result).message).toContain('pairTypes, users and pairKeys');
      await expectStillServing();
    });

    it('rejects leaf entries before checking users', async () => {
      // The ids are not UUIDs, which would get INVALID_USER_ID, but the limit is checked first.
      const operands = Array.from({ length: 6 }, (_, index) => ({ segments: { users: strings(1000, `user${index}-`) } }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 6000, MAX_LEAF_ENTRIES);
    });

    it('rejects capped leaf entries as a lower bound', async () => {
      const operands = Array.from({ length: 5 }, (_, index) => ({ segments: { pairKeys: strings(2000, `key${index}-`) } }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);
      const error = firstError(result);

      expect(result.status).toBe(400);
      expect(error.extensions?.limit).toBe('REPORT_MAX_LEAF_ENTRIES');
      expect(error.extensions?.value).toBe(5005);
      expect(error.message).toContain('is at least 5005 entries');
    });

    it('accepts leaf entries at the maximum', async () => {
      const operands = Array.from({ length: 5 }, (_, index) => ({ segments: { pairTypes: strings(1000, `type${index}-`) } }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.count).toBe(0);
    });

    it('rejects 301 nodes', async () => {
      const operands = Array.from({ length: 300 }, () => ({ intervals: [] }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_NODES', 301, 256);
      await expectStillServing();
    });

    it('accepts exactly 256 nodes', async () => {
      const operands = literalIntervals(255).map((interval) => ({ intervals: [interval] }));
      const result = await server.gql(REPORT, { expression: { union: operands }, window: WINDOW }, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.count).toBe(255);
      expect(result.data?.report.totalSeconds).toBe(255);
    });
  });

  describe('window', () => {
    it('rejects a window of 100 years', async () => {
      const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
      const result = await server.gql(REPORT, { expression: { intervals: [] }, window }, token);

      expectLimitError(firstError(result), 'REPORT_MAX_WINDOW_DAYS', 36_525, 366);
      expect(result.data?.report ?? null).toBeNull();
      await expectStillServing();
    });

    it('accepts a window of 366 days', async () => {
      const window = { start: '2024-01-01T00:00:00Z', end: '2025-01-01T00:00:00Z' };
      const result = await server.gql(REPORT, { expression: { complement: { intervals: [] } }, window }, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.totalSeconds).toBe(366 * 86_400);
    });

    it.each([
      ['empty', { start: '2026-01-05T00:00:00Z', end: '2026-01-05T00:00:00Z' }],
      ['reversed', { start: '2026-01-06T00:00:00Z', end: '2026-01-05T00:00:00Z' }],
    ])('rejects an %s window', async (_name, window) => {
      const result = await server.gql(REPORT, { expression: { intervals: [] }, window }, token);
      const error = firstError(result);

      expect(error.extensions?.code).toBe('BAD_USER_INPUT');
      expect(error.extensions?.reason).toBe('INVALID_WINDOW');
      expect(error.message).toContain(new Date(window.start).toISOString());
      expect(error.message).toContain(new Date(window.end).toISOString());
      await expectStillServing();
    });

    // Each window runs from local midnight to local midnight 366 calendar
    // days later. Except in Asia/Kathmandu, its ends have different UTC
    // offsets, so it lasts longer than 366 days of 24 hours.
    describe.each([
      ['Europe/Berlin', '2023-03-27T00:00:00+02:00', '2024-03-27T00:00:00+01:00', '2024-03-28T00:00:00+01:00'],
      ['America/New_York', '2024-11-02T00:00:00-04:00', '2025-11-03T00:00:00-05:00', '2025-11-04T00:00:00-05:00'],
      ['Australia/Lord_Howe', '2024-04-06T00:00:00+11:00', '2025-04-07T00:00:00+10:30', '2025-04-08T00:00:00+10:30'],
      ['Asia/Kathmandu', '2024-01-01T00:00:00+05:45', '2025-01-01T00:00:00+05:45', '2025-01-02T00:00:00+05:45'],
    ])('in %s', (timeZone, start, end, dayLater) => {
      const DAILY_REPORT = `query ($window: WindowInput!, $timeZone: String!) {
        report(expression: { complement: { intervals: [] } }, window: $window, bucket: { unit: DAY, timeZone: $timeZone }) {
          totalSeconds
          buckets { start }
        }
      }`;

      it('accepts 366 calendar days', async () => {
        const result = await server.gql(DAILY_REPORT, { window: { start, end }, timeZone }, token);

        expect(result.errors).toBeUndefined();
        expect(result.data?.report.totalSeconds).toBe((Date.parse(end) - Date.parse(start)) / 1000);
        expect(result.data?.report.buckets).toHaveLength(366);
      });

      it('rejects 367 calendar days', async () => {
        const result = await server.gql(DAILY_REPORT, { window: { start, end: dayLater }, timeZone }, token);
        const error = firstError(result);

        expect(result.status).toBe(400);
        expectLimitError(error, 'REPORT_MAX_WINDOW_DAYS', 367, 366);
        expect(error.message).toBe(
          `The report window is 367 calendar days in ${timeZone}, above the maximum of 366 days (REPORT_MAX_WINDOW_DAYS). Split the window into shorter reports.`,
        );
        expect(error.extensions?.timeZone).toBe(timeZone);
        await expectStillServing();
      });
    });

    it('rejects a minute over 366 calendar days', async () => {
      const window = { start: '2023-03-27T00:00:00+02:00', end: '2024-03-27T00:01:00+01:00' };
      const query = `query ($window: WindowInput!) {
        report(expression: { intervals: [] }, window: $window, bucket: { unit: DAY, timeZone: "Europe/Berlin" }) { count }
      }`;
      const result = await server.gql(query, { window }, token);

      expectLimitError(firstError(result), 'REPORT_MAX_WINDOW_DAYS', 366.01, 366);
    });

    it('counts days of 24 hours without buckets', async () => {
      // The Berlin window above lasts 366 days and 1 hour.
      const window = { start: '2023-03-27T00:00:00+02:00', end: '2024-03-27T00:00:00+01:00' };
      const result = await server.gql(REPORT, { expression: { intervals: [] }, window }, token);

      expectLimitError(firstError(result), 'REPORT_MAX_WINDOW_DAYS', 366.05, 366);
    });

    it('answers HTTP 400 for a window limit', async () => {
      const window = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
      const result = await server.gql(REPORT, { expression: { intervals: [] }, window }, token);

      expect(result.status).toBe(400);
    });
  });

  describe('expression written inline', () => {
    it.each([1_000, 10_000])('rejects depth %i before parsing', async (depth) => {
      const result = await server.gql(inlineNestedComplement(depth), {}, token);
      const error = firstError(result);

      // Deep nesting is rejected by a bracket scan before the recursive
      // GraphQL parser runs, so the parser never exhausts its call stack.
      expect(result.status).toBe(400);
      expect(error.extensions?.code).toBe('BAD_USER_INPUT');
      expect(error.extensions?.limit).toBe('MAX_DOCUMENT_DEPTH');
      expect(error.message).not.toMatch(/call stack/i);
      await expectStillServing();
    });

    it('rejects depth 33', async () => {
      const result = await server.gql(inlineNestedComplement(33), {}, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_DEPTH', 33, 32);
      await expectStillServing();
    });

    it('rejects leaf entries over the maximum', async () => {
      const leaf = (index: number) => `{ segments: { pairTypes: [${strings(1000, `type${index}-`).map((name) => `"${name}"`).join(' ')}] } }`;
      const operands = Array.from({ length: 6 }, (_, index) => leaf(index)).join(' ');
      const query = `{ report(expression: { union: [${operands}] }, window: { start: "${WINDOW.start}", end: "${WINDOW.end}" }) { count } }`;
      const result = await server.gql(query, {}, token);

      expect(result.status).toBe(400);
      expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 6000, MAX_LEAF_ENTRIES);
      await expectStillServing();
    });

    it('rejects 301 nodes', async () => {
      const operands = Array.from({ length: 300 }, () => '{ intervals: [] }').join(', ');
      const query = `{ report(expression: { union: [${operands}] }, window: { start: "${WINDOW.start}", end: "${WINDOW.end}" }) { count } }`;
      const result = await server.gql(query, {}, token);

      expectLimitError(firstError(result), 'REPORT_MAX_NODES', 301, 256);
      await expectStillServing();
    });
  });

  describe('@oneOf', () => {
    it.each([
      ['two keys', { intervals: [], complement: { intervals: [] } }, 'expression'],
      ['zero keys', {}, 'expression'],
      [
        'two keys deep inside',
        { union: [{ intervals: [] }, { complement: { segments: {}, intervals: [] } }] },
        'expression.union[1].complement',
      ],
      ['a null key', { complement: null }, 'expression'],
    ])('rejects %s as a variable', async (_name, expression, path) => {
      const result = await server.gql(REPORT, { expression, window: WINDOW }, token);
      const error = firstError(result);

      expect(result.status).toBe(400);
      expect(error.extensions?.code).toBe('BAD_USER_INPUT');
      expect(error.extensions?.reason).toBe('INVALID_EXPRESSION');
      expect(error.message).toContain(path);
      await expectStillServing();
    });

    // Inline literals fail GraphQL's own validation before any resolver runs,
    // so they carry Apollo's validation code.
    it.each([
      ['two keys', '{ intervals: [], complement: { intervals: [] } }'],
      ['zero keys', '{}'],
    ])('rejects %s inline', async (_name, inline) => {
      const query = `{ report(expression: ${inline}, window: { start: "${WINDOW.start}", end: "${WINDOW.end}" }) { count } }`;
      const result = await server.gql(query, {}, token);
      const error = firstError(result);

      expect(result.status).toBe(400);
      expect(error.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
      expect(error.message).toMatch(/exactly one key/);
      expect(error.message, 'fields to choose from').toContain('Set exactly one of segments, intervals, union,');
      await expectStillServing();
    });
  });

  // graphql-js 16 accepts these documents and finds the null only while it
  // runs the field, because a default value or a @oneOf field hides it from
  // validation.
  describe('null variable in a required position', () => {
    const LITERAL_WINDOW = `{ start: "${WINDOW.start}", end: "${WINDOW.end}" }`;

    it.each([
      [
        'a nullable @oneOf field',
        `query ($x: SetExpression) { report(expression: { complement: $x }, window: ${LITERAL_WINDOW}) { count } }`,
        { x: null },
        'expression',
      ],
      [
        'a @oneOf field left out',
        `query ($x: SetExpression) { report(expression: { complement: $x }, window: ${LITERAL_WINDOW}) { count } }`,
        {},
        'expression',
      ],
      [
        'a @oneOf list',
        `query ($l: [SetExpression!]) { report(expression: { union: $l }, window: ${LITERAL_WINDOW}) { count } }`,
        { l: null },
        'expression',
      ],
      [
        'a window with a default',
        `query ($w: WindowInput = ${LITERAL_WINDOW}) { report(expression: { intervals: [] }, window: $w) { count } }`,
        { w: null },
        'window',
      ],
      [
        'a time zone with a default',
        `query ($tz: String = "UTC") { report(expression: { intervals: [] }, window: ${LITERAL_WINDOW}, bucket: { unit: DAY, timeZone: $tz }) { count } }`,
        { tz: null },
        'bucket',
      ],
    ])('rejects null in %s', async (_case, query, variables, argument) => {
      const result = await server.gql(query, variables, token);
      const error = firstError(result);

      expect(result.status, 'HTTP status').toBe(400);
      expect(error.extensions?.code, 'code').toBe('BAD_USER_INPUT');
      expect(error.extensions?.reason, 'reason').toBe('INVALID_VARIABLE');
      expect(error.message, 'message').toContain(`Argument "${argument}"`);
      expect(error.message, 'message').toContain('null or missing');
      await expectStillServing();
    });
  });

  describe('truncation', () => {
    it('truncates intervals but counts all', async () => {
      const intervals = literalIntervals(12);
      const result = await server.gql(REPORT, { expression: { intervals }, window: WINDOW }, token);

      expect(result.errors).toBeUndefined();
      const report = result.data?.report;
      expect(report.count).toBe(12);
      expect(report.truncated).toBe(true);
      expect(report.totalSeconds).toBe(12);
      expect(report.intervals).toHaveLength(MAX_INTERVALS);
      expect(report.intervals.map((interval: { start: string }) => interval.start)).toEqual(
        intervals.slice(0, MAX_INTERVALS).map((interval) => interval.start),
      );
    });

    it('keeps a result at the limit whole', async () => {
      const variables = { expression: { intervals: literalIntervals(MAX_INTERVALS) }, window: WINDOW };
      const result = await server.gql(REPORT, variables, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.count).toBe(MAX_INTERVALS);
      expect(result.data?.report.truncated).toBe(false);
      expect(result.data?.report.intervals).toHaveLength(MAX_INTERVALS);
    });

    it('truncates each group', async () => {
      const variables = { expression: { intervals: literalIntervals(7) }, window: WINDOW };
      const result = await server.gql(REPORT_GROUPED, variables, token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.count).toBe(7);
      expect(result.data?.report.truncated).toBe(true);
      const groups = result.data?.report.groups as Array<{
        count: number;
        totalSeconds: number;
        truncated: boolean;
        intervals: unknown[];
      }>;
      expect(groups.length).toBeGreaterThan(0);
      for (const group of groups) {
        expect(group.count).toBe(7);
        expect(group.totalSeconds).toBe(7);
        expect(group.truncated).toBe(true);
        expect(group.intervals).toHaveLength(MAX_INTERVALS);
      }
    });
  });
});

/** Thirty days of January 2026, a window for reports of the request-wide limits. */
const DAYS_30 = { start: '2026-01-01T00:00:00.000Z', end: '2026-01-31T00:00:00.000Z' };
const TOTAL = `report(expression: $expression, window: $window) { totalSeconds }`;
const HEAD = `query ($expression: SetExpression!, $window: WindowInput!)`;

/** Returns `count` copies of `field`, aliased r0, r1 and on. */
function aliases(count: number, field: string): string {
  return Array.from({ length: count }, (_, index) => `r${index}: ${field}`).join('\n');
}

describe('request-wide limits over HTTP', () => {
  const MAX_ROOT_FIELDS = 4;
  const MAX_BUCKET_ROWS = 50;
  const MAX_BATCH = 5;
  const DAILY = `report(expression: $expression, window: $window, bucket: { unit: DAY, timeZone: "UTC" }) { buckets { seconds } }`;
  const EXPRESSION = { intervals: [{ start: '2026-01-02T00:00:00Z', end: '2026-01-02T06:00:00Z' }] };
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: {
        REQUEST_MAX_ROOT_FIELDS: String(MAX_ROOT_FIELDS),
        REPORT_MAX_BUCKET_ROWS: String(MAX_BUCKET_ROWS),
        MAX_BATCH_SIZE: String(MAX_BATCH),
      },
    });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('rejects too many aliased reports', async () => {
    const result = await server.gql(`${HEAD} { ${aliases(MAX_ROOT_FIELDS + 1, TOTAL)} }`, { expression: EXPRESSION, window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expectLimitError(firstError(result), 'REQUEST_MAX_ROOT_FIELDS', MAX_ROOT_FIELDS + 1, MAX_ROOT_FIELDS);
  });

  it('counts fields inside fragments', async () => {
    const query = `${HEAD} { r: ${TOTAL} ...More }
      fragment More on Query { ${aliases(MAX_ROOT_FIELDS, TOTAL)} }`;
    const result = await server.gql(query, { expression: EXPRESSION, window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expectLimitError(firstError(result), 'REQUEST_MAX_ROOT_FIELDS', MAX_ROOT_FIELDS + 1, MAX_ROOT_FIELDS);
  });

  it('serves reports up to the limit', async () => {
    const query = `${HEAD} { ${aliases(MAX_ROOT_FIELDS, TOTAL)} __typename }`;
    const result = await server.gql<Record<string, { totalSeconds: number }>>(query, { expression: EXPRESSION, window: DAYS_30 }, token);

    expect(result.errors).toBeUndefined();
    expect(result.data?.r0?.totalSeconds).toBe(6 * 3600);
    expect(result.data?.[`r${MAX_ROOT_FIELDS - 1}`]?.totalSeconds).toBe(6 * 3600);
  });

  it('keeps other fields when one report fails', async () => {
    const query = `${HEAD} {
      me { id }
      good: ${TOTAL}
      bad: report(expression: $expression, window: $window, bucket: { unit: DAY, timeZone: "Mars/Olympus_Mons" }) { totalSeconds }
    }`;
    const result = await server.gql<Record<string, { id?: string; totalSeconds?: number } | null>>(
      query,
      { expression: EXPRESSION, window: DAYS_30 },
      token,
    );

    expect(result.status).toBe(200);
    expect(result.data?.me?.id).toBeTypeOf('string');
    expect(result.data?.good?.totalSeconds).toBe(6 * 3600);
    expect(result.data?.bad).toBeNull();
    expect(result.errors).toHaveLength(1);
    expect(result.errors?.[0]?.path).toEqual(['bad']);
    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_TIME_ZONE');
  });

  it('answers 400 when its only report fails', async () => {
    const query = `${HEAD} { bad: report(expression: $expression, window: $window, bucket: { unit: DAY, timeZone: "Mars/Olympus_Mons" }) { totalSeconds } }`;
    const result = await server.gql(query, { expression: EXPRESSION, window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expect(result.data).toEqual({ bad: null });
    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_TIME_ZONE');
  });

  it('shares bucket rows between reports', async () => {
    const single = await server.gql(`${HEAD} { ${aliases(1, DAILY)} }`, { expression: EXPRESSION, window: DAYS_30 }, token);
    const double = await server.gql(`${HEAD} { ${aliases(2, DAILY)} }`, { expression: EXPRESSION, window: DAYS_30 }, token);

    expect(single.errors).toBeUndefined();
    const error = firstError(double);
    expect(error.extensions?.reason, 'reason').toBe('LIMIT_EXCEEDED');
    expect(error.extensions?.limit, 'limit').toBe('REPORT_MAX_BUCKET_ROWS');
    expect(error.extensions?.max, 'max').toBe(MAX_BUCKET_ROWS);
    // Each report counts 26 rows (30 days of at most 27 hours) before its
    // walk, and 30 after it, and the reports of a request run at once.
    expect([52, 56], 'rows counted').toContain(error.extensions?.value);
    expect(error.message, 'message').toContain('at least');
    expect(error.message).toContain('reports of this request');
  });

  it('rejects events spread over aliases', async () => {
    const user = await server.createUser('alias-sender');
    const events = (prefix: string) =>
      Array.from({ length: 3 }, (_, index) => ({ id: `${prefix}-${index}`, type: 'heartbeat', occurredAt: '2026-01-02T00:00:00Z' }));
    const query = `mutation ($a: [EventInput!]!, $b: [EventInput!]!) {
      a: sendEvents(events: $a) { storedCount }
      b: sendEvents(events: $b) { storedCount }
    }`;
    const result = await server.gql(query, { a: events('a'), b: events('b') }, user.token);

    expect(result.status).toBe(400);
    expectLimitError(firstError(result), 'MAX_BATCH_SIZE', 6, MAX_BATCH);
    const defaults = `mutation ($a: [EventInput!]! = [{ type: "heartbeat" }, { type: "heartbeat" }, { type: "heartbeat" }]) {
      a: sendEvents(events: $a) { storedCount }
      b: sendEvents(events: $a) { storedCount }
    }`;
    const fromDefaults = await server.gql(defaults, {}, user.token);
    expect(fromDefaults.status).toBe(400);
    expectLimitError(firstError(fromDefaults), 'MAX_BATCH_SIZE', 6, MAX_BATCH);
    const stored = await server.gql<{ events: { nodes: unknown[] } }>(`{ events(first: 10) { nodes { id } } }`, {}, user.token);
    expect(stored.data?.events.nodes).toEqual([]);
  });
});

describe('report sizes over all reports', () => {
  /** REPORT_MAX_LEAF_ENTRIES, REPORT_MAX_NODES and REPORT_MAX_LITERAL_INTERVALS of this server. */
  const MAX_EXPRESSION_SIZE = 10;
  /** The maximum of each for all reports of one request: 4 times the limit of one expression. */
  const MAX_TOTAL_SIZE = 40;
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: {
        REPORT_MAX_LEAF_ENTRIES: String(MAX_EXPRESSION_SIZE),
        REPORT_MAX_NODES: String(MAX_EXPRESSION_SIZE),
        REPORT_MAX_LITERAL_INTERVALS: String(MAX_EXPRESSION_SIZE),
      },
    });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('shares leaf entries between reports', async () => {
    // One pair type and five pair keys: 6 leaf entries a report.
    const expression = { segments: { pairTypes: ['session'], pairKeys: strings(5, 'key-') } };
    const fitting = await server.gql(`${HEAD} { ${aliases(6, TOTAL)} }`, { expression, window: DAYS_30 }, token);
    const over = await server.gql(`${HEAD} { ${aliases(7, TOTAL)} }`, { expression, window: DAYS_30 }, token);

    expect(fitting.errors).toBeUndefined();
    expect(over.status).toBe(400);
    expect(over.data).toBeUndefined();
    const error = firstError(over);
    expectLimitError(error, 'REPORT_MAX_LEAF_ENTRIES', 42, MAX_TOTAL_SIZE);
    expect(error.extensions?.reports).toBe(7);
    expect(error.message).toContain('7 reports of this request');
    expect(error.message).toContain('4 times REPORT_MAX_LEAF_ENTRIES');
  });

  it('shares nodes of inline expressions', async () => {
    // A union of three leaves: 4 nodes a report.
    const leaf = '{ intervals: [] }';
    const field = `report(expression: { union: [${leaf}, ${leaf}, ${leaf}] }, window: $window) { totalSeconds }`;
    const query = `query ($window: WindowInput!) { ${aliases(11, field)} }`;
    const result = await server.gql(query, { window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expectLimitError(firstError(result), 'REPORT_MAX_NODES', 44, MAX_TOTAL_SIZE);
  });

  it('serves totals at the maximum', async () => {
    // Ten unions of three leaves: 40 nodes, the maximum for one request.
    const leaf = '{ intervals: [] }';
    const field = `report(expression: { union: [${leaf}, ${leaf}, ${leaf}] }, window: $window) { totalSeconds }`;
    const query = `query ($window: WindowInput!) { ${aliases(10, field)} }`;
    const result = await server.gql(query, { window: DAYS_30 }, token);

    expect(result.status).toBe(200);
    expect(result.errors).toBeUndefined();
    expect(result.data?.r9).toEqual({ totalSeconds: 0 });
  });

  it('counts a sent variable over its default', async () => {
    // The default has 1 leaf entry, and the value sent has 6 for each of 7 reports.
    const expression = { segments: { pairTypes: ['session'], pairKeys: strings(5, 'key-') } };
    const head = `query ($expression: SetExpression! = { segments: { pairTypes: ["session"] } }, $window: WindowInput!)`;
    const result = await server.gql(`${head} { ${aliases(7, TOTAL)} }`, { expression, window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expect(result.data).toBeUndefined();
    expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 42, MAX_TOTAL_SIZE);
  });

  it('leaves a report over its own limit to fail alone', async () => {
    // One pair type and ten pair keys, written inline: 11 leaf entries, above
    // the limit of one expression. A variable would be rejected before the totals.
    const pairKeys = strings(10, 'key-')
      .map((key) => `"${key}"`)
      .join(', ');
    const query = `query ($window: WindowInput!) {
      small: report(expression: { intervals: [] }, window: $window) { totalSeconds }
      large: report(expression: { segments: { pairTypes: ["session"], pairKeys: [${pairKeys}] } }, window: $window) { totalSeconds }
    }`;
    const result = await server.gql<Record<string, { totalSeconds: number } | null>>(query, { window: DAYS_30 }, token);

    expect(result.status).toBe(200);
    expect(result.data?.small).toEqual({ totalSeconds: 0 });
    expect(result.data?.large).toBeNull();
    expect(result.errors).toHaveLength(1);
    expect(result.errors?.[0]?.path).toEqual(['large']);
    expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 11, MAX_EXPRESSION_SIZE);
  });

  it('shares literal intervals of defaults', async () => {
    const intervals = literalIntervals(6)
      .map((interval) => `{ start: "${interval.start}", end: "${interval.end}" }`)
      .join(', ');
    const query = `query ($expression: SetExpression! = { intervals: [${intervals}] }, $window: WindowInput!) { ${aliases(7, TOTAL)} }`;
    const result = await server.gql(query, { window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expectLimitError(firstError(result), 'REPORT_MAX_LITERAL_INTERVALS', 42, MAX_TOTAL_SIZE);
  });

  it('shares defaults of nested variables', async () => {
    // A default of 6 leaf entries, used inside each report's own union.
    const leaf = `{ segments: { pairTypes: ["session"], pairKeys: [${strings(5, 'key-')
      .map((key) => `"${key}"`)
      .join(', ')}] } }`;
    const field = 'report(expression: { union: [$leaf] }, window: $window) { totalSeconds }';
    const query = `query ($leaf: SetExpression = ${leaf}, $window: WindowInput!) { ${aliases(7, field)} }`;
    const result = await server.gql(query, { window: DAYS_30 }, token);

    expect(result.status).toBe(400);
    expect(result.data).toBeUndefined();
    expectLimitError(firstError(result), 'REPORT_MAX_LEAF_ENTRIES', 42, MAX_TOTAL_SIZE);
  });

  it('leaves skipped reports out of the totals', async () => {
    // Six reports of 6 leaf entries fit, and a seventh would go over.
    const expression = { segments: { pairTypes: ['session'], pairKeys: strings(5, 'key-') } };
    const query = `${HEAD} { ${aliases(6, TOTAL)} skipped: ${TOTAL.replace('window)', 'window) @skip(if: true)')} }`;
    const result = await server.gql<Record<string, { totalSeconds: number }>>(query, { expression, window: DAYS_30 }, token);

    expect(result.errors).toBeUndefined();
    expect(result.data?.r5?.totalSeconds).toBe(0);
    expect(result.data?.skipped).toBeUndefined();
  });
});

describe('bucket count over HTTP', () => {
  const MAX_BUCKET_ROWS = 11_000;
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: { REPORT_MAX_WINDOW_DAYS: '500', REPORT_MAX_BUCKET_ROWS: String(MAX_BUCKET_ROWS) },
    });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  function hourly(days: number, timeZone = 'UTC'): Promise<GraphQLResponse<{ report: { buckets: unknown[] } }>> {
    const start = Date.parse('2025-01-01T00:00:00Z');
    const window = { start: new Date(start).toISOString(), end: new Date(start + days * 86_400_000).toISOString() };
    const query = `query ($window: WindowInput!, $timeZone: String!) {
      report(expression: { intervals: [] }, window: $window, bucket: { unit: HOUR, timeZone: $timeZone }) { buckets { seconds } }
    }`;
    return server.gql(query, { window, timeZone }, token);
  }

  it('allows buckets up to bucket rows', async () => {
    const result = await hourly(450);

    expect(result.errors).toBeUndefined();
    expect(result.data?.report.buckets).toHaveLength(450 * 24);
  });

  it('rejects buckets above bucket rows', async () => {
    const result = await hourly(500);

    expectLimitError(firstError(result), 'REPORT_MAX_BUCKET_ROWS', 500 * 24, MAX_BUCKET_ROWS);
  });

  it('names an estimated bucket count as a lower bound', async () => {
    // Hours in Asia/Kolkata start at :30 UTC, so 460 days from midnight UTC
    // hold 11,041 hour buckets, and the estimate before the walk is 11,040.
    const error = firstError(await hourly(460, 'Asia/Kolkata'));

    expectLimitError(error, 'REPORT_MAX_BUCKET_ROWS', 460 * 24, MAX_BUCKET_ROWS);
    expect(error.message, 'message').toBe(
      `The number of bucket rows is at least ${460 * 24}, above the maximum of ${MAX_BUCKET_ROWS} (REPORT_MAX_BUCKET_ROWS). Use a larger bucket unit, a shorter window or fewer groups.`,
    );
  });

  it('rejects a later report before walking it', async () => {
    const window = { start: '2025-01-01T00:00:00Z', end: '2026-03-27T00:00:00Z' };
    const query = `query ($window: WindowInput!) {
      a: report(expression: { intervals: [] }, window: $window, bucket: { unit: HOUR, timeZone: "UTC" }) { totalSeconds }
      b: report(expression: { intervals: [] }, window: $window, bucket: { unit: HOUR, timeZone: "Europe/Prague" }) { totalSeconds }
    }`;
    const result = await server.gql(query, { window }, token);
    const error = firstError(result);

    // 450 days of hours: a lower bound of 10,800 rows, which the second report adds to the first one's.
    expectLimitError(error, 'REPORT_MAX_BUCKET_ROWS', 2 * 450 * 24, MAX_BUCKET_ROWS);
    expect(error.message, 'message').toContain(`at least ${2 * 450 * 24} bucket rows`);
  });
});
