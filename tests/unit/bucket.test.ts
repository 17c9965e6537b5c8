import { IANAZone } from 'luxon';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import {
  bucketBoundaries,
  bucketBoundariesInSlices,
  bucketTotals,
  leastBucketCount,
  totalsInBuckets,
  isValidTimeZone,
  canonicalTimeZone,
  type BucketTotal,
  type BucketUnit,
} from '../../src/domain/interval/buckets.js';
import { IntervalSet, type Interval } from '../../src/domain/interval/interval-set.js';
import { validateWindow } from '../../src/domain/report/window.js';
import { localFields } from '../support/local-time.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** Parses an RFC 3339 instant with an explicit offset. */
function at(iso: string): number {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) {
    throw new Error(`bad instant in test: ${iso}`);
  }
  return ms;
}

function window(start: string, end: string): Interval {
  return { start: at(start), end: at(end) };
}

function wholeWindow(w: Interval): IntervalSet {
  return IntervalSet.of(w.start, w.end);
}

function lengthsInHours(buckets: BucketTotal[]): number[] {
  return buckets.map((bucket) => (bucket.end - bucket.start) / HOUR_MS);
}

function startsOf(buckets: BucketTotal[]): string[] {
  return buckets.map((bucket) => new Date(bucket.start).toISOString());
}

/** Seeded PRNG (mulberry32), so random cases are reproducible. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomSet(random: () => number, w: Interval, pieces: number): IntervalSet {
  const span = w.end - w.start;
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < pieces; i += 1) {
    // Pieces may start before or end after the window, to exercise clipping.
    const start = w.start - HOUR_MS + Math.floor(random() * (span + 2 * HOUR_MS));
    pairs.push([start, start + Math.floor(random() * 30 * HOUR_MS)]);
  }
  return IntervalSet.fromPairs(pairs);
}

/** Returns the local calendar period of `unit` that contains `ms`, as a comparable string. */
function localPeriod(ms: number, unit: BucketUnit, timeZone: string): string {
  const fields = localFields(ms, timeZone);
  const date = `${fields['year']}-${fields['month']}-${fields['day']}`;
  switch (unit) {
    case 'HOUR':
      return `${date}T${fields['hour']}`;
    case 'DAY':
      return date;
    case 'WEEK':
      // Checked through the boundaries instead; see expectCalendarBuckets.
      return '';
    case 'MONTH':
      return `${fields['year']}-${fields['month']}`;
  }
}

/**
 * Checks the contract of bucketTotals: the buckets tile the window in order,
 * none is empty, the totals add up, each bucket lies in one local period and
 * each inner boundary starts a new local period.
 */
function expectCalendarBuckets(
  buckets: BucketTotal[],
  set: IntervalSet,
  w: Interval,
  unit: BucketUnit,
  timeZone: string,
): void {
  const failures: string[] = [];
  expect(buckets.length).toBeGreaterThan(0);
  expect(buckets[0]!.start).toBe(w.start);
  expect(buckets[buckets.length - 1]!.end).toBe(w.end);
  expect(buckets.reduce((sum, bucket) => sum + bucket.ms, 0)).toBe(set.clip(w).totalMs);

  buckets.forEach((bucket, index) => {
    const startIso = new Date(bucket.start).toISOString();
    const label = `${unit} bucket ${index} at ${startIso} in ${timeZone}`;
    if (bucket.start >= bucket.end) {
      failures.push(`${label} is empty`);
    }
    if (index > 0 && buckets[index - 1]!.end !== bucket.start) {
      failures.push(`${label} does not start where the previous one ends`);
    }
    const expectedMs = set.clip({ start: bucket.start, end: bucket.end }).totalMs;
    if (bucket.ms !== expectedMs) {
      failures.push(`${label} has ${bucket.ms} ms, expected ${expectedMs}`);
    }
    const firstPeriod = localPeriod(bucket.start, unit, timeZone);
    const lastPeriod = localPeriod(bucket.end - 1, unit, timeZone);
    if (unit !== 'WEEK' && firstPeriod !== lastPeriod) {
      failures.push(`${label} spans two local periods`);
    }

    if (index === 0) {
      return;
    }
    if (unit === 'WEEK') {
      const weekday = localFields(bucket.start, timeZone)['weekday'];
      const before = localFields(bucket.start - 1, timeZone)['weekday'];
      if (weekday !== 'Mon' || before !== 'Sun') {
        failures.push(`${label} starts on ${weekday} after ${before}`);
      }
    } else {
      // An hour bucket may also start where the UTC offset changes mid-hour.
      const samePeriod =
        localPeriod(bucket.start - 1, unit, timeZone) === localPeriod(bucket.start, unit, timeZone);
      const sameOffset =
        localFields(bucket.start - 1, timeZone)['timeZoneName'] ===
        localFields(bucket.start, timeZone)['timeZoneName'];
      if (samePeriod && (unit !== 'HOUR' || sameOffset)) {
        failures.push(`${label} starts inside a local period`);
      }
    }
  });
  expect(failures).toEqual([]);
}

