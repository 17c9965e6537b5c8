import { isStorableInstant } from '../domain/storable.js';

/**
 * RFC 3339 instants with an explicit offset (`Z` or `+hh:mm`). An instant
 * without an offset is rejected, because its meaning depends on a zone the
 * server cannot know. The fraction may have any number of digits, as the
 * GraphQL `DateTime` scalar accepts, and digits beyond the millisecond are
 * dropped. Unlike that scalar, a space may separate the date and the time,
 * which RFC 3339 allows and older REST clients send.
 */
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 instant, or returns null when the text is not one, names
 * a day that its month does not have (`2021-02-30`), or lies outside the
 * range that storage supports (`isStorableInstant`).
 */
export function parseInstant(text: string): Date | null {
  const match = RFC3339.exec(text);
  if (match === null) {
    return null;
  }
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  if (
    year === undefined || month === undefined || day === undefined || hour === undefined || minute === undefined || second === undefined ||
    month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59
  ) {
    return null;
  }
  // Date accepts day 31 in every month and rolls it over into the next one, so the day was checked above.
  const date = new Date(text.replace(' ', 'T'));
  if (!isStorableInstant(date.getTime())) {
    return null;
  }
  return date;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days in `month` (1 to 12) of `year` in the proleptic Gregorian calendar. */
function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] ?? 31);
}
