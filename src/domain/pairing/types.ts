/**
 * Types of the pairing engine.
 *
 * Terminology:
 * - instant: milliseconds since the Unix epoch, UTC.
 * - seq: a user's arrival counter. Every client event gets the next value when
 *   it is stored, so seq order is arrival order.
 * - position: `(at, seq)`, the order in which the engine applies things. Events
 *   are applied by `occurredAt`, ties broken by seq. An auto-close decision at a
 *   deadline has seq -1, so it sorts before any event at the same instant.
 * - instance: one open pair, identified by its instance key
 *   (`pairType` + NUL + `pairKey`).
 */

export type Instant = number;

export type AutoCloseEndAt = 'LAST_ACTIVITY' | 'DEADLINE';

export interface AutoClosePolicy {
  timeoutSeconds: number;
  endAt: AutoCloseEndAt;
}

export interface PairTypeDefinition {
  name: string;
  startType: string;
  endType: string;
  /** Name of the parent pair type, or null for a top-level pair type. */
  parent: string | null;
  autoClose: AutoClosePolicy;
}

export type EventRole = 'START' | 'END' | 'POINT';

export type CorrectionRule =
  | 'MISSING_PARENT_START'
  | 'CHILD_CLOSED_WITH_PARENT'
  | 'DUPLICATE_START'
  | 'ORPHAN_END'
  | 'AUTO_CLOSE'
  | 'LATE_EVENT'
  | 'LATE_BEYOND_HORIZON'
  | 'FUTURE_TIMESTAMP';

export type EndReason = 'CLIENT' | 'PARENT_CLOSED' | 'DUPLICATE_START' | 'AUTO_CLOSE';

export interface Position {
  at: Instant;
  seq: number;
}

/** A stored client event in the form the engine reads. */
export interface EngineEvent {
  id: string;
  seq: number;
  type: string;
  occurredAt: Instant;
  role: EventRole;
  /** Null for a point event. */
  pairType: string | null;
  /** Empty string when the client sent none. */
  pairKey: string;
  /**
   * True for events flagged LATE_BEYOND_HORIZON at intake: stored, but they
   * change no segment and do not count as activity.
   */
  ignored: boolean;
}

export interface OpenInstance {
  segmentId: string;
  pairType: string;
  pairKey: string;
  startAt: Instant;
  /** Seq of the client event that opened it, or that caused its synthesised start. */
  startSeq: number;
  /** Id of the start event (a client event or a MISSING_PARENT_START correction). */
  startEventId: string;
  /** Instance key of the parent instance, or null. */
  parentKey: string | null;
  parentSegmentId: string | null;
}

export interface EngineState {
  version: 1;
  /** Open instances by instance key. */
  open: Record<string, OpenInstance>;
  /** `occurredAt` of the user's last applied activity (non-ignored client event), or null. */
  lastActivityAt: Instant | null;
  /** Position of the last applied event or auto-close decision, or null when nothing was applied. */
  position: Position | null;
  /**
   * Highest client seq folded into this state (0 when none). Ignored events
   * count as folded, so a state is stale when a stored event has a higher seq.
   */
  appliedSeq: number;
  /**
   * A position at or after the last auto-close decision, or null when the
   * fold has made none. Absent when unknown, as in states saved before this
   * field existed.
   */
  lastAutoCloseAt?: Position | null;
  /**
   * The ordinal of the next correction at `position`, when corrections sit
   * there already. Absent when none do, and in a state saved before this
   * field existed.
   */
  nextOrdinal?: number;
}

/** Rules that make the engine synthesise an event. */
export type SynthesisRule =
  | 'MISSING_PARENT_START'
  | 'CHILD_CLOSED_WITH_PARENT'
  | 'DUPLICATE_START'
  | 'AUTO_CLOSE';

/** An event the engine synthesised. Ids are derived from the cause, so a replay yields the same ids. */
export interface Correction {
  id: string;
  type: string;
  role: 'START' | 'END';
  pairType: string;
  pairKey: string;
  occurredAt: Instant;
  rule: SynthesisRule;
  /**
   * The client event that caused it. For AUTO_CLOSE it is the start event of
   * the instance closed, and for a child closed by an auto-close it is that
   * AUTO_CLOSE correction.
   */
  causeEventId: string;
  /**
   * Position of the correction in the fold: its cause's position, or
   * `(deadline, -1)` for an auto-close and the child ends it causes. Storage
   * truncates by it. It differs from `(occurredAt, ...)` only for an auto-close
   * with LAST_ACTIVITY, which ends before the deadline.
   */
  position: Position;
  /**
   * Order among corrections that share a position, from 0, so a replay stores
   * them in the same order. Ends of nested instances come deepest first.
   */
  ordinal: number;
}

/**
 * The stored start of a segment. Its start position is `(startAt, startSeq)`:
 * the position of the client event that opened it, or of the client event
 * that caused its synthesised start.
 */
export interface SegmentStart {
  segmentId: string;
  pairType: string;
  pairKey: string;
  startAt: Instant;
  startSeq: number;
  startEventId: string;
  parentSegmentId: string | null;
}

export interface SegmentOpened extends SegmentStart {
  kind: 'opened';
  /** Number of ancestors: 0 for a segment without a parent. */
  depth: number;
}

export interface SegmentClosed {
  kind: 'closed';
  segmentId: string;
  /** Pair type of the segment, so that a writer has it without the open instances. */
  pairType: string;
  /** Start of the segment, as `startAt` of its opening. */
  startAt: Instant;
  endAt: Instant;
  /** A client end event or a synthesised end correction. */
  endEventId: string;
  endReason: EndReason;
  /**
   * Position at which the engine decided the close. It equals the end for
   * every rule but AUTO_CLOSE with LAST_ACTIVITY, which is decided at the
   * deadline and ends at the last activity.
   */
  decidedAt: Position;
}

export type SegmentChange = SegmentOpened | SegmentClosed;

/** A client event the engine flagged while applying it (ORPHAN_END). */
export interface EventFlag {
  eventId: string;
  rule: 'ORPHAN_END';
  /** Position of the flagged event. Storage clears the flag when it truncates at or before it. */
  position: Position;
}

/** Everything one engine step produced, in the order it happened. */
export interface EngineOutput {
  corrections: Correction[];
  segments: SegmentChange[];
  flags: EventFlag[];
}

/** The state after one engine step and what the step produced. */
export interface EngineStep {
  state: EngineState;
  output: EngineOutput;
}

/**
 * Pair types and the effective auto-close policies for one user (defaults
 * overridden by the user's preferences).
 */
export interface PairCatalog {
  /** Pair type and role of an event type; absent for point events. */
  byEventType: ReadonlyMap<string, { pairType: string; role: 'START' | 'END' }>;
  byName: ReadonlyMap<string, PairTypeDefinition>;
  /** Effective policy per pair type name for this user. */
  policies: ReadonlyMap<string, AutoClosePolicy>;
}
