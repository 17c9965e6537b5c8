/**
 * SQL of the intake path: appending client events, and reading, truncating
 * and writing the rows derived from them (segments, corrections, ORPHAN_END
 * flags). Positions are compared as rows, `(at, seq)`, exactly as the pure
 * `DerivedLedger` in the domain compares them.
 */
import type { AutoCloseEndAt, Correction, EndReason, EngineEvent, Position, SegmentStart } from '../../domain/pairing/types.js';
import { DomainError } from '../../domain/errors.js';
// PostgreSQL reads the ISO 8601 text of an instant as timestamptz, because storable instants have four-digit years.
import { isoInstant } from '../../domain/storable.js';
import { PREPARED, SqlParams, type QueryOptions, type SqlClient } from './sql.js';
import { EVENT_COLUMNS, SEGMENT_COLUMNS, toEventRecord, toSegmentRecord, type EventRecord, type SegmentRecord } from './records.js';

export interface UserCounters {
  id: string;
  lastEventSeq: number;
  maxOccurredAt: number | null;
}

export interface DerivedHead {
  appliedSeq: number;
  position: Position | null;
  lastActivityAt: number | null;
  derivedVersion: number;
  lastEventSeq: number;
  /** Latest occurrence among the user's stored non-ignored client events, stored with lastEventSeq. */
  maxOccurredAt: number | null;
}

export interface NewClientEvent {
  id: string;
  userId: string;
  seq: number;
  clientId: string | null;
  type: string;
  role: 'START' | 'END' | 'POINT';
  pairType: string | null;
  pairKey: string | null;
  occurredAt: number;
  clientOccurredAt: number | null;
  receivedAt: number;
  meta: Record<string, unknown> | null;
  intakeFlags: string[];
  ignored: boolean;
}

export interface SegmentRow {
  start: SegmentStart;
  /** Number of ancestors: 0 for a segment without a parent. */
  depth: number;
  meta: Record<string, unknown> | null;
  end: null | {
    endAt: number;
    endEventId: string;
    endReason: EndReason;
    decidedAt: Position;
  };
}

export interface DerivedWrite {
  userId: string;
  fence: number;
  receivedAt: number;
  corrections: Correction[];
  /** Segments that did not exist before this write (possibly already closed). */
  newSegments: SegmentRow[];
  /** Stored segments that this write closes, with their pair type and start. */
  closedSegments: Array<{ segmentId: string; pairType: string; startAt: number; end: NonNullable<SegmentRow['end']> }>;
  orphanEventIds: string[];
  /**
   * The new head, or null to leave the user's row as it is: a page of a
   * replay checks the fence and version without updating the row, so the
   * row stays free for account changes until the replay's last write.
   */
  head: Omit<DerivedHead, 'derivedVersion' | 'lastEventSeq' | 'maxOccurredAt'> | null;
  /** Derived version read at the start of the fold; another writer since then makes the write fail. */
  expectedVersion: number;
  /** Whether the result carries the stored fields of the closed segments, which an intake reply needs. */
  returnClosed?: boolean;
}

const ms = (value: unknown): number | null => (value === null || value === undefined ? null : (value as Date).getTime());
const date = (value: number | null): Date | null => (value === null ? null : new Date(value));

/** A stored event whose client id a batch repeats, with the fields that intake compares with the re-sent event. */
export interface StoredClientEvent {
  id: string;
  clientId: string;
  type: string;
  pairKey: string | null;
  occurredAt: number;
  /** The client's occurredAt when FUTURE_TIMESTAMP replaced it. */
  clientOccurredAt: number | null;
  /** Receipt time of the request that stored the event. */
  receivedAt: number;
  meta: Record<string, unknown> | null;
}

/** The users' counters, and their stored events whose client ids the batch repeats. */
export interface IntakeSnapshot {
  counters: Map<string, UserCounters>;
  existing: Map<string, Map<string, StoredClientEvent>>;
}

/**
 * The snapshot read, the events write and the derived write stay prepared
 * whatever the size of the request. Their rows travel as one JSON document,
 * whose row count PostgreSQL cannot see: it estimates 100 rows for every
 * json_to_recordset. So a plan made for one size serves every size, and
 * parsing and planning each statement anew cost PostgreSQL CPU for nothing.
 * In alternating `npm run bench -- --only intake --batches 1,100` runs on 2
 * cores, preparing them also for batches of 100 took PostgreSQL's CPU time
 * per 1,000 events from 47 to 48 ms down to 37 to 38 ms.
 */
const INTAKE_STATEMENT: QueryOptions = PREPARED;

/**
 * Matches `column` against ids passed as parameter `param`. A request of one
 * user, or of one event, passes one id rather than an array. With an array
 * parameter of unknown length, the plan made once for all values looks
 * costlier than a plan for a single id. PostgreSQL would then plan every run
 * anew instead of reusing the prepared plan.
 */
function idMatch(column: string, param: string, single: boolean): string {
  return single ? `${column} = ${param}::uuid` : `${column} = ANY(${param}::uuid[])`;
}

function idParam(ids: readonly string[], single: boolean): string | null | string[] {
  return single ? (ids[0] ?? null) : [...ids];
}

/**
 * Reads, with one statement and without locks, the counters of the users and
 * their stored events with the given client ids. `appendClientEvents` then
 * writes only if the counters are still the ones read here.
 */
