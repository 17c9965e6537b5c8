/**
 * Storms of concurrent intake requests with a short user-lock wait. Every
 * request either succeeds or is rejected with USER_BUSY, which tells the
 * client to retry later. Nothing acknowledged is lost, and once the rejected
 * requests are retried, the segments match the events in time order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const BASE = Date.parse('2026-01-24T08:00:00Z');
const SESSIONS = 12;

const SEND_EVENT = `mutation ($event: EventInput!) { sendEvent(event: $event) { duplicate event { id } } }`;

interface StormEvent {
  id: string;
  type: string;
  occurredAt: string;
}

/** Sessions of one minute, one every two minutes, as separate start and end events. */
function sessionEvents(): StormEvent[] {
  return Array.from({ length: SESSIONS * 2 }, (_, index) => ({
    id: `storm-${index}`,
    type: index % 2 === 0 ? 'session_started' : 'session_ended',
    occurredAt: new Date(BASE + index * 60_000).toISOString(),
  }));
}

describe('request storms', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      sweeper: false,
      env: { USER_LOCK_WAIT_MS: '20' },
    });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Sends every event at once, then retries the busy ones one by one. */
  async function storm(token: string, events: readonly StormEvent[], via: 'graphql' | 'rest'): Promise<void> {
    const send = async (event: StormEvent): Promise<'ok' | 'busy'> => {
      if (via === 'graphql') {
        const response = await server.gql(SEND_EVENT, { event }, token);
        if (response.errors === undefined) {
          return 'ok';
        }
        expect(response.errors[0]?.extensions?.reason).toBe('USER_BUSY');
        return 'busy';
      }
      const response = await fetch(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ id: event.id, type: event.type, occurred_at: event.occurredAt }),
      });
      const body = (await response.json()) as { error?: { reason?: string } };
      if (response.status === 200) {
        return 'ok';
      }
      expect({ status: response.status, reason: body.error?.reason }).toEqual({ status: 503, reason: 'USER_BUSY' });
      return 'busy';
    };

    const outcomes = await Promise.all(events.map(send));
    const busy = events.filter((_, index) => outcomes[index] === 'busy');
    for (const event of busy) {
      expect(await send(event)).toBe('ok');
    }
  }

  async function timeline(userId: string) {
    const response = await server.gql<{
      events: { nodes: Array<{ clientId: string | null; origin: string }> };
      segments: { nodes: Array<{ start: string; end: string | null }> };
    }>(
      `query ($users: [ID!]) {
        events(filter: { users: $users }, first: 1000) { nodes { clientId origin } }
        segments(filter: { users: $users }, first: 1000) { nodes { start end } }
      }`,
      { users: [userId] },
      adminToken,
    );
    expect(response.errors).toBeUndefined();
    return response.data!;
  }

  function expectedSegments() {
    return Array.from({ length: SESSIONS }, (_, index) => ({
      start: new Date(BASE + index * 120_000).toISOString(),
      end: new Date(BASE + index * 120_000 + 60_000).toISOString(),
    }));
  }

  it.each(['graphql', 'rest'] as const)('loses nothing for one user over %s', async (via) => {
    const user = await server.createUser(`storm-one-${via}`);
    const events = sessionEvents();
    await storm(user.token, events, via);

    const stored = await timeline(user.id);
    const clientIds = stored.events.nodes.filter((event) => event.origin === 'CLIENT').map((event) => event.clientId);
    expect(clientIds.sort()).toEqual(events.map((event) => event.id).sort());
    expect(stored.segments.nodes).toEqual(expectedSegments());
  });

  it('loses nothing for many users', async () => {
    const users = await Promise.all(
      Array.from({ length: 4 }, (_, index) => server.createUser(`storm-many-${index}`)),
    );
    await Promise.all(users.map((user) => storm(user.token, sessionEvents(), 'graphql')));

    for (const user of users) {
      const stored = await timeline(user.id);
      expect(stored.events.nodes.filter((event) => event.origin === 'CLIENT')).toHaveLength(SESSIONS * 2);
      expect(stored.segments.nodes).toEqual(expectedSegments());
    }
  });

  it('stores a resent storm once', async () => {
    const user = await server.createUser('storm-resent');
    const events = sessionEvents();
    await storm(user.token, events, 'graphql');
    await storm(user.token, events, 'graphql');

    const stored = await timeline(user.id);
    expect(stored.events.nodes.filter((event) => event.origin === 'CLIENT')).toHaveLength(SESSIONS * 2);
    expect(stored.segments.nodes).toEqual(expectedSegments());
  });
});
