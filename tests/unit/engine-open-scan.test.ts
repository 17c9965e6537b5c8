/**
 * Work of one engine step over many open instances. A step may enumerate the
 * open instances a few times, but not once per event, or a batch of 1,000
 * events over 10,000 open pairs costs 10 million visits. The tests count the
 * entries that `Object.keys`, `Object.values` and `Object.entries` return
 * during a step, which needs no timing. A step that opens and closes
 * nothing must not even copy them.
 */
import { describe, expect, it, vi } from 'vitest';

import { advanceTo, applyEvents, emptyState, type EngineEvent, type EngineState, type PairTypeDefinition } from '../../src/domain/pairing/index.js';
import { catalogOf } from '../support/engine.js';

const BASE = Date.parse('2026-01-01T00:00:00Z');
const OPEN_TASKS = 5000;
const BATCH = 1000;
/** Enumerated entries allowed per step, as a multiple of the open instances and events. */
const VISITS_PER_INSTANCE = 4;

const DEFINITIONS: PairTypeDefinition[] = [
  { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
  { name: 'task', startType: 'task_started', endType: 'task_ended', parent: 'session', autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
  { name: 'step', startType: 'step_started', endType: 'step_ended', parent: 'task', autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
];
const catalog = catalogOf(DEFINITIONS);

/** Builds events one millisecond apart, with seq from `firstSeq`. */
function eventsFrom(firstSeq: number, specs: ReadonlyArray<{ type: string; pairKey: string }>): EngineEvent[] {
  return specs.map((spec, index) => {
    const mapping = catalog.byEventType.get(spec.type)!;
    return {
      id: `e${firstSeq + index}`,
      seq: firstSeq + index,
      type: spec.type,
      occurredAt: BASE + firstSeq + index,
      role: mapping.role,
      pairType: mapping.pairType,
      pairKey: spec.pairKey,
      ignored: false,
    };
  });
}

/** Returns the state with one session and OPEN_TASKS tasks open, as read back from its JSON like a state from Redis. */
function stateWithOpenTasks(): EngineState {
  const starts = eventsFrom(
    1,
    Array.from({ length: OPEN_TASKS }, (_, index) => ({ type: 'task_started', pairKey: `open${index}` })),
  );
  const folded = applyEvents(emptyState(), starts, catalog).state;
  return JSON.parse(JSON.stringify(folded)) as EngineState;
}

/** Runs `run` and returns its result with the number of entries that the object enumerations returned meanwhile. */
function countEnumerated<T>(run: () => T): { result: T; visited: number } {
  let visited = 0;
  for (const name of ['keys', 'values', 'entries'] as const) {
    const original = Object[name] as (value: object) => unknown[];
    vi.spyOn(Object, name).mockImplementation((value: object) => {
      const result = original(value);
      visited += result.length;
      return result as never;
    });
  }
  try {
    return { result: run(), visited };
  } finally {
    vi.restoreAllMocks();
  }
}

describe('engine step over many open instances', () => {
  const bound = VISITS_PER_INSTANCE * (OPEN_TASKS + 1 + BATCH);

  it('task starts over open tasks', () => {
    const state = stateWithOpenTasks();
    const events = eventsFrom(
      OPEN_TASKS + 1,
      Array.from({ length: BATCH }, (_, index) => ({ type: 'task_started', pairKey: `new${index}` })),
    );
    const { result: step, visited } = countEnumerated(() => applyEvents(state, events, catalog));
    expect(Object.keys(step.state.open)).toHaveLength(1 + OPEN_TASKS + BATCH);
    expect(visited).toBeLessThanOrEqual(bound);
  });

  it('task ends over open tasks', () => {
    const state = stateWithOpenTasks();
    const events = eventsFrom(
      OPEN_TASKS + 1,
      Array.from({ length: BATCH }, (_, index) => ({ type: 'task_ended', pairKey: `open${index}` })),
    );
    const { result: step, visited } = countEnumerated(() => applyEvents(state, events, catalog));
    expect(step.output.segments.filter((change) => change.kind === 'closed')).toHaveLength(BATCH);
    expect(visited).toBeLessThanOrEqual(bound);
  });

  it('child starts after parent ends', () => {
    // Each round opens a task, a step inside it (its parent is the latest
    // task, because no task has the step's key), and ends the task, which
    // ends that step too. The round's second step then belongs to the latest
    // task still open, the last one opened before the batch.
    const state = stateWithOpenTasks();
    const rounds = BATCH / 4;
    const specs = Array.from({ length: rounds }, (_, index) => [
      { type: 'task_started', pairKey: `round${index}` },
      { type: 'step_started', pairKey: `first${index}` },
      { type: 'task_ended', pairKey: `round${index}` },
      { type: 'step_started', pairKey: `second${index}` },
    ]).flat();
    const events = eventsFrom(OPEN_TASKS + 1, specs);
    const { result: step, visited } = countEnumerated(() => applyEvents(state, events, catalog));

    const opened = step.output.segments.filter((change) => change.kind === 'opened');
    const taskOfKey = new Map(opened.filter((change) => change.pairType === 'task').map((change) => [change.pairKey, change.segmentId]));
    const lastOpenBefore = state.open[`task\u0000open${OPEN_TASKS - 1}`]!.segmentId;
    const expected = Array.from({ length: rounds }, (_, index) => [taskOfKey.get(`round${index}`), lastOpenBefore]).flat();
    const parents = opened.filter((change) => change.pairType === 'step').map((change) => change.parentSegmentId);
    expect(parents).toEqual(expected);
    expect(visited).toBeLessThanOrEqual(bound);
  });

  it('advance without due shares record', () => {
    const state = stateWithOpenTasks();

    const { result: step, visited } = countEnumerated(() => advanceTo(state, BASE + OPEN_TASKS + 60_000, catalog));

    expect(step.output.segments).toEqual([]);
    expect(step.state.open).toBe(state.open);
    expect(visited).toBe(0);
  });

  it('points share record', () => {
    const state = stateWithOpenTasks();
    const events = eventsFrom(OPEN_TASKS + 1, [{ type: 'task_started', pairKey: 'k' }]).map((event) => ({
      ...event,
      type: 'heartbeat',
      role: 'POINT' as const,
      pairType: null,
      pairKey: '',
    }));

    const step = applyEvents(state, events, catalog);

    expect(step.state.open).toBe(state.open);
    expect(step.state.lastActivityAt).toBe(events[0]!.occurredAt);
  });

  it('close carries pair type and start', () => {
    const state = stateWithOpenTasks();
    const opened = state.open['task\u0000open3']!;
    const events = eventsFrom(OPEN_TASKS + 1, [{ type: 'task_ended', pairKey: 'open3' }]);

    const step = applyEvents(state, events, catalog);

    expect(step.output.segments).toEqual([
      expect.objectContaining({ kind: 'closed', segmentId: opened.segmentId, pairType: 'task', startAt: opened.startAt }),
    ]);
    expect(state.open['task\u0000open3']).toBe(opened);
  });
});
