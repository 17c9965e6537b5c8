/**
 * Event intake: validates a batch (every problem at once), stores its events
 * in PostgreSQL under the users' locks (the acknowledgement point, idempotent
 * by client id), then derives segments and corrections for each user.
 */
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import type { Viewer } from '../auth/viewer.js';
import { DomainError, badInput, markStoredBefore } from '../domain/errors.js';
import { characterCount, describeInstantRange, exceedsCharacters, firstCharacters, isBlank, isStorableInstant, jsonProblem, MAX_JSON_DEPTH, quoteText, textProblem } from '../domain/storable.js';
import { classifyArrival } from '../domain/pairing/intake-rules.js';
import type { PairCatalog } from '../domain/pairing/types.js';
import {
  appendClientEvents,
  CountersMovedError,
  PairTypesChangedError,
  loadReply,
  loadIntakeSnapshot,
  type FoldInput,
  type IntakeSnapshot,
  type NewClientEvent,
  type StoredClientEvent,
  type UserCounters,
} from '../storage/postgres/intake-store.js';
import { finishPendingReplay, pendingReplayVersion } from '../storage/postgres/replay-store.js';
import { inJsonbKeyOrder, type EventRecord, type SegmentRecord } from '../storage/postgres/records.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { CoordinationStore, UserLock } from '../storage/redis/coordination-store.js';
import { userBusyError } from '../storage/redis/store-common.js';
import { countersInState, type DeriveResult, type Deriver, type FaultHook, type JustStored, type WrittenRows } from './derive.js';
import { ConcurrencyLimit } from './concurrency.js';
import type { Clock } from './index.js';
import { MAX_PAIR_TYPE_NAME_LENGTH, buildCatalog, type PairTypeService } from './pair-types.js';
import { UserTurns, type UserTurn } from './user-turns.js';
import { isUuid, sameUserId } from '../domain/user-id.js';
import type { AppMetrics } from '../metrics/metrics.js';

export interface EventInput {
  id?: string | null | undefined;
  type: string;
  isPair?: boolean | null | undefined;
  pairType?: string | null | undefined;
  pairKey?: string | null | undefined;
  occurredAt?: Date | null | undefined;
  meta?: Record<string, unknown> | null | undefined;
  userId?: string | null | undefined;
}

/**
 * The name that a caller's clients send each field of `EventInput` under,
 * which the intake's error messages use, such as `pair_key` for `pairKey`.
 */
export type EventFieldNames = Readonly<Record<keyof EventInput, string>>;

/** The property names of `EventInput`, which GraphQL's `EventInput` type uses too, and the default names of `send` and `check`. */
export const EVENT_INPUT_FIELD_NAMES: EventFieldNames = {
  id: 'id',
  type: 'type',
  isPair: 'isPair',
  pairType: 'pairType',
  pairKey: 'pairKey',
  occurredAt: 'occurredAt',
  meta: 'meta',
  userId: 'userId',
};

/** The wait of one read for a busy user's lock, which other reads of the user join. */
interface WaitedReadSettle {
  /** Resolves to whether the read got the lock, false when the wait ended with the user still locked. */
  locked: Promise<boolean>;
  /** The `performance.now()` value at which the wait ends. */
  waitEnd: number;
}

