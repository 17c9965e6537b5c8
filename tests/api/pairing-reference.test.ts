/**
 * Differential test of pairing and correction. Seeded random event streams go
 * through the real HTTP API (PostgreSQL and Redis when configured) under a
 * manual clock. The segments, corrections, flags and applied instants that the
 * service lists are compared with those of the reference model in
 * ../support/pairing-reference.ts, which is written from the contract alone.
 *
 * The streams mix sessions, keyed tasks, a custom three-level chain
 * (project > phase > step), heartbeats, orphan ends, duplicate starts, events
 * at one instant, late events within and beyond the lateness horizon, future
 * timestamps, omitted timestamps, repeated client ids and gaps longer than the
 * auto-close timeouts, for users with different auto-close preferences. The
 * timelines are compared after every few batches, at the clock of that
 * moment, so provisional auto-closes that later late events undo are covered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ADMIN, ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  ReferenceUser,
  type EndAt,
  type ReferenceInput,
  type ReferencePairType,
  type ReferenceTimeline,
} from '../support/pairing-reference.js';
import { seededRandom } from '../support/random.js';
import { dataOf, normaliseTimeline, readTimeline } from '../support/replay.js';

const HORIZON_SECONDS = 6 * 3600;
const CLOCK_SKEW_SECONDS = 300;
const START = Date.parse('2026-02-02T08:00:00Z');
/** Distance between the streams of two users, so that the shared clock only moves forward. */
const USER_SPACING_MS = 20 * 86_400_000;
/** Age after which a token is replaced, well within JWT_TTL_SECONDS, because the clock jumps ahead. */
const TOKEN_RENEWAL_MS = 12 * 3_600_000;

const CHAIN: ReadonlyArray<{ name: string; parent: string | null; timeoutSeconds: number; endAt: EndAt }> = [
  { name: 'project', parent: null, timeoutSeconds: 5400, endAt: 'DEADLINE' },
  { name: 'phase', parent: 'project', timeoutSeconds: 2400, endAt: 'LAST_ACTIVITY' },
  { name: 'step', parent: 'phase', timeoutSeconds: 900, endAt: 'DEADLINE' },
];

interface Preference {
  pairType: string;
  timeoutSeconds: number;
  endAt: EndAt;
}

/** Per-user preferences: set before the first event, and for some users changed halfway. */
const USERS: ReadonlyArray<{ seed: number; before: Preference[]; halfway: Preference[] }> = [
  { seed: 11, before: [], halfway: [] },
  {
    seed: 23,
    before: [
      { pairType: 'session', timeoutSeconds: 1200, endAt: 'DEADLINE' },
      { pairType: 'task', timeoutSeconds: 600, endAt: 'DEADLINE' },
    ],
    halfway: [],
  },
  {
    seed: 37,
    before: [
      { pairType: 'task', timeoutSeconds: 3000, endAt: 'LAST_ACTIVITY' },
      { pairType: 'step', timeoutSeconds: 300, endAt: 'LAST_ACTIVITY' },
      { pairType: 'project', timeoutSeconds: 2400, endAt: 'DEADLINE' },
    ],
    halfway: [{ pairType: 'session', timeoutSeconds: 2400, endAt: 'DEADLINE' }],
  },
  {
    seed: 41,
    before: [{ pairType: 'phase', timeoutSeconds: 900, endAt: 'DEADLINE' }],
    halfway: [{ pairType: 'phase', timeoutSeconds: 4000, endAt: 'LAST_ACTIVITY' }],
  },
];

const EVENTS_PER_USER = 140;
const COMPARE_EVERY_BATCHES = 6;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { results { duplicate } } }`;
const SEND_ONE = `mutation ($event: EventInput!) { sendEvent(event: $event) { duplicate } }`;

/** Ways to send a batch: `sendEvents`, one `sendEvent` per event, or the REST route. */
type Transport = 'batch' | 'single' | 'rest';
const TRANSPORTS: readonly Transport[] = ['batch', 'single', 'rest'];
const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) {
  setAutoClosePreference(input: $input) { pairType }
}`;
const DEFINE = `mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }`;
const PAIR_TYPES = `{ pairTypes { name startType endType parent autoClose { timeoutSeconds endAt } } }`;

