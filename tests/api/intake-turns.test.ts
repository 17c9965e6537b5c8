/**
 * A burst of requests for one user: while another holder has the user's
 * lock, requests that reach this process queue in arrival order, and the
 * release lets them store their events in that order.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

const SEND_EVENT = `mutation ($event: EventInput!) { sendEvent(event: $event) { duplicate event { id clientId } } }`;
const REQUESTS = 8;
/** Bound on the wait for one request to pass authentication and validation and join the user's line. */
const JOIN_WAIT_MS = 30_000;

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer(import.meta.filename, { sweeper: false });
});

afterAll(async () => {
  await server?.close();
});

describe('one user under a burst', () => {
  it('stores requests in arrival order', async () => {
    const user = await server.createUser('burst');
    const occurredAt = new Date(Date.now() - 60_000).toISOString();
    // A lock taken directly from the store acts as a request of another process.
    const otherHolder = await server.app.store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });

    const clientIds = Array.from({ length: REQUESTS }, (_, index) => `burst-${index}`);
    const replies: Array<Promise<unknown>> = [];
    for (const [index, clientId] of clientIds.entries()) {
      replies.push(server.gql(SEND_EVENT, { event: { id: clientId, type: 'heartbeat', occurredAt } }, user.token));
      // The next request is sent only once this one is in the line, so
      // the arrival order is the sending order even on a loaded machine.
      const joinedBy = Date.now() + JOIN_WAIT_MS;
      while (server.app.services.intake.requestsInLine(user.id) < index + 1 && Date.now() < joinedBy) {
        await sleep(5);
      }
      expect(server.app.services.intake.requestsInLine(user.id)).toBe(index + 1);
    }
    await server.app.store.releaseUserLock(otherHolder);
    const results = (await Promise.all(replies)) as Array<{ errors?: unknown }>;

    expect(results.filter((result) => result.errors !== undefined)).toEqual([]);
    const rows = await server.app.db.sql.query<{ client_id: string }>(
      `SELECT client_id FROM events WHERE user_id = $1 AND origin = 'CLIENT' ORDER BY seq`,
      [user.id],
    );
    expect(rows.map((row) => row.client_id)).toEqual(clientIds);
  });
});
