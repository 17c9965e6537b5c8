/**
 * The queue of users whose derived rows must be recomputed after an admin
 * changed the parent or the default auto-close policy of a pair type. The
 * change is recorded in the transaction that makes it, and a replay worker
 * queues its users once no server's pair type cache can hold the old
 * definition, so users whose rows were folded with it meanwhile are queued
 * too. Each worker claims one queued user at a time for a while, so two
 * workers rarely replay the same user, and a claim that outlives a crashed
 * worker expires.
 *
 * `version` counts the changes queued for a user. A replay removes the row
 * only when the version it read before reading the pair types is still the
 * row's version, so a change that commits during a replay is replayed again.
 */
import type { SqlClient } from './sql.js';

/**
 * Records a change of pair type `$1`, whose users a replay worker queues
 * later (see `queueDueChange`). `$2` is true for a change of the policy
 * alone, which users who override that policy do not see.
 */
export const RECORD_CHANGE_SQL = `INSERT INTO pair_type_changes (pair_type, skip_overrides) VALUES ($1, $2)`;

/**
 * How long a claim hides a user from other workers, in ms. The worker
 * extends it every third of this while the replay runs, so a worker that
 * stops hides its user for at most this long.
 */
export const REPLAY_CLAIM_MS = 60_000;

/**
 * Queues a replay of user `$1` for a preference change of pair type `$2`, in
 * the transaction that stores the preference. The caller replays the user at
 * once and removes the row, so it is claimed for `$3` ms: only when the
 * caller dies or fails does a worker take the replay over after that.
 */
export const QUEUE_PREFERENCE_REPLAY_SQL = `INSERT INTO pending_replays (user_id, pair_types, requested_at, claimed_until)
  VALUES ($1::uuid, ARRAY[$2::text], clock_timestamp(), clock_timestamp() + $3::int * interval '1 millisecond')
  ON CONFLICT (user_id) DO UPDATE SET
    pair_types = ARRAY(SELECT DISTINCT t FROM unnest(pending_replays.pair_types || EXCLUDED.pair_types) AS t ORDER BY t),
    version = pending_replays.version + 1,
    claimed_until = GREATEST(pending_replays.claimed_until, EXCLUDED.claimed_until),
    attempts = 0`;

/** A recorded pair type change whose users are not queued yet. */
export interface PairTypeChange {
  id: string;
  pairType: string;
  skipOverrides: boolean;
  /** Users that the change queued. */
  queuedUsers: number;
}

/**
 * Queues the users of the oldest change recorded at least `delayMs` ago
 * that no other worker is queueing, then deletes the change, all in one
 * transaction. The users are every user with segments of the pair type,
 * without those who override its policy when only the policy changed.
 * They are read in batches of `batchSize` users by id, so no statement
 * grows with the number of users. Returns the change, or null when none
 * is due.
 */
export async function queueDueChange(sql: SqlClient, delayMs: number, batchSize: number): Promise<PairTypeChange | null> {
  return sql.transaction(async (tx) => {
    const rows = await tx.query<{ id: string; pair_type: string; skip_overrides: boolean }>(
      `SELECT id::text, pair_type, skip_overrides FROM pair_type_changes
       WHERE changed_at <= clock_timestamp() - $1::int * interval '1 millisecond'
       ORDER BY id
       LIMIT 1
       FOR UPDATE SKIP LOCKED`,
      [delayMs],
    );
    const row = rows[0];
    if (row === undefined) {
      return null;
    }
    let after = '00000000-0000-0000-0000-000000000000';
    let queuedUsers = 0;
    for (;;) {
      const [batch] = await tx.query<{ last_id: string | null; queued: number }>(
        `WITH batch AS (
           SELECT id FROM users WHERE id > $3::uuid ORDER BY id LIMIT $4
         ), queued AS (
           INSERT INTO pending_replays (user_id, pair_types, requested_at)
           SELECT b.id, ARRAY[$1::text], clock_timestamp() FROM batch b
           WHERE EXISTS (SELECT 1 FROM segments s WHERE s.user_id = b.id AND s.pair_type = $1::text)
             AND NOT ($2::boolean AND EXISTS (
               SELECT 1 FROM auto_close_preferences p WHERE p.user_id = b.id AND p.pair_type = $1::text))
           -- A user already queued keeps its place and a worker's claim on it.
           -- The new version makes a replay that is running now leave the row
           -- queued. A pause after failed replays (attempts > 0) ends at once.
           ON CONFLICT (user_id) DO UPDATE SET
             pair_types = ARRAY(SELECT DISTINCT t FROM unnest(pending_replays.pair_types || EXCLUDED.pair_types) AS t ORDER BY t),
             version = pending_replays.version + 1,
             claimed_until = CASE WHEN pending_replays.attempts > 0 THEN NULL ELSE pending_replays.claimed_until END,
             attempts = 0
           RETURNING 1
         )
         SELECT (SELECT id::text FROM batch ORDER BY id DESC LIMIT 1) AS last_id, (SELECT count(*)::int FROM queued) AS queued`,
        [row.pair_type, row.skip_overrides, after, batchSize],
      );
      if (batch?.last_id === null || batch?.last_id === undefined) {
        break;
      }
      queuedUsers += batch.queued;
      after = batch.last_id;
    }
    await tx.query(`DELETE FROM pair_type_changes WHERE id = $1::bigint`, [row.id]);
    return { id: row.id, pairType: row.pair_type, skipOverrides: row.skip_overrides, queuedUsers };
  });
}

