/**
 * Two intake shortcuts over HTTP, each against a full rebuild or the path
 * without the shortcut. One counts a late heartbeat as folded without a
 * rewind (`absorbsLateEvent`). The other writes a small request's events with
 * the counters saved in the Redis engine state, without a read first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { dataOf, normaliseTimeline, readTimeline, SEND_EVENTS, type NormalisedTimeline } from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const NOW = Date.UTC(2026, 2, 1, 12);
const MINUTE = 60_000;
const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) {
  setAutoClosePreference(input: $input) { pairType timeoutSeconds endAt }
}`;

function at(minutesBeforeNow: number): string {
  return new Date(NOW - minutesBeforeNow * MINUTE).toISOString();
}

describeWithPostgres('intake shortcuts against a rebuild', () => {
  let server: TestServer;

  beforeAll(async () => {
    // A 60 min default timeout, so no auto-close lies between the first two events.
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      sweeper: false,
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: '3600' },
    });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
  });

  async function timelineOf(userId: string): Promise<NormalisedTimeline> {
    return normaliseTimeline(await readTimeline(server, await server.adminToken(), userId));
  }

  async function send(token: string, events: Array<Record<string, unknown>>) {
    return server.gql(SEND_EVENTS, { events }, token);
  }

  /**
   * Sends a session start 56 min ago and a heartbeat 6 min ago, shortens the
   * session timeout to 10 min, then sends a late heartbeat from 51 min ago.
   * A rebuild closes the session 10 min after that heartbeat, ending it there,
   * and the served timeline must equal the rebuilt one.
   */
  async function lateHeartbeatAfterShorterTimeout(name: string, dropRedisState: boolean): Promise<void> {
    const user = await server.createUser(name);
    dataOf(await send(user.token, [{ id: 's', type: 'session_started', occurredAt: at(56) }]), 'start');
    dataOf(await send(user.token, [{ id: 'h1', type: 'heartbeat', occurredAt: at(6) }]), 'heartbeat');
    const input = { pairType: 'session', timeoutSeconds: 600, endAt: 'LAST_ACTIVITY' };
    dataOf(await server.gql(SET_PREFERENCE, { input }, user.token), 'setAutoClosePreference');
    if (dropRedisState) {
      // Without the Redis state the fold restores from PostgreSQL, which
      // bounds the last auto-close at the head's position, so it rewinds.
      await server.app.store.deleteUserState(user.id);
    }
    dataOf(await send(user.token, [{ id: 'h2', type: 'heartbeat', occurredAt: at(51) }]), 'late heartbeat');

    const served = await timelineOf(user.id);
    await server.app.services.intake.rebuild(user.id, true);
    const rebuilt = await timelineOf(user.id);
    expect(served).toEqual(rebuilt);
  }

  describe('late heartbeat after shorter timeout', () => {
    it('rewind path matches rebuild', async () => {
      await lateHeartbeatAfterShorterTimeout('absorb-control', true);
    });

    it('saved state matches rebuild', async () => {
      // The bound on the last auto-close that the 60 min timeout left no
      // longer holds, so the heartbeat must rewind instead of being absorbed.
      await lateHeartbeatAfterShorterTimeout('absorb-policy', false);
    });
  });

  describe('guessed counters write', () => {
    it('conflict names the same item', async () => {
      const reasons: string[] = [];
      for (const padding of [0, 3]) {
        const user = await server.createUser(`guess-conflict-${padding}`);
        dataOf(await send(user.token, [{ id: 'x', type: 'heartbeat', occurredAt: at(30) }]), 'first');
        const extra = Array.from({ length: padding }, (_, index) => ({ id: `p${index}`, type: 'heartbeat', occurredAt: at(5) }));
        // Item 0 repeats x with other content. Item 1 repeats x as stored.
        const response = await send(user.token, [
          { id: 'x', type: 'heartbeat', occurredAt: at(20) },
          { id: 'x', type: 'heartbeat', occurredAt: at(30) },
          ...extra,
        ]);
        expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_EVENTS');
        reasons.push(response.errors?.[0]?.message ?? '');
      }
      // 2 events could take the write without a read, which does not see the
      // stored x, and would blame item 1. With 5 events the store reads x
      // first, and item 0 conflicts with the stored event.
      expect(reasons[0]).toContain('#0:');
      expect(reasons[1]).toContain('#0:');
    });

    it('rejects repeat with other content', async () => {
      const user = await server.createUser('guess-repeat');
      dataOf(await send(user.token, [{ id: 'x', type: 'heartbeat', occurredAt: at(30) }]), 'first');
      const same = dataOf(await send(user.token, [{ id: 'x', type: 'heartbeat', occurredAt: at(30) }]), 'repeat');
      expect(same.sendEvents.duplicateCount).toBe(1);
      const other = await send(user.token, [{ id: 'x', type: 'heartbeat', occurredAt: at(29) }]);
      expect(JSON.stringify(other.errors)).toContain('IDEMPOTENCY_CONFLICT');
      const inBatch = await send(user.token, [
        { id: 'y', type: 'heartbeat', occurredAt: at(10) },
        { id: 'y', type: 'heartbeat', occurredAt: at(11) },
      ]);
      expect(JSON.stringify(inBatch.errors)).toContain('IDEMPOTENCY_CONFLICT');
      const events = (await readTimeline(server, await server.adminToken(), user.id)).events;
      expect(events.map((event) => event.clientId)).toEqual(['x']);
    });

    it('stale counters fall back', async () => {
      const user = await server.createUser('guess-stale');
      dataOf(await send(user.token, [{ id: 'a', type: 'session_started', occurredAt: at(40) }]), 'a');
      const oldState = await server.app.store.loadUserState(user.id);
      expect(oldState).not.toBeNull();
      dataOf(await send(user.token, [{ id: 'b', type: 'heartbeat', occurredAt: at(30) }]), 'b');
      // Put the state of one event ago back, with counters behind PostgreSQL.
      const lock = await server.app.store.acquireUserLock(user.id, { ttlMs: 10_000, waitMs: 1_000 });
      expect(await server.app.store.saveUserState(lock, oldState as string)).toBe(true);
      await server.app.store.releaseUserLock(lock);

      const reply = dataOf(
        await send(user.token, [
          { id: 'c', type: 'heartbeat', occurredAt: at(35) },
          { id: 'b', type: 'heartbeat', occurredAt: at(30) },
        ]),
        'c',
      );
      expect(reply.sendEvents.storedCount).toBe(1);
      expect(reply.sendEvents.duplicateCount).toBe(1);
      const served = await timelineOf(user.id);
      await server.app.services.intake.rebuild(user.id, true);
      expect(served).toEqual(await timelineOf(user.id));
    });
  });
});
