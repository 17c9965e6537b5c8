/**
 * Coordination store on Redis through ioredis. The key layout is described in
 * keys.ts and the Lua scripts in scripts.ts.
 *
 * NOTE: this uses a standalone ioredis client. The key layout fits Redis
 * Cluster, but a cluster also needs ioredis's Cluster client and a
 * flushForTests that scans every node, and neither exists yet.
 */
import { ReplyError, type Redis } from 'ioredis';
import type { Logger } from 'pino';

import { openRedisConnection, redisUnavailable } from './connection.js';
import type {
  AcquireUserLockOptions,
  CoordinationStore,
  DeadlineSeed,
  UserLock,
  WindowCount,
} from './coordination-store.js';
import { checkUserId, createStoreKeys, type StoreKeys } from './keys.js';
import {
  acquireUserLockScript,
  claimDueUsersScript,
  extendUserLockScript,
  addRunningScript,
  decrementWindowCounterScript,
  getWindowCounterScript,
  incrementWindowCounterScript,
  releaseUserLockScript,
  saveUserStateScript,
  type ScriptDefinition,
} from './scripts.js';
import {
  acquireWithWait,
  checkPositiveInteger,
  checkTimestampMs,
  deadlineOfScore,
  DEFAULT_USER_STATE_IDLE_TTL_MS,
} from './store-common.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL. */
  url: string;
  /** Prepended to every key, for example `em:`. Must be non-empty and free of braces. */
  keyPrefix: string;
  /** Maximum time for one command, including any wait for a connection. */
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  /**
   * Time after the last lock acquisition or state save of a user at which
   * the user's fence and engine state keys expire. Default
   * DEFAULT_USER_STATE_IDLE_TTL_MS. See acquireUserLockScript for why an
   * expired fence is safe.
   */
  userStateIdleTtlMs?: number;
  logger: Logger;
}

type ScriptReply = number | string | null | ScriptReply[];

/** The client with the store's Lua scripts registered as commands. */
interface ScriptedRedis extends Redis {
  emAcquireUserLock(
    lockKey: string,
    fenceKey: string,
    stateKey: string,
    token: string,
    ttlMs: number,
    idleTtlMs: number,
  ): Promise<[number, string | null]>;
  emReleaseUserLock(lockKey: string, token: string): Promise<number>;
  emExtendUserLock(lockKey: string, token: string, ttlMs: number): Promise<number>;
  emSaveUserState(lockKey: string, stateKey: string, token: string, state: string, idleTtlMs: number): Promise<number>;
  emClaimDueUsers(deadlinesKey: string, nowMs: number, leaseMs: number, limit: number): Promise<string[]>;
  emIncrementWindowCounter(counterKey: string, windowMs: number): Promise<ScriptReply>;
  emGetWindowCounter(counterKey: string): Promise<ScriptReply>;
  emDecrementWindowCounter(counterKey: string): Promise<ScriptReply>;
  emAddRunning(runningKey: string, member: string, ttlMs: number): Promise<number>;
}

const SCRIPTS: Record<string, ScriptDefinition> = {
  emAcquireUserLock: acquireUserLockScript,
  emReleaseUserLock: releaseUserLockScript,
  emExtendUserLock: extendUserLockScript,
  emSaveUserState: saveUserStateScript,
  emClaimDueUsers: claimDueUsersScript,
  emIncrementWindowCounter: incrementWindowCounterScript,
  emGetWindowCounter: getWindowCounterScript,
  emDecrementWindowCounter: decrementWindowCounterScript,
  emAddRunning: addRunningScript,
};

const SCAN_BATCH_SIZE = 500;

/**
 * Prefix of the member of the deadline set whose presence means the set is
 * complete. The member is `complete:<run_id>`, with the `run_id` of the Redis
 * server that had the complete set, so a server that restarted, even from a
 * snapshot that contains the marker, or a replica that took over, has no marker.
 * Its score is +inf, so no claim or read of due users returns it, and it is
 * no user id, because user ids are UUIDs.
 */
const DEADLINES_COMPLETE_MEMBER = 'complete';

/**
 * Error replies of a Redis server that replies to INFO again once a passing state
 * ends, such as a script that runs past busy-reply-threshold (BUSY) or an RDB
 * load (LOADING). Other error replies, such as NOPERM from an ACL or an
 * unknown command from a proxy without INFO, deny INFO for good.
 */
const PASSING_STATE_REPLY = /^(BUSY|LOADING|MASTERDOWN|NOAUTH|TRYAGAIN|CLUSTERDOWN)\b/;

/** Marks an operation that may safely run twice. */
const IDEMPOTENT = { idempotent: true };

