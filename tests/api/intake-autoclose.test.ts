/**
 * AUTO_CLOSE through the real HTTP stack with a manual clock: a session
 * started at 09:00 with a last heartbeat at 17:42 and a 12 h timeout has its
 * deadline at 05:42 the next day. It must stay open before that instant and
 * close after it, ending where the policy puts the end (LAST_ACTIVITY at 17:42,
 * DEADLINE at 05:42), whether the sweeper or the user's next event notices.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf, readTimeline, type SegmentNode } from '../support/replay.js';

const DAY_ONE = '2026-01-20';
const DAY_TWO = '2026-01-21';
const TWELVE_HOURS_SECONDS = 12 * 3600;
/** Auto-close timeout of the built-in pair types on this server (DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS unset). */
const DEFAULT_TIMEOUT_MS = 1800 * 1000;

function dayOne(time: string): string {
  return new Date(`${DAY_ONE}T${time}Z`).toISOString();
}

function dayTwo(time: string): string {
  return new Date(`${DAY_TWO}T${time}Z`).toISOString();
}

const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) {
  setAutoClosePreference(input: $input) { pairType timeoutSeconds endAt }
}`;

type EndAt = 'LAST_ACTIVITY' | 'DEADLINE';

interface Member {
  id: string;
  token: string;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > until) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for the condition`);
    }
    await sleep(25);
  }
}

function summary(segment: SegmentNode) {
  return { pairType: segment.pairType, start: segment.start, end: segment.end, endReason: segment.endReason };
}

