/**
 * HTTP statuses of intake requests that fail with SERVICE_UNAVAILABLE. A
 * failure after the events were stored is marked `eventsStored`, and keeps a
 * status that retry rules leave alone, because sending the events again
 * would store them twice. A user whose lock another request holds is no outage of the
 * server, so that reply keeps GraphQL's 200 as well.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { describeWithPostgres } from '../support/services.js';
import { captureLogs } from '../support/logs.js';

const SEND_EVENT = `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id } } }`;

describeWithPostgres('intake failures and HTTP statuses', () => {
  let server: TestServer;
  const logs = captureLogs('warn');
  /** Users whose derived rows fail to be saved, after their events were stored, with the failure. */
  const failingUsers = new Map<string, 'redis' | 'database' | 'internal'>();

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { USER_LOCK_WAIT_MS: '100' },
      logger: logs.logger,
      fault: (step, userId) => {
        const failure = step === 'derived-written' ? failingUsers.get(userId) : undefined;
        if (failure === 'redis') {
          throw new DomainError('SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE', 'Redis is unavailable (injected).');
        }
        if (failure === 'database') {
          // As pg reports a connection that the server closed.
          throw new Error('Connection terminated unexpectedly');
        }
        if (failure === 'internal') {
          // A defect of the service, which no outage explains.
          throw new TypeError('Cannot read properties of undefined (injected)');
        }
      },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  async function storedCount(token: string): Promise<number> {
    const reply = await server.gql(`{ events { nodes { id } } }`, {}, token);
    return (reply.data?.events.nodes as unknown[]).length;
  }

  it('keeps 200 when events were stored', async () => {
    const member = await server.createUser('outage-stored');
    failingUsers.set(member.id, 'redis');
    const reply = await server.gql(SEND_EVENT, { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } }, member.token);
    failingUsers.delete(member.id);

    expect(reply.status, 'status').toBe(200);
    expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('REDIS_UNAVAILABLE');
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(reply.errors?.[0]?.message, 'message').toContain('was stored before the failure');
    expect(await storedCount(member.token), 'stored events').toBe(1);
  });

  it('answers REST with 500 when events were stored', async () => {
    const member = await server.createUser('outage-stored-rest');
    failingUsers.set(member.id, 'redis');
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
      body: JSON.stringify({ type: 'heartbeat', occurred_at: '2026-01-05T09:00:00Z' }),
    });
    failingUsers.delete(member.id);
    const body = (await response.json()) as { error: { reason: string; eventsStored?: boolean } };

    expect(response.status, 'status').toBe(500);
    expect(body.error.reason, 'reason').toBe('REDIS_UNAVAILABLE');
    expect(body.error.eventsStored, 'eventsStored').toBe(true);
  });

  it('logs a REST outage with its cause', async () => {
    const member = await server.createUser('outage-logged-rest');
    failingUsers.set(member.id, 'database');
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}`, 'x-request-id': 'rest-outage-log' },
      body: JSON.stringify({ type: 'heartbeat', occurred_at: '2026-01-05T09:00:00Z' }),
    });
    failingUsers.delete(member.id);
    const body = (await response.json()) as { error: { code: string } };

    expect(body.error.code, 'code').toBe('SERVICE_UNAVAILABLE');
    const warnings = logs.entries().filter((entry) => entry.reqId === 'rest-outage-log' && entry.level >= 40);
    expect(warnings.map((entry) => entry.msg), 'warnings of the request').toEqual(['request failed: a dependency is unavailable']);
    expect(warnings[0]?.err?.message, 'logged cause').toBe('Connection terminated unexpectedly');
  });

  it('marks a database failure after stored events', async () => {
    const member = await server.createUser('outage-stored-database');
    failingUsers.set(member.id, 'database');
    const reply = await server.gql(SEND_EVENT, { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } }, member.token);
    failingUsers.delete(member.id);

    expect(reply.status, 'status').toBe(200);
    expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('DEPENDENCY_UNAVAILABLE');
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(reply.errors?.[0]?.message, 'message').toContain('The new event of this request was stored before the failure');
    expect(reply.errors?.[0]?.message, 'advice').toContain('Send it again only with the same `id` it was sent with');
    expect(await storedCount(member.token), 'stored events').toBe(1);
  });

  it('marks an internal error after stored events', async () => {
    const member = await server.createUser('internal-stored');
    failingUsers.set(member.id, 'internal');
    const reply = await server.gql(
      `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`,
      {
        events: [
          { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' },
          { type: 'heartbeat', occurredAt: '2026-01-05T09:01:00Z' },
        ],
      },
      member.token,
    );
    failingUsers.delete(member.id);
    const error = reply.errors?.[0];

    expect(reply.status, 'status').toBe(200);
    expect(error?.extensions?.code, 'code').toBe('INTERNAL_SERVER_ERROR');
    expect(error?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(error?.message, 'message').toContain('The 2 new events of this request were stored before the failure');
    expect(error?.message, 'no internal detail').not.toContain('injected');
    expect(await storedCount(member.token), 'stored events').toBe(2);
  });

  it('marks a REST internal error after stored events', async () => {
    const member = await server.createUser('internal-stored-rest');
    failingUsers.set(member.id, 'internal');
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
      body: JSON.stringify({ type: 'heartbeat', occurred_at: '2026-01-05T09:00:00Z' }),
    });
    failingUsers.delete(member.id);
    const body = (await response.json()) as { error: { code: string; message: string; eventsStored?: boolean } };

    expect(response.status, 'status').toBe(500);
    expect(body.error.code, 'code').toBe('INTERNAL_SERVER_ERROR');
    expect(body.error.eventsStored, 'eventsStored').toBe(true);
    expect(body.error.message, 'message').toContain('The new event of this request was stored before the failure');
    expect(body.error.message, 'advice').toContain('Send it again only with the same `id` it was sent with');
  });

  it('leaves a failed repeat unmarked', async () => {
    const member = await server.createUser('internal-before-store');
    failingUsers.set(member.id, 'internal');
    // A repeat of a stored event stores nothing, so its failure is no reason to mark.
    const first = await server.gql(
      `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id } } }`,
      { event: { id: 'repeat-1', type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } },
      member.token,
    );
    const repeat = await server.gql(
      `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id } } }`,
      { event: { id: 'repeat-1', type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } },
      member.token,
    );
    failingUsers.delete(member.id);

    expect(first.errors?.[0]?.extensions?.eventsStored, 'first request').toBe(true);
    expect(repeat.errors?.[0]?.extensions?.code, 'repeat code').toBe('INTERNAL_SERVER_ERROR');
    expect(repeat.errors?.[0]?.extensions?.eventsStored, 'repeat eventsStored').toBeUndefined();
    expect(repeat.errors?.[0]?.message, 'repeat message').toBe('Internal server error.');
  });

  it('answers REST with 503 and Retry-After for a busy user', async () => {
    const member = await server.createUser('outage-busy-rest');
    const foreign = await server.app.store.acquireUserLock(member.id, { ttlMs: 30_000, waitMs: 0 });
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
      body: JSON.stringify({ type: 'heartbeat', occurred_at: '2026-01-05T09:00:00Z' }),
    });
    await server.app.store.releaseUserLock(foreign);

    expect(response.status, 'status').toBe(503);
    expect(response.headers.get('retry-after'), 'Retry-After').toBe('1');
  });

  /** Makes the next reads of users for reply fields fail as a lost database connection does. */
  function failUserReads(): () => void {
    const users = server.app.services.users;
    const original = users.findByIds.bind(users);
    users.findByIds = async () => {
      throw new Error('Connection terminated unexpectedly');
    };
    return () => {
      users.findByIds = original;
    };
  }

  it('marks an outage below sendEvent', async () => {
    const member = await server.createUser('outage-below-root');
    const restore = failUserReads();
    const reply = await server.gql(
      `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id user { username } } } }`,
      { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } },
      member.token,
    );
    restore();

    expect(reply.status, 'status').toBe(200);
    expect(reply.errors?.[0]?.path, 'path').toEqual(['sendEvent', 'event', 'user']);
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(reply.errors?.[0]?.message, 'message').toContain('Events of this request may have been stored before the failure');
    expect(await storedCount(member.token), 'stored events').toBe(1);
  });

  it('marks an outage of a field after sendEvent', async () => {
    const member = await server.createUser('outage-second-field');
    const store = server.app.store;
    const acquire = store.acquireUserLock.bind(store);
    let calls = 0;
    store.acquireUserLock = async (...args) => {
      calls += 1;
      if (calls === 2) {
        // As ioredis reports a connection that closed.
        throw new Error('Connection is closed.');
      }
      return acquire(...args);
    };
    const reply = await server.gql(
      `mutation ($event: EventInput!, $other: EventInput!) { a: sendEvent(event: $event) { event { id } } b: sendEvent(event: $other) { event { id } } }`,
      { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' }, other: { type: 'heartbeat', occurredAt: '2026-01-05T09:01:00Z' } },
      member.token,
    );
    store.acquireUserLock = acquire;

    expect(reply.errors?.[0]?.path, 'path').toEqual(['b']);
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(await storedCount(member.token), 'stored events').toBe(1);
  });

  it('answers 503 to a query with an outage below its root', async () => {
    const member = await server.createUser('outage-query');
    await server.gql(SEND_EVENT, { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } }, member.token);
    const restore = failUserReads();
    const reply = await server.gql(`{ events { nodes { id user { username } } } }`, {}, member.token);
    restore();

    expect(reply.status, 'status').toBe(503);
    expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('DEPENDENCY_UNAVAILABLE');
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBeUndefined();
  });

  it('keeps 200 for a busy user', async () => {
    const member = await server.createUser('outage-busy');
    const foreign = await server.app.store.acquireUserLock(member.id, { ttlMs: 30_000, waitMs: 0 });
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}`, 'x-request-id': 'busy-user-log' },
      body: JSON.stringify({ query: SEND_EVENT, variables: { event: { type: 'heartbeat', occurredAt: '2026-01-05T09:00:00Z' } } }),
    });
    await server.app.store.releaseUserLock(foreign);
    const reply = { status: response.status, ...((await response.json()) as { errors?: Array<{ extensions?: Record<string, unknown> }> }) };

    expect(reply.status, 'status').toBe(200);
    expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('USER_BUSY');
    const warnings = logs.entries().filter((entry) => entry.reqId === 'busy-user-log' && entry.level >= 40);
    // A busy user is no outage, so the line names the reason instead.
    expect(warnings.map((entry) => entry.msg), 'warnings of the request').toEqual(['request failed: service unavailable (USER_BUSY)']);
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBeUndefined();
    expect(await storedCount(member.token), 'stored events').toBe(0);
  });
});
