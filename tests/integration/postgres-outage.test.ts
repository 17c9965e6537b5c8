/**
 * PostgreSQL going away under a running server: requests fail fast with
 * SERVICE_UNAVAILABLE, nothing is half-applied, the process keeps serving,
 * and intake works again once the database is back. The server reaches
 * PostgreSQL through a TCP proxy on loopback that the test can cut.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openDatabase, type Database } from '../../src/storage/postgres/database.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS } from '../support/replay.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';
import { captureLogs } from '../support/logs.js';

/**
 * Starts a loopback proxy to `target`. `cut()` drops every connection and
 * rejects new ones until `restore()`. `stall()` stops forwarding on every open
 * connection for good, without closing it, as after a network partition; new
 * connections work. `resetOnSend()` resets (TCP RST) each open connection
 * once the client sends on it again. A host that lost the state of an idle
 * connection does the same. New connections work. `rejectedCount()` is the
 * number of connections rejected while cut.
 */
async function startProxy(
  target: URL,
): Promise<{
  port: number;
  cut(): void;
  restore(): void;
  stall(): void;
  resetOnSend(): void;
  rejectedCount(): number;
  close(): Promise<void>;
}> {
  const sockets = new Set<Socket>();
  const pairs = new Set<[Socket, Socket]>();
  let open = true;
  let rejected = 0;
  const server: Server = createServer((client) => {
    if (!open) {
      rejected += 1;
      client.destroy();
      return;
    }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream).pipe(client);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    cut() {
      open = false;
      for (const socket of sockets) {
        socket.destroy();
      }
      sockets.clear();
    },
    restore() {
      open = true;
    },
    stall() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      pairs.clear();
    },
    resetOnSend() {
      for (const [client, upstream] of pairs) {
        client.once('data', () => {
          client.resetAndDestroy();
          upstream.destroy();
        });
      }
    },
    rejectedCount: () => rejected,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) {
          socket.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

describeWithPostgres('PostgreSQL outage', () => {
  let database: TestDatabase;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let server: TestServer;
  let token: string;
  const logs = captureLogs('warn');

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_outage' });
    const target = new URL(database.url);
    proxy = await startProxy(target);
    const viaProxy = new URL(database.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    server = await startTestServer(import.meta.filename, {
      databaseUrl: viaProxy.toString(),
      env: { DB_STATEMENT_TIMEOUT_MS: '2000', DB_POOL_SIZE: '4' },
      logger: logs.logger,
    });
    token = (await server.createUser('outage')).token;
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await proxy?.close();
    await database?.drop();
  });

  const send = (id: string, at: string) =>
    server.gql(SEND_EVENTS, { events: [{ id, type: 'heartbeat', occurredAt: at }] }, token);

  it('fails fast, stores nothing, and recovers', async () => {
    expect((await send('before', '2026-02-01T09:00:00Z')).errors).toBeUndefined();

    proxy.cut();
    const during = await send('during', '2026-02-01T09:01:00Z');
    expect(during.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    // The outage lasts until restore(), so a request that retried until the
    // database came back would time out the test. One that retried for a
    // while would open more connections than the 4 pool slots (DB_POOL_SIZE).
    expect(proxy.rejectedCount(), 'connections attempted during the outage').toBeLessThanOrEqual(4);

    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);

    proxy.restore();
    const after = await send('after', '2026-02-01T09:02:00Z');
    expect(after.errors).toBeUndefined();

    const events = await server.gql(`{ events(filter: { origins: [CLIENT] }) { nodes { clientId } } }`, {}, token);
    const clientIds = (events.data?.events.nodes as Array<{ clientId: string }>).map((node) => node.clientId);
    expect(clientIds).toEqual(['before', 'after']);
  }, 60_000);

  it('logs a token check that failed', async () => {
    proxy.cut();
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-request-id': 'token-check-outage' },
      body: JSON.stringify({ query: '{ me { id } }' }),
    });
    const reply = (await response.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
    const restResponse = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-request-id': 'token-check-outage-rest' },
      body: JSON.stringify({ type: 'heartbeat' }),
    });
    proxy.restore();

    expect(response.status, 'HTTP status').toBe(503);
    expect(reply.errors?.[0]?.extensions?.code, 'error code').toBe('SERVICE_UNAVAILABLE');
    const lines = logs.entries().filter((entry) => entry.reqId === 'token-check-outage' && entry.level >= 40);
    expect(lines.map((entry) => entry.msg), 'warnings of the request').toContain('token check failed: a dependency is unavailable');
    expect(lines.find((entry) => entry.err !== undefined)?.err?.message, 'logged cause').toMatch(/Connection terminated|ECONNREFUSED|ECONNRESET/);
    expect(restResponse.status, 'REST status').toBe(503);
    const restLines = logs.entries().filter((entry) => entry.reqId === 'token-check-outage-rest' && entry.level >= 40);
    expect(restLines.map((entry) => entry.msg), 'warnings of the REST request').toEqual(['token check failed: a dependency is unavailable']);
    expect(logs.text(), 'logs without the token').not.toContain(token);
  }, 60_000);

  it('rejects a login as unavailable', async () => {
    const credentials = { username: 'outage', password: 'outage-password' };
    // Returns the error code, or "ok". A login that failed with an internal
    // error still gets HTTP 200, so only the code shows the outcome.
    const login = async () => {
      const reply = await server.gql(`mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`, {
        u: credentials.username,
        p: credentials.password,
      });
      return String(reply.errors?.[0]?.extensions?.code ?? 'ok');
    };
    const restLogin = async () => {
      const response = await fetch(`${server.url}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(credentials),
      });
      return String(response.status);
    };
    // The login's first statement is a raw query through Prisma, whose driver
    // adapter reports ECONNRESET as a ConnectionClosed cause without pg's code
    // or message. Each pooled connection fails once, and background work
    // takes connections too, so each login may fail or get a new connection.
    const outcomes = async (send: () => Promise<string>): Promise<string[]> => {
      const seen: string[] = [];
      // Leaves an idle connection in the pool to reset.
      seen.push(await send());
      proxy.resetOnSend();
      for (let attempt = 0; attempt < 6; attempt += 1) {
        seen.push(await send());
      }
      return seen;
    };

    const graphql = await outcomes(login);
    const rest = await outcomes(restLogin);

    expect(graphql, 'GraphQL error codes').toContain('SERVICE_UNAVAILABLE');
    expect(graphql.filter((code) => code !== 'ok' && code !== 'SERVICE_UNAVAILABLE'), 'other GraphQL error codes').toEqual([]);
    expect(rest, 'REST statuses').toContain('503');
    expect(rest.filter((status) => status !== '200' && status !== '503'), 'other REST statuses').toEqual([]);
    expect(await login(), 'login after the reset').toBe('ok');
  }, 60_000);

  it('closes a stalled connection and recovers', async () => {
    expect((await send('before-stall', '2026-02-01T10:00:00Z')).errors).toBeUndefined();

    // Every pooled connection now takes what it is sent and never replies.
    proxy.stall();
    const outcomes: string[] = [];
    // A stalled connection never replies, so without the client's read
    // timeout (4 s with the statement timeout of 2 s) an attempt hangs until
    // the test times out.
    for (let attempt = 0; attempt < 8; attempt += 1) {
      const reply = await send(`stalled-${attempt}`, `2026-02-01T10:0${attempt + 1}:00Z`);
      const code = reply.errors?.[0]?.extensions?.code as string | undefined;
      outcomes.push(code ?? 'ok');
      if (code === undefined) {
        break;
      }
      expect(code).toBe('SERVICE_UNAVAILABLE');
    }
    expect(outcomes.at(-1), `outcomes ${outcomes.join(', ')}`).toBe('ok');
    expect((await send('after-stall', '2026-02-01T10:30:00Z')).errors).toBeUndefined();
  }, 120_000);
});

describeWithPostgres('PostgreSQL stall in a Prisma transaction', () => {
  let database: TestDatabase;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let db: Database;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_outage_tx' });
    proxy = await startProxy(new URL(database.url));
    const viaProxy = new URL(database.url);
    viaProxy.hostname = '127.0.0.1';
    viaProxy.port = String(proxy.port);
    // One connection, which the statements below wait for. Replies are given
    // up 2 s after a statement went out, and a wait for a connection after 1 s.
    db = await openDatabase({
      databaseUrl: viaProxy.toString(),
      dataDir: '.',
      poolSize: 1,
      statementTimeoutMs: 1000,
      logger: pino({ level: 'silent' }),
    });
    await db.migrate();
  }, 60_000);

  afterAll(async () => {
    await db?.close();
    await proxy?.close();
    await database?.drop();
  });

  it('discards connection after stalled COMMIT', async () => {
    // @prisma/adapter-pg returns the connection to the pool without an error
    // after its COMMIT fails, so the pool alone would hand it out again.
    const transaction = db.prisma.$transaction(
      async (tx) => {
        await tx.$queryRaw`SELECT 1`;
        proxy.stall();
      },
      { timeout: 10_000 },
    );
    const outcome = transaction.then(
      () => 'committed',
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );

    // This statement waits for the connection until the COMMIT is given up.
    await sleep(1300);
    const waiting = await db.sql.query<{ answer: number }>('SELECT 42 AS answer');

    expect(await outcome, 'transaction').toContain('Query read timeout');
    expect(waiting, 'statement that waited for the connection').toEqual([{ answer: 42 }]);
  }, 30_000);
});
