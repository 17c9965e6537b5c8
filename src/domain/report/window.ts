/** Report windows and instants in messages. */

import { LIMIT_ADVICE, badInput, limitExceeded } from '../errors.js';
import { zoneOf } from '../interval/buckets.js';
import type { Interval } from '../interval/interval-set.js';

const DAY_MS = 86_400_000;

/**
 * How much longer than REPORT_MAX_WINDOW_DAYS days of 24 hours a window with
 * a time zone may last, for the change of UTC offset between its ends. A
 * daylight-saving shift is usually 1 hour. A daily sweep of every zone in
 * Node 20.20's time zone data (tzdata 2025c) found no 366-day span from 1970
 * to 2037 whose ends differ by more than 7 hours (Antarctica/Vostok,
 * 1993-94). 12 hours covers those and stays under a day, because the limit
 * bounds work: a window over a date-line move that repeated a day
 * (America/Sitka, 1867) lasts a day longer, and this bound rejects it.
 */
const MAX_OFFSET_CHANGE_MS = 12 * 3_600_000;

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
 * Throws `INVALID_WINDOW` unless `start` is before `end`, both in epoch
 * milliseconds. Equal ends can come from digits below the millisecond, which
 * are dropped, so their error says so.
 */
export function checkWindowOrder(start: number, end: number): void {
  if (start < end) {
    return;
  }
  const hint = start === end ? ' Instants are kept to the millisecond, so a window must last at least 1 ms.' : '';
  throw badInput(
    'INVALID_WINDOW',
    `Window start ${formatInstant(start)} must be before its end ${formatInstant(end)}.${hint}`,
    { start: formatInstant(start), end: formatInstant(end) },
  );
}

/**
 * Checks a report window `[start, end)` in epoch milliseconds and returns it.
 * Throws `INVALID_WINDOW` unless start is before end, and `LIMIT_EXCEEDED`
 * (REPORT_MAX_WINDOW_DAYS) when the window is longer than `maxWindowDays`
 * days. Without a time zone a day lasts 24 hours. With one, the days are
 * calendar days in that zone, measured on the local clock, so a local year
 * whose ends have different UTC offsets still counts 365 or 366 days. Its
 * elapsed time may then exceed the maximum by at most MAX_OFFSET_CHANGE_MS.
 * The caller checks `timeZone` first. Non-integer instants are a programmer
 * error (TypeError).
 */
export function validateWindow(start: number, end: number, maxWindowDays: number, timeZone: string | null = null): Interval {
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

  checkWindowOrder(start, end);

  if (timeZone === null) {
    if (end - start > maxWindowDays * DAY_MS) {
      throw limitExceeded('REPORT_MAX_WINDOW_DAYS', daysRoundedUp(end - start), maxWindowDays, 'days');
    }
  } else {
    checkLocalWindowLength(start, end, maxWindowDays, timeZone);
  }

  return { start, end };
}

/** Converts a length in ms to days, rounded up to 0.01, so a window just over the limit never reads as equal to it. */
function daysRoundedUp(ms: number): number {
  return Math.ceil((ms / DAY_MS) * 100) / 100;
}

/**
 * Rejects a window longer than `maxWindowDays` calendar days in `timeZone`,
 * or one that lasts more than MAX_OFFSET_CHANGE_MS longer than that many
 * days of 24 hours.
 */
function checkLocalWindowLength(start: number, end: number, maxWindowDays: number, timeZone: string): void {
  const zone = zoneOf(timeZone);
  if (zone === null) {
    // The bucket check rejects an unknown zone with INVALID_TIME_ZONE.
    return;
  }
  // luxon returns offsets in minutes, with fractions for local mean time.
  const localLength = end + zone.offset(end) * 60_000 - (start + zone.offset(start) * 60_000);
  if (localLength > maxWindowDays * DAY_MS) {
    const days = daysRoundedUp(localLength);
    throw badInput(
      'LIMIT_EXCEEDED',
      `The report window is ${days} calendar days in ${timeZone}, above the maximum of ${maxWindowDays} days (REPORT_MAX_WINDOW_DAYS). ${LIMIT_ADVICE.REPORT_MAX_WINDOW_DAYS}`,
      { limit: 'REPORT_MAX_WINDOW_DAYS', value: days, max: maxWindowDays, timeZone },
    );
  }
  if (end - start > maxWindowDays * DAY_MS + MAX_OFFSET_CHANGE_MS) {
    const days = daysRoundedUp(end - start);
    throw badInput(
      'LIMIT_EXCEEDED',
      `The report window is ${maxWindowDays} calendar days or fewer in ${timeZone} but lasts ${days} days of 24 hours, ` +
        `above the maximum of ${maxWindowDays} days and ${MAX_OFFSET_CHANGE_MS / 3_600_000} hours for changes of UTC offset (REPORT_MAX_WINDOW_DAYS). ` +
        'Shorten the window.',
      { limit: 'REPORT_MAX_WINDOW_DAYS', value: days, max: maxWindowDays, timeZone },
    );
  }
}
