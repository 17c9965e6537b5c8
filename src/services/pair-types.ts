/**
 * Pair types and per-user auto-close preferences, and the catalog the engine
 * reads them through.
 */
import type { Logger } from 'pino';

import { DomainError, badInput } from '../domain/errors.js';
import { characterCount, exceedsCharacters, firstCharacters, isBlank, quoteText, textProblem } from '../domain/storable.js';
import type {
  AutoCloseEndAt,
  AutoClosePolicy,
  PairCatalog,
  PairTypeDefinition,
} from '../domain/pairing/types.js';
import type { PrismaClient } from '../storage/postgres/generated/client.js';
import {
  QUEUE_PREFERENCE_REPLAY_SQL,
  readReplayStatus,
  RECORD_CHANGE_SQL,
  REPLAY_CLAIM_MS,
  type ReplayStatus,
} from '../storage/postgres/replay-store.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import { USER_ID_HINT, isUuid } from '../domain/user-id.js';

export interface PairTypeRecord extends PairTypeDefinition {
  builtIn: boolean;
}

export interface DefinePairTypeInput {
  name: string;
  startType: string;
  endType: string;
  parent?: string | null | undefined;
  autoClose?: AutoClosePolicy | null | undefined;
}

const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
/** Maximum length of a pair type name, as NAME_PATTERN accepts it. */
export const MAX_PAIR_TYPE_NAME_LENGTH = 64;
export const MAX_EVENT_TYPE_LENGTH = 128;
/** Maximum auto-close timeout: ten years, in seconds. */
export const MAX_TIMEOUT_SECONDS = 10 * 366 * 24 * 3600;
const END_AT_VALUES: readonly AutoCloseEndAt[] = ['LAST_ACTIVITY', 'DEADLINE'];

/** Lifetime of the cached pair-type list on the intake path. */
export const CATALOG_CACHE_MS = 1000;
/** Key of the advisory lock under which `definePairType` calls take turns. */
const DEFINE_LOCK_KEY = 72707371;
/** Maximum wait, in ms, of a `definePairType` call for its turn before it gets SERVICE_UNAVAILABLE. */
const DEFINE_LOCK_WAIT_MS = 3000;
/** PostgreSQL's lock_not_available, raised when `lock_timeout` ends a wait. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * Takes the advisory lock of `definePairType` calls in the transaction `tx`,
 * waiting at most DEFINE_LOCK_WAIT_MS. PostgreSQL's lock manager grants the
 * lock in the order the waiters queued, unless deadlock detection reorders
 * them, and `lock_timeout` ends a long wait with a clear error instead of the
 * transaction's timeout. The timeout is reset
 * after the lock, so that it does not cut the transaction's other waits.
 */
async function takeDefineTurn(tx: {
  $executeRawUnsafe: PrismaClient['$executeRawUnsafe'];
  $queryRawUnsafe: PrismaClient['$queryRawUnsafe'];
}): Promise<void> {
  await tx.$executeRawUnsafe(`SET LOCAL lock_timeout = '${DEFINE_LOCK_WAIT_MS}ms'`);
  try {
    // The function returns void, which Prisma cannot read, so the row carries a constant.
    await tx.$queryRawUnsafe(`SELECT true AS locked FROM pg_advisory_xact_lock(${DEFINE_LOCK_KEY})`);
  } catch (error) {
    if (postgresCodesOf(error).includes(LOCK_NOT_AVAILABLE)) {
      throw new DomainError(
        'SERVICE_UNAVAILABLE',
        'PAIR_TYPES_BUSY',
        `Other definePairType calls held the pair types for more than ${DEFINE_LOCK_WAIT_MS} ms; nothing was changed. Retry the request.`,
      );
    }
    throw error;
  }
  await tx.$executeRawUnsafe('SET LOCAL lock_timeout = DEFAULT');
}

/** Returns the SQLSTATE codes of a Prisma error: its own, and the one its driver adapter reported. */
function postgresCodesOf(error: unknown): unknown[] {
  const { code, meta } = (error ?? {}) as {
    code?: unknown;
    meta?: { driverAdapterError?: { cause?: { code?: unknown; originalCode?: unknown } } };
  };
  const cause = meta?.driverAdapterError?.cause;
  return [code, cause?.code, cause?.originalCode];
}

