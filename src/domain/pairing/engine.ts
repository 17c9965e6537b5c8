/**
 * The pairing engine: a deterministic fold over one user's events in position
 * order `(occurredAt, seq)`. Every function here is pure. Time comes in as an
 * argument, and a step returns a new state without changing the one passed in.
 */
import { deadlineOf, FoldStep, instanceKeyOf } from './fold-step.js';
import { comparePositions } from './position.js';
import type {
  EngineEvent,
  EngineState,
  EngineStep,
  Instant,
  OpenInstance,
  PairCatalog,
  Position,
  SegmentStart,
} from './types.js';

export { instanceKeyOf };

/** Returns the state of a user with no applied events. */
export function emptyState(): EngineState {
  return { version: 1, open: {}, lastActivityAt: null, position: null, appliedSeq: 0, lastAutoCloseAt: null };
}

/**
 * Applies one client event. Before a non-ignored event, it auto-closes every
 * instance whose deadline is at or before the event's `occurredAt`, because an
 * auto-close decision at `(deadline, -1)` sorts before any event at that
 * instant. An ignored event (LATE_BEYOND_HORIZON) changes no instance,
 * activity or position, and only raises `appliedSeq`.
 *
 * Throws a RangeError when a non-ignored event is not after the state's
 * position: the caller must first restore the state at the event's position
 * (see `restoreState`) and refold what follows.
 */
export function applyEvent(state: EngineState, event: EngineEvent, catalog: PairCatalog): EngineStep {
  const step = new FoldStep(state, catalog);
  if (event.ignored) {
    step.skipIgnored(event);
  } else {
    step.applyClientEvent(event);
  }
  return step.finish();
}

/**
 * Applies client events in the order given, as `applyEvent` does one by one,
 * and returns the outputs of all of them as one output, in order. The state
 * is copied once for the whole list instead of once per event, so a fold of
 * many events over many open instances does not copy them for every event.
 */
export function applyEvents(state: EngineState, events: readonly EngineEvent[], catalog: PairCatalog): EngineStep {
  const step = new FoldStep(state, catalog);
  for (const event of events) {
    if (event.ignored) {
      step.skipIgnored(event);
    } else {
      step.applyClientEvent(event);
    }
  }
  return step.finish();
}

/**
 * Auto-closes every open instance whose deadline is at or before `now`, in
 * deadline order. Ties go to parents before children, then the earlier start
 * position, then the smaller instance key. The state's position moves to the
 * last decision, never to `now` itself.
 */
export function advanceTo(state: EngineState, now: Instant, catalog: PairCatalog): EngineStep {
  const step = new FoldStep(state, catalog);
  step.autoCloseThrough(now);
  return step.finish();
}

/** Returns the earliest auto-close deadline among the open instances, or null when none is open. */
export function nextDeadline(state: EngineState, catalog: PairCatalog): Instant | null {
  let earliest: Instant | null = null;
  for (const instance of Object.values(state.open)) {
    const deadline = deadlineOf(instance, state.lastActivityAt, catalog);
    if (earliest === null || deadline < earliest) {
      earliest = deadline;
    }
  }
  return earliest;
}

/**
 * Returns whether a late client event, one before the state's position, may
 * be counted as applied without a rewind, because folding it at its place
 * would change no segment, correction or flag, nor the state.
 *
 * That holds for a non-ignored POINT event when the fold has decided no
 * auto-close after the event's position. Such an event only moves the last
 * activity. The state is past the event's position, and auto-closes are the
 * only decisions apart from client events. So a client event already folded
 * follows the late one, and that event moves the last activity to its own
 * time, which is no earlier. Between the two, the only decisions that
 * depend on the last activity are auto-closes, and the fold decided none
 * there. An auto-close due at or before the late event's time was decided
 * before the late event's position, with the same end either way.
 */
export function absorbsLateEvent(state: EngineState, event: EngineEvent): boolean {
  if (event.ignored || event.role !== 'POINT' || state.position === null || state.lastAutoCloseAt === undefined) {
    return false;
  }
  const position = { at: event.occurredAt, seq: event.seq };
  if (comparePositions(position, state.position) >= 0) {
    return false;
  }
  return state.lastAutoCloseAt === null || comparePositions(position, state.lastAutoCloseAt) > 0;
}

/** Stored facts about a user at a restore position `p`. */
export interface RestoreInput {
  /**
   * Segments open at `p`: start position before `p`, and not closed or closed
   * by a decision at or after `p`.
   */
  openSegments: readonly SegmentStart[];
  /** Latest `occurredAt` of the non-ignored client events before `p`, or null. */
  lastActivityAt: Instant | null;
  /** Greatest position of the non-ignored client events before `p`, or null. */
  position: Position | null;
  /** Highest seq of the client events before `p`, ignored ones included; 0 when none. */
  appliedSeq: number;
  /** A position at or after the last auto-close decision before `p` (`p` itself will do), or null when there was none. */
  lastAutoCloseAt?: Position | null;
  /** One more than the greatest ordinal of the corrections at `position`; absent when none sit there. */
  nextOrdinal?: number;
}

/**
 * Rebuilds the engine state at a restore position from stored segments, so a
 * late event can be applied at its place. Each instance gets its parent's
 * instance key from the open segment named by `parentSegmentId`.
 *
 * Throws when the segments are inconsistent: two open segments with the same
 * pair type and key, an open child whose parent segment is not open, or a
 * segment that starts after `position`.
 */
export function restoreState(input: RestoreInput): EngineState {
  const byId = new Map(input.openSegments.map((segment) => [segment.segmentId, segment]));
  const open: Record<string, OpenInstance> = {};

  for (const segment of input.openSegments) {
    const key = instanceKeyOf(segment.pairType, segment.pairKey);
    if (open[key] !== undefined) {
      throw new Error(
        `Segments ${open[key].segmentId} and ${segment.segmentId} are both open for pair type ${JSON.stringify(segment.pairType)} and key ${JSON.stringify(segment.pairKey)}.`,
      );
    }
    const start = { at: segment.startAt, seq: segment.startSeq };
    if (input.position === null || comparePositions(start, input.position) > 0) {
      throw new Error(
        `Open segment ${segment.segmentId} starts at (${start.at}, ${start.seq}), after the restored position ${formatPosition(input.position)}.`,
      );
    }

    let parentKey: string | null = null;
    if (segment.parentSegmentId !== null) {
      const parent = byId.get(segment.parentSegmentId);
      if (parent === undefined) {
        throw new Error(
          `Open segment ${segment.segmentId} has parent segment ${segment.parentSegmentId}, which is not open.`,
        );
      }
      parentKey = instanceKeyOf(parent.pairType, parent.pairKey);
    }

    open[key] = {
      segmentId: segment.segmentId,
      pairType: segment.pairType,
      pairKey: segment.pairKey,
      startAt: segment.startAt,
      startSeq: segment.startSeq,
      startEventId: segment.startEventId,
      parentKey,
      parentSegmentId: segment.parentSegmentId,
    };
  }

  return {
    version: 1,
    open,
    lastActivityAt: input.lastActivityAt,
    position: input.position,
    appliedSeq: input.appliedSeq,
    ...(input.lastAutoCloseAt === undefined ? {} : { lastAutoCloseAt: input.lastAutoCloseAt }),
    ...(input.nextOrdinal === undefined ? {} : { nextOrdinal: input.nextOrdinal }),
  };
}

function formatPosition(position: Position | null): string {
  return position === null ? 'null' : `(${position.at}, ${position.seq})`;
}
