/**
 * The latency baseline of the benchmark writes one row per timed call into
 * a copy of `events`. Its figures are only comparable with the service's if
 * every call it counts wrote a row, across all the runs that share a table.
 */
import { randomUUID } from 'node:crypto';

import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  countLatencyBaselineRows,
  createLatencyBaselineTable,
  runLatencyBaseline,
} from '../../bench/intake/latency-baseline.js';
import { openPool } from '../../bench/lib/services.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

describeWithPostgres('latency baseline', () => {
  let database: Awaited<ReturnType<typeof openMigratedTestDatabase>>;
  let pool: pg.Pool;
  // The copy of `events` has no foreign keys, so the users need no rows.
  const userIds = [randomUUID(), randomUUID()];

  beforeAll(async () => {
    database = await openMigratedTestDatabase(postgresUrl()!, { prefix: 'em_bench_latency', poolSize: 2 });
    pool = openPool(database.url, 3);
    await createLatencyBaselineTable(pool);
  });

  afterAll(async () => {
    await pool?.end();
    await database?.drop();
  });

  it('writes a row for every timed call across runs', async () => {
    const seqs = new Map<string, number>();
    const first = await runLatencyBaseline(pool, userIds, seqs, 3, 0.3);
    const second = await runLatencyBaseline(pool, userIds, seqs, 5, 0.3);

    for (const row of [first, second]) {
      expect(row.errors).toBe(0);
      expect(row.requests).toBeGreaterThan(0);
      expect(row.path).toBe('insert');
      expect(row.serverCpuMsPerRequest).toBeNull();
      expect(row.p50Ms).toBeLessThanOrEqual(row.p99Ms);
      expect(row.p99Ms).toBeLessThanOrEqual(row.maxMs);
    }
    expect(first.connections).toBe(3);
    expect(second.connections).toBe(5);
    expect(await countLatencyBaselineRows(pool)).toBe(first.requests + second.requests);
  });

  it('continues each user\'s sequence numbers', async () => {
    const seqs = new Map<string, number>([[userIds[0]!, 1000]]);
    await runLatencyBaseline(pool, userIds.slice(0, 1), seqs, 1, 0.1);

    const result = await pool.query<{ min: number }>(
      `SELECT min(seq) AS min FROM bench_latency_events WHERE user_id = $1 AND seq > 1000`,
      [userIds[0]],
    );
    expect(result.rows[0]?.min).toBe(1001);
  });
});
