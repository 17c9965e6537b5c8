/**
 * The coordination store: short-lived shared state that lets several
 * processes work on the same users safely. Two implementations exist,
 * `createRedisStore` (Redis, for several processes) and `createMemoryStore`
 * (in process, for a single process and for tests). Both follow this contract.
 *
 * Nothing here is the system of record. The event log in PostgreSQL is, and
 * everything in this store can be rebuilt from it or simply expires.
 */

/** The run of the Redis server that a seed of the deadline set wrote to, from `startDeadlineSeed`. */
export interface DeadlineSeed {
  /** Member of the deadline set that marks it complete on that run. */
  readonly marker: string;
}

/** An exclusive per-user lock held by one request or sweeper. */
export interface UserLock {
  userId: string;
  /** Random value that identifies this holder. Only the holder can release or extend the lock. */
  token: string;
  /**
   * Fencing number from a per-user counter that grows at every acquisition, so
   * a later holder always has a larger fence. The database rejects writes that
   * carry a smaller fence than the last one it saw, which stops a holder whose
   * lock expired mid-work from overwriting its successor.
   */
  fence: number;
  /**
   * The user's serialized engine state, read atomically with the lock (null
   * when none is stored). Only the lock holder writes the state, so it stays
   * current while the lock is held. The holder updates this field when it
   * saves or deletes the state. Undefined means unknown, so read it from the store.
   */
  state?: string | null;
}

export interface AcquireUserLockOptions {
  /** Lifetime of the lock unless extended. */
  ttlMs: number;
  /** Maximum time to wait while another holder has the lock. 0 tries once. */
  waitMs: number;
}

/** A fixed-window counter after an increment or read. */
export interface WindowCount {
  /** Hits in the current window. 0 when the window has no hits. */
  count: number;
  /** Time until the window ends and the count returns to 0. 0 when the count is 0. */
  resetInMs: number;
}

export interface CoordinationStore {
  /**
   * Takes the user's lock, waiting with short random sleeps while another
   * holder has it.
   *
   * @throws DomainError SERVICE_UNAVAILABLE with reason `USER_BUSY` when the
   *   lock is still taken after `waitMs`.
   */
  acquireUserLock(userId: string, options: AcquireUserLockOptions): Promise<UserLock>;

  /** Releases the lock if this holder still has it. Returns false when it had already expired or passed to another holder. */
  releaseUserLock(lock: UserLock): Promise<boolean>;

  /** Resets the lock's lifetime to `ttlMs` if this holder still has it, and returns whether it did. */
  extendUserLock(lock: UserLock, ttlMs: number): Promise<boolean>;

  /** Returns the user's serialized engine state, or null when none is stored. */
  loadUserState(userId: string): Promise<string | null>;

  /**
   * Stores the user's engine state, but only while `lock` is still the user's
   * current lock. Returns false, and writes nothing, when the lock was lost.
   */
  saveUserState(lock: UserLock, state: string): Promise<boolean>;

  deleteUserState(userId: string): Promise<void>;

  /**
   * Sets the user's next auto-close deadline in ms since the epoch, or removes
   * it when `atMs` is null.
   */
  scheduleDeadline(userId: string, atMs: number | null): Promise<void>;

  /**
   * Sets the user's deadline to `atMs` when the user has none or a later
   * one, and leaves an earlier deadline or a claim as it is.
   */
  scheduleDeadlineIfEarlier(userId: string, atMs: number): Promise<void>;

  /**
   * Atomically takes up to `limit` users whose deadline is at or before
   * `nowMs`, or whose claim is at least `leaseMs` old, and records the claim
   * at `nowMs` in place of the deadline. Concurrent callers never get the
   * same user for the same deadline. A claimed user whose sweeper crashed
   * comes back once the lease ends. The claimer is expected to schedule the
   * real next deadline, or null, when it finishes. A claimed user stays due
   * for `dueUsers` and `peekDeadline`, so reads can settle it meanwhile.
   */
  claimDueUsers(nowMs: number, leaseMs: number, limit: number): Promise<string[]>;

  /**
   * Returns the user's scheduled deadline in ms since the epoch, or null.
   * For a claimed user it returns the claim time, when the user was due.
   */
  peekDeadline(userId: string): Promise<number | null>;

  /** Returns what `peekDeadline` returns for each user, in the order of `userIds`, with one round trip. */
  peekDeadlines(userIds: readonly string[]): Promise<Array<number | null>>;

  /**
   * Returns up to `limit` users whose deadline is at or before `nowMs`,
   * claimed users among them, without claiming them. Claimed users come
   * first, then the others earliest deadline first.
   */
  dueUsers(nowMs: number, limit: number): Promise<string[]>;

  /** Counts the users whose deadline is at or before `nowMs`, claimed users among them, in one round trip. */
  countDueUsers(nowMs: number): Promise<number>;

  /**
   * Returns the run of the Redis server that a seed of the deadline set starts
   * on. Pass it to `markDeadlinesComplete` once the seed has written every
   * deadline.
   */
  startDeadlineSeed(): Promise<DeadlineSeed>;

  /**
   * Records that the deadline set contains the deadline of every user who needs
   * one, and returns true. The record lives in the deadline set, so that
   * whatever deletes the set also deletes the record, even when it deletes keys
   * one at a time. When the Redis server restarted since `seed` was taken, the
   * deadlines written before the restart may be lost, so it records nothing and
   * returns false.
   */
  markDeadlinesComplete(seed: DeadlineSeed): Promise<boolean>;

  /**
   * Returns whether the deadline set still carries the record of
   * `markDeadlinesComplete`. The Redis store counts only a record made while
   * the current run of the Redis server ran, so a restart reports false.
   */
  deadlinesComplete(): Promise<boolean>;

  /**
   * Counts one hit in a fixed window of `windowMs` that starts at the first
   * hit. The key is used as given, so callers should hash or bound user input.
   */
  incrementWindowCounter(key: string, windowMs: number): Promise<WindowCount>;

  /**
   * Takes one hit back from a window counter, as for an attempt that turned
   * out not to count. The window keeps its end, the counter is deleted at
   * zero, and a missing counter stays missing.
   */
  decrementWindowCounter(key: string): Promise<WindowCount>;

  /** Reads a window counter without counting a hit. */
  getWindowCounter(key: string): Promise<WindowCount>;

  resetCounter(key: string): Promise<void>;

  /**
   * Adds `member` to the set of running attempts at `key` and returns how
   * many members it holds. Each member leaves the set `ttlMs` after it was
   * added, so members that are never removed, such as those of a process that
   * stopped, stop counting on their own. The key is used as given, as for
   * window counters.
   */
  addRunning(key: string, member: string, ttlMs: number): Promise<number>;

  /** Removes `member` from the set of running attempts at `key`; a member that is gone already is ignored. */
  removeRunning(key: string, member: string): Promise<void>;

  /** Sends a PING, and rejects with SERVICE_UNAVAILABLE when the store does not respond. */
  ping(): Promise<void>;

  /**
   * Returns the ioredis status of the connection to Redis, such as `ready`
   * or `reconnecting`, or null for a store without a connection.
   */
  connectionStatus(): string | null;

  /** Releases connections and timers. Later calls fail with SERVICE_UNAVAILABLE. */
  close(): Promise<void>;

  /** Deletes every key this store owns (its key prefix only). For tests. */
  flushForTests(): Promise<void>;
}