export async function loadIntakeSnapshot(
  sql: SqlClient,
  userIds: readonly string[],
  clientIds: readonly string[],
): Promise<IntakeSnapshot> {
  const oneUser = userIds.length === 1;
  const rows = await sql.queryArrays(
    `SELECT u.id, u.last_event_seq, u.max_occurred_at, x.existing
     FROM users u
     LEFT JOIN LATERAL (
       SELECT json_agg(json_build_object('id', e.id, 'clientId', e.client_id, 'type', e.type, 'pairKey', e.pair_key,
         'occurredAt', e.occurred_at, 'clientOccurredAt', e.client_occurred_at, 'receivedAt', e.received_at, 'meta', e.meta)) AS existing
       FROM events e WHERE e.user_id = u.id AND e.client_id = ANY($2::text[])
     ) x ON cardinality($2::text[]) > 0
     WHERE ${idMatch('u.id', '$1', oneUser)}`,
    [idParam(userIds, oneUser), [...new Set(clientIds)]],
    INTAKE_STATEMENT,
  );
  const snapshot: IntakeSnapshot = { counters: new Map(), existing: new Map() };
  for (const row of rows) {
    const id = row[0] as string;
    snapshot.counters.set(id, { id, lastEventSeq: row[1] as number, maxOccurredAt: ms(row[2]) });
    const found = new Map<string, StoredClientEvent>();
    for (const event of (row[3] as Array<Record<string, unknown>> | null) ?? []) {
      found.set(event.clientId as string, {
        id: event.id as string,
        clientId: event.clientId as string,
        type: event.type as string,
        pairKey: (event.pairKey as string | null) ?? null,
        occurredAt: Date.parse(event.occurredAt as string),
        clientOccurredAt: event.clientOccurredAt === null ? null : Date.parse(event.clientOccurredAt as string),
        receivedAt: Date.parse(event.receivedAt as string),
        meta: (event.meta as Record<string, unknown> | null) ?? null,
      });
    }
    snapshot.existing.set(id, found);
  }
  return snapshot;
}

/**
 * Thrown by `appendClientEvents`, which then wrote nothing, when another
 * writer stored events of one of the users since the counters were read, or
 * when an event the caller assumed new is stored already.
 */
export class CountersMovedError extends Error {
  constructor(cause?: unknown) {
    super('The counters or stored events of a user changed since they were read; nothing was written.', { cause });
    this.name = 'CountersMovedError';
  }
}

/**
 * Thrown by `appendClientEvents` when the number of pair types differs from
 * the one the caller decided the events' roles with, so another process
 * defined a pair type since. Nothing was written.
 */
export class PairTypesChangedError extends Error {
  constructor(readonly expectedCount: number) {
    super(`The pair types changed since the roles of the events were decided from ${expectedCount} of them; nothing was written.`);
    this.name = 'PairTypesChangedError';
  }
}

/** SQLSTATEs of a write that lost a race with another writer: unique violation, deadlock. */
const RACE_SQLSTATES = new Set(['23505', '40P01']);

/** The input of a fold: the head, the user's auto-close preferences and the events not folded yet. */
export interface FoldInput {
  head: DerivedHead;
  preferences: StoredPreference[];
  pending: EventToFold[];
}

/**
 * Appends client events and writes the users' new counters, with one
 * statement, only while every user's last_event_seq still equals the
 * snapshot's (`expectedSeq`). Otherwise nothing is written and it throws
 * CountersMovedError, so the caller reads a new snapshot and tries again.
 * With `unseenClientIds`, a write of one user's events also requires that
 * none of those client ids is stored yet, for a caller that did not read them.
 * With `pairTypeCount`, it writes only while that many pair types exist and
 * otherwise throws PairTypesChangedError, because roles decided from an
 * older pair type cache would stay with the stored events.
 *
 * Returns each user's fold input as of the write, so the fold that follows
 * needs no read of its own: the head with the new last_event_seq, and the
 * pending events stored before this write. The events of this write are not
 * among them, because the caller has them in memory.
 */
