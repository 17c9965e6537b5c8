/** Order statistics of timing samples, in the samples' own unit. */

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Returns the nearest-rank percentile: the smallest sample with at least `p` percent of samples at or below it. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) {
    return Number.NaN;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/**
 * Returns the largest sample, or NaN for none. A loop, because spreading a
 * large array into Math.max overflows the call stack (Node 20 did so between
 * 125,000 and 130,000 samples).
 */
export function maximum(values: readonly number[]): number {
  if (values.length === 0) {
    return Number.NaN;
  }
  let largest = -Infinity;
  for (const value of values) {
    if (value > largest) {
      largest = value;
    }
  }
  return largest;
}

/** Runs `count` tasks from `next` with at most `limit` in flight, and resolves when all finished. */
export async function runPool(limit: number, count: number, next: (index: number) => Promise<void>): Promise<void> {
  let cursor = 0;
  const worker = async (): Promise<void> => {
    while (cursor < count) {
      const index = cursor;
      cursor += 1;
      await next(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, () => worker()));
}
