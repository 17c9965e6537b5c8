/**
 * `npm run bench`: creates a fresh PostgreSQL database and Redis key prefix
 * and runs the selected phases. Each phase starts a server of its own as a
 * child process, so peak memory and CPU profiles are per phase. The run
 * prints a summary and writes a Markdown report to bench/results/, and with
 * `--record` also into docs/benchmarks.md. See `--help`.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem, type } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type pg from 'pg';

import { runCasasPhase } from './casas.js';
import { runLatencyPhase } from './intake/latency.js';
import { FULL_INTAKE, QUICK_INTAKE, runIntakePhase } from './intake/phase.js';
import type { PhaseContext } from './lib/context.js';
import { GraphQLClient } from './lib/http.js';
import { parseBenchArgs, USAGE, UsageError, type BenchOptions } from './lib/options.js';
import { summariseProfile } from './lib/profile.js';
import { SERVER_DB_POOL_SIZE, startServer } from './lib/server.js';
import {
  createDatabase,
  deleteRedisKeys,
  dropDatabase,
  openPool,
  readServiceVersions,
  resolveServiceUrls,
} from './lib/services.js';
import { benchPasswordHash } from './lib/users.js';
import { prepareReports, runGrowth, runReportCases } from './reports/phase.js';
import { renderMarkdownReport, renderSummaryText, type BenchResults } from './summary.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS_DIR = join(REPO_ROOT, 'bench/results');
const RECORD_FILE = join(REPO_ROOT, 'docs/benchmarks.md');
const RECORD_BEGIN = '<!-- bench:begin (written by npm run bench -- --record; edit outside these markers) -->';
const RECORD_END = '<!-- bench:end -->';
const ADMIN = { username: 'bench-admin', password: 'bench-admin-password-1' };

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

interface RunSetup {
  options: BenchOptions;
  stamp: string;
  databaseUrl: string;
  redisUrl: string;
  redisKeyPrefix: string;
  jwtSecret: string;
  pool: pg.Pool;
  passwordHash: string;
  results: BenchResults;
}

/**
 * Server settings of the phases that time reports: the rollup builder starts
 * at once instead of waiting ROLLUP_DELAY_MS for more changes, because the
 * data does not change after it is loaded.
 */
const REPORT_SERVER_ENV = { ROLLUP_DELAY_MS: '0' };

/** Starts a server for one phase, runs it, then stops the server and records its peak memory and profile. */
async function withServer<T>(
  setup: RunSetup,
  phase: string,
  work: (context: PhaseContext) => Promise<T>,
  extraEnv: Record<string, string> = {},
): Promise<T> {
  const profileDir = setup.options.profile ? join(RESULTS_DIR, `profiles-${setup.stamp}`, phase) : null;
  if (profileDir !== null) {
    mkdirSync(profileDir, { recursive: true });
  }
  const server = await startServer({
    repoRoot: REPO_ROOT,
    databaseUrl: setup.databaseUrl,
    redisUrl: setup.redisUrl,
    redisKeyPrefix: setup.redisKeyPrefix,
    jwtSecret: setup.jwtSecret,
    admin: ADMIN,
    logFile: join(RESULTS_DIR, `server-${setup.stamp}.log`),
    cpuProfileDir: profileDir,
    extraEnv,
  });
  log(`${phase}: server pid ${server.pid} at ${server.url}`);
  const client = new GraphQLClient(server.url, 128);
  try {
    const context: PhaseContext = {
      quick: setup.options.quick,
      seed: setup.options.seed,
      pool: setup.pool,
      client,
      server,
      adminToken: await client.login(ADMIN.username, ADMIN.password),
      passwordHash: setup.passwordHash,
      log,
    };
    const result = await work(context);
    setup.results.memory.push({ phase, peakKb: server.peakMemoryKb() });
    return result;
  } finally {
    client.close();
    await server.stop();
    if (profileDir !== null) {
      const file = readdirSync(profileDir).find((name) => name.includes(`.${server.pid}.0.`) && name.endsWith('.cpuprofile'));
      // Thread 0 is the main thread; tsx's loader thread writes a profile of its own.
      if (file === undefined) {
        log(`${phase}: the server wrote no CPU profile to ${profileDir}`);
      } else {
        setup.results.profiles.push({ phase, summary: summariseProfile(join(profileDir, file)) });
      }
    }
  }
}

function describeMachine(): BenchResults['info']['machine'] {
  const processors = cpus();
  return {
    cpus: processors.length,
    cpuModel: processors[0]?.model.trim() ?? 'unknown',
    memoryGiB: totalmem() / 1024 ** 3,
    os: `${type()} ${release()}`,
  };
}

