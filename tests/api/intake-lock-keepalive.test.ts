/**
 * A holder extends its user lock while its work runs, so a replay longer
 * than USER_LOCK_TTL_MS keeps the user, and requests of that user wait for
 * it. Past USER_LOCK_MAX_HOLD_MS the extensions stop, another request takes
 * the user, and the late holder's write fails with LOCK_LOST.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { afterEach, describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { startTestServer, type TestServer } from '../support/app.js';

const SEND_EVENT = `mutation ($event: EventInput!) { sendEvent(event: $event) { event { id } } }`;
const TTL_MS = 300;

let server: TestServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

/**
 * Starts a replay whose preparation takes `prepareMs`, and 100 ms later a
 * request of the same user. Returns when each finished and how the replay ended.
 */
async function replayAgainstRequest(
  started: TestServer,
  prepareMs: number,
): Promise<{ replayError: unknown; replayDoneAt: number; requestDoneAt: number; requestErrors: unknown }> {
  const user = await started.createUser('long-replay');
  const occurredAt = new Date(Date.now() - 60_000).toISOString();
  let replayError: unknown = null;
  let replayDoneAt = 0;
  const replay = started.app.services.intake
    .replay(user.id, () => sleep(prepareMs))
    .catch((error: unknown) => {
      replayError = error;
    })
    .finally(() => {
      replayDoneAt = performance.now();
    });
  await sleep(100);
  const reply = await started.gql(SEND_EVENT, { event: { id: 'during-replay', type: 'heartbeat', occurredAt } }, user.token);
  const requestDoneAt = performance.now();
  await replay;
  return { replayError, replayDoneAt, requestDoneAt, requestErrors: reply.errors ?? null };
}

describe('user lock keep-alive', () => {
  it('keeps the user through a long replay', async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: { USER_LOCK_TTL_MS: String(TTL_MS), USER_LOCK_WAIT_MS: '5000' },
    });

    const outcome = await replayAgainstRequest(server, 4 * TTL_MS);

    expect(outcome.replayError).toBeNull();
    expect(outcome.requestErrors).toBeNull();
    // The request waited for the replay instead of taking the user after one TTL.
    expect(outcome.requestDoneAt).toBeGreaterThanOrEqual(outcome.replayDoneAt);
  });

  it('stops extending after the maximum hold', async () => {
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      env: { USER_LOCK_TTL_MS: String(TTL_MS), USER_LOCK_MAX_HOLD_MS: String(2 * TTL_MS), USER_LOCK_WAIT_MS: '5000' },
    });

    const outcome = await replayAgainstRequest(server, 6 * TTL_MS);

    expect(outcome.requestErrors).toBeNull();
    expect(outcome.requestDoneAt).toBeLessThan(outcome.replayDoneAt);
    expect(outcome.replayError).toBeInstanceOf(DomainError);
    expect((outcome.replayError as DomainError).reason).toBe('LOCK_LOST');
  });
});
