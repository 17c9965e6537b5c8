/**
 * Storage of segment rollups: the merged closed segments of one user and pair
 * type within one 30-day chunk, over all pair keys or for one pair key. The
 * migration 20261204190000_segment_rollups creates the tables and the
 * triggers that mark chunks stale.
 *
 * `rebuildStaleChunks` claims stale chunks for a lease, recomputes them from
 * the segments without holding locks, then writes their rollups and deletes
 * their stale rows with one statement, but only for rows that still carry its
 * claim. A trigger that marks a claimed chunk again clears the claim, so a
 * change the rebuild did not see keeps the chunk stale. A writer waits at
 * most for the claim statement or that last statement, never for a
 * rebuild's reads and merging.
 *
 * NOTE: a pair type whose segments mostly have distinct pair keys (one key
 * per task, say) gets about one keyed rollup row per segment, so its rollups
 * cost as much to build and store as the segments themselves.
 */
import { randomUUID } from 'node:crypto';

import { CHUNK_SECONDS, chunkSpan } from '../../domain/interval/chunks.js';
import { IntervalSet } from '../../domain/interval/interval-set.js';
import { MIN_INSTANT_MS } from '../../domain/storable.js';
import type { SqlClient } from './sql.js';

export interface ChunkKey {
  userId: string;
  pairType: string;
  /** True for the rollup over all pair keys, whose `pairKey` is ''. */
  allKeys: boolean;
  pairKey: string;
  chunk: number;
}

/** Encodes flat boundaries `[s0, e0, ...]` as little-endian float8 values. */
export function encodeBounds(bounds: Float64Array): Buffer {
  const bytes = Buffer.allocUnsafe(bounds.length * 8);
  for (let index = 0; index < bounds.length; index += 1) {
    bytes.writeDoubleLE(bounds[index]!, index * 8);
  }
  return bytes;
}

/**
 * Decodes concatenated rollup bounds of one user and pair type, in chunk
 * order, into a set. Pieces of neighbouring chunks may touch at the chunk
 * border; the set merges them.
 */
