/**
 * Graceful shutdown of `src/main.ts` as a real process on its embedded
 * defaults: SIGTERM lets a request in flight finish, then the process exits
 * with code 0 and releases the embedded database. The same holds when the
 * signal goes to `npm start`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, describe, expect, it } from 'vitest';

const dataDirs: string[] = [];

interface StartedServer {
  child: ChildProcess;
  url: string;
  dataDir: string;
  /** Lines the process has written to stdout so far. */
  lines: string[];
}

/**
 * Starts `command` with `args` on the embedded defaults in a fresh data
 * folder, and waits until it logs the URL it serves.
 */
async function startService(command: string, args: string[], env: Record<string, string> = {}): Promise<StartedServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'em-shutdown-'));
  dataDirs.push(dataDir);
  const child = spawn(command, args, {
    env: {
      ...process.env,
      DATABASE_URL: '',
      REDIS_URL: '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      ADMIN_USERNAME: 'admin',
      ADMIN_PASSWORD: 'admin-password-1',
      PASSWORD_SCRYPT_LOG2_N: '14',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start within 60 s')), 60_000);
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      lines.push(line);
      const match = /serving GraphQL at (http:\/\/[^\s"]+)\/graphql/.exec(line);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return { child, url, dataDir, lines };
}

describe('process shutdown', () => {
  afterAll(() => {
    for (const dataDir of dataDirs) {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  // In production Apollo registers its own signal handler unless configured not to.
  it.each(['test', 'production'])('drains a request on SIGTERM (NODE_ENV=%s)', async (nodeEnv) => {
    // As in `npm start`: Node loads tsx as a loader, so the signal reaches the
    // service's own process rather than a wrapper process.
    const { child, url, dataDir, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      NODE_ENV: nodeEnv,
      // The test is about draining, not the grace limit: on a loaded CI
      // machine the embedded database can take longer than the default
      // 10 s for this batch.
      SHUTDOWN_GRACE_MS: '60000',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    const login = await fetch(`${url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-password-1' }),
    });
    const { token } = (await login.json()) as { token: string };

    // A batch large enough to be in flight when the signal arrives.
    const events = Array.from({ length: 1000 }, (_, index) => ({
      id: `drain-${index}`,
      type: 'heartbeat',
      occurred_at: new Date(Date.parse('2026-02-01T00:00:00Z') + index * 1000).toISOString(),
    }));
    const inFlight = fetch(`${url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(events),
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGTERM');

    const response = await inFlight;
    expect(response.status).toBe(200);
    const body = (await response.json()) as { stored_count: number };
    expect(body.stored_count).toBe(1000);

    const code = await exited;
    expect(code, lines.join('\n')).toBe(0);
    expect(lines.some((line) => line.includes('stopping: draining requests'))).toBe(true);
    expect(lines.some((line) => line.includes('"msg":"stopped"'))).toBe(true);
    expect(existsSync(join(dataDir, 'event-master.pid'))).toBe(false);
  }, 90_000);

  // A process manager that runs `npm start` signals npm. Unless the script
  // replaces npm's shell with node, the shell exits and node keeps serving.
  it('stops on a SIGTERM sent to npm start', async () => {
    const { child: npm, url, dataDir, lines } = await startService('npm', ['start', '--silent']);
    const closed = new Promise<void>((resolve) => npm.stdout?.once('close', () => resolve()));

    npm.kill('SIGTERM');
    // The server's own log reaches the pipe until it exits, which closes the pipe.
    await closed;
    expect(lines.some((line) => line.includes('"msg":"stopped"')), lines.join('\n')).toBe(true);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    expect(existsSync(join(dataDir, 'event-master.pid'))).toBe(false);
  }, 90_000);
});
