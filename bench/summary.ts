/**
 * Turns the measurements into tables, the list of targets met and missed, and
 * the Markdown report.
 */
import type { CasasResult } from './casas.js';
import { P99_TARGET_MS, PACED_CLIENTS, type LatencyRow } from './intake/latency.js';
import { INTAKE_RATIO_TARGET, type IntakeRow } from './intake/phase.js';
import type { ProfileSummary } from './lib/profile.js';
import { SERVER_DB_POOL_SIZE } from './lib/server.js';
import { formatNumber, renderMarkdown, renderText, type Table } from './lib/table.js';
import { MULTIRANGE_RATIO_TARGET, SELECT_RATIO_TARGET, type ReportRow, type ReportsResult, type RollupBuild } from './reports/phase.js';

export interface RunInfo {
  date: string;
  command: string;
  seed: number;
  quick: boolean;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; os: string };
  versions: { node: string; postgres: string; redis: string };
  /** Variables that were unset, so local defaults were used. */
  defaulted: string[];
  loadAverage: { start: number[]; end: number[] };
}

export interface PhaseMemory {
  phase: string;
  peakKb: number;
}

export interface PhaseProfile {
  phase: string;
  summary: ProfileSummary;
}

export interface BenchResults {
  info: RunInfo;
  intake: IntakeRow[] | null;
  latency: LatencyRow[] | null;
  reports: ReportsResult | null;
  casas: CasasResult | null;
  memory: PhaseMemory[];
  profiles: PhaseProfile[];
}

export interface Target {
  name: string;
  met: boolean;
  detail: string;
}

/** Formats milliseconds with about three significant digits. */
function ms(value: number): string {
  if (value < 10) {
    return formatNumber(value, 2);
  }
  return formatNumber(value, value < 100 ? 1 : 0);
}

const ratio = (value: number) => formatNumber(value, 2);
const mib = (kb: number) => formatNumber(kb / 1024, 0);

/** Returns the sum of the parts, or null when PostgreSQL's share is unknown. */
function knownTotal(parts: ReadonlyArray<number | null>, postgresMs: number | null): number | null {
  return postgresMs === null ? null : parts.reduce<number>((sum, part) => sum + (part ?? 0), 0);
}

function intakeCpuTable(rows: readonly IntakeRow[]): Table {
  const cell = (value: number | null) => (value === null ? 'n/a' : formatNumber(value));
  return {
    title: 'Intake CPU time per 1,000 events in ms, by process, on this machine',
    headers: [
      'batch',
      'service: server',
      'PostgreSQL',
      'Redis',
      'load generator',
      'total',
      'baseline: PostgreSQL',
      'client',
      'total',
      'CPU ratio',
    ],
    rows: rows.map((row) => {
      const { service, baseline } = row.cpuPer1000;
      const serviceTotal = knownTotal(
        [row.serverCpuMsPer1000, service.postgresMs, service.redisMs, service.clientMs],
        service.postgresMs,
      );
      const baselineTotal = knownTotal([baseline.postgresMs, baseline.clientMs], baseline.postgresMs);
      return [
        String(row.batchSize),
        formatNumber(row.serverCpuMsPer1000),
        cell(service.postgresMs),
        cell(service.redisMs),
        formatNumber(service.clientMs),
        cell(serviceTotal),
        cell(baseline.postgresMs),
        formatNumber(baseline.clientMs),
        cell(baselineTotal),
        serviceTotal === null || baselineTotal === null ? 'n/a' : ratio(baselineTotal / serviceTotal),
      ];
    }),
    notes: [
      'PostgreSQL and Redis count all their processes, background writers included (n/a when they run elsewhere).',
      'The load generator and the baseline client are the bench process.',
      'CPU ratio = baseline total / service total: the rate ratio if both runs kept every core busy.',
    ],
  };
}

