/**
 * The deterministic event mix of the intake benchmarks. Each user's stream is
 * a function of the seed and the user's index. It has sessions with nested
 * keyed tasks (at most two open at once), heartbeats as point events, some
 * late heartbeats (one to three minutes back) and some re-sent events (same
 * client id and content). It also has the defects real clients produce now
 * and then: a task started outside a session, a session ended with tasks
 * still open, and a task end with no start. Times are offsets from the
 * stream's start, so a run can place the stream just before its own "now".
 */
import { createRandom, deriveSeed, type Random } from '../lib/prng.js';

export type EventKind = 'new' | 'late' | 'duplicate';

export interface BenchEvent {
  /** Client id, unique per user except for re-sent events. */
  id: string;
  type: string;
  pairKey: string | null;
  /** Simulated time since the start of the user's stream, in ms. */
  offsetMs: number;
  meta: Record<string, unknown> | null;
  kind: EventKind;
}

export interface WorkloadShape {
  /** Share of events that re-send an earlier event of the same user. */
  duplicateRate: number;
  /** Share of events that are heartbeats from one to three minutes back. */
  lateRate: number;
  /** Simulated time the stream should span, in ms; the gap between events follows from it. */
  spanMs: number;
}

export const DEFAULT_SHAPE: WorkloadShape = {
  duplicateRate: 0.02,
  lateRate: 0.01,
  spanMs: 20 * 60_000,
};

const TASK_KEYS = ['edit', 'review', 'build', 'test', 'deploy'];
const DEVICES = ['web', 'ios', 'android', 'desktop'];
const RECENT_EVENTS_FOR_DUPLICATES = 50;
const LATE_MIN_MS = 60_000;
const LATE_MAX_MS = 180_000;

interface StreamState {
  random: Random;
  idPrefix: string;
  events: BenchEvent[];
  sent: BenchEvent[];
  nextId: number;
  offsetMs: number;
  sessionOpen: boolean;
  openTasks: string[];
  sessionBudget: number;
}

/** Generates `count` events for the user with index `userIndex`; client ids start with `idPrefix`. */
export function generateUserStream(
  seed: number,
  userIndex: number,
  idPrefix: string,
  count: number,
  shape: WorkloadShape = DEFAULT_SHAPE,
): BenchEvent[] {
  const state: StreamState = {
    random: createRandom(deriveSeed(seed, `intake-user:${userIndex}`)),
    idPrefix,
    events: [],
    sent: [],
    nextId: 0,
    offsetMs: 0,
    sessionOpen: false,
    openTasks: [],
    sessionBudget: 0,
  };
  const meanGapMs = Math.min(2000, Math.max(20, shape.spanMs / Math.max(1, count)));

  while (state.events.length < count) {
    const roll = state.random.next();
    if (roll < shape.duplicateRate && state.sent.length > 0) {
      const recent = state.sent.slice(-RECENT_EVENTS_FOR_DUPLICATES);
      state.events.push({ ...state.random.pick(recent), kind: 'duplicate' });
      continue;
    }
    if (roll < shape.duplicateRate + shape.lateRate && state.offsetMs > LATE_MAX_MS) {
      const back = state.random.integer(LATE_MIN_MS, LATE_MAX_MS);
      emit(state, 'heartbeat', null, { late: true }, state.offsetMs - back, 'late');
      continue;
    }

    state.offsetMs += state.random.integer(Math.round(meanGapMs * 0.2), Math.round(meanGapMs * 1.8));
    nextLiveEvent(state);
  }
  return state.events;
}

function emit(
  state: StreamState,
  type: string,
  pairKey: string | null,
  meta: Record<string, unknown> | null,
  offsetMs: number,
  kind: EventKind,
): void {
  const event: BenchEvent = { id: `${state.idPrefix}${state.nextId}`, type, pairKey, offsetMs, meta, kind };
  state.nextId += 1;
  state.events.push(event);
  state.sent.push(event);
  if (state.sent.length > RECENT_EVENTS_FOR_DUPLICATES * 2) {
    state.sent.splice(0, RECENT_EVENTS_FOR_DUPLICATES);
  }
}

function startTask(state: StreamState): void {
  const free = TASK_KEYS.filter((key) => !state.openTasks.includes(key));
  const key = state.random.pick(free);
  state.openTasks.push(key);
  emit(state, 'task_started', key, { project: `p${state.random.integer(0, 9)}` }, state.offsetMs, 'new');
}

function endTask(state: StreamState): void {
  const key = state.random.pick(state.openTasks);
  state.openTasks = state.openTasks.filter((open) => open !== key);
  emit(state, 'task_ended', key, null, state.offsetMs, 'new');
}

/** Emits the next in-order event of the session state machine. */
function nextLiveEvent(state: StreamState): void {
  const { random } = state;
  if (!state.sessionOpen) {
    state.sessionOpen = true;
    state.sessionBudget = random.integer(30, 150);
    if (random.chance(0.03)) {
      // The server synthesises the missing session start (MISSING_PARENT_START).
      startTask(state);
    } else {
      emit(state, 'session_started', null, { device: random.pick(DEVICES) }, state.offsetMs, 'new');
    }
    return;
  }

  if (state.sessionBudget <= 0) {
    // Tasks usually end before their session; otherwise the server closes them (CHILD_CLOSED_WITH_PARENT).
    if (state.openTasks.length > 0 && !random.chance(0.1)) {
      endTask(state);
      return;
    }
    emit(state, 'session_ended', null, null, state.offsetMs, 'new');
    state.sessionOpen = false;
    state.openTasks = [];
    return;
  }

  state.sessionBudget -= 1;
  const roll = random.next();
  if (roll < 0.005) {
    // An end with no open instance (ORPHAN_END).
    const closedKeys = TASK_KEYS.filter((key) => !state.openTasks.includes(key));
    emit(state, 'task_ended', random.pick(closedKeys), null, state.offsetMs, 'new');
  } else if (roll < 0.55) {
    emit(state, 'heartbeat', null, null, state.offsetMs, 'new');
  } else if (roll < 0.78 && state.openTasks.length < 2) {
    startTask(state);
  } else if (state.openTasks.length > 0) {
    endTask(state);
  } else {
    startTask(state);
  }
}

export interface EventClass {
  role: 'START' | 'END' | 'POINT';
  pairType: string | null;
}

/** Role and pair type of each start and end type of the built-in pair types. */
export const BUILT_IN_EVENT_TYPES: ReadonlyMap<string, EventClass> = new Map([
  ['session_started', { role: 'START', pairType: 'session' }],
  ['session_ended', { role: 'END', pairType: 'session' }],
  ['task_started', { role: 'START', pairType: 'task' }],
  ['task_ended', { role: 'END', pairType: 'task' }],
]);

const POINT: EventClass = { role: 'POINT', pairType: null };

/** Role and pair type of an event type; types of no pair type are point events. */
export function classify(type: string, eventTypes: ReadonlyMap<string, EventClass> = BUILT_IN_EVENT_TYPES): EventClass {
  return eventTypes.get(type) ?? POINT;
}

/** Counts of each kind of event in a set of streams. */
export function countKinds(streams: readonly (readonly BenchEvent[])[]): Record<EventKind, number> {
  const counts: Record<EventKind, number> = { new: 0, late: 0, duplicate: 0 };
  for (const stream of streams) {
    for (const event of stream) {
      counts[event.kind] += 1;
    }
  }
  return counts;
}
