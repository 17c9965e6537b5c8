/**
 * The two PostgreSQL baselines of a report, measured in the same run:
 *
 * - select: a bare SELECT per leaf with the WHERE conditions of the service's
 *   leaf loader, one row per segment fetched with `pg` in array mode, leaves
 *   in parallel as the service loads them;
 * - multirange: the whole expression written as PostgreSQL multirange SQL
 *   (`range_agg`, `*`, `+`, `-`, the window as a multirange), evaluated inside
 *   the database.
 */
import type pg from 'pg';

import { collectLeaves, toExpression } from '../../src/domain/report/expression.js';
import type { Expr, LeafSpec } from '../../src/domain/report/types.js';
import { MIN_INSTANT_MS } from '../../src/domain/storable.js';
import { loadLeafSets } from '../../src/storage/postgres/leaf-store.js';
import { sqlClientForPool } from '../../src/storage/postgres/sql.js';

export interface Window {
  start: number;
  end: number;
}

export interface Statement {
  text: string;
  params: unknown[];
}

/** Parses the expression into the tree that the service builds from the same input. */
export function parseExpression(expression: unknown, window: Window): Expr {
  return toExpression(expression, window, { maxDepth: 32, maxNodes: 256, maxLiteralIntervals: 10_000, maxLeafEntries: 10_000 });
}

class Params {
  readonly values: unknown[] = [];

  bind(value: unknown, cast: string): string {
    this.values.push(value);
    return `$${this.values.length}::${cast}`;
  }
}

