/**
 * Runs the service as a child process (`tsx src/main.ts`), so that it does
 * not share an event loop with the load generator and its peak memory can be
 * read from /proc. tsx starts the server in a second node process; every
 * memory figure here is read from that inner process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

import { parseStatTicks, ticksToMs } from './cpu.js';

export interface ServerOptions {
  repoRoot: string;
  databaseUrl: string;
  redisUrl: string;
  redisKeyPrefix: string;
  jwtSecret: string;
  admin: { username: string; password: string };
  /** File that receives the server's stdout and stderr. */
  logFile: string;
  /** Directory for `--cpu-prof` output, or null to run without the profiler. */
  cpuProfileDir: string | null;
  /** Further variables, such as limits raised for the benchmark. */
  extraEnv?: Record<string, string>;
}

export interface RunningServer {
  url: string;
  /** Process id of the node process that serves requests. */
  pid: number;
  /** Peak resident set size since start or the last reset, in KiB (VmHWM). */
  peakMemoryKb(): number;
  /** Current resident set size in KiB (VmRSS). */
  currentMemoryKb(): number;
  /** CPU time the server process has used so far (user and system), in ms. */
  cpuTimeMs(): number;
  /** Resets VmHWM to the current resident size (Linux `clear_refs`, value 5). */
  resetPeakMemory(): void;
  /** Sends SIGTERM and waits for the process to exit. */
  stop(): Promise<void>;
}

/**
 * PostgreSQL connections of the server, set as DB_POOL_SIZE (the service's
 * default). The bench's own pool has as many, so the baselines write over
 * as many connections as the server.
 */
export const SERVER_DB_POOL_SIZE = 10;

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** Asks the operating system for a free loopback port. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function readCpuTimeMs(pid: number): number {
  const parsed = parseStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  if (parsed === null) {
    throw new Error(`Failed to read CPU times from /proc/${pid}/stat: the line has an unexpected format.`);
  }
  return ticksToMs(parsed.ticks);
}

function readStatusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (match === null) {
    throw new Error(`/proc/${pid}/status has no ${field} line.`);
  }
  return Number(match[1]);
}

/**
 * Returns the node process that tsx started under `parentPid`, or the parent
 * itself when it has no child (the profiled server runs in one process).
 */
function serverProcessId(parentPid: number): number {
  try {
    const children = readFileSync(`/proc/${parentPid}/task/${parentPid}/children`, 'utf8').trim();
    const first = children.split(/\s+/)[0];
    return first === undefined || first === '' ? parentPid : Number(first);
  } catch {
    return parentPid;
  }
}

async function waitForReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`The server exited with code ${child.exitCode} before it was ready.`);
    }
    try {
      const response = await fetch(`${url}/readyz`);
      if (response.ok) {
        return;
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`The server at ${url} was not ready within ${READY_TIMEOUT_MS / 1000} s.`);
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: options.databaseUrl,
    REDIS_URL: options.redisUrl,
    REDIS_KEY_PREFIX: options.redisKeyPrefix,
    JWT_SECRET: options.jwtSecret,
    ADMIN_USERNAME: options.admin.username,
    ADMIN_PASSWORD: options.admin.password,
    // The benchmark's users log in once each; 2^14 keeps their setup short.
    PASSWORD_SCRYPT_LOG2_N: '14',
    DB_POOL_SIZE: String(SERVER_DB_POOL_SIZE),
    ...options.extraEnv,
  };
  // Node 20 rejects --cpu-prof in NODE_OPTIONS, so a profiled server runs as
  // `node --cpu-prof --import tsx` in one process instead of under the tsx binary.
  const [command, args] =
    options.cpuProfileDir === null
      ? [join(options.repoRoot, 'node_modules/.bin/tsx'), ['src/main.ts']]
      : [process.execPath, ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfileDir}`, '--import', 'tsx', 'src/main.ts']];

  const log = createWriteStream(options.logFile, { flags: 'a' });
  const child = spawn(command, args, {
    cwd: options.repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  try {
    await waitForReady(url, child);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message} See ${options.logFile}.`, { cause: error });
  }

  const pid = serverProcessId(child.pid ?? 0);
  return {
    url,
    pid,
    peakMemoryKb: () => readStatusKb(pid, 'VmHWM'),
    currentMemoryKb: () => readStatusKb(pid, 'VmRSS'),
    cpuTimeMs: () => readCpuTimeMs(pid),
    resetPeakMemory: () => {
      // Writing 5 to clear_refs resets the peak; it needs the same user as the server.
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    },
    stop: async () => {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
      log.end();
    },
  };
}
