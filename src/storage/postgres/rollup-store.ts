/**
 * Storage of segment rollups: the merged closed segments of one user and pair
 * type within one 30-day chunk, over all pair keys or for one pair key. The
 * migration 20261204190000_segment_rollups creates the tables and the
 * triggers that mark chunks stale.
 *
 * `rebuildStaleChunks` takes stale chunks with FOR UPDATE SKIP LOCKED,
 * recomputes them from the segments and deletes their stale rows, all in one
 * transaction. A trigger that marks a chunk again while a rebuild has it locked
 * waits for the rebuild to commit and then inserts a fresh stale row, so a
 * change the rebuild did not see is never lost.
 *
 * NOTE: a pair type whose segments mostly have distinct pair keys (one key
 * per task, say) gets about one keyed rollup row per segment, so its rollups
 * cost as much to build and store as the segments themselves.
 */
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
 * Rebuilds up to `limit` stale chunks that were first marked at least
 * `minAgeMs` ago and that no other transaction has locked, in one
 * transaction. Returns how many it rebuilt.
 */
export async function rebuildStaleChunks(sql: SqlClient, limit: number, minAgeMs = 0): Promise<number> {
  return sql.transaction(async (tx) => {
    const claimed = await tx.queryArrays(
      `SELECT user_id::text, pair_type, all_keys, pair_key, chunk FROM segment_rollup_stale
       WHERE marked_at <= now() - $2 * interval '1 millisecond'
       ORDER BY user_id, pair_type, all_keys, pair_key, chunk
       LIMIT $1 FOR UPDATE SKIP LOCKED`,
      [limit, minAgeMs],
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
    const segments = await loadChunkSegments(tx, keys);

    const built: Array<{ key: ChunkKey; bounds: Buffer }> = [];
    const emptied: ChunkKey[] = [];
    keys.forEach((key, index) => {
      const part = segments.get(index);
      const set =
        part === undefined ? IntervalSet.empty() : IntervalSet.fromUnsortedBounds(part.starts, part.ends).clip(chunkSpan(key.chunk));
      if (set.isEmpty) {
        emptied.push(key);
      } else {
        built.push({ key, bounds: encodeBounds(set.toBoundaries()) });
      }
    });

    if (built.length > 0) {
      const params: unknown[] = [];
      const rows = built.map(({ key, bounds }) => {
        params.push(key.userId, key.pairType, key.allKeys, key.pairKey, key.chunk, bounds);
        const at = params.length;
        return `($${at - 5}::uuid, $${at - 4}, $${at - 3}::boolean, $${at - 2}, $${at - 1}::int, $${at}::bytea)`;
      });
      await tx.query(
        `INSERT INTO segment_rollups (user_id, pair_type, all_keys, pair_key, chunk, bounds)
         VALUES ${rows.join(', ')}
         ON CONFLICT (user_id, pair_type, all_keys, pair_key, chunk)
         DO UPDATE SET bounds = EXCLUDED.bounds, built_at = now()`,
        params,
      );
    }
    const columns = keyColumns(keys);
    if (emptied.length > 0) {
      const emptiedColumns = keyColumns(emptied);
      await tx.query(
        `DELETE FROM segment_rollups r
         USING ${KEYS_TABLE}
         WHERE ${sameKey('r')}`,
        emptiedColumns,
      );
    }
    await tx.query(
      `DELETE FROM segment_rollup_stale s
       USING ${KEYS_TABLE}
       WHERE ${sameKey('s')}`,
      columns,
    );
    return keys.length;
  });
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
       WHERE marked_at <= now() - $1 * interval '1 millisecond'
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

/**
 * Joins the closed segments that a chunk key `k` covers, as `g` with the
 * columns user_id, start_at and end_at: every pair key's for a key over all
 * of them, and its own pair key's otherwise. The two cases are separate
 * branches, so that a key of one pair key reads its segments through the
 * index on the pair key rather than every segment of the pair type.
 * `conditions` bounds the segments' times, on the alias `s`.
 */
export function joinChunkSegments(conditions: (alias: string) => string): string {
  const branch = (keyFilter: string) => `SELECT s.user_id, s.start_at, s.end_at FROM segments s
       WHERE ${keyFilter} AND s.user_id = k.user_id AND s.pair_type = k.pair_type AND s.end_at IS NOT NULL AND ${conditions('s')}`;
  return `CROSS JOIN LATERAL (
       ${branch('k.all_keys')}
       UNION ALL
       ${branch('NOT k.all_keys AND s.pair_key = k.pair_key')}
     ) AS g`;
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
  tx: SqlClient,
  keys: readonly ChunkKey[],
): Promise<Map<number, { starts: Float64Array; ends: Float64Array }>> {
  const rows = await tx.queryArrays(
    `SELECT k.i::int,
            string_agg(float8send(date_part('epoch', g.start_at) * 1000), ''::bytea),
            string_agg(float8send(date_part('epoch', g.end_at) * 1000), ''::bytea)
     FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::text[], $5::int[])
       WITH ORDINALITY AS k(user_id, pair_type, all_keys, pair_key, chunk, i)
     LEFT JOIN segment_length_bounds b ON b.user_id = k.user_id AND b.pair_type = k.pair_type
     ${joinChunkSegments(
       (s) => `${s}.start_at < to_timestamp((k.chunk + 1)::float8 * ${CHUNK_SECONDS})
         AND ${s}.end_at > to_timestamp(k.chunk::float8 * ${CHUNK_SECONDS})
         AND ${s}.start_at >= to_timestamp(GREATEST(k.chunk::float8 * ${CHUNK_SECONDS} - COALESCE(b.max_ms, 0) / 1000.0, ${MIN_INSTANT_MS / 1000}))`,
     )}
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
