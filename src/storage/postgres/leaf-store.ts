/**
 * Loads the segments of report leaves as interval sets over `[start, end)`
 * milliseconds, reading only what can overlap the window.
 *
 * A leaf without a `meta` filter reads rollups: per user, pair type and
 * 30-day chunk, the merged closed segments over all pair keys or of one pair
 * key (see `rollup-store.ts`). Chunks marked stale are read from the segments
 * instead, and open segments always are. The stale list and the reads share
 * one REPEATABLE READ snapshot, so a change that commits in between cannot
 * drop or double a segment.
 *
 * A leaf with `meta` reads the segments. Closed segments are
 * found by the index on (user_id, pair_type, start_at). The scan starts at the
 * window start minus the longest closed segment of the selected users and
 * pair types, which segment_length_bounds keeps, so segments far before the
 * window are never read. Open segments come from their partial index.
 *
 * NOTE: the bound is one maximum over all selected users and pair types, and
 * it only grows, so a single very long closed segment widens the scan of
 * every leaf that selects its user and pair type.
 */
import { chunksOverlapping, CHUNK_SECONDS } from '../../domain/interval/chunks.js';
import { IntervalSet } from '../../domain/interval/interval-set.js';
import type { LeafSpec } from '../../domain/report/types.js';
import { MIN_INSTANT_MS } from '../../domain/storable.js';
import { isUuid } from '../../domain/user-id.js';
import { decodeRollupBounds, joinChunkSegments, sameKey, unpackFloat64 } from './rollup-store.js';
import { SqlParams, type SqlClient } from './sql.js';

export interface LeafSets {
  /** The union of the leaf's segments, not clipped to the window. */
  set: IntervalSet;
  /** The same set split by user id when `withUserIds` was set, otherwise null. */
  perUser: Map<string, IntervalSet> | null;
  /** Segment rows read, and rollup chunks read (0 when the leaf cannot use rollups). */
  segmentsRead: number;
  chunksRead: number;
}

/** The selection and window of one leaf read. */
export interface LeafRead {
  spec: LeafSpec;
  /** Users to restrict to when the leaf names none (null: every user). */
  defaultUsers: readonly string[] | null;
  windowStart: number;
  windowEnd: number;
  withUserIds: boolean;
  /** Whether to read rollups where the leaf allows it (default true). False reads segments only. */
  rollups?: boolean;
}

export interface LeafQuery extends LeafRead {
  /** End of open segments: min(now, window end). */
  openEnd: number;
}

/** The packed bounds of one part of a leaf: unsorted segments, or one user's and pair type's rollup chunks in order. */
interface Part {
  userId: string | null;
  kind: 'segments' | 'rollup';
  starts: Float64Array;
  /** Null for open segments, which get their end when the rows become sets. */
  ends: Float64Array | null;
  rollup: Uint8Array | null;
  chunks: number;
}

/**
 * The rows of one leaf as read from the database. Open segments have no end
 * yet, so that a caller can take now after the read (see `leafSets`).
 */
export interface LeafRows {
  readonly parts: readonly Part[];
  readonly withUserIds: boolean;
}

/** A leaf's rows, with the snapshot it read them from. */
export interface SnapshotLeafRows extends LeafRows {
  /**
   * The transaction's snapshot as `pg_current_snapshot()` prints it. Two
   * equal texts see the same committed transactions, so their reads agree.
   */
  readonly snapshot: string;
}

/** A leaf's sets, with the snapshot it read them from. */
export interface SnapshotLeafSets extends LeafSets {
  /** The snapshot, as in SnapshotLeafRows. */
  snapshot: string;
}

/** Reads one leaf in a REPEATABLE READ transaction of its own, and returns the snapshot it read. */
export async function readLeaf(sql: SqlClient, read: LeafRead): Promise<SnapshotLeafRows> {
  return sql.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    // The first statement takes the snapshot that every later one reads.
    const [row] = await tx.query<{ snapshot: string }>('SELECT pg_current_snapshot()::text AS snapshot');
    const rows = await readLeafIn(tx, read);
    return { ...rows, snapshot: row!.snapshot };
  });
}

/**
 * Reads several leaves in one REPEATABLE READ transaction, so they read one
 * snapshot. Set operations between them then never combine two states of
 * the database, such as a task in one leaf without its session in another.
 * Returns the rows in the order of `reads`.
 */
