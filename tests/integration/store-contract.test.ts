/**
 * One contract for both coordination stores. The in-process store always
 * runs. The Redis store runs when REDIS_URL is set, under a key prefix unique
 * to this run.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import {
  createMemoryStore,
  createRedisStore,
  type CoordinationStore,
} from '../../src/storage/redis/index.js';
import { createStoreKeys } from '../../src/storage/redis/keys.js';
import { describeWithRedis, redisUrl, uniqueKeyPrefix } from '../support/services.js';

const logger = pino({ level: 'silent' });

async function expectDomainError(
  promise: Promise<unknown>,
  kind: DomainError['kind'],
  reason: string,
): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(DomainError);
  const domainError = error as DomainError;
  expect(domainError.kind).toBe(kind);
  expect(domainError.reason).toBe(reason);
  return domainError;
}

/** Options that the contract sets on a store of either kind. */
interface ContractStoreOptions {
  userStateIdleTtlMs?: number;
}

function defineStoreContract(createStore: (options?: ContractStoreOptions) => CoordinationStore): void {
  let store: CoordinationStore;

  beforeEach(async () => {
    store = createStore();
    await store.flushForTests();
  });

  afterEach(async () => {
    await store.flushForTests();
    await store.close();
  });

  describe('user lock', () => {
    it('is exclusive per user', async () => {
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

      await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'USER_BUSY',
      );
      const other = await store.acquireUserLock('bob', { ttlMs: 5000, waitMs: 0 });

      expect(other.userId).toBe('bob');
      expect(other.token).not.toBe(lock.token);
    });

    it('fence increases at every acquisition', async () => {
      const fences: number[] = [];
      for (let round = 0; round < 5; round += 1) {
        const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
        fences.push(lock.fence);
        expect(await store.releaseUserLock(lock)).toBe(true);
      }

      for (let index = 1; index < fences.length; index += 1) {
        expect(fences[index]).toBeGreaterThan(fences[index - 1] as number);
      }
    });

    it('fence of a new counter starts at clock time', async () => {
      const before = Date.now();
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

      // Redis uses its own clock, so allow one second of difference.
      expect(lock.fence).toBeGreaterThanOrEqual(before - 1000);
      expect(lock.fence).toBeLessThanOrEqual(Date.now() + 1000);
    });

    it('wait timeout gives USER_BUSY', async () => {
      // The lock outlives the test's timeout, so a wait that ignored waitMs would hang.
      await store.acquireUserLock('alice', { ttlMs: 3_600_000, waitMs: 0 });

      const started = performance.now();
      const error = await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 150 }),
        'SERVICE_UNAVAILABLE',
        'USER_BUSY',
      );
      const elapsedMs = performance.now() - started;

      expect(error.details).toMatchObject({ userId: 'alice', waitMs: 150 });
      expect(elapsedMs).toBeGreaterThanOrEqual(140);
    });

    it('waiter gets lock after release', async () => {
      const first = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      const waiting = store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 2000 });

      await sleep(50);
      expect(await store.releaseUserLock(first)).toBe(true);
      const second = await waiting;

      expect(second.fence).toBeGreaterThan(first.fence);
    });

    it('release only by holder', async () => {
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      const impostor = { ...lock, token: 'not-the-token' };

      expect(await store.releaseUserLock(impostor)).toBe(false);
      await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'USER_BUSY',
      );

      expect(await store.releaseUserLock(lock)).toBe(true);
      expect(await store.releaseUserLock(lock)).toBe(false);
    });

    it('expired lock is taken over', async () => {
      const old = await store.acquireUserLock('alice', { ttlMs: 50, waitMs: 0 });
      await sleep(120);

      const current = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

      expect(current.fence).toBeGreaterThan(old.fence);
      expect(await store.releaseUserLock(old)).toBe(false);
      expect(await store.extendUserLock(old, 5000)).toBe(false);
      await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'USER_BUSY',
      );
    });

    it('extend keeps lock past first ttl', async () => {
      const lock = await store.acquireUserLock('alice', { ttlMs: 80, waitMs: 0 });

      expect(await store.extendUserLock(lock, 5000)).toBe(true);
      await sleep(150);

      await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'USER_BUSY',
      );
    });

    it('rejects invalid options', async () => {
      await expect(store.acquireUserLock('alice', { ttlMs: 0, waitMs: 0 })).rejects.toThrow(RangeError);
      await expect(store.acquireUserLock('alice', { ttlMs: 100, waitMs: -1 })).rejects.toThrow(RangeError);
      await expect(store.acquireUserLock('', { ttlMs: 100, waitMs: 0 })).rejects.toThrow(TypeError);
    });
  });

  describe('user state', () => {
    it('round trips under lock', async () => {
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

      expect(await store.loadUserState('alice')).toBeNull();
      expect(await store.saveUserState(lock, '{"open":[]}')).toBe(true);
      expect(await store.loadUserState('alice')).toBe('{"open":[]}');
      expect(await store.loadUserState('bob')).toBeNull();

      await store.deleteUserState('alice');
      expect(await store.loadUserState('alice')).toBeNull();
    });

    it('comes with the lock', async () => {
      const first = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      expect(first.state).toBeNull();
      expect(await store.saveUserState(first, 'v1')).toBe(true);
      await store.releaseUserLock(first);

      const second = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      expect(second.state).toBe('v1');
      expect(second.fence).toBeGreaterThan(first.fence);
    });

    it('save rejected after lock lost', async () => {
      const old = await store.acquireUserLock('alice', { ttlMs: 50, waitMs: 0 });
      expect(await store.saveUserState(old, 'v1')).toBe(true);
      await sleep(120);

      expect(await store.saveUserState(old, 'stale')).toBe(false);
      expect(await store.loadUserState('alice')).toBe('v1');

      const current = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      expect(await store.saveUserState(old, 'stale')).toBe(false);
      expect(await store.saveUserState(current, 'v2')).toBe(true);
      expect(await store.loadUserState('alice')).toBe('v2');
    });

    it('save rejected after release', async () => {
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      await store.releaseUserLock(lock);

      expect(await store.saveUserState(lock, 'late')).toBe(false);
      expect(await store.loadUserState('alice')).toBeNull();
    });
  });

  describe('user key expiry', () => {
    it('drops idle state', async () => {
      const idle = createStore({ userStateIdleTtlMs: 100 });
      try {
        const first = await idle.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
        expect(await idle.saveUserState(first, 'v1')).toBe(true);
        expect(await idle.releaseUserLock(first)).toBe(true);
        await sleep(250);

        expect(await idle.loadUserState('alice')).toBeNull();
        const second = await idle.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
        expect(second.state).toBeNull();
        // A live counter and a new one both exceed the first fence here, so
        // this checks only that fences still grow. 'sets idle ttl on user
        // keys' and 'expired fence restarts at clock' check the expiry itself.
        expect(second.fence).toBeGreaterThan(first.fence);
      } finally {
        await idle.flushForTests();
        await idle.close();
      }
    });

    it('rejects invalid idle ttl', () => {
      expect(() => createStore({ userStateIdleTtlMs: 0 })).toThrow(RangeError);
    });
  });

  describe('deadlines', () => {
    it('schedule, peek and remove', async () => {
      await store.scheduleDeadline('alice', 1_000);
      expect(await store.peekDeadline('alice')).toBe(1_000);

      await store.scheduleDeadline('alice', 2_500);
      expect(await store.peekDeadline('alice')).toBe(2_500);

      await store.scheduleDeadline('alice', null);
      expect(await store.peekDeadline('alice')).toBeNull();
      expect(await store.peekDeadline('nobody')).toBeNull();
    });

    it('peek of several users keeps their order', async () => {
      await store.scheduleDeadline('alice', 1_000);
      await store.scheduleDeadline('carol', 3_000);

      expect(await store.peekDeadlines(['carol', 'nobody', 'alice'])).toEqual([3_000, null, 1_000]);
      expect(await store.peekDeadlines([])).toEqual([]);
    });

    it('claim takes due users by deadline', async () => {
      await store.scheduleDeadline('late', 3_000);
      await store.scheduleDeadline('first', 1_000);
      await store.scheduleDeadline('second', 2_000);
      await store.scheduleDeadline('future', 9_000);

      const claimed = await store.claimDueUsers(3_000, 500, 10);

      expect(claimed).toEqual(['first', 'second', 'late']);
      // A claimed user shows the claim time, so that it stays due for reads.
      expect(await store.peekDeadline('first')).toBe(3_000);
      expect(await store.peekDeadline('future')).toBe(9_000);
    });

    it('lists due users without claiming', async () => {
      await store.scheduleDeadline('late', 3_000);
      await store.scheduleDeadline('first', 1_000);
      await store.scheduleDeadline('second', 2_000);
      await store.scheduleDeadline('future', 9_000);

      expect(await store.dueUsers(3_000, 10)).toEqual(['first', 'second', 'late']);
      expect(await store.dueUsers(3_000, 2)).toEqual(['first', 'second']);
      expect(await store.peekDeadline('first')).toBe(1_000);
      expect(await store.claimDueUsers(3_000, 500, 10)).toEqual(['first', 'second', 'late']);
      expect(await store.claimDueUsers(3_000, 500, 10)).toEqual([]);
    });

    it('schedule if earlier only lowers', async () => {
      await store.scheduleDeadlineIfEarlier('missing', 5_000);
      await store.scheduleDeadline('later', 9_000);
      await store.scheduleDeadlineIfEarlier('later', 5_000);
      await store.scheduleDeadline('earlier', 1_000);
      await store.scheduleDeadlineIfEarlier('earlier', 5_000);
      await store.scheduleDeadline('claimed', 1_000);
      await store.claimDueUsers(1_000, 30_000, 10);
      await store.scheduleDeadlineIfEarlier('claimed', 5_000);

      expect(await store.peekDeadlines(['missing', 'later', 'earlier'])).toEqual([5_000, 5_000, 1_000]);
      // The claim stays, so other sweepers still skip the user.
      expect(await store.claimDueUsers(6_000, 30_000, 10)).toEqual(['later', 'missing']);
    });

    it('claimed users stay due for reads', async () => {
      await store.scheduleDeadline('claimed', 1_000);
      await store.scheduleDeadline('due', 2_000);
      await store.scheduleDeadline('future', 9_000);

      expect(await store.claimDueUsers(1_500, 30_000, 10)).toEqual(['claimed']);

      expect(await store.dueUsers(3_000, 10)).toEqual(['claimed', 'due']);
      expect(await store.peekDeadlines(['claimed', 'due', 'future'])).toEqual([1_500, 2_000, 9_000]);
      // Other sweepers still skip the claimed user until its lease ends.
      expect(await store.claimDueUsers(3_000, 30_000, 10)).toEqual(['due']);
    });

    it('claim respects limit', async () => {
      for (let index = 0; index < 5; index += 1) {
        await store.scheduleDeadline(`user-${index}`, 1_000 + index);
      }

      expect(await store.claimDueUsers(2_000, 500, 2)).toEqual(['user-0', 'user-1']);
      expect(await store.claimDueUsers(2_000, 500, 2)).toEqual(['user-2', 'user-3']);
      expect(await store.claimDueUsers(2_000, 500, 2)).toEqual(['user-4']);
      expect(await store.claimDueUsers(2_000, 500, 2)).toEqual([]);
    });

    it('concurrent claims never share a user', async () => {
      const userIds = Array.from({ length: 60 }, (_, index) => `user-${index}`);
      for (const userId of userIds) {
        await store.scheduleDeadline(userId, 1_000);
      }

      const batches = await Promise.all(
        Array.from({ length: 25 }, () => store.claimDueUsers(1_000, 30_000, 4)),
      );
      const claimed = batches.flat();

      expect(claimed).toHaveLength(userIds.length);
      expect(new Set(claimed).size).toBe(userIds.length);
      expect([...claimed].sort()).toEqual([...userIds].sort());
    });

    it('claim returns after lease', async () => {
      await store.scheduleDeadline('alice', 1_000);

      expect(await store.claimDueUsers(1_000, 500, 10)).toEqual(['alice']);
      expect(await store.claimDueUsers(1_499, 500, 10)).toEqual([]);
      expect(await store.claimDueUsers(1_500, 500, 10)).toEqual(['alice']);
      expect(await store.peekDeadline('alice')).toBe(1_500);
    });

    it('rejects invalid arguments', async () => {
      await expect(store.scheduleDeadline('alice', -1)).rejects.toThrow(RangeError);
      await expect(store.scheduleDeadline('alice', 1.5)).rejects.toThrow(RangeError);
      await expect(store.claimDueUsers(1_000, 0, 10)).rejects.toThrow(RangeError);
      await expect(store.claimDueUsers(1_000, 500, 0)).rejects.toThrow(RangeError);
      await expect(store.dueUsers(1_000, 0)).rejects.toThrow(RangeError);
    });
  });

  describe('window counter', () => {
    it('counts hits within window', async () => {
      const first = await store.incrementWindowCounter('login:test', 5000);
      const second = await store.incrementWindowCounter('login:test', 5000);
      const third = await store.incrementWindowCounter('login:test', 5000);

      expect(first.count).toBe(1);
      expect(second.count).toBe(2);
      expect(third.count).toBe(3);
      expect(third.resetInMs).toBeGreaterThan(0);
      expect(third.resetInMs).toBeLessThanOrEqual(5000);
    });

    it('get does not count', async () => {
      expect(await store.getWindowCounter('login:test')).toEqual({ count: 0, resetInMs: 0 });

      await store.incrementWindowCounter('login:test', 5000);
      const read = await store.getWindowCounter('login:test');
      const again = await store.getWindowCounter('login:test');

      expect(read.count).toBe(1);
      expect(again.count).toBe(1);
      expect(read.resetInMs).toBeGreaterThan(0);
    });

    it('decrement takes one hit back', async () => {
      await store.incrementWindowCounter('login:test', 5000);
      await store.incrementWindowCounter('login:test', 5000);

      const once = await store.decrementWindowCounter('login:test');
      expect(once.count).toBe(1);
      expect(once.resetInMs).toBeGreaterThan(0);
      expect(once.resetInMs).toBeLessThanOrEqual(5000);

      expect(await store.decrementWindowCounter('login:test')).toEqual({ count: 0, resetInMs: 0 });
      expect(await store.getWindowCounter('login:test')).toEqual({ count: 0, resetInMs: 0 });
      expect(await store.decrementWindowCounter('login:test')).toEqual({ count: 0, resetInMs: 0 });
      expect((await store.incrementWindowCounter('login:test', 5000)).count).toBe(1);
    });

    it('window end resets count', async () => {
      await store.incrementWindowCounter('login:test', 60);
      await store.incrementWindowCounter('login:test', 60);
      await sleep(120);

      expect((await store.getWindowCounter('login:test')).count).toBe(0);
      expect((await store.incrementWindowCounter('login:test', 60)).count).toBe(1);
    });

    it('window starts at first hit', async () => {
      await store.incrementWindowCounter('login:test', 200);
      await sleep(120);
      const later = await store.incrementWindowCounter('login:test', 200);

      expect(later.count).toBe(2);
      expect(later.resetInMs).toBeLessThanOrEqual(100);
    });

    it('reset clears count', async () => {
      await store.incrementWindowCounter('login:test', 5000);
      await store.resetCounter('login:test');

      expect((await store.getWindowCounter('login:test')).count).toBe(0);
    });

    it('counters are independent', async () => {
      await store.incrementWindowCounter('login:a', 5000);
      await store.incrementWindowCounter('login:a', 5000);

      expect((await store.incrementWindowCounter('login:b', 5000)).count).toBe(1);
    });

    it('rejects oversized key', async () => {
      await expect(store.incrementWindowCounter('k'.repeat(513), 5000)).rejects.toThrow(TypeError);
    });
  });

  describe('running set', () => {
    it('counts members until removed', async () => {
      expect(await store.addRunning('login:running', 'a', 5000)).toBe(1);
      expect(await store.addRunning('login:running', 'b', 5000)).toBe(2);
      expect(await store.addRunning('login:running', 'b', 5000)).toBe(2);

      await store.removeRunning('login:running', 'a');
      await store.removeRunning('login:running', 'a');

      expect(await store.addRunning('login:running', 'c', 5000)).toBe(2);
      expect(await store.addRunning('login:other', 'a', 5000)).toBe(1);
    });

    it('members expire one by one', async () => {
      // Lifetimes far apart, so that a slow machine cannot change the outcome.
      await store.addRunning('login:running', 'old', 200);
      await store.addRunning('login:running', 'young', 60_000);
      await sleep(300);

      // The old member is gone, the young one counts until its own time is up.
      expect(await store.addRunning('login:running', 'new', 5000)).toBe(2);
      await store.removeRunning('login:running', 'old');
      expect(await store.addRunning('login:running', 'another', 5000)).toBe(3);
    });

    it('rejects oversized key', async () => {
      await expect(store.addRunning('k'.repeat(513), 'a', 5000)).rejects.toThrow(TypeError);
    });
  });

  describe('lifecycle', () => {
    it('ping succeeds while open', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('operations fail after close', async () => {
      const closing = createStore();
      await closing.ping();
      await closing.close();

      const error = await closing.ping().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).kind).toBe('SERVICE_UNAVAILABLE');
    });
  });
}

