/**
 * Brings one user's derived rows and Redis state up to date, under that
 * user's lock. It folds the stored events not applied yet and settles the
 * deadlines that have passed. When the earliest pending event lies before
 * what was applied, it first restores the state at that event, which is how
 * late events and provisional auto-closes are handled. A late heartbeat that
 * cannot change anything counts as folded without a restore
 * (`absorbsLateEvent`). The result goes to PostgreSQL in one statement, in a
 * transaction only after a restore. The state and next deadline go to Redis.
 *
 * Redis keeps a cache of the engine state stamped with the derived version it
 * matches; any other stamp (or none, after a flush) means it is rebuilt from
 * the open segments and the head row in PostgreSQL. For a user with more than
 * INLINE_OPEN_MAX open instances, Redis keeps the state without them, and
 * they come from this process's `OpenPairsCache` or from PostgreSQL.
 */
import { createHash } from 'node:crypto';

import type { Logger } from 'pino';

import { DomainError } from '../domain/errors.js';
import { MIN_INSTANT_MS } from '../domain/storable.js';
import { absorbsLateEvent, advanceTo, applyEvents, nextDeadline, restoreState } from '../domain/pairing/engine.js';
import { UnknownPairTypeError } from '../domain/pairing/fold-step.js';
import { buildCatalog } from './pair-types.js';
import { comparePositions } from '../domain/pairing/position.js';
import type { EngineOutput, EngineState, PairCatalog, PairTypeDefinition, Position, SynthesisRule } from '../domain/pairing/types.js';
import type { AppMetrics } from '../metrics/metrics.js';
import { OpenPairsCache } from './open-pairs-cache.js';
import {
  loadNextOrdinal,
  loadOpenSegments,
  loadHeadAndPending,
  loadEventsAfter,
  loadRewindInput,
  clearDerived,
  truncateDerivedFrom,
  writeDerived,
  type DerivedHead,
  type EventToFold,
  type FoldInput,
  type ClosedSegmentFields,
  type SegmentRow,
  type SeqRange,
} from '../storage/postgres/intake-store.js';
import { inJsonbKeyOrder, type EventRecord, type SegmentRecord } from '../storage/postgres/records.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { CoordinationStore, UserLock } from '../storage/redis/coordination-store.js';

/** SQLSTATE of a deadlock that PostgreSQL broke by failing this statement. */
const DEADLOCK_DETECTED = '40P01';

/** Points between storage steps where tests stop processing to simulate a crash. */
export type IntakeStep =
  | 'events-stored'
  | 'derived-written'
  | 'state-saved'
  | 'deadline-scheduled';

export type FaultHook = (step: IntakeStep, userId: string) => void;

interface StoredState {
  derivedVersion: number;
  /** The whole engine state, when it has at most INLINE_OPEN_MAX open instances. */
  engine?: EngineState;
  /**
   * The engine state without its open instances, when it has more. A reader
   * that knows only `engine` finds none and rebuilds the state from PostgreSQL.
   */
  engineWithoutOpen?: Omit<EngineState, 'open'>;
  /** The user's event counters in PostgreSQL when the fold read its head. */
  counters?: StoredCounters;
  /** Fingerprint of the auto-close policies the fold used (`policyFingerprint`). */
  policies?: string;
}

/** The counters that the events write guards on, as a fold last saw them. */
export interface StoredCounters {
  lastEventSeq: number;
  maxOccurredAt: number | null;
}

/**
 * Returns the event counters saved with a user's engine state, or null when
 * the text is missing, unreadable or older than the counters field. They
 * are a guess: another process may have stored events since, which the
 * events write detects.
 */
export function countersInState(text: string | null | undefined): StoredCounters | null {
  if (text === null || text === undefined) {
    return null;
  }
  try {
    const counters = (JSON.parse(text) as StoredState).counters;
    return counters !== undefined && Number.isInteger(counters.lastEventSeq) ? counters : null;
  } catch {
    return null;
  }
}

