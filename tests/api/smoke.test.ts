import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

describe('service over HTTP', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('serves health and readiness', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('returns the logged-in admin from me', async () => {
    const token = await server.adminToken();
    const result = await server.gql(`{ me { username role } }`, {}, token);
    expect(result.errors).toBeUndefined();
    expect(result.data?.me).toEqual({ username: 'admin', role: 'ADMIN' });
  });

  it('pairs a session into one segment', async () => {
    const { token } = await server.createUser('smoke-member');
    const sent = await server.gql(
      `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount results { closedSegments { start end endReason } } } }`,
      {
        events: [
          { type: 'session_started', occurredAt: '2026-01-05T09:00:00Z' },
          { type: 'session_ended', occurredAt: '2026-01-05T09:20:00Z' },
        ],
      },
      token,
    );
    expect(sent.errors).toBeUndefined();
    expect(sent.data?.sendEvents.storedCount).toBe(2);
    expect(sent.data?.sendEvents.results[1].closedSegments).toEqual([
      { start: '2026-01-05T09:00:00.000Z', end: '2026-01-05T09:20:00.000Z', endReason: 'CLIENT' },
    ]);
  });
});
