/**
 * The report dataset: users and the segments the intake would have derived
 * for them, generated in SQL from the seed, plus the matching
 * segment_length_bounds rows that the report query relies on.
 *
 * Each user has one session per slot of 8.76 hours (1,000 slots in 365
 * days), starting up to 1.5 hours into the slot and lasting 1 to 6 hours, so
 * sessions never overlap. Each session has nine tasks in three lanes (pair
 * keys k0, k1, k2), three after one another per lane, each inside its third
 * of the session, so tasks of one key never overlap and always lie inside
 * their parent. In every tenth user the last session and its last k0 task are
 * still open. Tasks carry `meta.project` (p0 to p4), sessions `meta.device`.
 */
import { createHash } from 'node:crypto';

import type pg from 'pg';

/** 2025-01-01T00:00:00Z: the first slot starts here. */
export const DATASET_START_MS = Date.UTC(2025, 0, 1);
export const SLOT_MS = 31_536_000;
export const SLOTS_PER_YEAR = 1000;
export const SEGMENTS_PER_SESSION = 10;

export interface DatasetShape {
  users: number;
  /** Sessions per user; 1,000 fill one year. */
  sessionsPerUser: number;
}

export interface Dataset {
  shape: DatasetShape;
  userIds: string[];
  segments: number;
  /** Instant after the last slot. */
  endMs: number;
  insertSeconds: number;
}

const USERS_PER_STATEMENT = 10;