describe('memory store', () => {
  defineStoreContract((options) => createMemoryStore(options));

  it('idle ttl restarts at each lock', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, userStateIdleTtlMs: 10_000 });
    const first = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
    expect(await store.saveUserState(first, 'v1')).toBe(true);
    expect(await store.releaseUserLock(first)).toBe(true);

    // One ms before the state expires, a lock takes it and restarts its TTL.
    nowMs += 9_999;
    const second = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
    expect(second.state).toBe('v1');
    expect(await store.releaseUserLock(second)).toBe(true);

    nowMs += 9_999;
    expect(await store.loadUserState('alice')).toBe('v1');
    nowMs += 1;
    expect(await store.loadUserState('alice')).toBeNull();
  });

  it('purge keeps live states', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, userStateIdleTtlMs: 10_000 });
    const saveAt = async (userId: string, atMs: number): Promise<void> => {
      nowMs = atMs;
      const lock = await store.acquireUserLock(userId, { ttlMs: 5000, waitMs: 0 });
      expect(await store.saveUserState(lock, `state of ${userId}`)).toBe(true);
      expect(await store.releaseUserLock(lock)).toBe(true);
    };
    await saveAt('alice', 1_000_000);
    await saveAt('bob', 1_005_000);
    // Alice's lock moves her state behind Bob's, whose state expires first.
    await saveAt('alice', 1_009_000);

    nowMs = 1_016_000;
    // Enough new counters to start a purge of every map.
    for (let index = 0; index < 1100; index += 1) {
      await store.incrementWindowCounter(`purge:${index}`, 60_000);
    }

    expect(await store.loadUserState('alice')).toBe('state of alice');
    expect(await store.loadUserState('bob')).toBeNull();
  });

  it('purge removes expired entries', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, userStateIdleTtlMs: 10_000 });
    // Five users with a fence and a state, three of them with a lock that is
    // never released, and five counters. None of them is read again.
    for (let index = 0; index < 5; index += 1) {
      const lock = await store.acquireUserLock(`expired-${index}`, { ttlMs: 5000, waitMs: 0 });
      expect(await store.saveUserState(lock, `state ${index}`)).toBe(true);
      if (index >= 3) {
        expect(await store.releaseUserLock(lock)).toBe(true);
      }
      await store.incrementWindowCounter(`expired:${index}`, 5000);
    }
    // Carol's entries are written last and outlive the test's clock.
    nowMs = 1_009_000;
    const carolLock = await store.acquireUserLock('carol', { ttlMs: 60_000, waitMs: 0 });
    expect(await store.saveUserState(carolLock, 'state of carol')).toBe(true);
    await store.incrementWindowCounter('live:carol', 60_000);
    expect(store.countEntriesForTests()).toMatchObject({ locks: 4, fences: 6, states: 6, counters: 6 });

    // Past the idle TTL of the five users. Each increment of the filler
    // counter starts a new window one ms after the last one ended, so it
    // counts as a write without adding an entry. 1100 writes exceed the
    // purge interval of 1024 writes.
    nowMs = 1_010_000;
    for (let index = 0; index < 1100; index += 1) {
      nowMs += 1;
      await store.incrementWindowCounter('filler', 1);
    }

    const counts = store.countEntriesForTests();
    expect(counts.locks).toBe(1);
    expect(counts.fences).toBe(1);
    expect(counts.states).toBe(1);
    // Carol's counter and the filler counter.
    expect(counts.counters).toBe(2);
    expect(await store.loadUserState('carol')).toBe('state of carol');
    expect(await store.getWindowCounter('live:carol')).toMatchObject({ count: 1 });
    expect(await store.releaseUserLock(carolLock)).toBe(true);
  });

  it('fence after expiry passes a counter ahead of the clock', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, userStateIdleTtlMs: 10_000 });
    // Five locks in one millisecond run the counter four ahead of the clock.
    const fences: number[] = [];
    for (let round = 0; round < 5; round += 1) {
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      fences.push(lock.fence);
      expect(await store.releaseUserLock(lock)).toBe(true);
    }
    expect(fences).toEqual([1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004]);

    // The counter expires with the idle TTL, and the new one starts at the clock.
    nowMs += 10_000;
    const after = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

    expect(after.fence).toBe(1_010_000);
    expect(after.fence).toBeGreaterThan(Math.max(...fences));
  });

  it('expired fence restarts at clock', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs, userStateIdleTtlMs: 10 });
    // Fifteen locks in one millisecond run each counter 14 ahead of the
    // clock, further than the idle TTL. Only then does a new counter, which
    // starts at the clock, differ from the next value of the old one.
    for (const userId of ['alice', 'bob']) {
      const fences: number[] = [];
      for (let round = 0; round < 15; round += 1) {
        const lock = await store.acquireUserLock(userId, { ttlMs: 5, waitMs: 0 });
        fences.push(lock.fence);
        expect(await store.releaseUserLock(lock)).toBe(true);
      }
      expect(fences.at(-1), `last fence of ${userId}`).toBe(1_000_014);
    }

    // One ms before the idle TTL ends, Bob's counter goes on.
    nowMs += 9;
    const bob = await store.acquireUserLock('bob', { ttlMs: 5, waitMs: 0 });
    expect(bob.fence, 'fence of bob').toBe(1_000_015);

    // At the end of the idle TTL, Alice's counter has expired, so her fence
    // restarts at the clock, below her earlier fences. acquireUserLockScript
    // names this exception for a user with that many surplus locks.
    nowMs += 1;
    const alice = await store.acquireUserLock('alice', { ttlMs: 5, waitMs: 0 });
    expect(alice.fence, 'fence of alice').toBe(1_000_010);
  });

  it('fence catches up with the clock', async () => {
    let nowMs = 1_000_000;
    const store = createMemoryStore({ now: () => nowMs });
    const fenceAt = async (atMs: number): Promise<number> => {
      nowMs = atMs;
      const lock = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      expect(await store.releaseUserLock(lock)).toBe(true);
      return lock.fence;
    };

    expect(await fenceAt(1_000_000)).toBe(1_000_000);
    // A counter behind the clock, as after a restore from an older snapshot, jumps to the clock.
    expect(await fenceAt(5_000_000)).toBe(5_000_000);
    // A clock that goes back leaves the counter counting up.
    expect(await fenceAt(3_000_000)).toBe(5_000_001);
    // Two locks in one millisecond get two fences.
    expect(await fenceAt(3_000_000)).toBe(5_000_002);
  });
});