export interface DeriveResult {
  /** False when there was nothing to fold or close. */
  changed: boolean;
  rewound: boolean;
  /** The instant from which a rewind recomputed the user's stored rows, or null without a rewind. */
  rewoundFrom: number | null;
  nextDeadline: number | null;
  /** Ids of the client events this derive folded; of its last page only when it folded in pages, which only folds without `justStored` do. */
  folded: ReadonlySet<string>;
  /** Ids of the folded events that are ORPHAN_END after it, with the same limit as `folded`. */
  orphans: ReadonlySet<string>;
  /**
   * The rows this derive wrote that an intake reply shows, as a read after it
   * would return them. Empty unless the caller passed `justStored`.
   */
  written: WrittenRows;
  /** Number of corrections this derive wrote, by rule, over all its pages. Rules without one are absent. */
  correctionsByRule: ReadonlyMap<SynthesisRule, number>;
}

/** Corrections a derive wrote, in position order, and the segments it closed, by end and then start. */
export interface WrittenRows {
  corrections: EventRecord[];
  closedSegments: SegmentRecord[];
}

/** Client events that the caller has just stored for the user, so that the fold takes them from memory instead of reading them back. */
export interface JustStored {
  /** The sequence numbers the caller stored, ignored events included. */
  range: SeqRange;
  /** The stored events that are not ignored, in any order. */
  events: readonly EventToFold[];
  /** The fold input that the store's write returned. Without it, the fold reads its own. */
  input?: FoldInput;
}

/** A position before every event and decision, from which a rewind recomputes everything. */
const BEFORE_ANY_EVENT: Position = { at: MIN_INSTANT_MS - 1, seq: 0 };

/** Page size of a Deriver built without one, the default of REPLAY_PAGE_SIZE. */
const DEFAULT_REPLAY_PAGE_SIZE = 10_000;

/** Open pairs cached by a Deriver built without a size, the default of OPEN_PAIRS_CACHE_SIZE. */
const DEFAULT_OPEN_PAIRS_CACHE_SIZE = 100_000;

/**
 * Maximum number of open instances that the engine state in Redis carries.
 * Up to this many, a request on any process gets them with its lock and
 * needs no read of the open segments. Above it, Redis gets none of them, so
 * that a request on the process that folded the user last spends no time
 * linear in them on serializing, sending and parsing. The value is a
 * judgment, not a measured break-even.
 */
export const INLINE_OPEN_MAX = 1000;

export class Deriver {
  constructor(
    private readonly sql: SqlClient,
    private readonly store: CoordinationStore,
    /**
     * The pair types, from a cache unless `fresh` requests a read that
     * returns every committed change. The user's own auto-close preferences come with the head.
     */
    private readonly pairTypes: (fresh?: boolean) => Promise<readonly PairTypeDefinition[]>,
    private readonly logger: Logger,
    private readonly fault: FaultHook = () => {},
    /** Events read, folded and written per step of a rewind that has no events of a request in memory. */
    private readonly replayPageSize: number = DEFAULT_REPLAY_PAGE_SIZE,
    /** Open pairs, summed over users, kept in `openPairs`. */
    openPairsCacheSize: number = DEFAULT_OPEN_PAIRS_CACHE_SIZE,
    /** Counts the corrections written, or null when METRICS_PORT is unset. */
    private readonly metrics: AppMetrics | null = null,
  ) {
    this.openPairs = new OpenPairsCache(openPairsCacheSize);
  }

  /** Open instances of the users with more than INLINE_OPEN_MAX of them that this process folded last. */
  private readonly openPairs: OpenPairsCache;

  /**
   * Folds the user's pending events and applies the deadlines passed by
   * `now`. With `replayAll`, it first rewinds to before the user's first
   * event, so that every derived row is recomputed from the event log, as
   * after a change of the user's auto-close preferences. Such a replay reads
   * the pair types past their cache, so it applies a change that committed
   * before it started. The rewind and the write share one transaction, so a
   * reader sees the old rows or the new ones. With `clearFirst` as well, the
   * replay first deletes every derived row of the user in that transaction,
   * as a full rebuild does.
   *
   * A rewind without `justStored`, such as a replay, reads, folds and writes
   * its events `replayPageSize` at a time in that transaction, so neither
   * memory nor the duration of one statement grows with the user's history.
   * A rewind of a request folds in one step, because its reply needs the
   * whole fold; the lateness horizon bounds how far back it goes.
   */
  async derive(
    lock: UserLock,
    now: number,
    justStored?: JustStored,
    options: { replayAll?: boolean; clearFirst?: boolean } = {},
  ): Promise<DeriveResult> {
    const replay = options.replayAll === true ? { clearFirst: options.clearFirst === true } : null;
    try {
      return await this.deriveWith(lock, now, justStored, replay, options.replayAll === true);
    } catch (error) {
      // Another process defined a pair type within the cache's lifetime, and
      // the user's events or open pairs already use it. The fold throws
      // before it writes, or inside the rewind's transaction, which rolls back.
      if (!(error instanceof UnknownPairTypeError) || options.replayAll === true) {
        throw error;
      }
      this.logger.info({ userId: lock.userId, pairType: error.pairType }, 'pair type missing from the cache; folding again with fresh pair types');
      return this.deriveWith(lock, now, justStored, null, true);
    }
  }