const MAX_REMEMBERED_POINT_TYPES = 10_000;

export class PairTypeService {
  private cache: { types: PairTypeRecord[]; loadedAt: number; eventTypes: Set<string> } | null = null;
  private readonly recentPoints = new Map<string, number>();

  constructor(
    private readonly prisma: PrismaClient,
    private readonly defaultPolicy: AutoClosePolicy,
    private readonly logger: Logger,
    /** Optional SQL client for the reads on the intake path. */
    private readonly sql?: SqlClient,
  ) {}

  /**
   * Applies the configured default policy to the built-in pair types. A
   * built-in whose policy this changes is recorded as changed in the same
   * statement, so the replay workers recompute the history of its users
   * under the new policy, as after `define`. On a database without segments
   * of that type, the change queues no user. Instances that start at once
   * with the same value record each change once, because the second update
   * finds no row that still differs. Returns the names of the changed types.
   */
  async applyBuiltInDefaults(): Promise<string[]> {
    const { timeoutSeconds, endAt } = this.defaultPolicy;
    // The replay workers look for the users with segments of each changed
    // type through the index on (user_id, pair_type), one user at a time. A
    // check for such segments here would read the whole table at each start
    // that changes the default.
    const changed = await this.prisma.$queryRawUnsafe<Array<{ name: string }>>(
      `WITH changed AS (
         UPDATE pair_types SET timeout_seconds = $1, end_at = $2::"AutoCloseEndAt"
         WHERE built_in AND (timeout_seconds <> $1 OR end_at <> $2::"AutoCloseEndAt")
         RETURNING name
       ), recorded AS (
         INSERT INTO pair_type_changes (pair_type, skip_overrides)
         SELECT name, true FROM changed
       )
       SELECT name FROM changed ORDER BY name`,
      timeoutSeconds,
      endAt,
    );
    if (changed.length > 0) {
      this.logger.info(
        { pairTypes: changed.map((row) => row.name), timeoutSeconds, endAt },
        'built-in pair type policy changed; the users with segments of these types will be replayed',
      );
    }
    return changed.map((row) => row.name);
  }

  /** Lists every pair type in code point order of name, whatever the database's collation. */
  async list(): Promise<PairTypeRecord[]> {
    const rows = await this.prisma.pairType.findMany();
    return rows.map(toPairTypeRecord).sort((a, b) => compareCodePoints(a.name, b.name));
  }

  /**
   * Creates a pair type, or updates the parent and policy of an existing
   * non-built-in one with the same event types. Defining the same pair type
   * twice with the same content returns it unchanged. A changed parent or
   * policy is recorded for the replay workers, which recompute its users.
   */
  async define(input: DefinePairTypeInput): Promise<PairTypeRecord> {
    const problems: string[] = [];
    const parent = input.parent ?? null;
    const autoClose = input.autoClose ?? this.defaultPolicy;

    if (!NAME_PATTERN.test(input.name)) {
      problems.push(
        `name ${JSON.stringify(input.name.slice(0, 80))} is invalid: use 1 to 64 ASCII letters, digits or _ . -, starting with a letter`,
      );
    }
    for (const [field, value] of [
      ['startType', input.startType],
      ['endType', input.endType],
    ] as const) {
      if (isBlank(value) || exceedsCharacters(value, MAX_EVENT_TYPE_LENGTH)) {
        problems.push(
          `${field} must have 1 to ${MAX_EVENT_TYPE_LENGTH} characters, not all white space or invisible, got ${characterCount(value)}`,
        );
      } else if (textProblem(value) !== null) {
        problems.push(`${field} ${JSON.stringify(value)} ${textProblem(value)}`);
      }
    }
    if (input.startType === input.endType) {
      problems.push(`startType and endType must differ, both are ${quoteText(input.startType, MAX_EVENT_TYPE_LENGTH)}`);
    }
    problems.push(...validatePolicy(autoClose));
    if (problems.length > 0) {
      throw badInput('INVALID_PAIR_TYPE', `Invalid pair type: ${problems.join('; ')}.`, { problems });
    }

    // Two defines that each pass the checks alone could together store a
    // parent cycle or one event type in two pair types, so defines take turns
    // under an advisory lock and check against the pair types read under it.
    const { row, current, changed } = await this.prisma.$transaction(
      async (tx) => {
        await takeDefineTurn(tx);
        const existing = (await tx.pairType.findMany({ orderBy: { name: 'asc' } })).map(toPairTypeRecord);
        const current = checkDefinition(input, parent, existing);
        const data = {
          startType: input.startType,
          endType: input.endType,
          parent,
          timeoutSeconds: autoClose.timeoutSeconds,
          endAt: autoClose.endAt,
        };
        // Derived rows are a function of the pair types, so a changed parent or
        // default policy is recorded with the change, and the replay workers
        // recompute every user with segments of this type. A new type has none.
        const parentChanged = current !== undefined && current.parent !== parent;
        const policyChanged =
          current !== undefined &&
          (current.autoClose.timeoutSeconds !== autoClose.timeoutSeconds || current.autoClose.endAt !== autoClose.endAt);
        const upserted = await tx.pairType.upsert({
          where: { name: input.name },
          create: { name: input.name, ...data, builtIn: false },
          update: data,
        });
        if (parentChanged || policyChanged) {
          await tx.$executeRawUnsafe(RECORD_CHANGE_SQL, input.name, !parentChanged);
        }
        return { row: upserted, current, changed: parentChanged || policyChanged };
      },
      { timeout: DEFINE_LOCK_WAIT_MS + 5000 },
    );
    this.cache = null;
    this.logger.info(
      { pairType: row.name, parent: row.parent, replaysRequested: changed },
      current === undefined ? 'pair type defined' : 'pair type updated',
    );
    return toPairTypeRecord(row);
  }