describe('auto-close with a 12 h timeout', () => {
  const clock = new ManualClock(Date.parse(dayOne('17:43:00')));
  let server: TestServer;
  let adminToken: string;
  const members: Record<'sweptActivity' | 'sweptDeadline' | 'nextActivity' | 'nextDeadline' | 'active', Member> =
    {} as never;

  async function prepare(name: string, endAt: EndAt): Promise<Member> {
    const member = await server.createUser(name);
    for (const input of [
      { pairType: 'session', timeoutSeconds: TWELVE_HOURS_SECONDS, endAt },
      // Longer than the session's, so the task closes with its parent.
      { pairType: 'task', timeoutSeconds: 2 * TWELVE_HOURS_SECONDS, endAt },
    ]) {
      dataOf(await server.gql(SET_PREFERENCE, { input }, member.token), 'setAutoClosePreference');
    }
    dataOf(
      await server.gql(
        SEND_EVENTS,
        {
          events: [
            { type: 'session_started', occurredAt: dayOne('09:00:00') },
            { type: 'task_started', occurredAt: dayOne('10:00:00') },
            { type: 'heartbeat', occurredAt: dayOne('17:42:00') },
          ],
        },
        member.token,
      ),
      'sendEvents',
    );
    return member;
  }

  async function segmentsOf(member: Member): Promise<SegmentNode[]> {
    // The member's own token: a read settles the passed deadlines of the
    // users it may read, and the sweeper test needs the others untouched.
    const { segments } = await readTimeline(server, member.token, member.id);
    return segments.sort((a, b) => a.start.localeCompare(b.start) || a.pairType.localeCompare(b.pairType));
  }

  async function send(member: Member, type: string, occurredAt: string) {
    const response = await server.gql(SEND_EVENTS, { events: [{ type, occurredAt }] }, member.token);
    return dataOf(response, 'sendEvents').sendEvents;
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      // Tokens are checked against the manual clock, which moves 12 hours.
      env: { SWEEPER_INTERVAL_MS: '20', JWT_TTL_SECONDS: '86400', USER_LOCK_WAIT_MS: '500' },
    });
    adminToken = await server.adminToken();
    members.sweptActivity = await prepare('swept-activity', 'LAST_ACTIVITY');
    members.sweptDeadline = await prepare('swept-deadline', 'DEADLINE');
    members.nextActivity = await prepare('next-activity', 'LAST_ACTIVITY');
    members.nextDeadline = await prepare('next-deadline', 'DEADLINE');
    members.active = await prepare('active', 'LAST_ACTIVITY');
  });

  afterAll(async () => {
    await server?.close();
  });

  it('stays open before the deadline', async () => {
    clock.set(Date.parse(dayTwo('05:41:00')));
    await send(members.active, 'heartbeat', dayTwo('05:41:00'));

    clock.set(Date.parse(dayTwo('05:41:59.999')));
    await server.app.sweeper.sweepOnce();

    for (const member of Object.values(members)) {
      const segments = await segmentsOf(member);
      expect(segments.map(summary)).toEqual([
        { pairType: 'session', start: dayOne('09:00:00'), end: null, endReason: null },
        { pairType: 'task', start: dayOne('10:00:00'), end: null, endReason: null },
      ]);
    }
  });

  it('next event closes at last activity', async () => {
    await server.app.sweeper.stop();
    clock.set(Date.parse(dayTwo('05:43:00')));

    const sent = await send(members.nextActivity, 'heartbeat', dayTwo('05:43:00'));

    expect(sent.results[0].event.flags).toEqual([]);
    expect((await segmentsOf(members.nextActivity)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('17:42:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('10:00:00'), end: dayOne('17:42:00'), endReason: 'PARENT_CLOSED' },
    ]);
  });

  it('next start closes at the deadline', async () => {
    const sent = await send(members.nextDeadline, 'session_started', dayTwo('05:43:00'));

    // The old session was closed by the auto-close, so the new start is no duplicate.
    expect(sent.results[0].corrections).toEqual([]);
    expect((await segmentsOf(members.nextDeadline)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayTwo('05:42:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('10:00:00'), end: dayTwo('05:42:00'), endReason: 'PARENT_CLOSED' },
      { pairType: 'session', start: dayTwo('05:43:00'), end: null, endReason: null },
    ]);
  });

  it('sweeper closes after the deadline', async () => {
    // Read from the table: a GraphQL read would settle the passed deadline itself.
    const closed = async (member: Member) => {
      const rows = await server.app.db.sql.query<{ open: number }>(
        `SELECT count(*)::int AS open FROM segments WHERE user_id = $1 AND end_at IS NULL`,
        [member.id],
      );
      return rows[0]?.open === 0;
    };
    expect(await closed(members.sweptActivity)).toBe(false);

    server.app.sweeper.start();
    await waitFor(async () => (await closed(members.sweptActivity)) && (await closed(members.sweptDeadline)));

    expect((await segmentsOf(members.sweptActivity)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('17:42:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('10:00:00'), end: dayOne('17:42:00'), endReason: 'PARENT_CLOSED' },
    ]);
    expect((await segmentsOf(members.sweptDeadline)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayTwo('05:42:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('10:00:00'), end: dayTwo('05:42:00'), endReason: 'PARENT_CLOSED' },
    ]);
  });

  it('records the AUTO_CLOSE corrections', async () => {
    const timeline = await readTimeline(server, adminToken, members.sweptActivity.id);
    const start = timeline.events.find((event) => event.type === 'session_started');
    const corrections = timeline.events.filter((event) => event.origin === 'CORRECTION');

    expect(corrections).toHaveLength(2);
    const autoClose = corrections.find((event) => event.rule === 'AUTO_CLOSE');
    expect(autoClose).toMatchObject({ type: 'session_ended', occurredAt: dayOne('17:42:00'), causeEventId: start?.id });
    const child = corrections.find((event) => event.rule === 'CHILD_CLOSED_WITH_PARENT');
    expect(child).toMatchObject({ type: 'task_ended', occurredAt: dayOne('17:42:00'), causeEventId: autoClose?.id });
  });

  it('keeps a session with later activity open', async () => {
    // The 05:41 heartbeat moved its deadline to 17:41 on day two.
    await server.app.sweeper.sweepOnce();

    expect((await segmentsOf(members.active)).every((segment) => segment.open)).toBe(true);
  });

  it('shortened policy closes at once', async () => {
    const member = await server.createUser('shortened');
    const events = [
      { type: 'session_started', occurredAt: dayTwo('05:00:00') },
      { type: 'heartbeat', occurredAt: dayTwo('05:20:00') },
    ];
    dataOf(await server.gql(SEND_EVENTS, { events }, member.token), 'sendEvents');
    // The default 30-minute timeout puts the deadline at 05:50, after the clock (05:43).
    expect((await segmentsOf(member)).map((segment) => segment.open)).toEqual([true]);

    // Ten minutes after the 05:20 heartbeat is 05:30, already before the clock.
    const response = await server.gql(
      SET_PREFERENCE,
      { input: { pairType: 'session', timeoutSeconds: 600, endAt: 'DEADLINE' } },
      member.token,
    );

    expect(dataOf(response, 'setAutoClosePreference').setAutoClosePreference).toEqual({
      pairType: 'session',
      timeoutSeconds: 600,
      endAt: 'DEADLINE',
    });
    // The whole history is recomputed under the new policy: the deadline
    // passed at 05:10, ten minutes after the start, before the heartbeat.
    expect((await segmentsOf(member)).map(summary)).toEqual([
      { pairType: 'session', start: dayTwo('05:00:00'), end: dayTwo('05:10:00'), endReason: 'AUTO_CLOSE' },
    ]);
  });

  it('late end replaces a provisional auto-close', async () => {
    // 18:00 is after the last event sent (17:42), so it is not LATE_EVENT, but it
    // lies before the auto-close decision at 05:42 and so undoes it.
    const sent = await send(members.sweptActivity, 'session_ended', dayOne('18:00:00'));

    expect(sent.results[0].event.flags).toEqual([]);
    expect((await segmentsOf(members.sweptActivity)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('18:00:00'), endReason: 'CLIENT' },
      { pairType: 'task', start: dayOne('10:00:00'), end: dayOne('18:00:00'), endReason: 'PARENT_CLOSED' },
    ]);
    const timeline = await readTimeline(server, adminToken, members.sweptActivity.id);
    const rules = timeline.events.filter((event) => event.origin === 'CORRECTION').map((event) => event.rule);
    expect(rules).toEqual(['CHILD_CLOSED_WITH_PARENT']);
  });

  it('read shows a passed deadline', async () => {
    await server.app.sweeper.stop();
    const user = await server.createUser('read-passed-deadline');
    // Sent at the clock's time, so the session is open until the clock moves
    // past its deadline. With the sweeper stopped only the read can apply the
    // deadline, and the member's read settles no other user. It runs last,
    // because it moves the clock that the tests before it read.
    const startedAt = clock.now();
    const events = [
      { type: 'session_started', occurredAt: new Date(startedAt).toISOString() },
      { type: 'heartbeat', occurredAt: new Date(startedAt + 60_000).toISOString() },
    ];
    dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
    const query = `{ segments(first: 10) { nodes { pairType start end endReason } } }`;
    const before = await server.gql<{ segments: { nodes: SegmentNode[] } }>(query, {}, user.token);
    clock.set(startedAt + 60_000 + DEFAULT_TIMEOUT_MS + 1000);
    const after = await server.gql<{ segments: { nodes: SegmentNode[] } }>(query, {}, user.token);

    expect(before.data?.segments.nodes.map((node) => node.end)).toEqual([null]);
    expect(after.data?.segments.nodes).toEqual([
      {
        pairType: 'session',
        start: new Date(startedAt).toISOString(),
        end: new Date(startedAt + 60_000).toISOString(),
        endReason: 'AUTO_CLOSE',
      },
    ]);
  });
  it('busy user keeps preference unset', async () => {
    clock.set(Date.parse(dayTwo('12:00:00')));
    const member = await server.createUser('preference-busy');
    await send(member, 'session_started', dayOne('09:00:00'));
    await send(member, 'heartbeat', dayOne('09:40:00'));
    const input = { pairType: 'session', timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' };
    const PREFERENCES = '{ autoClosePreferences { pairType timeoutSeconds } }';

    // Another holder has the user's lock for longer than the mutation waits.
    const foreign = await server.app.store.acquireUserLock(member.id, { ttlMs: 60_000, waitMs: 0 });
    const failed = await server.gql(SET_PREFERENCE, { input }, member.token);
    await server.app.store.releaseUserLock(foreign);

    expect(failed.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect((await server.gql(PREFERENCES, {}, member.token)).data?.autoClosePreferences).toEqual([]);

    // The retry stores it and recomputes: the 40 min gap no longer closes the session.
    dataOf(await server.gql(SET_PREFERENCE, { input }, member.token), 'setAutoClosePreference');
    const served = (await segmentsOf(member)).map(summary);
    expect(served).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('09:40:00'), endReason: 'AUTO_CLOSE' },
    ]);
    await server.app.services.intake.rebuild(member.id, true);
    expect((await segmentsOf(member)).map(summary)).toEqual(served);
  });

  it('longer preference recomputes history', async () => {
    clock.set(Date.parse(dayTwo('12:00:00')));
    const member = await server.createUser('preference-history');
    await send(member, 'session_started', dayOne('09:00:00'));
    await send(member, 'heartbeat', dayOne('09:05:00'));
    await send(member, 'heartbeat', dayOne('09:40:00'));
    await send(member, 'session_ended', dayOne('09:50:00'));
    // The default 30 min timeout passed between 09:05 and 09:40, so the
    // session closed at its last activity and its end came to nothing.
    expect((await segmentsOf(member)).map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('09:05:00'), endReason: 'AUTO_CLOSE' },
    ]);

    dataOf(
      await server.gql(SET_PREFERENCE, { input: { pairType: 'session', timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' } }, member.token),
      'setAutoClosePreference',
    );

    // Under a one-hour timeout no deadline passed, so the client's end holds.
    const served = await readTimeline(server, member.token, member.id);
    expect(served.segments.map(summary)).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('09:50:00'), endReason: 'CLIENT' },
    ]);
    expect(served.events.filter((event) => event.origin === 'CORRECTION')).toEqual([]);
    expect(served.events.flatMap((event) => event.flags ?? [])).toEqual([]);

    await server.app.services.intake.rebuild(member.id, true);
    const rebuilt = await readTimeline(server, member.token, member.id);
    expect(rebuilt.segments.map(summary)).toEqual(served.segments.map(summary));
    expect(rebuilt.events.map((event) => [event.origin, event.rule, event.flags])).toEqual(
      served.events.map((event) => [event.origin, event.rule, event.flags]),
    );
  });
});

