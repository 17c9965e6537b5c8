/**
 * Totals of an interval set per local calendar bucket in an IANA time zone.
 *
 * Bucket boundaries come from luxon's calendar math on local dates in the
 * zone, never from fixed 24-hour steps, so a DAY lasts 23 or 25 hours across
 * a daylight-saving change and a MONTH follows the calendar. WEEK is the ISO
 * week, starting on Monday. HOUR buckets are local clock hours: a repeated
 * local hour gives two buckets, and in zones with a half-hour offset (such as
 * Asia/Kolkata) hours start at :30 UTC. An offset change always ends a
 * bucket, also where it falls inside a local hour (Pacific/Chatham).
 */

import { DateTime, IANAZone } from 'luxon';

import { badInput, limitExceededAtLeast } from '../errors.js';
import { runSteps, runStepsInSlices } from '../steps.js';
import { IntervalSet, type Interval } from './interval-set.js';
import { unknownTimeZoneMessage } from './time-zone-names.js';

export type BucketUnit = 'HOUR' | 'DAY' | 'WEEK' | 'MONTH';

/** One bucket, clipped to the window, with the set's milliseconds inside it. */
export interface BucketTotal {
  start: number;
  end: number;
  ms: number;
}

/**
 * Default maximum number of buckets per report. HOUR buckets over a 366-day
 * window give about 8,800.
 */
export const DEFAULT_MAX_BUCKETS = 10_000;

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

const LUXON_UNIT = {
  HOUR: 'hour',
  DAY: 'day',
  WEEK: 'week',
  MONTH: 'month',
} as const satisfies Record<BucketUnit, string>;

const CALENDAR_STEP = {
  DAY: { days: 1 },
  WEEK: { weeks: 1 },
  MONTH: { months: 1 },
} as const;

/**
 * Upper bounds on the length of one bucket, used to reject a window with too
 * many buckets before walking it. They are generous on purpose: a DAY is at
 * most 25 hours in today's zones, and the extra hours cover historical
 * transitions.
 */
const MAX_BUCKET_MS: Record<BucketUnit, number> = {
  HOUR: HOUR_MS,
  DAY: 27 * HOUR_MS,
  WEEK: 8 * DAY_MS,
  MONTH: 32 * DAY_MS,
};

/** Returns true when `name` is a time zone in the runtime's Intl time zone data. */
export function isValidTimeZone(name: string): boolean {
  return canonicalTimeZone(name) !== null;
}

/**
 * Returns the id that the runtime's Intl gives a time zone name, such as
 * `America/New_York` for `america/new_york`, or null for a zone it does not
 * know. luxon 3.7 keeps a zone object and an Intl.DateTimeFormat for every
 * distinct name it is given, and never drops them. In one run on Node 20,
 * 20,000 spellings of one zone that differ in case grew the process by
 * 950 MB. So only these ids reach luxon, and there are a few hundred.
 */
export function canonicalTimeZone(name: string): string | null {
  if (typeof name !== 'string' || name === '') {
    return null;
  }
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: name }).resolvedOptions().timeZone;
  } catch (error) {
    if (error instanceof RangeError) {
      return null;
    }
    throw error;
  }
}

/** Returns the luxon zone of a time zone name, created under its canonical id (see canonicalTimeZone), or null for an unknown zone. */
export function zoneOf(name: string): IANAZone | null {
  const zoneId = canonicalTimeZone(name);
  return zoneId === null ? null : IANAZone.create(zoneId);
}

/**
 * Splits the part of `set` inside `window` into calendar buckets of `unit` in
 * `timeZone`, and returns every bucket that overlaps the window, in order,
 * clipped to the window, including buckets with 0 ms. The `ms` fields add up
 * to `set.clip(window).totalMs` exactly. It makes one linear pass over the
 * pieces and the buckets.
 *
 * Throws `INVALID_TIME_ZONE` for a zone missing from the runtime's data and
 * `LIMIT_EXCEEDED` (`REPORT_MAX_BUCKET_ROWS`, the limit that bounds a report's
 * bucket rows) when the window contains more than `maxBuckets` buckets.
 */
export function bucketTotals(
  set: IntervalSet,
  window: Interval,
  unit: BucketUnit,
  timeZone: string,
  maxBuckets: number = DEFAULT_MAX_BUCKETS,
): BucketTotal[] {
  return totalsInBuckets(set, window, bucketBoundaries(window, unit, timeZone, maxBuckets));
}

/**
 * Returns the calendar boundaries that tile `window` into buckets of `unit` in
 * `timeZone`: the start of the first bucket that overlaps the window (which
 * can lie before the window start), each following boundary, and the first
 * boundary at or after the window end. An empty window has no boundaries.
 * Computing them is the costly, luxon part of `bucketTotals`, so a report
 * grouped by user computes them once and reuses them for every group.
 *
 * Throws as `bucketTotals` does.
 */