  /**
   * Stores a user's auto-close policy for one pair type, after the checks of
   * `checkPreference`, and queues a replay of the user.
   */
  async setPreference(userId: string, pairType: string, policy: AutoClosePolicy): Promise<void> {
    await this.checkPreference(userId, pairType, policy);
    await this.storePreference(userId, pairType, policy);
  }

  /**
   * Stores a preference that `checkPreference` accepted, and queues a replay
   * of the user. Users and pair types are never deleted, so the checks still
   * hold, and the table's foreign key rejects an unknown user anyway.
   */
  async storePreference(userId: string, pairType: string, policy: AutoClosePolicy): Promise<void> {
    // The replay is queued with the preference, so that a worker recomputes
    // the user should this process die or fail before its own replay ends.
    await this.prisma.$transaction(async (tx) => {
      await tx.autoClosePreference.upsert({
        where: { userId_pairType: { userId, pairType } },
        create: { userId, pairType, timeoutSeconds: policy.timeoutSeconds, endAt: policy.endAt },
        update: { timeoutSeconds: policy.timeoutSeconds, endAt: policy.endAt },
      });
      await tx.$executeRawUnsafe(QUEUE_PREFERENCE_REPLAY_SQL, userId, pairType, REPLAY_CLAIM_MS);
    });
  }

  /**
   * Checks a preference without storing it. Throws BAD_USER_INPUT with reason
   * INVALID_POLICY, PAIR_TYPE_NOT_FOUND or USER_NOT_FOUND, checked in that order.
   */
  async checkPreference(userId: string, pairType: string, policy: AutoClosePolicy): Promise<void> {
    const problems = validatePolicy(policy);
    if (problems.length > 0) {
      throw badInput('INVALID_POLICY', `Invalid auto-close policy: ${problems.join('; ')}.`, { problems });
    }
    // Names outside NAME_PATTERN cannot exist, and a NUL in one would fail the query.
    const type = NAME_PATTERN.test(pairType) ? await this.prisma.pairType.findUnique({ where: { name: pairType } }) : null;
    if (type === null) {
      throw badInput(
        'PAIR_TYPE_NOT_FOUND',
        `Pair type ${JSON.stringify(pairType.slice(0, 80))} does not exist. The pairTypes query lists the defined names, and an admin defines a new one with definePairType.`,
        { pairType: pairType.slice(0, 80) },
      );
    }
    const user = isUuid(userId)
      ? await this.prisma.user.findUnique({ where: { id: userId }, select: { id: true } })
      : null;
    if (user === null) {
      const quoted = JSON.stringify(firstCharacters(userId, 64));
      const message = isUuid(userId)
        ? `User ${quoted} does not exist. Pass a user id from the users query.`
        : `userId ${quoted} is not a user id (a UUID). ${USER_ID_HINT}`;
      throw badInput('USER_NOT_FOUND', message, { userId: firstCharacters(userId, 64) });
    }
  }

