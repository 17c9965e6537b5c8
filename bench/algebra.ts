/**
 * Micro benchmark of the interval algebra and calendar buckets.
 * Run with `npx tsx bench/algebra.ts`; prints the median of a few runs per
 * case, in milliseconds, for the machine it runs on.
 */

import { bucketTotals } from '../src/domain/interval/buckets.js';
import { IntervalSet } from '../src/domain/interval/interval-set.js';

const RUNS = 5;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function measure(name: string, run: () => unknown): void {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i += 1) {
    const started = performance.now();
    run();
    times.push(performance.now() - started);
  }
  console.log(`${name.padEnd(48)} ${median(times).toFixed(1).padStart(9)} ms`);
}

/** Pieces [step * k + offset, step * k + offset + length) for k = 0..count-1. */
function regular(count: number, step: number, offset: number, length: number): IntervalSet {
  const starts = new Float64Array(count);
  const ends = new Float64Array(count);
  for (let k = 0; k < count; k += 1) {
    starts[k] = step * k + offset;
    ends[k] = step * k + offset + length;
  }
  return IntervalSet.fromSortedStarts(starts, ends);
}

const operands = Array.from({ length: 1000 }, (_, j) => regular(1000, 2000, j, 2));
const a = regular(1_000_000, 10, 0, 6);
const b = regular(1_000_000, 10, 3, 5);
const window = { start: 0, end: 10_000_000 };
const year = { start: Date.UTC(2024, 0, 1), end: Date.UTC(2025, 0, 1) };
const yearSet = regular(100_000, 315_360, Date.UTC(2024, 0, 1), 100_000);

measure('union of 1,000 sets x 1,000 pieces', () => IntervalSet.unionAll(operands));
measure('intersect of 1,000 sets x 1,000 pieces', () => IntervalSet.intersectAll(operands));
measure('union of two 1M-piece sets', () => IntervalSet.union(a, b));
measure('intersect of two 1M-piece sets', () => IntervalSet.intersect(a, b));
measure('difference of two 1M-piece sets', () => IntervalSet.difference(a, b));
measure('complement of a 1M-piece set', () => IntervalSet.complement(a, window));
measure('fromPairs of 1M shuffled pairs', () =>
  IntervalSet.fromPairs(Array.from({ length: 1_000_000 }, (_, k) => {
    const start = ((k * 7919) % 1_000_000) * 10;
    return [start, start + 6] as const;
  })),
);
measure('HOUR buckets, 100k pieces, Europe/Prague year', () =>
  bucketTotals(yearSet, year, 'HOUR', 'Europe/Prague'),
);
measure('DAY buckets, 100k pieces, Europe/Prague year', () =>
  bucketTotals(yearSet, year, 'DAY', 'Europe/Prague'),
);