export async function appendClientEvents(
  sql: SqlClient,
  events: readonly NewClientEvent[],
  counters: ReadonlyArray<UserCounters & { expectedSeq: number }>,
  unseenClientIds: readonly string[] | null = null,
  pairTypeCount: number | null = null,
): Promise<Map<string, FoldInput>> {
  let rows: Array<{ written: boolean; catalog_current: boolean; heads: Array<Record<string, unknown>> | null }>;
  const userIds = counters.map((c) => c.id);
  const oneUser = userIds.length === 1;
  if (unseenClientIds !== null && !oneUser) {
    throw new TypeError('unseenClientIds applies to the events of one user only.');
  }
  // Parameters after the fourth are numbered in the order they are present.
  const unseenParam = unseenClientIds === null ? null : '$5';
  let catalogParam: string | null = null;
  if (pairTypeCount !== null) {
    catalogParam = unseenParam === null ? '$5' : '$6';
  }
  // Pair types are never deleted and their event types never change, so
  // their count changes exactly when a new pair type gives event types a role.
  // The CTE counts them once for the two places that read the result.
  const catalogCte =
    catalogParam === null
      ? 'catalog AS (SELECT true AS current),'
      : `catalog AS (SELECT count(*) = ${catalogParam}::bigint AS current FROM pair_types),`;
  try {
    // The rows travel as one JSON document: JSON.stringify costs far less
    // than fourteen array parameters of 1000 elements each.
    // The final SELECT reads users as they were before this statement: the
    // parts of one statement share a snapshot and do not see each other's writes.
    rows = await sql.query(
      `WITH ${catalogCte} counters AS (
       UPDATE users SET last_event_seq = c.last_event_seq, max_occurred_at = c.max_occurred_at
       FROM json_to_recordset($2::json) AS c(id uuid, last_event_seq int, max_occurred_at timestamptz, expected_seq int)
       WHERE users.id = c.id AND users.last_event_seq = c.expected_seq
         -- PostgreSQL estimates every json_to_recordset at 100 rows, and then
         -- hashed a scan of all users; the id list makes it look them up by key.
         AND ${idMatch('users.id', '$4', oneUser)}
         ${unseenParam === null ? '' : `AND NOT EXISTS (SELECT 1 FROM events e WHERE e.user_id = users.id AND e.client_id = ANY(${unseenParam}::text[]))`}
         -- The roles of the events were decided with this many pair types.
         AND (SELECT current FROM catalog)
       RETURNING users.id
     ), appended AS (
       INSERT INTO events (id, user_id, seq, client_id, type, role, pair_type, pair_key, occurred_at,
         client_occurred_at, received_at, meta, origin, intake_flags, ignored, pos_at, pos_seq, ordinal)
       SELECT id, user_id, seq, client_id, type, role::"EventRole", pair_type, pair_key, occurred_at,
         client_occurred_at, received_at, meta, 'CLIENT', flags::"CorrectionRule"[], ignored, occurred_at, seq, 0
       FROM json_to_recordset($1::json)
         AS t(id uuid, user_id uuid, seq int, client_id text, type text, role text, pair_type text, pair_key text,
           occurred_at timestamptz, client_occurred_at timestamptz, received_at timestamptz, meta jsonb,
           flags text[], ignored boolean)
       WHERE (SELECT count(*) FROM counters) = $3
     )
     -- When no user's counters matched, nothing was written and the statement
     -- succeeds with written = false. When only some did, their counters must
     -- not move without their events, so the check fails the whole statement.
     SELECT event_master_check((SELECT count(*) FROM counters) IN (0, $3), 'COUNTERS_MOVED') AS checked,
       (SELECT count(*) FROM counters) = $3 AS written,
       (SELECT current FROM catalog) AS catalog_current,
       (SELECT json_agg(${foldInputJson('')})
        FROM users u WHERE ${idMatch('u.id', '$4', oneUser)}) AS heads`,
      [
        JSON.stringify(
          events.map((e) => ({
            id: e.id,
            user_id: e.userId,
            seq: e.seq,
            client_id: e.clientId,
            type: e.type,
            role: e.role,
            pair_type: e.pairType,
            pair_key: e.pairKey,
            occurred_at: isoInstant(e.occurredAt),
            client_occurred_at: e.clientOccurredAt === null ? null : isoInstant(e.clientOccurredAt),
            received_at: isoInstant(e.receivedAt),
            meta: e.meta,
            flags: e.intakeFlags,
            ignored: e.ignored,
          })),
        ),
        JSON.stringify(
          counters.map((c) => ({
            id: c.id,
            last_event_seq: c.lastEventSeq,
            max_occurred_at: c.maxOccurredAt === null ? null : isoInstant(c.maxOccurredAt),
            expected_seq: c.expectedSeq,
          })),
        ),
        counters.length,
        idParam(userIds, oneUser),
        ...(unseenClientIds === null ? [] : [[...unseenClientIds]]),
        ...(pairTypeCount === null ? [] : [pairTypeCount]),
      ],
      INTAKE_STATEMENT,
    );
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if ((code === STATEMENT_CHECK_FAILED && (error as Error).message === 'COUNTERS_MOVED') || RACE_SQLSTATES.has(code)) {
      throw new CountersMovedError(error);
    }
    throw error;
  }
  if (rows[0]?.catalog_current === false) {
    throw new PairTypesChangedError(pairTypeCount as number);
  }
  if (rows[0]?.written !== true) {
    throw new CountersMovedError();
  }

  // The head read the counters as they were before this write, so it takes
  // the ones just written.
  const written = new Map(counters.map((c) => [c.id, c]));
  const inputs = new Map<string, FoldInput>();
  for (const json of rows[0]?.heads ?? []) {
    const input = toFoldInput(json);
    const own = written.get(json.id as string)!;
    input.head.lastEventSeq = own.lastEventSeq;
    input.head.maxOccurredAt = own.maxOccurredAt;
    inputs.set(json.id as string, input);
  }
  return inputs;
}

/** JSON object of the client event aliased `e`, as `fromEventJson` reads it. */
const EVENT_TO_FOLD_JSON = `json_build_object('id', e.id, 'seq', e.seq, 'type', e.type, 'occurredAt', e.occurred_at,
  'role', e.role, 'pairType', e.pair_type, 'pairKey', e.pair_key, 'meta', e.meta)`;

/**
 * Builds the subquery of the rewind read and its pages: the JSON array of
 * user $1's non-ignored client events at or after (`>=`), or after (`>`),
 * position ($2, $3), with seq up to $4, in position order, at most `limit`
 * of them (a parameter; NULL reads all).
 */
function eventsToFoldFrom(comparison: '>=' | '>', condition: string, limit: string): string {
  return `(SELECT json_agg(${EVENT_TO_FOLD_JSON} ORDER BY e.pos_at, e.pos_seq)
     FROM (
       SELECT * FROM events
       WHERE user_id = $1 AND origin = 'CLIENT' AND NOT ignored
         AND (pos_at, pos_seq) ${comparison} ($2::timestamptz, $3::int) AND seq <= $4 ${condition}
       ORDER BY pos_at, pos_seq LIMIT ${limit}
     ) AS e)`;
}

