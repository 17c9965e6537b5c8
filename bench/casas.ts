/**
 * Phase 5: the WSU CASAS Kyoto recordings (../shared/data/casas-kyoto, 24
 * participants, about 62,000 events), converted with `convert:casas` and sent
 * with `import`, both run as the repository's own commands. The same events
 * are then inserted directly into `bench_events` as the baseline, and one
 * report over the imported segments is timed like the report cases.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createBaselineTable, runBaselineIntake, type ThroughputResult } from './intake/throughput.js';
import type { BenchEvent, EventClass } from './intake/workload.js';
import type { PhaseContext } from './lib/context.js';
import { measureCase, waitForRollups, type ReportRow, type RollupBuild } from './reports/phase.js';

export const CASAS_DIR_RELATIVE = '../shared/data/casas-kyoto';
const IMPORT_BATCH_SIZE = 1000;
const IMPORT_CONCURRENCY = 4;
/** The Kyoto apartment is on the WSU campus in Pullman, Washington. */
const CASAS_TIME_ZONE = 'America/Los_Angeles';

export interface CasasResult {
  /** Set when the phase could not run, with the reason. */
  skipped: string | null;
  files: number;
  events: number;
  stored: number;
  duplicates: number;
  rejected: number;
  importSeconds: number;
  importEventsPerSecond: number;
  baseline: ThroughputResult | null;
  report: ReportRow | null;
  rollups: RollupBuild | null;
}

interface CommandOutcome {
  code: number;
  stdout: string;
}

function runCommand(
  repoRoot: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  stdoutFile: string | null,
  logFile: string,
): Promise<CommandOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(repoRoot, 'node_modules/.bin/tsx'), args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = createWriteStream(logFile, { flags: 'a' });
    child.stderr.pipe(log);
    const chunks: Buffer[] = [];
    if (stdoutFile !== null) {
      child.stdout.pipe(createWriteStream(stdoutFile));
    } else {
      child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    }
    child.once('error', reject);
    child.once('close', (code) => {
      log.end();
      resolve({ code: code ?? 1, stdout: Buffer.concat(chunks).toString('utf8') });
    });
  });
}

interface ParsedImport {
  streams: BenchEvent[][];
  eventTypes: Map<string, EventClass>;
  firstMs: number;
  lastMs: number;
}

/** Reads the converted NDJSON back as per-user streams for the baseline, with offsets in epoch ms. */
function parseNdjson(file: string): ParsedImport {
  const byUser = new Map<string, BenchEvent[]>();
  const eventTypes = new Map<string, EventClass>();
  let firstMs = Number.POSITIVE_INFINITY;
  let lastMs = Number.NEGATIVE_INFINITY;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') {
      continue;
    }
    const record = JSON.parse(line) as {
      kind: string;
      username?: string;
      input: Record<string, unknown>;
    };
    if (record.kind === 'pairType') {
      const name = record.input.name as string;
      eventTypes.set(record.input.startType as string, { role: 'START', pairType: name });
      eventTypes.set(record.input.endType as string, { role: 'END', pairType: name });
      continue;
    }
    const input = record.input;
    const offsetMs = Date.parse(input.occurredAt as string);
    firstMs = Math.min(firstMs, offsetMs);
    lastMs = Math.max(lastMs, offsetMs);
    const stream = byUser.get(record.username ?? '') ?? [];
    stream.push({
      id: input.id as string,
      type: input.type as string,
      pairKey: (input.pairKey as string | undefined) ?? null,
      offsetMs,
      meta: (input.meta as Record<string, unknown> | undefined) ?? null,
      kind: 'new',
    });
    byUser.set(record.username ?? '', stream);
  }
  return { streams: [...byUser.values()], eventTypes, firstMs, lastMs };
}

const DAY_MS = 86_400_000;

