/**
 * Rollups of one pair key must not scan the segments of every other key.
 * Tasks keyed by their own ids put thousands of distinct keys in one chunk.
 * Rebuilding a stale chunk of one key, and a report of one key over stale
 * chunks, must then read about that key's segments alone.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Database } from '../../src/storage/postgres/database.js';
import { loadLeafSets } from '../../src/storage/postgres/leaf-store.js';
import { rebuildStaleChunks } from '../../src/storage/postgres/rollup-store.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { rowsScanned, type PlanNode } from '../support/plan.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const KEYS = 5_000;
const KEYS_REBUILT = 50;

/** Wraps `sql` so that the statements run by `queryArrays`, in and out of transactions, are recorded. */
function recording(sql: SqlClient, statements: Array<{ text: string; params: unknown[] }>): SqlClient {
  const wrap = (client: SqlClient): SqlClient => ({
    query: (text, params, options) => client.query(text, params, options),
    queryArrays: (text, params = [], options) => {
      statements.push({ text, params });
      return client.queryArrays(text, params, options);
    },
    exec: (script) => client.exec(script),
    transaction: (work) => client.transaction((tx) => work(wrap(tx))),
  });
  return wrap(sql);
}

describeWithPostgres('rollup scans of one pair key', () => {
  let db: Database;
  let dropDatabase: () => Promise<void>;
  const userId = randomUUID();

  beforeAll(async () => {
    ({ db, drop: dropDatabase } = await openMigratedTestDatabase(postgresUrl() as string, {
      prefix: 'em_test_keyscan',
      poolSize: 2,
    }));
    await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'keys', 'MEMBER', 'x')`, [userId]);
    // One 10-minute task per distinct key, a minute apart, all in one 30-day chunk.
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), $1, 'task', 'k' || n, t, n, gen_random_uuid(), t + interval '10 minutes', 'CLIENT', t + interval '10 minutes', n
       FROM (SELECT n, timestamptz '2026-06-01' + n * interval '1 minute' AS t FROM generate_series(1, $2::int) AS n) AS s`,
      [userId, KEYS],
    );
    await db.sql.query(`INSERT INTO segment_length_bounds (user_id, pair_type, max_ms) VALUES ($1, 'task', 600000)`, [userId]);
    await db.sql.query('ANALYZE segments');
  }, 120_000);

  afterAll(async () => {
    await dropDatabase?.();
  });

  async function scannedBy(statement: { text: string; params: unknown[] } | undefined): Promise<number> {
    expect(statement, 'recorded statement').toBeDefined();
    const plan = await db.sql.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${statement?.text}`,
      statement?.params,
    );
    return rowsScanned(plan[0]!['QUERY PLAN'][0]!.Plan);
  }

  it('reads one key while a report loads its stale chunk', async () => {
    const statements: Array<{ text: string; params: unknown[] }> = [];
    const leaf = await loadLeafSets(recording(db.sql, statements), {
      spec: { pairTypes: ['task'], users: [userId], pairKeys: ['k10'], meta: null, includeOpen: false },
      defaultUsers: null,
      windowStart: Date.parse('2026-06-01T00:00:00Z'),
      windowEnd: Date.parse('2026-06-08T00:00:00Z'),
      openEnd: Date.parse('2026-06-08T00:00:00Z'),
      withUserIds: false,
      rollups: true,
    });
    expect(leaf.set.totalMs).toBe(600_000);

    const scanned = await scannedBy(statements.find((statement) => statement.text.includes('FROM segment_rollups r')));
    expect(scanned).toBeLessThan(100);
  });

  it('rebuilds stale chunks of single keys by reading their segments', async () => {
    // Leave only the stale chunks of the first keys, so that one batch rebuilds them all.
    await db.sql.query(`DELETE FROM segment_rollup_stale WHERE all_keys OR NOT (pair_key = ANY($1::text[]))`, [
      Array.from({ length: KEYS_REBUILT }, (_, index) => `k${index + 1}`),
    ]);
    const statements: Array<{ text: string; params: unknown[] }> = [];
    // The statement is recorded before it runs, so it can be explained afterwards with the same chunks.
    const rebuilt = await rebuildStaleChunks(recording(db.sql, statements), KEYS_REBUILT);
    expect(rebuilt).toBe(KEYS_REBUILT);

    const scanned = await scannedBy(statements.find((statement) => statement.text.includes('float8send')));
    // Each key has one segment; a scan of the whole chunk per key would read KEYS_REBUILT * KEYS rows.
    expect(scanned).toBeLessThan(KEYS_REBUILT * 10);
  });
});