  /** Runs `derive` with pair types from the cache or, with `freshTypes`, from PostgreSQL. `replay` is null unless it replays the whole log. */
  private async deriveWith(
    lock: UserLock,
    now: number,
    justStored: JustStored | undefined,
    replay: { clearFirst: boolean } | null,
    freshTypes: boolean,
  ): Promise<DeriveResult> {
    const userId = lock.userId;
    // Independent reads run at once. The head and the pending events come
    // from one statement (the caller's events write, or a read here), so they
    // agree even when a request whose lock expired stores events meanwhile.
    const [types, loaded, stateText] = await Promise.all([
      this.pairTypes(freshTypes),
      justStored?.input ?? loadHeadAndPending(this.sql, userId, justStored?.range ?? null),
      lock.state !== undefined ? lock.state : this.store.loadUserState(userId),
    ]);
    if (loaded === null) {
      throw new Error(`User ${userId} does not exist.`);
    }
    const { head } = loaded;
    const unfolded = justStored === undefined ? loaded.pending : withJustStored(loaded.pending, justStored.events, head);
    const catalog = buildCatalog(types, loaded.preferences);
    const policies = policyFingerprint(catalog);
    const loadedState = await this.loadState(userId, head, stateText, policies);
    let state = loadedState.state;
    // Kept from the outputs, because counting the keys of a large record takes time linear in them.
    let openCount = loadedState.openCount;

    const outputs: EngineOutput[] = [];
    const metaByEventId = new Map<string, Record<string, unknown> | null>();
    // Late events that would change nothing, such as a heartbeat before the
    // last activity with no auto-close after it, count as folded without a rewind.
    const pending: EventToFold[] = [];
    for (const entry of unfolded) {
      if (absorbsLateEvent(state, entry.event)) {
        metaByEventId.set(entry.event.id, entry.meta);
      } else {
        pending.push(entry);
      }
    }
    let orphans: ReadonlySet<string> = new Set();
    let written: WrittenRows = { corrections: [], closedSegments: [] };
    const correctionsByRule = new Map<SynthesisRule, number>();
    const countCorrections = (corrections: ReadonlyArray<{ rule: SynthesisRule }>): void => {
      for (const { rule } of corrections) {
        correctionsByRule.set(rule, (correctionsByRule.get(rule) ?? 0) + 1);
      }
    };
    let rewound = false;
    // The earliest instant whose derived rows the rewind may change.
    let rewoundFrom: number | null = null;

    // The write is one statement. Only a rewind, which reads and truncates
    // before it writes, needs a transaction around it.
    const firstEvent = pending[0]?.event;
    const rewindTo: Position | null =
      replay !== null
        ? BEFORE_ANY_EVENT
        : firstEvent !== undefined &&
            state.position !== null &&
            comparePositions({ at: firstEvent.occurredAt, seq: firstEvent.seq }, state.position) < 0
          ? { at: firstEvent.occurredAt, seq: firstEvent.seq }
          : null;
    const needsRewind = rewindTo !== null;
    const paged = justStored === undefined;
    /** Folds `events` into the state and notes what the write of the fold needs. */
    const foldEvents = (events: readonly EventToFold[]): void => {
      for (const { event, meta } of events) {
        metaByEventId.set(event.id, meta);
      }
      const step = applyEvents(
        state,
        events.map(({ event }) => event),
        catalog,
      );
      state = step.state;
      openCount += openedMinusClosed(step.output);
      outputs.push(step.output);
    };
    /** Writes the rows of the pages folded so far, in the rewind's transaction, and starts the next page. */
    const writePage = async (sql: SqlClient): Promise<void> => {
      const write = collectWrite(outputs, metaByEventId);
      // A page leaves the user's row alone, so that account changes do not
      // wait for the whole replay; the last write sets the head.
      await writeDerived(sql, {
        userId,
        fence: lock.fence,
        expectedVersion: head.derivedVersion,
        receivedAt: now,
        ...write,
        head: null,
        returnClosed: false,
      });
      countCorrections(write.corrections);
      foldedInPages += metaByEventId.size;
      outputs.length = 0;
      metaByEventId.clear();
    };
    let foldedInPages = 0;
    const fold = async (sql: SqlClient): Promise<{ changed: boolean; version: number }> => {
      if (firstEvent !== undefined || rewindTo !== null) {
        // Without a rewind, the pending events are exactly the ones to fold.
        let events: readonly EventToFold[] = pending;
        if (rewindTo !== null) {
          const first = rewindTo;
          const pageSize = paged ? this.replayPageSize : null;
          // The events this request has just stored come from memory here too.
          const input = await loadRewindInput(sql, userId, first, head.lastEventSeq, justStored?.range ?? null, pageSize);
          if (input === null || input.derivedVersion !== head.derivedVersion) {
            // Another writer folded since the head was read, so the rows read
            // here may not match the head. The lock must have passed to it.
            throw lockLost(userId);
          }
          this.logger.debug({ userId, at: new Date(first.at).toISOString(), seq: first.seq }, 'late event: restoring state');
          openCount = input.openSegments.length;
          state = restoreState({
            openSegments: input.openSegments,
            lastActivityAt: input.lastActivityAt,
            position: input.position,
            appliedSeq: 0,
            // Every decision before the rewind position lies before it.
            lastAutoCloseAt: first,
            // A client event sits at the restored position, so every deadline
            // lies after it and no correction of this fold is decided there.
          });
          if (replay?.clearFirst === true) {
            // In this transaction, so readers see the old rows until the replay commits.
            await clearDerived(sql, userId);
          }
          const earliestReopenedEnd = await truncateDerivedFrom(sql, userId, first);
          rewoundFrom = Math.max(MIN_INSTANT_MS, Math.min(first.at, earliestReopenedEnd ?? first.at));
          rewound = true;
          events =
            justStored === undefined
              ? input.events
              : mergeJustStored(input.events, justStored.events, first, head.lastEventSeq);
          // A full page may have more after it; the last, shorter page goes
          // on to the settling and the write below.
          while (pageSize !== null && events.length === pageSize) {
            foldEvents(events);
            await writePage(sql);
            const last = events[events.length - 1]!.event;
            events = await loadEventsAfter(sql, userId, { at: last.occurredAt, seq: last.seq }, head.lastEventSeq, pageSize);
          }
        }
        foldEvents(events);
      }

      const settled = advanceTo(state, now, catalog);
      state = { ...settled.state, appliedSeq: head.lastEventSeq };
      openCount += openedMinusClosed(settled.output);
      outputs.push(settled.output);

      const produced = outputs.some(
        (output) => output.corrections.length + output.segments.length + output.flags.length > 0,
      );
      if (!produced && !rewound && pending.length === 0 && head.appliedSeq === head.lastEventSeq) {
        return { changed: false, version: head.derivedVersion };
      }

      const write = collectWrite(outputs, metaByEventId);
      orphans = new Set(write.orphanEventIds);
      // Only an intake request, which passes the events it stored, builds a reply.
      const forReply = justStored !== undefined;
      const { version, closed } = await writeDerived(sql, {
        userId,
        fence: lock.fence,
        expectedVersion: head.derivedVersion,
        receivedAt: now,
        ...write,
        head: {
          appliedSeq: state.appliedSeq,
          position: state.position,
          lastActivityAt: state.lastActivityAt,
        },
        returnClosed: forReply,
      });
      countCorrections(write.corrections);
      if (forReply) {
        written = writtenRows(userId, now, write, closed, orphans);
      }
      return { changed: true, version };
    };
    let result: { changed: boolean; version: number };
    try {
      result = needsRewind ? await this.sql.transaction(fold) : await fold(this.sql);
    } catch (error) {
      // Only writers of the same user, one of them past its lock, deadlock
      // here, so the client may retry as after any lost lock.
      if ((error as { code?: string }).code === DEADLOCK_DETECTED) {
        this.logger.warn({ err: error, userId }, 'derived write deadlocked with another writer of the user');
        throw lockLost(userId);
      }
      throw error;
    }
    // Counted once the write committed, because a failed rewind rolls its pages back.
    this.metrics?.countCorrections(correctionsByRule);
    if (result.changed) {
      this.logger.debug(
        { userId, rewound, folded: foldedInPages + metaByEventId.size, version: result.version },
        'derived data updated',
      );
    }
    this.fault('derived-written', userId);

    const stored: StoredState = {
      derivedVersion: result.version,
      counters: { lastEventSeq: head.lastEventSeq, maxOccurredAt: head.maxOccurredAt },
      policies,
    };
    if (openCount > INLINE_OPEN_MAX) {
      const { open, ...withoutOpen } = state;
      stored.engineWithoutOpen = withoutOpen;
      // The write succeeded, so this is the state of the new version whatever
      // becomes of the save to Redis below.
      this.openPairs.set(userId, { derivedVersion: result.version, appliedSeq: state.appliedSeq, open, count: openCount });
    } else {
      stored.engine = state;
      this.openPairs.delete(userId);
    }
    const serialized = JSON.stringify(stored);
    const saved = await this.store.saveUserState(lock, serialized);
    lock.state = saved ? serialized : undefined;
    this.fault('state-saved', userId);

    const deadline = nextDeadline(state, catalog);
    if (saved) {
      await this.store.scheduleDeadline(userId, deadline);
    } else {
      // Another holder may have the lock now, with its own watchdog deadline
      // for events this fold did not see. Replacing it with a later deadline
      // or removing it would leave them unapplied. But Redis may instead
      // have lost its keys, and then no other entry carries this deadline. An
      // earlier deadline is safe either way: a sweep that finds the user
      // busy tries again at the next sweep.
      // NOTE: a lock that expires between the save and the schedule above can
      // still lose the other holder's watchdog. Both live in one script only
      // if they share a Redis Cluster slot, and the deadline set spans all users.
      if (deadline !== null) {
        await this.store.scheduleDeadlineIfEarlier(userId, deadline);
      }
      this.logger.warn({ userId }, 'user lock expired before the engine state was saved; the next holder settles the user');
    }
    this.fault('deadline-scheduled', userId);

    return {
      changed: result.changed,
      rewound,
      rewoundFrom,
      nextDeadline: deadline,
      folded: new Set(metaByEventId.keys()),
      orphans,
      written,
      correctionsByRule,
    };
  }