/** Converts the JSON object of `EVENT_TO_FOLD_JSON` into an event to fold. */
function fromEventJson(event: Record<string, unknown>): EventToFold {
  return {
    event: {
      id: event.id as string,
      seq: event.seq as number,
      type: event.type as string,
      occurredAt: Date.parse(event.occurredAt as string),
      role: event.role as EngineEvent['role'],
      pairType: (event.pairType as string | null) ?? null,
      pairKey: (event.pairKey as string | null) ?? '',
      ignored: false,
    },
    meta: (event.meta as Record<string, unknown> | null) ?? null,
  };
}

/**
 * Builds the JSON object of the fold input of the user aliased `u`, as
 * `toFoldInput` reads it: the head, the auto-close preferences and the
 * non-ignored client events after applied_seq up to last_event_seq, in
 * position order. `pendingFilter` narrows those events further.
 */
function foldInputJson(pendingFilter: string): string {
  return `json_build_object(
    'id', u.id, 'appliedSeq', u.applied_seq, 'appliedAt', u.applied_at, 'appliedPosSeq', u.applied_pos_seq,
    'lastActivityAt', u.last_activity_at, 'derivedVersion', u.derived_version,
    'lastEventSeq', u.last_event_seq, 'maxOccurredAt', u.max_occurred_at,
    'preferences', (
      SELECT json_agg(json_build_object('pairType', pair_type, 'timeoutSeconds', timeout_seconds, 'endAt', end_at)
        ORDER BY pair_type)
      FROM auto_close_preferences WHERE user_id = u.id),
    'pending', (
      SELECT json_agg(${EVENT_TO_FOLD_JSON} ORDER BY e.pos_at, e.pos_seq)
      FROM events e
      WHERE e.user_id = u.id AND e.origin = 'CLIENT' AND NOT e.ignored
        AND e.seq > u.applied_seq AND e.seq <= u.last_event_seq ${pendingFilter}))`;
}

/** Converts the JSON object of `foldInputJson` into a fold input. */
function toFoldInput(json: Record<string, unknown>): FoldInput {
  const appliedAt = json.appliedAt as string | null;
  const appliedPosSeq = json.appliedPosSeq as number | null;
  return {
    head: {
      appliedSeq: json.appliedSeq as number,
      position: appliedAt === null || appliedPosSeq === null ? null : { at: Date.parse(appliedAt), seq: appliedPosSeq },
      lastActivityAt: json.lastActivityAt === null ? null : Date.parse(json.lastActivityAt as string),
      derivedVersion: json.derivedVersion as number,
      lastEventSeq: json.lastEventSeq as number,
      maxOccurredAt: json.maxOccurredAt === null ? null : Date.parse(json.maxOccurredAt as string),
    },
    preferences: (json.preferences as StoredPreference[] | null) ?? [],
    pending: ((json.pending as Array<Record<string, unknown>> | null) ?? []).map(fromEventJson),
  };
}

function toSegmentStart(row: Record<string, unknown>): SegmentStart {
  return {
    segmentId: row.id as string,
    pairType: row.pair_type as string,
    pairKey: row.pair_key as string,
    startAt: (row.start_at as Date).getTime(),
    startSeq: row.start_seq as number,
    startEventId: row.start_event_id as string,
    parentSegmentId: (row.parent_segment_id as string | null) ?? null,
  };
}

const START_COLUMNS = 'id, pair_type, pair_key, start_at, start_seq, start_event_id, parent_segment_id';

/** Segments open now (no end yet). */
export async function loadOpenSegments(sql: SqlClient, userId: string): Promise<SegmentStart[]> {
  const rows = await sql.query(
    `SELECT ${START_COLUMNS} FROM segments WHERE user_id = $1 AND end_at IS NULL ORDER BY start_at, start_seq`,
    [userId],
    PREPARED,
  );
  return rows.map(toSegmentStart);
}

/**
 * Returns one more than the greatest ordinal of the user's corrections at
 * `position`, or undefined when none sit there, so that a state rebuilt at
 * that position numbers its next correction after them.
 */
export async function loadNextOrdinal(sql: SqlClient, userId: string, position: Position): Promise<number | undefined> {
  const rows = await sql.query<{ next: number | null }>(
    `SELECT max(ordinal) + 1 AS next FROM events
     WHERE user_id = $1 AND origin = 'CORRECTION' AND pos_at = $2 AND pos_seq = $3`,
    [userId, new Date(position.at), position.seq],
    PREPARED,
  );
  return rows[0]?.next ?? undefined;
}

/** The input of a rewind to position `p`: the state at `p` and the events to fold again. */
export interface RewindInput {
  /** The user's derived version in the same snapshot, to tell whether another writer moved it. */
  derivedVersion: number;
  /** Segments open at `p`. */
  openSegments: SegmentStart[];
  /** Position of the last non-ignored client event before `p`. */
  position: Position | null;
  /** The last activity before `p`. */
  lastActivityAt: number | null;
  /** The events to fold again, in position order. */
  events: EventToFold[];
}

