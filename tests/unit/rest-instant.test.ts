/**
 * The REST routes parse `occurred_at` with their own RFC 3339 parser. It
 * accepts the same instants as the GraphQL `DateTime` scalar, besides a space
 * between the date and the time, so a client gets the same instant from
 * either API.
 */
import { describe, expect, it } from 'vitest';

import { resolvers } from '../../src/graphql/resolvers/index.js';
import { parseInstant } from '../../src/http/instant.js';
import type { GraphQLScalarType } from 'graphql';

const DateTime = resolvers.DateTime as GraphQLScalarType<Date, unknown>;

/** Parses `text` with the DateTime scalar and returns its instant in ms, or null when the scalar rejects it. */
function graphqlInstant(text: string): number | null {
  try {
    return DateTime.parseValue(text).getTime();
  } catch {
    return null;
  }
}

describe('parseInstant', () => {
  it.each([
    '2026-01-20T09:00:00Z',
    '2026-01-20T09:00:00.1Z',
    '2026-01-20T09:00:00.123456789Z',
    '2026-01-20T09:00:00.1234567891Z',
    '2026-01-20T09:00:00.99999999999999Z',
    '2026-01-20T10:00:00.000+01:00',
    '2026-01-20t09:00:00.000z',
    '2024-02-29T23:59:59.999Z',
    '2026-02-30T09:00:00.000Z',
    '2026-01-20T24:00:00.000Z',
    '2026-01-20T09:00:00',
    '2026-01-20T09:00:00.Z',
    '2026-01-20T09:00:00+0100',
    '2016-12-31T23:59:60Z',
    '0050-06-01T00:00:00.000Z',
  ])('agrees with DateTime on %s', (text) => {
    expect(parseInstant(text)?.getTime() ?? null).toBe(graphqlInstant(text));
  });

  it('accepts a space before the time', () => {
    expect(parseInstant('2026-01-20 09:00:00.5Z')?.toISOString()).toBe('2026-01-20T09:00:00.500Z');
  });
});