/** Attempts of the release that follows an acquisition whose reply was lost. */
const LOST_ACQUIRE_RELEASE_ATTEMPTS = 3;

/**
 * Connects to Redis and returns the store. The connection is opened in the
 * background: the first command waits for it up to the command timeout.
 *
 * Every Redis failure, including a timeout and a lost connection, surfaces as
 * DomainError SERVICE_UNAVAILABLE with reason `REDIS_UNAVAILABLE`, and is
 * logged with the operation name.
 */
export function createRedisStore(options: RedisStoreOptions): CoordinationStore {
  const keys: StoreKeys = createStoreKeys(options.keyPrefix);
  checkPositiveInteger('commandTimeoutMs', options.commandTimeoutMs);
  checkPositiveInteger('connectTimeoutMs', options.connectTimeoutMs);
  const idleTtlMs = options.userStateIdleTtlMs ?? DEFAULT_USER_STATE_IDLE_TTL_MS;
  checkPositiveInteger('userStateIdleTtlMs', idleTtlMs);

  const connection = openRedisConnection(options);
  for (const [name, script] of Object.entries(SCRIPTS)) {
    connection.client.defineCommand(name, script);
  }
  const redis = connection.client as ScriptedRedis;

  /**
   * Returns the deadline set's marker for the current Redis server run. The
   * `run_id` of INFO changes at every restart of the server. A server whose
   * INFO has none, such as a proxy that hides it, gets the bare prefix.
   */
  async function completeMarker(): Promise<string> {
    const info = await run('serverRunId', () => redis.info('server').catch(withoutInfo), IDEMPOTENT);
    const runId = /^run_id:([0-9a-f]+)\s*$/m.exec(info)?.[1];
    return runId === undefined ? DEADLINES_COMPLETE_MEMBER : `${DEADLINES_COMPLETE_MEMBER}:${runId}`;
  }

  let infoRejectionLogged = false;
  /**
   * Turns a rejected INFO, as from a server that renamed the command or an
   * ACL user without it, into an empty reply, so that the sweeper still runs,
   * with the bare marker. Connection failures and passing states such as
   * BUSY or LOADING stay errors.
   */
  function withoutInfo(error: unknown): string {
    if (!(error instanceof ReplyError) || PASSING_STATE_REPLY.test((error as Error).message)) {
      throw error;
    }
    if (!infoRejectionLogged) {
      infoRejectionLogged = true;
      options.logger.warn(
        { err: error },
        'Redis rejected INFO, so a restart of Redis from an older snapshot cannot be detected and its deadlines stay until they pass',
      );
    }
    return '';
  }

  /**
   * Runs one operation against Redis and converts any failure to
   * REDIS_UNAVAILABLE. An idempotent operation that fails early, typically
   * because the connection closed under it, is retried once on the next
   * connection. Operations whose second run could return a different result
   * (lock acquisition and release, claims, counter increments) are never
   * retried.
   */
  async function run<T>(
    operation: string,
    command: () => Promise<T>,
    { idempotent = false } = {},
  ): Promise<T> {
    const started = performance.now();
    await connection.waitUntilReady(operation);
    try {
      return await command();
    } catch (error) {
      connection.logCommandFailure(operation, error);
      connection.checkAfterTimeout(error);

      // A timeout has used up the budget already, so only an early failure is retried.
      const retry = idempotent && performance.now() - started < options.commandTimeoutMs / 2;
      if (!retry) {
        throw toUnavailable(error);
      }
    }

    await connection.waitUntilReady(operation);
    try {
      return await command();
    } catch (error) {
      connection.logCommandFailure(operation, error);
      connection.checkAfterTimeout(error);
      throw toUnavailable(error);
    }
  }

  /**
   * Releases a lock whose acquisition may have run although its reply was
   * lost, so that the user is not blocked until the TTL ends. The first
   * release goes out on the current connection at once, behind the PING that
   * run() sent after the timeout. Up to three more wait until the connection
   * takes commands again, which the check and a new connection can delay by
   * two command timeouts.
   * NOTE: while Redis is unreachable all of them fail, and the lock then
   * lasts its full TTL.
   */
  function releaseAfterLostReply(lockKey: string, token: string): void {
    redis.emReleaseUserLock(lockKey, token).catch(() => undefined);
    void (async () => {
      for (let attempt = 1; attempt <= LOST_ACQUIRE_RELEASE_ATTEMPTS; attempt += 1) {
        try {
          await run('releaseUserLock', () => redis.emReleaseUserLock(lockKey, token));
          return;
        } catch {
          // run() logged the failure; the next attempt waits for the connection again.
        }
      }
    })();
  }

  return {
    async acquireUserLock(userId: string, lockOptions: AcquireUserLockOptions): Promise<UserLock> {
      const lockKey = keys.userLock(userId);
      const fenceKey = keys.userFence(userId);
      const stateKey = keys.userState(userId);
      return acquireWithWait(userId, lockOptions, async (token) => {
        let reply: [number, string | null];
        try {
          reply = await run('acquireUserLock', () =>
            redis.emAcquireUserLock(lockKey, fenceKey, stateKey, token, lockOptions.ttlMs, idleTtlMs),
          );
        } catch (error) {
          // The script may have run even though its reply was lost.
          releaseAfterLostReply(lockKey, token);
          throw error;
        }
        const [fence, state] = reply;
        return Number(fence) === 0 ? null : { fence: Number(fence), state: state ?? null };
      });
    },

    async releaseUserLock(lock: UserLock): Promise<boolean> {
      const lockKey = keys.userLock(lock.userId);
      const released = await run('releaseUserLock', () => redis.emReleaseUserLock(lockKey, lock.token));
      return released === 1;
    },

    async extendUserLock(lock: UserLock, ttlMs: number): Promise<boolean> {
      checkPositiveInteger('ttlMs', ttlMs);
      const lockKey = keys.userLock(lock.userId);
      const extended = await run(
        'extendUserLock',
        () => redis.emExtendUserLock(lockKey, lock.token, ttlMs),
        IDEMPOTENT,
      );
      return extended === 1;
    },

    async loadUserState(userId: string): Promise<string | null> {
      const stateKey = keys.userState(userId);
      return run('loadUserState', () => redis.get(stateKey), IDEMPOTENT);
    },

    async saveUserState(lock: UserLock, state: string): Promise<boolean> {
      const lockKey = keys.userLock(lock.userId);
      const stateKey = keys.userState(lock.userId);
      const saved = await run(
        'saveUserState',
        () => redis.emSaveUserState(lockKey, stateKey, lock.token, state, idleTtlMs),
        IDEMPOTENT,
      );
      return saved === 1;
    },

    async deleteUserState(userId: string): Promise<void> {
      const stateKey = keys.userState(userId);
      await run('deleteUserState', () => redis.unlink(stateKey), IDEMPOTENT);
    },

    async scheduleDeadline(userId: string, atMs: number | null): Promise<void> {
      checkUserId(userId);
      const deadlinesKey = keys.deadlines();
      if (atMs === null) {
        await run('scheduleDeadline', () => redis.zrem(deadlinesKey, userId), IDEMPOTENT);
        return;
      }
      checkTimestampMs('atMs', atMs);
      await run('scheduleDeadline', () => redis.zadd(deadlinesKey, atMs, userId), IDEMPOTENT);
    },

    async scheduleDeadlineIfEarlier(userId: string, atMs: number): Promise<void> {
      checkUserId(userId);
      checkTimestampMs('atMs', atMs);
      const deadlinesKey = keys.deadlines();
      // ZADD LT adds a missing member too. It needs Redis 6.2 or later.
      await run('scheduleDeadlineIfEarlier', () => redis.zadd(deadlinesKey, 'LT', atMs, userId), IDEMPOTENT);
    },

    async claimDueUsers(nowMs: number, leaseMs: number, limit: number): Promise<string[]> {
      checkTimestampMs('nowMs', nowMs);
      checkPositiveInteger('leaseMs', leaseMs);
      checkPositiveInteger('limit', limit);
      const deadlinesKey = keys.deadlines();
      return run('claimDueUsers', () => redis.emClaimDueUsers(deadlinesKey, nowMs, leaseMs, limit));
    },

    async dueUsers(nowMs: number, limit: number): Promise<string[]> {
      checkTimestampMs('nowMs', nowMs);
      checkPositiveInteger('limit', limit);
      const deadlinesKey = keys.deadlines();
      return run('dueUsers', () => redis.zrange(deadlinesKey, '-inf', String(nowMs), 'BYSCORE', 'LIMIT', 0, limit), IDEMPOTENT);
    },

    async countDueUsers(nowMs: number): Promise<number> {
      checkTimestampMs('nowMs', nowMs);
      const deadlinesKey = keys.deadlines();
      // A claim's score is negative, below every deadline, so the range counts claimed users too.
      return run('countDueUsers', () => redis.zcount(deadlinesKey, '-inf', String(nowMs)), IDEMPOTENT);
    },

    async peekDeadline(userId: string): Promise<number | null> {
      checkUserId(userId);
      const deadlinesKey = keys.deadlines();
      const score = await run('peekDeadline', () => redis.zscore(deadlinesKey, userId), IDEMPOTENT);
      return score === null ? null : deadlineOfScore(Number(score));
    },

    async peekDeadlines(userIds: readonly string[]): Promise<Array<number | null>> {
      userIds.forEach(checkUserId);
      if (userIds.length === 0) {
        return [];
      }
      const deadlinesKey = keys.deadlines();
      // ZMSCORE needs Redis 6.2 or later.
      const scores = await run('peekDeadlines', () => redis.zmscore(deadlinesKey, [...userIds]), IDEMPOTENT);
      return scores.map((score) => (score === null ? null : deadlineOfScore(Number(score))));
    },

    async startDeadlineSeed(): Promise<DeadlineSeed> {
      return { marker: await completeMarker() };
    },

    async markDeadlinesComplete(seed: DeadlineSeed): Promise<boolean> {
      const deadlinesKey = keys.deadlines();
      const marker = await completeMarker();
      if (marker !== seed.marker) {
        return false;
      }
      await run('markDeadlinesComplete', () => redis.zadd(deadlinesKey, '+inf', marker), IDEMPOTENT);
      // Markers of earlier server runs no longer count, so they are removed.
      const markers = await run('markDeadlinesComplete', () => redis.zrangebyscore(deadlinesKey, '+inf', '+inf'), IDEMPOTENT);
      const stale = markers.filter((member) => member.startsWith(DEADLINES_COMPLETE_MEMBER) && member !== marker);
      if (stale.length > 0) {
        await run('markDeadlinesComplete', () => redis.zrem(deadlinesKey, ...stale), IDEMPOTENT);
      }
      return true;
    },

    async deadlinesComplete(): Promise<boolean> {
      const deadlinesKey = keys.deadlines();
      const marker = await completeMarker();
      const score = await run('deadlinesComplete', () => redis.zscore(deadlinesKey, marker), IDEMPOTENT);
      return score !== null;
    },

    async incrementWindowCounter(key: string, windowMs: number): Promise<WindowCount> {
      checkPositiveInteger('windowMs', windowMs);
      const counterKey = keys.counter(key);
      const reply = await run('incrementWindowCounter', () =>
        redis.emIncrementWindowCounter(counterKey, windowMs),
      );
      return parseWindowCount(reply);
    },

    async decrementWindowCounter(key: string): Promise<WindowCount> {
      const counterKey = keys.counter(key);
      const reply = await run('decrementWindowCounter', () => redis.emDecrementWindowCounter(counterKey));
      return parseWindowCount(reply);
    },

    async getWindowCounter(key: string): Promise<WindowCount> {
      const counterKey = keys.counter(key);
      const reply = await run(
        'getWindowCounter',
        () => redis.emGetWindowCounter(counterKey),
        IDEMPOTENT,
      );
      return parseWindowCount(reply);
    },

    async resetCounter(key: string): Promise<void> {
      const counterKey = keys.counter(key);
      await run('resetCounter', () => redis.unlink(counterKey), IDEMPOTENT);
    },

    async addRunning(key: string, member: string, ttlMs: number): Promise<number> {
      checkPositiveInteger('ttlMs', ttlMs);
      const runningKey = keys.counter(key);
      return Number(await run('addRunning', () => redis.emAddRunning(runningKey, member, ttlMs)));
    },

    async removeRunning(key: string, member: string): Promise<void> {
      const runningKey = keys.counter(key);
      await run('removeRunning', () => redis.zrem(runningKey, member), IDEMPOTENT);
    },

    async ping(): Promise<void> {
      await run('ping', () => redis.ping(), IDEMPOTENT);
    },

    connectionStatus(): string {
      return connection.client.status;
    },

    async close(): Promise<void> {
      await connection.close();
    },

    async flushForTests(): Promise<void> {
      const pattern = keys.scanPattern();
      let cursor = '0';
      do {
        const [nextCursor, found] = await run(
          'flushForTests',
          () => redis.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_BATCH_SIZE),
          IDEMPOTENT,
        );
        if (found.length > 0) {
          await run('flushForTests', () => redis.unlink(...found), IDEMPOTENT);
        }
        cursor = nextCursor;
      } while (cursor !== '0');
    },
  };
}

function toUnavailable(error: unknown): Error {
  const reason = error instanceof Error ? error.message : String(error);
  const unavailable = redisUnavailable(reason);
  unavailable.cause = error;
  return unavailable;
}

function parseWindowCount(reply: ScriptReply): WindowCount {
  if (!Array.isArray(reply) || reply.length !== 2) {
    throw new Error(`Internal error: a window counter script returned ${JSON.stringify(reply)}.`);
  }
  return { count: Number(reply[0]), resetInMs: Number(reply[1]) };
}
