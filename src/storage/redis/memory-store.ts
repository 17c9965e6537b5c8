/**
 * In-process coordination store with the semantics of the Redis store. It
 * serves a single process (the embedded default without REDIS_URL) and tests.
 *
 * Each operation reads and writes the maps without awaiting in between, so it
 * is atomic like a Lua script in Redis. Expired locks, counters, fences and
 * engine states are dropped when read, and by a full sweep every
 * PURGE_INTERVAL writes, so that keys that are never read again do not
 * accumulate. Fences and states expire as in the Redis store, after
 * `userStateIdleTtlMs` without a lock acquisition or state save of the user.
 */
import { DomainError } from '../../domain/errors.js';
import type {
  AcquireUserLockOptions,
  CoordinationStore,
  DeadlineSeed,
  UserLock,
  WindowCount,
} from './coordination-store.js';
import { checkCounterKey, checkUserId } from './keys.js';
import {
  acquireWithWait,
  checkPositiveInteger,
  checkTimestampMs,
  deadlineOfScore,
  DEFAULT_USER_STATE_IDLE_TTL_MS,
} from './store-common.js';

export interface MemoryStoreOptions {
  /** Current time in ms since the epoch, for TTLs and fence seeds. Tests replace it. */
  now?: () => number;
  /** Idle lifetime of a user's fence and engine state, as in `RedisStoreOptions`. */
  userStateIdleTtlMs?: number;
}

/** Numbers of entries in each map of the in-process store, expired ones not yet removed included. */
export interface MemoryStoreEntryCounts {
  locks: number;
  fences: number;
  states: number;
  counters: number;
  deadlines: number;
  runningSets: number;
}

/** The in-process store, with a count of its entries for tests. */
export interface MemoryStore extends CoordinationStore {
  /** Returns the number of entries in each map, without removing expired ones first. For tests. */
  countEntriesForTests(): MemoryStoreEntryCounts;
}

interface Expiring<T> {
  value: T;
  expiresAtMs: number;
}

const PURGE_INTERVAL = 1024;