  /**
   * Returns the engine state stored in Redis (`text`) when it matches the
   * head, with its open instances from `openPairs` or PostgreSQL when Redis
   * left them out, and rebuilds it from PostgreSQL otherwise. Returns the
   * number of open instances with it.
   */
  private async loadState(
    userId: string,
    head: DerivedHead,
    text: string | null,
    policies: string,
  ): Promise<{ state: EngineState; openCount: number }> {
    if (text !== null) {
      let stored: StoredState | null = null;
      try {
        stored = JSON.parse(text) as StoredState;
      } catch {
        // Unreadable state is rebuilt below like a missing one.
      }
      const loaded = stored !== null && stored.derivedVersion === head.derivedVersion ? await this.storedEngine(userId, stored, head) : null;
      if (loaded !== null) {
        // The bound on the last auto-close holds for the policies the fold
        // used. Under other policies an auto-close could be due anywhere in
        // the history, so a late event must rewind to be folded with them.
        return stored?.policies === policies
          ? loaded
          : { ...loaded, state: { ...loaded.state, lastAutoCloseAt: loaded.state.position } };
      }
      this.logger.info({ userId }, 'engine state in Redis is stale; rebuilding it from PostgreSQL');
    } else if (head.derivedVersion > 0) {
      this.logger.debug({ userId }, 'engine state missing in Redis; rebuilding it from PostgreSQL');
    }
    const [openSegments, nextOrdinal] = await Promise.all([
      loadOpenSegments(this.sql, userId),
      head.position === null ? undefined : loadNextOrdinal(this.sql, userId, head.position),
    ]);
    const state = restoreState({
      openSegments,
      lastActivityAt: head.lastActivityAt,
      position: head.position,
      appliedSeq: head.appliedSeq,
      // The head's position is that of the last applied event or decision.
      lastAutoCloseAt: head.position,
      ...(nextOrdinal === undefined ? {} : { nextOrdinal }),
    });
    return { state, openCount: openSegments.length };
  }

