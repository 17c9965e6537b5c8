/**
 * Phases 3 and 4: report expressions over the generated dataset, each set
 * against a bare SELECT of its leaves' rows and against the same expression
 * in multirange SQL; then the growth of (a) to (c) with the window size.
 */
import type { PhaseContext } from '../lib/context.js';
import { median } from '../lib/stats.js';
import {
  countServiceLeafRows,
  groupedMultirangeStatement,
  leafSelects,
  multirangeStatement,
  parseExpression,
  runLeafSelects,
  type Window,
} from './baselines.js';
import { GROUPED_REPORT_QUERY, REPORT_QUERY, reportCases, type ReportCase, type ReportReply } from './cases.js';
import { createDataset, DATASET_START_MS, SLOTS_PER_YEAR, type Dataset, type DatasetShape } from './dataset.js';

export const QUICK_DATASET: DatasetShape = { users: 100, sessionsPerUser: 100 };
export const FULL_DATASET: DatasetShape = { users: 100, sessionsPerUser: SLOTS_PER_YEAR };

/** Targets: service time at most 1.5 x the bare SELECT, and multirange SQL at least 3 x the service time. */
export const SELECT_RATIO_TARGET = 1.5;
export const MULTIRANGE_RATIO_TARGET = 3;

/**
 * The report window: one year of local days in Europe/Prague,
 * 2025-01-01T00:00+01:00 to 2026-01-01T00:00+01:00, which covers the dataset.
 */
export const YEAR_WINDOW: Window = { start: DATASET_START_MS - 3_600_000, end: Date.UTC(2025, 11, 31, 23) };

export interface ReportRow {
  label: string;
  title: string;
  /** Median wall time of the HTTP request, ms. */
  serviceMs: number;
  selectMs: number;
  multirangeMs: number;
  /** Segments the leaves select. */
  rows: number;
  /** Rollup chunks the service read, and segments it read for stale chunks, `meta` leaves and open segments. */
  chunksRead: number;
  segmentsRead: number;
  resultCount: number;
  responseBytes: number;
  /** VmHWM of the server over this case's requests, and VmRSS before them, in KiB. */
  peakKb: number;
  rssBeforeKb: number;
  /** Null when the service and multirange results agree; otherwise what differs. */
  mismatch: string | null;
}

export interface GrowthRow {
  label: string;
  windowDays: number;
  /** Segments that overlap the window, all users and pair types. */
  segmentsInWindow: number;
  rows: number;
  serviceMs: number;
}

export interface ReportsResult {
  dataset: Dataset;
  rollups: RollupBuild;
  runs: number;
  rows: ReportRow[];
  growth: GrowthRow[];
}

function serviceRequest(reportCase: ReportCase, window: Window): { query: string; variables: Record<string, unknown> } {
  const variables: Record<string, unknown> = {
    expression: reportCase.expression,
    window: { start: new Date(window.start).toISOString(), end: new Date(window.end).toISOString() },
  };
  if (reportCase.grouped !== null) {
    variables.bucket = { unit: 'DAY', timeZone: reportCase.grouped.timeZone };
  }
  return { query: reportCase.grouped === null ? REPORT_QUERY : GROUPED_REPORT_QUERY, variables };
}

/** Median time of `runs` service requests after one warm-up request that is not counted. */
async function timeService(
  context: PhaseContext,
  reportCase: ReportCase,
  window: Window,
  runs: number,
): Promise<{ ms: number; reply: ReportReply; bytes: number }> {
  const { query, variables } = serviceRequest(reportCase, window);
  let last = await context.client.require<ReportReply>(query, variables, context.adminToken);
  const times: number[] = [];
  for (let run = 0; run < runs; run += 1) {
    last = await context.client.require<ReportReply>(query, variables, context.adminToken);
    times.push(last.ms);
  }
  return { ms: median(times), reply: last.data, bytes: last.bytes };
}

async function timeQuery(context: PhaseContext, text: string, params: unknown[]): Promise<{ ms: number; rows: unknown[][] }> {
  const started = performance.now();
  const result = await context.pool.query({ text, values: params, rowMode: 'array' });
  return { ms: performance.now() - started, rows: result.rows as unknown[][] };
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(a), Math.abs(b));

