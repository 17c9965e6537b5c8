/**
 * Crash safety of intake. A fault hook throws once at one `IntakeStep`, as a
 * process crash there would stop the work. The steps follow the storing of
 * the events, the writing of the derived rows, the saving of the engine state
 * to Redis and the scheduling of the deadline. Processing then resumes
 * through a client retry, the user's next request or the sweeper. The
 * segments and corrections must then equal a clean replay of the same events
 * in a fresh server. A flush of the Redis keys in the middle of a stream, and
 * a rebuild, must lose nothing either.
 *
 * Each case runs on its own day, so the shared manual clock only moves forward.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { IntakeStep } from '../../src/services/derive.js';
import { markDeadlinesSeeded } from '../../src/services/sweeper.js';
import { ADMIN, ManualClock, startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';
import {
  SEND_EVENTS,
  dataOf,
  normaliseTimeline,
  readTimeline,
  replayInFreshServer,
  type NormalisedTimeline,
  type StreamEvent,
} from '../support/replay.js';

const DAY_MS = 24 * 3600 * 1000;
const FIRST_DAY = Date.parse('2026-01-01T00:00:00Z');
const TIMEOUT_SECONDS = 3600;
const ENV = {
  DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS),
  SWEEPER_INTERVAL_MS: '20',
  SWEEPER_LEASE_MS: '1000',
  SWEEPER_REPAIR_INTERVAL_MS: '200',
  JWT_TTL_SECONDS: '86400',
};

const STEPS: readonly IntakeStep[] = ['events-stored', 'derived-written', 'state-saved', 'deadline-scheduled'];

type Variant = 'retry' | 'unretried' | 'sweeper';

interface Case {
  name: string;
  step: IntakeStep | null;
  variant: Variant | 'flush' | 'flush-idle' | 'rebuild' | 'rebuild-full' | 'lost-deadline';
  day: number;
}

const CRASHES: Array<{ step: IntakeStep; variant: Variant }> = [
  ...STEPS.map((step) => ({ step, variant: 'retry' as const })),
  ...STEPS.map((step) => ({ step, variant: 'unretried' as const })),
  // The sweeper never stores events, so it never reaches 'events-stored'.
  ...STEPS.filter((step) => step !== 'events-stored').map((step) => ({ step, variant: 'sweeper' as const })),
];

const CASES: Case[] = [
  ...CRASHES.map((entry, index): Case => ({ name: `${entry.variant} after ${entry.step}`, ...entry, day: index })),
  { name: 'flush mid-stream', step: null, variant: 'flush', day: CRASHES.length },
  { name: 'flush with an idle open session', step: null, variant: 'flush-idle', day: CRASHES.length + 1 },
  { name: 'rebuild after a flush', step: null, variant: 'rebuild', day: CRASHES.length + 2 },
  { name: 'full rebuild', step: null, variant: 'rebuild-full', day: CRASHES.length + 3 },
  { name: 'stored events without a deadline', step: 'events-stored', variant: 'lost-deadline', day: CRASHES.length + 4 },
];

function dayStart(day: number): number {
  return FIRST_DAY + day * DAY_MS;
}

function atTime(day: number, time: string): string {
  return new Date(dayStart(day) + Date.parse(`1970-01-01T${time}Z`)).toISOString();
}

/**
 * Three batches for one user on one day. The second contains a late heartbeat,
 * and a session and a task stay open at the end, so only an auto-close
 * finishes them.
 */
function batchesFor(testCase: Case): StreamEvent[][] {
  const { day } = testCase;
  const event = (id: string, type: string, time: string, pairKey?: string): StreamEvent => ({
    id: `${testCase.name}:${id}`,
    type,
    occurredAt: atTime(day, time),
    ...(pairKey === undefined ? {} : { pairKey }),
  });
  return [
    [
      event('s1', 'session_started', '10:00:00'),
      event('t1', 'task_started', '10:05:00', 'a'),
      event('h1', 'heartbeat', '10:20:00'),
    ],
    [
      event('t1e', 'task_ended', '10:30:00', 'a'),
      event('h0', 'heartbeat', '10:10:00'),
      event('t2', 'task_started', '10:40:00', 'b'),
      event('t3', 'task_started', '10:50:00', 'a'),
    ],
    [
      event('t2e', 'task_ended', '11:00:00', 'b'),
      event('s1e', 'session_ended', '11:10:00'),
      event('s2', 'session_started', '11:20:00'),
      event('t4', 'task_started', '11:25:00'),
    ],
  ];
}

/** Throws once at an armed step for an armed user, as a crash there would stop the work. */
class FaultPlan {
  private readonly armed = new Map<string, IntakeStep>();

  arm(userId: string, step: IntakeStep): void {
    this.armed.set(userId, step);
  }

  fired(userId: string): boolean {
    return !this.armed.has(userId);
  }

  readonly hook = (step: IntakeStep, userId: string): void => {
    if (this.armed.get(userId) === step) {
      this.armed.delete(userId);
      throw new Error(`injected crash after ${step}`);
    }
  };
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) {
      return true;
    }
    if (performance.now() > until) {
      return false;
    }
    await sleep(25);
  }
}

