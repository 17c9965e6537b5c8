/**
 * Waiting for a per-user lock and argument checks shared by the Redis and the
 * in-process store.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { DomainError } from '../../domain/errors.js';
import type { AcquireUserLockOptions, UserLock } from './coordination-store.js';

/**
 * Idle lifetime of a user's engine state and lock fence in a store built
 * without one: 7 days, the default of USER_STATE_IDLE_TTL_SECONDS.
 */
export const DEFAULT_USER_STATE_IDLE_TTL_MS = 7 * 24 * 3600 * 1000;

const FIRST_RETRY_DELAY_MS = 5;
const MAX_RETRY_DELAY_MS = 50;

/**
 * Calls `tryAcquire` until it returns a fence, sleeping between attempts for a
 * random time (5 to 50 ms, growing with each attempt) so that waiters do not
 * retry in lockstep. `tryAcquire` returns null while another holder has the
 * lock.
 *
 * @throws DomainError SERVICE_UNAVAILABLE with reason `USER_BUSY` after `waitMs`.
 */
export async function acquireWithWait(
  userId: string,
  options: AcquireUserLockOptions,
  tryAcquire: (token: string) => Promise<{ fence: number; state: string | null } | null>,
): Promise<UserLock> {
  checkLockOptions(options);

  const token = randomBytes(16).toString('base64url');
  const deadline = performance.now() + options.waitMs;

  for (let attempt = 0; ; attempt += 1) {
    const acquired = await tryAcquire(token);
    if (acquired !== null) {
      return { userId, token, fence: acquired.fence, state: acquired.state };
    }

    const remainingMs = deadline - performance.now();
    if (remainingMs <= 0) {
      throw userBusyError(userId, options.waitMs);
    }
    await sleep(Math.min(remainingMs, retryDelayMs(attempt)));
  }
}

/** Builds the USER_BUSY error for a request that waited `waitMs` for a user's lock without getting it. */
export function userBusyError(userId: string, waitMs: number): DomainError {
  return new DomainError(
    'SERVICE_UNAVAILABLE',
    'USER_BUSY',
    `User ${userId} is busy: another request held its lock for the whole wait of ${waitMs} ms. Retry the request.`,
    { userId, waitMs },
  );
}

/** Random delay in [cap / 2, cap], where the cap doubles from 5 ms up to 50 ms. */
function retryDelayMs(attempt: number): number {
  const cap = Math.min(MAX_RETRY_DELAY_MS, FIRST_RETRY_DELAY_MS * 2 ** Math.min(attempt, 10));
  return cap / 2 + Math.random() * (cap / 2);
}

export function checkLockOptions(options: AcquireUserLockOptions): void {
  checkPositiveInteger('ttlMs', options.ttlMs);
  if (!Number.isInteger(options.waitMs) || options.waitMs < 0) {
    throw new RangeError(`waitMs is ${options.waitMs}, but it must be an integer of at least 0.`);
  }
}

export function checkPositiveInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} is ${value}, but it must be a positive integer.`);
  }
}

export function checkTimestampMs(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} is ${value}, but it must be a non-negative integer of ms since the epoch.`);
  }
}

/**
 * Returns the deadline that a score of the deadline set stands for: the score
 * itself, or for a sweeper's claim at time t, stored as -(t + 1), the claim time.
 */
export function deadlineOfScore(score: number): number {
  return score < 0 ? -score - 1 : score;
}
