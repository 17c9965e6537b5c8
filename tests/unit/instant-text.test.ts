import { parseValue, type GraphQLScalarType } from 'graphql';
import { DateTimeResolver } from 'graphql-scalars';
import { describe, expect, it } from 'vitest';

import { isoInstant, isStorableInstant, MAX_INSTANT_MS, MIN_INSTANT_MS } from '../../src/domain/storable.js';
import { resolvers } from '../../src/graphql/resolvers/index.js';
import { SECOND_60_WITH_OTHER_FAULT } from '../support/instant-cases.js';

const DateTime = resolvers.DateTime as GraphQLScalarType<Date, unknown>;

/** A small linear congruential generator, so that a failure repeats. */
function seededValues(count: number, min: number, max: number): number[] {
  let state = 12345;
  const values: number[] = [];
  for (let index = 0; index < count; index += 1) {
    state = (state * 1103515245 + 12345) % 2147483648;
    const fraction = state / 2147483648;
    values.push(Math.floor(min + fraction * (max - min)));
  }
  return values;
}

describe('isStorableInstant', () => {
  it.each([
    { name: 'earliest', ms: MIN_INSTANT_MS, storable: true },
    { name: 'latest', ms: MAX_INSTANT_MS, storable: true },
    { name: 'before the range', ms: MIN_INSTANT_MS - 1, storable: false },
    { name: 'after the range', ms: MAX_INSTANT_MS + 1, storable: false },
    { name: 'a fraction of a millisecond', ms: 1.5, storable: false },
    { name: 'NaN', ms: Number.NaN, storable: false },
  ])('checks $name', ({ ms, storable }) => {
    expect(isStorableInstant(ms)).toBe(storable);
  });
});

