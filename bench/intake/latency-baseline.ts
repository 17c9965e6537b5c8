/**
 * Baseline of the latency phase: as many closed-loop callers as autocannon
 * has connections, each writing one event row per call straight into
 * PostgreSQL, over a pool with as many connections as the server's. It shows
 * what one durable single-row write costs on this machine at that
 * concurrency, before HTTP, GraphQL, Redis and pairing add their share.
 */
import { randomUUID } from 'node:crypto';

import type pg from 'pg';

import { cpuBetween, sampleCpu } from '../lib/cpu.js';
import { callTimes, type LatencyRow } from './latency.js';

/** The table the baseline writes into: the columns, defaults and indexes of `events`. */
const TABLE = 'bench_latency_events';

const INSERT = `INSERT INTO ${TABLE} (id, user_id, seq, client_id, type, role, pair_type, pair_key, occurred_at,
    received_at, origin, pos_at, pos_seq)
  VALUES ($1::uuid, $2::uuid, $3::int, $4, $5, $6::"EventRole", $7, $8, $9::timestamptz, $9::timestamptz, 'CLIENT',
    $9::timestamptz, $3::int)
  ON CONFLICT DO NOTHING`;

/** The rows a caller writes in turn, as the service's callers send a session with one task. */
const STEPS: ReadonlyArray<{ type: string; role: 'START' | 'END' | 'POINT'; pairType: string | null }> = [
  { type: 'session_started', role: 'START', pairType: 'session' },
  { type: 'heartbeat', role: 'POINT', pairType: null },
  { type: 'task_started', role: 'START', pairType: 'task' },
  { type: 'heartbeat', role: 'POINT', pairType: null },
  { type: 'task_ended', role: 'END', pairType: 'task' },
  { type: 'session_ended', role: 'END', pairType: 'session' },
];

export async function createLatencyBaselineTable(pool: pg.Pool): Promise<void> {
  await pool.query(`DROP TABLE IF EXISTS ${TABLE}`);
  await pool.query(`CREATE TABLE ${TABLE} (LIKE events INCLUDING ALL)`);
}

/** Counts the rows the baseline has written, to check them against the calls it timed. */
export async function countLatencyBaselineRows(pool: pg.Pool): Promise<number> {
  const result = await pool.query<{ count: string }>(`SELECT count(*) FROM ${TABLE}`);
  return Number(result.rows[0]?.count ?? 0);
}

/**
 * Runs `callers` closed loops for `seconds`: each inserts one row in
 * autocommit with a prepared statement, and sends the next as soon as the
 * previous one returns. The time of a call includes the wait for a free
 * connection of `pool`, as a request to the server includes the wait for one
 * of its pool. Caller i writes rows of user `userIds[i % userIds.length]`,
 * numbered on from the user's last sequence number in `seqOfUser`, which
 * the runs of one table share.
 */
export async function runLatencyBaseline(
  pool: pg.Pool,
  userIds: readonly string[],
  seqOfUser: Map<string, number>,
  callers: number,
  seconds: number,
): Promise<LatencyRow> {
  const times: number[] = [];
  let errors = 0;
  let firstError: string | null = null;
  const othersBefore = sampleCpu();
  const started = performance.now();
  const stopAt = started + seconds * 1000;

  const loop = async (caller: number): Promise<void> => {
    const userId = userIds[caller % userIds.length]!;
    for (let step = 0; performance.now() < stopAt; step += 1) {
      const seq = (seqOfUser.get(userId) ?? 0) + 1;
      seqOfUser.set(userId, seq);
      const { type, role, pairType } = STEPS[step % STEPS.length]!;
      const values = [randomUUID(), userId, seq, `latb-${seq}`, type, role, pairType, pairType === null ? null : '', new Date()];
      const sent = performance.now();
      try {
        await pool.query({ name: 'bench_latency_insert', text: INSERT, values });
      } catch (error) {
        errors += 1;
        firstError ??= (error as Error).message;
      }
      times.push(performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, caller) => loop(caller)));

  const elapsedSeconds = (performance.now() - started) / 1000;
  const others = cpuBetween(othersBefore, sampleCpu());
  return {
    path: 'insert',
    users: 'many',
    connections: callers,
    rateLimit: null,
    ...callTimes(times, elapsedSeconds),
    serverCpuMsPerRequest: null,
    postgresCpuMsPerRequest: others.postgresMs === null ? null : others.postgresMs / Math.max(1, times.length),
    clientCpuMsPerRequest: others.clientMs / Math.max(1, times.length),
    errors,
    firstError,
  };
}