function intakeTable(rows: readonly IntakeRow[]): Table {
  return {
    title: `Intake throughput: sendEvents over HTTP vs multi-row INSERT into bench_events (8 batches in flight)`,
    headers: [
      'batch',
      'users',
      'events',
      'late',
      'dup',
      'service ev/s',
      'baseline ev/s',
      'ratio',
      'ratio by round',
      'service batch p50/p95 ms',
      'baseline batch p50/p95 ms',
      'server CPU ms/1000 ev',
      'stored/expected',
    ],
    rows: rows.map((row) => [
      String(row.batchSize),
      String(row.users),
      formatNumber(row.events),
      formatNumber(row.late),
      formatNumber(row.duplicates),
      formatNumber(row.service.eventsPerSecond),
      formatNumber(row.baseline.eventsPerSecond),
      ratio(row.ratio),
      row.roundRatios.map(ratio).join(' '),
      `${ms(row.service.batchP50Ms)} / ${ms(row.service.batchP95Ms)}`,
      `${ms(row.baseline.batchP50Ms)} / ${ms(row.baseline.batchP95Ms)}`,
      formatNumber(row.serverCpuMsPer1000),
      `${formatNumber(row.storedCheck.found)}/${formatNumber(row.storedCheck.expected)}`,
    ]),
    notes: [
      `ratio = service rate / baseline rate (target >= ${INTAKE_RATIO_TARGET}).`,
      'Each round times the baseline and the service on new users with the same events, the service first in every second round.',
      'Every figure of a row, besides stored/expected, comes from the round of the median ratio; stored/expected sums all rounds.',
      ...rows
        .filter((row) => row.service.failedBatches > 0 || row.baseline.failedBatches > 0)
        .map(
          (row) =>
            `batch ${row.batchSize}: ${row.service.failedBatches} service and ${row.baseline.failedBatches} baseline batches failed; first error: ${row.service.firstError ?? row.baseline.firstError}`,
        ),
    ],
  };
}

function latencyTable(rows: readonly LatencyRow[]): Table {
  return {
    title: 'sendEvent latency in ms, measured by the load generator on the same machine (autocannon for the closed loops)',
    headers: [
      'path',
      'users',
      'connections',
      'sending',
      'requests',
      'req/s',
      'p50',
      'p95',
      'p99',
      'max',
      'CPU ms/req: server',
      'PostgreSQL',
      'load generator',
      'errors',
    ],
    rows: rows.map((row) => [
      row.path === 'sendEvent' ? 'sendEvent' : 'INSERT',
      row.users === 'many' ? 'many' : 'one',
      String(row.connections),
      row.rateLimit === null ? 'closed loop' : `${row.rateLimit}/s, even`,
      formatNumber(row.requests),
      formatNumber(row.requestsPerSecond),
      ms(row.p50Ms),
      ms(row.p95Ms),
      ms(row.p99Ms),
      ms(row.maxMs),
      row.serverCpuMsPerRequest === null ? 'n/a' : formatNumber(row.serverCpuMsPerRequest, 1),
      row.postgresCpuMsPerRequest === null ? 'n/a' : formatNumber(row.postgresCpuMsPerRequest, 1),
      formatNumber(row.clientCpuMsPerRequest, 1),
      String(row.errors),
    ]),
    notes: [
      `target: p99 < ${P99_TARGET_MS} ms at 100 connections over many users (the closed-loop row).`,
      'closed loop: each connection sends again as soon as its reply arrives, so latency is connections / throughput.',
      `even: requests sent at evenly spaced instants whatever the replies, over one connection per user; the ${PACED_CLIENTS}/s row is ${PACED_CLIENTS} clients that each send one event per second.`,
      `INSERT: the baseline, as many callers as connections, each inserting one row into PostgreSQL per call (prepared, autocommit) over a pool of ${SERVER_DB_POOL_SIZE} connections, as many as the server's; its load generator column is the bench process.`,
      ...rows
        .filter((row) => row.firstError !== null)
        .map(
          (row) =>
            `${row.path === 'insert' ? 'INSERT, ' : ''}${row.users === 'many' ? 'many users' : 'one user'}, ${row.connections} connections: first error: ${row.firstError}`,
        ),
    ],
  };
}

