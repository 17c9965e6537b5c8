/**
 * `absorbsLateEvent`: a late POINT event with no auto-close decision after
 * it counts as folded without a rewind. The cases compare the state and
 * derived rows that absorption or a rewind leaves with a full replay of the
 * same events in position order.
 */
import { describe, expect, it } from 'vitest';

import { absorbsLateEvent } from '../../src/domain/pairing/engine.js';
import {
  advanceTo,
  applyEvent,
  DerivedLedger,
  emptyState,
  positionOfEvent,
  ReferenceTimeline,
  restoreState,
  type AutoClosePolicy,
  type EngineEvent,
  type EngineState,
  type IncomingEvent,
  type PairCatalog,
  type PairTypeDefinition,
} from '../../src/domain/pairing/index.js';
import { catalogOf, replayInOrder } from '../support/engine.js';
import { seededRandom } from '../support/random.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const BASE = Date.parse('2024-03-01T08:00:00Z');
const LIMITS = { clockSkewMs: 5 * MINUTE, latenessHorizonMs: 7 * DAY };

function catalogWith(sessionPolicy: AutoClosePolicy, overrides: ReadonlyMap<string, AutoClosePolicy> = new Map()): PairCatalog {
  const definitions: PairTypeDefinition[] = [
    { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: sessionPolicy },
    {
      name: 'task',
      startType: 'task_started',
      endType: 'task_ended',
      parent: 'session',
      autoClose: { timeoutSeconds: 20 * 60, endAt: 'LAST_ACTIVITY' },
    },
  ];
  return catalogOf(definitions, overrides);
}

function event(seq: number, minute: number, role: EngineEvent['role'], pairType: string | null = null): EngineEvent {
  return {
    id: `ev-${seq}`,
    seq,
    type: pairType === null ? 'heartbeat' : `${pairType}_${role === 'START' ? 'started' : 'ended'}`,
    role,
    pairType,
    pairKey: '',
    occurredAt: BASE + minute * MINUTE,
    ignored: false,
  };
}

describe('absorbsLateEvent after a policy change', () => {
  // The session's default timeout is 60 min. The user then shortens it to
  // 10 min (setAutoClosePreference), and the settle that follows closes
  // nothing, because the only deadline (heartbeat + 10 min) is still ahead.
  const longPolicy = catalogWith({ timeoutSeconds: 60 * 60, endAt: 'LAST_ACTIVITY' });
  const shortPolicy = catalogWith(
    { timeoutSeconds: 60 * 60, endAt: 'LAST_ACTIVITY' },
    new Map([['session', { timeoutSeconds: 10 * 60, endAt: 'LAST_ACTIVITY' as const }]]),
  );
  const start = event(1, 0, 'START', 'session');
  const heartbeat = event(2, 50, 'POINT');
  const late = event(3, 5, 'POINT');
  const now = BASE + 56 * MINUTE;

  function stateBeforeLateEvent(): { state: EngineState; ledger: DerivedLedger } {
    const ledger = new DerivedLedger();
    let state = emptyState();
    for (const next of [start, heartbeat]) {
      const step = applyEvent(state, next, longPolicy);
      ledger.applyOutput(step.output);
      state = step.state;
    }
    // The settle after the preference change, under the new policy.
    const settled = advanceTo(state, now, shortPolicy);
    ledger.applyOutput(settled.output);
    return { state: settled.state, ledger };
  }

  it('rewind matches a replay', () => {
    const { ledger } = stateBeforeLateEvent();
    const from = positionOfEvent(late);
    ledger.truncateFrom(from);
    let state = restoreState({
      openSegments: ledger.openSegmentsAt(from),
      lastActivityAt: start.occurredAt,
      position: positionOfEvent(start),
      appliedSeq: start.seq,
      lastAutoCloseAt: from,
    });
    for (const next of [late, heartbeat]) {
      const step = applyEvent(state, next, shortPolicy);
      ledger.applyOutput(step.output);
      state = step.state;
    }
    const settled = advanceTo(state, now, shortPolicy);
    ledger.applyOutput(settled.output);

    const replayed = replayInOrder([start, heartbeat, late], shortPolicy, now);
    expect(ledger.snapshot()).toEqual(replayed.snapshot);
  });

  it('needs a reset bound', () => {
    const { state } = stateBeforeLateEvent();
    const replayed = replayInOrder([start, heartbeat, late], shortPolicy, now);

    // The replay closes the session at 15 min (late heartbeat + 10 min),
    // ending it at the late heartbeat, while the state still has it open.
    expect(Object.keys(replayed.state.open)).toEqual([]);
    expect(Object.keys(state.open)).toEqual(['session\u0000']);
    // By the bound that the 60 min policy left, no auto-close follows the
    // heartbeat, so that bound alone would absorb it. The service resets the
    // bound to the position when the policies changed, and then it rewinds.
    expect(absorbsLateEvent(state, late)).toBe(true);
    expect(absorbsLateEvent({ ...state, lastAutoCloseAt: state.position }, late)).toBe(false);
  });
});