/** Event kinds of the generated streams, with their relative weights and pair keys. */
const KINDS: ReadonlyArray<{ type: string; weight: number; keys: string[] }> = [
  { type: 'session_started', weight: 7, keys: [''] },
  { type: 'session_ended', weight: 5, keys: [''] },
  { type: 'task_started', weight: 9, keys: ['', 'a', 'b'] },
  { type: 'task_ended', weight: 7, keys: ['', 'a', 'b'] },
  { type: 'project_started', weight: 4, keys: ['', 'x'] },
  { type: 'project_ended', weight: 3, keys: ['', 'x'] },
  { type: 'phase_started', weight: 5, keys: ['', 'x'] },
  { type: 'phase_ended', weight: 4, keys: ['', 'x'] },
  { type: 'step_started', weight: 6, keys: ['', 'x', 'y'] },
  { type: 'step_ended', weight: 5, keys: ['', 'x', 'y'] },
  { type: 'heartbeat', weight: 9, keys: [''] },
];

interface Batch {
  /** Clock of the server while the batch is sent, in ms since the epoch. */
  clock: number;
  events: ReferenceInput[];
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}

function pickKind(random: () => number): { type: string; pairKey: string } {
  const total = KINDS.reduce((sum, kind) => sum + kind.weight, 0);
  let roll = random() * total;
  for (const kind of KINDS) {
    roll -= kind.weight;
    if (roll < 0) {
      return { type: kind.type, pairKey: pick(random, kind.keys) };
    }
  }
  return { type: 'heartbeat', pairKey: '' };
}

function nextGapSeconds(random: () => number): number {
  const roll = random();
  if (roll < 0.06) {
    return 0;
  }
  if (roll < 0.66) {
    return 1 + Math.floor(random() * 300);
  }
  if (roll < 0.9) {
    return 300 + Math.floor(random() * 1500);
  }
  return 1800 + Math.floor(random() * 5000);
}

function input(id: string, type: string, pairKey: string, at: number | null): ReferenceInput {
  const event: ReferenceInput = { id, type };
  if (pairKey !== '') {
    event.pairKey = pairKey;
  }
  if (at !== null) {
    event.occurredAt = new Date(at).toISOString();
  }
  return event;
}

/**
 * Generates one user's deliveries: a stream in event time, partly sent out
 * of order, with repeats, events beyond the horizon and future timestamps,
 * cut into batches whose clock never runs backwards.
 */
function generateBatches(seed: number, prefix: string, startAt: number): Batch[] {
  const random = seededRandom(seed);
  const timeline: ReferenceInput[] = [];
  let at = startAt;
  for (let index = 0; index < EVENTS_PER_USER; index += 1) {
    at += nextGapSeconds(random) * 1000;
    const kind = pickKind(random);
    timeline.push(input(`${prefix}-${index}`, kind.type, kind.pairKey, at));
  }

  // Delay about one event in ten by 2 to 25 positions, so it arrives late.
  const slots = timeline.map((event, index) => ({
    event,
    slot: random() < 0.1 ? index + 2 + random() * 23 : index,
  }));
  const arrival = slots.sort((a, b) => a.slot - b.slot).map((entry) => entry.event);

  const batches: Batch[] = [];
  const sent: ReferenceInput[] = [];
  let clock = startAt;
  let latest = startAt;
  let extra = 0;
  let position = 0;
  while (position < arrival.length) {
    const size = 1 + Math.floor(random() * 6);
    const events = arrival.slice(position, position + size);
    position += size;
    for (const event of events) {
      latest = Math.max(latest, Date.parse(event.occurredAt as string));
    }
    // The clock is at or after every event of the batch, sometimes far after
    // it, so that reads in between apply deadlines that late events undo.
    const idle = random() < 0.15 ? 1800 + Math.floor(random() * 7200) : Math.floor(random() * 200);
    clock = Math.max(clock, latest) + idle * 1000 + Math.floor(random() * 1000);

    const additions: ReferenceInput[] = [];
    if (random() < 0.15 && sent.length > 0) {
      additions.push({ ...pick(random, sent) });
    }
    if (random() < 0.06) {
      const kind = pickKind(random);
      const back = (HORIZON_SECONDS + 1 + Math.floor(random() * 7200)) * 1000;
      additions.push(input(`${prefix}-old-${extra++}`, kind.type, kind.pairKey, latest - back));
    }
    if (random() < 0.05) {
      const kind = pickKind(random);
      const ahead = (CLOCK_SKEW_SECONDS + 1 + Math.floor(random() * 3000)) * 1000;
      additions.push(input(`${prefix}-future-${extra++}`, kind.type, kind.pairKey, clock + ahead));
    }
    if (random() < 0.05) {
      const kind = pickKind(random);
      const ahead = Math.floor(random() * CLOCK_SKEW_SECONDS) * 1000;
      additions.push(input(`${prefix}-soon-${extra++}`, kind.type, kind.pairKey, clock + ahead));
    }
    if (random() < 0.04) {
      const kind = pickKind(random);
      additions.push(input(`${prefix}-now-${extra++}`, kind.type, kind.pairKey, null));
    }
    const batch = [...events];
    for (const addition of additions) {
      batch.splice(Math.floor(random() * (batch.length + 1)), 0, addition);
    }
    sent.push(...batch);
    batches.push({ clock, events: batch });
  }
  return batches;
}