  /**
   * Returns the engine state of a stored state of the head's derived version,
   * or null when it has none or one of another applied seq. Open instances
   * that Redis left out come from `openPairs` when this process folded the
   * user last, and from the open segments in PostgreSQL otherwise.
   */
  private async storedEngine(
    userId: string,
    stored: StoredState,
    head: DerivedHead,
  ): Promise<{ state: EngineState; openCount: number } | null> {
    const { engine, engineWithoutOpen } = stored;
    if (engine?.version === 1 && engine.appliedSeq === head.appliedSeq) {
      return { state: engine, openCount: Object.keys(engine.open).length };
    }
    if (engineWithoutOpen?.version !== 1 || engineWithoutOpen.appliedSeq !== head.appliedSeq) {
      return null;
    }
    const cached = this.openPairs.get(userId, head.derivedVersion, head.appliedSeq);
    if (cached !== null) {
      return { state: { ...engineWithoutOpen, open: cached.open }, openCount: cached.count };
    }
    // The open segments give the open instances; the other fields stay as stored.
    const openSegments = await loadOpenSegments(this.sql, userId);
    const { open } = restoreState({ ...engineWithoutOpen, openSegments });
    return { state: { ...engineWithoutOpen, open }, openCount: openSegments.length };
  }
}

/** Returns how many instances an engine output opened, less those it closed. */
function openedMinusClosed(output: EngineOutput): number {
  let delta = 0;
  for (const change of output.segments) {
    delta += change.kind === 'opened' ? 1 : -1;
  }
  return delta;
}