/**
 * Reads what a rewind to `p` needs with one statement, so all of it comes
 * from one snapshot:
 * - The segments open at `p`: started before it, and still open or closed
 *   by a decision at or after it.
 * - The position of the last non-ignored client event before `p`, and the
 *   last activity before it. Activity counts synthesised ends too, because a
 *   DEADLINE auto-close ends after the last client event. Every event but a
 *   LAST_ACTIVITY auto-close occurs at its position, and that one occurs at
 *   an earlier activity, so the last row whose occurrence equals its
 *   position has the latest activity.
 * - The non-ignored client events at or after `p` with seq up to `maxSeq`
 *   (the head's last_event_seq), leaving out those in `skip`, which the
 *   caller has in memory.
 * Every part walks an index from `p`, so the cost does not grow with the
 * user's history before it. Returns null for an unknown user.
 */
export async function loadRewindInput(
  sql: SqlClient,
  userId: string,
  p: Position,
  maxSeq: number,
  skip: SeqRange | null,
  limit: number | null = null,
): Promise<RewindInput | null> {
  // Not prepared: with the plan made once for all values, PostgreSQL read the
  // events by (user_id, seq) with seq <= $4, that is the user's whole history
  // before the rewind position, instead of walking the position index from
  // $2. Rewinds are rare enough that planning each one costs little.
  const rows = await sql.queryArrays(
    `SELECT u.derived_version,
       (SELECT json_agg(json_build_object('id', s.id, 'pairType', s.pair_type, 'pairKey', s.pair_key,
            'startAt', s.start_at, 'startSeq', s.start_seq, 'startEventId', s.start_event_id,
            'parentSegmentId', s.parent_segment_id) ORDER BY s.start_at, s.start_seq)
        FROM (
          SELECT ${START_COLUMNS} FROM segments
          WHERE user_id = $1 AND end_at IS NULL AND (start_at, start_seq) < ($2::timestamptz, $3::int)
          UNION ALL
          SELECT ${START_COLUMNS} FROM segments
          WHERE user_id = $1 AND (decided_at, decided_seq) >= ($2::timestamptz, $3::int)
            AND (start_at, start_seq) < ($2::timestamptz, $3::int)
        ) AS s),
       c.occurred_at, c.seq, a.occurred_at,
       ${eventsToFoldFrom('>=', 'AND NOT (seq BETWEEN $5 AND $6)', '$7')}
     FROM users u
     LEFT JOIN LATERAL (
       SELECT occurred_at, seq FROM events
       WHERE user_id = $1 AND origin = 'CLIENT' AND NOT ignored
         AND (pos_at, pos_seq) < ($2::timestamptz, $3::int)
       ORDER BY pos_at DESC, pos_seq DESC LIMIT 1
     ) AS c ON true
     LEFT JOIN LATERAL (
       SELECT occurred_at FROM events
       WHERE user_id = $1 AND NOT ignored AND occurred_at = pos_at
         AND (pos_at, pos_seq) < ($2::timestamptz, $3::int)
       ORDER BY pos_at DESC, pos_seq DESC LIMIT 1
     ) AS a ON true
     WHERE u.id = $1`,
    [userId, new Date(p.at), p.seq, maxSeq, skip?.from ?? 0, skip?.to ?? -1, limit],
  );
  const row = rows[0];
  if (row === undefined) {
    return null;
  }
  const segments = (row[1] as Array<Record<string, unknown>> | null) ?? [];
  return {
    derivedVersion: row[0] as number,
    openSegments: segments.map((segment) => ({
      segmentId: segment.id as string,
      pairType: segment.pairType as string,
      pairKey: segment.pairKey as string,
      startAt: Date.parse(segment.startAt as string),
      startSeq: segment.startSeq as number,
      startEventId: segment.startEventId as string,
      parentSegmentId: (segment.parentSegmentId as string | null) ?? null,
    })),
    position: row[2] === null ? null : { at: (row[2] as Date).getTime(), seq: row[3] as number },
    lastActivityAt: row[4] === null ? null : (row[4] as Date).getTime(),
    events: ((row[5] as Array<Record<string, unknown>> | null) ?? []).map(fromEventJson),
  };
}

/**
 * Reads the next page of a rewind's events: at most `limit` non-ignored
 * client events after position `after`, with seq up to `maxSeq`, in position
 * order. Like the rewind read, it walks the position index from `after`.
 * NOTE: right after a bulk load, before autovacuum's ANALYZE, PostgreSQL
 * read each page through the (user_id, seq) index and sorted the user's
 * events: a replay of 500,000 events took 23 s instead of 14 s.
 */
export async function loadEventsAfter(
  sql: SqlClient,
  userId: string,
  after: Position,
  maxSeq: number,
  limit: number,
): Promise<EventToFold[]> {
  const rows = await sql.queryArrays(`SELECT ${eventsToFoldFrom('>', '', '$5')}`, [
    userId,
    new Date(after.at),
    after.seq,
    maxSeq,
    limit,
  ]);
  return ((rows[0]?.[0] as Array<Record<string, unknown>> | null) ?? []).map(fromEventJson);
}

/**
 * Removes everything derived at or after `p`, as `DerivedLedger.truncateFrom`
 * does. Returns the earliest end, in ms, of the segments it reopened, which
 * can lie before `p` when an auto-close was decided after it, or null.
 */