/** Resolves as `locked` does, or to null when `waitEnd`, a `performance.now()` value, passes first. */
async function untilWaitEnd(locked: Promise<boolean>, waitEnd: number): Promise<boolean | null> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), Math.max(0, waitEnd - performance.now()));
  });
  try {
    return await Promise.race([locked, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

export interface SendEventResult {
  event: EventRecord;
  duplicate: boolean;
  corrections: EventRecord[];
  closedSegments: SegmentRecord[];
  /** Instant from which this request recomputed the stored rows of the event's user because of a late event, or null. */
  recomputedFrom: Date | null;
}

export interface SendOutcome {
  results: SendEventResult[];
  storedCount: number;
  duplicateCount: number;
}

export interface InvalidItem {
  index: number;
  reason: string;
  message: string;
}

export interface IntakeOptions {
  sql: SqlClient;
  store: CoordinationStore;
  pairTypes: PairTypeService;
  deriver: Deriver;
  clock: Clock;
  logger: Logger;
  maxBatchSize: number;
  maxMetaBytes: number;
  clockSkewSeconds: number;
  latenessHorizonSeconds: number;
  userLockTtlMs: number;
  userLockWaitMs: number;
  /** Maximum time a holder keeps its user lock by extending it. The lock expires by then. */
  userLockMaxHoldMs: number;
  /** Users that the reads of this process settle at once (READ_SETTLE_CONCURRENCY). */
  readSettleConcurrency: number;
  /** Maximum number of due users that a read of every user settles (READ_SETTLE_MAX_USERS). */
  readSettleMaxUsers: number;
  /** Maximum time in ms, in all, that a read waits for the locks of due users (READ_SETTLE_WAIT_MS). */
  readSettleWaitMs: number;
  fault?: FaultHook;
  /** Counts stored events, duplicates, rejected batches and busy users, or null when METRICS_PORT is unset. */
  metrics?: AppMetrics | null;
}

export const MAX_TYPE_LENGTH = 128;
export const MAX_PAIR_KEY_LENGTH = 256;
export const MAX_CLIENT_ID_LENGTH = 256;
/** Attempts, each a read and a write, of one store before it gives up on users whose events other requests keep storing. */
const STORE_ATTEMPTS = 3;
/**
 * Requests of one user and at most this many events first write with the
 * counters that came with the lock, and read only when that write fails. A larger batch
 * more often repeats an earlier event, which fails the write, and its failed
 * write costs more than the read it would save.
 */
const GUESSED_COUNTERS_MAX_EVENTS = 4;
/** Users whose deadlines one Redis round trip reads when a read checks the users it names. */
const DEADLINE_PEEK_CHUNK = 1000;
/**
 * Users that one read settles at once, within READ_SETTLE_CONCURRENCY for
 * the process, so that the settles of other reads take turns with a read
 * that settles many users.
 */
const SETTLES_PER_READ = 2;

interface ValidItem {
  index: number;
  userId: string;
  clientId: string | null;
  type: string;
  role: 'START' | 'END' | 'POINT';
  pairType: string | null;
  pairKey: string | null;
  occurredAt: number | null;
  meta: Record<string, unknown> | null;
}

/** A batch that the caller of `check` rejects, with the position in its request of each input. */
interface RejectedBatch {
  positions?: readonly number[] | undefined;
}

/** The valid items of a batch, and the number of pair types their roles were decided with. */
interface ValidBatch {
  items: ValidItem[];
  pairTypeCount: number;
}

/** Problems that the message of an INVALID_EVENTS error lists; `invalidItems` lists them all. */
const MESSAGE_MAX_INVALID_ITEMS = 5;

/**
 * Builds the message of an INVALID_EVENTS error: how many events of the batch
 * are invalid, and the first problems with the index of their event.
 */
export function invalidEventsMessage(invalidCount: number, batchSize: number, invalid: readonly InvalidItem[]): string {
  const listed = invalid
    .slice(0, MESSAGE_MAX_INVALID_ITEMS)
    .map((item) => `#${item.index}: ${item.message}`)
    .join('; ');
  const more = invalid.length > MESSAGE_MAX_INVALID_ITEMS ? '; ...' : '';
  return `${invalidCount} of ${batchSize} events are invalid; nothing was stored. ${listed}${more}`;
}

/** Returns whether `error` rejects a batch with an invalid item of the given reason. */
function hasInvalidItem(error: unknown, reason: string): boolean {
  if (!(error instanceof DomainError)) {
    return false;
  }
  const items = error.details.invalidItems;
  return Array.isArray(items) && items.some((item: InvalidItem) => item.reason === reason);
}

/** JSON with object keys sorted, so equal content compares equal whatever the key order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value as object)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Builds a snapshot from the counters saved with each user's engine state,
 * with no stored repeats. Returns null when a lock came without saved counters.
 */
function countersFromLocks(locks: readonly UserLock[]): IntakeSnapshot | null {
  const snapshot: IntakeSnapshot = { counters: new Map(), existing: new Map() };
  for (const lock of locks) {
    const counters = countersInState(lock.state);
    if (counters === null) {
      return null;
    }
    snapshot.counters.set(lock.userId, { id: lock.userId, ...counters });
  }
  return snapshot;
}

export class IntakeService {
  /** Turns of this process's requests for each user, taken before the shared lock. */
  private readonly turns: UserTurns;
  /** The turn behind each lock this process holds, and the function that stops extending both, called at the release. */
  private readonly holdOfLock = new WeakMap<UserLock, { turn: UserTurn; stopKeepAlive: () => void }>();

  /** Turns of the settles that reads run before they read, over all requests. */
  private readonly readSettles: ConcurrencyLimit;
  /**
   * The waited settles of busy users that reads of this process run, by
   * user, which other reads of the same user join instead of queueing for
   * the lock and deriving again.
   */
  private readonly waitedReadSettles = new Map<string, WaitedReadSettle>();

  constructor(private readonly options: IntakeOptions) {
    this.turns = new UserTurns(options.userLockTtlMs);
    this.readSettles = new ConcurrencyLimit(options.readSettleConcurrency);
  }

  /** Number of this process's requests that have the user's turn or wait for it. */
  requestsInLine(userId: string): number {
    return this.turns.lineLength(userId);
  }

  /**
   * Stores and applies a batch in order. Throws BAD_USER_INPUT listing every
   * invalid item, storing nothing. Messages name the fields of the inputs by
   * `context.fieldNames`, EVENT_INPUT_FIELD_NAMES by default.
   */
  async send(
    viewer: Viewer,
    inputs: readonly EventInput[],
    context: { requestId?: string; fieldNames?: EventFieldNames } = {},
  ): Promise<SendOutcome> {
    const { sql, clock } = this.options;
    const fieldNames = context.fieldNames ?? EVENT_INPUT_FIELD_NAMES;
    this.checkBatchSize(inputs.length);

    let batch = await this.countRejection(this.validateBatch(viewer, inputs, { fieldNames }));
    const userIds = [...new Set(batch.items.map((item) => item.userId))].sort();
    const locks = await this.acquireLocks(userIds);
    try {
      // A watchdog deadline: should this process die anywhere between the
      // storage steps below, a sweeper settles the user once the lock expired.
      // The real next deadline replaces it when derivation finishes.
      for (const userId of userIds) {
        await this.options.store.scheduleDeadline(userId, clock.now() + this.options.userLockTtlMs);
      }
      const receivedAt = clock.now();
      let stored: Array<{ index: number; eventId: string; duplicate: boolean }>;
      let rows: NewClientEvent[];
      let foldInputs: ReadonlyMap<string, FoldInput>;
      try {
        for (let attempt = 1; ; attempt += 1) {
          try {
            ({ entries: stored, rows, inputs: foldInputs } = await this.store(batch.items, receivedAt, locks, batch.pairTypeCount, fieldNames));
            break;
          } catch (error) {
            if (!(error instanceof PairTypesChangedError)) {
              // Under the locks, the write finds client ids reused with other
              // content, which reject the batch as the checks above do.
              this.countRejectedBatch(error);
              throw error;
            }
            if (attempt >= STORE_ATTEMPTS) {
              throw new DomainError(
                'SERVICE_UNAVAILABLE',
                'PAIR_TYPES_BUSY',
                `Pair types were defined during each of ${STORE_ATTEMPTS} attempts to store the batch; nothing was stored. Retry the request.`,
              );
            }
            // Another process defined a pair type, which may give some of
            // these event types a role: decide the roles again from PostgreSQL.
            this.options.logger.info({ err: error, attempt, userIds }, 'pair types changed before the events write; checking the batch again');
            batch = await this.countRejection(this.validateBatch(viewer, inputs, { fresh: true, fieldNames }));
          }
        }
      } catch (error) {
        // Nothing was stored; a settle puts each user's real deadline back in
        // place of the watchdog.
        for (const lock of locks) {
          await this.options.deriver.derive(lock, clock.now()).catch((settleError: unknown) => {
            this.options.logger.warn({ err: settleError, userId: lock.userId }, 'restoring the deadline failed');
          });
        }
        throw error;
      }
      // Counted once the write committed, because the events stay stored
      // when the fold or the reply below fails.
      const duplicateCount = stored.filter((entry) => entry.duplicate).length;
      this.options.metrics?.eventsStored.inc(stored.length - duplicateCount);
      this.options.metrics?.eventsDuplicate.inc(duplicateCount);
      let results: SendEventResult[];
      try {
        for (const userId of userIds) {
          this.options.fault?.('events-stored', userId);
        }

        // Each fold takes the events just stored from memory and reports which
        // it folded and what it wrote, so the reply reads only the rest.
        const known = new Map<string, EventRecord>();
        const written: WrittenRows = { corrections: [], closedSegments: [] };
        const recomputedFrom = new Map<string, Date>();
        for (const lock of locks) {
          const own = rows.filter((row) => row.userId === lock.userId);
          const derived = await this.options.deriver.derive(lock, clock.now(), justStoredOf(own, foldInputs.get(lock.userId)));
          if (derived.rewoundFrom !== null) {
            recomputedFrom.set(lock.userId, new Date(derived.rewoundFrom));
          }
          for (const row of own) {
            if (row.ignored || derived.folded.has(row.id)) {
              known.set(row.id, toStoredRecord(row, derived.orphans.has(row.id)));
            }
          }
          written.corrections.push(...derived.written.corrections);
          written.closedSegments.push(...derived.written.closedSegments);
        }

        const userOfItem = new Map(batch.items.map((item) => [item.index, item.userId]));
        const recomputedFromOf = (index: number) => recomputedFrom.get(userOfItem.get(index)!) ?? null;
        results = await this.buildResults(stored, userIds, known, written, recomputedFromOf);
      } catch (error) {
        // With the count recorded, the API layer reports the stored events,
        // so that the client does not send them again as new ones.
        if (rows.length > 0) {
          markStoredBefore(error, rows.length);
        }
        throw error;
      }
      this.options.logger.debug(
        { requestId: context.requestId, users: userIds.length, stored: stored.length - duplicateCount, duplicateCount },
        'events accepted',
      );
      return { results, storedCount: stored.length - duplicateCount, duplicateCount };
    } finally {
      await this.releaseLocks(locks);
    }
  }

  /**
   * Checks the items of a batch that the caller rejects for problems of its
   * own, without storing anything, so that one reply lists every problem.
   * Throws as `send` does for invalid items: FORBIDDEN when one names another
   * user, else BAD_USER_INPUT, each with `invalidItems`. Counts the batch as
   * rejected, so the caller must not count it again. Those items, and
   * their messages, number each input by its entry in `positions` (its
   * position in the caller's request), or by its index when that is omitted.
   * Messages name the fields of the inputs by `fieldNames`, as in `send`.
   */
  async check(
    viewer: Viewer,
    inputs: readonly EventInput[],
    { positions, fieldNames = EVENT_INPUT_FIELD_NAMES }: { positions?: readonly number[]; fieldNames?: EventFieldNames } = {},
  ): Promise<void> {
    // The caller rejects the batch whatever this finds, so it counts once
    // here: by the error thrown, or as INVALID_EVENTS, the caller's error.
    try {
      await this.validateBatch(viewer, inputs, { rejected: { positions }, fieldNames });
    } catch (error) {
      this.countRejectedBatch(error);
      throw error;
    }
    this.options.metrics?.batchesRejected.inc({ code: 'BAD_USER_INPUT', reason: 'INVALID_EVENTS' });
  }

  /**
   * Resolves as `validation` does, and counts a batch that it rejects for
   * its items, FORBIDDEN or BAD_USER_INPUT, in the metrics.
   */
  private async countRejection<T>(validation: Promise<T>): Promise<T> {
    if (!this.options.metrics) {
      return validation;
    }
    try {
      return await validation;
    } catch (error) {
      this.countRejectedBatch(error);
      throw error;
    }
  }

  private countRejectedBatch(error: unknown): void {
    if (error instanceof DomainError && (error.kind === 'BAD_USER_INPUT' || error.kind === 'FORBIDDEN')) {
      this.options.metrics?.batchesRejected.inc({ code: error.kind, reason: error.reason });
    }
  }

  /**
   * Validates a batch against the pair types, from the cache or, with
   * `fresh`, from PostgreSQL. Returns the items with the number of pair types
   * their roles come from, which the events write checks. `rejected`, set by
   * `check`, marks a batch that the caller rejects for problems of its own.
   */
  private async validateBatch(
    viewer: Viewer,
    inputs: readonly EventInput[],
    {
      fresh = false,
      rejected = null,
      fieldNames,
    }: { fresh?: boolean; rejected?: RejectedBatch | null; fieldNames: EventFieldNames },
  ): Promise<ValidBatch> {
    const pairTypes = await this.options.pairTypes.cachedList(
      inputs.map((input) => input.type).filter((type): type is string => typeof type === 'string'),
      fresh,
    );
    try {
      const catalog = buildCatalog(pairTypes, []);
      return { items: await this.validate(viewer, inputs, catalog, rejected, fresh, fieldNames), pairTypeCount: pairTypes.length };
    } catch (error) {
      // The cache can miss a pair type that another process defined within
      // the last second, and then rejects events that name it correctly.
      if (!fresh && hasInvalidItem(error, 'PAIR_MISMATCH')) {
        return this.validateBatch(viewer, inputs, { fresh: true, rejected, fieldNames });
      }
      throw error;
    }
  }

  /** Throws BAD_USER_INPUT for an empty batch, and LIMIT_EXCEEDED for one above MAX_BATCH_SIZE. */
  checkBatchSize(count: number): void {
    const { maxBatchSize } = this.options;
    let error: DomainError | null = null;
    if (count === 0) {
      error = badInput('EMPTY_BATCH', 'The batch is empty: send at least one event.');
    } else if (count > maxBatchSize) {
      error = new DomainError(
        'BAD_USER_INPUT',
        'LIMIT_EXCEEDED',
        `MAX_BATCH_SIZE: the batch has ${count} events, above the maximum of ${maxBatchSize}. Split it into smaller batches.`,
        { limit: 'MAX_BATCH_SIZE', value: count, max: maxBatchSize },
      );
    }
    if (error !== null) {
      this.countRejectedBatch(error);
      throw error;
    }
  }

  /**
   * Settles users whose deadline has passed, among `scope` (every user when
   * null), so that a read that follows shows their auto-closes without
   * waiting for the sweeper. Every user in a list is checked, and each due
   * one settled. Each settle uses a PostgreSQL connection, so a read runs
   * at most SETTLES_PER_READ of them at once, and the reads of the process
   * at most READ_SETTLE_CONCURRENCY. A user whose lock another request holds
   * is settled once that lock is released, with the time of the settle as
   * now, because the holder may have read the clock before the deadline and
   * then does not settle it. The read waits for such locks at most
   * READ_SETTLE_WAIT_MS in all, counted from the start of this call, and
   * shows a user still locked after that as stored. Failures are logged and leave
   * the read to go on with what is stored.
   */
  async settleDue(scope: readonly string[] | null): Promise<void> {
    const waitEnd = performance.now() + this.options.readSettleWaitMs;
    let due: string[];
    try {
      due = await this.dueUsersIn(scope, this.options.clock.now());
    } catch (error) {
      this.options.logger.warn({ err: error }, 'reading due deadlines before a read failed');
      return;
    }
    const perRead = new ConcurrencyLimit(Math.min(SETTLES_PER_READ, this.readSettles.max));
    await Promise.all(
      due.map((userId) =>
        perRead.run(() => this.settleForRead(userId, waitEnd)).catch((error: unknown) => {
          this.options.logger.warn({ err: error, userId }, 'settling a due user before a read failed');
        }),
      ),
    );
  }

  /**
   * Settles one due user for a read, waiting for its lock until `waitEnd`
   * (a `performance.now()` value) when another request holds it.
   *
   * `readSettles` limits the settles that use a PostgreSQL connection, so
   * the wait for a busy lock runs outside that limit: the settle enters it
   * only once it has the lock. Every task within the limit takes its lock
   * with no wait or already holds it, so a read that holds a lock while it
   * waits to enter cannot deadlock with them. The caller's per-read limit
   * applies during the wait, so one read waits for at most SETTLES_PER_READ
   * locks at once. Reads that find the user busy while another read of this
   * process waits for it join that wait, until their own `waitEnd` at most.
   * When that wait ends with the user still locked before this read's
   * `waitEnd`, the read goes on waiting on its own. When the joined settle
   * fails, only the read that started it fails and logs the error, and the
   * reads that joined it go on with what is stored.
   */
  private async settleForRead(userId: string, waitEnd: number): Promise<void> {
    for (;;) {
      try {
        await this.readSettles.run(() => this.settle(userId, 0));
        return;
      } catch (error) {
        if (!(error instanceof DomainError && error.reason === 'USER_BUSY')) {
          throw error;
        }
      }
      const waiting = this.waitedReadSettles.get(userId);
      if (waiting === undefined) {
        const locked = this.settleAfterWait(userId, waitEnd).finally(() => this.waitedReadSettles.delete(userId));
        this.waitedReadSettles.set(userId, { locked, waitEnd });
        await locked;
        return;
      }
      let locked: boolean | null;
      try {
        locked = await untilWaitEnd(waiting.locked, waitEnd);
      } catch (error) {
        // The read that started the wait logs this failure, so that a
        // failure seen by hundreds of waiting reads is logged once.
        this.options.logger.debug({ err: error, userId }, 'a joined wait for a due user failed; the read goes on with what is stored');
        return;
      }
      if (locked === null) {
        this.options.logger.debug({ userId }, 'a due user stayed locked for the whole wait of the read, which shows the user without its auto-close');
        return;
      }
      if (locked || waiting.waitEnd >= waitEnd || performance.now() >= waitEnd) {
        return;
      }
    }
  }

  /**
   * Waits for a busy user's lock until `waitEnd`, then settles the user with
   * the time of the settle as now. Returns false when the user stayed locked
   * for the whole wait.
   */
  private async settleAfterWait(userId: string, waitEnd: number): Promise<boolean> {
    const waitMs = Math.max(0, Math.floor(waitEnd - performance.now()));
    let lock: UserLock;
    try {
      lock = await this.lockUser(userId, waitMs);
    } catch (error) {
      if (!(error instanceof DomainError && error.reason === 'USER_BUSY')) {
        throw error;
      }
      this.options.logger.debug({ userId, waitMs }, 'a due user stayed locked for the whole wait of the read, which shows the user without its auto-close');
      return false;
    }
    try {
      await this.readSettles.run(() => this.options.deriver.derive(lock, this.options.clock.now()));
    } finally {
      await this.releaseLocks([lock]);
    }
    return true;
  }

  /**
   * Returns the users in `scope` whose deadline is at or before `now`, or,
   * for a null scope, up to READ_SETTLE_MAX_USERS due users of all,
   * earliest deadline first.
   * NOTE: beyond READ_SETTLE_MAX_USERS, a read of every user shows the
   * users due later as the sweeper leaves them, up to one sweep later.
   */
  private async dueUsersIn(scope: readonly string[] | null, now: number): Promise<string[]> {
    if (scope === null) {
      const max = this.options.readSettleMaxUsers;
      return max === 0 ? [] : this.options.store.dueUsers(now, max);
    }
    // Each user in scope is checked directly, so users of other readers
    // that fall due earlier cannot crowd them out of the list. A filter
    // names at most 1000 users, and a report 1000 per leaf, so a report
    // takes at most one round trip per leaf.
    const due: string[] = [];
    for (let start = 0; start < scope.length; start += DEADLINE_PEEK_CHUNK) {
      const chunk = scope.slice(start, start + DEADLINE_PEEK_CHUNK);
      const deadlines = await this.options.store.peekDeadlines(chunk);
      chunk.forEach((userId, index) => {
        const deadline = deadlines[index] ?? null;
        if (deadline !== null && deadline <= now) {
          due.push(userId);
        }
      });
    }
    return due;
  }

  /** Folds pending events and settles passed deadlines of one user, and returns what the fold wrote. */
  async settle(userId: string, waitMs = this.options.userLockWaitMs): Promise<DeriveResult> {
    const lock = await this.lockUser(userId, waitMs);
    try {
      return await this.options.deriver.derive(lock, this.options.clock.now());
    } finally {
      await this.releaseLocks([lock]);
    }
  }

  /**
   * Recomputes every row derived for one user from its event log, in one
   * transaction, as a change of the user's auto-close preferences requires.
   * `prepare`, such as the write of the new preference, runs first under the
   * same lock, so no request of the user folds between the two.
   * The replay also completes a replay that a pair type change queued for
   * the user, unless another change was queued after it started.
   * NOTE: when the replay fails after `prepare` succeeded, the new preference
   * stays stored with the old rows until the next replay, such as a retry.
   */
  async replay(userId: string, prepare?: () => Promise<unknown>): Promise<void> {
    const lock = await this.lockUser(userId, this.options.userLockWaitMs);
    try {
      await prepare?.();
      await this.replayAll(lock);
    } finally {
      await this.releaseLocks([lock]);
    }
  }

  /** Replays the locked user's whole log and removes the queued replay that the replay covered. */
  private async replayAll(lock: UserLock, clearFirst = false): Promise<void> {
    // Read before the replay reads the pair types, so a change that commits
    // in between increments the version and keeps the row queued.
    const queued = await pendingReplayVersion(this.options.sql, lock.userId);
    await this.options.deriver.derive(lock, this.options.clock.now(), undefined, { replayAll: true, clearFirst });
    if (queued !== null) {
      await finishPendingReplay(this.options.sql, lock.userId, queued);
    }
  }

  /**
   * Rebuilds one user's Redis state from PostgreSQL; with `full`, also
   * recomputes every derived row from the event log.
   */
  async rebuild(userId: string, full: boolean): Promise<void> {
    const lock = await this.lockUser(userId, this.options.userLockWaitMs);
    try {
      await this.options.store.deleteUserState(userId);
      lock.state = null;
      if (full) {
        // A full rebuild replays the log like a preference change, in pages,
        // and first deletes every derived row in the replay's transaction.
        await this.replayAll(lock, true);
      } else {
        await this.options.deriver.derive(lock, this.options.clock.now());
      }
    } finally {
      await this.releaseLocks([lock]);
    }
  }

  /**
   * Checks each input against `catalog`, which comes from PostgreSQL when
   * `fresh` is true, and returns the valid items. Throws as `send` does.
   */
  private async validate(
    viewer: Viewer,
    inputs: readonly EventInput[],
    catalog: PairCatalog,
    rejected: RejectedBatch | null,
    fresh: boolean,
    fieldNames: EventFieldNames,
  ): Promise<ValidItem[]> {
    const { maxMetaBytes } = this.options;
    const invalid: InvalidItem[] = [];
    const valid: ValidItem[] = [];
    const fail = (index: number, reason: string, message: string) => {
      invalid.push({ index, reason, message });
    };

    const namedUsers = new Set<string>();
    for (const input of inputs) {
      if (input.userId !== null && input.userId !== undefined && isUuid(input.userId)) {
        namedUsers.add(input.userId.toLowerCase());
      }
    }
    const existingUsers = new Set(
      namedUsers.size === 0
        ? []
        : (await this.options.sql.query<{ id: string }>(`SELECT id FROM users WHERE id = ANY($1::uuid[])`, [[...namedUsers]])).map(
            (row) => row.id,
          ),
    );

    inputs.forEach((input, inputIndex) => {
      const index = rejected?.positions?.[inputIndex] ?? inputIndex;
      const before = invalid.length;
      let userId = viewer.userId;
      if (input.userId !== null && input.userId !== undefined && !sameUserId(input.userId, viewer.userId)) {
        if (viewer.role !== 'ADMIN') {
          fail(index, 'FORBIDDEN_USER', `${fieldNames.userId} ${JSON.stringify(firstCharacters(input.userId, 64))} is another user; only admins may send events on behalf of a user`);
        } else if (!isUuid(input.userId)) {
          fail(
            index,
            'USER_NOT_FOUND',
            `${fieldNames.userId} ${JSON.stringify(firstCharacters(input.userId, 64))} is not a user id (a UUID); send the user's id, not the username`,
          );
        } else if (!existingUsers.has(input.userId.toLowerCase())) {
          fail(index, 'USER_NOT_FOUND', `${fieldNames.userId} ${JSON.stringify(firstCharacters(input.userId, 64))} does not exist`);
        } else {
          userId = input.userId.toLowerCase();
        }
      }

      const type = input.type;
      if (typeof type !== 'string' || isBlank(type)) {
        fail(index, 'INVALID_TYPE', `${fieldNames.type} is empty or only white space and invisible characters`);
      } else if (exceedsCharacters(type, MAX_TYPE_LENGTH)) {
        fail(index, 'INVALID_TYPE', `${fieldNames.type} has ${characterCount(type)} characters, above the maximum of ${MAX_TYPE_LENGTH}`);
      } else if (textProblem(type) !== null) {
        fail(index, 'INVALID_TYPE', `${fieldNames.type} ${JSON.stringify(type)} ${textProblem(type)}`);
      }

      const clientId = input.id ?? null;
      if (clientId !== null && (clientId === '' || exceedsCharacters(clientId, MAX_CLIENT_ID_LENGTH))) {
        fail(index, 'INVALID_ID', `${fieldNames.id} must have 1 to ${MAX_CLIENT_ID_LENGTH} characters, got ${characterCount(clientId)}`);
      } else if (clientId !== null && textProblem(clientId) !== null) {
        fail(index, 'INVALID_ID', `${fieldNames.id} ${JSON.stringify(clientId)} ${textProblem(clientId)}`);
      }

      const pairKey = input.pairKey ?? null;
      if (pairKey !== null && exceedsCharacters(pairKey, MAX_PAIR_KEY_LENGTH)) {
        fail(index, 'INVALID_PAIR_KEY', `${fieldNames.pairKey} has ${characterCount(pairKey)} characters, above the maximum of ${MAX_PAIR_KEY_LENGTH}`);
      } else if (pairKey !== null && textProblem(pairKey) !== null) {
        fail(index, 'INVALID_PAIR_KEY', `${fieldNames.pairKey} ${JSON.stringify(pairKey)} ${textProblem(pairKey)}`);
      }

      const meta = input.meta ?? null;
      if (meta !== null) {
        // Checked before JSON.stringify, which overflows the call stack on deeply nested values.
        const problem = typeof meta === 'object' && !Array.isArray(meta) ? jsonProblem(meta, MAX_JSON_DEPTH) : null;
        if (typeof meta !== 'object' || Array.isArray(meta)) {
          fail(index, 'INVALID_META', `${fieldNames.meta} must be a JSON object`);
        } else if (problem !== null) {
          fail(index, 'INVALID_META', `${fieldNames.meta}${problem.path} ${problem.message}`);
        } else {
          const bytes = Buffer.byteLength(JSON.stringify(meta), 'utf8');
          if (bytes > maxMetaBytes) {
            fail(index, 'META_TOO_LARGE', `${fieldNames.meta} is ${bytes} bytes as JSON, above the maximum of ${maxMetaBytes} bytes (MAX_META_BYTES)`);
          }
        }
      }

      const occurredAt = input.occurredAt ?? null;
      if (occurredAt !== null && Number.isNaN(occurredAt.getTime())) {
        fail(index, 'INVALID_OCCURRED_AT', `${fieldNames.occurredAt} is not a valid instant`);
      } else if (occurredAt !== null && !isStorableInstant(occurredAt.getTime())) {
        fail(
          index,
          'INVALID_OCCURRED_AT',
          `${fieldNames.occurredAt} ${occurredAt.toISOString()} is outside the supported range ${describeInstantRange()}`,
        );
      }

      const mapping = typeof type === 'string' ? catalog.byEventType.get(type) : undefined;
      // An invalid type or a pairType can be as long as the body, so the
      // messages below show each cut to the longest valid value.
      const quotedType = typeof type === 'string' ? quoteText(type, MAX_TYPE_LENGTH) : 'null';
      if (input.isPair === true && mapping === undefined) {
        fail(index, 'PAIR_MISMATCH', `${fieldNames.isPair} is true but event type ${quotedType} belongs to no pair type`);
      }
      if (input.isPair === false && mapping !== undefined) {
        fail(index, 'PAIR_MISMATCH', `${fieldNames.isPair} is false but event type ${quotedType} is the ${mapping.role === 'START' ? 'start' : 'end'} of pair type ${JSON.stringify(mapping.pairType)}`);
      }
      if (input.pairType !== null && input.pairType !== undefined && input.pairType !== mapping?.pairType) {
        fail(
          index,
          'PAIR_MISMATCH',
          mapping === undefined
            ? `${fieldNames.pairType} ${quoteText(input.pairType, MAX_PAIR_TYPE_NAME_LENGTH)} was given but event type ${quotedType} belongs to no pair type`
            : `${fieldNames.pairType} ${quoteText(input.pairType, MAX_PAIR_TYPE_NAME_LENGTH)} does not match event type ${quotedType}, which belongs to pair type ${JSON.stringify(mapping.pairType)}`,
        );
      }
      if (mapping === undefined && pairKey !== null && pairKey !== '') {
        fail(index, 'PAIR_MISMATCH', `${fieldNames.pairKey} was given but event type ${quotedType} belongs to no pair type`);
      }

      if (invalid.length === before) {
        valid.push({
          index,
          userId,
          clientId,
          type,
          role: mapping?.role ?? 'POINT',
          pairType: mapping?.pairType ?? null,
          pairKey: mapping === undefined ? null : (pairKey ?? ''),
          occurredAt: occurredAt?.getTime() ?? null,
          meta,
        });
      }
    });

    // A batch rejected for other problems also lists the ids that it reuses
    // with other content, within the batch or from a stored event, so that
    // one round trip shows them all. A batch without other problems skips
    // the read, because the store finds these conflicts under the user locks.
    // `validateBatch` checks a batch with a PAIR_MISMATCH again with fresh
    // pair types, so the read waits for that check.
    const checkedAgain = !fresh && invalid.some((item) => item.reason === 'PAIR_MISMATCH');
    if ((invalid.length > 0 || rejected !== null) && !checkedAgain) {
      // NOTE: the read takes no user lock, so an event that another request
      // stores after it is not listed. The store reads its receipt time
      // later too, after the locks, and an item sent with a time between the
      // two readings can compare differently there. Only a batch rejected
      // anyway gets this list.
      const stored = await this.storedRepeats(valid);
      invalid.push(...batchConflicts(valid, this.options.clock.now(), stored, fieldNames));
    }
    invalid.sort((first, second) => first.index - second.index);

    // A member naming another user is an access error (FORBIDDEN), which wins over input errors.
    const forbidden = invalid.filter((item) => item.reason === 'FORBIDDEN_USER');
    if (forbidden.length > 0) {
      const indexes = `${forbidden
        .slice(0, 5)
        .map((item) => `#${item.index}`)
        .join(', ')}${forbidden.length > 5 ? ', ...' : ''}`;
      const subject = forbidden.length === 1 ? `event ${indexes} names` : `events ${indexes} name`;
      throw new DomainError(
        'FORBIDDEN',
        'OTHER_USER',
        `Only admins may send events on behalf of another user, but ${subject} another user in ${fieldNames.userId}; nothing was stored.`,
        { invalidItems: invalid },
      );
    }
    if (invalid.length > 0) {
      // One event can have several problems, so count the events, not the problems.
      const invalidCount = new Set(invalid.map((item) => item.index)).size;
      throw badInput('INVALID_EVENTS', invalidEventsMessage(invalidCount, inputs.length, invalid), { invalidItems: invalid });
    }
    return valid;
  }

  /** Reads the stored events of each user whose client ids `items` use, by user and client id. */
  private async storedRepeats(items: readonly ValidItem[]): Promise<IntakeSnapshot['existing']> {
    const withIds = items.filter((item) => item.clientId !== null);
    if (withIds.length === 0) {
      return new Map();
    }
    const userIds = [...new Set(withIds.map((item) => item.userId))];
    const snapshot = await loadIntakeSnapshot(
      this.options.sql,
      userIds,
      withIds.map((item) => item.clientId as string),
    );
    return snapshot.existing;
  }

  private async acquireLocks(userIds: readonly string[]): Promise<UserLock[]> {
    const locks: UserLock[] = [];
    try {
      for (const userId of userIds) {
        locks.push(await this.lockUser(userId, this.options.userLockWaitMs));
      }
      return locks;
    } catch (error) {
      await this.releaseLocks(locks);
      throw error;
    }
  }

  /**
   * Takes the user's turn in this process, then the shared lock, within
   * `waitMs` in all.
   */
  private async lockUser(userId: string, waitMs: number): Promise<UserLock> {
    const started = performance.now();
    let turn: UserTurn;
    try {
      turn = await this.turns.take(userId, waitMs);
    } catch (error) {
      if (error instanceof DomainError && error.reason === 'USER_BUSY') {
        this.options.metrics?.userLockBusy.inc();
      }
      throw error;
    }
    try {
      const remainingMs = Math.max(0, waitMs - Math.ceil(performance.now() - started));
      const lock = await this.options.store.acquireUserLock(userId, { ttlMs: this.options.userLockTtlMs, waitMs: remainingMs });
      this.holdOfLock.set(lock, { turn, stopKeepAlive: this.keepAlive(lock, turn) });
      return lock;
    } catch (error) {
      turn.release();
      // The store's error names only the wait left after the turn, which a
      // read that held the turn while it waited for the lock can use up.
      if (error instanceof DomainError && error.reason === 'USER_BUSY') {
        this.options.metrics?.userLockBusy.inc();
        throw userBusyError(userId, waitMs);
      }
      throw error;
    }
  }

  private async releaseLocks(locks: readonly UserLock[]): Promise<void> {
    for (const lock of locks) {
      try {
        await this.options.store.releaseUserLock(lock);
      } catch (error) {
        // The lock expires by itself after its TTL.
        this.options.logger.warn({ err: error, userId: lock.userId }, 'releasing a user lock failed');
      } finally {
        const hold = this.holdOfLock.get(lock);
        hold?.stopKeepAlive();
        hold?.turn.release();
      }
    }
  }

  /**
   * Extends a held lock, and this process's turn behind it, every third of
   * USER_LOCK_TTL_MS until the release, so that work longer than one TTL,
   * such as the replay of a long history, keeps the user. Extensions stop
   * when the lock has passed to another holder, and before one would keep
   * the lock past USER_LOCK_MAX_HOLD_MS after it was taken, so a holder that
   * never finishes frees the user by then. Returns the function that stops
   * the extensions, which the release calls.
   */
  private keepAlive(lock: UserLock, turn: UserTurn): () => void {
    const { store, logger, userLockTtlMs: ttlMs, userLockMaxHoldMs: maxHoldMs } = this.options;
    const acquired = performance.now();
    let extending = false;
    let stopped = false;
    const stop = () => {
      stopped = true;
      clearInterval(timer);
    };
    const timer = setInterval(() => {
      if (extending) {
        return;
      }
      if (performance.now() - acquired + ttlMs > maxHoldMs) {
        stop();
        logger.warn(
          { userId: lock.userId, maxHoldMs },
          'a user lock reached USER_LOCK_MAX_HOLD_MS and is no longer extended; it expires within one USER_LOCK_TTL_MS',
        );
        return;
      }
      extending = true;
      store
        .extendUserLock(lock, ttlMs)
        .then(
          (extended) => {
            // A release while the extension ran has ended the hold: nothing to report.
            if (stopped) {
              return;
            }
            if (extended) {
              turn.extend();
              return;
            }
            stop();
            logger.warn({ userId: lock.userId }, 'a held user lock expired before its extension; another holder may take the user');
          },
          (error: unknown) => {
            if (!stopped) {
              logger.warn({ err: error, userId: lock.userId }, 'extending a user lock failed; trying again');
            }
          },
        )
        .finally(() => {
          extending = false;
        });
    }, Math.max(1, Math.floor(ttlMs / 3)));
    timer.unref();
    return stop;
  }

  /**
   * Stores the new events: one read of the users' counters and of the events
   * whose client ids the batch repeats, then one write that succeeds only if
   * those counters have not moved. Another writer of the same user can only
   * come between the two after a user lock expired. The read and the write
   * are then tried again. Returns, per input item in order, the stored or
   * original event id and whether it was a duplicate.
   */
  private async store(
    items: readonly ValidItem[],
    receivedAt: number,
    locks: readonly UserLock[],
    pairTypeCount: number,
    fieldNames: EventFieldNames,
  ): Promise<{
    entries: Array<{ index: number; eventId: string; duplicate: boolean }>;
    rows: NewClientEvent[];
    inputs: ReadonlyMap<string, FoldInput>;
  }> {
    const userIds = [...new Set(items.map((item) => item.userId))];
    const clientIds = items.filter((item) => item.clientId !== null).map((item) => item.clientId as string);

    // A small request of one user first writes with the counters that came
    // with its lock and assumes its events are new, which saves the read.
    // When either is wrong, that write writes nothing, and the loop below
    // reads. A batch that repeats a client id reads first, so that an id
    // reused with other content is reported against the stored event.
    const guess =
      items.length <= GUESSED_COUNTERS_MAX_EVENTS && userIds.length === 1 && new Set(clientIds).size === clientIds.length
        ? countersFromLocks(locks)
        : null;
    if (guess !== null) {
      try {
        return await this.write(items, receivedAt, pairTypeCount, guess, fieldNames, clientIds);
      } catch (error) {
        if (!(error instanceof CountersMovedError)) {
          throw error;
        }
        this.options.logger.debug({ userIds }, 'write without a read found newer counters or a stored event, so reading them');
      }
    }

    for (let attempt = 1; ; attempt += 1) {
      const snapshot = await loadIntakeSnapshot(this.options.sql, userIds, clientIds);
      try {
        return await this.write(items, receivedAt, pairTypeCount, snapshot, fieldNames);
      } catch (error) {
        if (error instanceof CountersMovedError && attempt < STORE_ATTEMPTS) {
          this.options.logger.info(
            { err: error, attempt, userIds },
            'another request stored events of the same user meanwhile; storing again',
          );
          continue;
        }
        if (error instanceof CountersMovedError) {
          throw new DomainError(
            'SERVICE_UNAVAILABLE',
            'LOCK_LOST',
            `Other requests stored events of the same user during each of ${STORE_ATTEMPTS} attempts; nothing was stored. Retry the request.`,
          );
        }
        throw error;
      }
    }
  }

  /**
   * Plans the store against `snapshot` and writes it. Throws
   * CountersMovedError when the snapshot no longer holds, or when one of
   * `unseenClientIds` (ids the snapshot did not look up) is stored already.
   */
  private async write(
    items: readonly ValidItem[],
    receivedAt: number,
    pairTypeCount: number,
    snapshot: IntakeSnapshot,
    fieldNames: EventFieldNames,
    unseenClientIds: readonly string[] | null = null,
  ): Promise<{
    entries: Array<{ index: number; eventId: string; duplicate: boolean }>;
    rows: NewClientEvent[];
    inputs: ReadonlyMap<string, FoldInput>;
  }> {
    const expectedSeqs = new Map([...snapshot.counters.values()].map((counters) => [counters.id, counters.lastEventSeq]));
    const { rows, entries } = this.planStore(items, receivedAt, snapshot.counters, snapshot.existing, fieldNames);
    if (rows.length === 0) {
      // Every event was a duplicate: nothing to write.
      return { entries, rows, inputs: new Map() };
    }
    const inputs = await appendClientEvents(
      this.options.sql,
      rows,
      [...snapshot.counters.values()].map((counters) => ({ ...counters, expectedSeq: expectedSeqs.get(counters.id) as number })),
      unseenClientIds,
      pairTypeCount,
    );
    return { entries, rows, inputs };
  }

  /**
   * Decides, without writing, what a store does: the new rows with their
   * sequence numbers, and each item's event id. Moves `counters` forward.
   * Throws BAD_USER_INPUT for an unknown user or an id reused with other
   * content, so nothing is stored.
   */
  private planStore(
    items: readonly ValidItem[],
    receivedAt: number,
    counters: ReadonlyMap<string, UserCounters>,
    existing: ReadonlyMap<string, ReadonlyMap<string, StoredClientEvent>>,
    fieldNames: EventFieldNames,
  ): { rows: NewClientEvent[]; entries: Array<{ index: number; eventId: string; duplicate: boolean }> } {
    const { clockSkewSeconds, latenessHorizonSeconds } = this.options;
    const invalid: InvalidItem[] = [];
    const rows: NewClientEvent[] = [];
    const entries: Array<{ index: number; eventId: string; duplicate: boolean }> = [];
    // Each earlier item of the batch with its event id, by user and client id. The two stay apart:
    // a copy of the item with `eventId` added took about 1 µs per item (a tsx loop, 2-core host).
    const seenInBatch = new Map<string, { item: ValidItem; eventId: string }>();

    for (const item of items) {
      const userCounters = counters.get(item.userId);
      if (userCounters === undefined) {
        invalid.push({ index: item.index, reason: 'USER_NOT_FOUND', message: `user ${item.userId} does not exist` });
        continue;
      }
      if (item.clientId !== null) {
        const batchKey = `${item.userId}\u0000${item.clientId}`;
        const earlier = seenInBatch.get(batchKey);
        const original = existing.get(item.userId)?.get(item.clientId);
        if (original !== undefined || earlier !== undefined) {
          const fields = differingFields(item, original !== undefined ? storedContent(original) : itemContent(earlier!.item, receivedAt));
          if (fields.length > 0) {
            // `batchConflicts` reports these items with the same messages when others in the batch are invalid too.
            const message =
              original !== undefined
                ? storedConflictMessage(item.clientId, fields, fieldNames)
                : batchConflictMessage(item.clientId, earlier!.item.index, fields, fieldNames);
            invalid.push({ index: item.index, reason: 'IDEMPOTENCY_CONFLICT', message });
            continue;
          }
          entries.push({ index: item.index, eventId: original?.id ?? earlier!.eventId, duplicate: true });
          continue;
        }
      }

      const arrival = classifyArrival(
        { occurredAt: item.occurredAt, receivedAt, maxAppliedOccurredAt: userCounters.maxOccurredAt },
        { clockSkewMs: clockSkewSeconds * 1000, latenessHorizonMs: latenessHorizonSeconds * 1000 },
      );
      userCounters.lastEventSeq += 1;
      if (!arrival.ignored) {
        userCounters.maxOccurredAt = Math.max(userCounters.maxOccurredAt ?? arrival.occurredAt, arrival.occurredAt);
      }
      const eventId = randomUUID();
      rows.push({
        id: eventId,
        userId: item.userId,
        seq: userCounters.lastEventSeq,
        clientId: item.clientId,
        type: item.type,
        role: item.role,
        pairType: item.pairType,
        pairKey: item.pairKey,
        occurredAt: arrival.occurredAt,
        clientOccurredAt: arrival.flags.includes('FUTURE_TIMESTAMP') ? item.occurredAt : null,
        receivedAt,
        meta: item.meta,
        intakeFlags: arrival.flags,
        ignored: arrival.ignored,
      });
      entries.push({ index: item.index, eventId, duplicate: false });
      if (item.clientId !== null) {
        seenInBatch.set(`${item.userId}\u0000${item.clientId}`, { item, eventId });
      }
    }

    if (invalid.length > 0) {
      throw badInput('INVALID_EVENTS', invalidEventsMessage(invalid.length, items.length, invalid), { invalidItems: invalid });
    }
    return { rows, entries };
  }

  /**
   * Builds the reply: each item's event, the corrections it caused and the
   * segments it closed. Events in `known` were folded by this request, so
   * their corrections and segments are among the `written` rows. The others
   * (duplicates, and events another process folded) are read with theirs.
   * `recomputedFromOf` returns the recomputedFrom of the item with an index.
   */
  private async buildResults(
    entries: ReadonlyArray<{ index: number; eventId: string; duplicate: boolean }>,
    userIds: readonly string[],
    known: ReadonlyMap<string, EventRecord>,
    written: WrittenRows,
    recomputedFromOf: (index: number) => Date | null,
  ): Promise<SendEventResult[]> {
    const { sql } = this.options;
    const unknown = [...new Set(entries.map((entry) => entry.eventId))].filter((id) => !known.has(id));
    const read = unknown.length === 0 ? { events: [], corrections: [], segments: [] } : await loadReply(sql, userIds, unknown);
    const events = new Map([...known, ...read.events.map((event): [string, EventRecord] => [event.id, event])]);
    // The read comes first, because it returns every row of the events it
    // read, including rows this request wrote when it folded the original of
    // a repeated event. The written rows of the other events follow.
    const corrections = mergeById(read.corrections, written.corrections);
    const segments = mergeById(read.segments, written.closedSegments);

    // Group each correction under the client event at the root of its cause chain.
    const byId = new Map(corrections.map((correction) => [correction.id, correction]));
    const rootOf = (correction: EventRecord): string => {
      let cursor = correction;
      for (let hops = 0; hops < 64; hops += 1) {
        const parent = cursor.causeEventId === null ? undefined : byId.get(cursor.causeEventId);
        if (parent === undefined) {
          return cursor.causeEventId ?? cursor.id;
        }
        cursor = parent;
      }
      return cursor.causeEventId ?? cursor.id;
    };
    const correctionsByRoot = new Map<string, EventRecord[]>();
    for (const correction of corrections) {
      const root = rootOf(correction);
      const list = correctionsByRoot.get(root) ?? [];
      list.push(correction);
      correctionsByRoot.set(root, list);
    }

    const segmentsByEndEvent = new Map<string, SegmentRecord[]>();
    for (const segment of segments) {
      // An empty segment, closed at its start, is never listed, as in `segments`.
      if (segment.endAt !== null && segment.endAt.getTime() === segment.startAt.getTime()) {
        continue;
      }
      const list = segmentsByEndEvent.get(segment.endEventId as string) ?? [];
      list.push(segment);
      segmentsByEndEvent.set(segment.endEventId as string, list);
    }

    return entries.map((entry) => {
      const event = events.get(entry.eventId);
      if (event === undefined) {
        throw new Error(`Event ${entry.eventId} was stored but cannot be read back.`);
      }
      const own = correctionsByRoot.get(entry.eventId) ?? [];
      const closedSegments = [entry.eventId, ...own.map((c) => c.id)].flatMap(
        (id) => segmentsByEndEvent.get(id) ?? [],
      );
      return { event, duplicate: entry.duplicate, corrections: own, closedSegments, recomputedFrom: recomputedFromOf(entry.index) };
    });
  }
}

/** Returns the rows of `first`, then those of `second` with ids not in `first`. */
function mergeById<T extends { id: string }>(first: readonly T[], second: readonly T[]): T[] {
  if (second.length === 0) {
    return [...first];
  }
  const ids = new Set(first.map((row) => row.id));
  return [...first, ...second.filter((row) => !ids.has(row.id))];
}

/** Describes the events a request has just stored for one user, and the fold input their write returned, for its fold. */
function justStoredOf(rows: readonly NewClientEvent[], input: FoldInput | undefined): JustStored | undefined {
  if (rows.length === 0) {
    return undefined;
  }
  const seqs = rows.map((row) => row.seq);
  return {
    input,
    range: { from: Math.min(...seqs), to: Math.max(...seqs) },
    events: rows
      .filter((row) => !row.ignored)
      .map((row) => ({
        event: {
          id: row.id,
          seq: row.seq,
          type: row.type,
          occurredAt: row.occurredAt,
          role: row.role,
          pairType: row.pairType,
          pairKey: row.pairKey ?? '',
          ignored: false,
        },
        meta: row.meta,
      })),
  };
}

/** The event record of a row just stored, as a read of it would return it. */
function toStoredRecord(row: NewClientEvent, orphan: boolean): EventRecord {
  return {
    id: row.id,
    userId: row.userId,
    seq: row.seq,
    clientId: row.clientId,
    type: row.type,
    role: row.role,
    pairType: row.pairType,
    pairKey: row.pairKey,
    occurredAt: new Date(row.occurredAt),
    clientOccurredAt: row.clientOccurredAt === null ? null : new Date(row.clientOccurredAt),
    receivedAt: new Date(row.receivedAt),
    meta: row.meta === null ? null : (inJsonbKeyOrder(row.meta) as Record<string, unknown>),
    origin: 'CLIENT',
    rule: null,
    causeEventId: null,
    intakeFlags: [...row.intakeFlags],
    orphan,
    ignored: row.ignored,
  };
}

/** The content of an event that a repeated client id must match. */
interface EventContent {
  type: string;
  pairKey: string | null;
  /** The time the client sent, before any FUTURE_TIMESTAMP replacement, or the receipt time when it sent none. */
  occurredAt: number;
  /** Receipt time of the request that stored the event, or that stores it with this batch. */
  receivedAt: number;
  meta: Record<string, unknown> | null;
}

/** Returns the content of an earlier item of a batch received at `receivedAt`. */
function itemContent(item: ValidItem, receivedAt: number): EventContent {
  return { ...item, occurredAt: item.occurredAt ?? receivedAt, receivedAt };
}

/** Returns the content of a stored event, with the time its client sent. */
function storedContent(event: StoredClientEvent): EventContent {
  return { ...event, occurredAt: event.clientOccurredAt ?? event.occurredAt };
}

/**
 * Returns the fields in which an item differs from the earlier event with
 * its client id, empty when it repeats that event. An item without
 * `occurredAt` means the receipt time of the earlier event, the first
 * delivery of that id. So a retry without a time repeats an event stored
 * without one, but not an event sent with another time.
 */
function differingFields(item: ValidItem, earlier: EventContent): Array<keyof EventInput> {
  const fields: Array<keyof EventInput> = [];
  if (item.type !== earlier.type) {
    fields.push('type');
  }
  if ((item.pairKey ?? '') !== (earlier.pairKey ?? '')) {
    fields.push('pairKey');
  }
  if ((item.occurredAt ?? earlier.receivedAt) !== earlier.occurredAt) {
    fields.push('occurredAt');
  }
  if (canonicalJson(item.meta ?? null) !== canonicalJson(earlier.meta ?? null)) {
    fields.push('meta');
  }
  return fields;
}

/**
 * Lists the items of a batch received at `receivedAt` whose client id a
 * stored event in `stored` or an earlier item of the same user uses with
 * other content, as the store would reject them. An id that is stored is
 * compared with the stored event alone, as the store does.
 */
function batchConflicts(
  items: readonly ValidItem[],
  receivedAt: number,
  stored: IntakeSnapshot['existing'],
  fieldNames: EventFieldNames,
): InvalidItem[] {
  const conflicts: InvalidItem[] = [];
  const firstOfId = new Map<string, ValidItem>();
  for (const item of items) {
    if (item.clientId === null) {
      continue;
    }
    const original = stored.get(item.userId)?.get(item.clientId);
    if (original !== undefined) {
      const fields = differingFields(item, storedContent(original));
      if (fields.length > 0) {
        conflicts.push({ index: item.index, reason: 'IDEMPOTENCY_CONFLICT', message: storedConflictMessage(item.clientId, fields, fieldNames) });
      }
      continue;
    }
    const key = `${item.userId}\u0000${item.clientId}`;
    const earlier = firstOfId.get(key);
    if (earlier === undefined) {
      firstOfId.set(key, item);
      continue;
    }
    const fields = differingFields(item, itemContent(earlier, receivedAt));
    if (fields.length > 0) {
      conflicts.push({
        index: item.index,
        reason: 'IDEMPOTENCY_CONFLICT',
        message: batchConflictMessage(item.clientId, earlier.index, fields, fieldNames),
      });
    }
  }
  return conflicts;
}

/** Returns the message of an item whose client id a stored event uses with other content. */
function storedConflictMessage(clientId: string, fields: ReadonlyArray<keyof EventInput>, fieldNames: EventFieldNames): string {
  return `${fieldNames.id} ${JSON.stringify(clientId)} was already used for an event with other content (${differenceText(fields, fieldNames)})`;
}

/** Returns the message of an item whose client id the item at `earlierIndex` of its batch uses with other content. */
function batchConflictMessage(
  clientId: string,
  earlierIndex: number,
  fields: ReadonlyArray<keyof EventInput>,
  fieldNames: EventFieldNames,
): string {
  return `${fieldNames.id} ${JSON.stringify(clientId)} is also used by item #${earlierIndex} of this batch, with other content (${differenceText(fields, fieldNames)})`;
}

/** Returns the message part that names the fields in which a repeated client id differs. */
function differenceText(fields: ReadonlyArray<keyof EventInput>, fieldNames: EventFieldNames): string {
  return `it differs in ${fields.map((field) => fieldNames[field]).join(' and ')}`;
}