/**
 * Adds the just-stored events that the head has not applied yet to the
 * pending events read from PostgreSQL, in fold order: by occurrence, then seq.
 */
function withJustStored(
  read: readonly EventToFold[],
  stored: readonly EventToFold[],
  head: DerivedHead,
): readonly EventToFold[] {
  const fresh = stored.filter(({ event }) => event.seq > head.appliedSeq && event.seq <= head.lastEventSeq);
  if (fresh.length === 0) {
    return read;
  }
  return [...read, ...fresh].sort(byFoldOrder);
}

/** Returns a short fingerprint of the effective auto-close policy of every pair type in `catalog`. */
export function policyFingerprint(catalog: PairCatalog): string {
  const entries = [...catalog.policies]
    .map(([pairType, policy]) => `${pairType}\u0000${policy.timeoutSeconds}\u0000${policy.endAt}`)
    .sort();
  return createHash('sha1').update(entries.join('\u0001')).digest('hex').slice(0, 20);
}

function lockLost(userId: string): DomainError {
  return new DomainError(
    'SERVICE_UNAVAILABLE',
    'LOCK_LOST',
    'Processing of this user moved to another server process; retry the request.',
    { userId },
  );
}

/**
 * Adds the just-stored events at or after `from` and with seq up to `maxSeq`
 * to the events a rewind read, in fold order. A client event's position is
 * its occurrence and seq.
 */
function mergeJustStored(
  read: readonly EventToFold[],
  stored: readonly EventToFold[],
  from: Position,
  maxSeq: number,
): readonly EventToFold[] {
  const fresh = stored.filter(
    ({ event }) => event.seq <= maxSeq && comparePositions({ at: event.occurredAt, seq: event.seq }, from) >= 0,
  );
  if (fresh.length === 0) {
    return read;
  }
  return [...read, ...fresh].sort(byFoldOrder);
}

function byFoldOrder(a: EventToFold, b: EventToFold): number {
  return a.event.occurredAt - b.event.occurredAt || a.event.seq - b.event.seq;
}

/**
 * Builds the records of the corrections and closed segments a derived write
 * stored, as `loadReply` would read them. The fold supplies every column but
 * the pair key, start event, parent and `meta` of segments that opened before
 * it, which the write returned.
 */