const REPORT_HEADERS = [
  'case',
  'segments selected',
  'service read: chunks + segments',
  'service',
  'select',
  'multirange',
  'service/select',
  'multirange/service',
  'result',
  'response KiB',
  'server RSS before/peak MiB',
  'check',
];

function reportCells(row: ReportRow): string[] {
  return [
    `(${row.label})`,
    formatNumber(row.rows),
    `${formatNumber(row.chunksRead)} + ${formatNumber(row.segmentsRead)}`,
    ms(row.serviceMs),
    ms(row.selectMs),
    ms(row.multirangeMs),
    ratio(row.serviceMs / row.selectMs),
    ratio(row.multirangeMs / row.serviceMs),
    formatNumber(row.resultCount),
    formatNumber(row.responseBytes / 1024),
    `${mib(row.rssBeforeKb)} / ${mib(row.peakKb)}`,
    row.mismatch === null ? 'agrees' : 'DIFFERS',
  ];
}

function reportNotes(rows: readonly ReportRow[], rollups: RollupBuild | null): string[] {
  return [
    ...rows.map((row) => `(${row.label}) ${row.title}`),
    `targets: service/select <= ${SELECT_RATIO_TARGET}, multirange/service >= ${MULTIRANGE_RATIO_TARGET}.`,
    'check: the service and the multirange SQL return the same interval count and total (per user and day for (d)).',
    ...(rollups === null
      ? []
      : [
          `rollups: ${formatNumber(rollups.chunks)} chunks holding ${formatNumber(rollups.pieces)} merged pieces, built by the server within ${formatNumber(rollups.seconds, 1)} s after the last write.` +
            (rollups.fullRebuildSeconds === undefined
              ? ''
              : ` Rebuilding all of them after marking them stale took ${formatNumber(rollups.fullRebuildSeconds, 1)} s.`),
        ]),
    'segments selected: what the leaves select, and what the bare SELECTs read. The service reads rollup chunks (merged segments per user, pair type, pair key or all keys, and 30 days) for leaves without meta, and segments for the rest.',
    ...rows.filter((row) => row.mismatch !== null).map((row) => `(${row.label}) differs: ${row.mismatch}`),
  ];
}

function reportsTable(result: ReportsResult): Table {
  return {
    title: `Reports over ${formatNumber(result.dataset.segments)} segments of ${result.dataset.shape.users} users (median of ${result.runs} runs, ms)`,
    headers: REPORT_HEADERS,
    rows: result.rows.map(reportCells),
    notes: reportNotes(result.rows, result.rollups),
  };
}

/** Exponent k in time ~ segments^k between two sizes; 1 is linear. */
function growthExponent(small: { n: number; t: number }, large: { n: number; t: number }): number {
  return Math.log(large.t / small.t) / Math.log(large.n / small.n);
}

function growthTable(result: ReportsResult): Table {
  const labels = [...new Set(result.growth.map((row) => row.label))];
  const sizes = [...new Set(result.growth.map((row) => row.segmentsInWindow))];
  const rows = labels.map((label) => {
    const cells = [`(${label})`];
    const points = result.growth.filter((row) => row.label === label);
    for (const point of points) {
      cells.push(`${ms(point.serviceMs)} ms, ${formatNumber((point.serviceMs * 1000) / point.segmentsInWindow, 2)} µs`);
    }
    const first = points[points.length - 2];
    const last = points[points.length - 1];
    cells.push(
      first !== undefined && last !== undefined
        ? formatNumber(growthExponent({ n: first.segmentsInWindow, t: first.serviceMs }, { n: last.segmentsInWindow, t: last.serviceMs }), 2)
        : 'n/a',
    );
    return cells;
  });
  return {
    title: 'Report time by segments in the window (service, median; time and time per segment)',
    headers: ['case', ...sizes.map((size) => `${formatNumber(size)} segments`), 'exponent'],
    rows,
    notes: [
      'Windows start at the dataset start and hold 1 %, 10 % and 100 % of it.',
      'exponent: k in time ~ segments^k between the two largest windows; 1 is linear, below 1 better.',
    ],
  };
}

