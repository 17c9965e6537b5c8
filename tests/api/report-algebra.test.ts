/**
 * Report algebra through the API on small hand-checked cases: literal
 * intervals and stored segments give the same results, open segments run to
 * min(now, window end), and leaf filters select what they name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) {
    window { start end }
    count
    totalSeconds
    truncated
    intervals { start end seconds }
  }
}`;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

/** Base instant of every case: offsets below are seconds after it. */
const T = Date.parse('2026-03-30T08:00:00Z');

function at(seconds: number): string {
  return new Date(T + seconds * 1000).toISOString();
}

function span(startSeconds: number, endSeconds: number): { start: string; end: string } {
  return { start: at(startSeconds), end: at(endSeconds) };
}

/** The expected interval as the API returns it. */
function piece(startSeconds: number, endSeconds: number): { start: string; end: string; seconds: number } {
  return { ...span(startSeconds, endSeconds), seconds: endSeconds - startSeconds };
}

interface Account {
  id: string;
  token: string;
}

describe('report algebra over HTTP', () => {
  let server: TestServer;
  let clock: ManualClock;
  let adminToken: string;
  /** Session [0, 5 s). */
  let short: Account;
  /** Session A = [0, 3600 s) with meta, tasks B = [1000, 2000 s) key "a" and [2500, 2600 s) key "b". */
  let nested: Account;
  /** Session open since 6600 s. */
  let open: Account;
  /** Session open since 7320 s, 2 minutes after the clock when it was sent. */
  let early: Account;

  beforeAll(async () => {
    clock = new ManualClock(T + 2 * 3600_000);
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      // Long enough that no session here is auto-closed before its end event.
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    adminToken = await server.adminToken();
    short = await server.createUser('short', 'MEMBER');
    nested = await server.createUser('nested', 'MEMBER');
    open = await server.createUser('open', 'MEMBER');
    early = await server.createUser('early', 'MEMBER');

    await send(short, [
      { type: 'session_started', occurredAt: at(0) },
      { type: 'session_ended', occurredAt: at(5) },
    ]);
    await send(nested, [
      { type: 'session_started', occurredAt: at(0), meta: { project: 'apollo', tags: ['x', 'y'] } },
      { type: 'task_started', pairKey: 'a', occurredAt: at(1000) },
      { type: 'task_ended', pairKey: 'a', occurredAt: at(2000) },
      { type: 'task_started', pairKey: 'b', occurredAt: at(2500) },
      { type: 'task_ended', pairKey: 'b', occurredAt: at(2600) },
      { type: 'session_ended', occurredAt: at(3600) },
    ]);
    await send(open, [{ type: 'session_started', occurredAt: at(6600) }]);
    // Two minutes ahead of the clock is within the allowed clock skew, so it is kept.
    await send(early, [{ type: 'session_started', occurredAt: at(2 * 3600 + 120) }]);
  });

  afterAll(async () => {
    await server?.close();
  });

  async function send(account: Account, events: Array<Record<string, unknown>>): Promise<void> {
    const result = await server.gql(SEND, { events }, account.token);
    expect(result.errors).toBeUndefined();
    expect(result.data?.sendEvents.storedCount).toBe(events.length);
  }

  async function report(
    expression: Record<string, unknown>,
    window: { start: string; end: string },
  ): Promise<GraphQLResponse<Record<string, any>>> {
    return server.gql(REPORT, { expression, window }, adminToken);
  }

  async function intervalsOf(
    expression: Record<string, unknown>,
    window: { start: string; end: string },
  ): Promise<Array<{ start: string; end: string; seconds: number }>> {
    const result = await report(expression, window);
    expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
    const { intervals, count, totalSeconds } = result.data?.report;
    expect(count).toBe(intervals.length);
    expect(totalSeconds).toBe(intervals.reduce((sum: number, item: { seconds: number }) => sum + item.seconds, 0));
    return intervals;
  }

  function sessionsOf(account: Account, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { segments: { users: [account.id], pairTypes: ['session'], ...extra } };
  }

  function tasksOf(account: Account, extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { segments: { users: [account.id], pairTypes: ['task'], ...extra } };
  }

  describe('window [10 s, 20 s) and a segment [0, 5 s)', () => {
    const window = span(10, 20);

    it('complements a stored segment to the window', async () => {
      const result = await report({ complement: sessionsOf(short) }, window);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report).toEqual({
        window: { start: at(10), end: at(20) },
        count: 1,
        totalSeconds: 10,
        truncated: false,
        intervals: [piece(10, 20)],
      });
    });

    it('complements a literal to the window', async () => {
      expect(await intervalsOf({ complement: { intervals: [span(0, 5)] } }, window)).toEqual([piece(10, 20)]);
    });

    it('clips the segment itself away', async () => {
      expect(await intervalsOf(sessionsOf(short), window)).toEqual([]);
    });
  });

  describe('A = [0, 3600 s) and B = [1000 s, 2000 s)', () => {
    const window = span(-3600, 7200);
    const literalA = { intervals: [span(0, 3600)] };
    const literalB = { intervals: [span(1000, 2000)] };

    it.each([
      ['literals', () => literalA, () => literalB],
      ['stored segments', () => sessionsOf(nested), () => tasksOf(nested, { pairKeys: ['a'] })],
      ['mixed', () => sessionsOf(nested), () => literalB],
    ])('unites %s', async (_name, a, b) => {
      const result = await report({ union: [a(), b()] }, window);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.intervals).toEqual([piece(0, 3600)]);
      expect(result.data?.report.count).toBe(1);
      expect(result.data?.report.totalSeconds).toBe(3600);
    });

    it.each([
      ['literals', () => literalA, () => literalB],
      ['stored segments', () => sessionsOf(nested), () => tasksOf(nested, { pairKeys: ['a'] })],
    ])('combines %s', async (_name, a, b) => {
      expect(await intervalsOf({ intersect: [a(), b()] }, window)).toEqual([piece(1000, 2000)]);
      expect(await intervalsOf({ difference: { from: a(), subtract: b() } }, window)).toEqual([
        piece(0, 1000),
        piece(2000, 3600),
      ]);
      expect(await intervalsOf({ difference: { from: b(), subtract: a() } }, window)).toEqual([]);
      expect(await intervalsOf({ complement: { union: [a(), b()] } }, window)).toEqual([
        piece(-3600, 0),
        piece(3600, 7200),
      ]);
    });
  });

  describe('literals', () => {
    const window = span(0, 100);

    it('merges touching and overlapping intervals', async () => {
      const expression = { intervals: [span(30, 40), span(0, 10), span(10, 20), span(35, 50)] };

      expect(await intervalsOf(expression, window)).toEqual([piece(0, 20), piece(30, 50)]);
    });

    it('clips to the window', async () => {
      expect(await intervalsOf({ intervals: [span(-50, 10), span(90, 500)] }, window)).toEqual([
        piece(0, 10),
        piece(90, 100),
      ]);
    });

    it('keeps milliseconds', async () => {
      const result = await intervalsOf({ intervals: [span(1.001, 1.003)] }, window);

      expect(result).toEqual([{ start: at(1.001), end: at(1.003), seconds: 0.002 }]);
    });

    it('returns offsets in UTC', async () => {
      const expression = { intervals: [{ start: '2026-03-30T10:00:10+02:00', end: '2026-03-30T10:00:20+02:00' }] };

      expect(await intervalsOf(expression, window)).toEqual([piece(10, 20)]);
    });

    it('accepts an empty list', async () => {
      expect(await intervalsOf({ intervals: [] }, window)).toEqual([]);
      expect(await intervalsOf({ complement: { intervals: [] } }, window)).toEqual([piece(0, 100)]);
    });

    it('drops a zero-length interval', async () => {
      expect(await intervalsOf({ union: [{ intervals: [span(0, 1), span(10, 10)] }] }, window)).toEqual([piece(0, 1)]);
      expect(await intervalsOf({ complement: { intervals: span(10, 10) } }, window)).toEqual([piece(0, 100)]);
    });

    it('rejects a reversed interval', async () => {
      const result = await report({ union: [{ intervals: [span(0, 1), span(20, 10)] }] }, window);

      expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_EXPRESSION');
      expect(result.errors?.[0]?.message).toContain('expression.union[0].intervals[1]');
      expect(result.errors?.[0]?.message).toContain(`start ${at(20)}, which is after its end ${at(10)}`);
    });

    it.each(['union', 'intersect'])('rejects an empty %s', async (operator) => {
      const result = await report({ [operator]: [] }, window);

      expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.message).toContain(`expression.${operator}`);
    });
  });

  describe('leaf filters', () => {
    const window = span(-3600, 7200);

    it('selects by pair key', async () => {
      expect(await intervalsOf(tasksOf(nested), window)).toEqual([piece(1000, 2000), piece(2500, 2600)]);
      expect(await intervalsOf(tasksOf(nested, { pairKeys: ['b'] }), window)).toEqual([piece(2500, 2600)]);
      expect(await intervalsOf(tasksOf(nested, { pairKeys: [''] }), window)).toEqual([]);
    });

    it('selects by meta containment', async () => {
      expect(await intervalsOf(sessionsOf(nested, { meta: { project: 'apollo' } }), window)).toEqual([piece(0, 3600)]);
      expect(await intervalsOf(sessionsOf(nested, { meta: { tags: ['y'] } }), window)).toEqual([piece(0, 3600)]);
      expect(await intervalsOf(sessionsOf(nested, { meta: { project: 'gemini' } }), window)).toEqual([]);
      // Tasks carry their own start event's meta, which is empty here.
      expect(await intervalsOf(tasksOf(nested, { meta: { project: 'apollo' } }), window)).toEqual([]);
    });

    it('matches nothing for an empty list', async () => {
      expect(await intervalsOf({ segments: { users: [nested.id], pairTypes: [] } }, window)).toEqual([]);
      expect(await intervalsOf({ segments: { users: [] } }, window)).toEqual([]);
    });
  });

  describe('open segments', () => {
    // The clock never goes back before T + 2 h, when the admin token was issued.
    it('run to now inside the window', async () => {
      clock.set(T + 7200_000);

      expect(await intervalsOf(sessionsOf(open), span(0, 4 * 3600))).toEqual([piece(6600, 7200)]);
    });

    it('follow the clock', async () => {
      clock.set(T + 9000_000);

      expect(await intervalsOf(sessionsOf(open), span(0, 4 * 3600))).toEqual([piece(6600, 9000)]);
    });

    it('run to the window end before now', async () => {
      clock.set(T + 9000_000);

      expect(await intervalsOf(sessionsOf(open), span(6000, 7000))).toEqual([piece(6600, 7000)]);
    });

    it('are left out with includeOpen false', async () => {
      clock.set(T + 9000_000);

      expect(await intervalsOf(sessionsOf(open, { includeOpen: false }), span(0, 4 * 3600))).toEqual([]);
      expect(await intervalsOf({ complement: sessionsOf(open, { includeOpen: false }) }, span(6600, 6660))).toEqual([
        piece(6600, 6660),
      ]);
    });

    it('give nothing in a window after now', async () => {
      clock.set(T + 9000_000);

      expect(await intervalsOf(sessionsOf(open), span(9600, 10_800))).toEqual([]);
      expect(await intervalsOf({ complement: sessionsOf(open) }, span(9600, 10_800))).toEqual([piece(9600, 10_800)]);
    });

    it('give nothing when they start after now', async () => {
      clock.set(T + 7200_000);

      expect(await intervalsOf(sessionsOf(early), span(0, 4 * 3600))).toEqual([]);

      clock.set(T + 7800_000);
      expect(await intervalsOf(sessionsOf(early), span(0, 4 * 3600))).toEqual([piece(7320, 7800)]);
    });

    it('end at one now per request', async () => {
      // Every read of this clock moves it 1 s on, as if each took a second.
      let reads = 0;
      const now = clock.now.bind(clock);
      clock.set(T + 9000_000);
      clock.now = () => now() + 1000 * reads++;
      let reply: GraphQLResponse<Record<string, any>>;
      try {
        reply = await server.gql(
          `query ($inside: SetExpression!, $outside: SetExpression!, $window: WindowInput!) {
            inside: report(expression: $inside, window: $window) { totalSeconds intervals { end } }
            outside: report(expression: $outside, window: $window) { totalSeconds intervals { start } }
          }`,
          { inside: sessionsOf(open), outside: { complement: sessionsOf(open) }, window: span(0, 4 * 3600) },
          adminToken,
        );
      } finally {
        clock.now = now;
      }

      expect(reply.errors, JSON.stringify(reply.errors)).toBeUndefined();
      const { inside, outside } = reply.data!;
      expect(inside.totalSeconds + outside.totalSeconds, 'the two totals').toBe(4 * 3600);
      expect(outside.intervals[1].start, 'where the complement resumes').toBe(inside.intervals[0].end);
    });
  });
});