export async function runCasasPhase(
  context: PhaseContext,
  repoRoot: string,
  admin: { username: string; password: string },
  logFile: string,
): Promise<CasasResult> {
  const skip = (reason: string): CasasResult => ({
    skipped: reason,
    files: 0,
    events: 0,
    stored: 0,
    duplicates: 0,
    rejected: 0,
    importSeconds: 0,
    importEventsPerSecond: 0,
    baseline: null,
    report: null,
    rollups: null,
  });
  const dataDir = process.env.CASAS_DATA_DIR ?? join(repoRoot, CASAS_DIR_RELATIVE);
  for (const command of ['src/cli/convert-casas.ts', 'src/cli/import.ts']) {
    if (!existsSync(join(repoRoot, command))) {
      return skip(`${command} does not exist`);
    }
  }
  if (!existsSync(dataDir)) {
    return skip(`${dataDir} does not exist`);
  }
  const files = readdirSync(dataDir)
    .filter((name) => name.endsWith('.txt'))
    .sort()
    .map((name) => join(dataDir, name));

  context.log(`casas: converting ${files.length} files`);
  const ndjson = join(tmpdir(), `em-bench-casas-${process.pid}.ndjson`);
  const env = { PATH: process.env.PATH, HOME: process.env.HOME };
  const converted = await runCommand(repoRoot, ['src/cli/convert-casas.ts', '--time-zone', CASAS_TIME_ZONE, ...files], env, ndjson, logFile);
  if (converted.code !== 0) {
    return skip(`convert:casas exited with code ${converted.code}; see ${logFile}`);
  }

  context.log('casas: importing through the service');
  const started = performance.now();
  const imported = await runCommand(
    repoRoot,
    ['src/cli/import.ts', '--url', context.server.url, '--batch-size', String(IMPORT_BATCH_SIZE), '--concurrency', String(IMPORT_CONCURRENCY), '--json', ndjson],
    { ...env, EVENT_MASTER_USERNAME: admin.username, EVENT_MASTER_PASSWORD: admin.password },
    null,
    logFile,
  );
  const wallSeconds = (performance.now() - started) / 1000;
  if (imported.code !== 0) {
    return skip(`import exited with code ${imported.code}; see ${logFile}`);
  }
  const summary = JSON.parse(imported.stdout) as {
    eventsRead: number;
    stored: number;
    duplicates: number;
    rejected: number;
    elapsedSeconds: number;
  };

  context.log('casas: PostgreSQL baseline');
  const parsed = parseNdjson(ndjson);
  await createBaselineTable(context.pool);
  const baseline = await runBaselineIntake(
    context.pool,
    parsed.streams.map(() => randomUUID()),
    parsed.streams,
    IMPORT_BATCH_SIZE,
    IMPORT_CONCURRENCY,
    0,
    parsed.eventTypes,
  );

  // The recordings span more than the longest report window (REPORT_MAX_WINDOW_DAYS, 366 by
  // default), so the report covers the last 366 whole UTC days of them.
  const end = Math.ceil((parsed.lastMs + 1) / DAY_MS) * DAY_MS;
  const window = { start: Math.max(Math.floor(parsed.firstMs / DAY_MS) * DAY_MS, end - 366 * DAY_MS), end };
  const rollups = await waitForRollups(context);
  context.log(`casas: ${rollups.chunks} rollup chunks built ${rollups.seconds.toFixed(1)} s after the import ended`);
  context.log('casas: report over the imported segments');
  const report = await measureCase(
    context,
    {
      label: 'casas',
      title: 'CASAS: sensor activations during activities, last 366 days of recordings',
      expression: { intersect: [{ segments: { pairTypes: ['activity'] } }, { segments: { pairTypes: ['sensor'] } }] },
      grouped: null,
    },
    context.quick ? 3 : 7,
    window,
  );

  return {
    skipped: null,
    files: files.length,
    events: summary.eventsRead,
    stored: summary.stored,
    duplicates: summary.duplicates,
    rejected: summary.rejected,
    importSeconds: summary.elapsedSeconds > 0 ? summary.elapsedSeconds : wallSeconds,
    importEventsPerSecond: summary.eventsRead / (summary.elapsedSeconds > 0 ? summary.elapsedSeconds : wallSeconds),
    baseline,
    report,
    rollups,
  };
}
