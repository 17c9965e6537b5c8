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
  return { version: 1, open: {}, lastActivityAt: null, position: null, appliedSeq: 0 };
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
  };
}

function formatPosition(position: Position | null): string {
  return position === null ? 'null' : `(${position.at}, ${position.seq})`;
}