/** Compares the grouped reply with the multirange rows (user id, day start ms, seconds). */
function compareGrouped(reply: ReportReply, rows: unknown[][]): string | null {
  const expected = new Map<string, Map<number, number>>();
  for (const [user, day, seconds] of rows as Array<[string, number, number]>) {
    let days = expected.get(user);
    if (days === undefined) {
      days = new Map();
      expected.set(user, days);
    }
    days.set(Math.round(day), seconds);
  }
  for (const group of reply.report.groups ?? []) {
    const days = expected.get(group.user.id) ?? new Map<number, number>();
    let total = 0;
    let nonZero = 0;
    for (const bucket of group.buckets ?? []) {
      if (bucket.seconds === 0) {
        continue;
      }
      nonZero += 1;
      total += bucket.seconds;
      const want = days.get(Date.parse(bucket.start));
      if (want === undefined || Math.abs(want - bucket.seconds) > 0.001) {
        return `user ${group.user.id}, bucket ${bucket.start}: service ${bucket.seconds} s, multirange ${want ?? 0} s`;
      }
    }
    if (nonZero !== days.size) {
      return `user ${group.user.id}: service has ${nonZero} non-empty days, multirange ${days.size}`;
    }
    if (!close(total, group.totalSeconds)) {
      return `user ${group.user.id}: bucket sum ${total} s differs from the group total ${group.totalSeconds} s`;
    }
  }
  return null;
}

/**
 * Times one case through the service and both baselines, and checks that the
 * bare SELECTs read the service's rows and that service and multirange agree.
 */
export async function measureCase(
  context: PhaseContext,
  reportCase: ReportCase,
  runs: number,
  window: Window = YEAR_WINDOW,
): Promise<ReportRow> {
  // Open segments run to min(now, window end), here as in the service; for past windows that is the window end.
  const openEnd = Math.min(Date.now(), window.end);
  const expr = parseExpression(reportCase.expression, window);
  const grouped = reportCase.grouped !== null;
  const serviceRows = await countServiceLeafRows(context.pool, expr, window, openEnd, grouped);

  const { query, variables } = serviceRequest(reportCase, window);
  const selects = leafSelects(expr, window, grouped);
  const multirangeSql =
    reportCase.grouped === null
      ? multirangeStatement(expr, window, openEnd)
      : groupedMultirangeStatement(expr, window, openEnd, reportCase.grouped.timeZone);

  // One untimed round of each warms caches and the JIT. The timed rounds then
  // alternate service, select and multirange, so that a change in the
  // machine's load affects all three alike.
  const rssBeforeKb = context.server.currentMemoryKb();
  context.server.resetPeakMemory();
  let service = await context.client.require<ReportReply>(query, variables, context.adminToken);
  const select = await runLeafSelects(context.pool, selects);
  let multirange = await timeQuery(context, multirangeSql.text, multirangeSql.params);
  if (select.rows !== serviceRows.segments) {
    throw new Error(
      `Case (${reportCase.label}): the bare SELECTs return ${select.rows} rows, but the service's leaf loader selects ${serviceRows.segments} segments; the baseline no longer mirrors src/storage/postgres/leaf-store.ts.`,
    );
  }
  const serviceTimes: number[] = [];
  const selectTimes: number[] = [];
  const multirangeTimes: number[] = [];
  for (let run = 0; run < runs; run += 1) {
    service = await context.client.require<ReportReply>(query, variables, context.adminToken);
    serviceTimes.push(service.ms);
    selectTimes.push((await runLeafSelects(context.pool, selects)).ms);
    multirange = await timeQuery(context, multirangeSql.text, multirangeSql.params);
    multirangeTimes.push(multirange.ms);
  }
  const peakKb = context.server.peakMemoryKb();

  let mismatch: string | null;
  const report = service.data.report;
  if (reportCase.grouped === null) {
    const [count, total] = multirange.rows[0] as [number, number];
    mismatch =
      count === report.count && close(total, report.totalSeconds)
        ? null
        : `service ${report.count} intervals, ${report.totalSeconds} s; multirange ${count} intervals, ${total} s`;
  } else {
    mismatch = compareGrouped(service.data, multirange.rows);
  }

  return {
    label: reportCase.label,
    title: reportCase.title,
    serviceMs: median(serviceTimes),
    selectMs: median(selectTimes),
    multirangeMs: median(multirangeTimes),
    rows: serviceRows.segments,
    chunksRead: serviceRows.chunksRead,
    segmentsRead: serviceRows.segmentsRead,
    resultCount: report.count,
    responseBytes: service.bytes,
    peakKb,
    rssBeforeKb,
    mismatch,
  };
}

