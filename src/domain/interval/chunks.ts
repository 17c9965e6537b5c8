/**
 * Fixed 30-day chunks of the time line, counted from the Unix epoch. Rollups
 * keep one merged interval set per user, pair type and chunk. The length
 * matches the migration that creates the rollup triggers, which compute
 * chunk numbers in SQL.
 */
import type { Interval } from './interval-set.js';

export const CHUNK_SECONDS = 2_592_000;
export const CHUNK_MS = CHUNK_SECONDS * 1000;

/** Returns the chunk that contains the instant `ms`. */
export function chunkOf(ms: number): number {
  return Math.floor(ms / CHUNK_MS);
}

/** Returns the first and last chunk (both inclusive) that a window `[start, end)` overlaps. */
export function chunksOverlapping(window: Interval): { first: number; last: number } {
  return { first: chunkOf(window.start), last: chunkOf(Math.max(window.start, window.end - 1)) };
}

/** Returns the instants that chunk `chunk` covers, as `[start, end)` milliseconds. */
export function chunkSpan(chunk: number): Interval {
  return { start: chunk * CHUNK_MS, end: (chunk + 1) * CHUNK_MS };
}
