/**
 * Arrival order must not matter. Each seed generates one stream of events
 * over keyed sessions, keyed tasks, a pair type nested under task and a
 * top-level pair type. A quarter of the events share the instant of the
 * event before. The auto-close policies end at the deadline or at the last
 * activity. One user receives the stream in time order in one batch. A
 * second user receives it shuffled, in batches of random sizes with resent
 * duplicates, with a preference change midway and a clock that moves on
 * between batches. A third user receives the same batches over the REST
 * route. Every event lies within the lateness horizon, and events at one
 * instant keep their order, so all three users must end with the same
 * segments, corrections and orphan ends.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ADMIN, ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  dataOf,
  EVENT_FIELDS,
  normaliseTimeline,
  readTimeline,
  SEGMENT_FIELDS,
  SEND_EVENTS,
  type EventNode,
  type RawTimeline,
  type SegmentNode,
  type StreamEvent,
} from '../support/replay.js';
import { seededRandom } from '../support/random.js';
import { describeWithPostgres } from '../support/services.js';

const START = Date.UTC(2026, 4, 4, 8);
/** Time between the streams of two seeds, so the clock only moves forward. */
const SEED_SPACING_MS = 4 * 24 * 3600 * 1000;
const SEEDS = (process.env.ORDER_DIFFERENTIAL_SEEDS ?? '11,12,13,14,15,16').split(',').map(Number);

const KINDS: Array<{ type: string; keyed: boolean }> = [
  { type: 'session_started', keyed: false },
  { type: 'session_ended', keyed: false },
  { type: 'session_started', keyed: true },
  { type: 'session_ended', keyed: true },
  { type: 'task_started', keyed: true },
  { type: 'task_ended', keyed: true },
  { type: 'focus_started', keyed: true },
  { type: 'focus_ended', keyed: true },
  { type: 'call_started', keyed: true },
  { type: 'call_ended', keyed: true },
  { type: 'heartbeat', keyed: false },
  { type: 'heartbeat', keyed: false },
];

/** Generates events in time order. A tenth of the gaps exceed every timeout, and a quarter are zero. */
function generate(random: () => number, prefix: string, count: number, startAt: number): StreamEvent[] {
  const events: StreamEvent[] = [];
  let at = startAt;
  for (let index = 0; index < count; index += 1) {
    const kind = KINDS[Math.floor(random() * KINDS.length)]!;
    const event: StreamEvent = { id: `${prefix}-${index}`, type: kind.type, occurredAt: new Date(at).toISOString() };
    if (kind.keyed) {
      event.pairKey = ['', 'a', 'b'][Math.floor(random() * 3)]!;
    }
    if (kind.type.endsWith('_started') && random() < 0.5) {
      event.meta = { index, zone: 'lab' };
    }
    events.push(event);
    const roll = random();
    if (roll < 0.1) {
      at += (3600 + Math.floor(random() * 3600)) * 1000;
    } else if (roll < 0.35) {
      // Events at one instant apply in arrival order, which the shuffle keeps.
    } else {
      at += (1 + Math.floor(random() * 900)) * 1000;
    }
  }
  return events;
}

/** Shuffles the events, keeping those that share an instant in their original order. */
function shuffled(random: () => number, events: readonly StreamEvent[]): StreamEvent[] {
  const copy = [...events];
  for (let index = copy.length - 1; index > 0; index -= 1) {
    const other = Math.floor(random() * (index + 1));
    [copy[index], copy[other]] = [copy[other]!, copy[index]!];
  }
  const byInstant = new Map<string, StreamEvent[]>();
  for (const event of events) {
    byInstant.set(event.occurredAt, [...(byInstant.get(event.occurredAt) ?? []), event]);
  }
  return copy.map((event) => byInstant.get(event.occurredAt)!.shift()!);
}