describe('recovery after a crash between intake steps', () => {
  const clock = new ManualClock(dayStart(0));
  const faults = new FaultPlan();
  let server: TestServer;
  let replayed: Map<string, NormalisedTimeline>;

  beforeAll(async () => {
    const streams = CASES.map((testCase) => batchesFor(testCase).flat());
    const timelines = await replayInFreshServer(import.meta.filename, streams, {
      now: dayStart(CASES.length + 1),
      env: ENV,
    });
    replayed = new Map(CASES.map((testCase, index) => [testCase.name, timelines[index] as NormalisedTimeline]));

    server = await startTestServer(import.meta.filename, { clock, fault: faults.hook, env: ENV });
  });

  afterAll(async () => {
    await server?.close();
  });

  async function send(token: string, events: StreamEvent[]): Promise<GraphQLResponse> {
    return server.gql(SEND_EVENTS, { events }, token);
  }

  /** Creates a member with a token valid on the current day (`server.createUser` caches an older admin token). */
  async function createMember(adminToken: string, username: string): Promise<{ id: string; token: string }> {
    const password = `${username}-password`;
    const created = await server.gql(
      `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
      { input: { username, password, role: 'MEMBER' } },
      adminToken,
    );
    return { id: dataOf(created, 'createUser').createUser.id, token: await server.login(username, password) };
  }

  function expectCrash(response: GraphQLResponse): void {
    expect(response.data).toBeNull();
    expect(response.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
  }

  /**
   * Moves past every deadline of the day, then polls until the user's
   * timeline equals the replay (the sweeper works in the background) or 10 s
   * pass, and returns the last timeline read.
   */
  async function settledTimeline(testCase: Case, userId: string, token: string): Promise<NormalisedTimeline> {
    clock.set(Date.parse(atTime(testCase.day, '16:00:00')));
    const expected = replayed.get(testCase.name);
    let actual = normaliseTimeline(await readTimeline(server, token, userId));
    await waitUntil(async () => {
      actual = normaliseTimeline(await readTimeline(server, token, userId));
      return JSON.stringify(actual) === JSON.stringify(expected);
    }, 10_000);
    return actual;
  }

  it.each(CASES)('$name equals a clean replay', async (testCase) => {
    clock.set(Date.parse(atTime(testCase.day, '11:45:00')));
    const adminToken = await server.login(ADMIN.username, ADMIN.password);
    const user = await createMember(adminToken, `user-${testCase.day}`);
    const [first, second, third] = batchesFor(testCase) as [StreamEvent[], StreamEvent[], StreamEvent[]];
    const step = testCase.step as IntakeStep;

    switch (testCase.variant) {
      case 'retry': {
        dataOf(await send(user.token, first), 'sendEvents');
        faults.arm(user.id, step);
        expectCrash(await send(user.token, second));
        expect(faults.fired(user.id)).toBe(true);

        const retried = dataOf(await send(user.token, second), 'sendEvents').sendEvents;
        expect(retried).toMatchObject({ storedCount: 0, duplicateCount: second.length });
        dataOf(await send(user.token, third), 'sendEvents');
        break;
      }
      case 'unretried': {
        // The crash hits the user's first request, and the client never retries.
        faults.arm(user.id, step);
        expectCrash(await send(user.token, [...first, ...second, ...third]));
        break;
      }
      case 'sweeper': {
        for (const batch of [first, second, third]) {
          dataOf(await send(user.token, batch), 'sendEvents');
        }
        // The crash hits the sweeper's auto-close; its claim comes back after the lease.
        faults.arm(user.id, step);
        clock.set(Date.parse(atTime(testCase.day, '14:00:00')));
        expect(await waitUntil(async () => faults.fired(user.id), 10_000)).toBe(true);
        break;
      }
      case 'lost-deadline': {
        // A request whose lock expired stores its events after the next
        // holder folded and removed the deadline, and its own fold fails.
        faults.arm(user.id, step);
        expectCrash(await send(user.token, [...first, ...second, ...third]));
        await server.app.store.scheduleDeadline(user.id, null);
        await markDeadlinesSeeded(server.app.store, await server.app.store.startDeadlineSeed());
        break;
      }
      case 'flush': {
        dataOf(await send(user.token, first), 'sendEvents');
        await server.app.store.flushForTests();
        dataOf(await send(user.token, second), 'sendEvents');
        await server.app.store.flushForTests();
        dataOf(await send(user.token, third), 'sendEvents');
        break;
      }
      case 'flush-idle': {
        for (const batch of [first, second, third]) {
          dataOf(await send(user.token, batch), 'sendEvents');
        }
        // Deadlines, engine state and the sweeper's seed marker are all gone.
        await server.app.store.flushForTests();
        break;
      }
      case 'rebuild': {
        for (const batch of [first, second, third]) {
          dataOf(await send(user.token, batch), 'sendEvents');
        }
        await server.app.store.flushForTests();
        // What `npm run rebuild` does for each user.
        await server.app.services.intake.rebuild(user.id, false);
        break;
      }
      case 'rebuild-full': {
        for (const batch of [first, second, third]) {
          dataOf(await send(user.token, batch), 'sendEvents');
        }
        const before = await settledTimeline(testCase, user.id, adminToken);
        const idsBefore = (await readTimeline(server, adminToken, user.id)).segments.map((segment) => segment.id).sort();

        // What `npm run rebuild -- --full` does for each user: derived rows recomputed from the log.
        await server.app.services.intake.rebuild(user.id, true);

        const idsAfter = (await readTimeline(server, adminToken, user.id)).segments.map((segment) => segment.id).sort();
        expect(idsAfter).toEqual(idsBefore);
        expect(before).toEqual(replayed.get(testCase.name));
        break;
      }
    }

    const actual = await settledTimeline(testCase, user.id, adminToken);

    expect(actual).toEqual(replayed.get(testCase.name));
  });

  it('replay closes every open pair', () => {
    // Guards the comparison above: the replay itself must end with auto-closes.
    for (const timeline of replayed.values()) {
      expect(timeline.segments.every((segment) => segment.end !== null)).toBe(true);
      expect(timeline.corrections.filter((correction) => correction.rule === 'AUTO_CLOSE')).toHaveLength(1);
    }
  });
});
