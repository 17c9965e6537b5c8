/**
 * `npm run import` as a child process, stopped with real signals while a
 * fake GraphQL server on loopback delays the reply to its first batch. The
 * first SIGINT or SIGTERM lets that batch finish and prints the summary, and
 * a second one exits at once.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { REPEATED_SIGNAL_MS } from '../../src/importer/import-command.js';
import { REPO_ROOT, spawnChild, stopChildrenWhenTestsEnd, TSX, useTemporaryDirectory } from '../support/cli.js';

const ADMIN = { id: '00000000-0000-4000-8000-000000000001', username: 'admin', role: 'ADMIN' };

/**
 * A GraphQL server with the operations that an import of bare events calls.
 * It leaves each sendEvents request without a reply until the test calls `releaseSends`.
 */
class HoldingServer {
  readonly server: Server;
  /** sendEvents requests received, released or not. */
  sends = 0;
  private held: (() => void)[] = [];
  private released = false;
  private sendWaiters: (() => void)[] = [];

  constructor() {
    this.server = createServer((request, response) => void this.handle(request, response));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  /** Resolves once a sendEvents request has arrived. */
  firstSend(): Promise<void> {
    return this.sends > 0 ? Promise.resolve() : new Promise((resolve) => this.sendWaiters.push(resolve));
  }

  /** Replies to the held sendEvents requests and to every later one at once. */
  releaseSends(): void {
    this.released = true;
    for (const reply of this.held.splice(0)) {
      reply();
    }
  }

  async close(): Promise<void> {
    this.releaseSends();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) {
      text += String(chunk);
    }
    const { operationName, variables } = JSON.parse(text) as {
      operationName: string;
      variables: { events?: unknown[] };
    };
    const reply = (data: unknown): void => {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ data }));
    };

    if (operationName === 'ImportLogin') {
      reply({ login: { token: 'token-1', user: ADMIN } });
    } else if (operationName === 'ImportSendEvents') {
      this.sends += 1;
      for (const resolve of this.sendWaiters.splice(0)) {
        resolve();
      }
      const storedCount = variables.events?.length ?? 0;
      const send = () => reply({ sendEvents: { storedCount, duplicateCount: 0 } });
      if (this.released) {
        send();
      } else {
        this.held.push(send);
      }
    } else {
      response.writeHead(400, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ errors: [{ message: `unexpected operation ${operationName}` }] }));
    }
  }
}

/** Starts an import child and returns it with its output so far and a way to wait for a text on stderr. */
function startImport(url: string, file: string) {
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    EVENT_MASTER_USERNAME: 'admin',
    EVENT_MASTER_PASSWORD: 'admin-secret',
  };
  const args = ['src/cli/import.ts', '--url', url, '--batch-size', '2', '--concurrency', '1', file];
  const { child, closed } = spawnChild(TSX, args, { cwd: REPO_ROOT, env });
  const output = { stdout: '', stderr: '' };
  const stderrWaiters: { text: string; resolve: () => void }[] = [];
  child.stdout.on('data', (chunk: Buffer) => {
    output.stdout += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString('utf8');
    for (const waiter of stderrWaiters.filter((entry) => output.stderr.includes(entry.text))) {
      stderrWaiters.splice(stderrWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  });
  const exitCode = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));

  // Resolves when stderr contains `text`, or when the child has exited without writing it.
  const stderrContains = (text: string): Promise<void> =>
    output.stderr.includes(text)
      ? Promise.resolve()
      : new Promise((resolve) => {
          stderrWaiters.push({ text, resolve });
          void exitCode.then(() => resolve());
        });
  return { child, closed, output, exitCode, stderrContains };
}

describe('import command signals', () => {
  stopChildrenWhenTestsEnd();
  const folder = useTemporaryDirectory('cli-import-');
  let server: HoldingServer | undefined;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  function writeEvents(count: number): string {
    const file = join(folder(), `events-${count}.ndjson`);
    const lines = Array.from({ length: count }, (_, index) =>
      JSON.stringify({ id: `e${index + 1}`, type: 'ping', occurredAt: '2024-05-01T08:00:00Z' }),
    );
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('finishes the batch in flight on %s', async (signal, status) => {
    server = new HoldingServer();
    const url = await server.listen();
    const run = startImport(url, writeEvents(5));

    await server.firstSend();
    run.child.kill(signal);
    await run.stderrContains(`import: ${signal} received: sending no new batches`);
    expect(run.output.stderr).toContain(`import: ${signal} received: sending no new batches`);
    server.releaseSends();

    expect(await run.exitCode).toBe(status);
    expect(server.sends).toBe(1);
    expect(run.output.stderr).toContain(`import: stopped by ${signal}: 2 of 5 events were sent and have a reply. `);
    expect(run.output.stderr).toContain('Run the same command again to continue');
    expect(run.output.stdout).toContain('stored:              2\n');
  }, 60_000);

  it('exits at once on a second SIGINT', async () => {
    server = new HoldingServer();
    const url = await server.listen();
    const run = startImport(url, writeEvents(5));

    await server.firstSend();
    run.child.kill('SIGINT');
    await run.stderrContains('import: SIGINT received: sending no new batches');
    expect(run.output.stderr).toContain('import: SIGINT received: sending no new batches');
    // A signal sooner after the first counts as the same Ctrl-C.
    await new Promise((resolve) => setTimeout(resolve, REPEATED_SIGNAL_MS));
    run.child.kill('SIGINT');

    // The reply is still held, so only the second signal can end the child.
    expect(await run.exitCode).toBe(130);
    expect(run.output.stderr).toContain('import: SIGINT received again; exiting without waiting for replies.');
    expect(run.output.stdout).toBe('');
  }, 60_000);
});