function casasTables(result: CasasResult): Table[] {
  if (result.skipped !== null || result.baseline === null) {
    return [];
  }
  const tables: Table[] = [];
  tables.push({
    title: `CASAS Kyoto import: ${result.files} files through \`npm run import\` (batches of 1000, 4 users at a time)`,
    headers: ['events', 'stored', 'duplicates', 'rejected', 'import s', 'import ev/s', 'baseline ev/s', 'ratio'],
    rows: [
      [
        formatNumber(result.events),
        formatNumber(result.stored),
        formatNumber(result.duplicates),
        formatNumber(result.rejected),
        formatNumber(result.importSeconds, 1),
        formatNumber(result.importEventsPerSecond),
        formatNumber(result.baseline.eventsPerSecond),
        ratio(result.importEventsPerSecond / result.baseline.eventsPerSecond),
      ],
    ],
  });
  if (result.report !== null) {
    tables.push({
      title: 'Report over the imported CASAS segments (ms)',
      headers: REPORT_HEADERS,
      rows: [reportCells(result.report)],
      notes: reportNotes([result.report], result.rollups),
    });
  }
  return tables;
}

export function evaluateTargets(results: BenchResults): Target[] {
  const targets: Target[] = [];
  for (const row of results.intake ?? []) {
    targets.push({
      name: `intake ratio, batch ${row.batchSize}`,
      met: row.ratio >= INTAKE_RATIO_TARGET,
      detail: `${ratio(row.ratio)} (target >= ${INTAKE_RATIO_TARGET})`,
    });
  }
  const closedLoopAt100 = (path: LatencyRow['path']) =>
    results.latency?.find((row) => row.path === path && row.users === 'many' && row.connections === 100 && row.rateLimit === null);
  const latency = closedLoopAt100('sendEvent');
  if (latency !== undefined) {
    const baseline = closedLoopAt100('insert');
    targets.push({
      name: 'sendEvent p99 at 100 connections',
      met: latency.p99Ms < P99_TARGET_MS && latency.errors === 0,
      detail:
        `${ms(latency.p99Ms)} ms (target < ${P99_TARGET_MS} ms), ${latency.errors} errors` +
        (baseline === undefined ? '' : `; one-row INSERT baseline at 100 callers: ${ms(baseline.p99Ms)} ms`),
    });
  }
  for (const row of results.reports?.rows ?? []) {
    const selectRatio = row.serviceMs / row.selectMs;
    const multirangeRatio = row.multirangeMs / row.serviceMs;
    targets.push({
      name: `report (${row.label}) service/select`,
      met: selectRatio <= SELECT_RATIO_TARGET,
      detail: `${ratio(selectRatio)} (target <= ${SELECT_RATIO_TARGET})`,
    });
    targets.push({
      name: `report (${row.label}) multirange/service`,
      met: multirangeRatio >= MULTIRANGE_RATIO_TARGET,
      detail: `${ratio(multirangeRatio)} (target >= ${MULTIRANGE_RATIO_TARGET})`,
    });
    targets.push({
      name: `report (${row.label}) agrees with multirange SQL`,
      met: row.mismatch === null,
      detail: row.mismatch ?? 'same count and total',
    });
  }
  const casasReport = results.casas?.report ?? null;
  if (casasReport !== null) {
    targets.push({
      name: 'CASAS report agrees with multirange SQL',
      met: casasReport.mismatch === null,
      detail: casasReport.mismatch ?? 'same count and total',
    });
  }
  if (results.reports !== null && results.reports.growth.length > 0) {
    for (const label of new Set(results.reports.growth.map((row) => row.label))) {
      const points = results.reports.growth.filter((row) => row.label === label);
      const small = points[points.length - 2];
      const large = points[points.length - 1];
      if (small === undefined || large === undefined) {
        continue;
      }
      const exponent = growthExponent({ n: small.segmentsInWindow, t: small.serviceMs }, { n: large.segmentsInWindow, t: large.serviceMs });
      targets.push({
        name: `report (${label}) growth`,
        met: exponent <= 1.1,
        detail: `exponent ${formatNumber(exponent, 2)} between ${formatNumber(small.segmentsInWindow)} and ${formatNumber(large.segmentsInWindow)} segments (linear or better: <= 1.1)`,
      });
    }
  }
  return targets;
}