describe('bucketTotals', () => {
  it('splits a segment into hours', () => {
    const w = window('2024-03-12T09:00:00Z', '2024-03-12T12:00:00Z');
    const set = IntervalSet.of(at('2024-03-12T09:30:00Z'), at('2024-03-12T11:15:00Z'));
    const buckets = bucketTotals(set, w, 'HOUR', 'UTC');
    expect(buckets.map((bucket) => bucket.ms / MINUTE_MS)).toEqual([30, 60, 15]);
    expect(startsOf(buckets)).toEqual([
      '2024-03-12T09:00:00.000Z',
      '2024-03-12T10:00:00.000Z',
      '2024-03-12T11:00:00.000Z',
    ]);
  });

  it('splits a local segment into Prague hours', () => {
    const w = window('2024-03-12T09:00:00+01:00', '2024-03-12T12:00:00+01:00');
    const set = IntervalSet.of(at('2024-03-12T09:30:00+01:00'), at('2024-03-12T11:15:00+01:00'));
    const buckets = bucketTotals(set, w, 'HOUR', 'Europe/Prague');
    expect(buckets.map((bucket) => bucket.ms / MINUTE_MS)).toEqual([30, 60, 15]);
  });

  it('splits a segment across midnight', () => {
    const w = window('2024-03-12T00:00:00+01:00', '2024-03-14T00:00:00+01:00');
    const set = IntervalSet.fromPairs([
      [at('2024-03-12T00:00:00+01:00'), at('2024-03-12T08:00:00+01:00')],
      [at('2024-03-12T22:30:00+01:00'), at('2024-03-13T06:30:00+01:00')],
    ]);
    const buckets = bucketTotals(set, w, 'DAY', 'Europe/Prague');
    expect(buckets.map((bucket) => bucket.ms / HOUR_MS)).toEqual([9.5, 6.5]);
  });

  it('keeps buckets with no time', () => {
    const w = window('2024-03-12T00:00:00Z', '2024-03-15T00:00:00Z');
    const set = IntervalSet.of(at('2024-03-13T10:00:00Z'), at('2024-03-13T11:00:00Z'));
    const buckets = bucketTotals(set, w, 'DAY', 'UTC');
    expect(buckets.map((bucket) => bucket.ms)).toEqual([0, HOUR_MS, 0]);
  });

  it('clips the first and last bucket to the window', () => {
    const w = window('2024-03-12T10:20:00Z', '2024-03-14T05:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'UTC');
    expect(startsOf(buckets)).toEqual([
      '2024-03-12T10:20:00.000Z',
      '2024-03-13T00:00:00.000Z',
      '2024-03-14T00:00:00.000Z',
    ]);
    expect(new Date(buckets[2]!.end).toISOString()).toBe('2024-03-14T05:00:00.000Z');
  });

  it('returns no buckets for an empty window', () => {
    const w = window('2024-03-12T00:00:00Z', '2024-03-12T00:00:00Z');
    expect(bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC')).toEqual([]);
  });

  it('returns no buckets for an empty window inside a day', () => {
    const w = window('2024-03-12T10:20:00Z', '2024-03-12T10:20:00Z');
    expect(bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC')).toEqual([]);
    expect(bucketBoundaries(w, 'HOUR', 'Europe/Prague')).toEqual([]);
  });

  it('adds up on random data over three days', () => {
    const random = prng(7);
    const w = window('2024-05-01T00:00:00+02:00', '2024-05-04T00:00:00+02:00');
    for (let round = 0; round < 20; round += 1) {
      const set = randomSet(random, w, 12);
      const buckets = bucketTotals(set, w, 'DAY', 'Europe/Prague');
      expect(buckets).toHaveLength(3);
      expectCalendarBuckets(buckets, set, w, 'DAY', 'Europe/Prague');
    }
  });
});

describe('bucketTotals across DST', () => {
  it.each([
    ['Europe/Prague', '2021-03-28T00:00:00+01:00', '2021-03-29T00:00:00+02:00', 23],
    ['Europe/Prague', '2021-10-31T00:00:00+02:00', '2021-11-01T00:00:00+01:00', 25],
    ['America/New_York', '2021-03-14T00:00:00-05:00', '2021-03-15T00:00:00-04:00', 23],
    ['America/New_York', '2021-11-07T00:00:00-04:00', '2021-11-08T00:00:00-05:00', 25],
    ['Australia/Sydney', '2021-04-04T00:00:00+11:00', '2021-04-05T00:00:00+10:00', 25],
    ['Australia/Sydney', '2021-10-03T00:00:00+10:00', '2021-10-04T00:00:00+11:00', 23],
    ['Australia/Adelaide', '2021-04-04T00:00:00+10:30', '2021-04-05T00:00:00+09:30', 25],
    ['America/Santiago', '2022-04-02T00:00:00-03:00', '2022-04-03T00:00:00-04:00', 25],
  ])('%s day from %s to %s lasts %i hours', (timeZone, start, end, hours) => {
    const w = window(start, end);
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', timeZone);
    expect(lengthsInHours(buckets)).toEqual([hours]);
    expect(buckets[0]!.ms).toBe(hours * HOUR_MS);
  });

  it('starts a Santiago day at 01:00 when midnight is skipped', () => {
    const w = window('2022-09-10T00:00:00-04:00', '2022-09-13T00:00:00-03:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'America/Santiago');
    expect(startsOf(buckets)).toEqual([
      '2022-09-10T04:00:00.000Z',
      '2022-09-11T04:00:00.000Z',
      '2022-09-12T03:00:00.000Z',
    ]);
    expect(lengthsInHours(buckets)).toEqual([24, 23, 24]);
  });

  it('gives Prague spring day 23 hours', () => {
    const w = window('2021-03-28T00:00:00+01:00', '2021-03-29T00:00:00+02:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Europe/Prague');
    expect(buckets).toHaveLength(23);
    expect(buckets.every((bucket) => bucket.end - bucket.start === HOUR_MS)).toBe(true);
    // Local 01:00 is followed by local 03:00.
    expect(startsOf(buckets).slice(0, 3)).toEqual([
      '2021-03-27T23:00:00.000Z',
      '2021-03-28T00:00:00.000Z',
      '2021-03-28T01:00:00.000Z',
    ]);
    expectCalendarBuckets(buckets, wholeWindow(w), w, 'HOUR', 'Europe/Prague');
  });

  it('gives the repeated Prague hour two buckets', () => {
    const w = window('2021-10-31T00:00:00+02:00', '2021-11-01T00:00:00+01:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Europe/Prague');
    expect(buckets).toHaveLength(25);
    const starts = startsOf(buckets);
    expect(starts).toContain(new Date(at('2021-10-31T02:00:00+02:00')).toISOString());
    expect(starts).toContain(new Date(at('2021-10-31T02:00:00+01:00')).toISOString());
    expectCalendarBuckets(buckets, wholeWindow(w), w, 'HOUR', 'Europe/Prague');
  });

  it('gives the repeated Sydney hour two buckets', () => {
    const w = window('2021-04-04T00:00:00+11:00', '2021-04-05T00:00:00+10:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Australia/Sydney');
    expect(buckets).toHaveLength(25);
    const starts = startsOf(buckets);
    expect(starts).toContain(new Date(at('2021-04-04T02:00:00+11:00')).toISOString());
    expect(starts).toContain(new Date(at('2021-04-04T02:00:00+10:00')).toISOString());
  });

  it('starts Kolkata hours at half past UTC', () => {
    const w = window('2024-01-01T00:00:00Z', '2024-01-01T03:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Asia/Kolkata');
    expect(startsOf(buckets)).toEqual([
      '2024-01-01T00:00:00.000Z',
      '2024-01-01T00:30:00.000Z',
      '2024-01-01T01:30:00.000Z',
      '2024-01-01T02:30:00.000Z',
    ]);
    expect(buckets.map((bucket) => bucket.ms / MINUTE_MS)).toEqual([30, 60, 60, 30]);
  });

  it('starts Kolkata days at 18:30 UTC', () => {
    const w = window('2024-01-01T00:00:00Z', '2024-01-03T00:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'Asia/Kolkata');
    expect(startsOf(buckets)).toEqual([
      '2024-01-01T00:00:00.000Z',
      '2024-01-01T18:30:00.000Z',
      '2024-01-02T18:30:00.000Z',
    ]);
  });

  it('gives the repeated Adelaide hour two buckets', () => {
    const w = window('2021-04-04T00:00:00+10:30', '2021-04-05T00:00:00+09:30');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Australia/Adelaide');
    expect(buckets).toHaveLength(25);
    expect(buckets.every((bucket) => new Date(bucket.start).getUTCMinutes() === 30)).toBe(true);
    const starts = startsOf(buckets);
    expect(starts).toContain(new Date(at('2021-04-04T02:00:00+10:30')).toISOString());
    expect(starts).toContain(new Date(at('2021-04-04T02:00:00+09:30')).toISOString());
  });

  it('splits Lord Howe hours at a half-hour shift', () => {
    // At 02:00 +11:00 the clock goes back to 01:30 +10:30.
    const w = window('2021-04-04T00:00:00+11:00', '2021-04-04T04:00:00+10:30');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Australia/Lord_Howe');
    expect(lengthsInHours(buckets)).toEqual([1, 1, 0.5, 1, 1]);
    expect(startsOf(buckets).slice(1, 4)).toEqual([
      '2021-04-03T14:00:00.000Z',
      '2021-04-03T15:00:00.000Z',
      '2021-04-03T15:30:00.000Z',
    ]);
    expectCalendarBuckets(buckets, wholeWindow(w), w, 'HOUR', 'Australia/Lord_Howe');
  });

  it.each([
    ['2021-04-03T15:10:00Z', '2021-04-03T15:10:00.000Z'],
    ['2021-04-03T15:00:00Z', '2021-04-03T15:00:00.000Z'],
  ])('starts a Lord Howe window at %s, in the repeated half hour', (start, first) => {
    const w = window(start, '2021-04-03T16:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Australia/Lord_Howe');
    expect(startsOf(buckets)).toEqual([first, '2021-04-03T15:30:00.000Z']);
  });

  it.each([
    // 02:45 +12:45 jumps to 03:45 +13:45 at 14:00Z.
    ['Chatham forward at :45', 'Pacific/Chatham', '2026-09-26T13:15:00Z', '2026-09-26T14:15:00Z', ['2026-09-26T13:15:00.000Z', '2026-09-26T14:00:00.000Z'], [2700, 900]],
    // 03:45 +13:45 goes back to 02:45 +12:45 at 14:00Z.
    ['Chatham back at :45', 'Pacific/Chatham', '2026-04-04T13:15:00Z', '2026-04-04T14:15:00Z', ['2026-04-04T13:15:00.000Z', '2026-04-04T14:00:00.000Z'], [2700, 900]],
    // 00:01 +08:00 jumps to 03:01 +11:00.
    ['Casey at 00:01', 'Antarctica/Casey', '2020-10-03T16:00:00Z', '2020-10-03T17:00:00Z', ['2020-10-03T16:00:00.000Z', '2020-10-03T16:01:00.000Z'], [60, 3540]],
  ])('splits hours at an offset change: %s', (_name, zone, start, end, starts, seconds) => {
    const w = window(start, end);
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', zone);

    expect(startsOf(buckets)).toEqual(starts);
    expect(buckets.map((bucket) => bucket.ms / 1000)).toEqual(seconds);
  });

  it('starts a day at a change that skips its midnight', () => {
    // America/Toronto, 1919-03-30: 23:30 -05:00 jumped to 00:30 -04:00 of 31 March, at 04:30Z.
    const w = window('1919-03-30T05:00:00Z', '1919-04-01T04:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'America/Toronto');

    expect(startsOf(buckets)).toEqual(['1919-03-30T05:00:00.000Z', '1919-03-31T04:30:00.000Z']);
    expect(buckets.map((bucket) => bucket.ms / 1000)).toEqual([84_600, 84_600]);
  });

  it('starts a window inside the day after a skipped midnight', () => {
    // The window starts between the change (04:30Z) and the local 01:00 that
    // luxon gives for the skipped midnight. A search that only steps back to
    // luxon's start of the day never ends here.
    const w = window('1919-03-31T04:45:00Z', '1919-04-01T04:00:00Z');
    const boundaries = bucketBoundaries(w, 'DAY', 'America/Toronto');

    expect(boundaries.map((boundary) => new Date(boundary).toISOString())).toEqual([
      '1919-03-31T04:30:00.000Z',
      '1919-04-01T04:00:00.000Z',
    ]);
  });

  it('starts a window at the 1867 date-line move', () => {
    // America/Adak went from 1867-10-19 12:44:35 +12:13:22 back to 1867-10-18
    // 12:44:35 -11:46:38 at 00:31:13Z, so the first bucket that the walk
    // finds ends before the window starts. Which day the repeated hours
    // belong to is left open here: the buckets only have to tile the window.
    const w = window('1867-10-19T00:31:13Z', '1867-10-22T00:31:13Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'America/Adak');

    expect(buckets[0]?.start).toBe(w.start);
    expect(buckets.at(-1)?.end).toBe(w.end);
    for (const [index, bucket] of buckets.entries()) {
      expect(bucket.end, `bucket ${index}`).toBeGreaterThan(bucket.start);
      expect(bucket.ms, `bucket ${index}`).toBe(bucket.end - bucket.start);
      if (index > 0) {
        expect(bucket.start, `bucket ${index}`).toBe(buckets[index - 1]!.end);
      }
    }
  });

  it('starts hours at a local mean time offset in seconds', () => {
    // America/Puerto_Rico kept its local mean time, -04:24:25, until 1899.
    // luxon gives that offset in minutes as a fraction that is not exact.
    const w = window('1899-03-28T13:00:00Z', '1899-03-28T16:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'America/Puerto_Rico');

    expect(startsOf(buckets)).toEqual([
      '1899-03-28T13:00:00.000Z',
      '1899-03-28T13:24:25.000Z',
      '1899-03-28T14:24:25.000Z',
      '1899-03-28T15:24:25.000Z',
    ]);
    expect(buckets.map((bucket) => bucket.ms / 1000)).toEqual([1465, 3600, 3600, 2135]);
  });

  it('keeps Apia days whole across the skipped date', () => {
    // Samoa skipped 2011-12-30, moving from -10:00 to +14:00.
    const w = window('2011-12-29T00:00:00-10:00', '2012-01-01T00:00:00+14:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'DAY', 'Pacific/Apia');
    expect(lengthsInHours(buckets)).toEqual([24, 24]);
    expect(startsOf(buckets)[1]).toBe(new Date(at('2011-12-31T00:00:00+14:00')).toISOString());
  });
});

describe('bucketTotals weeks and months', () => {
  it('starts weeks on Monday', () => {
    const w = window('2021-10-27T00:00:00+02:00', '2021-11-10T00:00:00+01:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'WEEK', 'Europe/Prague');
    expect(startsOf(buckets)).toEqual([
      new Date(at('2021-10-27T00:00:00+02:00')).toISOString(),
      new Date(at('2021-11-01T00:00:00+01:00')).toISOString(),
      new Date(at('2021-11-08T00:00:00+01:00')).toISOString(),
    ]);
  });

  it('gives a week with a DST end 169 hours', () => {
    const w = window('2021-10-25T00:00:00+02:00', '2021-11-01T00:00:00+01:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'WEEK', 'Europe/Prague');
    expect(lengthsInHours(buckets)).toEqual([169]);
  });

  it('uses ISO weeks across a year end', () => {
    // 2021-01-01 is a Friday, and its ISO week starts on Monday 2020-12-28.
    const w = window('2020-12-31T00:00:00Z', '2021-01-12T00:00:00Z');
    const buckets = bucketTotals(wholeWindow(w), w, 'WEEK', 'UTC');
    expect(startsOf(buckets)).toEqual([
      '2020-12-31T00:00:00.000Z',
      '2021-01-04T00:00:00.000Z',
      '2021-01-11T00:00:00.000Z',
    ]);
    expect(lengthsInHours(buckets)).toEqual([96, 168, 24]);
  });

  it.each([
    ['2021-03-01T00:00:00+01:00', '2021-04-01T00:00:00+02:00', 31 * 24 - 1],
    ['2021-10-01T00:00:00+02:00', '2021-11-01T00:00:00+01:00', 31 * 24 + 1],
    ['2024-02-01T00:00:00+01:00', '2024-03-01T00:00:00+01:00', 29 * 24],
    ['2023-02-01T00:00:00+01:00', '2023-03-01T00:00:00+01:00', 28 * 24],
  ])('Prague month from %s to %s lasts %i hours', (start, end, hours) => {
    const w = window(start, end);
    expect(lengthsInHours(bucketTotals(wholeWindow(w), w, 'MONTH', 'Europe/Prague'))).toEqual([
      hours,
    ]);
  });

  it('starts months on the first local day', () => {
    const w = window('2021-11-15T00:00:00+01:00', '2022-02-10T00:00:00+01:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'MONTH', 'Europe/Prague');
    expect(startsOf(buckets)).toEqual([
      new Date(at('2021-11-15T00:00:00+01:00')).toISOString(),
      new Date(at('2021-12-01T00:00:00+01:00')).toISOString(),
      new Date(at('2022-01-01T00:00:00+01:00')).toISOString(),
      new Date(at('2022-02-01T00:00:00+01:00')).toISOString(),
    ]);
  });
});

describe('bucketTotals on random windows', () => {
  const zones = [
    'UTC',
    'Europe/Prague',
    'America/New_York',
    'Australia/Sydney',
    'America/Santiago',
    'Asia/Kolkata',
    'Australia/Adelaide',
    'Australia/Lord_Howe',
    'Asia/Kathmandu',
    'Pacific/Apia',
  ];
  const maxDays: Record<BucketUnit, number> = { HOUR: 12, DAY: 60, WEEK: 200, MONTH: 400 };

  const units: BucketUnit[] = ['HOUR', 'DAY', 'WEEK', 'MONTH'];

  it.each(units)('%s buckets keep the contract', (unit) => {
    const random = prng(unit.length * 1000 + 17);
    for (const timeZone of zones) {
      for (let round = 0; round < 4; round += 1) {
        const start = at('2011-01-01T00:00:00Z') + Math.floor(random() * 13 * 365 * DAY_MS);
        const w = { start, end: start + 1 + Math.floor(random() * maxDays[unit] * DAY_MS) };
        const set = randomSet(random, w, 40);
        expectCalendarBuckets(bucketTotals(set, w, unit, timeZone), set, w, unit, timeZone);
      }
    }
  });
});

describe('bucketTotals errors', () => {
  it('rejects an unknown time zone', () => {
    const w = window('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z');
    let caught: unknown;
    try {
      bucketTotals(IntervalSet.empty(), w, 'DAY', 'Mars/Olympus_Mons');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DomainError);
    const error = caught as DomainError;
    expect(error.kind).toBe('BAD_USER_INPUT');
    expect(error.reason).toBe('INVALID_TIME_ZONE');
    expect(error.message).toContain('Mars/Olympus_Mons');
    expect(error.details).toEqual({ timeZone: 'Mars/Olympus_Mons' });
  });

  it.each([
    ['Europe/Prague', true],
    ['UTC', true],
    ['Asia/Kolkata', true],
    ['Mars/Olympus_Mons', false],
    ['', false],
  ])('isValidTimeZone(%j) is %s', (name, valid) => {
    expect(isValidTimeZone(name)).toBe(valid);
  });

  it.each([
    ['europe/PRAGUE', 'Europe/Prague'],
    ['utc', 'UTC'],
    ['US/Eastern', 'America/New_York'],
    ['Mars/Olympus_Mons', null],
    ['', null],
  ])('canonicalTimeZone(%j) is %j', (name, id) => {
    expect(canonicalTimeZone(name)).toBe(id);
  });

  it('rejects too many hour buckets before walking', () => {
    const w = window('2024-01-01T00:00:00Z', '2024-02-01T00:00:00Z');
    expect(() => bucketTotals(IntervalSet.empty(), w, 'HOUR', 'UTC', 100)).toThrow(
      expect.objectContaining({
        reason: 'LIMIT_EXCEEDED',
        details: { limit: 'REPORT_MAX_BUCKET_ROWS', value: 744, max: 100 },
      }),
    );
  });

  it('rejects too many day buckets while walking', () => {
    const w = window('2024-01-01T00:00:00Z', '2024-04-11T00:00:00Z');
    expect(() => bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC', 100)).toThrow(
      expect.objectContaining({
        reason: 'LIMIT_EXCEEDED',
        details: { limit: 'REPORT_MAX_BUCKET_ROWS', value: 101, max: 100 },
      }),
    );
    expect(bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC', 101)).toHaveLength(101);
  });

  it('accepts exactly the maximum of hour buckets', () => {
    // A UTC hour is as long as the longest an hour bucket can be, so the
    // estimate before the walk equals the count.
    const w = window('2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z');
    expect(bucketTotals(IntervalSet.empty(), w, 'HOUR', 'UTC', 24)).toHaveLength(24);
  });

  it('names a lower bound when the walk stops early', () => {
    // 110 days, of which the 27-hour upper bound on a day estimates only 97.
    const w = window('2024-01-01T00:00:00Z', '2024-04-20T00:00:00Z');

    expect(() => bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC', 100)).toThrow(
      'The number of bucket rows is at least 101, above the maximum of 100 (REPORT_MAX_BUCKET_ROWS). Use a larger bucket unit, a shorter window or fewer groups.',
    );
  });

  it('names the estimate before the walk as a lower bound', () => {
    // 200 days, of which the 27-hour upper bound on a day estimates 177.
    const w = window('2024-01-01T00:00:00Z', '2024-07-19T00:00:00Z');

    expect(() => bucketTotals(IntervalSet.empty(), w, 'DAY', 'UTC', 100)).toThrow(
      'The number of bucket rows is at least 177, above the maximum of 100 (REPORT_MAX_BUCKET_ROWS). Use a larger bucket unit, a shorter window or fewer groups.',
    );
  });

  it('walks a year of hours within the default limit', () => {
    const w = window('2024-01-01T00:00:00+01:00', '2025-01-01T00:00:00+01:00');
    const buckets = bucketTotals(wholeWindow(w), w, 'HOUR', 'Europe/Prague');
    expect(buckets).toHaveLength(366 * 24);
    expect(buckets.reduce((sum, bucket) => sum + bucket.ms, 0)).toBe(w.end - w.start);
  });
});

describe('bucketBoundaries with totalsInBuckets', () => {
  it.each(['HOUR', 'DAY', 'WEEK', 'MONTH'] as const)('%s agrees with bucketTotals', (unit) => {
    const window = { start: Date.parse('2021-03-20T00:00:00Z'), end: Date.parse('2021-04-10T00:00:00Z') };
    const set = IntervalSet.fromPairs([
      [Date.parse('2021-03-27T22:30:00Z'), Date.parse('2021-03-28T05:00:00Z')],
      [Date.parse('2021-04-01T10:00:00Z'), Date.parse('2021-04-03T10:00:00Z')],
    ]);
    const boundaries = bucketBoundaries(window, unit, 'Europe/Prague');
    expect(totalsInBuckets(set, window, boundaries)).toEqual(bucketTotals(set, window, unit, 'Europe/Prague'));
  });
});

describe('bucketBoundariesInSlices', () => {
  it.each(['HOUR', 'DAY', 'WEEK', 'MONTH'] as const)('%s equals the walk without pauses', async (unit) => {
    const window = { start: Date.parse('2021-03-20T00:00:00Z'), end: Date.parse('2021-11-10T00:00:00Z') };
    let pauses = 0;
    const sliced = await bucketBoundariesInSlices(window, unit, 'America/New_York', 10_000, () => {
      pauses += 1;
      return pauses % 50 === 0 ? Promise.resolve() : undefined;
    });

    expect(sliced, 'boundaries').toEqual(bucketBoundaries(window, unit, 'America/New_York', 10_000));
    expect(pauses, 'one pause per bucket').toBe(sliced.length - 1);
  });

  it('rejects an unknown zone', async () => {
    const window = { start: 0, end: DAY_MS };
    await expect(bucketBoundariesInSlices(window, 'DAY', 'Mars/Olympus_Mons', 10, () => undefined)).rejects.toThrow(DomainError);
  });
});

describe('leastBucketCount', () => {
  it.each([
    ['HOUR', 10 * DAY_MS, 240],
    ['DAY', 10 * DAY_MS, 8],
    ['WEEK', 10 * DAY_MS, 1],
    ['MONTH', 10 * DAY_MS, 0],
  ] as const)('%s over %i ms', (unit, length, expected) => {
    const count = leastBucketCount({ start: 0, end: length }, unit);

    expect(count, 'lower bound').toBe(expected);
    expect(count, 'never above the walked count').toBeLessThanOrEqual(bucketBoundaries({ start: 0, end: length }, unit, 'Pacific/Chatham').length - 1);
  });
});

describe('time zone names given to luxon', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  // luxon keeps a zone and an Intl.DateTimeFormat for every name it is given,
  // so names that differ only in case would grow memory without bound.
  it('are the Intl ids of the zones', () => {
    const create = vi.spyOn(IANAZone, 'create');
    const w = window('2024-03-01T00:00:00Z', '2024-04-01T00:00:00Z');

    for (const name of ['eUrOpE/pRaGuE', 'EUROPE/PRAGUE', 'europe/prague']) {
      validateWindow(w.start, w.end, 366, name);
      bucketBoundaries(w, 'DAY', name);
    }

    const names = new Set(create.mock.calls.map(([name]) => name));
    expect(names).toEqual(new Set(['Europe/Prague']));
  });
});
