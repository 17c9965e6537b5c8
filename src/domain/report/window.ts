/** Report windows and instants in messages. */

import { badInput, limitExceeded } from '../errors.js';
import type { Interval } from '../interval/interval-set.js';

const DAY_MS = 86_400_000;

/** Largest absolute epoch millisecond that a JavaScript Date can hold. */
const MAX_DATE_MS = 8.64e15;

/**
 * Formats epoch milliseconds as an RFC 3339 UTC string, or as the number
 * when it is out of Date range.
 */
export function formatInstant(ms: number): string {
  if (Number.isFinite(ms) && Math.abs(ms) <= MAX_DATE_MS) {
    return new Date(ms).toISOString();
  }
  return String(ms);
}

/**
 * Checks a report window `[start, end)` in epoch milliseconds and returns it.
 * Throws `INVALID_WINDOW` unless start is before end, and `LIMIT_EXCEEDED`
 * (REPORT_MAX_WINDOW_DAYS) when the window is longer than `maxWindowDays`
 * days of 24 hours. Non-integer instants are a programmer error (TypeError).
 */
export function validateWindow(start: number, end: number, maxWindowDays: number): Interval {
  for (const [name, value] of [
    ['start', start],
    ['end', end],
  ] as const) {
    if (!Number.isSafeInteger(value)) {
      throw new TypeError(
        `Window ${name} must be a safe integer number of milliseconds, got ${value}.`,
      );
    }
  }

  if (start >= end) {
    throw badInput(
      'INVALID_WINDOW',
      `Window start ${formatInstant(start)} must be before its end ${formatInstant(end)}.`,
      { start: formatInstant(start), end: formatInstant(end) },
    );
  }

  if (end - start > maxWindowDays * DAY_MS) {
    // Round up, so a window just over the limit never reads as equal to it.
    const days = Math.ceil(((end - start) / DAY_MS) * 100) / 100;
    throw limitExceeded('REPORT_MAX_WINDOW_DAYS', days, maxWindowDays, 'days');
  }

  return { start, end };
}
