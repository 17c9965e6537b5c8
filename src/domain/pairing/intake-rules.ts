/**
 * Arrival rules applied once, when an event is stored: where it goes in time
 * and whether it may change segments. They read no clock, because the receipt
 * time comes in as an argument.
 */
import type { Instant } from './types.js';

export type ArrivalFlag = 'FUTURE_TIMESTAMP' | 'LATE_EVENT' | 'LATE_BEYOND_HORIZON';

export interface Arrival {
  /** `occurredAt` sent by the client, or null when it sent none. */
  occurredAt: Instant | null;
  /** Server receipt time. */
  receivedAt: Instant;
  /** Latest `occurredAt` among the user's applied, non-ignored events, or null when there are none. */
  maxAppliedOccurredAt: Instant | null;
}

export interface ArrivalLimits {
  /** Maximum time in ms that `occurredAt` may lie after the receipt time. */
  clockSkewMs: number;
  /** Maximum time in ms that a late event may lie before `maxAppliedOccurredAt` and still be applied. */
  latenessHorizonMs: number;
}

export interface ArrivalClassification {
  /** The instant the event is applied at. */
  occurredAt: Instant;
  /** Flags in the order FUTURE_TIMESTAMP, then LATE_EVENT or LATE_BEYOND_HORIZON. */
  flags: ArrivalFlag[];
  /** True for LATE_BEYOND_HORIZON: the event is stored but changes no segment. */
  ignored: boolean;
}

/**
 * Classifies an arriving event. A missing `occurredAt` becomes the receipt
 * time. An `occurredAt` more than `clockSkewMs` after the receipt time is
 * replaced by the receipt time and flagged FUTURE_TIMESTAMP. An event before
 * `maxAppliedOccurredAt` is LATE_EVENT, or LATE_BEYOND_HORIZON (ignored) when
 * it lies more than `latenessHorizonMs` before it. At most one of the two
 * lateness flags is set.
 *
 * An event that is not LATE_EVENT may still sit before the engine's position,
 * behind an auto-close decision, and then needs the same restore as a late
 * event: compare positions to decide that, not these flags.
 */
export function classifyArrival(arrival: Arrival, limits: ArrivalLimits): ArrivalClassification {
  checkLimit('clockSkewMs', limits.clockSkewMs);
  checkLimit('latenessHorizonMs', limits.latenessHorizonMs);

  const flags: ArrivalFlag[] = [];
  let occurredAt = arrival.occurredAt ?? arrival.receivedAt;
  if (occurredAt - arrival.receivedAt > limits.clockSkewMs) {
    occurredAt = arrival.receivedAt;
    flags.push('FUTURE_TIMESTAMP');
  }

  const latest = arrival.maxAppliedOccurredAt;
  let ignored = false;
  if (latest !== null && occurredAt < latest) {
    if (latest - occurredAt > limits.latenessHorizonMs) {
      flags.push('LATE_BEYOND_HORIZON');
      ignored = true;
    } else {
      flags.push('LATE_EVENT');
    }
  }

  return { occurredAt, flags, ignored };
}

function checkLimit(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} is ${value}, but it must be a finite number of ms, 0 or more.`);
  }
}
