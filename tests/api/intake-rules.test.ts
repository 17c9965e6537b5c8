/**
 * Pairing and correction rules through the real HTTP stack: each case sends
 * events with `sendEvents` (or REST) and checks the mutation's corrections
 * and closed segments, then the stored segments and events.
 *
 * The server clock is set to NOW, a few days after the events, and the
 * default auto-close timeout is 30 days, so no auto-close interferes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  EVENT_FIELDS,
  SEND_EVENTS,
  dataOf,
  normaliseTimeline,
  readTimeline,
  type EventNode,
  type NormalisedTimeline,
  type SegmentNode,
  type StreamEvent,
} from '../support/replay.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const THIRTY_DAYS_SECONDS = 30 * 24 * 3600;

/** Returns the ISO form the API uses for a time of day on 2026-01-20. */
function at(time: string): string {
  return new Date(`2026-01-20T${time}Z`).toISOString();
}

interface SendResult {
  duplicate: boolean;
  event: EventNode;
  corrections: EventNode[];
  closedSegments: SegmentNode[];
}

type EventInput = Omit<StreamEvent, 'id'> & { id?: string; isPair?: boolean; pairType?: string };

describe('intake rules over HTTP', () => {
  let server: TestServer;
  let adminToken: string;
  let userCount = 0;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(THIRTY_DAYS_SECONDS) },
    });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function newUser(): Promise<{ id: string; token: string }> {
    userCount += 1;
    return server.createUser(`rules-${userCount}`);
  }

  async function send(token: string, events: EventInput[]): Promise<SendResult[]> {
    const response = await server.gql(SEND_EVENTS, { events }, token);
    return dataOf(response, 'sendEvents').sendEvents.results as SendResult[];
  }

  async function segmentsOf(userId: string): Promise<SegmentNode[]> {
    const { segments } = await readTimeline(server, adminToken, userId);
    return segments;
  }

  function bounds(segment: SegmentNode) {
    const { pairType, pairKey, start, end, endReason } = segment;
    return { pairType, pairKey, start, end, endReason };
  }

  function byTypeThenStart(a: SegmentNode, b: SegmentNode): number {
    return a.pairType.localeCompare(b.pairType) || a.start.localeCompare(b.start) || a.pairKey.localeCompare(b.pairKey);
  }

  it('MISSING_PARENT_START opens a session with the task', async () => {
    const user = await newUser();
    const [task] = await send(user.token, [{ type: 'task_started', occurredAt: at('09:00:00') }]);

    expect(task?.corrections).toHaveLength(1);
    expect(task?.corrections[0]).toMatchObject({
      origin: 'CORRECTION',
      rule: 'MISSING_PARENT_START',
      type: 'session_started',
      role: 'START',
      pairType: 'session',
      pairKey: '',
      occurredAt: at('09:00:00'),
      causeEventId: task?.event.id,
    });
    expect(task?.closedSegments).toEqual([]);

    const segments = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(segments.map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: null, endReason: null },
      { pairType: 'task', pairKey: '', start: at('09:00:00'), end: null, endReason: null },
    ]);
    const [session, child] = segments;
    expect(session?.startEvent.id).toBe(task?.corrections[0]?.id);
    expect(session?.parentSegmentId).toBeNull();
    expect(child?.startEvent.id).toBe(task?.event.id);
    expect(child?.parentSegmentId).toBe(session?.id);
  });

  it('CHILD_CLOSED_WITH_PARENT ends the open task', async () => {
    const user = await newUser();
    const results = await send(user.token, [
      { type: 'session_started', occurredAt: at('09:00:00') },
      { type: 'task_started', pairKey: 'k', occurredAt: at('09:10:00') },
      { type: 'session_ended', occurredAt: at('10:00:00') },
    ]);
    const end = results[2];

    expect(end?.corrections).toHaveLength(1);
    expect(end?.corrections[0]).toMatchObject({
      origin: 'CORRECTION',
      rule: 'CHILD_CLOSED_WITH_PARENT',
      type: 'task_ended',
      role: 'END',
      pairType: 'task',
      pairKey: 'k',
      occurredAt: at('10:00:00'),
      causeEventId: end?.event.id,
    });
    expect([...(end?.closedSegments ?? [])].sort(byTypeThenStart).map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: at('10:00:00'), endReason: 'CLIENT' },
      { pairType: 'task', pairKey: 'k', start: at('09:10:00'), end: at('10:00:00'), endReason: 'PARENT_CLOSED' },
    ]);

    const segments = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(segments.map(bounds)).toEqual((end?.closedSegments ?? []).slice().sort(byTypeThenStart).map(bounds));
    expect(segments[1]?.endEvent?.id).toBe(end?.corrections[0]?.id);
    expect(segments[0]?.endEvent?.id).toBe(end?.event.id);
  });

  it('DUPLICATE_START ends the running session and its task', async () => {
    const user = await newUser();
    const results = await send(user.token, [
      { type: 'session_started', occurredAt: at('09:00:00') },
      { type: 'task_started', occurredAt: at('09:30:00') },
      { type: 'session_started', occurredAt: at('10:00:00') },
    ]);
    const restart = results[2];

    const rules = (restart?.corrections ?? []).map((correction) => ({
      rule: correction.rule,
      type: correction.type,
      occurredAt: correction.occurredAt,
      causeEventId: correction.causeEventId,
    }));
    expect(rules).toHaveLength(2);
    expect(rules).toContainEqual({
      rule: 'DUPLICATE_START',
      type: 'session_ended',
      occurredAt: at('10:00:00'),
      causeEventId: restart?.event.id,
    });
    expect(rules).toContainEqual({
      rule: 'CHILD_CLOSED_WITH_PARENT',
      type: 'task_ended',
      occurredAt: at('10:00:00'),
      causeEventId: restart?.event.id,
    });
    expect([...(restart?.closedSegments ?? [])].sort(byTypeThenStart).map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: at('10:00:00'), endReason: 'DUPLICATE_START' },
      { pairType: 'task', pairKey: '', start: at('09:30:00'), end: at('10:00:00'), endReason: 'PARENT_CLOSED' },
    ]);

    const segments = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(segments.map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: at('10:00:00'), endReason: 'DUPLICATE_START' },
      { pairType: 'session', pairKey: '', start: at('10:00:00'), end: null, endReason: null },
      { pairType: 'task', pairKey: '', start: at('09:30:00'), end: at('10:00:00'), endReason: 'PARENT_CLOSED' },
    ]);
    expect(segments[1]?.startEvent.id).toBe(restart?.event.id);
  });

  it('ORPHAN_END flags a second end', async () => {
    const user = await newUser();
    const results = await send(user.token, [
      { type: 'session_started', occurredAt: at('09:00:00') },
      { type: 'session_ended', occurredAt: at('10:00:00') },
      { type: 'session_ended', occurredAt: at('10:30:00') },
    ]);
    const second = results[2];

    expect(results[1]?.event.flags).toEqual([]);
    expect(second?.event.flags).toEqual(['ORPHAN_END']);
    expect(second?.corrections).toEqual([]);
    expect(second?.closedSegments).toEqual([]);

    const segments = await segmentsOf(user.id);
    expect(segments.map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: at('10:00:00'), endReason: 'CLIENT' },
    ]);
    expect(segments[0]?.endEvent?.id).toBe(results[1]?.event.id);
  });

  it('ORPHAN_END flags an end without start', async () => {
    const user = await newUser();
    const [end] = await send(user.token, [{ type: 'task_ended', pairKey: 'x', occurredAt: at('09:00:00') }]);

    expect(end?.event.flags).toEqual(['ORPHAN_END']);
    expect(end?.corrections).toEqual([]);
    expect(await segmentsOf(user.id)).toEqual([]);
  });

  it('LATE_EVENT start pairs with an earlier-sent end', async () => {
    const user = await newUser();
    const base = Date.parse('2026-01-20T00:00:00Z');
    const [end] = await send(user.token, [
      { id: 'end', type: 'session_ended', occurredAt: new Date(base + 1000_000).toISOString() },
    ]);
    expect(end?.event.flags).toEqual(['ORPHAN_END']);

    const [start] = await send(user.token, [
      { id: 'start', type: 'session_started', occurredAt: new Date(base + 900_000).toISOString() },
    ]);
    expect(start?.event.flags).toEqual(['LATE_EVENT']);

    const timeline = await readTimeline(server, adminToken, user.id);
    expect(timeline.segments.map(bounds)).toEqual([
      {
        pairType: 'session',
        pairKey: '',
        start: new Date(base + 900_000).toISOString(),
        end: new Date(base + 1000_000).toISOString(),
        endReason: 'CLIENT',
      },
    ]);
    expect(timeline.segments[0]?.startEvent.id).toBe(start?.event.id);
    expect(timeline.segments[0]?.endEvent?.id).toBe(end?.event.id);
    const orphans = timeline.events.filter((event) => event.flags.includes('ORPHAN_END'));
    expect(orphans).toEqual([]);
    expect(timeline.events.filter((event) => event.origin === 'CORRECTION')).toEqual([]);
  });

  it('LATE_BEYOND_HORIZON is stored and changes nothing', async () => {
    const user = await newUser();
    await send(user.token, [{ type: 'session_started', occurredAt: at('09:00:00') }]);
    const before = await segmentsOf(user.id);

    // Eight days before the latest applied event, beyond the default 7-day horizon.
    const results = await send(user.token, [
      { type: 'session_ended', occurredAt: '2026-01-12T10:00:00.000Z' },
      { type: 'task_started', occurredAt: '2026-01-12T09:00:00.000Z' },
    ]);

    for (const result of results) {
      expect(result.event.flags).toEqual(['LATE_BEYOND_HORIZON']);
      expect(result.corrections).toEqual([]);
      expect(result.closedSegments).toEqual([]);
    }
    const timeline = await readTimeline(server, adminToken, user.id);
    expect(timeline.segments).toEqual(before);
    const stored = timeline.events.filter((event) => event.flags.includes('LATE_BEYOND_HORIZON'));
    expect(stored.map((event) => event.type).sort()).toEqual(['session_ended', 'task_started']);
  });

  it('backfill in time order is never late', async () => {
    const user = await newUser();
    // Months before the server clock: lateness compares event times, not the wall clock.
    const results = await send(user.token, [
      { type: 'session_started', occurredAt: '2025-10-01T09:00:00Z' },
      { type: 'session_ended', occurredAt: '2025-10-01T10:00:00Z' },
      { type: 'session_started', occurredAt: '2025-11-01T09:00:00Z' },
      { type: 'session_ended', occurredAt: '2025-11-01T10:00:00Z' },
    ]);

    for (const result of results) {
      expect(result.event.flags).toEqual([]);
    }
    const segments = await segmentsOf(user.id);
    expect(segments.map(bounds)).toEqual([
      {
        pairType: 'session',
        pairKey: '',
        start: '2025-10-01T09:00:00.000Z',
        end: '2025-10-01T10:00:00.000Z',
        endReason: 'CLIENT',
      },
      {
        pairType: 'session',
        pairKey: '',
        start: '2025-11-01T09:00:00.000Z',
        end: '2025-11-01T10:00:00.000Z',
        endReason: 'CLIENT',
      },
    ]);
  });

  it('LATE_EVENT within the horizon recomputes', async () => {
    const user = await newUser();
    await send(user.token, [{ type: 'session_started', occurredAt: at('09:00:00') }]);

    // Six days earlier: late, but inside the 7-day horizon.
    const [late] = await send(user.token, [{ type: 'session_started', occurredAt: '2026-01-14T09:00:00.000Z' }]);

    expect(late?.event.flags).toEqual(['LATE_EVENT']);
    const segments = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(segments.map(bounds)).toEqual([
      {
        pairType: 'session',
        pairKey: '',
        start: '2026-01-14T09:00:00.000Z',
        end: at('09:00:00'),
        endReason: 'DUPLICATE_START',
      },
      { pairType: 'session', pairKey: '', start: at('09:00:00'), end: null, endReason: null },
    ]);
  });

  it('recomputedFrom marks a recompute', async () => {
    const user = await newUser();
    const query = `mutation ($events: [EventInput!]!) {
      sendEvents(events: $events) { results { recomputedFrom event { flags } } }
    }`;
    const recomputedFrom = async (events: EventInput[]) =>
      (dataOf(await server.gql(query, { events }, user.token), 'sendEvents').sendEvents.results as Array<{ recomputedFrom: string | null }>).map(
        (result) => result.recomputedFrom,
      );

    expect(
      await recomputedFrom([
        { type: 'session_started', occurredAt: at('09:00:00') },
        { type: 'heartbeat', occurredAt: at('09:20:00') },
      ]),
      'events in time order',
    ).toEqual([null, null]);
    // A late heartbeat before the last activity changes nothing stored.
    expect(await recomputedFrom([{ type: 'heartbeat', occurredAt: at('09:05:00') }]), 'late heartbeat').toEqual([null]);
    expect(
      await recomputedFrom([
        { type: 'heartbeat', occurredAt: at('09:30:00') },
        { type: 'task_started', occurredAt: at('09:10:00') },
      ]),
      'late task start',
    ).toEqual([at('09:10:00'), at('09:10:00')]);

    const rest = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` },
      body: JSON.stringify({ type: 'task_ended', occurred_at: at('09:15:00') }),
    });
    const body = (await rest.json()) as { results: Array<{ recomputed_from: string | null }> };
    expect(body.results[0]?.recomputed_from, 'REST late task end').toBe(at('09:15:00'));
  });

  it.each([
    { name: 'an hour ahead', offsetMs: 3600_000, flagged: true },
    { name: 'ten minutes ahead', offsetMs: 600_000, flagged: true },
    { name: 'four minutes ahead', offsetMs: 240_000, flagged: false },
  ])('FUTURE_TIMESTAMP $name', async ({ offsetMs, flagged }) => {
    const user = await newUser();
    const sent = new Date(NOW + offsetMs).toISOString();
    const [result] = await send(user.token, [{ type: 'heartbeat', occurredAt: sent }]);

    expect(result?.event.flags).toEqual(flagged ? ['FUTURE_TIMESTAMP'] : []);
    expect(result?.event.occurredAt).toBe(flagged ? new Date(NOW).toISOString() : sent);
  });

  it('occurredAt omitted is the receipt time', async () => {
    const user = await newUser();
    const response = await server.gql(
      `mutation { sendEvent(event: { type: "heartbeat" }) { event { occurredAt receivedAt flags } } }`,
      {},
      user.token,
    );

    expect(dataOf(response, 'sendEvent').sendEvent.event).toEqual({
      occurredAt: new Date(NOW).toISOString(),
      receivedAt: new Date(NOW).toISOString(),
      flags: [],
    });
  });

  it('pair keys keep two tasks apart', async () => {
    const user = await newUser();
    const results = await send(user.token, [
      { type: 'task_started', pairKey: 'a', occurredAt: at('09:10:00') },
      { type: 'task_started', pairKey: 'b', occurredAt: at('09:20:00') },
      { type: 'task_ended', pairKey: 'a', occurredAt: at('09:30:00') },
      { type: 'task_ended', pairKey: 'b', occurredAt: at('09:40:00') },
    ]);

    expect(results[0]?.corrections.map((c) => c.rule)).toEqual(['MISSING_PARENT_START']);
    expect(results[1]?.corrections).toEqual([]);
    expect(results[2]?.closedSegments.map(bounds)).toEqual([
      { pairType: 'task', pairKey: 'a', start: at('09:10:00'), end: at('09:30:00'), endReason: 'CLIENT' },
    ]);
    expect(results[3]?.closedSegments.map(bounds)).toEqual([
      { pairType: 'task', pairKey: 'b', start: at('09:20:00'), end: at('09:40:00'), endReason: 'CLIENT' },
    ]);
    for (const result of results) {
      expect(result.event.flags).toEqual([]);
    }

    const segments = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(segments.map(bounds)).toEqual([
      { pairType: 'session', pairKey: '', start: at('09:10:00'), end: null, endReason: null },
      { pairType: 'task', pairKey: 'a', start: at('09:10:00'), end: at('09:30:00'), endReason: 'CLIENT' },
      { pairType: 'task', pairKey: 'b', start: at('09:20:00'), end: at('09:40:00'), endReason: 'CLIENT' },
    ]);
    expect(segments[1]?.parentSegmentId).toBe(segments[0]?.id);
    expect(segments[2]?.parentSegmentId).toBe(segments[0]?.id);
  });

  it('segment ids survive a late recompute', async () => {
    const user = await newUser();
    await send(user.token, [
      { type: 'session_started', occurredAt: at('09:00:00') },
      { type: 'session_ended', occurredAt: at('10:00:00') },
      { type: 'session_started', occurredAt: at('11:00:00') },
      { type: 'session_ended', occurredAt: at('12:00:00') },
    ]);
    const before = (await segmentsOf(user.id)).sort(byTypeThenStart);
    expect(before).toHaveLength(2);

    // Lands inside the first session: the rows after 09:30 are recomputed.
    const [late] = await send(user.token, [{ type: 'task_started', occurredAt: at('09:30:00') }]);
    expect(late?.event.flags).toEqual(['LATE_EVENT']);

    const after = (await segmentsOf(user.id)).sort(byTypeThenStart);
    const sessions = after.filter((segment) => segment.pairType === 'session');
    expect(sessions).toEqual(before);
    const tasks = after.filter((segment) => segment.pairType === 'task');
    expect(tasks.map(bounds)).toEqual([
      { pairType: 'task', pairKey: '', start: at('09:30:00'), end: at('10:00:00'), endReason: 'PARENT_CLOSED' },
    ]);
    expect(tasks[0]?.parentSegmentId).toBe(before[0]?.id);
  });

  describe('arrival order', () => {
    const EVENTS: StreamEvent[] = [
      { id: 'e1', type: 'session_started', occurredAt: at('09:00:00') },
      { id: 'e2', type: 'task_started', pairKey: 'a', occurredAt: at('09:10:00') },
      { id: 'e3', type: 'task_ended', pairKey: 'a', occurredAt: at('09:20:00') },
      { id: 'e4', type: 'session_ended', occurredAt: at('09:30:00') },
      { id: 'e5', type: 'task_started', pairKey: 'b', occurredAt: at('09:40:00') },
      { id: 'e6', type: 'task_ended', pairKey: 'a', occurredAt: at('09:50:00') },
      { id: 'e7', type: 'session_started', occurredAt: at('10:00:00') },
    ];
    let inTimeOrder: NormalisedTimeline;

    async function timelineAfterSending(order: readonly number[]): Promise<NormalisedTimeline> {
      const user = await newUser();
      for (const index of order) {
        await send(user.token, [EVENTS[index] as StreamEvent]);
      }
      return normaliseTimeline(await readTimeline(server, adminToken, user.id));
    }

    beforeAll(async () => {
      inTimeOrder = await timelineAfterSending([0, 1, 2, 3, 4, 5, 6]);
    });

    it('time order gives the expected segments', () => {
      expect(inTimeOrder.segments.map(({ key, start, end, endReason }) => ({ key, start, end, endReason }))).toEqual([
        { key: 'segment:client:e1', start: at('09:00:00'), end: at('09:30:00'), endReason: 'CLIENT' },
        { key: 'segment:client:e2', start: at('09:10:00'), end: at('09:20:00'), endReason: 'CLIENT' },
        {
          key: 'segment:MISSING_PARENT_START(client:e5,session,)',
          start: at('09:40:00'),
          end: at('10:00:00'),
          endReason: 'DUPLICATE_START',
        },
        { key: 'segment:client:e5', start: at('09:40:00'), end: at('10:00:00'), endReason: 'PARENT_CLOSED' },
        { key: 'segment:client:e7', start: at('10:00:00'), end: null, endReason: null },
      ]);
      expect(inTimeOrder.orphanEnds).toEqual(['e6']);
    });

    it.each([
      { name: 'reversed', order: [6, 5, 4, 3, 2, 1, 0] },
      { name: 'ends first', order: [2, 3, 5, 0, 1, 4, 6] },
      { name: 'last start first', order: [6, 0, 1, 2, 3, 4, 5] },
      { name: 'interleaved', order: [3, 0, 5, 1, 6, 2, 4] },
    ])('$name equals time order', async ({ order }) => {
      expect(await timelineAfterSending(order)).toEqual(inTimeOrder);
    });
  });

  it('meta __proto__ literal rejects batch', async () => {
    // A JSON body with `__proto__` is rejected by the body parser. An inline
    // GraphQL object literal carries the key as far as the meta check.
    const user = await newUser();
    const response = await server.gql(
      `mutation { sendEvents(events: [
        { id: "p1", type: "session_started", occurredAt: "${at('09:00:00')}", meta: { zone: "lab", __proto__: { a: 1 } } },
        { id: "p2", type: "session_ended", occurredAt: "${at('09:10:00')}" }
      ]) { results { event { id } } } }`,
      {},
      user.token,
    );

    expect(response.data).toBeNull();
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_EVENTS');
    expect(response.errors?.[0]?.message).toContain('#0: meta.__proto__ is a key that this server rejects');
    expect(await segmentsOf(user.id)).toEqual([]);
  });

  it('REST applies the same rules', async () => {
    const user = await newUser();
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` },
      body: JSON.stringify([
        { id: 'r1', type: 'task_started', pair_key: 'p', occurred_at: '2026-01-20T09:00:00+01:00' },
        { id: 'r2', type: 'session_ended', occurred_at: '2026-01-20T09:30:00Z' },
      ]),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      stored_count: number;
      results: Array<{
        event: Record<string, unknown>;
        corrections: Array<Record<string, unknown>>;
        closed_segments: Array<Record<string, unknown>>;
      }>;
    };

    expect(body.stored_count).toBe(2);
    expect(body.results[0]?.event).toMatchObject({ client_id: 'r1', occurred_at: at('08:00:00'), pair_key: 'p' });
    expect(body.results[0]?.event.arrival).toBe(1);
    expect(body.results[1]?.event.arrival).toBe(2);
    expect(body.results[0]?.corrections[0]?.arrival).toBeNull();
    expect(body.results[0]?.corrections.map((c) => c.rule)).toEqual(['MISSING_PARENT_START']);
    expect(body.results[1]?.corrections.map((c) => c.rule)).toEqual(['CHILD_CLOSED_WITH_PARENT']);
    const closed = (body.results[1]?.closed_segments ?? [])
      .map((segment) => [segment.pair_type, segment.start, segment.end, segment.end_reason])
      .sort();
    expect(closed).toEqual([
      ['session', at('08:00:00'), at('09:30:00'), 'CLIENT'],
      ['task', at('08:00:00'), at('09:30:00'), 'PARENT_CLOSED'],
    ]);
  });

  describe('custom pair types', () => {
    const DEFINE = `mutation ($input: DefinePairTypeInput!) {
      definePairType(input: $input) { name startType endType parent builtIn autoClose { timeoutSeconds endAt } }
    }`;

    beforeAll(async () => {
      for (const input of [
        { name: 'shift', startType: 'shift_started', endType: 'shift_ended' },
        { name: 'job', startType: 'job_started', endType: 'job_ended', parent: 'shift' },
        { name: 'step', startType: 'step_started', endType: 'step_ended', parent: 'job' },
      ]) {
        dataOf(await server.gql(DEFINE, { input }, adminToken), 'definePairType');
      }
    });

    it('lists the three levels', async () => {
      const response = await server.gql(`{ pairTypes { name parent builtIn } }`, {}, adminToken);
      const types = dataOf(response, 'pairTypes').pairTypes as Array<{
        name: string;
        parent: string | null;
        builtIn: boolean;
      }>;

      expect(types.filter((type) => !type.builtIn)).toEqual([
        { name: 'job', parent: 'shift', builtIn: false },
        { name: 'shift', parent: null, builtIn: false },
        { name: 'step', parent: 'job', builtIn: false },
      ]);
    });

    it('synthesises both missing ancestors', async () => {
      const user = await newUser();
      const [step] = await send(user.token, [{ type: 'step_started', occurredAt: at('09:00:00') }]);

      expect(step?.event).toMatchObject({ role: 'START', pairType: 'step' });
      expect(step?.corrections.map((c) => [c.rule, c.type, c.occurredAt, c.causeEventId])).toEqual([
        ['MISSING_PARENT_START', 'shift_started', at('09:00:00'), step?.event.id],
        ['MISSING_PARENT_START', 'job_started', at('09:00:00'), step?.event.id],
      ]);

      const segments = await segmentsOf(user.id);
      const byType = new Map(segments.map((segment) => [segment.pairType, segment]));
      expect(segments).toHaveLength(3);
      expect(byType.get('shift')?.parentSegmentId).toBeNull();
      expect(byType.get('job')?.parentSegmentId).toBe(byType.get('shift')?.id);
      expect(byType.get('step')?.parentSegmentId).toBe(byType.get('job')?.id);
    });

    it('closes the subtree deepest first', async () => {
      const user = await newUser();
      const results = await send(user.token, [
        { type: 'shift_started', occurredAt: at('08:00:00') },
        { type: 'job_started', pairKey: 'j', occurredAt: at('08:30:00') },
        { type: 'step_started', pairKey: 's', occurredAt: at('09:00:00') },
        { type: 'shift_ended', occurredAt: at('10:00:00') },
      ]);
      const end = results[3];

      expect(results.slice(0, 3).flatMap((result) => result.corrections)).toEqual([]);
      expect(end?.corrections.map((c) => [c.rule, c.type, c.pairKey, c.occurredAt])).toEqual([
        ['CHILD_CLOSED_WITH_PARENT', 'step_ended', 's', at('10:00:00')],
        ['CHILD_CLOSED_WITH_PARENT', 'job_ended', 'j', at('10:00:00')],
      ]);
      const closed = new Map((end?.closedSegments ?? []).map((segment) => [segment.pairType, segment.endReason]));
      expect(Object.fromEntries(closed)).toEqual({ shift: 'CLIENT', job: 'PARENT_CLOSED', step: 'PARENT_CLOSED' });
    });

    it('accepts isPair and pairType that agree', async () => {
      const user = await newUser();
      const [result] = await send(user.token, [
        { type: 'shift_started', isPair: true, pairType: 'shift', occurredAt: at('08:00:00') },
      ]);

      expect(result?.event).toMatchObject({ role: 'START', pairType: 'shift' });
    });

    it.each([
      {
        name: 'event type in use',
        input: { name: 'meeting', startType: 'session_started', endType: 'meeting_ended' },
        reason: 'EVENT_TYPE_IN_USE',
      },
      {
        name: 'missing parent',
        input: { name: 'meeting', startType: 'meeting_started', endType: 'meeting_ended', parent: 'nope' },
        reason: 'PARENT_NOT_FOUND',
      },
      {
        name: 'parent cycle',
        input: { name: 'shift', startType: 'shift_started', endType: 'shift_ended', parent: 'step' },
        reason: 'PARENT_CYCLE',
      },
      {
        name: 'own parent',
        input: { name: 'shift', startType: 'shift_started', endType: 'shift_ended', parent: 'shift' },
        reason: 'PARENT_CYCLE',
      },
      {
        name: 'built-in redefinition',
        input: { name: 'session', startType: 'session_started', endType: 'session_ended', parent: 'shift' },
        reason: 'PAIR_TYPE_BUILT_IN',
      },
      {
        name: 'same start and end',
        input: { name: 'loop', startType: 'loop', endType: 'loop' },
        reason: 'INVALID_PAIR_TYPE',
      },
    ])('definePairType rejects $name', async ({ input, reason }) => {
      const response = await server.gql(DEFINE, { input }, adminToken);

      expect(response.data).toBeNull();
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe(reason);
      const after = dataOf(await server.gql(`{ pairTypes { name parent } }`, {}, adminToken), 'pairTypes');
      expect(after.pairTypes).toContainEqual({ name: 'shift', parent: null });
      expect(after.pairTypes.map((type: { name: string }) => type.name)).not.toContain('meeting');
    });

    it('missing parent message names the fix', async () => {
      const input = { name: 'meeting', startType: 'meeting_started', endType: 'meeting_ended', parent: 'nope' };
      const response = await server.gql(DEFINE, { input }, adminToken);
      const message = response.errors?.[0]?.message;

      expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('PARENT_NOT_FOUND');
      expect(message, 'value').toContain('"nope"');
      expect(message, 'fix').toContain('pairTypes query');
    });

    it('same long start and end are cut', async () => {
      const type = 'e'.repeat(20_000);
      const response = await server.gql(DEFINE, { input: { name: 'loop', startType: type, endType: type } }, adminToken);
      const message = response.errors?.[0]?.message ?? '';

      expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_PAIR_TYPE');
      expect(message, 'length limit').toContain('startType must have 1 to 128 characters');
      expect(message, 'quoted value').toContain(`both are "${'e'.repeat(128)}…"`);
      expect(JSON.stringify(response.errors).length, 'error size').toBeLessThan(2_000);
    });

    it('definePairType is admin only', async () => {
      const user = await newUser();
      const response = await server.gql(
        DEFINE,
        { input: { name: 'mine', startType: 'mine_started', endType: 'mine_ended' } },
        user.token,
      );

      expect(response.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    });
  });

  it('events lists corrections with their cause', async () => {
    const user = await newUser();
    const [task] = await send(user.token, [{ id: 'c1', type: 'task_started', occurredAt: at('09:00:00') }]);
    const response = await server.gql(
      `query ($filter: EventFilter) { events(filter: $filter) { nodes { ${EVENT_FIELDS} } } }`,
      { filter: { origins: ['CORRECTION'] } },
      user.token,
    );

    const corrections = dataOf(response, 'events').events.nodes as EventNode[];
    expect(corrections).toEqual(task?.corrections);
  });
});