export async function readLeaves(sql: SqlClient, reads: readonly LeafRead[]): Promise<LeafRows[]> {
  return sql.transaction(async (tx) => {
    await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const leaves: LeafRows[] = [];
    for (const read of reads) {
      leaves.push(await readLeafIn(tx, read));
    }
    return leaves;
  });
}

/** Loads one leaf in a transaction of its own, with open segments running to `query.openEnd`. */
export async function loadLeafSets(sql: SqlClient, query: LeafQuery): Promise<SnapshotLeafSets> {
  const rows = await readLeaf(sql, query);
  return { ...leafSets(rows, query.openEnd), snapshot: rows.snapshot };
}

/** Reads one leaf with the statements of `tx`, which is in the caller's snapshot. */
async function readLeafIn(tx: SqlClient, read: LeafRead): Promise<LeafRows> {
  const { spec } = read;
  // User ids are UUIDs, so any other id matches no segment. Casting it to uuid would fail the query.
  const users = (spec.users ?? read.defaultUsers)?.filter((id) => isUuid(id)) ?? null;
  const useRollups = read.rollups !== false && spec.meta === null;
  const parts = useRollups ? await loadFromRollups(tx, read, users) : await loadFromSegments(tx, read, users);
  return { parts, withUserIds: read.withUserIds };
}

/** Builds the sets of a leaf's rows, with its open segments running to `openEnd`. */
export function leafSets(rows: LeafRows, openEnd: number): LeafSets {
  const parts = rows.parts.map((part): EndedPart => ({
    ...part,
    ends: part.ends ?? new Float64Array(part.starts.length).fill(openEnd),
  }));
  return toSets(parts, rows.withUserIds);
}

/** Selects the leaf's segments (table alias `g`) by every filter it has. */
function segmentFilters(params: SqlParams, users: readonly string[] | null, spec: LeafSpec): string[] {
  const filters = userAndTypeFilters(params, users, spec, 'g');
  if (spec.pairKeys !== null) filters.push(`g.pair_key = ANY(${params.bind(spec.pairKeys)}::text[])`);
  if (spec.meta !== null) filters.push(`g.meta @> ${params.bind(JSON.stringify(spec.meta))}::jsonb`);
  return filters;
}

/** Selects the rollups of the leaf's pair keys, or those over all keys when it names none. */
function rollupScopeFilters(params: SqlParams, users: readonly string[] | null, spec: LeafSpec, alias: string): string[] {
  const filters = userAndTypeFilters(params, users, spec, alias);
  if (spec.pairKeys === null) {
    filters.push(`${alias}.all_keys`);
  } else {
    filters.push(`NOT ${alias}.all_keys`, `${alias}.pair_key = ANY(${params.bind(spec.pairKeys)}::text[])`);
  }
  return filters;
}

function userAndTypeFilters(params: SqlParams, users: readonly string[] | null, spec: LeafSpec, alias: string): string[] {
  const filters: string[] = [];
  if (users !== null) filters.push(`${alias}.user_id = ANY(${params.bind([...users])}::uuid[])`);
  if (spec.pairTypes !== null) filters.push(`${alias}.pair_type = ANY(${params.bind(spec.pairTypes)}::text[])`);
  return filters;
}

// date_part returns float8. extract returns numeric since PostgreSQL 14 and
// takes more than twice as long over a million rows. unpackFloat64 rounds
// away the sub-millisecond error of the float.
const PACKED_START = `string_agg(float8send(date_part('epoch', g.start_at) * 1000), ''::bytea)`;
const PACKED_END = `string_agg(float8send(date_part('epoch', g.end_at) * 1000), ''::bytea)`;

/** Builds the part of the query that reads open segments, which rollups never contain. */
function openSegmentsSelect(params: SqlParams, filters: readonly string[], query: LeafRead): string {
  const userColumn = query.withUserIds ? 'g.user_id::text' : 'NULL::text';
  return `SELECT ${userColumn}, 'segments', ${PACKED_START}, NULL::bytea, 0
    FROM segments g
    WHERE ${[...filters, 'g.end_at IS NULL', `g.start_at < ${params.bind(new Date(query.windowEnd))}`].join(' AND ')}
    ${query.withUserIds ? 'GROUP BY g.user_id' : ''}`;
}

