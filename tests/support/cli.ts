/**
 * Runs one of the command-line programs under `src/cli` as a child process,
 * through the project's tsx, and collects its output. Also gives such tests
 * a temporary data directory, and stops the children of a test when it ends.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { afterAll, aroundEach, beforeAll } from 'vitest';

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

/** The children that one test started and that have not closed yet, and whether that test has ended. */
interface TestChildren {
  running: Map<ChildProcessWithoutNullStreams, Promise<void>>;
  ended: boolean;
}

/** The children of the test whose code runs, in a file that called `stopChildrenWhenTestsEnd`. */
const childrenOfTest = new AsyncLocalStorage<TestChildren>();

/**
 * Children from `spawnChild` whose streams have closed. Their process group
 * may be gone, and its id may then belong to another group.
 */
const closedChildren = new WeakSet<ChildProcessWithoutNullStreams>();

/**
 * Stops, at the end of each test of the enclosing file or `describe` block,
 * the children that the test started with `spawnChild` and that still run.
 * A test that failed or timed out leaves its code running in the background,
 * and its child could keep a database open for the tests that follow. So
 * they are killed, with the processes they started, and awaited, and a child
 * that such code starts after the end of its test is rejected.
 */
export function stopChildrenWhenTestsEnd(): void {
  aroundEach(async (runTest) => {
    const children: TestChildren = { running: new Map(), ended: false };
    try {
      await childrenOfTest.run(children, runTest);
    } finally {
      children.ended = true;
      await Promise.all([...children.running].map(([child, closed]) => killProcessGroup(child, closed)));
    }
  });
}

/**
 * Starts `command` in a process group of its own, with piped standard
 * streams, so that `killProcessGroup` also reaches the processes it starts,
 * such as the node process in which tsx runs a script. Within a test of a
 * block that called `stopChildrenWhenTestsEnd`, the child is stopped when
 * the test ends. Returns the child and a promise that resolves when its
 * streams have closed, which is when every process that shares them exited.
 */
export function spawnChild(
  command: string,
  args: readonly string[],
  options: { cwd: string; env: Record<string, string> },
): { child: ChildProcessWithoutNullStreams; closed: Promise<void> } {
  const children = childrenOfTest.getStore();
  if (children?.ended === true) {
    throw new Error(`Not starting ${command}: the test that requested it has already ended, after a failure or a timeout.`);
  }
  const child = spawn(command, args, { ...options, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const closed = new Promise<void>((done) => {
    const close = () => {
      closedChildren.add(child);
      done();
    };
    child.once('close', close);
    child.once('error', () => {
      // A child that could not start has no pid and emits no 'close'.
      if (child.pid === undefined) {
        close();
      }
    });
  });
  if (children !== undefined) {
    children.running.set(child, closed);
    void closed.then(() => children.running.delete(child));
  }
  return { child, closed };
}

/**
 * Kills the process group of a child from `spawnChild` with SIGKILL, unless
 * it has closed already, and waits until it has.
 * NOTE: a program that moves its own children into another process group or
 * session, as util-linux `script` does, loses them to a hangup of their
 * terminal instead, which this does not wait for.
 */
export async function killProcessGroup(child: ChildProcessWithoutNullStreams, closed: Promise<void>): Promise<void> {
  if (child.pid !== undefined && !closedChildren.has(child)) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch (error) {
      // ESRCH: every process of the group has exited, and only the streams were open still.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') {
        throw error;
      }
    }
  }
  await closed;
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `script` (a path relative to the repository) with `args` and exactly
 * the environment `env`. Writes `input` to its standard input when given, and
 * kills it, with the processes it started, after `timeoutMs`.
 */
export function runCli(
  script: string,
  args: readonly string[],
  env: Record<string, string>,
  options: { input?: string | Buffer | null; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const { child, closed } = spawnChild(TSX, [script, ...args], { cwd: REPO_ROOT, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => void killProcessGroup(child, closed), options.timeoutMs ?? 30_000);
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