export async function truncateDerivedFrom(tx: SqlClient, userId: string, p: Position): Promise<number | null> {
  // One statement, four disjoint changes and a read. Segments started at or
  // after p go, and segments started before p and closed by a decision at or
  // after p reopen. Corrections at or after p go, and ORPHAN_END flags at or
  // after p clear. The read returns the earliest end of the reopened ones.
  // Not prepared, like the rewind's read: the plan made once for all values
  // scanned all of the user's segments for the reopening part.
  // The final SELECT reads the rows as they were before the statement, so it
  // gets the ends that the reopening clears.
  const rows = await tx.query<{ earliest_end: Date | null }>(
    `WITH dropped AS (
       DELETE FROM segments WHERE user_id = $1 AND (start_at, start_seq) >= ($2::timestamptz, $3::int)
     ), reopened AS (
       UPDATE segments SET end_at = NULL, end_event_id = NULL, end_reason = NULL, decided_at = NULL, decided_seq = NULL
       WHERE user_id = $1 AND (decided_at, decided_seq) >= ($2::timestamptz, $3::int)
         AND (start_at, start_seq) < ($2::timestamptz, $3::int)
     ), uncorrected AS (
       DELETE FROM events WHERE user_id = $1 AND origin = 'CORRECTION'
         AND (pos_at, pos_seq) >= ($2::timestamptz, $3::int)
     ), unflagged AS (
       UPDATE events SET orphan = false WHERE user_id = $1 AND origin = 'CLIENT' AND orphan
         AND (pos_at, pos_seq) >= ($2::timestamptz, $3::int)
     )
     SELECT min(end_at) AS earliest_end FROM segments
     WHERE user_id = $1 AND (decided_at, decided_seq) >= ($2::timestamptz, $3::int)
       AND (start_at, start_seq) < ($2::timestamptz, $3::int)`,
    [userId, new Date(p.at), p.seq],
  );
  return rows[0]?.earliest_end?.getTime() ?? null;
}

/** A client event to fold, with the meta its segment copies. */
export interface EventToFold {
  event: EngineEvent;
  meta: Record<string, unknown> | null;
}

/** A user's own auto-close policy for one pair type, as stored. */
export interface StoredPreference {
  pairType: string;
  timeoutSeconds: number;
  endAt: AutoCloseEndAt;
}

/** Client event sequence numbers from `from` to `to`, both included. */
export interface SeqRange {
  from: number;
  to: number;
}

/**
 * Loads the head, the user's auto-close preferences and the events not folded
 * yet (non-ignored client events after applied_seq, up to last_event_seq) in
 * one statement, so all come from one snapshot. An event stored after that
 * snapshot is left for the next fold, because the head's last_event_seq does
 * not count it. Events in `skip` are left out: the caller has them in memory
 * because it has just stored them. Returns null for an unknown user.
 */
export async function loadHeadAndPending(sql: SqlClient, userId: string, skip: SeqRange | null = null): Promise<FoldInput | null> {
  const rows = await sql.query<{ input: Record<string, unknown> }>(
    `SELECT ${foldInputJson('AND NOT (e.seq BETWEEN $2 AND $3)')} AS input FROM users u WHERE u.id = $1`,
    [userId, skip?.from ?? 0, skip?.to ?? -1],
    PREPARED,
  );
  const row = rows[0];
  return row === undefined ? null : toFoldInput(row.input);
}

/** SQLSTATE of the errors that `event_master_check` raises (migration 20261204210000_statement_check). */
const STATEMENT_CHECK_FAILED = 'EM001';

/** The stored fields of a segment that a derived write closed, which the engine state does not hold. */
export interface ClosedSegmentFields {
  id: string;
  pairKey: string;
  startEventId: string;
  parentSegmentId: string | null;
  meta: Record<string, unknown> | null;
}

/** The result of a derived write: the user's new derived version, and the stored fields of the segments it closed. */
export interface DerivedWriteResult {
  version: number;
  closed: ClosedSegmentFields[];
}

/**
 * Writes one fold's derived rows and the new head with one statement, so it
 * needs no transaction of its own (one round trip, one commit) and runs as
 * well inside the caller's transaction after a rewind. The fence and version
 * checks ride on the head update: a holder whose lock expired and passed to
 * another process matches no row, and so does one that folded from a head
 * another writer has since moved. The statement then fails as a whole, and
 * nothing it wrote stays.
 */