describeWithRedis('redis store', () => {
  const url = redisUrl() as string;
  const keyPrefix = uniqueKeyPrefix(import.meta.url);

  defineStoreContract((options) =>
    createRedisStore({ url, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger, ...options }),
  );

  it('sets idle ttl on user keys', async () => {
    const idleTtlMs = 60_000;
    const store = createRedisStore({
      url,
      keyPrefix,
      commandTimeoutMs: 2000,
      connectTimeoutMs: 2000,
      userStateIdleTtlMs: idleTtlMs,
      logger,
    });
    const raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    const keys = createStoreKeys(keyPrefix);
    const fenceKey = keys.userFence('alice');
    const stateKey = keys.userState('alice');
    try {
      await raw.connect();
      await store.flushForTests();
      const first = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });
      const fenceTtl = await raw.pttl(fenceKey);
      expect(fenceTtl, 'fence TTL after the first lock').toBeGreaterThan(0);
      expect(fenceTtl, 'fence TTL after the first lock').toBeLessThanOrEqual(idleTtlMs);
      expect(await raw.pttl(stateKey), 'state TTL before any save').toBe(-2);

      expect(await store.saveUserState(first, 'v1')).toBe(true);
      const stateTtl = await raw.pttl(stateKey);
      expect(stateTtl, 'state TTL after the save').toBeGreaterThan(0);
      expect(stateTtl, 'state TTL after the save').toBeLessThanOrEqual(idleTtlMs);
      expect(await store.releaseUserLock(first)).toBe(true);

      // Both keys close to expiry, then a lock restarts their TTLs.
      await raw.pexpire(fenceKey, 5000);
      await raw.pexpire(stateKey, 5000);
      const second = await store.acquireUserLock('alice', { ttlMs: 5000, waitMs: 0 });

      expect(second.state).toBe('v1');
      expect(await raw.pttl(fenceKey), 'fence TTL after the second lock').toBeGreaterThan(5000);
      expect(await raw.pttl(stateKey), 'state TTL after the second lock').toBeGreaterThan(5000);
    } finally {
      await store.flushForTests();
      await store.close();
      raw.disconnect();
    }
  });

  it('closes without a warning', async () => {
    const lines: string[] = [];
    const capturing = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const store = createRedisStore({ url, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger: capturing });
    await store.peekDeadline('alice');

    await store.close();
    await new Promise((resolve) => setTimeout(resolve, 50));

    // The capture works: the connection logged its way to ready and to the end.
    expect(lines.some((line) => line.includes('-> ready'))).toBe(true);
    expect(lines.filter((line) => JSON.parse(line).level >= 40)).toEqual([]);
  });

  it('claims across connections never share a user', async () => {
    const stores = Array.from({ length: 4 }, () =>
      createRedisStore({ url, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger }),
    );
    const [first] = stores as [CoordinationStore];
    try {
      const userIds = Array.from({ length: 80 }, (_, index) => `user-${index}`);
      await Promise.all(userIds.map((userId) => first.scheduleDeadline(userId, 1_000)));

      const batches = await Promise.all(
        Array.from({ length: 40 }, (_, index) =>
          (stores[index % stores.length] as CoordinationStore).claimDueUsers(1_000, 30_000, 3),
        ),
      );
      const claimed = batches.flat();

      expect(claimed).toHaveLength(userIds.length);
      expect(new Set(claimed).size).toBe(userIds.length);
    } finally {
      await first.flushForTests();
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('flush removes only prefixed keys', async () => {
    const store = createRedisStore({ url, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger });
    const neighbour = createRedisStore({
      url,
      keyPrefix: uniqueKeyPrefix(import.meta.url),
      commandTimeoutMs: 2000,
      connectTimeoutMs: 2000,
      logger,
    });
    try {
      await store.scheduleDeadline('alice', 1_000);
      await neighbour.scheduleDeadline('alice', 2_000);

      await store.flushForTests();

      expect(await store.peekDeadline('alice')).toBeNull();
      expect(await neighbour.peekDeadline('alice')).toBe(2_000);
    } finally {
      await neighbour.flushForTests();
      await store.close();
      await neighbour.close();
    }
  });
});

describeWithRedis('redis store failures', () => {
  let server: Server | undefined;

  afterEach(async () => {
    await new Promise<void>((resolve) => {
      if (server === undefined) {
        resolve();
        return;
      }
      server.close(() => resolve());
    });
    server = undefined;
  });

  async function listen(onConnection: (socket: Socket) => void): Promise<number> {
    server = createServer(onConnection);
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') {
      throw new Error('Test server has no TCP port.');
    }
    return address.port;
  }

  async function freePort(): Promise<number> {
    const port = await listen((socket) => socket.destroy());
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    server = undefined;
    return port;
  }

  /**
   * Starts a TCP proxy on loopback to the test Redis. The test can make it
   * drop all traffic (a hung server), cut its connections, or stop it.
   * `vanishOpenConnections()` makes the connections open at that time drop
   * all traffic and never close, as when the host behind them is gone, while
   * new connections work.
   */
  async function startProxy(targetUrl: string) {
    const target = new URL(targetUrl);
    const sockets = new Set<Socket>();
    const clients = new Set<Socket>();
    const vanished = new Set<Socket>();
    let forwarding = true;
    let forwardingReplies = true;
    // Replies held back while set, to be sent late by releaseReplies().
    let heldReplies: Array<{ client: Socket; chunk: Buffer }> | null = null;

    const port = await listen((client) => {
      const upstream = connect(Number(target.port || 6379), target.hostname);
      sockets.add(client);
      sockets.add(upstream);
      clients.add(client);

      client.on('data', (chunk) => {
        if (forwarding && !vanished.has(client)) upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (heldReplies !== null) {
          heldReplies.push({ client, chunk });
        } else if (forwarding && forwardingReplies && !vanished.has(client)) {
          client.write(chunk);
        }
      });

      const closeBoth = (): void => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
        clients.delete(client);
      };
      for (const socket of [client, upstream]) {
        socket.on('close', closeBoth);
        socket.on('error', () => undefined);
      }
    });

    return {
      port,
      stopForwarding(): void {
        forwarding = false;
      },
      stopReplies(): void {
        forwardingReplies = false;
      },
      resumeReplies(): void {
        forwardingReplies = true;
      },
      holdReplies(): void {
        heldReplies = [];
      },
      releaseReplies(): void {
        const delayed = heldReplies ?? [];
        heldReplies = null;
        for (const { client, chunk } of delayed) {
          client.write(chunk);
        }
      },
      vanishOpenConnections(): void {
        for (const client of clients) {
          vanished.add(client);
          // The client's FIN then leaves this socket open, and no FIN goes back.
          client.allowHalfOpen = true;
        }
      },
      dropConnections(): void {
        for (const socket of sockets) {
          socket.destroy();
        }
      },
    };
  }

  function storeVia(port: number, commandTimeoutMs: number): CoordinationStore {
    return createRedisStore({
      url: `redis://127.0.0.1:${port}`,
      keyPrefix: uniqueKeyPrefix(import.meta.url),
      commandTimeoutMs,
      connectTimeoutMs: 300,
      logger,
    });
  }

  /**
   * Runs `body` with a store that reaches Redis through a new proxy, then
   * deletes the store's keys, closes it and drops the proxy's connections.
   */
  async function withProxiedStore(
    commandTimeoutMs: number,
    body: (store: CoordinationStore, proxy: Awaited<ReturnType<typeof startProxy>>) => Promise<void>,
  ): Promise<void> {
    const proxy = await startProxy(redisUrl() as string);
    const store = storeVia(proxy.port, commandTimeoutMs);
    try {
      await body(store, proxy);
    } finally {
      await store.flushForTests();
      await store.close();
      proxy.dropConnections();
    }
  }

  /** Two stores on the same keys: one through the proxy at `port` with short timeouts, one straight to Redis. */
  function storesSharingKeys(port: number): { viaProxy: CoordinationStore; direct: CoordinationStore } {
    const keyPrefix = uniqueKeyPrefix(import.meta.url);
    return {
      viaProxy: createRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix, commandTimeoutMs: 300, connectTimeoutMs: 300, logger }),
      direct: createRedisStore({ url: redisUrl() as string, keyPrefix, commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger }),
    };
  }

  it('hung server times out command', async () => {
    const proxy = await startProxy(redisUrl() as string);
    const store = storeVia(proxy.port, 300);
    try {
      await store.ping();
      proxy.stopForwarding();

      const started = performance.now();
      const error = await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 1000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'REDIS_UNAVAILABLE',
      );
      const elapsedMs = performance.now() - started;

      expect(error.message, 'message').toContain('Redis is unavailable');
      expect(error.message, 'message').not.toContain('acquireUserLock');
      // The proxy never forwards again, so only the command timeout ends the wait.
      expect(error.message, 'message').toContain('Command timed out');
      expect(elapsedMs).toBeGreaterThanOrEqual(250);
    } finally {
      await store.close();
      proxy.dropConnections();
    }
  });

  it('lost reply releases lock', async () => {
    const proxy = await startProxy(redisUrl() as string);
    const { viaProxy, direct } = storesSharingKeys(proxy.port);
    try {
      await viaProxy.ping();
      proxy.stopReplies();

      // The script runs in Redis, but its reply never arrives.
      await expectDomainError(
        viaProxy.acquireUserLock('alice', { ttlMs: 60_000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'REDIS_UNAVAILABLE',
      );
      await sleep(50);

      const lock = await direct.acquireUserLock('alice', { ttlMs: 5000, waitMs: 500 });
      expect(lock.userId).toBe('alice');
    } finally {
      await direct.flushForTests();
      await direct.close();
      await viaProxy.close();
      proxy.dropConnections();
    }
  });

  it('lost reply resets connection', async () => {
    await withProxiedStore(300, async (store, proxy) => {
      await store.scheduleDeadline('alice', 1_000);
      await store.scheduleDeadline('bob', 2_000);
      proxy.stopReplies();
      await expectDomainError(store.peekDeadline('alice'), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
      proxy.resumeReplies();

      // The lost reply would leave every later reply one command behind on
      // that connection: each command would time out or get another's reply.
      // Commands may fail while the connection is checked and replaced, but
      // none may get a wrong value, and the store must recover.
      const deadline = performance.now() + 3_000;
      let recovered = false;
      while (!recovered && performance.now() < deadline) {
        try {
          expect(await store.peekDeadline('bob')).toBe(2_000);
          expect(await store.peekDeadline('alice')).toBe(1_000);
          recovered = true;
        } catch (error) {
          if (!(error instanceof DomainError)) {
            throw error;
          }
        }
      }
      expect(recovered, 'both deadlines read right within 3 s').toBe(true);
    });
  });

  it('slow reply keeps connection', async () => {
    await withProxiedStore(300, async (store, proxy) => {
      await store.scheduleDeadline('alice', 1_000);
      await store.scheduleDeadline('bob', 2_000);
      proxy.holdReplies();

      // Redis stalls for 400 ms. The first command times out; the one sent
      // during the stall gets its reply late but within its own timeout.
      const first = expectDomainError(store.peekDeadline('alice'), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
      await sleep(150);
      const during = store.peekDeadline('bob');
      await sleep(250);
      proxy.releaseReplies();

      await first;
      expect(await during).toBe(2_000);
      expect(await store.peekDeadline('alice')).toBe(1_000);
    });
  });

  it('vanished connection releases lock', async () => {
    const proxy = await startProxy(redisUrl() as string);
    const { viaProxy, direct } = storesSharingKeys(proxy.port);
    try {
      await viaProxy.ping();
      proxy.stopReplies();

      // The script runs in Redis and its reply is lost. Then the connection
      // stops carrying anything, so only a release on a new connection arrives.
      const acquire = viaProxy.acquireUserLock('alice', { ttlMs: 60_000, waitMs: 0 });
      await sleep(100);
      proxy.vanishOpenConnections();
      proxy.resumeReplies();
      await expectDomainError(acquire, 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
      await sleep(400);

      const lock = await direct.acquireUserLock('alice', { ttlMs: 5000, waitMs: 500 });
      expect(lock.userId).toBe('alice');
    } finally {
      await direct.flushForTests();
      await direct.close();
      await viaProxy.close();
      proxy.dropConnections();
    }
  });

  it('reconnects after dropped connection', async () => {
    await withProxiedStore(2000, async (store, proxy) => {
      await store.scheduleDeadline('alice', 1_000);
      proxy.dropConnections();

      // The next command waits for the reconnection instead of failing. A
      // reconnection slower than the 2000 ms command timeout fails the command.
      expect(await store.peekDeadline('alice')).toBe(1_000);
    });
  });

  it('stopped server fails within timeout', async () => {
    const proxy = await startProxy(redisUrl() as string);
    const store = storeVia(proxy.port, 300);
    try {
      await store.ping();
      await new Promise<void>((resolve) => {
        server?.close(() => resolve());
        proxy.dropConnections();
      });
      server = undefined;

      // Nothing listens any more, so only the 300 ms wait for a connection ends the ping.
      const error = await expectDomainError(store.ping(), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
      expect(error.message, 'message').toContain('not connected within 300 ms');
    } finally {
      await store.close();
    }
  });

  it('unreachable port fails fast', async () => {
    const port = await freePort();
    const store = createRedisStore({
      url: `redis://127.0.0.1:${port}`,
      keyPrefix: 'test:unreachable:',
      commandTimeoutMs: 300,
      connectTimeoutMs: 300,
      logger,
    });
    try {
      const error = await expectDomainError(store.ping(), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');

      expect(error.message, 'message').toContain('Redis is unavailable');
      // Nothing ever listens, so only the 300 ms wait for a connection ends the ping.
      expect(error.message, 'message').toContain('not connected within 300 ms');
    } finally {
      await store.close();
    }
  });

  it('silent server times out', async () => {
    const sockets: Socket[] = [];
    // Accepts connections and never replies, like a hung Redis.
    const port = await listen((socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
    });
    const store = createRedisStore({
      url: `redis://127.0.0.1:${port}`,
      keyPrefix: 'test:silent:',
      commandTimeoutMs: 300,
      connectTimeoutMs: 300,
      logger,
    });
    try {
      const error = await expectDomainError(
        store.acquireUserLock('alice', { ttlMs: 1000, waitMs: 0 }),
        'SERVICE_UNAVAILABLE',
        'REDIS_UNAVAILABLE',
      );

      // The server never replies, so only the 300 ms wait for a connection ends the call.
      expect(error.message, 'message').toContain('not connected within 300 ms');
    } finally {
      await store.close();
      for (const socket of sockets) {
        socket.destroy();
      }
    }
  });

  it('logs status changes without password', async () => {
    const port = await freePort();
    const lines: string[] = [];
    const capturingLogger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
    const store = createRedisStore({
      url: `redis://:hunter2-secret@127.0.0.1:${port}`,
      keyPrefix: 'test:logging:',
      commandTimeoutMs: 300,
      connectTimeoutMs: 300,
      logger: capturingLogger,
    });
    try {
      await expectDomainError(store.ping(), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
    } finally {
      await store.close();
    }
    await sleep(20);

    const output = lines.join('');
    expect(output).toContain('redis connection');
    expect(output).toContain('-> reconnecting');
    expect(output).toContain(`redis://:***@127.0.0.1:${port}`);
    expect(output).not.toContain('hunter2-secret');
  });

  // The command timeout is an hour, far beyond this test's timeout, so a
  // closed store that waited for a connection would make the test time out.
  it('closed store fails at once', { timeout: 10_000 }, async () => {
    const store = createRedisStore({
      url: redisUrl() as string,
      keyPrefix: 'test:closed:',
      commandTimeoutMs: 3_600_000,
      connectTimeoutMs: 2000,
      logger,
    });
    await store.ping();
    await store.close();

    const error = await expectDomainError(store.ping(), 'SERVICE_UNAVAILABLE', 'REDIS_UNAVAILABLE');
    expect(error.message, 'message').toContain('the store is closed');
  });
});