describe('auto-close edge cases', () => {
  // Each case moves the clock forward before it starts, so tokens issued by
  // an earlier case never lie in the future, and a day-long token lifetime
  // keeps them valid across the cases.
  const clock = new ManualClock(Date.parse(dayOne('09:10:00')));
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: { JWT_TTL_SECONDS: '86400' },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('keeps the deadline after a rejected batch', async () => {
    clock.set(Date.parse(dayOne('09:10:00')));
    const member = await server.createUser('deadline-kept');
    dataOf(
      await server.gql(
        SEND_EVENTS,
        { events: [{ id: 'start', type: 'session_started', occurredAt: dayOne('09:00:00') }] },
        member.token,
      ),
      'sendEvents',
    );
    // Default policy: 30 minutes after the last activity.
    const deadline = Date.parse(dayOne('09:30:00'));
    expect(await server.app.store.peekDeadline(member.id)).toBe(deadline);

    // The same client id with other content: the batch is rejected and stores nothing.
    const rejected = await server.gql(
      SEND_EVENTS,
      { events: [{ id: 'start', type: 'heartbeat', occurredAt: dayOne('09:05:00') }] },
      member.token,
    );
    expect(rejected.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(await server.app.store.peekDeadline(member.id)).toBe(deadline);
  });

  it('leaves an empty segment unlisted', async () => {
    clock.set(Date.parse(dayOne('12:00:00')));
    const member = await server.createUser('autoclose-empty');
    dataOf(
      await server.gql(SEND_EVENTS, { events: [{ type: 'session_started', occurredAt: dayOne('09:00:00') }] }, member.token),
      'sendEvents',
    );
    // The default policy (30 min, LAST_ACTIVITY) closed it at its own start.
    await server.app.services.intake.settle(member.id);

    const timeline = await readTimeline(server, member.token, member.id);
    const autoCloses = timeline.events.filter((event) => event.rule === 'AUTO_CLOSE');
    expect(autoCloses).toHaveLength(1);
    expect(timeline.segments).toEqual([]);
  });

  it('leaves an empty segment out of the reply', async () => {
    clock.set(Date.parse(dayOne('13:00:00')));
    const member = await server.createUser('autoclose-empty-reply');
    const sent = dataOf(
      await server.gql(
        SEND_EVENTS,
        {
          events: [
            { type: 'session_started', occurredAt: dayOne('10:00:00') },
            { type: 'session_ended', occurredAt: dayOne('10:45:00') },
          ],
        },
        member.token,
      ),
      'sendEvents',
    );

    // The session was auto-closed at its own start, 30 min without activity
    // before the end came, so the end is an orphan and nothing non-empty closed.
    const [start, end] = sent.sendEvents.results as Array<{ corrections: Array<{ rule: string }>; closedSegments: unknown[] }>;
    expect(start!.corrections.map((correction) => correction.rule), 'corrections of the start').toEqual(['AUTO_CLOSE']);
    expect(start!.closedSegments, 'segments the start closed').toEqual([]);
    expect(end!.closedSegments, 'segments the end closed').toEqual([]);
  });

  it('recomputedFrom covers a reopened auto-close', async () => {
    clock.set(Date.parse(dayOne('14:00:00')));
    const member = await server.createUser('autoclose-recomputed');
    const query = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { results { recomputedFrom } } }`;
    dataOf(
      await server.gql(
        query,
        {
          events: [
            { type: 'session_started', occurredAt: dayOne('10:00:00') },
            { type: 'heartbeat', occurredAt: dayOne('10:20:00') },
            { type: 'heartbeat', occurredAt: dayOne('11:30:00') },
          ],
        },
        member.token,
      ),
      'first',
    );
    // Auto-closed at its last activity, 10:20, by a decision at the deadline, 10:50.
    expect((await readTimeline(server, member.token, member.id)).segments.map(summary), 'before').toEqual([
      { pairType: 'session', start: dayOne('10:00:00'), end: dayOne('10:20:00'), endReason: 'AUTO_CLOSE' },
    ]);

    const late = dataOf(await server.gql(query, { events: [{ type: 'heartbeat', occurredAt: dayOne('10:40:00') }] }, member.token), 'late');

    // The late heartbeat lies before the decision, so the session reopens and
    // now ends at 10:40. Its rows changed from its old end, 10:20, on.
    expect(late.sendEvents.results[0].recomputedFrom, 'recomputedFrom').toBe(dayOne('10:20:00'));
    expect((await readTimeline(server, member.token, member.id)).segments.map(summary), 'after').toEqual([
      { pairType: 'session', start: dayOne('10:00:00'), end: dayOne('10:40:00'), endReason: 'AUTO_CLOSE' },
    ]);
  });

  it('keeps a DEADLINE child inside its parent', async () => {
    clock.set(Date.parse(dayOne('12:00:00')));
    const member = await server.createUser('deadline-child');
    for (const input of [
      { pairType: 'session', timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' },
      { pairType: 'task', timeoutSeconds: 600, endAt: 'DEADLINE' },
    ]) {
      dataOf(await server.gql(SET_PREFERENCE, { input }, member.token), 'setAutoClosePreference');
    }
    const send = async (events: Array<Record<string, unknown>>) =>
      dataOf(await server.gql(SEND_EVENTS, { events }, member.token), 'sendEvents');

    await send([
      { id: 's', type: 'session_started', occurredAt: dayOne('09:00:00') },
      { id: 't', type: 'task_started', occurredAt: dayOne('09:05:00') },
    ]);
    // Now is 12:00: the task closed at its deadline 09:15, and that end is the
    // session's last activity, so the session ends at 09:15 too.
    let segments = (await readTimeline(server, member.token, member.id)).segments.map(summary);
    expect(segments).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('09:15:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('09:05:00'), end: dayOne('09:15:00'), endReason: 'AUTO_CLOSE' },
    ]);

    // A late heartbeat at 10:10 lies before the session's deadline 10:15
    // (09:15 plus one hour), so the session stays open through it.
    await send([{ id: 'h', type: 'heartbeat', occurredAt: dayOne('10:10:00') }]);
    segments = (await readTimeline(server, member.token, member.id)).segments.map(summary);
    expect(segments).toEqual([
      { pairType: 'session', start: dayOne('09:00:00'), end: dayOne('10:10:00'), endReason: 'AUTO_CLOSE' },
      { pairType: 'task', start: dayOne('09:05:00'), end: dayOne('09:15:00'), endReason: 'AUTO_CLOSE' },
    ]);
  });

});
