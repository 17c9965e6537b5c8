/**
 * REPLY_MEMORY_MAX_BYTES when the client closes the connection before its
 * query has charged its reply. The server's response has closed by then, so
 * the query must not reserve memory that no later close gives back.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';

import { afterEach, expect, it, vi } from 'vitest';

import { ReplyBudget } from '../../src/graphql/reply-budget.js';
import { ADMIN, ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { startDueSessions } from '../support/due-sessions.js';

/** The smallest maximum, so that one leaked segment makes the next query below fail. */
const MEMORY_BYTES = 1024;
const STARTED_AT = Date.parse('2026-03-02T09:00:00Z');
const HELD_LOCK_TTL_MS = 600_000;

/** One segment, 256 bytes, because a `null` meta counts nothing. */
const SEGMENT_QUERY = 'query ($users: [ID!]) { segments(filter: { users: $users }) { nodes { meta } } }';
/** Four copies of SEGMENT_QUERY, 1024 bytes, which fit only into an empty reply memory. */
const FOUR_SEGMENTS_QUERY = `query ($users: [ID!]) {
  a: segments(filter: { users: $users }) { nodes { meta } }
  b: segments(filter: { users: $users }) { nodes { meta } }
  c: segments(filter: { users: $users }) { nodes { meta } }
  d: segments(filter: { users: $users }) { nodes { meta } }
}`;

let server: TestServer | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await server?.close();
  server = undefined;
});

/** Returns a promise and the function that resolves it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {};
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** Sends a GraphQL POST on a raw connection that the caller closes. */
function sendRaw(started: TestServer, token: string, query: string, variables: Record<string, unknown>): Socket {
  const body = JSON.stringify({ query, variables });
  const socket = connect(Number(new URL(started.url).port), '127.0.0.1');
  socket.on('error', () => {});
  socket.write(
    `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
  return socket;
}

/** Resolves with the server's response of the next request that reaches it. */
function nextResponse(started: TestServer): Promise<ServerResponse> {
  return new Promise((resolve) => {
    started.app.fastify.server.once('request', (_request: IncomingMessage, response: ServerResponse) => resolve(response));
  });
}

/** Resolves once the next `meta` of a query reply has been charged. */
function nextMetaCharge(): Promise<void> {
  const charged = deferred();
  const chargeMeta = ReplyBudget.prototype.chargeMeta;
  vi.spyOn(ReplyBudget.prototype, 'chargeMeta').mockImplementation(function (this: ReplyBudget, ...args) {
    try {
      return chargeMeta.apply(this, args);
    } finally {
      charged.resolve();
    }
  });
  return charged.promise;
}

async function startServer(clock: ManualClock): Promise<{ started: TestServer; userId: string; token: string }> {
  const started = await startTestServer(import.meta.filename, {
    clock,
    ...WITHOUT_WORKERS,
    env: { MAX_REPLY_BYTES: String(MEMORY_BYTES), REPLY_MEMORY_MAX_BYTES: String(MEMORY_BYTES) },
  });
  server = started;
  const member = await started.createUser('aborting-member');
  await startDueSessions(started, clock, [member.id], await started.adminToken());
  const token = await started.login(ADMIN.username, ADMIN.password);
  return { started, userId: member.id, token };
}

/** Asserts that the whole reply memory is free: four segments fit only into an empty one. */
async function expectMemoryFree(started: TestServer, userId: string, token: string): Promise<void> {
  const reply = await started.gql(FOUR_SEGMENTS_QUERY, { users: [userId] }, token);
  expect(reply.errors?.[0]?.extensions?.reason, 'reason of the error of the query after the closed one').toBeUndefined();
  expect(reply.status).toBe(200);
  expect(reply.data?.d?.nodes).toHaveLength(1);
}

/** Closes the client's connection and waits until the server's response to it has closed. */
async function closeConnection(socket: { destroy(): void }, responded: Promise<ServerResponse>): Promise<void> {
  const response = await responded;
  const closed = new Promise<void>((resolve) => response.once('close', resolve));
  socket.destroy();
  await closed;
}

it('close during lock wait frees memory', async () => {
  const clock = new ManualClock(STARTED_AT);
  const { started, userId, token } = await startServer(clock);
  const store = started.app.store;
  const heldLock = await store.acquireUserLock(userId, { ttlMs: HELD_LOCK_TTL_MS, waitMs: 0 });
  // The read waits for the user's lock once its first attempt has failed.
  const busy = deferred();
  const acquire = store.acquireUserLock.bind(store);
  vi.spyOn(store, 'acquireUserLock').mockImplementation(async (lockedUserId, options) => {
    try {
      return await acquire(lockedUserId, options);
    } catch (error) {
      busy.resolve();
      throw error;
    }
  });
  const responded = nextResponse(started);
  const charged = nextMetaCharge();

  const socket = sendRaw(started, token, SEGMENT_QUERY, { users: [userId] });
  await busy.promise;
  await closeConnection(socket, responded);
  // The read goes on once the lock is free, after its response closed.
  await store.releaseUserLock(heldLock);
  await charged;

  await expectMemoryFree(started, userId, token);
});

it('close during authentication frees memory', async () => {
  const clock = new ManualClock(STARTED_AT);
  const { started, userId, token } = await startServer(clock);
  // Authentication stops at the user's load until the connection has closed.
  const users = started.app.services.users;
  const findById = users.findById.bind(users);
  const loading = deferred();
  const gate = deferred();
  vi.spyOn(users, 'findById').mockImplementationOnce(async (id) => {
    loading.resolve();
    await gate.promise;
    return findById(id);
  });
  const responded = nextResponse(started);
  const charged = nextMetaCharge();

  const socket = sendRaw(started, token, SEGMENT_QUERY, { users: [userId] });
  await loading.promise;
  await closeConnection(socket, responded);
  gate.resolve();
  await charged;

  await expectMemoryFree(started, userId, token);
});