  /** Returns how far the replays after pair type changes have come. */
  async replayStatus(): Promise<ReplayStatus> {
    if (this.sql === undefined) {
      throw new Error('Reading the replay status needs the SQL client of the pair type service.');
    }
    return readReplayStatus(this.sql);
  }

  /** Returns a user's preferences in code point order of pair type, whatever the database's collation. */
  async preferences(userId: string): Promise<Array<{ pairType: string } & AutoClosePolicy>> {
    if (this.sql !== undefined) {
      // Read on every fold, so it skips Prisma's per-query overhead.
      const rows = await this.sql.query<{ pair_type: string; timeout_seconds: number; end_at: AutoCloseEndAt }>(
        `SELECT pair_type, timeout_seconds, end_at FROM auto_close_preferences WHERE user_id = $1`,
        [userId],
      );
      return rows
        .map((row) => ({ pairType: row.pair_type, timeoutSeconds: row.timeout_seconds, endAt: row.end_at }))
        .sort((a, b) => compareCodePoints(a.pairType, b.pairType));
    }
    const rows = await this.prisma.autoClosePreference.findMany({ where: { userId } });
    return rows
      .map((row) => ({ pairType: row.pairType, timeoutSeconds: row.timeoutSeconds, endAt: row.endAt }))
      .sort((a, b) => compareCodePoints(a.pairType, b.pairType));
  }

  /**
   * Returns the pair types from a short-lived cache, for the intake hot path.
   * The cache is reloaded when it is older than CATALOG_CACHE_MS, after a
   * `define` in this process, and when `eventTypes` names a type that the
   * cached list does not know and that was not confirmed as a point event
   * within CATALOG_CACHE_MS. With `fresh`, it always reloads.
   *
   * A pair type defined in another process is seen here at once for event
   * types this process has not met, but up to CATALOG_CACHE_MS late for a
   * type it recently treated as a point event. Intake guards its events
   * write with the number of pair types it used, and reloads with `fresh`
   * when that number changed.
   */
  async cachedList(eventTypes: Iterable<string> = [], fresh = false): Promise<PairTypeRecord[]> {
    // Cache age is wall-clock time, independent of the clock that services read.
    const now = performance.now();
    const cache = this.cache;
    if (!fresh && cache !== null && now - cache.loadedAt < CATALOG_CACHE_MS) {
      let stale = false;
      for (const type of eventTypes) {
        if (!cache.eventTypes.has(type) && !this.isRecentPoint(type, now)) {
          stale = true;
          break;
        }
      }
      if (!stale) {
        return cache.types;
      }
    }
    const types = await this.list();
    this.cache = {
      types,
      loadedAt: now,
      eventTypes: new Set(types.flatMap((type) => [type.startType, type.endType])),
    };
    for (const type of eventTypes) {
      if (!this.cache.eventTypes.has(type)) {
        this.rememberPoint(type, now);
      }
    }
    return types;
  }

  private isRecentPoint(type: string, now: number): boolean {
    const seenAt = this.recentPoints.get(type);
    return seenAt !== undefined && now - seenAt < CATALOG_CACHE_MS;
  }

  private rememberPoint(type: string, now: number): void {
    // Bounded: a client sending endless distinct types only causes reloads.
    if (this.recentPoints.size >= MAX_REMEMBERED_POINT_TYPES) {
      this.recentPoints.clear();
    }
    this.recentPoints.set(type, now);
  }
}

export function buildCatalog(
  types: readonly PairTypeDefinition[],
  preferences: ReadonlyArray<{ pairType: string } & AutoClosePolicy>,
): PairCatalog {
  const byEventType = new Map<string, { pairType: string; role: 'START' | 'END' }>();
  const byName = new Map<string, PairTypeDefinition>();
  const policies = new Map<string, AutoClosePolicy>();
  for (const type of types) {
    byName.set(type.name, type);
    byEventType.set(type.startType, { pairType: type.name, role: 'START' });
    byEventType.set(type.endType, { pairType: type.name, role: 'END' });
    policies.set(type.name, type.autoClose);
  }
  for (const preference of preferences) {
    if (byName.has(preference.pairType)) {
      policies.set(preference.pairType, {
        timeoutSeconds: preference.timeoutSeconds,
        endAt: preference.endAt,
      });
    }
  }
  return { byEventType, byName, policies };
}