const SEND_WITH_RECOMPUTE = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) {
    results {
      duplicate
      recomputedFrom
      event { ${EVENT_FIELDS} }
      corrections { ${EVENT_FIELDS} }
      closedSegments { ${SEGMENT_FIELDS} }
    }
  }
}`;

interface ReplyResult {
  duplicate: boolean;
  recomputedFrom: string | null;
  event: EventNode;
  corrections: EventNode[];
  closedSegments: SegmentNode[];
}

function segmentSummary(segment: SegmentNode | undefined): string {
  return segment === undefined ? 'none' : `${segment.pairType}/${segment.pairKey} ${segment.start}..${segment.end ?? 'open'} ${segment.endReason ?? ''}`;
}

/**
 * Checks a reply against reads before and after it. The corrections and
 * closed segments it lists must be what the queries return. Every segment
 * that changed must reach `recomputedFrom`. Without a recompute, it must be
 * listed as closed, opened by the batch, or auto-closed.
 */
function expectReplyMatchesReads(before: RawTimeline, after: RawTimeline, results: readonly ReplyResult[], label: string): void {
  const eventsAfter = new Map(after.events.map((event) => [event.id, event]));
  const segmentsAfter = new Map(after.segments.map((segment) => [segment.id, segment]));
  const segmentsBefore = new Map(before.segments.map((segment) => [segment.id, segment]));
  const listedClosed = new Set<string>();
  for (const result of results) {
    expect(eventsAfter.get(result.event.id), `${label}: event ${result.event.clientId}`).toEqual(result.event);
    for (const correction of result.corrections) {
      expect(eventsAfter.get(correction.id), `${label}: correction ${correction.rule} of ${result.event.clientId}`).toEqual(correction);
    }
    for (const segment of result.closedSegments) {
      listedClosed.add(segment.id);
      expect(segmentsAfter.get(segment.id), `${label}: closed segment of ${result.event.clientId}`).toEqual(segment);
    }
  }

  const recomputedFrom = results.map((result) => result.recomputedFrom).find((value) => value !== null) ?? null;
  const correctionText = (event: EventNode) => JSON.stringify([event.type, event.occurredAt, event.rule, event.causeEventId]);
  const correctionsBefore = new Set(before.events.filter((event) => event.origin === 'CORRECTION').map(correctionText));
  const correctionsAfter = new Set(after.events.filter((event) => event.origin === 'CORRECTION').map(correctionText));
  const removed = [...correctionsBefore].filter((text) => !correctionsAfter.has(text));
  // Only a recompute removes corrections, and only from recomputedFrom on.
  for (const text of removed) {
    const occurredAt = JSON.parse(text)[1] as string;
    expect(recomputedFrom, `${label}: correction ${text} removed without recomputedFrom`).not.toBeNull();
    expect(Date.parse(occurredAt), `${label}: correction ${text} removed before recomputedFrom ${recomputedFrom}`).toBeGreaterThanOrEqual(
      Date.parse(recomputedFrom ?? ''),
    );
  }
  const batchStart = Math.min(...results.filter((result) => !result.duplicate).map((result) => Date.parse(result.event.occurredAt)));
  const reaches = (segment: SegmentNode | undefined, from: number) =>
    segment === undefined || segment.end === null || Date.parse(segment.end) >= from;
  for (const id of new Set([...segmentsBefore.keys(), ...segmentsAfter.keys()])) {
    const old = segmentsBefore.get(id);
    const now = segmentsAfter.get(id);
    if (segmentSummary(old) === segmentSummary(now)) {
      continue;
    }
    const change = `${label}: segment ${segmentSummary(old)} -> ${segmentSummary(now)}`;
    if (recomputedFrom !== null) {
      const from = Date.parse(recomputedFrom);
      expect(reaches(old, from), `${change}: old version ends before recomputedFrom ${recomputedFrom}`).toBe(true);
      expect(reaches(now, from), `${change}: new version ends before recomputedFrom ${recomputedFrom}`).toBe(true);
    } else {
      const explained =
        listedClosed.has(id) ||
        (old === undefined && now !== undefined && Date.parse(now.start) >= batchStart) ||
        (old !== undefined && old.end === null && now !== undefined && (now.endReason === 'AUTO_CLOSE' || now.endReason === 'PARENT_CLOSED'));
      expect(explained, `${change} without recomputedFrom`).toBe(true);
    }
  }
}

/**
 * Creates a member with a token of the current clock. The clock moves days
 * between seeds, past any token's lifetime, so `admin` must be fresh too.
 */
async function createUser(server: TestServer, admin: string, username: string): Promise<{ id: string; token: string }> {
  const input = { username, password: `${username}-password`, role: 'MEMBER' };
  const { createUser: created } = dataOf(
    await server.gql<{ createUser: { id: string } }>(`mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`, { input }, admin),
    'createUser',
  );
  return { id: created.id, token: await server.login(username, input.password) };
}

/**
 * Returns the keys of a user's events and segments in the order the
 * `events` and `segments` queries list them. A client event's key is its
 * client id, and a correction's key names its rule and its cause's key.
 */
function listingOrder(raw: RawTimeline): { events: string[]; segments: string[] } {
  const byId = new Map(raw.events.map((event) => [event.id, event]));
  const keyOf = (id: string): string => {
    const event = byId.get(id);
    if (event === undefined) {
      return `missing:${id}`;
    }
    if (event.origin === 'CLIENT') {
      return `client:${event.clientId}`;
    }
    return `${event.rule}(${event.causeEventId === null ? 'none' : keyOf(event.causeEventId)},${event.pairType},${event.pairKey})`;
  };
  return {
    events: raw.events.map((event) => keyOf(event.id)),
    segments: raw.segments.map((segment) => `segment:${keyOf(segment.startEvent.id)}`),
  };
}

const PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { pairType } }`;