function profileTables(profiles: readonly PhaseProfile[]): Table[] {
  return profiles.flatMap(({ phase, summary }) => [
    {
      title: `Server CPU profile, ${phase}: ${formatNumber(summary.busyMs)} ms busy, ${formatNumber(summary.gcMs)} ms in GC; self time by area`,
      headers: ['area', 'ms', 'share'],
      rows: summary.areas.map((entry) => [entry.name, formatNumber(entry.ms), `${formatNumber(entry.share * 100, 1)} %`]),
    },
    {
      title: `Server CPU profile, ${phase}: self time by function`,
      headers: ['function', 'ms', 'share'],
      rows: summary.functions.map((entry) => [entry.name, formatNumber(entry.ms), `${formatNumber(entry.share * 100, 1)} %`]),
    },
  ]);
}

function allTables(results: BenchResults): Table[] {
  const tables: Table[] = [];
  if (results.intake !== null) tables.push(intakeTable(results.intake), intakeCpuTable(results.intake));
  if (results.latency !== null) tables.push(latencyTable(results.latency));
  if (results.reports !== null && results.reports.rows.length > 0) tables.push(reportsTable(results.reports));
  if (results.reports !== null && results.reports.growth.length > 0) tables.push(growthTable(results.reports));
  if (results.casas !== null) tables.push(...casasTables(results.casas));
  if (results.memory.length > 0) {
    tables.push({
      title: 'Server peak memory (VmHWM) per phase',
      headers: ['phase', 'MiB'],
      rows: results.memory.map((entry) => [entry.phase, mib(entry.peakKb)]),
    });
  }
  tables.push(...profileTables(results.profiles));
  return tables;
}

function targetLines(targets: readonly Target[]): string[] {
  return targets.map((target) => `${target.met ? 'met   ' : 'MISSED'}  ${target.name}: ${target.detail}`);
}

export function renderSummaryText(results: BenchResults): string {
  const parts = allTables(results).map(renderText);
  if (results.casas?.skipped != null) {
    parts.push(`CASAS import skipped: ${results.casas.skipped}`);
  }
  parts.push(['Targets', ...targetLines(evaluateTargets(results))].join('\n'));
  return parts.join('\n\n');
}

function environmentLines(info: RunInfo): string[] {
  const load = (values: number[]) => values.map((value) => value.toFixed(2)).join(', ');
  return [
    `- Date: ${info.date}`,
    `- Command: \`${info.command}\`${info.quick ? ' (quick sizes)' : ''}, seed ${info.seed}`,
    `- Machine: ${info.machine.cpus} cores (${info.machine.cpuModel}), ${formatNumber(info.machine.memoryGiB, 1)} GiB memory, ${info.machine.os}`,
    `- Versions: Node ${info.versions.node}, PostgreSQL ${info.versions.postgres}, Redis ${info.versions.redis}`,
    `- Services: ${info.defaulted.length === 0 ? 'DATABASE_URL and REDIS_URL as set' : `local defaults for ${info.defaulted.join(' and ')}`}; a fresh database and Redis key prefix per run; server, PostgreSQL, Redis and the load generator share the machine`,
    `- Load average (1, 5, 15 min) at start: ${load(info.loadAverage.start)}; at end: ${load(info.loadAverage.end)}`,
  ];
}

export function renderMarkdownReport(results: BenchResults): string {
  const sections = ['## Run', '', ...environmentLines(results.info), ''];
  for (const table of allTables(results)) {
    sections.push(`### ${table.title}`, '', renderMarkdown({ ...table, title: '' }), '');
  }
  if (results.casas?.skipped != null) {
    sections.push(`CASAS import skipped: ${results.casas.skipped}`, '');
  }
  sections.push('### Targets', '', ...evaluateTargets(results).map((target) => `- ${target.met ? 'met' : '**missed**'}: ${target.name}: ${target.detail}`), '');
  return sections.join('\n');
}