export function decodeRollupBounds(bytes: Uint8Array): IntervalSet {
  if (bytes.byteLength % 16 !== 0) {
    throw new Error(`Rollup bounds must hold pairs of 8-byte values, got ${bytes.byteLength} bytes.`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = bytes.byteLength / 16;
  const starts = new Float64Array(count);
  const ends = new Float64Array(count);
  for (let index = 0; index < count; index += 1) {
    starts[index] = view.getFloat64(index * 16, true);
    ends[index] = view.getFloat64(index * 16 + 8, true);
  }
  return IntervalSet.fromSortedStarts(starts, ends);
}

/**
 * How long a rebuild's claim on its stale rows lasts. Another builder takes
 * over the rows of a rebuild that has not finished by then, as after a crash,
 * and the late rebuild then writes nothing.
 */
export const CLAIM_LEASE_MS = 60_000;

/**
 * Rebuilds up to `limit` stale chunks that were first marked at least
 * `minAgeMs` ago and that neither a writer nor another rebuild holds.
 * Returns how many it claimed. A chunk marked again during the rebuild stays
 * stale, and its rollup is left as it was.
 */
export async function rebuildStaleChunks(
  sql: SqlClient,
  limit: number,
  minAgeMs = 0,
  /** Runs between the read of the segments and the write, for tests that change segments there. */
  afterRead: () => Promise<void> = async () => {},
): Promise<number> {
  const claim = randomUUID();
  // A claim commits at once. SKIP LOCKED passes over rows that an open
  // writer's mark holds, because the segments it changes are not visible yet.
  const claimed = await sql.queryArrays(
    `UPDATE segment_rollup_stale s SET claim = $3, claimed_until = now() + $4 * interval '1 millisecond'
     FROM (
       SELECT user_id, pair_type, all_keys, pair_key, chunk FROM segment_rollup_stale
       WHERE marked_at <= now() - $2 * interval '1 millisecond' AND (claim IS NULL OR claimed_until < now())
       ORDER BY user_id, pair_type, all_keys, pair_key, chunk
       LIMIT $1 FOR UPDATE SKIP LOCKED
     ) AS k
     WHERE ${sameKey('s')}
     RETURNING s.user_id::text, s.pair_type, s.all_keys, s.pair_key, s.chunk`,
    [limit, minAgeMs, claim, CLAIM_LEASE_MS],
  );
  if (claimed.length === 0) {
    return 0;
  }
  const keys: ChunkKey[] = claimed.map((row) => ({
    userId: row[0] as string,
    pairType: row[1] as string,
    allKeys: row[2] as boolean,
    pairKey: row[3] as string,
    chunk: Number(row[4]),
  }));
  try {
    // Read after the claim committed, so the read includes every change marked before the claim.
    const segments = await loadChunkSegments(sql, keys);
    const bounds = keys.map((key, index) => {
      const part = segments.get(index);
      const set =
        part === undefined ? IntervalSet.empty() : IntervalSet.fromUnsortedBounds(part.starts, part.ends).clip(chunkSpan(key.chunk));
      return set.isEmpty ? null : encodeBounds(set.toBoundaries());
    });
    await afterRead();
    await writeClaimedRollups(sql, claim, keys, bounds);
  } catch (error) {
    // Lets the next rebuild take the chunks at once instead of after the lease.
    await sql
      .query(`UPDATE segment_rollup_stale SET claim = NULL, claimed_until = NULL WHERE claim = $1`, [claim])
      .catch(() => undefined);
    throw error;
  }
  return keys.length;
}

/**
 * Deletes the stale rows that still carry `claim`, and for those chunks only
 * writes the rollup bounds, or deletes the rollup where the bounds are null.
 * One statement does both, so a chunk is never clean with a rollup older
 * than its segments. The delete waits for a writer that has locked a row,
 * and skips the row if that writer's mark cleared the claim.
 */
async function writeClaimedRollups(
  sql: SqlClient,
  claim: string,
  keys: readonly ChunkKey[],
  bounds: ReadonlyArray<Buffer | null>,
): Promise<void> {
  await sql.query(
    `WITH k AS (
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::int[], $6::bytea[])
         AS k(user_id, pair_type, all_keys, pair_key, chunk, bounds)
     ), done AS (
       DELETE FROM segment_rollup_stale s USING k
       WHERE ${sameKey('s')} AND s.claim = $7
       RETURNING s.user_id, s.pair_type, s.all_keys, s.pair_key, s.chunk
     ), clean AS (
       SELECT k.* FROM k JOIN done d
         ON d.user_id = k.user_id AND d.pair_type = k.pair_type AND d.all_keys = k.all_keys
         AND d.pair_key = k.pair_key AND d.chunk = k.chunk
     ), written AS (
       INSERT INTO segment_rollups (user_id, pair_type, all_keys, pair_key, chunk, bounds)
       SELECT user_id, pair_type, all_keys, pair_key, chunk, bounds FROM clean WHERE bounds IS NOT NULL
       ON CONFLICT (user_id, pair_type, all_keys, pair_key, chunk)
       DO UPDATE SET bounds = EXCLUDED.bounds, built_at = now()
       RETURNING 1
     ), emptied AS (
       DELETE FROM segment_rollups r USING clean k
       WHERE ${sameKey('r')} AND k.bounds IS NULL
       RETURNING 1
     )
     SELECT count(*) AS done FROM done`,
    [...keyColumns(keys), [...bounds], claim],
  );
}

/**
 * Postpones, by `postponeMs`, the stale chunk that `rebuildStaleChunks(sql,
 * 1, minAgeMs)` would take next, so that a chunk whose rebuild keeps failing
 * does not block the chunks after it. Returns its key, or null when none was
 * free. Reports keep reading the segments of a postponed chunk.
 */
export async function postponeNextStaleChunk(sql: SqlClient, minAgeMs: number, postponeMs: number): Promise<ChunkKey | null> {
  const rows = await sql.queryArrays(
    `UPDATE segment_rollup_stale s SET marked_at = now() + $2 * interval '1 millisecond'
     FROM (
       SELECT user_id, pair_type, all_keys, pair_key, chunk FROM segment_rollup_stale
       WHERE marked_at <= now() - $1 * interval '1 millisecond' AND (claim IS NULL OR claimed_until < now())
       ORDER BY user_id, pair_type, all_keys, pair_key, chunk
       LIMIT 1 FOR UPDATE SKIP LOCKED
     ) AS k
     WHERE ${sameKey('s')}
     RETURNING s.user_id::text, s.pair_type, s.all_keys, s.pair_key, s.chunk`,
    [minAgeMs, postponeMs],
  );
  const row = rows[0];
  if (row === undefined) {
    return null;
  }
  return { userId: row[0] as string, pairType: row[1] as string, allKeys: row[2] as boolean, pairKey: row[3] as string, chunk: Number(row[4]) };
}

/** Counts the stale chunks, for tests, the benchmark and operators. */
export async function countStaleChunks(sql: SqlClient): Promise<number> {
  const rows = await sql.queryArrays(`SELECT count(*)::int FROM segment_rollup_stale`);
  return Number(rows[0]?.[0] ?? 0);
}

/** The chunk keys passed as five parallel arrays, `$1` to `$5`. */
const KEYS_TABLE = `unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::int[]) AS k(user_id, pair_type, all_keys, pair_key, chunk)`;

/** Matches the rows of table alias `alias` to the key `k`. */
export function sameKey(alias: string): string {
  return `${alias}.user_id = k.user_id AND ${alias}.pair_type = k.pair_type AND ${alias}.all_keys = k.all_keys AND ${alias}.pair_key = k.pair_key AND ${alias}.chunk = k.chunk`;
}

function keyColumns(keys: readonly ChunkKey[]): [string[], string[], boolean[], string[], number[]] {
  return [
    keys.map((key) => key.userId),
    keys.map((key) => key.pairType),
    keys.map((key) => key.allKeys),
    keys.map((key) => key.pairKey),
    keys.map((key) => key.chunk),
  ];
}

/**
 * Loads the closed segments that overlap each chunk, by the chunk's index in
 * `keys`, as packed bounds. The scan starts at the chunk start minus the
 * longest closed segment of the user and pair type, as in the leaf loader,
 * but not before MIN_INSTANT_MS. The bound is computed in seconds first,
 * because for a very long segment it would fall before year 1, which
 * timestamps reject.
 */
async function loadChunkSegments(
  sql: SqlClient,
  keys: readonly ChunkKey[],
): Promise<Map<number, { starts: Float64Array; ends: Float64Array }>> {
  const rows = await sql.queryArrays(
    `SELECT k.i::int,
            string_agg(float8send(date_part('epoch', s.start_at) * 1000), ''::bytea),
            string_agg(float8send(date_part('epoch', s.end_at) * 1000), ''::bytea)
     FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::int[])
       WITH ORDINALITY AS k(user_id, pair_type, all_keys, pair_key, chunk, i)
     LEFT JOIN segment_length_bounds b ON b.user_id = k.user_id AND b.pair_type = k.pair_type
     JOIN segments s ON s.user_id = k.user_id AND s.pair_type = k.pair_type
       AND (k.all_keys OR s.pair_key = k.pair_key)
       AND s.end_at IS NOT NULL
       AND s.start_at < to_timestamp((k.chunk + 1)::float8 * ${CHUNK_SECONDS})
       AND s.end_at > to_timestamp(k.chunk::float8 * ${CHUNK_SECONDS})
       AND s.start_at >= to_timestamp(GREATEST(k.chunk::float8 * ${CHUNK_SECONDS} - COALESCE(b.max_ms, 0) / 1000.0, ${MIN_INSTANT_MS / 1000}))
     GROUP BY k.i`,
    keyColumns(keys),
  );
  const parts = new Map<number, { starts: Float64Array; ends: Float64Array }>();
  for (const row of rows) {
    // WITH ORDINALITY counts from 1.
    parts.set(Number(row[0]) - 1, {
      starts: unpackFloat64(row[1] as Uint8Array),
      ends: unpackFloat64(row[2] as Uint8Array),
    });
  }
  return parts;
}

/** Reads big-endian float8 values, as `float8send` writes them, rounded to whole milliseconds. */
export function unpackFloat64(bytes: Uint8Array): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float64Array(bytes.byteLength / 8);
  for (let index = 0; index < values.length; index += 1) {
    values[index] = Math.round(view.getFloat64(index * 8));
  }
  return values;
}
