/**
 * Runs one of the command-line programs under `src/cli` as a child process,
 * through the project's tsx, and collects its output. Also gives such tests
 * a temporary data directory.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, beforeAll } from 'vitest';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const TSX = join(REPO_ROOT, 'node_modules/.bin/tsx');

/**
 * Creates a temporary directory before the tests of the enclosing `describe`
 * block and removes it after them. Returns a function that gives its path.
 */
export function useTemporaryDirectory(prefix: string): () => string {
  let path = '';
  beforeAll(() => {
    path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => {
    rmSync(path, { recursive: true, force: true });
  });
  return () => path;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `script` (a path relative to the repository) with `args` and exactly
 * the environment `env`. Writes `input` to its standard input when given, and
 * kills it after `timeoutMs`.
 */
export function runCli(
  script: string,
  args: readonly string[],
  env: Record<string, string>,
  options: { input?: string | Buffer | null; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(TSX, [script, ...args], { cwd: REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    if (options.input !== undefined && options.input !== null) {
      child.stdin.write(options.input);
    }
    child.stdin.end();
  });
}

/**
 * Returns a TCP port on 127.0.0.1 that nothing listens on: the system picks a
 * free one, and the probe closes it again. Another process could bind it
 * before the test connects, and then the connection would not be refused.
 */
export async function unusedLoopbackPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((done) => probe.listen(0, '127.0.0.1', done));
  const address = probe.address();
  await new Promise<void>((done) => probe.close(() => done()));
  if (typeof address !== 'object' || address === null) {
    throw new Error(`The probe server has no TCP address: ${String(address)}`);
  }
  return address.port;
}
