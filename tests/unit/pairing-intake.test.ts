import { describe, expect, it } from 'vitest';

import { classifyArrival, type ArrivalFlag } from '../../src/domain/pairing/index.js';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const RECEIVED = Date.parse('2024-03-08T12:00:00Z');
const LIMITS = { clockSkewMs: 5 * MINUTE, latenessHorizonMs: 7 * DAY };

describe('classifyArrival', () => {
  it.each<{
    name: string;
    occurredAt: number | null;
    maxApplied: number | null;
    effective: number;
    flags: ArrivalFlag[];
    ignored: boolean;
  }>([
    { name: 'omitted time', occurredAt: null, maxApplied: null, effective: RECEIVED, flags: [], ignored: false },
    { name: 'on time', occurredAt: RECEIVED - MINUTE, maxApplied: RECEIVED - 2 * MINUTE, effective: RECEIVED - MINUTE, flags: [], ignored: false },
    { name: 'future within skew', occurredAt: RECEIVED + 5 * MINUTE, maxApplied: null, effective: RECEIVED + 5 * MINUTE, flags: [], ignored: false },
    { name: 'future beyond skew', occurredAt: RECEIVED + 5 * MINUTE + 1, maxApplied: null, effective: RECEIVED, flags: ['FUTURE_TIMESTAMP'], ignored: false },
    { name: 'equal to latest', occurredAt: RECEIVED - MINUTE, maxApplied: RECEIVED - MINUTE, effective: RECEIVED - MINUTE, flags: [], ignored: false },
    { name: 'late', occurredAt: RECEIVED - 2 * DAY, maxApplied: RECEIVED, effective: RECEIVED - 2 * DAY, flags: ['LATE_EVENT'], ignored: false },
    { name: 'late at horizon', occurredAt: RECEIVED - 7 * DAY, maxApplied: RECEIVED, effective: RECEIVED - 7 * DAY, flags: ['LATE_EVENT'], ignored: false },
    { name: 'beyond horizon', occurredAt: RECEIVED - 7 * DAY - 1, maxApplied: RECEIVED, effective: RECEIVED - 7 * DAY - 1, flags: ['LATE_BEYOND_HORIZON'], ignored: true },
    { name: 'old backfill in order', occurredAt: RECEIVED - 300 * DAY, maxApplied: RECEIVED - 301 * DAY, effective: RECEIVED - 300 * DAY, flags: [], ignored: false },
    { name: 'future and late', occurredAt: RECEIVED + DAY, maxApplied: RECEIVED + 3 * MINUTE, effective: RECEIVED, flags: ['FUTURE_TIMESTAMP', 'LATE_EVENT'], ignored: false },
    { name: 'omitted and late', occurredAt: null, maxApplied: RECEIVED + MINUTE, effective: RECEIVED, flags: ['LATE_EVENT'], ignored: false },
  ])('$name', ({ occurredAt, maxApplied, effective, flags, ignored }) => {
    const result = classifyArrival(
      { occurredAt, receivedAt: RECEIVED, maxAppliedOccurredAt: maxApplied },
      LIMITS,
    );
    expect(result.occurredAt).toBe(effective);
    expect(result.flags).toEqual(flags);
    expect(result.ignored).toBe(ignored);
  });

  it('accepts limits of zero', () => {
    const limits = { clockSkewMs: 0, latenessHorizonMs: 0 };

    const future = classifyArrival({ occurredAt: RECEIVED + 1, receivedAt: RECEIVED, maxAppliedOccurredAt: null }, limits);
    expect(future.occurredAt).toBe(RECEIVED);
    expect(future.flags).toEqual(['FUTURE_TIMESTAMP']);

    const late = classifyArrival({ occurredAt: RECEIVED - 1, receivedAt: RECEIVED, maxAppliedOccurredAt: RECEIVED }, limits);
    expect(late.flags).toEqual(['LATE_BEYOND_HORIZON']);
    expect(late.ignored).toBe(true);
  });

  it.each([
    { name: 'negative skew', limits: { clockSkewMs: -1, latenessHorizonMs: DAY } },
    { name: 'NaN horizon', limits: { clockSkewMs: 0, latenessHorizonMs: Number.NaN } },
  ])('rejects $name', ({ limits }) => {
    const arrival = { occurredAt: RECEIVED, receivedAt: RECEIVED, maxAppliedOccurredAt: null };
    expect(() => classifyArrival(arrival, limits)).toThrow(RangeError);
  });
});