function writtenRows(
  userId: string,
  receivedAt: number,
  write: ReturnType<typeof collectWrite>,
  closed: readonly ClosedSegmentFields[],
  orphans: ReadonlySet<string>,
): WrittenRows {
  const byPosition = [...write.corrections].sort(
    (a, b) => comparePositions(a.position, b.position) || a.ordinal - b.ordinal,
  );
  const corrections = byPosition.map(
    (correction): EventRecord => ({
      id: correction.id,
      userId,
      seq: correction.position.seq,
      clientId: null,
      type: correction.type,
      role: correction.role,
      pairType: correction.pairType,
      pairKey: correction.pairKey,
      occurredAt: new Date(correction.occurredAt),
      clientOccurredAt: null,
      receivedAt: new Date(receivedAt),
      meta: null,
      origin: 'CORRECTION',
      rule: correction.rule,
      causeEventId: correction.causeEventId,
      intakeFlags: [],
      orphan: orphans.has(correction.id),
      ignored: false,
    }),
  );

  const segments: SegmentRecord[] = [];
  for (const segment of write.newSegments) {
    if (segment.end !== null) {
      segments.push({
        id: segment.start.segmentId,
        userId,
        pairType: segment.start.pairType,
        pairKey: segment.start.pairKey,
        startAt: new Date(segment.start.startAt),
        endAt: new Date(segment.end.endAt),
        endReason: segment.end.endReason,
        startEventId: segment.start.startEventId,
        endEventId: segment.end.endEventId,
        meta: segment.meta === null ? null : (inJsonbKeyOrder(segment.meta) as Record<string, unknown>),
        parentSegmentId: segment.start.parentSegmentId,
      });
    }
  }
  const stored = new Map(closed.map((fields) => [fields.id, fields]));
  for (const segment of write.closedSegments) {
    const fields = stored.get(segment.segmentId);
    if (fields === undefined) {
      throw new Error(`Segment ${segment.segmentId} was closed, but the write did not return it.`);
    }
    segments.push({
      id: segment.segmentId,
      userId,
      pairType: segment.pairType,
      pairKey: fields.pairKey,
      startAt: new Date(segment.startAt),
      endAt: new Date(segment.end.endAt),
      endReason: segment.end.endReason,
      startEventId: fields.startEventId,
      endEventId: segment.end.endEventId,
      meta: fields.meta,
      parentSegmentId: fields.parentSegmentId,
    });
  }
  segments.sort((a, b) => (a.endAt as Date).getTime() - (b.endAt as Date).getTime() || a.startAt.getTime() - b.startAt.getTime());
  return { corrections, closedSegments: segments };
}

/** Turns engine outputs, in order, into rows: new segments (maybe already closed) and closes of stored ones. */
function collectWrite(
  outputs: readonly EngineOutput[],
  metaByEventId: ReadonlyMap<string, Record<string, unknown> | null>,
) {
  const corrections = outputs.flatMap((output) => output.corrections);
  const created = new Map<string, SegmentRow>();
  const closed = new Map<string, { pairType: string; startAt: number; end: NonNullable<SegmentRow['end']> }>();
  const orphanEventIds: string[] = [];

  for (const output of outputs) {
    for (const change of output.segments) {
      if (change.kind === 'opened') {
        const { kind: _kind, depth, ...start } = change;
        created.set(change.segmentId, {
          start,
          depth,
          meta: metaByEventId.get(change.startEventId) ?? null,
          end: null,
        });
      } else {
        const end = {
          endAt: change.endAt,
          endEventId: change.endEventId,
          endReason: change.endReason,
          decidedAt: change.decidedAt,
        };
        const row = created.get(change.segmentId);
        if (row !== undefined) {
          row.end = end;
        } else {
          closed.set(change.segmentId, { pairType: change.pairType, startAt: change.startAt, end });
        }
      }
    }
    for (const flag of output.flags) {
      orphanEventIds.push(flag.eventId);
    }
  }

  return {
    corrections,
    newSegments: [...created.values()],
    closedSegments: [...closed.entries()].map(([segmentId, segment]) => ({ segmentId, ...segment })),
    orphanEventIds,
  };
}
