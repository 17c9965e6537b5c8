/**
 * A private redis-server on a free loopback port, for tests that stop,
 * freeze or restart Redis, which they must never do to the shared server.
 * It keeps its RDB file in a temporary folder, so a restart after `save()`
 * loads that snapshot, as a production Redis with RDB persistence does.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Redis } from 'ioredis';
import { describe } from 'vitest';

import { describeWithPostgres } from './services.js';

export interface PrivateRedis {
  url: string;
  /** Writes the RDB snapshot that the next start loads. */
  save(): Promise<void>;
  /** Kills the server with SIGKILL, as a crash does, and waits until it exited. */
  kill(): Promise<void>;
  /** Starts the server again on the same port and folder, and waits until it accepts connections. */
  restart(): Promise<void>;
  /** Kills the server and deletes its folder. */
  stop(): Promise<void>;
}

/** Returns whether a `redis-server` binary is on PATH. */
function redisServerOnPath(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * `describeWithPostgres` when `redis-server` is on PATH, `describe.skip`
 * with a printed reason otherwise.
 */
export function describeWithPrivateRedis(name: string, body: () => void): void {
  if (redisServerOnPath()) {
    describeWithPostgres(name, body);
    return;
  }
  console.warn(`Skipping "${name}": no redis-server binary on PATH to start a private Redis.`);
  describe.skip(name, body);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) {
    throw new Error('could not read the port of a loopback listener');
  }
  return address.port;
}

/** Starts redis-server and resolves once it logs that it accepts connections. */
function spawnRedis(port: number, dir: string, extraArgs: readonly string[]): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', 'dump.rdb', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes('Ready to accept connections')) {
        resolve(child);
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server on port ${port} exited with ${code} before it was ready:\n${output}`)));
  });
}

async function killRedis(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** Starts a private redis-server. `extraArgs` are further redis-server options, such as `['--user', 'name', 'on', '>password', '+@all']`. */
export async function startPrivateRedis(extraArgs: readonly string[] = []): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'em-redis-'));
  let child = await spawnRedis(port, dir, extraArgs);
  const url = `redis://127.0.0.1:${port}`;
  return {
    url,
    async save() {
      const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await client.connect();
      try {
        await client.save();
      } finally {
        client.disconnect();
      }
    },
    async kill() {
      await killRedis(child);
    },
    async restart() {
      child = await spawnRedis(port, dir, extraArgs);
    },
    async stop() {
      await killRedis(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