/** Writes a UTC instant in another offset, `minutes` east of UTC. */
function withOffset(instant: string, minutes: number): string {
  const local = new Date(Date.parse(instant) + minutes * 60_000).toISOString().replace(/Z$/, '');
  const sign = minutes < 0 ? '-' : '+';
  const hours = String(Math.floor(Math.abs(minutes) / 60)).padStart(2, '0');
  const rest = String(Math.abs(minutes) % 60).padStart(2, '0');
  return `${local}${sign}${hours}:${rest}`;
}

/** Returns a pair type whose events are `<name>_started` and `<name>_ended`. */
function namedPairType(name: string, parent: string | null, timeoutSeconds: number, endAt: EndAt): ReferencePairType {
  return { name, startType: `${name}_started`, endType: `${name}_ended`, parent, timeoutSeconds, endAt };
}

function summarise(server: ReturnType<typeof normaliseTimeline>, raw: Awaited<ReturnType<typeof readTimeline>>) {
  const clientEvents = raw.events.filter((event) => event.origin === 'CLIENT');
  return {
    segments: server.segments,
    corrections: server.corrections,
    occurredAt: new Map(clientEvents.map((event) => [event.clientId as string, event.occurredAt])),
    flags: new Map(clientEvents.map((event) => [event.clientId as string, [...event.flags].sort()])),
  };
}