export async function writeDerived(sql: SqlClient, write: DerivedWrite): Promise<DerivedWriteResult> {
  const p = new SqlParams();
  const user = `${p.bind(write.userId)}::uuid`;
  const parts: string[] = [];

  const fence = p.bind(write.fence);
  if (write.head === null) {
    parts.push(`head AS (
     SELECT derived_version FROM users
     WHERE id = ${user} AND fence <= ${fence}::bigint AND derived_version = ${p.bind(write.expectedVersion)}
   )`);
  } else {
    parts.push(`head AS (
     UPDATE users SET applied_seq = ${p.bind(write.head.appliedSeq)}, applied_at = ${p.bind(date(write.head.position?.at ?? null))}::timestamptz,
       applied_pos_seq = ${p.bind(write.head.position?.seq ?? null)}::int, last_activity_at = ${p.bind(date(write.head.lastActivityAt))}::timestamptz,
       derived_version = derived_version + 1, fence = ${fence}::bigint
     WHERE id = ${user} AND fence <= ${fence}::bigint AND derived_version = ${p.bind(write.expectedVersion)}
     RETURNING derived_version
   )`);
  }

  // Rows travel as JSON documents, which cost far less to send than one array parameter per column.
  if (write.corrections.length > 0) {
    const rows = write.corrections.map((x) => ({
      id: x.id,
      type: x.type,
      role: x.role,
      pair_type: x.pairType,
      pair_key: x.pairKey,
      occurred_at: isoInstant(x.occurredAt),
      rule: x.rule,
      cause_event_id: x.causeEventId,
      pos_at: isoInstant(x.position.at),
      pos_seq: x.position.seq,
      ordinal: x.ordinal,
    }));
    parts.push(`corrections AS (
     INSERT INTO events (id, user_id, seq, type, role, pair_type, pair_key, occurred_at, received_at,
       origin, rule, cause_event_id, pos_at, pos_seq, ordinal)
     SELECT id, ${user}, pos_seq, type, role::"EventRole", pair_type, pair_key, occurred_at, ${p.bind(isoInstant(write.receivedAt))}::timestamptz,
       'CORRECTION', rule::"CorrectionRule", cause_event_id, pos_at, pos_seq, ordinal
     FROM json_to_recordset(${p.bind(JSON.stringify(rows))}::json)
       AS t(id uuid, type text, role text, pair_type text, pair_key text, occurred_at timestamptz, rule text,
         cause_event_id uuid, pos_at timestamptz, pos_seq int, ordinal int)
   )`);
  }

  if (write.newSegments.length > 0) {
    const rows = write.newSegments.map((x) => ({
      id: x.start.segmentId,
      pair_type: x.start.pairType,
      pair_key: x.start.pairKey,
      start_at: isoInstant(x.start.startAt),
      start_seq: x.start.startSeq,
      start_event_id: x.start.startEventId,
      parent_segment_id: x.start.parentSegmentId,
      depth: x.depth,
      end_at: x.end === null ? null : isoInstant(x.end.endAt),
      end_event_id: x.end?.endEventId ?? null,
      end_reason: x.end?.endReason ?? null,
      decided_at: x.end === null ? null : isoInstant(x.end.decidedAt.at),
      decided_seq: x.end?.decidedAt.seq ?? null,
      meta: x.meta,
    }));
    parts.push(`new_segments AS (
     INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id,
       parent_segment_id, depth, end_at, end_event_id, end_reason, decided_at, decided_seq, meta)
     SELECT id, ${user}, pair_type, pair_key, start_at, start_seq, start_event_id, parent_segment_id,
       depth, end_at, end_event_id, end_reason::"EndReason", decided_at, decided_seq, meta
     FROM json_to_recordset(${p.bind(JSON.stringify(rows))}::json)
       AS t(id uuid, pair_type text, pair_key text, start_at timestamptz, start_seq int, start_event_id uuid,
         parent_segment_id uuid, depth smallint, end_at timestamptz, end_event_id uuid, end_reason text, decided_at timestamptz,
         decided_seq int, meta jsonb)
   )`);
  }

  // Every closed segment must have been open, or the stored rows disagree with the engine state.
  let closedCheck = 'true';
  let closedRows = 'NULL::json';
  if (write.closedSegments.length > 0) {
    const rows = write.closedSegments.map((x) => ({
      id: x.segmentId,
      end_at: isoInstant(x.end.endAt),
      end_event_id: x.end.endEventId,
      end_reason: x.end.endReason,
      decided_at: isoInstant(x.end.decidedAt.at),
      decided_seq: x.end.decidedAt.seq,
    }));
    parts.push(`closed AS (
     UPDATE segments AS seg SET end_at = t.end_at, end_event_id = t.end_event_id,
       end_reason = t.end_reason::"EndReason", decided_at = t.decided_at, decided_seq = t.decided_seq
     FROM json_to_recordset(${p.bind(JSON.stringify(rows))}::json)
       AS t(id uuid, end_at timestamptz, end_event_id uuid, end_reason text, decided_at timestamptz, decided_seq int)
     WHERE seg.id = t.id AND seg.user_id = ${user} AND seg.end_at IS NULL
     RETURNING seg.id, seg.pair_key, seg.start_event_id, seg.parent_segment_id, seg.meta
   )`);
    closedCheck = `(SELECT count(*) FROM closed) = ${p.bind(rows.length)}`;
    if (write.returnClosed === true) {
      closedRows = `(SELECT json_agg(json_build_object('id', id, 'pairKey', pair_key, 'startEventId', start_event_id,
        'parentSegmentId', parent_segment_id, 'meta', meta)) FROM closed)`;
    }
  }

  if (write.orphanEventIds.length > 0) {
    parts.push(`orphans AS (
     UPDATE events SET orphan = true WHERE user_id = ${user} AND id = ANY(${p.bind(write.orphanEventIds)}::uuid[])
   )`);
  }

  // Keep the longest closed segment per pair type as the reach of the overlap scan in reports.
  const longest = new Map<string, number>();
  const closedLengths: Array<[string, number]> = [];
  for (const segment of write.newSegments) {
    if (segment.end !== null) {
      closedLengths.push([segment.start.pairType, segment.end.endAt - segment.start.startAt]);
    }
  }
  for (const segment of write.closedSegments) {
    closedLengths.push([segment.pairType, segment.end.endAt - segment.startAt]);
  }
  for (const [pairType, length] of closedLengths) {
    longest.set(pairType, Math.max(longest.get(pairType) ?? 0, Math.ceil(length)));
  }
  if (longest.size > 0) {
    parts.push(`bounds AS (
     INSERT INTO segment_length_bounds (user_id, pair_type, max_ms)
     SELECT ${user}, pair_type, max_ms FROM unnest(${p.bind([...longest.keys()])}::text[], ${p.bind([...longest.values()])}::bigint[]) AS t(pair_type, max_ms)
     ON CONFLICT (user_id, pair_type)
     DO UPDATE SET max_ms = GREATEST(segment_length_bounds.max_ms, EXCLUDED.max_ms)
   )`);
  }

  let rows: Array<{ version: number; closed: ClosedSegmentFields[] | null }>;
  try {
    rows = await sql.query<{ version: number; closed: ClosedSegmentFields[] | null }>(
      `WITH ${parts.join(', ')}
       SELECT (SELECT derived_version FROM head) AS version, ${closedRows} AS closed,
         event_master_check(EXISTS (SELECT 1 FROM head) AND ${closedCheck},
           CASE WHEN EXISTS (SELECT 1 FROM head) THEN 'CLOSED_MISMATCH' ELSE 'LOCK_LOST' END) AS checked`,
      p.values,
      INTAKE_STATEMENT,
    );
  } catch (error) {
    const { code, message } = error as { code?: string; message?: string };
    if (code === STATEMENT_CHECK_FAILED && message === 'LOCK_LOST') {
      throw new DomainError(
        'SERVICE_UNAVAILABLE',
        'LOCK_LOST',
        'Processing of this user moved to another server process; retry the request.',
        { userId: write.userId },
      );
    }
    if (code === STATEMENT_CHECK_FAILED && message === 'CLOSED_MISMATCH') {
      throw new Error(
        `Closing ${write.closedSegments.length} open segments of user ${write.userId} found some already closed. The stored segments disagree with the engine state.`,
      );
    }
    throw error;
  }
  return { version: rows[0]?.version as number, closed: rows[0]?.closed ?? [] };
}

