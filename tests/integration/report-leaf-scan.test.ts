/**
 * The leaf query of a report must not read segments that end long before its
 * window: with many old segments stored for a user, the rows PostgreSQL's
 * scans return stay close to the rows inside the window.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Database } from '../../src/storage/postgres/database.js';
import { loadLeafSets } from '../../src/storage/postgres/leaf-store.js';
import { countStaleChunks, rebuildStaleChunks } from '../../src/storage/postgres/rollup-store.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { rowsScanned, type PlanNode } from '../support/plan.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const OLD_SEGMENTS = 100_000;
const WINDOW = { start: Date.parse('2026-06-01T00:00:00Z'), end: Date.parse('2026-06-02T00:00:00Z') };

const LEAF = {
  spec: { pairTypes: ['session'], users: [] as string[], pairKeys: null, meta: null, includeOpen: true },
  defaultUsers: null,
  windowStart: WINDOW.start,
  windowEnd: WINDOW.end,
  openEnd: WINDOW.end,
  withUserIds: false,
};

describeWithPostgres('leaf scan range', () => {
  let db: Database;
  let dropDatabase: () => Promise<void>;
  const userId = randomUUID();
  LEAF.spec.users = [userId];

  beforeAll(async () => {
    ({ db, drop: dropDatabase } = await openMigratedTestDatabase(postgresUrl() as string, {
      prefix: 'em_test_leafscan',
      poolSize: 2,
    }));
    await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'scan', 'MEMBER', 'x')`, [
      userId,
    ]);
    // 10-minute sessions every hour through 2025, then 10 inside the window.
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), $1, 'session', '', t, n, gen_random_uuid(), t + interval '10 minutes', 'CLIENT', t + interval '10 minutes', n
       FROM (SELECT n, timestamptz '2014-01-01' + n * interval '1 hour' AS t FROM generate_series(1, $2::int) AS n) AS s`,
      [userId, OLD_SEGMENTS],
    );
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), $1, 'session', '', t, 1000000 + n, gen_random_uuid(), t + interval '10 minutes', 'CLIENT', t + interval '10 minutes', 1000000 + n
       FROM (SELECT n, timestamptz '2026-06-01' + n * interval '1 hour' AS t FROM generate_series(1, 10) AS n) AS s`,
      [userId],
    );
    await db.sql.query(`INSERT INTO segment_length_bounds (user_id, pair_type, max_ms) VALUES ($1, 'session', 600000)`, [
      userId,
    ]);
    await db.sql.query('ANALYZE segments');
  }, 120_000);

  afterAll(async () => {
    await dropDatabase?.();
  });

  it('reads only segments near the window', async () => {
    // Capture the leaf statement, then run it again under EXPLAIN ANALYZE.
    const statements: Array<{ text: string; params: unknown[] }> = [];
    // Leaves load in a transaction, so the statements of its client are recorded.
    const recording: SqlClient = {
      ...db.sql,
      query: (text, params) => db.sql.query(text, params),
      queryArrays: (text, params = []) => db.sql.queryArrays(text, params),
      exec: (script) => db.sql.exec(script),
      transaction: (work) =>
        db.sql.transaction((tx) =>
          work({
            ...tx,
            query: (text, params) => tx.query(text, params),
            queryArrays: (text, params = []) => {
              statements.push({ text, params });
              return tx.queryArrays(text, params);
            },
            exec: (script) => tx.exec(script),
            transaction: (inner) => tx.transaction(inner),
          }),
        ),
    };
    const leaf = await loadLeafSets(recording, { ...LEAF, rollups: false });
    expect(leaf.segmentsRead).toBe(10);
    expect(leaf.set.count).toBe(10);

    const leafStatement = statements.at(-1);
    expect(leafStatement).toBeDefined();
    const plan = await db.sql.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${leafStatement?.text}`,
      leafStatement?.params,
    );
    const scanned = rowsScanned((plan[0] as { 'QUERY PLAN': Array<{ Plan: PlanNode }> })['QUERY PLAN'][0]!.Plan);

    expect(scanned).toBeGreaterThanOrEqual(10);
    expect(scanned).toBeLessThan(100);
  });

  it('reads rollups once rebuilt', async () => {
    // The inserts above marked every chunk they touched stale: about 140 chunks of 30 days.
    expect(await countStaleChunks(db.sql)).toBeGreaterThan(100);
    const before = await loadLeafSets(db.sql, LEAF);
    expect(before.segmentsRead).toBe(10);
    expect(before.chunksRead).toBe(0);

    while ((await rebuildStaleChunks(db.sql, 50)) > 0) {
      // Rebuild in batches until no stale chunk is left.
    }
    expect(await countStaleChunks(db.sql)).toBe(0);

    const after = await loadLeafSets(db.sql, LEAF);
    expect(after.segmentsRead).toBe(0);
    expect(after.chunksRead).toBe(1);
    expect(after.set.clip(WINDOW).equals(before.set.clip(WINDOW))).toBe(true);
    expect(after.set.clip(WINDOW).totalMs).toBe(10 * 600_000);
  }, 120_000);
});
