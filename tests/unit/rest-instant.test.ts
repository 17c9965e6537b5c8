/**
 * `parseInstant`, which reads `occurred_at` on `POST /api/events`, against
 * the GraphQL DateTime scalar, which reads `occurredAt` on `sendEvents`. The
 * REST route promises the same processing as `sendEvents`, so each text in
 * these tables must get the same instant on both routes, or be rejected by
 * both. REST also takes a space in place of the `T`, which GraphQL rejects.
 */
import type { GraphQLScalarType } from 'graphql';
import { describe, expect, it } from 'vitest';

import { resolvers } from '../../src/graphql/resolvers/index.js';
import { parseInstant } from '../../src/http/instant.js';
import { parseRestEvent } from '../../src/http/rest.js';
import { SECOND_60_WITH_OTHER_FAULT } from '../support/instant-cases.js';

const DateTime = resolvers.DateTime as GraphQLScalarType<Date, unknown>;

/** Returns the instant that the GraphQL scalar parses, or null when it rejects the text. */
function graphqlInstant(text: string): number | null {
  try {
    return DateTime.parseValue(text).getTime();
  } catch {
    return null;
  }
}

describe('REST occurred_at against GraphQL occurredAt', () => {
  it.each([
    '2026-03-02T09:00:00Z',
    '2026-03-02T09:00:00.000Z',
    '2026-03-02t09:00:00z',
    '2026-03-02T10:30:00+01:30',
    '2026-03-02T09:00:00-00:00',
    '2024-02-29T23:59:59.999Z',
    '2026-03-02T09:00:00.1Z',
    '2026-03-02T09:00:00.123456789Z',
    // RFC 3339 puts no limit on the digits of a fraction of a second.
    '2026-03-02T09:00:00.1234567891Z',
    '2026-03-02T09:00:00.99999999999999999999+02:00',
    '0100-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999Z',
  ])('stores %s at the same instant', (text) => {
    const expected = graphqlInstant(text);

    expect(expected, 'GraphQL instant').not.toBeNull();
    expect(parseInstant(text)?.getTime(), 'REST instant').toBe(expected);
  });

  it.each([
    '2026-02-30T09:00:00Z',
    '2025-02-29T09:00:00Z',
    '2026-03-02T24:00:00Z',
    '2016-12-31T23:59:60Z',
    '2026-03-02T09:00:00',
    '2026-03-02T09:00:00.Z',
    '2026-03-02T09:00:00+0100',
    '2026-03-02T09:00:00+24:00',
    '0099-12-31T23:59:59.999Z',
    '9999-12-31T23:59:59-01:00',
  ])('rejects %s on both', (text) => {
    expect(graphqlInstant(text), 'GraphQL instant').toBeNull();
    expect(parseInstant(text), 'REST instant').toBeNull();
  });

  it('REST accepts a space before the time', () => {
    expect(parseInstant('2026-03-02 09:00:00.5Z')?.toISOString()).toBe('2026-03-02T09:00:00.500Z');
  });
});

describe('parseRestEvent occurred_at with second 60', () => {
  it.each(['2016-12-31T23:59:60Z', '2016-12-31 23:59:60Z', '2016-12-31t23:59:60.5z', '2016-12-31T23:59:60.123456789Z'])('names the leap second of %s', (text) => {
    const { problems } = parseRestEvent({ type: 'x', occurred_at: text });

    expect(problems).toEqual([`occurred_at ${JSON.stringify(text)} is a leap second, which JavaScript dates cannot hold, so send second 59.999 or the next second instead`]);
  });

  it.each(SECOND_60_WITH_OTHER_FAULT)('keeps the format problem for %s', (_case, text) => {
    const { problems } = parseRestEvent({ type: 'x', occurred_at: text });

    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain('is not an RFC 3339 instant with an offset');
  });
});

describe('parseRestEvent occurred_at quoting', () => {
  it('quotes the first 64 characters of a long value', () => {
    const text = `2026-03-02T09:00:00Z${'x'.repeat(80)}`;
    const { problems } = parseRestEvent({ type: 'x', occurred_at: text });

    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(new RegExp(`^occurred_at "${text.slice(0, 64)}" is not an RFC 3339 instant`));
  });
});
