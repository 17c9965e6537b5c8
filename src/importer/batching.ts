/**
 * Grouping of events per user and cutting a user's events into batches, both
 * keeping the input order.
 */

import type { EventInput, SourceRef } from './types.js';

/** An event read from an import file, waiting to be sent. */
export interface PendingEvent {
  input: EventInput;
  source: SourceRef;
}

/**
 * Groups items by key. Keys keep the order of their first item, and each
 * group keeps the input order.
 */
export function groupBy<T>(items: Iterable<T>, keyOf: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const key = keyOf(item);
    const group = groups.get(key);
    if (group === undefined) {
      groups.set(key, [item]);
    } else {
      group.push(item);
    }
  }
  return groups;
}

/** Cuts items into consecutive batches of at most `size` items. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(`batch size must be a positive integer, got ${size}`);
  }
  const batches: T[][] = [];
  for (let start = 0; start < items.length; start += size) {
    batches.push(items.slice(start, start + size));
  }
  return batches;
}
