/**
 * The `flags` and `rules` filters of `events`: each lists exactly the events
 * that an unfiltered read shows with those flags or rules, and ORPHAN_END
 * follows the flag as a late start clears it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf } from '../support/replay.js';

const NOW = Date.parse('2026-01-20T12:00:00Z');

const EVENTS = `query ($filter: EventFilter) {
  events(filter: $filter, first: 100) { nodes { id type origin rule flags } }
}`;

interface EventNode {
  id: string;
  type: string;
  origin: string;
  rule: string | null;
  flags: string[];
}

function at(time: string): string {
  return new Date(`2026-01-20T${time}Z`).toISOString();
}

describe('events flags and rules filters', () => {
  let server: TestServer;
  let user: { id: string; token: string };

  async function listEvents(filter: Record<string, unknown>): Promise<EventNode[]> {
    const response = await server.gql(EVENTS, { filter: { users: [user.id], ...filter } }, user.token);
    return (dataOf(response, 'events').events as { nodes: EventNode[] }).nodes;
  }

  async function send(events: Array<Record<string, unknown>>): Promise<void> {
    dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      sweeper: false,
      // Long enough that no pair of this test closes automatically.
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(6 * 3600) },
    });
    user = await server.createUser('flagged');
    await send([
      { id: 'start', type: 'session_started', occurredAt: at('09:00:00') },
      { id: 'end', type: 'session_ended', occurredAt: at('10:00:00') },
      // No task is open: ORPHAN_END.
      { id: 'orphan', type: 'task_ended', occurredAt: at('10:30:00') },
      // More than the clock skew ahead: FUTURE_TIMESTAMP.
      { id: 'future', type: 'heartbeat', occurredAt: at('13:00:00') },
    ]);
    // Before events already applied: LATE_EVENT.
    await send([{ id: 'late', type: 'heartbeat', occurredAt: at('09:30:00') }]);
    // A task with no session: MISSING_PARENT_START.
    await send([{ id: 'task', type: 'task_started', occurredAt: at('11:00:00') }]);
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    { flags: ['ORPHAN_END'] },
    { flags: ['LATE_EVENT'] },
    { flags: ['FUTURE_TIMESTAMP'] },
    { flags: ['LATE_EVENT', 'FUTURE_TIMESTAMP'] },
  ])('flags $flags lists the flagged events', async ({ flags }) => {
    const all = await listEvents({});
    const expected = all.filter((event) => event.flags.some((flag) => flags.includes(flag)));

    const listed = await listEvents({ flags });

    expect(expected.length, 'flagged events in the unfiltered read').toBeGreaterThan(0);
    expect(listed.map((event) => event.id)).toEqual(expected.map((event) => event.id));
  });

  it('rules lists the corrections of a rule', async () => {
    const all = await listEvents({});
    const expected = all.filter((event) => event.rule === 'MISSING_PARENT_START');

    const listed = await listEvents({ rules: ['MISSING_PARENT_START'] });

    expect(expected, 'corrections in the unfiltered read').toHaveLength(1);
    expect(listed.map((event) => event.id)).toEqual(expected.map((event) => event.id));
  });

  it('flags leave corrections out', async () => {
    const listed = await listEvents({ flags: ['MISSING_PARENT_START', 'AUTO_CLOSE'] });

    expect(listed).toEqual([]);
  });

  it('rules leave client events out', async () => {
    const listed = await listEvents({ rules: ['ORPHAN_END', 'LATE_EVENT'] });

    expect(listed).toEqual([]);
  });

  it('ORPHAN_END filter follows a late start', async () => {
    const before = await listEvents({ flags: ['ORPHAN_END'] });
    expect(before.map((event) => event.type), 'before the late start').toEqual(['task_ended']);

    // A task start before the orphan end gives it an instance to close.
    await send([{ id: 'late-task', type: 'task_started', occurredAt: at('10:20:00') }]);

    const after = await listEvents({ flags: ['ORPHAN_END'] });
    expect(after, 'after the late start').toEqual([]);
  });
});