/**
 * Heartbeat-heavy streams with short timeouts, equal instants, events
 * without `occurredAt` (receipt time), future timestamps and some events far
 * enough back to fall beyond a one-hour horizon. With one catalog, the
 * reference timeline (which absorbs) must equal a full replay.
 */
describe('absorbsLateEvent bounds', () => {
  const catalog = catalogWith({ timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' });
  const folded = applyEvent(emptyState(), event(1, 10, 'POINT'), catalog).state;

  it('absorbs an earlier point', () => {
    expect(absorbsLateEvent(folded, event(2, 5, 'POINT'))).toBe(true);
  });

  it('returns false at the position', () => {
    expect(absorbsLateEvent(folded, event(1, 10, 'POINT'))).toBe(false);
  });

  it('returns false without a decision bound', () => {
    // States saved before lastAutoCloseAt existed lack the field.
    const { lastAutoCloseAt: _bound, ...saved } = folded;
    expect(absorbsLateEvent(saved, event(2, 5, 'POINT'))).toBe(false);
  });
});

describe('absorbsLateEvent with one catalog', () => {
  const limits = { clockSkewMs: 5 * MINUTE, latenessHorizonMs: 60 * MINUTE };

  it('dense heartbeats equal replay', () => {
    let absorbed = 0;
    let ignored = 0;
    for (let seed = 1; seed <= 1500; seed += 1) {
      const random = seededRandom(seed * 2654435761);
      const endAt = (): 'LAST_ACTIVITY' | 'DEADLINE' => (random() < 0.5 ? 'LAST_ACTIVITY' : 'DEADLINE');
      const catalog = catalogWith(
        { timeoutSeconds: (1 + Math.floor(random() * 4)) * 5 * 60, endAt: endAt() },
        random() < 0.5 ? new Map([['task', { timeoutSeconds: 7 * 60, endAt: endAt() }]]) : new Map(),
      );
      const timeline = new ReferenceTimeline(catalog, limits);
      let now = BASE;
      const count = 5 + Math.floor(random() * 30);
      for (let index = 0; index < count; index += 1) {
        const roll = random();
        const minute = Math.floor(random() * 180);
        let role: EngineEvent['role'] = 'END';
        if (roll < 0.5) {
          role = 'POINT';
        } else if (roll < 0.8) {
          role = 'START';
        }
        const pairType = role === 'POINT' ? null : random() < 0.5 ? 'session' : 'task';
        const incoming: IncomingEvent = {
          id: `ev-${index}`,
          type: pairType === null ? 'heartbeat' : `${pairType}_${role === 'START' ? 'started' : 'ended'}`,
          role,
          pairType,
          pairKey: '',
          occurredAt: random() < 0.1 ? null : random() < 0.05 ? now + 3 * MINUTE : BASE + minute * MINUTE,
        };
        if (random() < 0.5) {
          now += Math.floor(random() * 20) * MINUTE;
        }
        now = Math.max(now, incoming.occurredAt ?? now);
        const received = timeline.receive(incoming, now);
        absorbed += received.absorbed ? 1 : 0;
        ignored += received.event.ignored ? 1 : 0;
        if (random() < 0.3) {
          now += Math.floor(random() * 30) * MINUTE;
          timeline.advanceTo(now);
        }
      }
      const finalNow = now + Math.floor(random() * 120) * MINUTE;
      timeline.advanceTo(finalNow);
      const replayed = replayInOrder(timeline.events(), catalog, finalNow);
      expect(timeline.ledger.snapshot(), `seed ${seed}`).toEqual(replayed.snapshot);
      const { lastAutoCloseAt: _bound, ...rest } = timeline.state;
      const { lastAutoCloseAt: _exact, ...expected } = replayed.state;
      expect(rest, `seed ${seed}`).toEqual(expected);
    }
    // The streams must reach the absorbing path and the ignored one.
    expect(absorbed).toBeGreaterThan(500);
    expect(ignored).toBeGreaterThan(50);
  });
});
