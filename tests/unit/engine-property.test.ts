import { describe, expect, it } from 'vitest';

import {
  advanceTo,
  applyEvent,
  applyEvents,
  comparePositions,
  DerivedLedger,
  emptyState,
  positionOfEvent,
  ReferenceTimeline,
  type AutoClosePolicy,
  type EngineEvent,
  type EngineOutput,
  type EngineState,
  type IncomingEvent,
  type LedgerSnapshot,
  type PairCatalog,
  type Position,
  type PairTypeDefinition,
  type SegmentRecord,
} from '../../src/domain/pairing/index.js';
import { replayInOrder } from '../support/engine.js';
import { seededRandom } from '../support/random.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const BASE = Date.parse('2024-03-01T08:00:00Z');
const LIMITS = { clockSkewMs: 5 * MINUTE, latenessHorizonMs: 7 * DAY };
const CASES = 300;

function pick<T>(random: () => number, items: readonly T[]): T {
  const item = items[Math.floor(random() * items.length)];
  if (item === undefined) {
    throw new Error('pick from an empty list');
  }
  return item;
}

function integer(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

// session > task > subtask is the three-level chain. The call type has no parent.
const TYPES: Array<{ name: string; parent: string | null; keys: string[] }> = [
  { name: 'session', parent: null, keys: ['', 'x'] },
  { name: 'task', parent: 'session', keys: ['', 'a', 'b'] },
  { name: 'subtask', parent: 'task', keys: ['', 'a'] },
  { name: 'call', parent: null, keys: ['', 'c'] },
];

function randomCatalog(random: () => number): PairCatalog {
  const definitions: PairTypeDefinition[] = TYPES.map((type) => ({
    name: type.name,
    startType: `${type.name}_started`,
    endType: `${type.name}_ended`,
    parent: type.parent,
    autoClose: {
      timeoutSeconds: pick(random, [20, 30, 45, 60, 90, 120]) * 60,
      endAt: pick(random, ['LAST_ACTIVITY', 'DEADLINE'] as const),
    },
  }));
  const byEventType = new Map<string, { pairType: string; role: 'START' | 'END' }>();
  for (const definition of definitions) {
    byEventType.set(definition.startType, { pairType: definition.name, role: 'START' });
    byEventType.set(definition.endType, { pairType: definition.name, role: 'END' });
  }
  // Half of the cases override some defaults, as user preferences do.
  const policies = new Map<string, AutoClosePolicy>();
  if (random() < 0.5) {
    const overridden = pick(random, definitions);
    policies.set(overridden.name, { timeoutSeconds: 15 * 60, endAt: 'DEADLINE' });
  }
  return {
    byEventType,
    byName: new Map(definitions.map((definition) => [definition.name, definition])),
    policies,
  };
}

function policyOf(catalog: PairCatalog, pairType: string): AutoClosePolicy {
  const policy = catalog.policies.get(pairType) ?? catalog.byName.get(pairType)?.autoClose;
  if (policy === undefined) {
    throw new Error(`no policy for ${pairType}`);
  }
  return policy;
}

/** Events with distinct minutes in a ten-hour span, in time order. */
function randomEvents(random: () => number): IncomingEvent[] {
  const count = integer(random, 3, 28);
  const minutes = new Set<number>();
  while (minutes.size < count) {
    minutes.add(integer(random, 0, 600));
  }
  return [...minutes]
    .sort((a, b) => a - b)
    .map((minute, index) => {
      const id = `ev-${index}`;
      const occurredAt = BASE + minute * MINUTE;
      const roll = random();
      if (roll < 0.15) {
        return { id, type: 'ping', role: 'POINT', pairType: null, pairKey: '', occurredAt };
      }
      const type = pick(random, TYPES);
      const role = roll < 0.6 ? 'START' : 'END';
      return {
        id,
        type: `${type.name}_${role === 'START' ? 'started' : 'ended'}`,
        role,
        pairType: type.name,
        pairKey: pick(random, type.keys),
        occurredAt,
      };
    });
}

/** Returns the events in a random arrival order: shuffled, nearly sorted or sorted. */
function arrivalOrder(random: () => number, events: readonly IncomingEvent[]): IncomingEvent[] {
  const order = [...events];
  const style = random();
  if (style < 0.5) {
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = integer(random, 0, i);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
  } else if (style < 0.85) {
    for (let i = 0; i + 1 < order.length; i += 1) {
      if (random() < 0.3) {
        [order[i], order[i + 1]] = [order[i + 1]!, order[i]!];
      }
    }
  }
  return order;
}

interface Scenario {
  catalog: PairCatalog;
  /**
   * Arrivals in order, each with the `now` it is received at and, when the
   * deadline sweeper runs before the next arrival, the `now` of that sweep.
   */
  arrivals: Array<{ event: IncomingEvent; now: number; sweepAt: number | null }>;
  finalNow: number;
}

function randomScenario(seed: number): Scenario {
  // The seed is scrambled so that neighbouring seeds start far apart.
  const random = seededRandom(seed * 2654435761 + 1);
  const catalog = randomCatalog(random);
  const ordered = arrivalOrder(random, randomEvents(random));

  // `now` never goes back and is never before an occurredAt already sent.
  let now = BASE;
  const arrivals = ordered.map((event) => {
    now = Math.max(now, event.occurredAt ?? now);
    if (random() < 0.5) {
      now += integer(random, 0, 90) * MINUTE;
    }
    const receivedAt = now;
    let sweepAt: number | null = null;
    if (random() < 0.3) {
      now += integer(random, 0, 60) * MINUTE;
      sweepAt = now;
    }
    return { event, now: receivedAt, sweepAt };
  });
  return { catalog, arrivals, finalNow: now + integer(random, 0, 300) * MINUTE };
}

interface IncrementalRun {
  timeline: ReferenceTimeline;
  outputs: EngineOutput[];
  /** Late events counted as applied without a rewind. */
  absorbed: number;
}

/** Receives the arrivals one by one, with sweeps in between, then advances to the final `now`. */
function runIncrementally(scenario: Scenario): IncrementalRun {
  const timeline = new ReferenceTimeline(scenario.catalog, LIMITS);
  const outputs: EngineOutput[] = [];
  let absorbed = 0;
  for (const arrival of scenario.arrivals) {
    const received = timeline.receive(arrival.event, arrival.now);
    outputs.push(received.output);
    absorbed += received.absorbed ? 1 : 0;
    if (arrival.sweepAt !== null) {
      outputs.push(timeline.advanceTo(arrival.sweepAt));
    }
  }
  outputs.push(timeline.advanceTo(scenario.finalNow));
  return { timeline, outputs, absorbed };
}

/**
 * Splits off the bound on the last auto-close decision, which an incremental
 * fold may keep later than the exact position that a replay has.
 */
function withoutBound(state: EngineState): { rest: EngineState; bound: Position | null | undefined } {
  const { lastAutoCloseAt, ...rest } = state;
  return { rest, bound: lastAutoCloseAt };
}

/** Returns whether `bound` is at or after the exact last auto-close decision `exact`. */
function covers(bound: Position | null | undefined, exact: Position | null | undefined): boolean {
  if (exact === null || exact === undefined) {
    return true;
  }
  return bound !== null && bound !== undefined && comparePositions(bound, exact) >= 0;
}

/** Returns a description of the first overlap between segments of one pair type and key, or null. */
function findOverlap(segments: readonly SegmentRecord[]): string | null {
  const byInstance = new Map<string, SegmentRecord[]>();
  for (const segment of segments) {
    const key = `${segment.pairType}/${segment.pairKey}`;
    byInstance.set(key, [...(byInstance.get(key) ?? []), segment]);
  }
  for (const [key, list] of byInstance) {
    for (let i = 0; i + 1 < list.length; i += 1) {
      const current = list[i]!;
      const next = list[i + 1]!;
      if (current.status === 'open') {
        return `${key}: open segment ${current.segmentId} is followed by ${next.segmentId}`;
      }
      if (current.endAt > next.startAt) {
        return `${key}: ${current.segmentId} ends at ${current.endAt}, after ${next.segmentId} starts at ${next.startAt}`;
      }
    }
  }
  return null;
}

/** Returns a description of the first child that is not inside its parent, or null. */
function findEscapedChild(segments: readonly SegmentRecord[]): string | null {
  const byId = new Map(segments.map((segment) => [segment.segmentId, segment]));
  for (const child of segments) {
    if (child.parentSegmentId === null) {
      continue;
    }
    const parent = byId.get(child.parentSegmentId);
    if (parent === undefined) {
      return `${child.segmentId}: parent ${child.parentSegmentId} is missing`;
    }
    if (child.startAt < parent.startAt) {
      return `${child.segmentId} starts before its parent`;
    }
    if (parent.status === 'closed' && (child.status === 'open' || child.endAt > parent.endAt)) {
      return `${child.segmentId} ends after its parent ${parent.segmentId}`;
    }
  }
  return null;
}

const seeds = Array.from({ length: CASES }, (_, index) => index + 1);

describe('engine property', () => {
  it('incremental equals replay', () => {
    let restores = 0;
    let autoCloses = 0;
    let absorbedEvents = 0;
    for (const seed of seeds) {
      const scenario = randomScenario(seed);
      const { timeline, outputs, absorbed } = runIncrementally(scenario);
      const replayed = replayInOrder(timeline.events(), scenario.catalog, scenario.finalNow);

      expect(timeline.ledger.snapshot(), `seed ${seed}`).toEqual(replayed.snapshot);
      const incremental = withoutBound(timeline.state);
      const replay = withoutBound(replayed.state);
      expect(incremental.rest, `seed ${seed}`).toEqual(replay.rest);
      expect(covers(incremental.bound, replay.bound), `seed ${seed}: last auto-close bound`).toBe(true);
      absorbedEvents += absorbed;

      restores += scenario.arrivals.filter((arrival, index) => {
        const earlier = scenario.arrivals.slice(0, index);
        return earlier.some((other) => (other.event.occurredAt ?? 0) > (arrival.event.occurredAt ?? 0));
      }).length;
      autoCloses += outputs
        .flatMap((output) => output.corrections)
        .filter((correction) => correction.rule === 'AUTO_CLOSE').length;
    }
    // Guard against a generator that stopped producing the hard cases.
    expect(restores).toBeGreaterThan(CASES);
    expect(autoCloses).toBeGreaterThan(CASES);
    expect(absorbedEvents).toBeGreaterThan(CASES / 10);
  });

  it('one step equals event steps', () => {
    for (const seed of seeds) {
      const scenario = randomScenario(seed);
      const { timeline } = runIncrementally(scenario);
      const ordered = [...timeline.events()].sort((a, b) => comparePositions(positionOfEvent(a), positionOfEvent(b)));

      let state = emptyState();
      const perEvent: EngineOutput = { corrections: [], segments: [], flags: [] };
      for (const event of ordered) {
        const step = applyEvent(state, event, scenario.catalog);
        state = step.state;
        perEvent.corrections.push(...step.output.corrections);
        perEvent.segments.push(...step.output.segments);
        perEvent.flags.push(...step.output.flags);
      }
      const batched = applyEvents(emptyState(), ordered, scenario.catalog);

      expect(batched.state, `seed ${seed}`).toEqual(state);
      expect(batched.output, `seed ${seed}`).toEqual(perEvent);
    }
  });

  it('same input, same output', () => {
    for (const seed of seeds.slice(0, 100)) {
      const first = runIncrementally(randomScenario(seed));
      const second = runIncrementally(randomScenario(seed));
      expect(second.outputs, `seed ${seed}`).toEqual(first.outputs);
      expect(second.timeline.ledger.snapshot(), `seed ${seed}`).toEqual(
        first.timeline.ledger.snapshot(),
      );
    }
  });

  it('segments never overlap', () => {
    for (const seed of seeds) {
      const scenario = randomScenario(seed);
      const { timeline } = runIncrementally(scenario);
      const { segments } = timeline.ledger.snapshot();
      expect(findOverlap(segments), `seed ${seed}`).toBeNull();
      for (const segment of segments) {
        if (segment.status === 'closed') {
          expect(segment.endAt, `seed ${seed}`).toBeGreaterThanOrEqual(segment.startAt);
        }
      }
    }
  });

  it('children lie inside parents', () => {
    let checked = 0;
    for (const seed of seeds) {
      const scenario = randomScenario(seed);
      checked += 1;
      const { timeline } = runIncrementally(scenario);
      expect(findEscapedChild(timeline.ledger.snapshot().segments), `seed ${seed}`).toBeNull();
    }
    expect(checked).toBe(CASES);
  });

  it('corrections have unique slots', () => {
    for (const seed of seeds) {
      const { timeline } = runIncrementally(randomScenario(seed));
      const slots = timeline.ledger
        .snapshot()
        .corrections.map((c) => `${c.position.at}/${c.position.seq}/${c.ordinal}`);
      expect(new Set(slots).size, `seed ${seed}`).toBe(slots.length);
    }
  });
});
