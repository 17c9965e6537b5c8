/**
 * The queue of users whose derived rows must be recomputed after an admin
 * changed the parent or the default auto-close policy of a pair type. The
 * change and its queue rows commit together. Each server's replay worker
 * claims one user at a time for a while, so two workers rarely replay the
 * same user, and a claim that outlives a crashed worker expires.
 *
 * `version` counts the changes queued for a user. A replay removes the row
 * only when the version it read before reading the pair types is still the
 * row's version, so a change that commits during a replay is replayed again.
 */
import type { SqlClient } from './sql.js';

/**
 * Queues every user with segments of pair type `$1`. When `$2` is true (a
 * change of the policy alone), users who override that pair type's policy
 * are left out, because the default does not apply to them. Parameters: the
 * pair type's name and that flag. The statement returns the number of users
 * queued as its row count.
 */
export const QUEUE_REPLAYS_SQL = `
  INSERT INTO pending_replays (user_id, pair_types, requested_at)
  SELECT u.id, ARRAY[$1::text], clock_timestamp() FROM users u
  WHERE EXISTS (SELECT 1 FROM segments s WHERE s.user_id = u.id AND s.pair_type = $1::text)
    AND NOT ($2::boolean AND EXISTS (
      SELECT 1 FROM auto_close_preferences p WHERE p.user_id = u.id AND p.pair_type = $1::text))
  ON CONFLICT (user_id) DO UPDATE SET
    pair_types = ARRAY(SELECT DISTINCT t FROM unnest(pending_replays.pair_types || EXCLUDED.pair_types) AS t ORDER BY t),
    requested_at = EXCLUDED.requested_at,
    version = pending_replays.version + 1,
    claimed_until = NULL,
    attempts = 0`;

export interface ReplayClaim {
  userId: string;
  version: number;
  /** Failed replays of this user since its latest change, before this claim. */
  attempts: number;
}

/**
 * Claims the user queued longest ago whose row no worker holds, until
 * `claimMs` from now. Returns null when there is none.
 */
export async function claimPendingReplay(sql: SqlClient, claimMs: number): Promise<ReplayClaim | null> {
  const rows = await sql.query<{ user_id: string; version: number; attempts: number }>(
    `UPDATE pending_replays SET claimed_until = clock_timestamp() + $1::int * interval '1 millisecond'
     WHERE user_id = (
       SELECT user_id FROM pending_replays
       WHERE claimed_until IS NULL OR claimed_until <= clock_timestamp()
       ORDER BY requested_at, user_id
       LIMIT 1
       FOR UPDATE SKIP LOCKED)
     RETURNING user_id, version, attempts`,
    [claimMs],
  );
  const row = rows[0];
  return row === undefined ? null : { userId: row.user_id, version: row.version, attempts: row.attempts };
}

/** Returns the version of the user's queued replay, or null when none is queued. */
export async function pendingReplayVersion(sql: SqlClient, userId: string): Promise<number | null> {
  const rows = await sql.query<{ version: number }>(`SELECT version FROM pending_replays WHERE user_id = $1`, [userId]);
  return rows[0]?.version ?? null;
}

/** Removes the user's queued replay if no change was queued after `version`. */
export async function finishPendingReplay(sql: SqlClient, userId: string, version: number): Promise<void> {
  await sql.query(`DELETE FROM pending_replays WHERE user_id = $1 AND version = $2`, [userId, version]);
}

/**
 * Records a failed replay: the row stays claimed for `retryMs`, so the worker
 * tries the user again after that pause. A change queued since the claim
 * has reset the row already and is left as it is.
 */
export async function deferPendingReplay(sql: SqlClient, claim: ReplayClaim, retryMs: number): Promise<void> {
  await sql.query(
    `UPDATE pending_replays
     SET claimed_until = clock_timestamp() + $3::int * interval '1 millisecond', attempts = attempts + 1
     WHERE user_id = $1 AND version = $2`,
    [claim.userId, claim.version, retryMs],
  );
}

/** Returns the number of users queued for a replay, per pair type whose change queued them. */
export async function countPendingReplays(sql: SqlClient): Promise<Map<string, number>> {
  const rows = await sql.query<{ pair_type: string; users: number }>(
    `SELECT t AS pair_type, count(*)::int AS users FROM pending_replays, unnest(pair_types) AS t GROUP BY t`,
  );
  return new Map(rows.map((row) => [row.pair_type, row.users]));
}