export function bucketBoundaries(
  window: Interval,
  unit: BucketUnit,
  timeZone: string,
  maxBuckets: number = DEFAULT_MAX_BUCKETS,
): number[] {
  return runSteps(boundarySteps(window, unit, timeZone, maxBuckets));
}

/**
 * Returns what `bucketBoundaries` returns, and calls `pause` after each
 * boundary. When `pause` returns a promise, the walk waits for it before the
 * next boundary, so a long walk (HOUR buckets over a year) can let other work
 * run.
 */
export function bucketBoundariesInSlices(
  window: Interval,
  unit: BucketUnit,
  timeZone: string,
  maxBuckets: number,
  pause: () => Promise<void> | undefined,
): Promise<number[]> {
  return runStepsInSlices(boundarySteps(window, unit, timeZone, maxBuckets), pause);
}

/** The walk of `bucketBoundaries` as steps: it yields after each boundary and returns them all. */
function* boundarySteps(
  window: Interval,
  unit: BucketUnit,
  timeZone: string,
  maxBuckets: number,
): Generator<void, number[], void> {
  const zone = zoneOf(timeZone);
  if (zone === null) {
    throw badInput(
      'INVALID_TIME_ZONE',
      unknownTimeZoneMessage(String(timeZone)),
      { timeZone },
    );
  }
  if (!Object.hasOwn(LUXON_UNIT, unit)) {
    throw new TypeError(`Bucket unit must be HOUR, DAY, WEEK or MONTH, got ${String(unit)}.`);
  }

  if (!Number.isSafeInteger(window.start) || !Number.isSafeInteger(window.end)) {
    throw new TypeError(
      `Window bounds must be safe integer numbers of milliseconds, got ${window.start} and ${window.end}.`,
    );
  }
  if (window.start >= window.end) {
    return [];
  }

  const leastCount = leastBucketCount(window, unit);
  if (leastCount > maxBuckets) {
    throw limitExceededAtLeast('REPORT_MAX_BUCKET_ROWS', leastCount, maxBuckets);
  }

  const offsets = new ZoneOffsets(zone);
  let bucketStart = firstBoundary(window.start, unit, offsets);
  const boundaries: number[] = [];

  while (bucketStart < window.end) {
    const bucketEnd = nextBoundary(bucketStart, unit, offsets);

    // The first boundary can lie more than one bucket before the window start
    // when the local time at the start was repeated by a backward shift.
    if (bucketEnd <= window.start) {
      bucketStart = bucketEnd;
      continue;
    }

    if (boundaries.length === 0) {
      boundaries.push(bucketStart);
    }
    boundaries.push(bucketEnd);
    // The walk stops at the first bucket over the limit, so the window may contain more.
    if (boundaries.length - 1 > maxBuckets) {
      throw limitExceededAtLeast('REPORT_MAX_BUCKET_ROWS', boundaries.length - 1, maxBuckets);
    }
    bucketStart = bucketEnd;
    yield;
  }

  return boundaries;
}

/**
 * Returns a lower bound on the number of buckets of `unit` in `window`, from
 * the longest a bucket can be, so that callers can reject a window with too
 * many buckets before walking it.
 */
export function leastBucketCount(window: Interval, unit: BucketUnit): number {
  return Math.max(0, Math.floor((window.end - window.start) / MAX_BUCKET_MS[unit]));
}

/**
 * Splits the part of `set` inside `window` into the buckets between
 * consecutive `boundaries`, as returned by `bucketBoundaries` for the same
 * window, and returns each bucket clipped to the window with the set's
 * milliseconds inside it. It makes one linear pass over pieces and buckets.
 */
export function totalsInBuckets(set: IntervalSet, window: Interval, boundaries: readonly number[]): BucketTotal[] {
  const pieces = set.clip(window);
  const buckets: BucketTotal[] = [];
  let piece = 0;

  for (let index = 1; index < boundaries.length; index += 1) {
    const start = Math.max(boundaries[index - 1]!, window.start);
    const end = Math.min(boundaries[index]!, window.end);
    let ms = 0;
    while (piece < pieces.count) {
      const pieceStart = pieces.startAt(piece)!;
      const pieceEnd = pieces.endAt(piece)!;
      if (pieceStart >= end) {
        break;
      }
      ms += Math.min(pieceEnd, end) - Math.max(pieceStart, start);

      // A piece that crosses the bucket end continues in the next bucket.
      if (pieceEnd > end) {
        break;
      }
      piece += 1;
    }

    buckets.push({ start, end, ms });
  }

  return buckets;
}

/**
 * How far before a calendar boundary the search for an offset change that
 * skipped local midnight reaches. A sweep of every zone in Node 20's time
 * zone data found no such skip longer than this. It covered every offset
 * change from 2020 to 2027, and from 1850 to 2019 those that are not a
 * one-hour shift at a whole local hour. Date-line moves skip whole days but
 * keep local midnight.
 */
const MAX_SHIFT_MS = 3 * HOUR_MS;

/** Instants whose offsets one walk keeps, a bound on its memory. */
const OFFSET_CACHE_SIZE = 64;

