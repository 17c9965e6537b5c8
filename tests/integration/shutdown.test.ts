/**
 * Graceful shutdown of `src/main.ts` as a real process on its embedded
 * defaults: SIGTERM lets a request in flight finish, then the process exits
 * with code 0 and releases the embedded database. The same holds when the
 * signal goes to `npm start`, and for an idle server with SHUTDOWN_GRACE_MS=0.
 * During SHUTDOWN_DELAY_MS `/readyz` returns 503 while requests are served.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';

import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl, redisUrl, uniqueKeyPrefix } from '../support/services.js';

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

// At file level, so that it also removes the folders of the last block's tests.
afterAll(() => {
  for (const dataDir of dataDirs) {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/** Waits until the process has written a line that contains `text`, and returns its index in `lines`. */
async function waitForLine(lines: readonly string[], text: string): Promise<number> {
  for (let attempt = 0; attempt < 600; attempt += 1) {
    const index = lines.findIndex((line) => line.includes(text));
    if (index >= 0) {
      return index;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`The process wrote no line with ${JSON.stringify(text)} within 30 s:\n${lines.join('\n')}`);
}

describe('process shutdown', () => {
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
    // Signalled before the server has read the request, Fastify would reply 503 to it as it closes.
    await waitForLine(lines, '"url":"/api/events"');
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
  it('serves during SHUTDOWN_DELAY_MS', async () => {
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      SHUTDOWN_DELAY_MS: '600000',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // A failed check would otherwise leave the process serving for the whole delay.
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
      }
    });

    child.kill('SIGTERM');
    await waitForLine(lines, 'returns 503 for SHUTDOWN_DELAY_MS');

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status, 'readyz status').toBe(503);
    expect(((await ready.json()) as { status: string }).status, 'readyz body').toBe('shutting down');
    const health = await fetch(`${url}/healthz`);
    expect(health.status, 'healthz status').toBe(200);
    const login = await fetch(`${url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-password-1' }),
    });
    expect(login.status, 'login status').toBe(200);
    expect(lines.some((line) => line.includes('stopping: draining requests')), 'drain begun').toBe(false);

    // A second signal ends the delay and the process at once.
    child.kill('SIGTERM');
    expect(await exited, 'exit code after a second signal').toBe(1);
  }, 90_000);

  it('grace ends a partial request head', async () => {
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      SHUTDOWN_GRACE_MS: '500',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    onTestFinished(() => {
      socket.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
      }
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Part of a request head: Node emits no request for it, and once the
    // server closes it no longer enforces headersTimeout on the connection.
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    // A reply on another connection, opened after the partial head was sent,
    // makes it likely that the server has read that head.
    expect((await fetch(`${url}/healthz`)).status, 'healthz status').toBe(200);

    child.kill('SIGTERM');

    // Without a bound the process waits for the client and this test times out.
    expect(await exited, lines.join('\n')).toBe(0);
    expect(lines.some((line) => line.includes('closing the remaining connections')), 'connections closed').toBe(true);
  }, 60_000);

  // Node's server.close() stops the checks that enforce the request timeout.
  it('request timeout ends a slow body', async () => {
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      REQUEST_TIMEOUT_MS: '500',
      // Far longer than the test's timeout, so only the request timeout can end the drain.
      SHUTDOWN_GRACE_MS: '600000',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const { port } = new URL(url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    onTestFinished(() => {
      socket.destroy();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
      }
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // The headers and the first byte of a body that never comes in full.
    socket.write('POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{');
    await waitForLine(lines, '"url":"/auth/login"');

    child.kill('SIGTERM');

    expect(await exited, lines.join('\n')).toBe(0);
    const reply = Buffer.concat(received).toString('utf8');
    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
    expect(reply, 'reason').toContain('"reason":"REQUEST_TIMEOUT"');
  }, 90_000);

  it('drains after SHUTDOWN_DELAY_MS', async () => {
    const { child, lines, dataDir } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      SHUTDOWN_DELAY_MS: '200',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    child.kill('SIGTERM');

    expect(await exited, lines.join('\n')).toBe(0);
    const delayed = lines.findIndex((line) => line.includes('returns 503 for SHUTDOWN_DELAY_MS'));
    const draining = lines.findIndex((line) => line.includes('stopping: draining requests'));
    const stopped = lines.findIndex((line) => line.includes('"msg":"stopped"'));
    expect(delayed, 'delay logged').toBeGreaterThanOrEqual(0);
    expect(draining, 'drain after the delay').toBeGreaterThan(delayed);
    expect(stopped, 'stopped after the drain').toBeGreaterThan(draining);
    expect(existsSync(join(dataDir, 'event-master.pid')), 'embedded database released').toBe(false);
  }, 90_000);
});

// Closing the pool and the Redis connection takes network round trips, which
// the embedded defaults do not, so a grace of 0 ran out before them.
describeWithPostgres('process shutdown on PostgreSQL', () => {
  let database: TestDatabase | undefined;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_shutdown' });
  });

  afterAll(async () => {
    await database?.drop();
  });

  it('idle server exits 0 with grace 0', async () => {
    const redis = redisUrl();
    const { child, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      DATABASE_URL: (database as TestDatabase).url,
      ...(redis === undefined ? {} : { REDIS_URL: redis, REDIS_KEY_PREFIX: uniqueKeyPrefix(import.meta.filename) }),
      SHUTDOWN_GRACE_MS: '0',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    child.kill('SIGTERM');

    expect(await exited, lines.join('\n')).toBe(0);
    expect(lines.some((line) => line.includes('drain took longer')), 'drain error logged').toBe(false);
    expect(lines.some((line) => line.includes('"msg":"stopped"')), 'stopped logged').toBe(true);
  }, 90_000);

  it('close timeout 0 waits', async () => {
    const redis = redisUrl();
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      DATABASE_URL: (database as TestDatabase).url,
      ...(redis === undefined ? {} : { REDIS_URL: redis, REDIS_KEY_PREFIX: uniqueKeyPrefix(import.meta.filename) }),
      SHUTDOWN_CLOSE_TIMEOUT_MS: '0',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The pings leave open connections in the pool, which take a round trip to close.
    expect((await fetch(`${url}/readyz`)).status, 'readyz status').toBe(200);

    child.kill('SIGTERM');

    expect(await exited, lines.join('\n')).toBe(0);
    expect(lines.some((line) => line.includes('took longer than SHUTDOWN_CLOSE_TIMEOUT_MS')), 'close error logged').toBe(false);
  }, 90_000);

  it('close timeout ends a stalled close', async () => {
    const proxy = await startFreezingProxy(new URL((database as TestDatabase).url));
    onTestFinished(() => proxy.close());
    const { child, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      DATABASE_URL: proxy.url,
      SHUTDOWN_CLOSE_TIMEOUT_MS: '500',
    });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

    proxy.freeze();
    child.kill('SIGTERM');

    // Without the close timeout, the process waits for PostgreSQL forever.
    const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 30_000))]);
    expect(code, lines.join('\n')).toBe(1);
    expect(
      lines.some((line) => line.includes('closing background jobs and connections took longer than SHUTDOWN_CLOSE_TIMEOUT_MS')),
      'close timeout logged',
    ).toBe(true);
  }, 90_000);

  it('drains a waiting request on SIGTERM', async () => {
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      DATABASE_URL: (database as TestDatabase).url,
      SHUTDOWN_GRACE_MS: '60000',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The lock holds the login in PostgreSQL until the drain has begun, so the
    // request is certainly in flight when the signal arrives.
    const { blocker, login } = await holdLogin((database as TestDatabase).url, url);
    try {
      child.kill('SIGTERM');
      await waitForLine(lines, 'stopping: draining requests');
      await blocker.query('COMMIT');

      const response = await login;
      expect(response, 'login reply').toBeInstanceOf(Response);
      expect((response as Response).status, 'login status').toBe(200);
      expect(await exited, lines.join('\n')).toBe(0);
      expect(lines.some((line) => line.includes('"msg":"stopped"')), 'stopped logged').toBe(true);
    } finally {
      await blocker.end();
    }
  }, 90_000);

  it('grace 0 cuts a request off', async () => {
    const { child, url, lines } = await startService(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      DATABASE_URL: (database as TestDatabase).url,
      SHUTDOWN_GRACE_MS: '0',
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The lock keeps a login waiting in PostgreSQL, so that it is in flight
    // when the signal arrives. The embedded database would block the event
    // loop instead, and with it the signal.
    const { blocker, login } = await holdLogin((database as TestDatabase).url, url);
    try {
      child.kill('SIGTERM');

      expect(await exited, lines.join('\n')).toBe(1);
      const failure = lines.find((line) => line.includes('drain took longer than SHUTDOWN_GRACE_MS'));
      expect(failure, 'drain error logged').toBeDefined();
      expect((JSON.parse(failure as string) as { requests: number }).requests, 'requests in flight').toBe(1);
      await login;
    } finally {
      await blocker.end();
    }
  }, 90_000);
});

/**
 * Starts a TCP proxy to PostgreSQL that can stop forwarding without closing its
 * connections, as a network partition does. A client that closes a
 * connection through it then waits for the server's end forever.
 */
async function startFreezingProxy(target: URL): Promise<{ url: string; freeze: () => void; close: () => Promise<void> }> {
  const sockets: Socket[] = [];
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => {});
    upstream.on('error', () => {});
    if (frozen) {
      client.pause();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  const url = new URL(target.href);
  url.hostname = '127.0.0.1';
  url.port = String(address.port);
  return {
    url: url.href,
    freeze() {
      frozen = true;
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    async close() {
      for (const socket of sockets) {
        socket.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Locks the `users` table of `databaseUrl` in an open transaction, sends a
 * login to the server at `url`, and returns once the login waits for the
 * lock. The caller ends the blocker. The login's promise resolves to its
 * reply, or to the error of a request that the server cut off.
 */
async function holdLogin(databaseUrl: string, url: string): Promise<{ blocker: pg.Client; login: Promise<Response | Error> }> {
  const blocker = new pg.Client({ connectionString: databaseUrl });
  await blocker.connect();
  await blocker.query('BEGIN');
  await blocker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
  const login = fetch(`${url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password: 'admin-password-1' }),
  }).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
  await waitForLockWait(blocker);
  return { blocker, login };
}

/** Waits until another session of the blocker's database waits for a lock. */
async function waitForLockWait(blocker: pg.Client): Promise<void> {
  for (let attempt = 0; attempt < 600; attempt += 1) {
    const waiting = await blocker.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`,
    );
    if (waiting.rowCount !== null && waiting.rowCount > 0) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('No session waited for the lock within 30 s.');
}
