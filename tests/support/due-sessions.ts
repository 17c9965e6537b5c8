/**
 * Open sessions whose auto-close deadline has passed, for tests of the
 * users that reads settle. Each session has a minute of activity, so it
 * lasts 60 seconds once settled.
 */
import type { ManualClock, TestServer } from './app.js';
import { dataOf, SEND_EVENTS } from './replay.js';

/** A little more than the default auto-close timeout of 30 minutes. */
const PAST_DEADLINE_MS = 31 * 60_000;

/**
 * Starts a session for each user at the clock's instant, with a heartbeat a
 * minute later, and moves the clock past their deadlines. Returns the
 * sessions' start in ms since the epoch.
 */
export async function startDueSessions(server: TestServer, clock: ManualClock, userIds: readonly string[], adminToken: string): Promise<number> {
  const startAt = clock.now();
  const events = userIds.flatMap((userId) => [
    { userId, type: 'session_started', occurredAt: new Date(startAt).toISOString() },
    { userId, type: 'heartbeat', occurredAt: new Date(startAt + 60_000).toISOString() },
  ]);
  clock.set(startAt + 60_000);
  dataOf(await server.gql(SEND_EVENTS, { events }, adminToken), 'sendEvents');
  clock.set(startAt + 60_000 + PAST_DEADLINE_MS);
  return startAt;
}