/**
 * UTC offsets of one zone, kept for the instants most recently looked up.
 * A walk looks up the offset at each boundary several times, and each luxon
 * lookup formats the instant with Intl. With this cache, HOUR buckets over a
 * year took about a third of the time they took without it (one measurement).
 */
class ZoneOffsets {
  private readonly known = new Map<number, number>();

  constructor(readonly zone: IANAZone) {}

  /** Returns the offset at `instant` in ms, rounded to whole ms (local mean time has offsets in seconds). */
  at(instant: number): number {
    let offset = this.known.get(instant);
    if (offset === undefined) {
      if (this.known.size >= OFFSET_CACHE_SIZE) {
        this.known.clear();
      }
      offset = Math.round(this.zone.offset(instant) * 60_000);
      this.known.set(instant, offset);
    }
    return offset;
  }
}

/**
 * Returns the first instant in (from, to] whose offset differs from the
 * offset at `from`, or null when the offset at `to` is the same. It finds
 * the change to the millisecond, assuming at most one change in between.
 * Its callers pass spans of one hour or MAX_SHIFT_MS, and with them the
 * sweep described at MAX_SHIFT_MS matched its reference.
 */
function offsetChangeIn(offsets: ZoneOffsets, from: number, to: number): number | null {
  const before = offsets.at(from);
  if (offsets.at(to) === before) {
    return null;
  }
  let low = from;
  let high = to;
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (offsets.at(middle) === before) {
      low = middle;
    } else {
      high = middle;
    }
  }
  return high;
}

/** Returns the local date of the start of the day, week or month that contains `instant`. */
function periodOf(instant: number, unit: Exclude<BucketUnit, 'HOUR'>, zone: IANAZone): string {
  return DateTime.fromMillis(instant, { zone }).startOf(LUXON_UNIT[unit]).toISODate() ?? '';
}

/** Returns the start of the bucket that contains `instant`, or an earlier boundary. */
function firstBoundary(instant: number, unit: BucketUnit, offsets: ZoneOffsets): number {
  const zone = offsets.zone;
  if (unit === 'HOUR') {
    // The local hh:00 under the offset at `instant`, unless the offset changed
    // since then: an offset change also starts an hour bucket.
    const offset = offsets.at(instant);
    const hourStart = Math.floor((instant + offset) / HOUR_MS) * HOUR_MS - offset;
    return offsetChangeIn(offsets, hourStart, instant) ?? hourStart;
  }

  let boundary = DateTime.fromMillis(instant, { zone }).startOf(LUXON_UNIT[unit]).toMillis();
  // luxon resolves a local time that exists twice to one instant, which can
  // lie after `instant`: step back until the boundary is not after it.
  while (boundary > instant) {
    const earlier = DateTime.fromMillis(boundary - 1, { zone }).startOf(LUXON_UNIT[unit]).toMillis();
    if (earlier >= boundary) {
      // The period's local midnight was skipped, and luxon moved it forward
      // past `instant` (America/Toronto, 1919-03-30 23:30 to 00:30). The
      // period began at the offset change.
      return offsetChangeIn(offsets, instant - MAX_SHIFT_MS, instant) ?? instant;
    }
    boundary = earlier;
  }
  return boundary;
}

/** Returns the first bucket boundary after `boundary`. */
function nextBoundary(boundary: number, unit: BucketUnit, offsets: ZoneOffsets): number {
  const zone = offsets.zone;
  if (unit === 'HOUR') {
    // The next local hh:00 under the offset at `boundary`, or an offset change
    // before it. A bucket never spans a change, so each holds one local clock
    // hour or part of one. That holds where clocks move at :45
    // (Pacific/Chatham) or by half an hour (Australia/Lord_Howe) too.
    const offset = offsets.at(boundary);
    const hourEnd = Math.floor((boundary + offset) / HOUR_MS) * HOUR_MS + HOUR_MS - offset;
    return offsetChangeIn(offsets, boundary, hourEnd) ?? hourEnd;
  }

  // Add one local day, week or month, then take the start of that local
  // period, because the current boundary may not be at local midnight. On a
  // date whose midnight was skipped, such as in America/Santiago, the day
  // starts at 01:00.
  let next = DateTime.fromMillis(boundary, { zone })
    .plus(CALENDAR_STEP[unit])
    .startOf(LUXON_UNIT[unit])
    .toMillis();
  if (next <= boundary) {
    throw new Error(
      `Calendar step did not advance: ${unit} boundary ${boundary} in ${zone.name} gave ${next}.`,
    );
  }
  // When the skipped span began before midnight (23:30 to 00:30), luxon's
  // start lies after the change, where the new date already began.
  const change = offsetChangeIn(offsets, Math.max(boundary, next - MAX_SHIFT_MS), next);
  if (
    change !== null &&
    change < next &&
    periodOf(change, unit, zone) === periodOf(next, unit, zone) &&
    periodOf(change - 1, unit, zone) !== periodOf(next, unit, zone)
  ) {
    next = change;
  }
  return next;
}
