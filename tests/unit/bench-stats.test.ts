/**
 * Order statistics of the benchmark. A latency row of a fast host has more
 * than 100,000 samples, which must not overflow the call stack.
 */
import { describe, expect, it } from 'vitest';

import { callTimes } from '../../bench/intake/latency.js';
import { maximum, percentile } from '../../bench/lib/stats.js';

describe('bench statistics', () => {
  it('maximum of many samples', () => {
    const samples = Array.from({ length: 300_000 }, (_, index) => (index * 7919) % 300_000);
    expect(maximum(samples)).toBe(299_999);
  });

  it('maximum of none is NaN', () => {
    expect(maximum([])).toBeNaN();
  });

  it('call times of many samples', () => {
    const samples = Array.from({ length: 300_000 }, (_, index) => index / 1000);
    const figures = callTimes(samples, 10);

    expect(figures.requests).toBe(300_000);
    expect(figures.requestsPerSecond).toBe(30_000);
    expect(figures.maxMs).toBe(299.999);
    expect(figures.p50Ms).toBe(percentile(samples, 50));
  });
});