/** Replaces the generated part of docs/benchmarks.md, keeping the text written around it. */
function writeRecord(markdown: string): void {
  const generated = `${RECORD_BEGIN}\n\n${markdown}\n${RECORD_END}`;
  let text = existsSync(RECORD_FILE) ? readFileSync(RECORD_FILE, 'utf8') : `# Benchmarks\n\n${RECORD_BEGIN}\n${RECORD_END}\n`;
  const begin = text.indexOf(RECORD_BEGIN);
  const end = text.indexOf(RECORD_END);
  if (begin === -1 || end === -1 || end < begin) {
    text = `${text.trimEnd()}\n\n${generated}\n`;
  } else {
    text = `${text.slice(0, begin)}${generated}${text.slice(end + RECORD_END.length)}`;
  }
  mkdirSync(dirname(RECORD_FILE), { recursive: true });
  writeFileSync(RECORD_FILE, text);
}

async function runPhases(setup: RunSetup): Promise<void> {
  const { options, results } = setup;
  if (options.phases.includes('reports') || options.phases.includes('growth')) {
    results.reports = await withServer(setup, 'reports', async (context) => {
      const { dataset, rollups } = await prepareReports(context);
      return {
        dataset,
        rollups,
        runs: context.quick ? 3 : 7,
        rows: options.phases.includes('reports') ? await runReportCases(context, dataset) : [],
        growth: options.phases.includes('growth') ? await runGrowth(context, dataset) : [],
      };
    }, REPORT_SERVER_ENV);
  }
  if (options.phases.includes('intake')) {
    results.intake = await withServer(setup, 'intake', (context) =>
      runIntakePhase(context, options.quick ? QUICK_INTAKE : FULL_INTAKE, options.batches, options.rounds),
    );
  }
  if (options.phases.includes('latency')) {
    results.latency = await withServer(setup, 'latency', (context) => runLatencyPhase(context));
  }
  if (options.phases.includes('casas')) {
    results.casas = await withServer(setup, 'casas', (context) =>
      runCasasPhase(context, REPO_ROOT, ADMIN, join(RESULTS_DIR, `casas-${setup.stamp}.log`)),
      REPORT_SERVER_ENV,
    );
  }
}

async function main(options: BenchOptions): Promise<void> {
  const started = new Date();
  const stamp = started.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  const urls = resolveServiceUrls(process.env);
  for (const name of urls.defaulted) {
    log(`${name} is not set; using the local default`);
  }
  mkdirSync(RESULTS_DIR, { recursive: true });

  const databaseName = `em_bench_${stamp}`;
  const redisKeyPrefix = `bench:${stamp}:`;
  const databaseUrl = await createDatabase(urls.baseDatabaseUrl, databaseName);
  log(`created database ${databaseName}; Redis key prefix ${redisKeyPrefix}`);
  const pool = openPool(databaseUrl, SERVER_DB_POOL_SIZE);

  try {
    const versions = await readServiceVersions(pool, urls.redisUrl);
    const setup: RunSetup = {
      options,
      stamp,
      databaseUrl,
      redisUrl: urls.redisUrl,
      redisKeyPrefix,
      jwtSecret: randomBytes(32).toString('hex'),
      pool,
      passwordHash: await benchPasswordHash(),
      results: {
        info: {
          date: started.toISOString(),
          command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' '),
          seed: options.seed,
          quick: options.quick,
          machine: describeMachine(),
          versions: { node: process.version, ...versions },
          defaulted: urls.defaulted,
          loadAverage: { start: loadavg(), end: [] },
        },
        intake: null,
        latency: null,
        reports: null,
        casas: null,
        memory: [],
        profiles: [],
      },
    };

    await runPhases(setup);
    setup.results.info.loadAverage.end = loadavg();

    console.log(renderSummaryText(setup.results));
    const markdown = renderMarkdownReport(setup.results);
    const reportFile = join(RESULTS_DIR, `${stamp}.md`);
    writeFileSync(reportFile, `# Benchmark run ${setup.results.info.date}\n\n${markdown}`);
    writeFileSync(join(RESULTS_DIR, `${stamp}.json`), JSON.stringify(setup.results, null, 2));
    log(`wrote ${reportFile}`);
    if (options.record) {
      writeRecord(markdown);
      log(`wrote ${RECORD_FILE}`);
    }
  } finally {
    await pool.end();
    if (options.keep) {
      log(`kept database ${databaseName} and Redis keys ${redisKeyPrefix}*`);
    } else {
      await dropDatabase(urls.baseDatabaseUrl, databaseName);
      const deleted = await deleteRedisKeys(urls.redisUrl, redisKeyPrefix);
      log(`dropped database ${databaseName} and ${deleted} Redis keys`);
    }
  }
}

let parsed: BenchOptions | 'help';
try {
  parsed = parseBenchArgs(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`bench: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  throw error;
}
if (parsed === 'help') {
  process.stdout.write(USAGE);
} else {
  await main(parsed);
}
