/**
 * An in-memory model of the derived rows that storage keeps for one user:
 * segments, corrections and ORPHAN_END flags, each with the position that
 * truncation compares against. It is the reference for the PostgreSQL
 * implementation, which must produce the same rows:
 *
 * - a segment sits at its start position `(startAt, startSeq)` and, once
 *   closed, at its close decision position `decidedAt`;
 * - a correction sits at `position` (ties ordered by `ordinal`);
 * - an ORPHAN_END flag sits at its event's position.
 *
 * `truncateFrom(p)` removes everything derived at or after `p`; afterwards the
 * open segments are exactly the instances open at `p`.
 */
import { comparePositions } from './position.js';
import type {
  Correction,
  EndReason,
  EngineOutput,
  EventFlag,
  Instant,
  Position,
  SegmentStart,
} from './types.js';

export type SegmentRecord = OpenSegmentRecord | ClosedSegmentRecord;

/** A segment's start as storage keeps it, with its number of ancestors. */
export interface StoredSegmentStart extends SegmentStart {
  depth: number;
}

export interface OpenSegmentRecord extends StoredSegmentStart {
  status: 'open';
}

export interface ClosedSegmentRecord extends StoredSegmentStart {
  status: 'closed';
  endAt: Instant;
  endEventId: string;
  endReason: EndReason;
  decidedAt: Position;
}

/** Every derived row, sorted so that two equal ledgers compare equal. */
export interface LedgerSnapshot {
  /** By start position, then parents before children, then segment id. */
  segments: SegmentRecord[];
  /** By position, then ordinal. */
  corrections: Correction[];
  /** By position. */
  flags: EventFlag[];
}

export class DerivedLedger {
  private readonly segmentsById = new Map<string, SegmentRecord>();
  private readonly correctionsById = new Map<string, Correction>();
  private readonly flagsByEventId = new Map<string, EventFlag>();

  /**
   * Stores the output of one engine step, in order. Throws when a row already
   * exists or a closed segment is unknown or closed, which means the rows at or
   * after the step's position were not truncated first.
   */
  applyOutput(output: EngineOutput): void {
    for (const change of output.segments) {
      if (change.kind === 'opened') {
        if (this.segmentsById.has(change.segmentId)) {
          throw new Error(`Segment ${change.segmentId} is already stored.`);
        }
        const { kind: _kind, ...start } = change;
        this.segmentsById.set(change.segmentId, { ...start, status: 'open' });
        continue;
      }

      const segment = this.segmentsById.get(change.segmentId);
      if (segment === undefined || segment.status !== 'open') {
        throw new Error(`Segment ${change.segmentId} is not stored as open, so it cannot close.`);
      }
      this.segmentsById.set(change.segmentId, {
        ...startOf(segment),
        status: 'closed',
        endAt: change.endAt,
        endEventId: change.endEventId,
        endReason: change.endReason,
        decidedAt: change.decidedAt,
      });
    }

    for (const correction of output.corrections) {
      if (this.correctionsById.has(correction.id)) {
        throw new Error(`Correction ${correction.id} is already stored.`);
      }
      this.correctionsById.set(correction.id, correction);
    }

    for (const flag of output.flags) {
      this.flagsByEventId.set(flag.eventId, flag);
    }
  }

  /**
   * Removes everything derived at or after `from`: deletes segments that start
   * there or later, reopens segments whose close was decided there or later,
   * deletes corrections positioned there or later and clears the ORPHAN_END
   * flags of events positioned there or later.
   */
  truncateFrom(from: Position): void {
    for (const [id, segment] of this.segmentsById) {
      if (comparePositions(startPositionOf(segment), from) >= 0) {
        this.segmentsById.delete(id);
      } else if (segment.status === 'closed' && comparePositions(segment.decidedAt, from) >= 0) {
        this.segmentsById.set(id, { ...startOf(segment), status: 'open' });
      }
    }
    for (const [id, correction] of this.correctionsById) {
      if (comparePositions(correction.position, from) >= 0) {
        this.correctionsById.delete(id);
      }
    }
    for (const [eventId, flag] of this.flagsByEventId) {
      if (comparePositions(flag.position, from) >= 0) {
        this.flagsByEventId.delete(eventId);
      }
    }
  }

  /**
   * Returns the segments open at `at`: started before it, and either still
   * open or closed by a decision at or after it. The result is the same before
   * and after `truncateFrom(at)`.
   */
  openSegmentsAt(at: Position): SegmentStart[] {
    const open: SegmentStart[] = [];
    for (const segment of this.segmentsById.values()) {
      if (comparePositions(startPositionOf(segment), at) >= 0) {
        continue;
      }
      if (segment.status === 'open' || comparePositions(segment.decidedAt, at) >= 0) {
        open.push(startOf(segment));
      }
    }
    return open.sort(
      (a, b) =>
        comparePositions(startPositionOf(a), startPositionOf(b)) ||
        compareStrings(a.segmentId, b.segmentId),
    );
  }

  /** Returns a sorted copy of every derived row. */
  snapshot(): LedgerSnapshot {
    const depths = new Map<string, number>();
    for (const segment of this.segmentsById.values()) {
      depths.set(segment.segmentId, this.depthOf(segment));
    }
    const segments = [...this.segmentsById.values()].sort(
      (a, b) =>
        comparePositions(startPositionOf(a), startPositionOf(b)) ||
        (depths.get(a.segmentId) ?? 0) - (depths.get(b.segmentId) ?? 0) ||
        compareStrings(a.segmentId, b.segmentId),
    );
    const corrections = [...this.correctionsById.values()].sort(
      (a, b) => comparePositions(a.position, b.position) || a.ordinal - b.ordinal,
    );
    const flags = [...this.flagsByEventId.values()].sort((a, b) =>
      comparePositions(a.position, b.position),
    );
    return { segments, corrections, flags };
  }

  /** Returns the number of stored ancestors of a segment. */
  private depthOf(segment: SegmentStart): number {
    let depth = 0;
    let parentId = segment.parentSegmentId;
    while (parentId !== null) {
      const parent = this.segmentsById.get(parentId);
      if (parent === undefined || depth > this.segmentsById.size) {
        break;
      }
      depth += 1;
      parentId = parent.parentSegmentId;
    }
    return depth;
  }
}

/** Returns the start position of a stored segment. */
export function startPositionOf(segment: SegmentStart): Position {
  return { at: segment.startAt, seq: segment.startSeq };
}

function startOf(segment: StoredSegmentStart): StoredSegmentStart {
  return {
    segmentId: segment.segmentId,
    pairType: segment.pairType,
    pairKey: segment.pairKey,
    startAt: segment.startAt,
    startSeq: segment.startSeq,
    startEventId: segment.startEventId,
    parentSegmentId: segment.parentSegmentId,
    depth: segment.depth,
  };
}

function compareStrings(a: string, b: string): number {
  if (a === b) {
    return 0;
  }
  return a < b ? -1 : 1;
}
