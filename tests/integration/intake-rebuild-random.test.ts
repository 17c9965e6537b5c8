/**
 * Randomised intake against the whole HTTP stack. Seeded streams of two
 * users go out in batches of random sizes and partly out of time order, so
 * some events are late and some fall beyond the lateness horizon. Streams
 * have events at equal instants, future timestamps and resent duplicates.
 * The derived timeline the server built must equal what a full rebuild
 * computes from the same stored events, page by page, and each reply must list the
 * corrections and closed segments that a read right after it finds.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  dataOf,
  normaliseTimeline,
  readTimeline,
  SEND_EVENTS,
  type NormalisedTimeline,
  type StreamEvent,
} from '../support/replay.js';
import { seededRandom } from '../support/random.js';
import { describeWithPostgres } from '../support/services.js';
import { loadReply } from '../../src/storage/postgres/intake-store.js';

const NOW = Date.UTC(2026, 2, 1, 12);
const HORIZON_SECONDS = 6 * 3600;
const SEEDS = (process.env.RANDOM_INTAKE_SEEDS ?? '1,2,3,4,5,6,7,8').split(',').map(Number);
const BATCH_SIZES = [1, 1, 1, 2, 3, 5, 8, 20, 60, 150];

type Outgoing = StreamEvent & { userId: string };

/** Mean gap between events in the generated streams, about two thirds of 300 s. */
const MEAN_GAP_MS = 200_000;

/**
 * Returns where a stream of `count` events starts. Even seeds end hours
 * before now, so auto-closes fall between and after the events. Odd seeds
 * end about now, so no auto-close is due after a late heartbeat, and the
 * server counts such a heartbeat as folded without a rewind.
 */
function startAt(seed: number, count: number): number {
  return seed % 2 === 0 ? NOW - 20 * 3600 * 1000 : NOW - count * MEAN_GAP_MS;
}

/**
 * Generates one user's sessions, keyed tasks and heartbeats in time order.
 * A third of the gaps are zero, so events share an instant. A few events
 * near the end lie in the future, and the server moves them to its now.
 */
function generateEvents(
  random: () => number,
  userId: string,
  prefix: string,
  count: number,
  startAt: number,
): Outgoing[] {
  const kinds = [
    { type: 'session_started', keyed: false },
    { type: 'session_ended', keyed: false },
    { type: 'task_started', keyed: true },
    { type: 'task_ended', keyed: true },
    { type: 'heartbeat', keyed: false },
  ];
  const events: Outgoing[] = [];
  let at = startAt;
  for (let index = 0; index < count; index += 1) {
    const kind = kinds[Math.floor(random() * kinds.length)]!;
    // A future event moves the user's latest instant to now, so it comes last.
    const future = index > count * 0.9 && random() < 0.1;
    const event: Outgoing = {
      userId,
      id: `${prefix}-${index}`,
      type: kind.type,
      occurredAt: new Date(future ? NOW + 3600_000 : at).toISOString(),
    };
    if (kind.keyed) {
      event.pairKey = ['', 'a', 'b'][Math.floor(random() * 3)]!;
    }
    // Keys out of jsonb order, so a reply that skipped the database would show them differently.
    if (kind.type.endsWith('_started') && random() < 0.5) {
      event.meta = { zone: 'lab', at: index, nested: { yy: 1, x: [index] } };
    }
    events.push(event);
    if (random() > 0.33) {
      at += (1 + Math.floor(random() * 600)) * 1000;
    }
  }
  return events;
}

/** Moves some events later in the sending order, a few of them far enough to fall behind the horizon. */
function sendingOrder(random: () => number, events: readonly Outgoing[]): Outgoing[] {
  const order = events.map((event, index) => ({ event, key: index }));
  for (const entry of order) {
    const roll = random();
    if (roll < 0.15) {
      entry.key += 1 + random() * 10;
    } else if (roll < 0.2) {
      entry.key += 20 + random() * 200;
    }
  }
  return order.sort((a, b) => a.key - b.key).map((entry) => entry.event);
}

/** Splits the events into batches of random sizes, adding resent duplicates of events sent before. */
function batches(random: () => number, events: readonly Outgoing[]): Outgoing[][] {
  const result: Outgoing[][] = [];
  const sent: Outgoing[] = [];
  let index = 0;
  while (index < events.length) {
    const size = BATCH_SIZES[Math.floor(random() * BATCH_SIZES.length)]!;
    const batch = events.slice(index, index + size);
    index += size;
    if (sent.length > 0 && random() < 0.3) {
      batch.splice(Math.floor(random() * (batch.length + 1)), 0, sent[Math.floor(random() * sent.length)]!);
    }
    if (random() < 0.1) {
      batch.push(batch[0]!);
    }
    sent.push(...batch);
    result.push(batch);
  }
  return result;
}

interface ReplyResult {
  event: { id: string };
  corrections: Array<Record<string, unknown>>;
  closedSegments: Array<Record<string, unknown>>;
}

