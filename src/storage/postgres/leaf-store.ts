/**
 * Loads the segments of report leaves as `[start, end)` milliseconds, reading
 * only segments that can overlap the window. Closed segments are found by the
 * index on (user_id, pair_type, start_at), starting no earlier than the window
 * start minus the longest closed segment of the users and pair types asked
 * for (kept in segment_length_bounds), so segments far before the window are
 * never read. Open segments come from their partial index.
 */
import type { LeafSpec } from '../../domain/report/types.js';
import type { SqlClient } from './sql.js';

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface LeafRows {
  /** Parallel arrays, one entry per segment; `userIds` only when requested. */
  starts: number[];
  ends: number[];
  userIds: string[] | null;
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
  const users = (spec.users ?? query.defaultUsers)?.filter((id) => UUID_PATTERN.test(id)) ?? null;
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
  const lowest = bind(new Date(query.windowStart - longestMs));
  const userColumn = query.withUserIds ? ', user_id' : '';

  let text = `SELECT (extract(epoch FROM start_at) * 1000)::float8, (extract(epoch FROM end_at) * 1000)::float8${userColumn}
    FROM segments
    WHERE ${common} end_at IS NOT NULL AND start_at >= ${lowest} AND start_at < ${windowEnd} AND end_at > ${windowStart}`;
  if (spec.includeOpen) {
    text += `
    UNION ALL
    SELECT (extract(epoch FROM start_at) * 1000)::float8, NULL${userColumn}
    FROM segments
    WHERE ${common} end_at IS NULL AND start_at < ${windowEnd}`;
  }

  const rows = await sql.queryArrays(text, params);
  const starts = new Array<number>(rows.length);
  const ends = new Array<number>(rows.length);
  const userIds = query.withUserIds ? new Array<string>(rows.length) : null;
  for (let index = 0; index < rows.length; index += 1) {
    const row = rows[index] as unknown[];
    starts[index] = Math.round(Number(row[0]));
    ends[index] = row[1] === null ? query.openEnd : Math.round(Number(row[1]));
    if (userIds !== null) {
      userIds[index] = row[2] as string;
    }
  }
  return { starts, ends, userIds };
}