/** Creates the dataset, waits for the server to build its rollups and times a full rebuild. */
export async function prepareReports(context: PhaseContext): Promise<{ dataset: Dataset; rollups: RollupBuild }> {
  const shape = context.quick ? QUICK_DATASET : FULL_DATASET;
  context.log(`reports: generating ${shape.users * shape.sessionsPerUser * 10} segments`);
  const dataset = await createDataset(context.pool, context.seed, shape, context.passwordHash, context.log);
  context.log(`reports: ${dataset.segments} segments in ${dataset.insertSeconds.toFixed(1)} s`);
  const rollups = await waitForRollups(context);
  context.log(`reports: ${rollups.chunks} rollup chunks built ${rollups.seconds.toFixed(1)} s after the last insert`);

  // The builder worked while the batches were inserted. To show what a
  // rebuild of everything costs, mark every chunk stale and wait again.
  await context.pool.query(
    `INSERT INTO segment_rollup_stale (user_id, pair_type, all_keys, pair_key, chunk)
     SELECT user_id, pair_type, all_keys, pair_key, chunk FROM segment_rollups`,
  );
  const rebuild = await waitForRollups(context);
  context.log(`reports: all ${rebuild.chunks} rollup chunks rebuilt in ${rebuild.seconds.toFixed(1)} s`);
  return { dataset, rollups: { ...rollups, fullRebuildSeconds: rebuild.seconds } };
}

export interface RollupBuild {
  /** Seconds from the end of the dataset insert until no chunk was stale. */
  seconds: number;
  chunks: number;
  /** Merged pieces in all chunks. */
  pieces: number;
  /** Seconds the server took to rebuild every chunk after all were marked stale (reports phase only). */
  fullRebuildSeconds?: number;
}

/** Waits until the server's rollup builder has no stale chunk left. */
export async function waitForRollups(context: PhaseContext): Promise<RollupBuild> {
  const started = performance.now();
  for (;;) {
    const stale = await context.pool.query<{ count: number }>('SELECT count(*)::int AS count FROM segment_rollup_stale');
    if (stale.rows[0]?.count === 0) {
      break;
    }
    if (performance.now() - started > 600_000) {
      throw new Error(`Timed out after 10 minutes waiting for the server to rebuild rollups: ${stale.rows[0]?.count} chunks are still stale. Check the server log for rebuild errors.`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const seconds = (performance.now() - started) / 1000;
  await context.pool.query('VACUUM (ANALYZE) segment_rollups');
  const built = await context.pool.query<{ chunks: number; pieces: string }>(
    'SELECT count(*)::int AS chunks, COALESCE(sum(length(bounds) / 16), 0)::bigint AS pieces FROM segment_rollups',
  );
  return { seconds, chunks: built.rows[0]?.chunks ?? 0, pieces: Number(built.rows[0]?.pieces ?? 0) };
}

export async function runReportCases(context: PhaseContext, dataset: Dataset): Promise<ReportRow[]> {
  const runs = context.quick ? 3 : 7;
  const rows: ReportRow[] = [];
  for (const reportCase of reportCases(dataset.userIds)) {
    context.log(`reports: (${reportCase.label}) ${reportCase.title}`);
    rows.push(await measureCase(context, reportCase, runs));
  }
  return rows;
}

/** Times (a) to (c) over windows that hold 1 %, 10 % and 100 % of the dataset's span. */
export async function runGrowth(context: PhaseContext, dataset: Dataset): Promise<GrowthRow[]> {
  const runs = context.quick ? 3 : 5;
  const spanMs = dataset.endMs - DATASET_START_MS;
  const rows: GrowthRow[] = [];
  const cases = reportCases(dataset.userIds).filter((reportCase) => reportCase.grouped === null);
  for (const fraction of [0.01, 0.1, 1]) {
    const window: Window = { start: YEAR_WINDOW.start, end: DATASET_START_MS + Math.round(spanMs * fraction) };
    const counted = await context.pool.query<{ count: string }>(
      `SELECT count(*) FROM segments WHERE start_at < $2 AND (end_at IS NULL OR end_at > $1)`,
      [new Date(window.start), new Date(window.end)],
    );
    const segmentsInWindow = Number(counted.rows[0]?.count ?? 0);
    for (const reportCase of cases) {
      context.log(`growth: (${reportCase.label}) over ${segmentsInWindow} segments`);
      const expr = parseExpression(reportCase.expression, window);
      const rowsRead = await countServiceLeafRows(context.pool, expr, window, Math.min(Date.now(), window.end), false);
      const service = await timeService(context, reportCase, window, runs);
      rows.push({
        label: reportCase.label,
        windowDays: (window.end - window.start) / 86_400_000,
        segmentsInWindow,
        rows: rowsRead.segments,
        serviceMs: service.ms,
      });
    }
  }
  return rows;
}