/** Returns the id that the SQL above gives user `index`: the md5 of `user:<seed>:<index>` read as a UUID. */
export function datasetUserId(seed: number, index: number): string {
  const hex = createHash('md5').update(`user:${seed}:${index}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Deterministic unit float in [0, 1) from a text and the seed. */
const UNIT_FUNCTION = `CREATE OR REPLACE FUNCTION bench_unit(label text, seed bigint) RETURNS float8
  IMMUTABLE LANGUAGE sql AS $$ SELECT (hashtextextended(label, seed) & 2147483647)::float8 / 2147483648 $$`;

const SESSIONS = `
  SELECT u, s, user_id, session_id, start_ms, length_ms,
    (u % 10 = 0 AND s = $5 - 1) AS open
  FROM (
    SELECT u, s,
      md5(concat('user:', $1::bigint, ':', u))::uuid AS user_id,
      md5(concat('session:', $1::bigint, ':', u, ':', s))::uuid AS session_id,
      $2::bigint + s * $3::bigint
        + floor(bench_unit(concat('offset:', u), $1) * 3600000)::bigint
        + floor(bench_unit(concat('jitter:', u, ':', s), $1) * 1800000)::bigint AS start_ms,
      3600000 + floor(bench_unit(concat('length:', u, ':', s), $1) * 18000000)::bigint AS length_ms
    FROM generate_series($4::int, $6::int - 1) AS u, generate_series(0, $5::int - 1) AS s
  ) AS g`;

const INSERT_SEGMENTS = `
  WITH sessions AS MATERIALIZED (${SESSIONS}),
  tasks AS (
    SELECT sessions.*, lane, slot,
      md5(concat('task:', $1::bigint, ':', u, ':', s, ':', lane, ':', slot))::uuid AS task_id,
      start_ms + slot * (length_ms / 3)
        + floor((length_ms / 3) * (0.05 + 0.25 * bench_unit(concat('ts:', u, ':', s, ':', lane, ':', slot), $1)))::bigint
        AS task_start_ms,
      floor((length_ms / 3) * (0.1 + 0.6 * bench_unit(concat('tl:', u, ':', s, ':', lane, ':', slot), $1)))::bigint
        AS task_length_ms
    FROM sessions, generate_series(0, 2) AS lane, generate_series(0, 2) AS slot
  )
  INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id,
    parent_segment_id, end_at, end_event_id, end_reason, decided_at, decided_seq, meta)
  SELECT session_id, user_id, 'session', '', to_timestamp(start_ms / 1000.0), s * 16,
    md5(concat('session-start:', session_id))::uuid, NULL,
    CASE WHEN open THEN NULL ELSE to_timestamp((start_ms + length_ms) / 1000.0) END,
    CASE WHEN open THEN NULL ELSE md5(concat('session-end:', session_id))::uuid END,
    CASE WHEN open THEN NULL ELSE 'CLIENT'::"EndReason" END,
    CASE WHEN open THEN NULL ELSE to_timestamp((start_ms + length_ms) / 1000.0) END,
    CASE WHEN open THEN NULL ELSE s * 16 + 15 END,
    jsonb_build_object('device', (ARRAY['web', 'ios', 'android', 'desktop'])[1 + floor(bench_unit(concat('device:', session_id), $1) * 4)::int])
  FROM sessions
  UNION ALL
  SELECT task_id, user_id, 'task', 'k' || lane, to_timestamp(task_start_ms / 1000.0), s * 16 + 1 + lane * 3 + slot,
    md5(concat('task-start:', task_id))::uuid, session_id,
    CASE WHEN open AND lane = 0 AND slot = 2 THEN NULL ELSE to_timestamp((task_start_ms + task_length_ms) / 1000.0) END,
    CASE WHEN open AND lane = 0 AND slot = 2 THEN NULL ELSE md5(concat('task-end:', task_id))::uuid END,
    CASE WHEN open AND lane = 0 AND slot = 2 THEN NULL ELSE 'CLIENT'::"EndReason" END,
    CASE WHEN open AND lane = 0 AND slot = 2 THEN NULL ELSE to_timestamp((task_start_ms + task_length_ms) / 1000.0) END,
    CASE WHEN open AND lane = 0 AND slot = 2 THEN NULL ELSE s * 16 + 14 END,
    jsonb_build_object('project', 'p' || floor(bench_unit(concat('project:', task_id), $1) * 5)::int)
  FROM tasks`;

/** Inserts the users, their segments and length bounds, and vacuums the tables. */
export async function createDataset(
  pool: pg.Pool,
  seed: number,
  shape: DatasetShape,
  passwordHash: string,
  log: (message: string) => void,
): Promise<Dataset> {
  const started = performance.now();
  await pool.query(UNIT_FUNCTION);
  await pool.query(
    `INSERT INTO users (id, username, role, password_hash)
     SELECT md5(concat('user:', $1::bigint, ':', u))::uuid, 'rep-u' || lpad(u::text, 3, '0'), 'MEMBER', $3
     FROM generate_series(0, $2::int - 1) AS u`,
    [seed, shape.users, passwordHash],
  );
  const userIds = Array.from({ length: shape.users }, (_, index) => datasetUserId(seed, index));

  // Each batch stores its segments and their length bounds in one
  // transaction, as intake does. The server's rollup builder starts as soon
  // as a batch commits, and it relies on the bounds to find segments that
  // began before a chunk.
  for (let first = 0; first < shape.users; first += USERS_PER_STATEMENT) {
    const last = Math.min(shape.users, first + USERS_PER_STATEMENT);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(INSERT_SEGMENTS, [seed, DATASET_START_MS, SLOT_MS, first, shape.sessionsPerUser, last]);
      // The service keeps the longest closed segment per user and pair type, rounded up to whole ms.
      await client.query(
        `INSERT INTO segment_length_bounds (user_id, pair_type, max_ms)
         SELECT user_id, pair_type, ceil(max(extract(epoch FROM end_at - start_at) * 1000))::bigint
         FROM segments WHERE end_at IS NOT NULL AND user_id = ANY($1::uuid[])
         GROUP BY user_id, pair_type
         ON CONFLICT (user_id, pair_type) DO UPDATE SET max_ms = GREATEST(segment_length_bounds.max_ms, EXCLUDED.max_ms)`,
        [userIds.slice(first, last)],
      );
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    } finally {
      client.release();
    }
    log(`reports: dataset users ${first} to ${last - 1} inserted`);
  }

  // Autovacuum would get there later; the index-only scans of report leaves need the visibility map now.
  await pool.query('VACUUM (ANALYZE) segments');
  await pool.query('VACUUM (ANALYZE) segment_length_bounds');
  await pool.query('VACUUM (ANALYZE) users');

  const counted = await pool.query<{ count: string }>('SELECT count(*) FROM segments WHERE user_id = ANY($1::uuid[])', [
    userIds,
  ]);
  return {
    shape,
    userIds,
    segments: Number(counted.rows[0]?.count ?? 0),
    endMs: DATASET_START_MS + shape.sessionsPerUser * SLOT_MS,
    insertSeconds: (performance.now() - started) / 1000,
  };
}
