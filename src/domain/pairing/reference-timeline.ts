/**
 * An in-memory reference of the whole intake mechanism for one user: arrival
 * classification, the event log, the derived rows and the engine state. The
 * service does the same with PostgreSQL and Redis, and the tests compare this
 * model with a replay of the events in position order.
 *
 * For each arriving event:
 * 1. assign the next seq and classify it (`classifyArrival`) against the
 *    latest applied `occurredAt`, then store it;
 * 2. if its position `p` is before the state's position and folding it there
 *    would change nothing (`absorbsLateEvent`), count it as applied;
 * 3. else if `p` is before the state's position, restore the state at `p`.
 *    This happens for a late event, and for an event that lies before an
 *    auto-close decision. Truncate the derived rows from `p`, rebuild the
 *    state from the segments open at `p` and the events before `p`, then
 *    refold every stored event at or after `p` in position order;
 * 4. otherwise apply it to the current state;
 * 5. auto-close what is due at `now`.
 */
import { absorbsLateEvent, advanceTo, applyEvent, emptyState, restoreState } from './engine.js';
import { classifyArrival, type ArrivalFlag, type ArrivalLimits } from './intake-rules.js';
import { DerivedLedger } from './ledger.js';
import { comparePositions, positionOfEvent } from './position.js';
import type {
  EngineEvent,
  EngineOutput,
  EngineState,
  EventRole,
  Instant,
  PairCatalog,
  Position,
} from './types.js';

/** A client event before intake has given it a seq and an effective `occurredAt`. */
export interface IncomingEvent {
  id: string;
  type: string;
  role: EventRole;
  pairType: string | null;
  pairKey: string;
  /** Null when the client sent none. */
  occurredAt: Instant | null;
}

export interface ReceiveResult {
  /** The event as stored. */
  event: EngineEvent;
  arrivalFlags: ArrivalFlag[];
  /** Position the derived rows were truncated and refolded from, or null when the event was appended or absorbed. */
  restoredFrom: Position | null;
  /** True when the event lay before the state's position but changed nothing, so it was counted as applied. */
  absorbed: boolean;
  /** Everything the refold or the append produced, then the auto-closes due at `now`. */
  output: EngineOutput;
}

export class ReferenceTimeline {
  readonly ledger = new DerivedLedger();
  private readonly stored: EngineEvent[] = [];
  private current: EngineState = emptyState();
  private lastSeq = 0;

  constructor(
    private readonly catalog: PairCatalog,
    private readonly limits: ArrivalLimits,
  ) {}

  get state(): EngineState {
    return this.current;
  }

  /** Returns the stored client events in arrival order. */
  events(): readonly EngineEvent[] {
    return this.stored;
  }

  /** Stores one event received at `now` and brings the derived rows up to date. */
  receive(incoming: IncomingEvent, now: Instant): ReceiveResult {
    const classification = classifyArrival(
      {
        occurredAt: incoming.occurredAt,
        receivedAt: now,
        maxAppliedOccurredAt: this.current.lastActivityAt,
      },
      this.limits,
    );
    this.lastSeq += 1;
    const event: EngineEvent = {
      ...incoming,
      seq: this.lastSeq,
      occurredAt: classification.occurredAt,
      ignored: classification.ignored,
    };
    this.stored.push(event);

    const position = positionOfEvent(event);
    const output = emptyOutput();
    let restoredFrom: Position | null = null;
    const absorbed = absorbsLateEvent(this.current, event);
    if (absorbed) {
      this.current = { ...this.current, appliedSeq: Math.max(this.current.appliedSeq, event.seq) };
    } else if (
      !event.ignored &&
      this.current.position !== null &&
      comparePositions(position, this.current.position) < 0
    ) {
      restoredFrom = position;
      this.refoldFrom(position, output);
    } else {
      this.apply(event, output);
    }
    this.advance(now, output);

    return { event, arrivalFlags: classification.flags, restoredFrom, absorbed, output };
  }

  /** Auto-closes what is due at `now`, as the deadline sweeper does. */
  advanceTo(now: Instant): EngineOutput {
    const output = emptyOutput();
    this.advance(now, output);
    return output;
  }

  private refoldFrom(from: Position, output: EngineOutput): void {
    const before: EngineEvent[] = [];
    const after: EngineEvent[] = [];
    for (const event of this.stored) {
      if (comparePositions(positionOfEvent(event), from) < 0) {
        before.push(event);
      } else {
        after.push(event);
      }
    }

    let lastActivityAt: Instant | null = null;
    let position: Position | null = null;
    let appliedSeq = 0;
    for (const event of before) {
      appliedSeq = Math.max(appliedSeq, event.seq);
      if (event.ignored) {
        continue;
      }
      lastActivityAt = Math.max(lastActivityAt ?? event.occurredAt, event.occurredAt);
      const eventPosition = positionOfEvent(event);
      if (position === null || comparePositions(eventPosition, position) > 0) {
        position = eventPosition;
      }
    }

    // Synthesised ends before `from` are activity too (a DEADLINE auto-close
    // ends after the last client event), so they count for the restored state.
    for (const correction of this.ledger.snapshot().corrections) {
      if (comparePositions(correction.position, from) < 0) {
        lastActivityAt = Math.max(lastActivityAt ?? correction.occurredAt, correction.occurredAt);
      }
    }

    this.ledger.truncateFrom(from);
    this.current = restoreState({
      openSegments: this.ledger.openSegmentsAt(from),
      lastActivityAt,
      position,
      appliedSeq,
      // Every decision before `from` lies before it.
      lastAutoCloseAt: from,
    });

    after.sort((a, b) => comparePositions(positionOfEvent(a), positionOfEvent(b)));
    for (const event of after) {
      this.apply(event, output);
    }
  }

  private apply(event: EngineEvent, output: EngineOutput): void {
    const step = applyEvent(this.current, event, this.catalog);
    this.record(step.state, step.output, output);
  }

  private advance(now: Instant, output: EngineOutput): void {
    const step = advanceTo(this.current, now, this.catalog);
    this.record(step.state, step.output, output);
  }

  private record(state: EngineState, produced: EngineOutput, output: EngineOutput): void {
    this.ledger.applyOutput(produced);
    this.current = state;
    output.corrections.push(...produced.corrections);
    output.segments.push(...produced.segments);
    output.flags.push(...produced.flags);
  }
}

function emptyOutput(): EngineOutput {
  return { corrections: [], segments: [], flags: [] };
}
