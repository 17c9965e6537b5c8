/**
 * Times the pairing engine alone on a backfill: one user's task starts, each
 * with its own pair key, folded in one step, then closed by one advance past
 * every deadline. Prints the time per size, so growth with the number of
 * open instances shows. A second table times one request's work over open
 * tasks in a state read back from JSON: a step of 1,000 more task
 * starts, and the next deadline. Run with `npx tsx bench/fold.ts`.
 */
import { advanceTo, applyEvents, emptyState, nextDeadline, type EngineEvent, type EngineState, type PairTypeDefinition } from '../src/domain/pairing/index.js';
import { catalogOf } from '../tests/support/engine.js';

const DEFINITIONS: PairTypeDefinition[] = [
  { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
  { name: 'task', startType: 'task_started', endType: 'task_ended', parent: 'session', autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
];
const BASE = Date.parse('2026-01-01T00:00:00Z');

const catalog = catalogOf(DEFINITIONS);

/** Returns task starts with seq `first + 1` onward, 10 ms apart. */
function taskStarts(first: number, count: number): EngineEvent[] {
  return Array.from({ length: count }, (_, offset) => {
    const index = first + offset;
    return {
      id: `e${index}`,
      seq: index + 1,
      type: 'task_started',
      occurredAt: BASE + index * 10,
      role: 'START',
      pairType: 'task',
      pairKey: `k${index}`,
      ignored: false,
    };
  });
}

console.log('open tasks  fold ms  close all ms');
for (const size of [1000, 4000, 16_000]) {
  const events = taskStarts(0, size);
  let started = performance.now();
  const folded = applyEvents(emptyState(), events, catalog);
  const foldMs = performance.now() - started;
  started = performance.now();
  const closed = advanceTo(folded.state, BASE + 30 * 86_400_000, catalog);
  const closeMs = performance.now() - started;
  const stillOpen = Object.keys(closed.state.open).length;
  if (stillOpen !== 0) {
    throw new Error(`${stillOpen} of ${size} instances are still open after advancing past every deadline; the engine result is wrong.`);
  }
  console.log(`${String(size).padStart(10)}  ${foldMs.toFixed(0).padStart(7)}  ${closeMs.toFixed(0).padStart(12)}`);
}

const BATCH = 1000;
console.log('');
console.log(`open before  fold of ${BATCH} ms  next deadline ms`);
for (const size of [1000, 10_000, 40_000]) {
  const folded = applyEvents(emptyState(), taskStarts(0, size), catalog).state;
  const state = JSON.parse(JSON.stringify(folded)) as EngineState;
  let started = performance.now();
  const step = applyEvents(state, taskStarts(size, BATCH), catalog);
  const foldMs = performance.now() - started;
  started = performance.now();
  nextDeadline(step.state, catalog);
  const deadlineMs = performance.now() - started;
  console.log(`${String(size + 1).padStart(11)}  ${foldMs.toFixed(0).padStart(15)}  ${deadlineMs.toFixed(0).padStart(16)}`);
}