export interface LeafSelect {
  /** The longest closed segment of the leaf's users and pair types, as the service reads it first. */
  bound: Statement;
  /** Builds the row query once the bound is known. */
  rows: (longestMs: number) => Statement;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Writes the bare SELECT of one leaf with the WHERE conditions of the
 * service's leaf loader (src/storage/postgres/leaf-store.ts), including its
 * lower bound on start_at from segment_length_bounds. It returns one row per
 * segment with start and end in epoch ms, and the user id when grouped. An
 * admin's report restricts no users. Bounds are read with date_part, which
 * returns float8 and is the cheapest way to get them as numbers.
 */
export function leafSelect(spec: LeafSpec, window: Window, withUserIds: boolean): LeafSelect {
  const users = spec.users?.filter((id) => UUID_PATTERN.test(id)) ?? null;
  const boundParams = new Params();
  const boundConditions: string[] = [];
  if (users !== null) boundConditions.push(`user_id = ANY(${boundParams.bind(users, 'uuid[]')})`);
  if (spec.pairTypes !== null) boundConditions.push(`pair_type = ANY(${boundParams.bind(spec.pairTypes, 'text[]')})`);
  const bound: Statement = {
    text: `SELECT COALESCE(max(max_ms), 0)::float8 FROM segment_length_bounds${boundConditions.length > 0 ? ` WHERE ${boundConditions.join(' AND ')}` : ''}`,
    params: boundParams.values,
  };

  const rows = (longestMs: number): Statement => {
    const params = new Params();
    const filters: string[] = [];
    if (users !== null) filters.push(`user_id = ANY(${params.bind(users, 'uuid[]')})`);
    if (spec.pairTypes !== null) filters.push(`pair_type = ANY(${params.bind(spec.pairTypes, 'text[]')})`);
    if (spec.pairKeys !== null) filters.push(`pair_key = ANY(${params.bind(spec.pairKeys, 'text[]')})`);
    if (spec.meta !== null) filters.push(`meta @> ${params.bind(JSON.stringify(spec.meta), 'jsonb')}`);
    const common = filters.map((filter) => `${filter} AND `).join('');
    const start = params.bind(new Date(window.start), 'timestamptz');
    const end = params.bind(new Date(window.end), 'timestamptz');
    const lowest = params.bind(new Date(Math.max(window.start - longestMs, MIN_INSTANT_MS)), 'timestamptz');
    const user = withUserIds ? ', user_id' : '';
    let text = `SELECT date_part('epoch', start_at) * 1000, date_part('epoch', end_at) * 1000${user}
FROM segments WHERE ${common}end_at IS NOT NULL AND start_at >= ${lowest} AND start_at < ${end} AND end_at > ${start}`;
    if (spec.includeOpen) {
      text += `
UNION ALL
SELECT date_part('epoch', start_at) * 1000, NULL${user}
FROM segments WHERE ${common}end_at IS NULL AND start_at < ${end}`;
    }
    return { text, params: params.values };
  };
  return { bound, rows };
}

/** Returns the bare SELECTs of the expression's distinct leaves. */
export function leafSelects(expr: Expr, window: Window, grouped: boolean): LeafSelect[] {
  return [...collectLeaves(expr).values()].map((spec) => leafSelect(spec, window, grouped && spec.users === null));
}

/**
 * Runs the bare SELECTs with leaves in parallel, as the service loads them,
 * and fetches the rows with `pg` in array mode. Returns the wall time in ms
 * and the number of rows.
 */
export async function runLeafSelects(pool: pg.Pool, selects: readonly LeafSelect[]): Promise<{ ms: number; rows: number }> {
  const started = performance.now();
  const counts = await Promise.all(
    selects.map(async (select) => {
      const bound = await pool.query({ text: select.bound.text, values: select.bound.params, rowMode: 'array' });
      const rows = select.rows(Number((bound.rows[0] as unknown[] | undefined)?.[0] ?? 0));
      const result = await pool.query({ text: rows.text, values: rows.params, rowMode: 'array' });
      return result.rows.length;
    }),
  );
  return { ms: performance.now() - started, rows: counts.reduce((sum, count) => sum + count, 0) };
}

/**
 * Counts what the service's own leaf loader reads for the same leaves. With
 * rollups off it reads the segments the leaves select, which the bare SELECTs
 * must match. With rollups on it reads rollup chunks and some segments.
 */
export async function countServiceLeafRows(
  pool: pg.Pool,
  expr: Expr,
  window: Window,
  openEnd: number,
  grouped: boolean,
): Promise<{ segments: number; chunksRead: number; segmentsRead: number }> {
  const sql = sqlClientForPool(pool, null);
  const counts = { segments: 0, chunksRead: 0, segmentsRead: 0 };
  for (const spec of collectLeaves(expr).values()) {
    const query = {
      spec,
      defaultUsers: null,
      windowStart: window.start,
      windowEnd: window.end,
      openEnd,
      withUserIds: grouped && spec.users === null,
    };
    counts.segments += (await loadLeafSets(sql, { ...query, rollups: false })).segmentsRead;
    const withRollups = await loadLeafSets(sql, query);
    counts.chunksRead += withRollups.chunksRead;
    counts.segmentsRead += withRollups.segmentsRead;
  }
  return counts;
}

/** WHERE conditions and the range expression of one leaf, with open segments running to `openEnd`. */
function leafSelection(spec: LeafSpec, window: Window, openEnd: number, params: Params) {
  const conditions: string[] = [];
  if (spec.users !== null) conditions.push(`user_id = ANY(${params.bind(spec.users, 'uuid[]')})`);
  if (spec.pairTypes !== null) conditions.push(`pair_type = ANY(${params.bind(spec.pairTypes, 'text[]')})`);
  if (spec.pairKeys !== null) conditions.push(`pair_key = ANY(${params.bind(spec.pairKeys, 'text[]')})`);
  if (spec.meta !== null) conditions.push(`meta @> ${params.bind(JSON.stringify(spec.meta), 'jsonb')}`);

  const start = params.bind(new Date(window.start), 'timestamptz');
  const end = params.bind(new Date(window.end), 'timestamptz');
  let range: string;
  if (spec.includeOpen) {
    const open = params.bind(new Date(openEnd), 'timestamptz');
    range = `tstzrange(start_at, coalesce(end_at, ${open}))`;
    conditions.push(`start_at < ${end}`, `coalesce(end_at, ${open}) > ${start}`);
  } else {
    range = 'tstzrange(start_at, end_at)';
    conditions.push('end_at IS NOT NULL', `start_at < ${end}`, `end_at > ${start}`);
  }
  return { range, where: conditions.join(' AND ') };
}

/** Writes the expression as multirange SQL that returns the result's interval count and total seconds. */
export function multirangeStatement(expr: Expr, window: Window, openEnd: number): Statement {
  const params = new Params();
  const windowRange = `tstzrange(${params.bind(new Date(window.start), 'timestamptz')}, ${params.bind(new Date(window.end), 'timestamptz')})`;
  const ctes = [`win AS (SELECT tstzmultirange(${windowRange}) AS w)`];
  const leafNames = new Map<string, string>();

  const leafName = (key: string, spec: LeafSpec): string => {
    let name = leafNames.get(key);
    if (name === undefined) {
      name = `leaf${leafNames.size}`;
      leafNames.set(key, name);
      const { range, where } = leafSelection(spec, window, openEnd, params);
      ctes.push(
        `${name} AS (SELECT coalesce(range_agg(${range}), '{}'::tstzmultirange) * (SELECT w FROM win) AS m FROM segments WHERE ${where})`,
      );
    }
    return name;
  };

  const write = (node: Expr): string => {
    switch (node.kind) {
      case 'segments':
        return `(SELECT m FROM ${leafName(node.key, node.spec)})`;
      case 'intervals':
        throw new Error('Literal intervals are not used by the benchmark expressions.');
      case 'union':
        return `(${node.operands.map(write).join(' + ')})`;
      case 'intersect':
        return `(${node.operands.map(write).join(' * ')})`;
      case 'difference':
        return `(${write(node.from)} - ${write(node.subtract)})`;
      case 'complement':
        return `((SELECT w FROM win) - ${write(node.operand)})`;
    }
  };

  const result = write(expr);
  const text = `WITH ${ctes.join(',\n')}
SELECT count(*)::int, coalesce(sum(extract(epoch FROM upper(r) - lower(r))), 0)::float8
FROM unnest(${result}) AS r`;
  return { text, params: params.values };
}

/**
 * Writes a one-leaf expression grouped by user with calendar-day buckets in
 * `timeZone` as multirange SQL: one multirange per user, each of its ranges
 * cut by the local days it spans. Returns rows (user id, day start in ms,
 * seconds) for days with a non-zero total.
 */
export function groupedMultirangeStatement(expr: Expr, window: Window, openEnd: number, timeZone: string): Statement {
  if (expr.kind !== 'segments' || expr.spec.users !== null) {
    throw new Error('The grouped multirange baseline handles a single leaf that names no users.');
  }
  const params = new Params();
  const windowRange = `tstzrange(${params.bind(new Date(window.start), 'timestamptz')}, ${params.bind(new Date(window.end), 'timestamptz')})`;
  const zone = params.bind(timeZone, 'text');
  const { range, where } = leafSelection(expr.spec, window, openEnd, params);
  const text = `WITH per_user AS (
  SELECT user_id, range_agg(${range}) * tstzmultirange(${windowRange}) AS m
  FROM segments WHERE ${where} GROUP BY user_id
),
pieces AS (SELECT user_id, unnest(m) AS r FROM per_user),
parts AS (
  SELECT user_id, day, r * tstzrange(day AT TIME ZONE ${zone}, (day + interval '1 day') AT TIME ZONE ${zone}) AS part
  FROM pieces,
    generate_series(date_trunc('day', lower(r) AT TIME ZONE ${zone}), upper(r) AT TIME ZONE ${zone}, interval '1 day') AS day
)
SELECT user_id::text, (extract(epoch FROM day AT TIME ZONE ${zone}) * 1000)::float8, sum(extract(epoch FROM upper(part) - lower(part)))::float8
FROM parts WHERE NOT isempty(part)
GROUP BY user_id, day`;
  return { text, params: params.values };
}
