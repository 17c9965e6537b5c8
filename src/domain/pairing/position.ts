/**
 * Positions order everything the engine applies: first by instant, then by
 * seq. Client events use their arrival seq (from 1), and an auto-close
 * decision at a deadline uses seq -1, so it sorts before any event at the same
 * instant.
 */
import type { EngineEvent, Instant, Position } from './types.js';

/** Seq of an auto-close decision. */
export const AUTO_CLOSE_SEQ = -1;

/** Compares two positions: negative when `a` comes first, 0 when equal, positive otherwise. */
export function comparePositions(a: Position, b: Position): number {
  if (a.at !== b.at) {
    return a.at < b.at ? -1 : 1;
  }
  return a.seq - b.seq;
}

/** Returns the position at which a client event is applied. */
export function positionOfEvent(event: Pick<EngineEvent, 'occurredAt' | 'seq'>): Position {
  return { at: event.occurredAt, seq: event.seq };
}

/** Returns the position of the auto-close decision taken at a deadline. */
export function autoClosePosition(deadline: Instant): Position {
  return { at: deadline, seq: AUTO_CLOSE_SEQ };
}
