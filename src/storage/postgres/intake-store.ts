/**
 * SQL of the intake path: appending client events, and reading, truncating
 * and writing the rows derived from them (segments, corrections, ORPHAN_END
 * flags). Positions are compared as rows, `(at, seq)`, exactly as the pure
 * `DerivedLedger` in the domain compares them.
 */
import type { Correction, EngineEvent, Position, SegmentStart } from '../../domain/pairing/types.js';
import { DomainError } from '../../domain/errors.js';
import type { SqlClient } from './sql.js';
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

export interface StoredClientEvent extends EventRecord {
  clientOccurredAt: Date | null;
}

export interface SegmentRow {
  start: SegmentStart;
  meta: Record<string, unknown> | null;
  end: null | {
    endAt: number;
    endEventId: string;
    endReason: string;
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
  head: Omit<DerivedHead, 'derivedVersion' | 'lastEventSeq'>;
  /** Derived version read at the start of the fold; another writer since then makes the write fail. */
  expectedVersion: number;
}

const ms = (value: unknown): number | null => (value === null || value === undefined ? null : (value as Date).getTime());
const date = (value: number | null): Date | null => (value === null ? null : new Date(value));

/** Locks the users' rows for the rest of the transaction, in id order to avoid deadlocks. */
export async function lockUserCounters(tx: SqlClient, userIds: readonly string[]): Promise<Map<string, UserCounters>> {
  const rows = await tx.query<{ id: string; last_event_seq: number; max_occurred_at: Date | null }>(
    `SELECT id, last_event_seq, max_occurred_at FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`,
    [[...userIds]],
  );
  return new Map(
    rows.map((row) => [
      row.id,
      { id: row.id, lastEventSeq: row.last_event_seq, maxOccurredAt: ms(row.max_occurred_at) },
    ]),
  );
}

export async function findEventsByClientIds(
  tx: SqlClient,
  userId: string,
  clientIds: readonly string[],
): Promise<Map<string, StoredClientEvent>> {
  if (clientIds.length === 0) {
    return new Map();
  }
  const rows = await tx.query(
    `SELECT ${EVENT_COLUMNS}, client_occurred_at FROM events
     WHERE user_id = $1 AND client_id = ANY($2::text[])`,
    [userId, [...clientIds]],
  );
  return new Map(
    rows.map((row) => {
      const record: StoredClientEvent = {
        ...toEventRecord(row),
        clientOccurredAt: (row.client_occurred_at as Date | null) ?? null,
      };
      return [record.clientId as string, record];
    }),
  );
}

/** Appends client events and writes the users' new counters, with one statement. */
export async function appendClientEvents(
  tx: SqlClient,
  events: readonly NewClientEvent[],
  counters: readonly UserCounters[],
): Promise<void> {
  await tx.query(
    `WITH appended AS (
     INSERT INTO events (id, user_id, seq, client_id, type, role, pair_type, pair_key, occurred_at,
       client_occurred_at, received_at, meta, origin, intake_flags, ignored, pos_at, pos_seq, ordinal)
     SELECT id, user_id, seq, client_id, type, role::"EventRole", pair_type, pair_key, occurred_at,
       client_occurred_at, received_at, meta::jsonb, 'CLIENT',
       string_to_array(flags, ',')::"CorrectionRule"[], ignored, occurred_at, seq, 0
     FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[],
       $8::text[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[],
       $14::bool[])
       AS t(id, user_id, seq, client_id, type, role, pair_type, pair_key, occurred_at,
         client_occurred_at, received_at, meta, flags, ignored)
     )
     UPDATE users SET last_event_seq = c.last_event_seq, max_occurred_at = c.max_occurred_at
     FROM unnest($15::uuid[], $16::int[], $17::timestamptz[]) AS c(id, last_event_seq, max_occurred_at)
     WHERE users.id = c.id`,
    [
      events.map((e) => e.id),
      events.map((e) => e.userId),
      events.map((e) => e.seq),
      events.map((e) => e.clientId),
      events.map((e) => e.type),
      events.map((e) => e.role),
      events.map((e) => e.pairType),
      events.map((e) => e.pairKey),
      events.map((e) => new Date(e.occurredAt)),
      events.map((e) => date(e.clientOccurredAt)),
      events.map((e) => new Date(e.receivedAt)),
      events.map((e) => (e.meta === null ? null : JSON.stringify(e.meta))),
      events.map((e) => e.intakeFlags.join(',')),
      events.map((e) => e.ignored),
      counters.map((c) => c.id),
      counters.map((c) => c.lastEventSeq),
      counters.map((c) => date(c.maxOccurredAt)),
    ],
  );
}

/** The head columns of users, in the order toDerivedHead reads them. */
const HEAD_COLUMNS = 'applied_seq, applied_at, applied_pos_seq, last_activity_at, derived_version, last_event_seq';

export async function loadDerivedHead(sql: SqlClient, userId: string): Promise<DerivedHead | null> {
  const rows = await sql.queryArrays(`SELECT ${HEAD_COLUMNS} FROM users WHERE id = $1`, [userId]);
  const row = rows[0];
  return row === undefined ? null : toDerivedHead(row);
}

/** Maps a row that starts with HEAD_COLUMNS to a head. */
function toDerivedHead(row: readonly unknown[]): DerivedHead {
  const appliedAt = row[1] as Date | null;
  const appliedPosSeq = row[2] as number | null;
  return {
    appliedSeq: row[0] as number,
    position: appliedAt === null || appliedPosSeq === null ? null : { at: appliedAt.getTime(), seq: appliedPosSeq },
    lastActivityAt: ms(row[3] as Date | null),
    derivedVersion: row[4] as number,
    lastEventSeq: row[5] as number,
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
  );
  return rows.map(toSegmentStart);
}

/**
 * Segments open at position `p`: started before `p`, and still open or closed
 * by a decision at or after `p`. Both halves use an index, so the cost does
 * not grow with the user's history before `p`.
 */
export async function loadSegmentsOpenAt(tx: SqlClient, userId: string, p: Position): Promise<SegmentStart[]> {
  const rows = await tx.query(
    `SELECT ${START_COLUMNS} FROM segments
       WHERE user_id = $1 AND end_at IS NULL AND (start_at, start_seq) < ($2::timestamptz, $3::int)
     UNION ALL
     SELECT ${START_COLUMNS} FROM segments
       WHERE user_id = $1 AND (decided_at, decided_seq) >= ($2::timestamptz, $3::int)
         AND (start_at, start_seq) < ($2::timestamptz, $3::int)
     ORDER BY start_at, start_seq`,
    [userId, new Date(p.at), p.seq],
  );
  return rows.map(toSegmentStart);
}

/**
 * Returns, before position `p`, the position of the last non-ignored client
 * event and the last activity. Activity counts synthesised ends too, because
 * a DEADLINE auto-close ends after the last client event. Every event but a
 * LAST_ACTIVITY auto-close occurs at its position, and that one occurs at an
 * earlier activity. So the last row whose occurrence equals its position has
 * the latest activity. Both lookups walk the position index backwards.
 */
export async function loadActivityBefore(
  tx: SqlClient,
  userId: string,
  p: Position,
): Promise<{ position: Position | null; lastActivityAt: number | null }> {
  const rows = await tx.queryArrays(
    `SELECT c.occurred_at, c.seq, a.occurred_at
     FROM (SELECT 1) AS one
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
     ) AS a ON true`,
    [userId, new Date(p.at), p.seq],
  );
  const row = rows[0] ?? [null, null, null];
  return {
    position: row[0] === null ? null : { at: (row[0] as Date).getTime(), seq: row[1] as number },
    lastActivityAt: row[2] === null ? null : (row[2] as Date).getTime(),
  };
}

/** Removes everything derived at or after `p`, as `DerivedLedger.truncateFrom` does. */
export async function truncateDerivedFrom(tx: SqlClient, userId: string, p: Position): Promise<void> {
  // One statement, four disjoint parts: segments started at or after p go,
  // segments started before p and closed by a decision at or after p reopen,
  // corrections at or after p go, and ORPHAN_END flags at or after p clear.
  await tx.query(
    `WITH dropped AS (
       DELETE FROM segments WHERE user_id = $1 AND (start_at, start_seq) >= ($2::timestamptz, $3::int)
     ), reopened AS (
       UPDATE segments SET end_at = NULL, end_event_id = NULL, end_reason = NULL, decided_at = NULL, decided_seq = NULL
       WHERE user_id = $1 AND (decided_at, decided_seq) >= ($2::timestamptz, $3::int)
         AND (start_at, start_seq) < ($2::timestamptz, $3::int)
     ), uncorrected AS (
       DELETE FROM events WHERE user_id = $1 AND origin = 'CORRECTION'
         AND (pos_at, pos_seq) >= ($2::timestamptz, $3::int)
     )
     UPDATE events SET orphan = false WHERE user_id = $1 AND origin = 'CLIENT' AND orphan
       AND (pos_at, pos_seq) >= ($2::timestamptz, $3::int)`,
    [userId, new Date(p.at), p.seq],
  );
}

/** A client event to fold, with the meta its segment copies. */
export interface EventToFold {
  event: EngineEvent;
  meta: Record<string, unknown> | null;
}

function toEventToFold(row: unknown[]): EventToFold {
  return {
    event: {
      id: row[0] as string,
      seq: row[1] as number,
      type: row[2] as string,
      occurredAt: (row[3] as Date).getTime(),
      role: row[4] as EngineEvent['role'],
      pairType: (row[5] as string | null) ?? null,
      pairKey: (row[6] as string | null) ?? '',
      ignored: false,
    },
    meta: (row[7] as Record<string, unknown> | null) ?? null,
  };
}

/**
 * Loads the head and the events not folded yet (non-ignored client events
 * after applied_seq, up to last_event_seq) in one statement, so both come
 * from one snapshot. An event stored after that snapshot is left for the next
 * fold, because the head's last_event_seq does not count it. Returns null for
 * an unknown user.
 */
export async function loadHeadAndPending(
  sql: SqlClient,
  userId: string,
): Promise<{ head: DerivedHead; pending: EventToFold[] } | null> {
  const rows = await sql.queryArrays(
    `SELECT ${HEAD_COLUMNS},
       e.id, e.seq, e.type, e.occurred_at, e.role, e.pair_type, e.pair_key, e.meta
     FROM users u
     LEFT JOIN LATERAL (
       SELECT id, seq, type, occurred_at, role, pair_type, pair_key, meta, pos_at, pos_seq FROM events
       WHERE user_id = u.id AND origin = 'CLIENT' AND NOT ignored
         AND seq > u.applied_seq AND seq <= u.last_event_seq
     ) e ON true
     WHERE u.id = $1
     ORDER BY e.pos_at, e.pos_seq`,
    [userId],
  );
  const first = rows[0];
  if (first === undefined) {
    return null;
  }
  const head = toDerivedHead(first);
  const pending = rows.filter((row) => row[6] !== null).map((row) => toEventToFold(row.slice(6)));
  return { head, pending };
}

/**
 * Loads the non-ignored client events at or after `from` and with seq up to
 * `maxSeq` (the head's last_event_seq), in position order, with their meta.
 */
export async function loadEventsToFold(sql: SqlClient, userId: string, from: Position, maxSeq: number): Promise<EventToFold[]> {
  const rows = await sql.queryArrays(
    `SELECT id, seq, type, occurred_at, role, pair_type, pair_key, meta FROM events
     WHERE user_id = $1 AND origin = 'CLIENT' AND NOT ignored
       AND (pos_at, pos_seq) >= ($2::timestamptz, $3::int) AND seq <= $4
     ORDER BY pos_at, pos_seq`,
    [userId, new Date(from.at), from.seq, maxSeq],
  );
  return rows.map(toEventToFold);
}

/**
 * Writes one fold's derived rows and the new head in the caller's
 * transaction. The fence check comes first: a holder whose lock expired and
 * passed to another process writes nothing.
 */
export async function writeDerived(tx: SqlClient, write: DerivedWrite): Promise<number> {
  if (write.corrections.length > 0) {
    const c = write.corrections;
    await tx.query(
      `INSERT INTO events (id, user_id, seq, type, role, pair_type, pair_key, occurred_at, received_at,
         origin, rule, cause_event_id, pos_at, pos_seq, ordinal)
       SELECT id, $1, pos_seq, type, role::"EventRole", pair_type, pair_key, occurred_at, $2,
         'CORRECTION', rule::"CorrectionRule", cause_event_id, pos_at, pos_seq, ordinal
       FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
         $9::text[], $10::uuid[], $11::timestamptz[], $12::int[], $13::int[])
         AS t(id, type, role, pair_type, pair_key, occurred_at, rule, cause_event_id, pos_at, pos_seq, ordinal)`,
      [
        write.userId,
        new Date(write.receivedAt),
        c.map((x) => x.id),
        c.map((x) => x.type),
        c.map((x) => x.role),
        c.map((x) => x.pairType),
        c.map((x) => x.pairKey),
        c.map((x) => new Date(x.occurredAt)),
        c.map((x) => x.rule),
        c.map((x) => x.causeEventId),
        c.map((x) => new Date(x.position.at)),
        c.map((x) => x.position.seq),
        c.map((x) => x.ordinal),
      ],
    );
  }

  if (write.newSegments.length > 0) {
    const s = write.newSegments;
    await tx.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id,
         parent_segment_id, end_at, end_event_id, end_reason, decided_at, decided_seq, meta)
       SELECT id, $1, pair_type, pair_key, start_at, start_seq, start_event_id, parent_segment_id,
         end_at, end_event_id, end_reason::"EndReason", decided_at, decided_seq, meta::jsonb
       FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::uuid[],
         $8::uuid[], $9::timestamptz[], $10::uuid[], $11::text[], $12::timestamptz[], $13::int[], $14::text[])
         AS t(id, pair_type, pair_key, start_at, start_seq, start_event_id, parent_segment_id,
           end_at, end_event_id, end_reason, decided_at, decided_seq, meta)`,
      [
        write.userId,
        s.map((x) => x.start.segmentId),
        s.map((x) => x.start.pairType),
        s.map((x) => x.start.pairKey),
        s.map((x) => new Date(x.start.startAt)),
        s.map((x) => x.start.startSeq),
        s.map((x) => x.start.startEventId),
        s.map((x) => x.start.parentSegmentId),
        s.map((x) => date(x.end?.endAt ?? null)),
        s.map((x) => x.end?.endEventId ?? null),
        s.map((x) => x.end?.endReason ?? null),
        s.map((x) => date(x.end?.decidedAt.at ?? null)),
        s.map((x) => x.end?.decidedAt.seq ?? null),
        s.map((x) => (x.meta === null ? null : JSON.stringify(x.meta))),
      ],
    );
  }

  if (write.closedSegments.length > 0) {
    const s = write.closedSegments;
    const updated = await tx.query(
      `UPDATE segments AS seg SET end_at = t.end_at, end_event_id = t.end_event_id,
         end_reason = t.end_reason::"EndReason", decided_at = t.decided_at, decided_seq = t.decided_seq
       FROM unnest($2::uuid[], $3::timestamptz[], $4::uuid[], $5::text[], $6::timestamptz[], $7::int[])
         AS t(id, end_at, end_event_id, end_reason, decided_at, decided_seq)
       WHERE seg.id = t.id AND seg.user_id = $1 AND seg.end_at IS NULL
       RETURNING seg.id`,
      [
        write.userId,
        s.map((x) => x.segmentId),
        s.map((x) => new Date(x.end.endAt)),
        s.map((x) => x.end.endEventId),
        s.map((x) => x.end.endReason),
        s.map((x) => new Date(x.end.decidedAt.at)),
        s.map((x) => x.end.decidedAt.seq),
      ],
    );
    if (updated.length !== s.length) {
      throw new Error(
        `Closing ${s.length} open segments of user ${write.userId} updated ${updated.length}; the stored segments disagree with the engine state.`,
      );
    }
  }

  if (write.orphanEventIds.length > 0) {
    await tx.query(`UPDATE events SET orphan = true WHERE user_id = $1 AND id = ANY($2::uuid[])`, [
      write.userId,
      write.orphanEventIds,
    ]);
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
    await tx.query(
      `INSERT INTO segment_length_bounds (user_id, pair_type, max_ms)
       SELECT $1, pair_type, max_ms FROM unnest($2::text[], $3::bigint[]) AS t(pair_type, max_ms)
       ON CONFLICT (user_id, pair_type)
       DO UPDATE SET max_ms = GREATEST(segment_length_bounds.max_ms, EXCLUDED.max_ms)`,
      [write.userId, [...longest.keys()], [...longest.values()]],
    );
  }

  // The fence and version checks ride on the head update. A holder whose lock
  // expired and passed to another process matches no row, and so does one
  // that folded from a head another writer has since moved. The error then
  // rolls back everything written above.
  const head = await tx.query<{ derived_version: number }>(
    `UPDATE users SET applied_seq = $2, applied_at = $3, applied_pos_seq = $4, last_activity_at = $5,
       derived_version = derived_version + 1, fence = $6
     WHERE id = $1 AND fence <= $6 AND derived_version = $7 RETURNING derived_version`,
    [
      write.userId,
      write.head.appliedSeq,
      date(write.head.position?.at ?? null),
      write.head.position?.seq ?? null,
      date(write.head.lastActivityAt),
      write.fence,
      write.expectedVersion,
    ],
  );
  const row = head[0];
  if (row === undefined) {
    throw new DomainError(
      'SERVICE_UNAVAILABLE',
      'LOCK_LOST',
      'Processing of this user moved to another server process; retry the request.',
      { userId: write.userId },
    );
  }
  return row.derived_version;
}

/** Corrections caused by the given events, transitively (a child closed by an auto-close). */
export async function loadCorrectionsCausedBy(sql: SqlClient, userIds: readonly string[], eventIds: readonly string[]): Promise<EventRecord[]> {
  const rows = await sql.query(
    `WITH RECURSIVE caused AS (
       SELECT e.* FROM events e
       WHERE e.user_id = ANY($1::uuid[]) AND e.origin = 'CORRECTION' AND e.cause_event_id = ANY($2::uuid[])
       UNION
       SELECT e.* FROM events e JOIN caused c ON e.cause_event_id = c.id AND e.user_id = c.user_id
       WHERE e.origin = 'CORRECTION'
     )
     SELECT ${EVENT_COLUMNS} FROM caused ORDER BY pos_at, pos_seq, ordinal`,
    [[...userIds], [...eventIds]],
  );
  return rows.map(toEventRecord);
}

/**
 * Loads the segments that the given events ended, directly or through the
 * corrections they caused (transitively, as loadCorrectionsCausedBy finds
 * them), so that it can run beside that query instead of after it. The ids
 * form one array, so the lookup uses the index on end_event_id (an OR of two
 * conditions made PostgreSQL scan the table).
 */
export async function loadSegmentsEndedBy(sql: SqlClient, userIds: readonly string[], eventIds: readonly string[]): Promise<SegmentRecord[]> {
  if (eventIds.length === 0) {
    return [];
  }
  const rows = await sql.query(
    `WITH RECURSIVE caused AS (
       SELECT e.id, e.user_id FROM events e
       WHERE e.user_id = ANY($1::uuid[]) AND e.origin = 'CORRECTION' AND e.cause_event_id = ANY($2::uuid[])
       UNION
       SELECT e.id, e.user_id FROM events e JOIN caused c ON e.cause_event_id = c.id AND e.user_id = c.user_id
       WHERE e.origin = 'CORRECTION'
     )
     SELECT ${SEGMENT_COLUMNS} FROM segments
     WHERE user_id = ANY($1::uuid[]) AND end_event_id = ANY($2::uuid[] || ARRAY(SELECT id FROM caused))
     ORDER BY end_at, start_at`,
    [[...userIds], [...eventIds]],
  );
  return rows.map(toSegmentRecord);
}

/** Deletes every row derived for the user and resets its head, so the next fold replays the whole log. */
export async function resetDerived(tx: SqlClient, userId: string): Promise<void> {
  await tx.query(`DELETE FROM segments WHERE user_id = $1`, [userId]);
  await tx.query(`DELETE FROM events WHERE user_id = $1 AND origin = 'CORRECTION'`, [userId]);
  await tx.query(`UPDATE events SET orphan = false WHERE user_id = $1 AND orphan`, [userId]);
  await tx.query(`DELETE FROM segment_length_bounds WHERE user_id = $1`, [userId]);
  await tx.query(
    `UPDATE users SET applied_seq = 0, applied_at = NULL, applied_pos_seq = NULL, last_activity_at = NULL,
       derived_version = derived_version + 1
     WHERE id = $1`,
    [userId],
  );
}