export interface ReplayClaim {
  userId: string;
  /** The row's version when the worker claimed it. */
  version: number;
}

/**
 * Claims the user queued longest ago whose row no worker holds, until
 * `claimMs` from now. Returns null when there is none.
 */
export async function claimPendingReplay(sql: SqlClient, claimMs: number): Promise<ReplayClaim | null> {
  const rows = await sql.query<{ user_id: string; version: number }>(
    `UPDATE pending_replays SET claimed_until = clock_timestamp() + $1::int * interval '1 millisecond'
     WHERE user_id = (
       SELECT user_id FROM pending_replays
       WHERE claimed_until IS NULL OR claimed_until <= clock_timestamp()
       ORDER BY requested_at, user_id
       LIMIT 1
       FOR UPDATE SKIP LOCKED)
     RETURNING user_id, version`,
    [claimMs],
  );
  const row = rows[0];
  return row === undefined ? null : { userId: row.user_id, version: row.version };
}

/**
 * Moves the end of a claim to `claimMs` from now, while its replay runs,
 * also when a change queued since the claim gave the row a newer version:
 * another worker would only wait for the user's lock. Returns false when
 * the row is gone.
 */
export async function extendPendingReplayClaim(sql: SqlClient, claim: ReplayClaim, claimMs: number): Promise<boolean> {
  const rows = await sql.query(
    `UPDATE pending_replays SET claimed_until = clock_timestamp() + $2::int * interval '1 millisecond'
     WHERE user_id = $1
     RETURNING 1`,
    [claim.userId, claimMs],
  );
  return rows.length > 0;
}

/** Returns the version of the user's queued replay, or null when none is queued. */
export async function pendingReplayVersion(sql: SqlClient, userId: string): Promise<number | null> {
  const rows = await sql.query<{ version: number }>(`SELECT version FROM pending_replays WHERE user_id = $1`, [userId]);
  return rows[0]?.version ?? null;
}

/**
 * Ends a claim whose replay finished while a newer change kept the row
 * queued, and moves the user to the back of the queue: the replay covered
 * every change but the newest, so users who waited longer go first.
 */
export async function releasePendingReplayClaim(sql: SqlClient, claim: ReplayClaim): Promise<void> {
  await sql.query(
    `UPDATE pending_replays SET claimed_until = NULL, requested_at = clock_timestamp() WHERE user_id = $1 AND version <> $2`,
    [claim.userId, claim.version],
  );
}

/** Removes the user's queued replay if no change was queued after `version`. */
export async function finishPendingReplay(sql: SqlClient, userId: string, version: number): Promise<void> {
  await sql.query(`DELETE FROM pending_replays WHERE user_id = $1 AND version = $2`, [userId, version]);
}

/**
 * Records a failed replay and hides the user for a pause of `firstRetryMs`
 * doubled per failure before, at most `maxRetryMs`. The failures count from
 * the row as it is now, so a change queued since the claim, which resets
 * them, also resets the pause. Returns the pause, or null when the row is gone.
 */
export async function deferPendingReplay(
  sql: SqlClient,
  claim: ReplayClaim,
  firstRetryMs: number,
  maxRetryMs: number,
): Promise<number | null> {
  const rows = await sql.query<{ retry_ms: number }>(
    `WITH pause AS (
       SELECT user_id, LEAST($3::float8, $2::float8 * power(2, LEAST(attempts, 20)))::int AS retry_ms
       FROM pending_replays WHERE user_id = $1
       FOR UPDATE
     )
     UPDATE pending_replays AS p
     SET claimed_until = clock_timestamp() + pause.retry_ms * interval '1 millisecond', attempts = p.attempts + 1
     FROM pause WHERE p.user_id = pause.user_id
     RETURNING pause.retry_ms`,
    [claim.userId, firstRetryMs, maxRetryMs],
  );
  return rows[0]?.retry_ms ?? null;
}

export interface ReplayStatus {
  /** Users queued for a replay, per pair type whose change queued them. */
  queued: Map<string, number>;
  /** Pair types with a change whose users are not queued yet. */
  awaitingQueue: Set<string>;
}

/**
 * Reads how far the replays after pair type changes have come. One
 * statement reads both tables from one snapshot, because a change leaves
 * `pair_type_changes` in the transaction that fills `pending_replays`.
 */
export async function readReplayStatus(sql: SqlClient): Promise<ReplayStatus> {
  const rows = await sql.query<{ pair_type: string; users: number; awaiting: boolean }>(
    `SELECT t AS pair_type, count(*)::int AS users, false AS awaiting
     FROM pending_replays, unnest(pair_types) AS t GROUP BY t
     UNION ALL
     SELECT DISTINCT pair_type, 0, true FROM pair_type_changes`,
  );
  const status: ReplayStatus = { queued: new Map(), awaitingQueue: new Set() };
  for (const row of rows) {
    if (row.awaiting) {
      status.awaitingQueue.add(row.pair_type);
    } else {
      status.queued.set(row.pair_type, row.users);
    }
  }
  return status;
}