describe('isoInstant', () => {
  it.each([
    0,
    -1,
    1,
    MIN_INSTANT_MS,
    MAX_INSTANT_MS,
    Date.UTC(2024, 1, 29, 23, 59, 59, 999),
    Date.UTC(2000, 0, 1),
    Date.UTC(1969, 11, 31, 23, 59, 59, 999),
    // Years beyond 9999 get six digits and a sign from toISOString.
    Date.UTC(10000, 0, 1, 12),
    Date.UTC(-1, 5, 1, 7, 8, 9, 10),
  ])('writes %d as toISOString does', (ms) => {
    expect(isoInstant(ms)).toBe(new Date(ms).toISOString());
  });

  it('matches toISOString over the supported range', () => {
    for (const ms of seededValues(20_000, MIN_INSTANT_MS, MAX_INSTANT_MS)) {
      expect(isoInstant(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('matches toISOString within one day and across days', () => {
    const start = Date.UTC(2026, 2, 2, 23, 59, 58, 500);
    for (let ms = start; ms < start + 5000; ms += 7) {
      expect(isoInstant(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('drops fractions of a millisecond as Date does', () => {
    expect(isoInstant(1.9)).toBe(new Date(1.9).toISOString());
    expect(isoInstant(-1.9)).toBe(new Date(-1.9).toISOString());
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY, 8.64e15 + 1])('throws RangeError for %d', (ms) => {
    expect(() => isoInstant(ms)).toThrow(RangeError);
  });

  it('throws past the last valid time of its day', () => {
    // 8.64e15 is the last valid time value, and the first of its day.
    expect(isoInstant(8.64e15)).toBe(new Date(8.64e15).toISOString());
    expect(() => isoInstant(8.64e15 + 1)).toThrow(RangeError);
  });
});

/** Returns the instant that a parse gives, or the reason of its error. */
function outcome(parse: () => unknown): number | string {
  try {
    return (parse() as Date).getTime();
  } catch (error) {
    return String((error as { extensions?: { reason?: unknown } }).extensions?.reason ?? (error as Error).message);
  }
}

describe('DateTime parseValue', () => {
  it('parses texts written by toISOString to their instant', () => {
    for (const ms of seededValues(5_000, MIN_INSTANT_MS, MAX_INSTANT_MS)) {
      const text = new Date(ms).toISOString();
      expect(outcome(() => DateTime.parseValue(text))).toBe(ms);
    }
  });

  it.each([
    ['2026-02-30T09:00:00.000Z', 'INVALID_DATE_TIME'],
    ['2025-02-29T09:00:00.000Z', 'INVALID_DATE_TIME'],
    ['2026-13-01T09:00:00.000Z', 'INVALID_DATE_TIME'],
    ['2026-01-20T24:00:00.000Z', 'INVALID_DATE_TIME'],
    ['2026-01-20T09:60:00.000Z', 'INVALID_DATE_TIME'],
    ['2026-01-20T09:00:00.000X', 'INVALID_DATE_TIME'],
    ['2026-01-20T09:00:00+0100', 'INVALID_DATE_TIME'],
    ['+02026-01-20T09:00:00.00', 'INVALID_DATE_TIME'],
    ['0050-06-01T00:00:00.000Z', 'INSTANT_OUT_OF_RANGE'],
    ['0000-01-01T00:00:00.000Z', 'INSTANT_OUT_OF_RANGE'],
  ])('rejects %s with %s', (text, reason) => {
    expect(outcome(() => DateTime.parseValue(text))).toBe(reason);
  });

  it.each([
    '2024-02-29T23:59:59.999Z',
    '2026-01-20t09:00:00.000z',
    '2026-01-20T09:00:00.000+00:00',
    '2026-01-20T09:00:00Z',
    '2026-01-20T09:00:00.1234Z',
    '2026-01-20T10:00:00.000+01:00',
    '1972-12-31T23:59:60.000Z',
  ])('parses %s as graphql-scalars does', (text) => {
    const expected = outcome(() => DateTimeResolver.parseValue(text));
    const actual = outcome(() => DateTime.parseValue(text));

    expect(typeof expected === 'number' ? actual : typeof actual).toBe(typeof expected === 'number' ? expected : 'string');
  });
});

describe('DateTime leap seconds', () => {
  it.each(['2016-12-31T23:59:60Z', '2016-12-31T23:59:60.500Z', '2017-01-01T00:59:60+01:00'])(
    'names the leap second of %s',
    (text) => {
      let error: { message: string; extensions?: { reason?: unknown } } | undefined;
      try {
        DateTime.parseValue(text);
      } catch (caught) {
        error = caught as typeof error;
      }

      expect(error?.extensions?.reason).toBe('INVALID_DATE_TIME');
      expect(error?.message).toContain(`${text}. The value is a leap second`);
      expect(error?.message).not.toContain('Expected an RFC 3339 date-time');
    },
  );

  it('names the leap second of a literal', () => {
    const literal = parseValue('"2016-12-31T23:59:60Z"');

    expect(() => DateTime.parseLiteral(literal, {})).toThrow('The value is a leap second');
  });

  it('keeps the format hint for second 61', () => {
    expect(() => DateTime.parseValue('2016-12-31T23:59:61Z')).toThrow('Expected an RFC 3339 date-time');
  });
});

describe('DateTime second 60 with another fault', () => {
  const cases: ReadonlyArray<readonly [string, string]> = [...SECOND_60_WITH_OTHER_FAULT, ['a space before the time', '2016-12-31 23:59:60Z']];

  it.each(cases)('keeps the format hint for %s', (_case, text) => {
    let message: string | undefined;
    try {
      DateTime.parseValue(text);
    } catch (caught) {
      message = (caught as Error).message;
    }

    expect(message).toContain('Expected an RFC 3339 date-time');
    expect(message).not.toContain('leap second');
  });

  it('names the leap second in lower case', () => {
    expect(() => DateTime.parseValue('2016-12-31t23:59:60z')).toThrow('The value is a leap second');
  });
});