describeWithPostgres('arrival order', () => {
  const clock = new ManualClock(START);
  let server: TestServer;

  beforeAll(async () => {
    // Small replay pages, so the preference change midway replays in several pages.
    server = await startTestServer(import.meta.filename, { clock, sweeper: false, env: { REPLAY_PAGE_SIZE: '7' } });
    const admin = await server.adminToken();
    const define = `mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }`;
    dataOf(
      await server.gql(
        define,
        { input: { name: 'focus', startType: 'focus_started', endType: 'focus_ended', parent: 'task', autoClose: { timeoutSeconds: 600, endAt: 'DEADLINE' } } },
        admin,
      ),
      'definePairType',
    );
    dataOf(
      await server.gql(
        define,
        { input: { name: 'call', startType: 'call_started', endType: 'call_ended', autoClose: { timeoutSeconds: 900, endAt: 'DEADLINE' } } },
        admin,
      ),
      'definePairType',
    );
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each(SEEDS)('seed %i: shuffled equals ordered', async (seed) => {
    const random = seededRandom(seed);
    const startAt = START + (SEEDS.indexOf(seed) + 1) * SEED_SPACING_MS;
    const stream = generate(random, `s${seed}`, 120, startAt);
    // Odd seeds start the clock shortly after the last event, so deadlines
    // pass while the shuffled batches arrive. Even seeds start it a day later.
    const last = Date.parse(stream.at(-1)!.occurredAt);
    clock.set(last + (seed % 2 === 0 ? 24 * 3600 * 1000 : Math.floor(random() * 1200_000)));
    const preferences = [
      { pairType: 'session', timeoutSeconds: random() < 0.5 ? 1200 : 2400, endAt: random() < 0.5 ? 'DEADLINE' : 'LAST_ACTIVITY' },
      { pairType: 'task', timeoutSeconds: random() < 0.5 ? 600 : 1800, endAt: random() < 0.5 ? 'DEADLINE' : 'LAST_ACTIVITY' },
    ];

    const admin = await server.login(ADMIN.username, ADMIN.password);
    const ordered = await createUser(server, admin, `ordered-${seed}`);
    const mixed = await createUser(server, admin, `mixed-${seed}`);
    const rest = await createUser(server, admin, `rest-${seed}`);
    const twin = await createUser(server, admin, `twin-${seed}`);
    for (const user of [ordered, rest]) {
      for (const input of preferences) {
        dataOf(await server.gql(PREFERENCE, { input }, user.token), 'setAutoClosePreference');
      }
    }
    // The shuffled users start with other preferences and get the same ones midway.
    for (const user of [mixed, twin]) {
      for (const input of preferences) {
        const other = { ...input, timeoutSeconds: input.timeoutSeconds + 300, endAt: input.endAt === 'DEADLINE' ? 'LAST_ACTIVITY' : 'DEADLINE' };
        dataOf(await server.gql(PREFERENCE, { input: other }, user.token), 'setAutoClosePreference');
      }
    }
    const switchAt = Math.floor(random() * stream.length);
    let switched = false;

    dataOf(await server.gql(SEND_EVENTS, { events: stream }, ordered.token), 'sendEvents');

    const order = shuffled(random, stream);
    const sent: StreamEvent[] = [];
    let index = 0;
    while (index < order.length) {
      const size = [1, 1, 2, 3, 5, 8, 13][Math.floor(random() * 7)]!;
      const batch = order.slice(index, index + size);
      index += size;
      if (sent.length > 0 && random() < 0.3) {
        batch.push(sent[Math.floor(random() * sent.length)]!);
      }
      sent.push(...batch);
      if (!switched && index >= switchAt) {
        switched = true;
        for (const user of [mixed, twin]) {
          for (const input of preferences) {
            dataOf(await server.gql(PREFERENCE, { input }, user.token), 'setAutoClosePreference');
          }
        }
      }
      clock.advance(Math.floor(random() * 60_000));
      if (random() < 0.15) {
        // This simulates a Redis flush, so the next fold rebuilds the state from PostgreSQL.
        await server.app.store.deleteUserState(mixed.id);
      }
      // Reads settle passed deadlines, so the read after shows only what the batch and the clock changed.
      const before = await readTimeline(server, mixed.token, mixed.id);
      // An admin sends the batch for two users at once, their items interleaved.
      const both = batch.flatMap((event) => [
        { ...event, userId: mixed.id },
        { ...event, userId: twin.id },
      ]);
      const reply = dataOf(await server.gql(SEND_WITH_RECOMPUTE, { events: both }, admin), 'sendEvents');
      const after = await readTimeline(server, mixed.token, mixed.id);
      const results = reply.sendEvents.results as ReplyResult[];
      const ofMixed = results.filter((_, position) => position % 2 === 0);
      expectReplyMatchesReads(before, after, ofMixed, `seed ${seed}, batch ending at ${index}`);

      // The REST route must process the same batches as sendEvents does.
      const response = await fetch(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${rest.token}` },
        body: JSON.stringify(batch.map((event) => ({ id: event.id, type: event.type, pair_key: event.pairKey, occurred_at: event.occurredAt, meta: event.meta }))),
      });
      expect(response.status, `REST batch ending at ${index}`).toBe(200);
    }

    const orderedRaw = await readTimeline(server, admin, ordered.id);
    const mixedRaw = await readTimeline(server, admin, mixed.id);
    // Events at one instant list in fold order, so the listings match too.
    expect(listingOrder(mixedRaw).events, `event listing of seed ${seed}`).toEqual(listingOrder(orderedRaw).events);
    expect(listingOrder(mixedRaw).segments, `segment listing of seed ${seed}`).toEqual(listingOrder(orderedRaw).segments);
    const expected = normaliseTimeline(orderedRaw);
    const actual = normaliseTimeline(mixedRaw);
    const viaRest = normaliseTimeline(await readTimeline(server, admin, rest.id));
    const ofTwin = normaliseTimeline(await readTimeline(server, admin, twin.id));
    expect(actual.segments, `segments of seed ${seed}`).toEqual(expected.segments);
    expect(actual.corrections, `corrections of seed ${seed}`).toEqual(expected.corrections);
    expect(actual.orphanEnds, `orphan ends of seed ${seed}`).toEqual(expected.orphanEnds);
    expect(viaRest.segments, `REST segments of seed ${seed}`).toEqual(expected.segments);
    expect(viaRest.corrections, `REST corrections of seed ${seed}`).toEqual(expected.corrections);
    expect(viaRest.orphanEnds, `REST orphan ends of seed ${seed}`).toEqual(expected.orphanEnds);
    expect(ofTwin.segments, `segments of the twin of seed ${seed}`).toEqual(expected.segments);
    expect(ofTwin.corrections, `corrections of the twin of seed ${seed}`).toEqual(expected.corrections);
  });
});

/**
 * Events more than the lateness horizon before the user's latest event are
 * stored and flagged LATE_BEYOND_HORIZON, and change no segment. So a user
 * who receives a shuffled stream must end as a user who receives, in time
 * order, only the events the first one had applied.
 */
describeWithPostgres('arrival order beyond the horizon', () => {
  const HORIZON_SECONDS = 4 * 3600;
  const clock = new ManualClock(START);
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: { LATENESS_HORIZON_SECONDS: String(HORIZON_SECONDS) },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each(SEEDS)('seed %i: ignored events change nothing', async (seed) => {
    const random = seededRandom(seed);
    const startAt = START + (SEEDS.indexOf(seed) + 1) * SEED_SPACING_MS;
    const stream = generate(random, `h${seed}`, 120, startAt).filter((event) => !event.type.startsWith('focus') && !event.type.startsWith('call'));
    clock.set(Date.parse(stream.at(-1)!.occurredAt) + Math.floor(random() * 3600_000));
    const admin = await server.login(ADMIN.username, ADMIN.password);
    const shuffledUser = await createUser(server, admin, `shuffled-${seed}`);
    const orderedUser = await createUser(server, admin, `ordered-${seed}`);

    const order = shuffled(random, stream);
    for (let index = 0; index < order.length; ) {
      const size = [1, 2, 3, 5, 8][Math.floor(random() * 5)]!;
      dataOf(await server.gql(SEND_EVENTS, { events: order.slice(index, index + size) }, shuffledUser.token), 'sendEvents');
      index += size;
    }

    const shuffledRaw = await readTimeline(server, admin, shuffledUser.id);
    const ignored = new Set(
      shuffledRaw.events.filter((event) => event.flags.includes('LATE_BEYOND_HORIZON')).map((event) => event.clientId),
    );
    expect(ignored.size, 'events beyond the horizon').toBeGreaterThan(0);
    const applied = stream.filter((event) => !ignored.has(event.id));
    dataOf(await server.gql(SEND_EVENTS, { events: applied }, orderedUser.token), 'sendEvents');

    const expected = normaliseTimeline(await readTimeline(server, admin, orderedUser.id));
    const actual = normaliseTimeline(shuffledRaw);
    expect(actual.segments, `segments of seed ${seed}`).toEqual(expected.segments);
    expect(actual.corrections, `corrections of seed ${seed}`).toEqual(expected.corrections);
    expect(actual.orphanEnds, `orphan ends of seed ${seed}`).toEqual(expected.orphanEnds);
  });
});