async function loadFromRollups(tx: SqlClient, query: LeafRead, users: readonly string[] | null): Promise<Part[]> {
  const { spec } = query;
  const { first, last } = chunksOverlapping({ start: query.windowStart, end: query.windowEnd });

  const staleParams = new SqlParams();
  const staleRows = await tx.queryArrays(
    `SELECT s.user_id::text, s.pair_type, s.all_keys, s.pair_key, s.chunk FROM segment_rollup_stale s
     WHERE ${[...rollupScopeFilters(staleParams, users, spec, 's'), `s.chunk BETWEEN ${staleParams.bind(first)} AND ${staleParams.bind(last)}`].join(' AND ')}`,
    staleParams.values,
  );

  const params = new SqlParams();
  const rollupFilters = rollupScopeFilters(params, users, spec, 'r');
  rollupFilters.push(`r.chunk BETWEEN ${params.bind(first)} AND ${params.bind(last)}`);
  let staleKeys: string | null = null;
  if (staleRows.length > 0) {
    const column = (index: number, type: string) => `${params.bind(staleRows.map((row) => row[index]))}::${type}[]`;
    staleKeys = `unnest(${column(0, 'uuid')}, ${column(1, 'text')}, ${column(2, 'boolean')}, ${column(3, 'text')}, ${column(4, 'int')})
      AS k(user_id, pair_type, all_keys, pair_key, chunk)`;
    rollupFilters.push(`NOT EXISTS (SELECT 1 FROM ${staleKeys} WHERE ${sameKey('r')})`);
  }
  // One row per user, pair type and pair key, its chunks concatenated in order.
  const selects = [
    `SELECT r.user_id::text, 'rollup', string_agg(r.bounds, ''::bytea ORDER BY r.chunk), NULL::bytea, count(*)::int
     FROM segment_rollups r
     WHERE ${rollupFilters.join(' AND ')}
     GROUP BY r.user_id, r.pair_type, r.pair_key`,
  ];

  if (staleKeys !== null) {
    // The closed segments of each stale chunk, within the window. A segment
    // that spans two stale chunks is read twice, which the union absorbs.
    const userColumn = query.withUserIds ? 'g.user_id::text' : 'NULL::text';
    const windowStart = params.bind(new Date(query.windowStart));
    const windowEnd = params.bind(new Date(query.windowEnd));
    const chunkStart = `to_timestamp(k.chunk::float8 * ${CHUNK_SECONDS})`;
    const chunkEnd = `to_timestamp((k.chunk + 1)::float8 * ${CHUNK_SECONDS})`;
    // The lowest start, in epoch seconds, is computed before it becomes a
    // timestamp: the length bound of a very long segment would reach before
    // year 1, which timestamps reject. No segment starts before MIN_INSTANT_MS.
    const lowestStart = `to_timestamp(GREATEST(
      GREATEST(k.chunk::float8 * ${CHUNK_SECONDS}, ${params.bind(query.windowStart / 1000)}::float8) - COALESCE(b.max_ms, 0) / 1000.0,
      ${params.bind(MIN_INSTANT_MS / 1000)}::float8))`;
    selects.push(
      `SELECT ${userColumn}, 'segments', ${PACKED_START}, ${PACKED_END}, 0
       FROM ${staleKeys}
       LEFT JOIN segment_length_bounds b ON b.user_id = k.user_id AND b.pair_type = k.pair_type
       ${joinChunkSegments(
         (s) => `${s}.start_at < LEAST(${chunkEnd}, ${windowEnd})
           AND ${s}.end_at > GREATEST(${chunkStart}, ${windowStart})
           AND ${s}.start_at >= ${lowestStart}`,
       )}
       ${query.withUserIds ? 'GROUP BY g.user_id' : ''}`,
    );
  }
  if (spec.includeOpen) {
    selects.push(openSegmentsSelect(params, segmentFilters(params, users, spec), query));
  }
  return toParts(await tx.queryArrays(selects.join('\nUNION ALL\n'), params.values));
}