function validatePolicy(policy: AutoClosePolicy): string[] {
  const problems: string[] = [];
  if (
    !Number.isInteger(policy.timeoutSeconds) ||
    policy.timeoutSeconds < 1 ||
    policy.timeoutSeconds > MAX_TIMEOUT_SECONDS
  ) {
    problems.push(`timeoutSeconds is ${policy.timeoutSeconds}; it must be an integer from 1 to ${MAX_TIMEOUT_SECONDS}`);
  }
  if (!END_AT_VALUES.includes(policy.endAt)) {
    problems.push(`endAt ${JSON.stringify(policy.endAt)} is invalid: use LAST_ACTIVITY or DEADLINE`);
  }
  return problems;
}

/**
 * Checks a definition against the stored pair types: its event types are
 * free, an existing type keeps its event types and is not built in, and the
 * parent exists without making a cycle. Returns the existing type of that
 * name, if any.
 */
function checkDefinition(
  input: DefinePairTypeInput,
  parent: string | null,
  existing: readonly PairTypeRecord[],
): PairTypeRecord | undefined {
  const byName = new Map(existing.map((type) => [type.name, type]));
  const current = byName.get(input.name);

  for (const other of existing) {
    if (other.name === input.name) {
      continue;
    }
    for (const eventType of [input.startType, input.endType]) {
      if (eventType === other.startType || eventType === other.endType) {
        throw badInput(
          'EVENT_TYPE_IN_USE',
          `Event type ${JSON.stringify(eventType)} is already used by pair type ${JSON.stringify(other.name)}.`,
          { eventType, pairType: other.name },
        );
      }
    }
  }

  if (current !== undefined) {
    if (current.builtIn) {
      throw badInput('PAIR_TYPE_BUILT_IN', `Pair type ${JSON.stringify(input.name)} is built in and cannot be redefined.`, {
        name: input.name,
      });
    }
    if (current.startType !== input.startType || current.endType !== input.endType) {
      throw badInput(
        'PAIR_TYPE_EXISTS',
        `Pair type ${JSON.stringify(input.name)} already exists with event types ${current.startType}/${current.endType}; its event types cannot change.`,
        { name: input.name },
      );
    }
  }

  if (parent !== null) {
    if (!byName.has(parent)) {
      throw badInput('PARENT_NOT_FOUND', `Parent pair type ${JSON.stringify(firstCharacters(parent, 64))} does not exist. Define the parent first, or check its name with the pairTypes query.`, {
        parent: firstCharacters(parent, 64),
      });
    }
    // Walk up from the parent: reaching the new name again means a cycle.
    const seen = new Set<string>([input.name]);
    let cursor: string | null = parent;
    while (cursor !== null) {
      if (seen.has(cursor)) {
        throw badInput(
          'PARENT_CYCLE',
          `Parent ${JSON.stringify(parent)} would make pair type ${JSON.stringify(input.name)} its own ancestor.`,
          { name: input.name, parent },
        );
      }
      seen.add(cursor);
      cursor = byName.get(cursor)?.parent ?? null;
    }
  }
  return current;
}

/** Converts a stored pair type row into its record. */
function toPairTypeRecord(row: {
  name: string;
  startType: string;
  endType: string;
  parent: string | null;
  timeoutSeconds: number;
  endAt: AutoCloseEndAt;
  builtIn: boolean;
}): PairTypeRecord {
  return {
    name: row.name,
    startType: row.startType,
    endType: row.endType,
    parent: row.parent,
    autoClose: { timeoutSeconds: row.timeoutSeconds, endAt: row.endAt },
    builtIn: row.builtIn,
  };
}

/**
 * Compares two strings by UTF-16 code units, which for the ASCII names of
 * pair types is code point order: `-` and `.`, digits, uppercase letters,
 * `_`, then lowercase letters.
 * ORDER BY in SQL would follow the database's collation instead, which
 * differs between servers (C in some, en_US in the official postgres image).
 */
function compareCodePoints(a: string, b: string): number {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}