/** Checks each result of a reply against a read, made after the reply, of the rows its event caused. */
async function expectReplyMatchesRead(server: TestServer, userIds: readonly string[], results: readonly ReplyResult[], label: string) {
  for (const result of results) {
    const read = await loadReply(server.app.db.sql, userIds, [result.event.id]);
    expect(
      result.corrections.map((c) => [c.id, c.type, c.role, c.pairType, c.pairKey, c.occurredAt, c.rule, c.causeEventId]),
      `corrections of ${result.event.id} in ${label}`,
    ).toEqual(
      read.corrections.map((c) => [c.id, c.type, c.role, c.pairType, c.pairKey, c.occurredAt.toISOString(), c.rule, c.causeEventId]),
    );
    const segment = (s: Record<string, unknown>) => [
      s.id,
      s.pairType,
      s.pairKey,
      s.start,
      s.end,
      s.endReason,
      s.parentSegmentId,
      JSON.stringify(s.meta),
      (s.startEvent as { id: string }).id,
      (s.endEvent as { id: string } | null)?.id ?? null,
    ];
    // Grouped by the event that ended them: the result's own event, then its
    // corrections in order. Replies leave out empty segments, as `segments` does.
    const enders = [result.event.id, ...read.corrections.map((c) => c.id)];
    const ended = enders
      .flatMap((id) => read.segments.filter((s) => s.endEventId === id))
      .filter((s) => s.endAt === null || s.endAt.getTime() !== s.startAt.getTime());
    expect(result.closedSegments.map(segment), `closed segments of ${result.event.id} in ${label}`).toEqual(
      ended.map((s) =>
        segment({
          ...s,
          start: s.startAt.toISOString(),
          end: s.endAt?.toISOString() ?? null,
          startEvent: { id: s.startEventId },
          endEvent: s.endEventId === null ? null : { id: s.endEventId },
        }),
      ),
    );
  }
}

async function timelineOf(server: TestServer, userId: string): Promise<NormalisedTimeline> {
  return normaliseTimeline(await readTimeline(server, await server.adminToken(), userId));
}

describeWithPostgres('randomised intake against a full rebuild', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      sweeper: false,
      // Small pages make each rebuild fold its 150 to 300 events in many steps.
      env: { LATENESS_HORIZON_SECONDS: String(HORIZON_SECONDS), REPLAY_PAGE_SIZE: '17' },
    });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  it.each(SEEDS)('seed %i matches a rebuild', async (seed) => {
    const random = seededRandom(seed * 7919);
    const count = 150 + Math.floor(random() * 150);
    const users = [await server.createUser(`random-${seed}-a`), await server.createUser(`random-${seed}-b`)];
    const admin = await server.adminToken();
    const streams = users.map((user, index) =>
      sendingOrder(random, generateEvents(random, user.id, `s${seed}u${index}`, count, startAt(seed, count))),
    );

    // Each batch contains one user's events, or both users' when the random roll picks mixed batches.
    const [first, second] = streams as [Outgoing[], Outgoing[]];
    const mixed: Outgoing[] = [];
    while (first.length + second.length > 0) {
      const from = second.length === 0 || (first.length > 0 && random() < 0.5) ? first : second;
      mixed.push(from.shift()!);
    }
    const perUser = random() < 0.5;
    let closedInReplies = 0;
    for (const batch of batches(random, mixed)) {
      const groups = perUser ? users.map((user) => batch.filter((event) => event.userId === user.id)) : [batch];
      for (const group of groups.filter((entry) => entry.length > 0)) {
        const reply = dataOf(await server.gql(SEND_EVENTS, { events: group }, admin), `sendEvents of seed ${seed}`);
        const results = (reply as { sendEvents: { results: ReplyResult[] } }).sendEvents.results;
        await expectReplyMatchesRead(server, [...new Set(group.map((event) => event.userId))], results, `seed ${seed}`);
        closedInReplies += results.reduce((sum, result) => sum + result.closedSegments.length, 0);
      }
    }

    const flags = new Map<string, number>();
    for (const user of users) {
      const raw = await readTimeline(server, admin, user.id);
      for (const flag of raw.events.flatMap((event) => event.flags)) {
        flags.set(flag, (flags.get(flag) ?? 0) + 1);
      }
    }
    // The streams must reach the paths under test: rewinds, ignored events and replies with closed segments.
    expect(flags.get('LATE_EVENT') ?? 0).toBeGreaterThan(0);
    expect(closedInReplies).toBeGreaterThan(0);
    expect(flags.get('LATE_BEYOND_HORIZON') ?? 0).toBeGreaterThan(0);

    for (const user of users) {
      await server.app.services.intake.settle(user.id);
      const served = await timelineOf(server, user.id);
      await server.app.services.intake.rebuild(user.id, true);
      const rebuilt = await timelineOf(server, user.id);
      expect(served, `user ${user.id} of seed ${seed}`).toEqual(rebuilt);
    }
  }, 120_000);
});