describe('pairing against the reference model', () => {
  const clock = new ManualClock(START);
  let server: TestServer;
  let pairTypes: ReferencePairType[];
  /** Rules, flags and end reasons that the compared timelines contained, to check the streams' reach. */
  const covered = new Set<string>();
  const tokens = new Map<string, { token: string; issuedAt: number }>();

  /** Returns a token of the user that is valid at the clock's time, logging in again when needed. */
  async function tokenOf(username: string, password: string): Promise<string> {
    const known = tokens.get(username);
    if (known !== undefined && clock.now() - known.issuedAt < TOKEN_RENEWAL_MS) {
      return known.token;
    }
    const token = await server.login(username, password);
    tokens.set(username, { token, issuedAt: clock.now() });
    return token;
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.url, {
      clock,
      sweeper: false,
      rollups: false,
      replays: false,
      replayChangeDelayMs: 0,
      env: {
        LATENESS_HORIZON_SECONDS: String(HORIZON_SECONDS),
        CLOCK_SKEW_SECONDS: String(CLOCK_SKEW_SECONDS),
        JWT_TTL_SECONDS: '86400',
      },
    });
    const adminToken = await tokenOf(ADMIN.username, ADMIN.password);
    for (const pairType of CHAIN) {
      await definePairType(namedPairType(pairType.name, pairType.parent, pairType.timeoutSeconds, pairType.endAt));
    }
    const listed = dataOf(await server.gql(PAIR_TYPES, {}, adminToken), 'pairTypes') as {
      pairTypes: Array<{
        name: string;
        startType: string;
        endType: string;
        parent: string | null;
        autoClose: { timeoutSeconds: number; endAt: EndAt };
      }>;
    };
    pairTypes = listed.pairTypes.map((pairType) => ({
      name: pairType.name,
      startType: pairType.startType,
      endType: pairType.endType,
      parent: pairType.parent,
      timeoutSeconds: pairType.autoClose.timeoutSeconds,
      endAt: pairType.autoClose.endAt,
    }));
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  /** Defines a pair type through the API, then recomputes every user that the change queued. */
  async function definePairType(pairType: ReferencePairType): Promise<void> {
    const input = {
      name: pairType.name,
      startType: pairType.startType,
      endType: pairType.endType,
      parent: pairType.parent,
      autoClose: { timeoutSeconds: pairType.timeoutSeconds, endAt: pairType.endAt },
    };
    dataOf(await server.gql(DEFINE, { input }, await tokenOf(ADMIN.username, ADMIN.password)), 'definePairType');
    while ((await server.app.replays.runOnce()) > 0) {
      // Each run recomputes the users queued so far.
    }
  }

  /** Compares one user's timeline with the model's at the clock's time, and returns the model's. */
  async function compare(userId: string, model: ReferenceUser, label: string): Promise<ReferenceTimeline> {
    const expected: ReferenceTimeline = model.derive(clock.now());
    const raw = await readTimeline(server, await tokenOf(ADMIN.username, ADMIN.password), userId);
    const actual = summarise(normaliseTimeline(raw), raw);
    expect(actual.occurredAt, `${label}: applied instants`).toEqual(expected.occurredAt);
    expect(actual.flags, `${label}: flags`).toEqual(expected.flags);
    expect(actual.segments, `${label}: segments`).toEqual(expected.segments);
    expect(actual.corrections, `${label}: corrections`).toEqual(expected.corrections);
    for (const correction of expected.corrections) {
      covered.add(correction.rule as string);
    }
    for (const flags of expected.flags.values()) {
      for (const flag of flags) {
        covered.add(flag);
      }
    }
    for (const segment of expected.segments) {
      covered.add(`endReason:${segment.endReason ?? 'open'}`);
    }
    return expected;
  }

  /** A member whose events go to the service and to a reference model alike. */
  interface Subject {
    startAt: number;
    setPreference(preference: Preference): Promise<void>;
    /** Sends one batch at the given clock and checks the `duplicate` flags of the reply. */
    send(clockMs: number, events: ReferenceInput[], transport?: Transport): Promise<void>;
    /** Defines or redefines a pair type on the service, which is shared by all users, and in this user's model. */
    definePairType(pairType: ReferencePairType): Promise<void>;
    /** Moves the clock and compares the service's timeline with the model's. */
    compareAt(clockMs: number, label: string): Promise<void>;
  }

  let subjects = 0;

  /** Sends events in arrival order and returns the `duplicate` flag of each. */
  async function sendThrough(transport: Transport, events: ReferenceInput[], token: string): Promise<boolean[]> {
    if (transport === 'batch') {
      const reply = dataOf(await server.gql(SEND, { events }, token), 'sendEvents') as {
        sendEvents: { results: Array<{ duplicate: boolean }> };
      };
      return reply.sendEvents.results.map((result) => result.duplicate);
    }
    if (transport === 'single') {
      const duplicates: boolean[] = [];
      for (const event of events) {
        const reply = dataOf(await server.gql(SEND_ONE, { event }, token), 'sendEvent') as {
          sendEvent: { duplicate: boolean };
        };
        duplicates.push(reply.sendEvent.duplicate);
      }
      return duplicates;
    }
    const body = events.map((event) => ({
      id: event.id,
      type: event.type,
      ...(event.pairKey !== undefined ? { pair_key: event.pairKey } : {}),
      ...(event.occurredAt !== undefined ? { occurred_at: event.occurredAt } : {}),
    }));
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    const reply = (await response.json()) as { results?: Array<{ duplicate: boolean }> };
    expect(response.status, `REST reply ${JSON.stringify(reply)}`).toBe(200);
    return (reply.results ?? []).map((result) => result.duplicate);
  }

  async function createSubject(): Promise<Subject> {
    const index = subjects++;
    const startAt = START + index * USER_SPACING_MS;
    clock.set(startAt);
    const username = `reference-${index}`;
    const password = `${username}-password`;
    const created = dataOf(
      await server.gql(
        `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
        { input: { username, password, role: 'MEMBER' } },
        await tokenOf(ADMIN.username, ADMIN.password),
      ),
      'createUser',
    ) as { createUser: { id: string } };
    const userId = created.createUser.id;
    const memberToken = () => tokenOf(username, password);
    const model = new ReferenceUser(pairTypes, {
      clockSkewSeconds: CLOCK_SKEW_SECONDS,
      latenessHorizonSeconds: HORIZON_SECONDS,
    });
    let autoCloses = new Set<string>();
    return {
      startAt,
      async setPreference(preference) {
        dataOf(await server.gql(SET_PREFERENCE, { input: preference }, await memberToken()), 'setAutoClosePreference');
        model.setPreference(preference.pairType, preference);
      },
      async send(clockMs, events, transport = 'batch') {
        clock.set(clockMs);
        const received = await sendThrough(transport, events, await memberToken());
        const duplicates = events.map((event) => model.receive(event, clockMs).duplicate);
        expect(received, `duplicate flags of ${JSON.stringify(events.map((event) => event.id))}`).toEqual(duplicates);
      },
      async definePairType(pairType) {
        await definePairType(pairType);
        model.definePairType(pairType);
      },
      async compareAt(clockMs, label) {
        clock.set(clockMs);
        const expected = await compare(userId, model, label);
        const now = new Set(
          expected.corrections.filter((correction) => correction.rule === 'AUTO_CLOSE').map((correction) => correction.key),
        );
        if ([...autoCloses].some((key) => !now.has(key))) {
          covered.add('AUTO_CLOSE undone');
        }
        autoCloses = now;
      },
    };
  }

  for (const user of USERS) {
    it(`matches the model for seed ${user.seed}`, async () => {
      const subject = await createSubject();
      for (const preference of user.before) {
        await subject.setPreference(preference);
      }
      const batches = generateBatches(user.seed, `seed${user.seed}`, subject.startAt);
      for (const [number, batch] of batches.entries()) {
        if (number === Math.floor(batches.length / 2)) {
          for (const preference of user.halfway) {
            await subject.setPreference(preference);
          }
        }
        await subject.send(batch.clock, batch.events, TRANSPORTS[number % TRANSPORTS.length]);
        if (number % COMPARE_EVERY_BATCHES === COMPARE_EVERY_BATCHES - 1) {
          await subject.compareAt(batch.clock, `seed ${user.seed}, after batch ${number}`);
        }
      }
      const last = batches.at(-1)?.clock ?? subject.startAt;
      await subject.compareAt(last + 3 * 86_400_000 + 789, `seed ${user.seed}, at the end`);
    }, 120_000);
  }

  /** A step of a directed case: a batch sent at `at` seconds after the case's start, or a comparison there. */
  type Step =
    | { at: number; send: ReferenceInput[] }
    | { at: number; define: ReferencePairType }
    | { at: number; compare: string };

  const SECOND = 1000;
  const HORIZON_MS = HORIZON_SECONDS * SECOND;

  /** Directed cases at the edges that random streams rarely hit. Instants are ms after the case's start. */
  const CASES: ReadonlyArray<{
    name: string;
    preferences?: Preference[];
    /** True for a case that sends timestamps beyond the clock skew on purpose. */
    future?: boolean;
    steps: (t: (ms: number) => string) => Step[];
  }> = [
    {
      name: 'late event before a deadline end',
      preferences: [{ pairType: 'session', timeoutSeconds: 600, endAt: 'DEADLINE' }],
      steps: (t) => [
        { at: 1 * SECOND, send: [{ id: 'start', type: 'session_started', occurredAt: t(0) }] },
        { at: 3600 * SECOND, compare: 'auto-closed at the deadline' },
        { at: 3601 * SECOND, send: [{ id: 'beat', type: 'heartbeat', occurredAt: t(300 * SECOND) }] },
        { at: 3602 * SECOND, compare: 'deadline moved by the late heartbeat' },
        { at: 3603 * SECOND, send: [{ id: 'end', type: 'session_ended', occurredAt: t(1000 * SECOND) }] },
        { at: 3604 * SECOND, compare: 'end after the moved deadline' },
      ],
    },
    {
      name: 'horizon measured from a deadline end',
      preferences: [{ pairType: 'session', timeoutSeconds: 3600, endAt: 'DEADLINE' }],
      steps: (t) => [
        { at: 1 * SECOND, send: [{ id: 'start', type: 'session_started', occurredAt: t(0) }] },
        { at: 7200 * SECOND, compare: 'auto-closed at the deadline' },
        {
          at: 7201 * SECOND,
          send: [{ id: 'old', type: 'heartbeat', occurredAt: t(3599 * SECOND - HORIZON_MS) }],
        },
        { at: 7202 * SECOND, compare: 'old heartbeat' },
      ],
    },
    {
      // The task and the session share a deadline, so the task closes with the session.
      name: 'end at the deadline',
      steps: (t) => [
        {
          at: 1 * SECOND,
          send: [
            { id: 'start', type: 'session_started', occurredAt: t(0) },
            { id: 'task', type: 'task_started', pairKey: 'a', occurredAt: t(60 * SECOND) },
          ],
        },
        { at: 1870 * SECOND, send: [{ id: 'end', type: 'session_ended', occurredAt: t(1860 * SECOND) }] },
        { at: 1900 * SECOND, compare: 'end comes too late' },
      ],
    },
    {
      name: 'read at the deadline',
      steps: (t) => [
        { at: 1 * SECOND, send: [{ id: 'start', type: 'session_started', occurredAt: t(0) }] },
        { at: 1800 * SECOND - 1, compare: 'just before the deadline' },
        { at: 1800 * SECOND, compare: 'at the deadline' },
      ],
    },
    {
      name: 'horizon boundary',
      steps: (t) => [
        { at: HORIZON_MS + 1 * SECOND, send: [{ id: 'latest', type: 'heartbeat', occurredAt: t(HORIZON_MS) }] },
        {
          at: HORIZON_MS + 2 * SECOND,
          send: [
            { id: 'within', type: 'session_started', occurredAt: t(0) },
            { id: 'beyond', type: 'session_ended', occurredAt: t(-1) },
          ],
        },
        { at: HORIZON_MS + 3 * SECOND, compare: 'one ms beyond the horizon' },
      ],
    },
    {
      name: 'clock skew boundary',
      future: true,
      steps: (t) => [
        {
          at: 10 * SECOND,
          send: [
            { id: 'at-skew', type: 'session_started', occurredAt: t(10 * SECOND + CLOCK_SKEW_SECONDS * SECOND) },
            { id: 'past-skew', type: 'heartbeat', occurredAt: t(10 * SECOND + CLOCK_SKEW_SECONDS * SECOND + 1) },
          ],
        },
        { at: 11 * SECOND, compare: 'one ms past the skew' },
      ],
    },
    {
      name: 'ties in arrival order',
      steps: (t) => [
        {
          at: 1 * SECOND,
          send: [
            { id: 'end-first', type: 'session_ended', occurredAt: t(0) },
            { id: 'start', type: 'session_started', occurredAt: t(0) },
            { id: 'task', type: 'task_started', occurredAt: t(60 * SECOND) },
            { id: 'end', type: 'session_ended', occurredAt: t(60 * SECOND) },
            { id: 'start-again', type: 'session_started', occurredAt: t(120 * SECOND) },
            { id: 'end-again', type: 'session_ended', occurredAt: t(120 * SECOND) },
          ],
        },
        { at: 2 * SECOND, compare: 'same instants' },
        {
          at: 3 * SECOND,
          send: [
            { id: 'late-start', type: 'session_started', occurredAt: t(60 * SECOND) },
            { id: 'late-task-end', type: 'task_ended', occurredAt: t(60 * SECOND) },
          ],
        },
        { at: 4 * SECOND, compare: 'late events at a tied instant' },
      ],
    },
    {
      name: 'late start clears an orphan end',
      steps: (t) => [
        { at: 200 * SECOND, send: [{ id: 'end', type: 'session_ended', occurredAt: t(100 * SECOND) }] },
        { at: 201 * SECOND, compare: 'orphan end' },
        { at: 202 * SECOND, send: [{ id: 'start', type: 'session_started', occurredAt: t(0) }] },
        { at: 203 * SECOND, compare: 'paired by the late start' },
      ],
    },
    {
      name: 'late end replaces an auto-close',
      steps: (t) => [
        {
          at: 1 * SECOND,
          send: [
            { id: 'start', type: 'project_started', occurredAt: t(0) },
            { id: 'step', type: 'step_started', pairKey: 'y', occurredAt: t(30 * SECOND) },
          ],
        },
        { at: 86_400 * SECOND, compare: 'auto-closed chain' },
        { at: 86_401 * SECOND, send: [{ id: 'end', type: 'phase_ended', occurredAt: t(600 * SECOND) }] },
        { at: 86_402 * SECOND, compare: 'phase ended by the late end' },
      ],
    },
    {
      name: 'parent chosen by pair key',
      steps: (t) => [
        {
          at: 1 * SECOND,
          send: [
            { id: 'session-k', type: 'session_started', pairKey: 'k', occurredAt: t(0) },
            { id: 'session-blank', type: 'session_started', occurredAt: t(10 * SECOND) },
            { id: 'session-m', type: 'session_started', pairKey: 'm', occurredAt: t(20 * SECOND) },
            { id: 'task-k', type: 'task_started', pairKey: 'k', occurredAt: t(30 * SECOND) },
            { id: 'task-z', type: 'task_started', pairKey: 'z', occurredAt: t(40 * SECOND) },
            { id: 'end-m', type: 'session_ended', pairKey: 'm', occurredAt: t(50 * SECOND) },
            { id: 'task-q', type: 'task_started', pairKey: 'q', occurredAt: t(60 * SECOND) },
            { id: 'end-k', type: 'session_ended', pairKey: 'k', occurredAt: t(70 * SECOND) },
          ],
        },
        { at: 100 * SECOND, compare: 'parents by key, then by recency' },
      ],
    },
    {
      name: 'digits below a millisecond',
      steps: (t) => [
        {
          at: 10 * SECOND,
          send: [
            // Both lie in the same millisecond once the digits below it are dropped, so arrival order decides.
            { id: 'end', type: 'session_ended', occurredAt: t(SECOND).replace('.000Z', '.1239Z') },
            { id: 'start', type: 'session_started', occurredAt: t(SECOND).replace('.000Z', '.1231Z') },
          ],
        },
        { at: 11 * SECOND, compare: 'one millisecond' },
      ],
    },
    {
      name: 'instants with offsets',
      steps: (t) => [
        {
          at: 600 * SECOND,
          send: [
            { id: 'start', type: 'session_started', occurredAt: withOffset(t(300 * SECOND), 120) },
            { id: 'task', type: 'task_started', occurredAt: withOffset(t(100 * SECOND), -330) },
            { id: 'end', type: 'session_ended', occurredAt: withOffset(t(200 * SECOND), 60) },
          ],
        },
        { at: 601 * SECOND, compare: 'ordered by instant' },
      ],
    },
    {
      name: 'pair types defined and changed',
      steps: (t) => [
        { at: 0, define: namedPairType('errand', null, 600, 'LAST_ACTIVITY') },
        {
          at: 450 * SECOND,
          send: [
            { id: 'visit-before', type: 'visit_started', occurredAt: t(0) },
            { id: 'errand', type: 'errand_started', occurredAt: t(10 * SECOND) },
            { id: 'beat', type: 'heartbeat', occurredAt: t(300 * SECOND) },
            { id: 'errand-k', type: 'errand_started', pairKey: 'k', occurredAt: t(400 * SECOND) },
          ],
        },
        { at: 451 * SECOND, define: namedPairType('visit', null, 1200, 'DEADLINE') },
        {
          at: 700 * SECOND,
          send: [
            { id: 'visit-end', type: 'visit_ended', occurredAt: t(500 * SECOND) },
            { id: 'visit', type: 'visit_started', occurredAt: t(600 * SECOND) },
          ],
        },
        { at: 1000 * SECOND, compare: 'roles fixed at receipt' },
        { at: 1001 * SECOND, define: namedPairType('errand', 'session', 300, 'DEADLINE') },
        { at: 1002 * SECOND, compare: 'errand under session' },
        { at: 1003 * SECOND, define: namedPairType('visit', 'errand', 100, 'LAST_ACTIVITY') },
        { at: 5000 * SECOND, compare: 'visit under errand' },
      ],
    },
    {
      name: 'causes of chained corrections',
      preferences: [
        { pairType: 'project', timeoutSeconds: 300, endAt: 'DEADLINE' },
        { pairType: 'phase', timeoutSeconds: 3000, endAt: 'LAST_ACTIVITY' },
        { pairType: 'step', timeoutSeconds: 3000, endAt: 'DEADLINE' },
      ],
      steps: (t) => [
        {
          at: 200 * SECOND,
          send: [
            // Synthesises the phase and the project, both caused by this start.
            { id: 'step', type: 'step_started', occurredAt: t(0) },
            // Ends the project, the phase and the step, all three caused by this start.
            { id: 'project-again', type: 'project_started', occurredAt: t(60 * SECOND) },
            { id: 'step-again', type: 'step_started', pairKey: 'y', occurredAt: t(120 * SECOND) },
            // Ends the phase and the step under it, both caused by this end.
            { id: 'project-end', type: 'project_ended', occurredAt: t(180 * SECOND) },
            { id: 'step-last', type: 'step_started', occurredAt: t(190 * SECOND) },
          ],
        },
        // The project's deadline ends the phase and the step, caused by its AUTO_CLOSE.
        { at: 1000 * SECOND, compare: 'causes' },
      ],
    },
    {
      name: 'repeat without occurredAt',
      steps: () => [
        { at: 10 * SECOND, send: [{ id: 'start', type: 'session_started' }] },
        { at: 20 * SECOND, send: [{ id: 'start', type: 'session_started' }, { id: 'beat', type: 'heartbeat' }] },
        { at: 30 * SECOND, compare: 'first receipt time kept' },
      ],
    },
  ];

  for (const testCase of CASES) {
    it(`matches the model: ${testCase.name}`, async () => {
      const subject = await createSubject();
      for (const preference of testCase.preferences ?? []) {
        await subject.setPreference(preference);
      }
      const base = subject.startAt;
      const prefix = `case${subjects}`;
      const t = (ms: number) => new Date(base + ms).toISOString();
      for (const step of testCase.steps(t)) {
        if ('define' in step) {
          clock.set(base + step.at);
          await subject.definePairType(step.define);
        } else if ('send' in step) {
          if (testCase.future !== true) {
            // Guards the case itself: a FUTURE_TIMESTAMP would move the event to the receipt time.
            const skewEnd = base + step.at + CLOCK_SKEW_SECONDS * SECOND;
            const future = step.send.filter((event) => Date.parse(event.occurredAt ?? t(0)) > skewEnd);
            expect(future, 'events beyond the clock skew in a case that expects none').toEqual([]);
          }
          await subject.send(
            base + step.at,
            step.send.map((event) => ({ ...event, id: `${prefix}-${event.id}` })),
          );
        } else {
          await subject.compareAt(base + step.at, `${testCase.name}: ${step.compare}`);
        }
      }
    }, 60_000);
  }

  it('reaches every rule, flag and end reason', () => {
    const expected = [
      'AUTO_CLOSE',
      'AUTO_CLOSE undone',
      'CHILD_CLOSED_WITH_PARENT',
      'DUPLICATE_START',
      'FUTURE_TIMESTAMP',
      'LATE_BEYOND_HORIZON',
      'LATE_EVENT',
      'MISSING_PARENT_START',
      'ORPHAN_END',
      'endReason:AUTO_CLOSE',
      'endReason:CLIENT',
      'endReason:DUPLICATE_START',
      'endReason:PARENT_CLOSED',
      'endReason:open',
    ];
    for (const item of expected) {
      expect(covered.has(item), `${item} in some compared timeline`).toBe(true);
    }
  });
});