/** The rows of an intake reply: the events, the corrections they caused, and the segments they ended. */
export interface ReplyRows {
  events: EventRecord[];
  /** In position order. */
  corrections: EventRecord[];
  /** In end order. */
  segments: SegmentRecord[];
}

const SEGMENT_ONLY_NULLS = `NULL::timestamptz AS start_at, NULL::timestamptz AS end_at, NULL::"EndReason" AS end_reason,
  NULL::uuid AS start_event_id, NULL::uuid AS end_event_id, NULL::uuid AS parent_segment_id`;

/**
 * Loads an intake reply with one statement: the events `eventIds`, the
 * corrections they caused (transitively: a child closed by an auto-close),
 * and the segments those events ended directly or through those corrections.
 * The segment ids form one array, so the lookup uses the index on
 * end_event_id (an OR of two conditions made PostgreSQL scan the table).
 */
export async function loadReply(
  sql: SqlClient,
  userIds: readonly string[],
  eventIds: readonly string[],
): Promise<ReplyRows> {
  if (eventIds.length === 0) {
    return { events: [], corrections: [], segments: [] };
  }
  // A reply to one event, the common case, has a statement of its own that
  // stays prepared. The best plan for many ids depends on how many there are.
  const oneEvent = userIds.length === 1 && eventIds.length === 1;
  const rows = await sql.query(
    `WITH RECURSIVE caused AS (
       SELECT e.* FROM events e
       WHERE ${idMatch('e.user_id', '$1', oneEvent)} AND e.origin = 'CORRECTION' AND ${idMatch('e.cause_event_id', '$2', oneEvent)}
       UNION
       SELECT e.* FROM events e JOIN caused c ON e.cause_event_id = c.id AND e.user_id = c.user_id
       WHERE e.origin = 'CORRECTION'
     )
     SELECT 1 AS part, ${EVENT_COLUMNS}, ${SEGMENT_ONLY_NULLS},
       NULL::timestamptz AS sort_at, NULL::int AS sort_seq, NULL::int AS sort_ordinal, NULL::timestamptz AS sort_start
     FROM events WHERE ${idMatch('id', '$2', oneEvent)}
     UNION ALL
     SELECT 2, ${EVENT_COLUMNS}, ${SEGMENT_ONLY_NULLS}, pos_at, pos_seq, ordinal, NULL FROM caused
     UNION ALL
     SELECT 3, id, user_id, NULL, NULL, NULL, NULL, pair_type, pair_key, NULL, NULL, meta, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, start_at, end_at, end_reason, start_event_id, end_event_id, parent_segment_id, end_at, NULL, NULL, start_at
     FROM segments
     WHERE ${idMatch('user_id', '$1', oneEvent)}
       AND end_event_id = ANY(${oneEvent ? 'ARRAY[$2::uuid]' : '$2::uuid[]'} || ARRAY(SELECT id FROM caused))
     ORDER BY part, sort_at, sort_seq, sort_ordinal, sort_start`,
    [idParam(userIds, oneEvent), idParam(eventIds, oneEvent)],
    oneEvent ? PREPARED : undefined,
  );
  const reply: ReplyRows = { events: [], corrections: [], segments: [] };
  for (const row of rows) {
    if (row.part === 1) {
      reply.events.push(toEventRecord(row));
    } else if (row.part === 2) {
      reply.corrections.push(toEventRecord(row));
    } else {
      reply.segments.push(toSegmentRecord(row));
    }
  }
  return reply;
}

/**
 * Deletes every row derived for the user: segments, their length bounds,
 * corrections and ORPHAN_END flags. The head stays, so this belongs in the
 * transaction of a replay of the whole log, whose last write sets the head.
 */
export async function clearDerived(tx: SqlClient, userId: string): Promise<void> {
  await tx.query(`DELETE FROM segments WHERE user_id = $1`, [userId]);
  await tx.query(`DELETE FROM events WHERE user_id = $1 AND origin = 'CORRECTION'`, [userId]);
  await tx.query(`UPDATE events SET orphan = false WHERE user_id = $1 AND orphan`, [userId]);
  await tx.query(`DELETE FROM segment_length_bounds WHERE user_id = $1`, [userId]);
}