async function loadFromSegments(sql: SqlClient, query: LeafRead, users: readonly string[] | null): Promise<Part[]> {
  const { spec } = query;
  const params = new SqlParams();
  const filters = segmentFilters(params, users, spec);

  // The longest closed segment among the selected users and pair types.
  const boundParams = new SqlParams();
  const boundFilters = userAndTypeFilters(boundParams, users, spec, 'b');
  const boundRows = await sql.queryArrays(
    `SELECT COALESCE(max(b.max_ms), 0)::float8 FROM segment_length_bounds b
     ${boundFilters.length > 0 ? `WHERE ${boundFilters.join(' AND ')}` : ''}`,
    boundParams.values,
  );
  const longestMs = Number(boundRows[0]?.[0] ?? 0);

  const windowStart = params.bind(new Date(query.windowStart));
  const windowEnd = params.bind(new Date(query.windowEnd));
  // No segment starts before MIN_INSTANT_MS, and PGlite rejects instants before year 1.
  const lowest = params.bind(new Date(Math.max(query.windowStart - longestMs, MIN_INSTANT_MS)));
  // Each part returns its bounds packed into two bytea values (8-byte
  // float8send values in scan order, one row per user when split), so a
  // million segments arrive as a few values instead of a million rows to parse.
  // Both aggregates of a row read the same rows in the same order.
  const userColumn = query.withUserIds ? 'g.user_id::text' : 'NULL::text';
  const selects = [
    `SELECT ${userColumn}, 'segments', ${PACKED_START}, ${PACKED_END}, 0
    FROM segments g
    WHERE ${[...filters, 'g.end_at IS NOT NULL', `g.start_at >= ${lowest}`, `g.start_at < ${windowEnd}`, `g.end_at > ${windowStart}`].join(' AND ')}
    ${query.withUserIds ? 'GROUP BY g.user_id' : ''}`,
  ];
  if (spec.includeOpen) {
    selects.push(openSegmentsSelect(params, filters, query));
  }
  return toParts(await sql.queryArrays(selects.join('\nUNION ALL\n'), params.values));
}

/** Turns result rows `(user, kind, starts or rollup bounds, ends, chunks)` into parts. */
function toParts(rows: unknown[][]): Part[] {
  const parts: Part[] = [];
  for (const row of rows) {
    if (row[2] === null) {
      // An aggregate over no rows.
      continue;
    }
    const userId = row[0] as string | null;
    if (row[1] === 'rollup') {
      parts.push({
        userId,
        kind: 'rollup',
        starts: EMPTY,
        ends: EMPTY,
        rollup: row[2] as Uint8Array,
        chunks: Number(row[4]),
      });
      continue;
    }
    const starts = unpackFloat64(row[2] as Uint8Array);
    // Open segments have no packed ends.
    const ends = row[3] === null ? null : unpackFloat64(row[3] as Uint8Array);
    parts.push({ userId, kind: 'segments', starts, ends, rollup: null, chunks: 0 });
  }
  return parts;
}

const EMPTY = new Float64Array(0);

/** A part whose open segments have their end. */
type EndedPart = Part & { ends: Float64Array };

function toSets(parts: readonly EndedPart[], withUserIds: boolean): LeafSets {
  const segmentsRead = parts.reduce((sum, part) => sum + part.starts.length, 0);
  const chunksRead = parts.reduce((sum, part) => sum + part.chunks, 0);
  if (!withUserIds) {
    return { set: partsToSet(parts), perUser: null, segmentsRead, chunksRead };
  }
  const byUser = new Map<string, EndedPart[]>();
  for (const part of parts) {
    const list = byUser.get(part.userId as string) ?? [];
    list.push(part);
    byUser.set(part.userId as string, list);
  }
  const perUser = new Map<string, IntervalSet>();
  for (const [userId, userParts] of byUser) {
    perUser.set(userId, partsToSet(userParts));
  }
  // Merging the users' normalised sets is cheaper than sorting every row again.
  return { set: IntervalSet.unionAll([...perUser.values()]), perUser, segmentsRead, chunksRead };
}

/** Unites the parts: rollups are decoded in order, and segments are sorted once together. */
function partsToSet(parts: readonly EndedPart[]): IntervalSet {
  const sets: IntervalSet[] = [];
  const segmentParts = parts.filter((part) => part.kind === 'segments');
  if (segmentParts.length > 0) {
    const { starts, ends } = concatParts(segmentParts);
    sets.push(IntervalSet.fromUnsortedBounds(starts, ends));
  }
  for (const part of parts) {
    if (part.rollup !== null) {
      sets.push(decodeRollupBounds(part.rollup));
    }
  }
  return sets.length === 1 ? sets[0]! : IntervalSet.unionAll(sets);
}

function concatParts(parts: ReadonlyArray<{ starts: Float64Array; ends: Float64Array }>): {
  starts: Float64Array;
  ends: Float64Array;
} {
  if (parts.length === 1) {
    return { starts: parts[0]!.starts, ends: parts[0]!.ends };
  }
  const length = parts.reduce((sum, part) => sum + part.starts.length, 0);
  const starts = new Float64Array(length);
  const ends = new Float64Array(length);
  let offset = 0;
  for (const part of parts) {
    starts.set(part.starts, offset);
    ends.set(part.ends, offset);
    offset += part.starts.length;
  }
  return { starts, ends };
}