export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const now = options.now ?? Date.now;
  const idleTtlMs = options.userStateIdleTtlMs ?? DEFAULT_USER_STATE_IDLE_TTL_MS;
  checkPositiveInteger('userStateIdleTtlMs', idleTtlMs);

  const locks = new Map<string, Expiring<string>>();
  const fences = new Map<string, Expiring<number>>();
  const states = new Map<string, Expiring<string>>();
  const deadlines = new Map<string, number>();
  /** Set by `markDeadlinesComplete`, and cleared with the deadlines. */
  let deadlinesMarkedComplete = false;
  const counters = new Map<string, Expiring<number>>();
  /** Running sets: each member with the instant it leaves. */
  const running = new Map<string, Map<string, number>>();

  let closed = false;
  let writesSincePurge = 0;

  function ensureOpen(): void {
    if (closed) {
      throw new DomainError(
        'SERVICE_UNAVAILABLE',
        'STORE_CLOSED',
        'The in-process coordination store is closed because the server is stopping, so the request could not be completed. Retry later.',
      );
    }
  }

  function live<T>(map: Map<string, Expiring<T>>, key: string): Expiring<T> | undefined {
    const entry = map.get(key);
    if (entry !== undefined && entry.expiresAtMs <= now()) {
      map.delete(key);
      return undefined;
    }
    return entry;
  }

  function noteWrite(): void {
    writesSincePurge += 1;
    if (writesSincePurge < PURGE_INTERVAL) {
      return;
    }
    writesSincePurge = 0;
    const current = now();
    for (const map of [locks, counters] as Map<string, Expiring<unknown>>[]) {
      for (const [key, entry] of map) {
        if (entry.expiresAtMs <= current) {
          map.delete(key);
        }
      }
    }
    // Fences and states are kept in order of expiry (see `setIdle`), so the
    // purge stops at the first live entry instead of scanning every user.
    for (const map of [fences, states] as Map<string, Expiring<unknown>>[]) {
      for (const [key, entry] of map) {
        if (entry.expiresAtMs > current) {
          break;
        }
        map.delete(key);
      }
    }
  }

  /**
   * Stores `value` with the idle TTL at the end of `map`. All entries share
   * one TTL, so insertion order is expiry order while the clock does not go
   * back. After a clock step back, an expired entry may wait behind a live
   * one until the purge reaches it, but reads still drop it.
   */
  function setIdle<T>(map: Map<string, Expiring<T>>, key: string, value: T): void {
    map.delete(key);
    map.set(key, { value, expiresAtMs: now() + idleTtlMs });
  }

  /** Returns the lock entry if `lock` is still the user's current lock. */
  function heldLock(lock: UserLock): Expiring<string> | undefined {
    const entry = live(locks, lock.userId);
    return entry !== undefined && entry.value === lock.token ? entry : undefined;
  }

  function nextFence(userId: string): number {
    // The fence is at least the current time in ms, as in the Redis store,
    // so fences keep growing after a restart that lost the counters, and
    // after the counter expired (see acquireUserLockScript for why).
    const previous = live(fences, userId)?.value;
    const fence = Math.max(1, previous === undefined ? 1 : previous + 1, Math.floor(now()));
    setIdle(fences, userId, fence);
    return fence;
  }

  /** Returns the user's engine state and resets its idle TTL, or returns null when none is stored. */
  function touchState(userId: string): string | null {
    const entry = live(states, userId);
    if (entry === undefined) {
      return null;
    }
    setIdle(states, userId, entry.value);
    return entry.value;
  }

  return {
    async acquireUserLock(userId: string, lockOptions: AcquireUserLockOptions): Promise<UserLock> {
      checkUserId(userId);
      return acquireWithWait(userId, lockOptions, async (token) => {
        ensureOpen();
        if (live(locks, userId) !== undefined) {
          return null;
        }
        locks.set(userId, { value: token, expiresAtMs: now() + lockOptions.ttlMs });
        noteWrite();
        return { fence: nextFence(userId), state: touchState(userId) };
      });
    },

    async releaseUserLock(lock: UserLock): Promise<boolean> {
      ensureOpen();
      if (heldLock(lock) === undefined) {
        return false;
      }
      locks.delete(lock.userId);
      return true;
    },

    async extendUserLock(lock: UserLock, ttlMs: number): Promise<boolean> {
      ensureOpen();
      checkPositiveInteger('ttlMs', ttlMs);
      const entry = heldLock(lock);
      if (entry === undefined) {
        return false;
      }
      entry.expiresAtMs = now() + ttlMs;
      return true;
    },

    async loadUserState(userId: string): Promise<string | null> {
      ensureOpen();
      checkUserId(userId);
      return live(states, userId)?.value ?? null;
    },

    async saveUserState(lock: UserLock, state: string): Promise<boolean> {
      ensureOpen();
      if (heldLock(lock) === undefined) {
        return false;
      }
      setIdle(states, lock.userId, state);
      noteWrite();
      return true;
    },

    async deleteUserState(userId: string): Promise<void> {
      ensureOpen();
      checkUserId(userId);
      states.delete(userId);
    },

    async scheduleDeadline(userId: string, atMs: number | null): Promise<void> {
      ensureOpen();
      checkUserId(userId);
      if (atMs === null) {
        deadlines.delete(userId);
        return;
      }
      checkTimestampMs('atMs', atMs);
      deadlines.set(userId, atMs);
    },

    async scheduleDeadlineIfEarlier(userId: string, atMs: number): Promise<void> {
      ensureOpen();
      checkUserId(userId);
      checkTimestampMs('atMs', atMs);
      const score = deadlines.get(userId);
      if (score === undefined || atMs < score) {
        deadlines.set(userId, atMs);
      }
    },

    async claimDueUsers(nowMs: number, leaseMs: number, limit: number): Promise<string[]> {
      ensureOpen();
      checkTimestampMs('nowMs', nowMs);
      checkPositiveInteger('leaseMs', leaseMs);
      checkPositiveInteger('limit', limit);

      // As in the Redis script, a claim at time t is stored as -(t + 1), and
      // claims made at nowMs - leaseMs or earlier have expired.
      // Same order as a Redis sorted set: by score, then by member.
      const minScore = Math.min(0, leaseMs - nowMs - 1);
      const due = [...deadlines]
        .filter(([, score]) => score >= minScore && score <= nowMs)
        .sort(([userA, atA], [userB, atB]) => atA - atB || compareText(userA, userB))
        .slice(0, limit)
        .map(([userId]) => userId);

      for (const userId of due) {
        deadlines.set(userId, -nowMs - 1);
      }
      return due;
    },

    async dueUsers(nowMs: number, limit: number): Promise<string[]> {
      ensureOpen();
      checkTimestampMs('nowMs', nowMs);
      checkPositiveInteger('limit', limit);
      return [...deadlines]
        .filter(([, atMs]) => atMs <= nowMs)
        .sort(([userA, atA], [userB, atB]) => atA - atB || compareText(userA, userB))
        .slice(0, limit)
        .map(([userId]) => userId);
    },

    async countDueUsers(nowMs: number): Promise<number> {
      ensureOpen();
      checkTimestampMs('nowMs', nowMs);
      let count = 0;
      for (const score of deadlines.values()) {
        // A claim's score is negative, below every deadline, as in Redis.
        if (score <= nowMs) {
          count += 1;
        }
      }
      return count;
    },

    async peekDeadline(userId: string): Promise<number | null> {
      ensureOpen();
      checkUserId(userId);
      const score = deadlines.get(userId);
      return score === undefined ? null : deadlineOfScore(score);
    },

    async peekDeadlines(userIds: readonly string[]): Promise<Array<number | null>> {
      ensureOpen();
      userIds.forEach(checkUserId);
      return userIds.map((userId) => {
        const score = deadlines.get(userId);
        return score === undefined ? null : deadlineOfScore(score);
      });
    },

    async startDeadlineSeed(): Promise<DeadlineSeed> {
      ensureOpen();
      return { marker: 'complete' };
    },

    async markDeadlinesComplete(): Promise<boolean> {
      ensureOpen();
      deadlinesMarkedComplete = true;
      return true;
    },

    async deadlinesComplete(): Promise<boolean> {
      ensureOpen();
      return deadlinesMarkedComplete;
    },

    async incrementWindowCounter(key: string, windowMs: number): Promise<WindowCount> {
      ensureOpen();
      checkCounterKey(key);
      checkPositiveInteger('windowMs', windowMs);

      const current = now();
      let entry = live(counters, key);
      if (entry === undefined) {
        entry = { value: 0, expiresAtMs: current + windowMs };
        counters.set(key, entry);
        noteWrite();
      }
      entry.value += 1;
      return { count: entry.value, resetInMs: entry.expiresAtMs - current };
    },

    async decrementWindowCounter(key: string): Promise<WindowCount> {
      ensureOpen();
      checkCounterKey(key);
      const entry = live(counters, key);
      if (entry === undefined) {
        return { count: 0, resetInMs: 0 };
      }
      entry.value -= 1;
      if (entry.value <= 0) {
        counters.delete(key);
        return { count: 0, resetInMs: 0 };
      }
      return { count: entry.value, resetInMs: entry.expiresAtMs - now() };
    },

    async getWindowCounter(key: string): Promise<WindowCount> {
      ensureOpen();
      checkCounterKey(key);
      const entry = live(counters, key);
      if (entry === undefined) {
        return { count: 0, resetInMs: 0 };
      }
      return { count: entry.value, resetInMs: entry.expiresAtMs - now() };
    },

    async resetCounter(key: string): Promise<void> {
      ensureOpen();
      checkCounterKey(key);
      counters.delete(key);
    },

    async addRunning(key: string, member: string, ttlMs: number): Promise<number> {
      ensureOpen();
      checkCounterKey(key);
      checkPositiveInteger('ttlMs', ttlMs);
      const current = now();
      const members = running.get(key) ?? new Map<string, number>();
      for (const [name, leavesAtMs] of members) {
        if (leavesAtMs <= current) {
          members.delete(name);
        }
      }
      members.set(member, current + ttlMs);
      running.set(key, members);
      return members.size;
    },

    async removeRunning(key: string, member: string): Promise<void> {
      ensureOpen();
      checkCounterKey(key);
      const members = running.get(key);
      members?.delete(member);
      if (members?.size === 0) {
        running.delete(key);
      }
    },

    async ping(): Promise<void> {
      ensureOpen();
    },

    connectionStatus(): null {
      return null;
    },

    async close(): Promise<void> {
      closed = true;
    },

    async flushForTests(): Promise<void> {
      ensureOpen();
      locks.clear();
      fences.clear();
      states.clear();
      deadlines.clear();
      deadlinesMarkedComplete = false;
      counters.clear();
    },

    countEntriesForTests(): MemoryStoreEntryCounts {
      return {
        locks: locks.size,
        fences: fences.size,
        states: states.size,
        counters: counters.size,
        deadlines: deadlines.size,
        runningSets: running.size,
      };
    },
  };
}

/** Orders strings by UTF-16 code units, which matches Redis for ASCII member names. */
function compareText(left: string, right: string): number {
  if (left < right) {
    return -1;
  }
  return left > right ? 1 : 0;
}
