/**
 * Loads the segments of report leaves as `[start, end)` milliseconds, reading
 * only segments that can overlap the window. Closed segments are found by the
 * index on (user_id, pair_type, start_at). The scan starts at the window start
 * minus the longest closed segment of the selected users and pair types, which
 * segment_length_bounds keeps, so segments far before the window are never
 * read. Open segments come from their partial index.
 *
 * NOTE: the bound is one maximum over all selected users and pair types, and
 * it only grows, so a single very long closed segment widens the scan of
 * every leaf that selects its user and pair type.
 */
import type { LeafSpec } from '../../domain/report/types.js';
import { MIN_INSTANT_MS } from '../../domain/storable.js';
import { isUuid } from '../../domain/user-id.js';
import type { SqlClient } from './sql.js';


export interface LeafRows {
  /** Parallel arrays, one entry per segment, in no particular order; open segments end at `openEnd`. */
  starts: Float64Array;
  ends: Float64Array;
  /** The same segments split by user id, when `withUserIds` was set; otherwise null. */
  byUser: Map<string, { starts: Float64Array; ends: Float64Array }> | null;
}

export interface LeafQuery {
  spec: LeafSpec;
  /** Users to restrict to when the leaf names none (null: every user). */
  defaultUsers: readonly string[] | null;
  windowStart: number;
  windowEnd: number;
  /** End of open segments: min(now, window end). */
  openEnd: number;
  withUserIds: boolean;
}

export async function loadLeafRows(sql: SqlClient, query: LeafQuery): Promise<LeafRows> {
  const { spec } = query;
  // User ids are UUIDs, so any other id matches no segment. Casting it to uuid would fail the query.
  const users = (spec.users ?? query.defaultUsers)?.filter((id) => isUuid(id)) ?? null;
  const filters: string[] = [];
  const params: unknown[] = [];
  const bind = (value: unknown): string => {
    params.push(value);
    return `$${params.length}`;
  };

  if (users !== null) filters.push(`user_id = ANY(${bind([...users])}::uuid[])`);
  if (spec.pairTypes !== null) filters.push(`pair_type = ANY(${bind(spec.pairTypes)}::text[])`);
  if (spec.pairKeys !== null) filters.push(`pair_key = ANY(${bind(spec.pairKeys)}::text[])`);
  if (spec.meta !== null) filters.push(`meta @> ${bind(JSON.stringify(spec.meta))}::jsonb`);
  const common = filters.length > 0 ? `${filters.join(' AND ')} AND` : '';

  // The longest closed segment among the selected users and pair types.
  const boundFilters: string[] = [];
  const boundParams: unknown[] = [];
  if (users !== null) {
    boundParams.push([...users]);
    boundFilters.push(`user_id = ANY($${boundParams.length}::uuid[])`);
  }
  if (spec.pairTypes !== null) {
    boundParams.push(spec.pairTypes);
    boundFilters.push(`pair_type = ANY($${boundParams.length}::text[])`);
  }
  const boundRows = await sql.queryArrays(
    `SELECT COALESCE(max(max_ms), 0)::float8 FROM segment_length_bounds
     ${boundFilters.length > 0 ? `WHERE ${boundFilters.join(' AND ')}` : ''}`,
    boundParams,
  );
  const longestMs = Number(boundRows[0]?.[0] ?? 0);

  const windowStart = bind(new Date(query.windowStart));
  const windowEnd = bind(new Date(query.windowEnd));
  // No segment starts before MIN_INSTANT_MS, and PGlite rejects instants before year 1.
  const lowest = bind(new Date(Math.max(query.windowStart - longestMs, MIN_INSTANT_MS)));
  // Each part returns its bounds packed into two bytea values (8-byte
  // float8send values in scan order, one row per user when split), so a
  // million segments arrive as a few values instead of a million rows to parse.
  // Both aggregates of a row read the same rows in the same order.
  // date_part returns float8. extract returns numeric since PostgreSQL 14 and
  // takes more than twice as long over a million rows. The rounding in
  // unpackFloat64 removes the sub-millisecond error of the float.
  const userColumn = query.withUserIds ? 'user_id::text' : 'NULL::text';
  const groupBy = query.withUserIds ? ' GROUP BY user_id' : '';
  const packedStart = `string_agg(float8send(date_part('epoch', start_at) * 1000), ''::bytea)`;
  const packedEnd = `string_agg(float8send(date_part('epoch', end_at) * 1000), ''::bytea)`;

  let text = `SELECT ${userColumn}, ${packedStart}, ${packedEnd}
    FROM segments
    WHERE ${common} end_at IS NOT NULL AND start_at >= ${lowest} AND start_at < ${windowEnd} AND end_at > ${windowStart}${groupBy}`;
  if (spec.includeOpen) {
    text += `
    UNION ALL
    SELECT ${userColumn}, ${packedStart}, NULL::bytea
    FROM segments
    WHERE ${common} end_at IS NULL AND start_at < ${windowEnd}${groupBy}`;
  }

  const parts: Array<{ userId: string | null; starts: Float64Array; ends: Float64Array }> = [];
  for (const row of await sql.queryArrays(text, params)) {
    if (row[1] === null) {
      // An aggregate over no rows.
      continue;
    }
    const starts = unpackFloat64(row[1] as Uint8Array);
    const ends = row[2] === null ? new Float64Array(starts.length).fill(query.openEnd) : unpackFloat64(row[2] as Uint8Array);
    parts.push({ userId: row[0] as string | null, starts, ends });
  }

  let byUser: LeafRows['byUser'] = null;
  if (query.withUserIds) {
    const partsByUser = new Map<string, typeof parts>();
    for (const part of parts) {
      const list = partsByUser.get(part.userId as string) ?? [];
      list.push(part);
      partsByUser.set(part.userId as string, list);
    }
    byUser = new Map([...partsByUser].map(([userId, userParts]) => [userId, concatParts(userParts)]));
  }
  return { ...concatParts(parts), byUser };
}

/** Reads big-endian float8 values, as `float8send` writes them, rounded to whole milliseconds. */
function unpackFloat64(bytes: Uint8Array): Float64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const values = new Float64Array(bytes.byteLength / 8);
  for (let index = 0; index < values.length; index += 1) {
    values[index] = Math.round(view.getFloat64(index * 8));
  }
  return values;
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
