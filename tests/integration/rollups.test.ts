/**
 * Segment rollups against real PostgreSQL: which chunks the triggers mark
 * stale, what a rebuild writes, and the two races between a rebuild and a
 * transaction that changes segments. Each race is played step by step on two
 * connections.
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';

import { CHUNK_MS, chunkOf } from '../../src/domain/interval/chunks.js';
import type { Database } from '../../src/storage/postgres/database.js';
import { RollupBuilder } from '../../src/services/rollups.js';
import { loadLeafSets } from '../../src/storage/postgres/leaf-store.js';
import { decodeRollupBounds, rebuildStaleChunks } from '../../src/storage/postgres/rollup-store.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

/** The start of chunk 683, 2026-02-06T00:00Z. */
const BORDER = 683 * CHUNK_MS;
const HOUR = 3_600_000;

describeWithPostgres('segment rollups', () => {
  let db: Database;
  let dropDatabase: () => Promise<void>;
  let other: pg.Client;
  let userId: string;
  let databaseUrl: string;

  beforeAll(async () => {
    const database = await openMigratedTestDatabase(postgresUrl() as string, { prefix: 'em_test_rollups', poolSize: 4 });
    ({ db, drop: dropDatabase, url: databaseUrl } = database);
    other = new pg.Client({ connectionString: database.url });
    await other.connect();
  }, 60_000);

  afterAll(async () => {
    await other?.end();
    await dropDatabase?.();
  });

  beforeEach(async () => {
    userId = randomUUID();
    await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, $2, 'MEMBER', 'x')`, [
      userId,
      `rollup-${userId.slice(0, 8)}`,
    ]);
  });

  async function insertSegment(start: number, end: number | null, pairKey = ''): Promise<string> {
    const pairType = 'session';
    const id = randomUUID();
    await db.sql.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_reason, decided_at, decided_seq)
         VALUES ($1, $2, $3, $8, $4, 1, $5, $6, $7, $6, 1)`,
        [id, userId, pairType, new Date(start), randomUUID(), end === null ? null : new Date(end), end === null ? null : 'CLIENT', pairKey],
      );
      if (end !== null) {
        await tx.query(
          `INSERT INTO segment_length_bounds (user_id, pair_type, max_ms) VALUES ($1, $2, $3)
           ON CONFLICT (user_id, pair_type) DO UPDATE SET max_ms = GREATEST(segment_length_bounds.max_ms, EXCLUDED.max_ms)`,
          [userId, pairType, end - start],
        );
      }
    });
    return id;
  }

  /** Lists the stale chunks of the rollups over all keys, or of one pair key. */
  async function staleChunks(pairKey: string | null = null): Promise<number[]> {
    const rows = await db.sql.query<{ chunk: number }>(
      `SELECT chunk FROM segment_rollup_stale WHERE user_id = $1 AND all_keys = $2 AND pair_key = $3 ORDER BY chunk`,
      [userId, pairKey === null, pairKey ?? ''],
    );
    return rows.map((row) => row.chunk);
  }

  async function rollups(pairKey: string | null = null): Promise<Map<number, string>> {
    const rows = await db.sql.query<{ chunk: number; bounds: Uint8Array }>(
      `SELECT chunk, bounds FROM segment_rollups WHERE user_id = $1 AND all_keys = $2 AND pair_key = $3 ORDER BY chunk`,
      [userId, pairKey === null, pairKey ?? ''],
    );
    return new Map(rows.map((row) => [row.chunk, decodeRollupBounds(row.bounds).toString()]));
  }

  async function rebuildAll(batchSize = 100): Promise<void> {
    while ((await rebuildStaleChunks(db.sql, batchSize)) > 0) {
      // Until no chunk is left.
    }
  }

  it('marks, clips and merges chunks', async () => {
    await insertSegment(BORDER - 2 * HOUR, BORDER + HOUR);
    await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
    await insertSegment(BORDER + 5 * HOUR, null);
    // The open segment marks nothing; the first one touches two chunks.
    expect(await staleChunks()).toEqual([682, 683]);

    // A minimum age of one minute leaves chunks marked just now stale.
    expect(await rebuildStaleChunks(db.sql, 100, 60_000)).toBe(0);
    expect(await staleChunks()).toEqual([682, 683]);

    await rebuildAll();
    expect(await staleChunks()).toEqual([]);
    expect(await rollups()).toEqual(
      new Map([
        [682, `[${BORDER - 2 * HOUR}, ${BORDER})`],
        // The two touching segments are one piece.
        [683, `[${BORDER}, ${BORDER + 2 * HOUR})`],
      ]),
    );

    const leaf = await loadLeafSets(db.sql, {
      spec: { pairTypes: ['session'], users: [userId], pairKeys: null, meta: null, includeOpen: true },
      defaultUsers: null,
      windowStart: BORDER - 10 * HOUR,
      windowEnd: BORDER + 10 * HOUR,
      openEnd: BORDER + 6 * HOUR,
      withUserIds: false,
    });
    expect(leaf.chunksRead).toBe(2);
    expect(leaf.segmentsRead).toBe(1);
    expect(leaf.set.toString()).toBe(`[${BORDER - 2 * HOUR}, ${BORDER + 2 * HOUR}) [${BORDER + 5 * HOUR}, ${BORDER + 6 * HOUR})`);
  });

  it('marks old and new chunks', async () => {
    const id = await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
    await rebuildAll();
    expect([...(await rollups()).keys()]).toEqual([683]);

    // Moving a segment back a chunk marks both chunks.
    await db.sql.query(`UPDATE segments SET start_at = $2, end_at = $3 WHERE id = $1`, [
      id,
      new Date(BORDER - CHUNK_MS / 2),
      new Date(BORDER - CHUNK_MS / 2 + HOUR),
    ]);
    expect(await staleChunks()).toEqual([682, 683]);
    await rebuildAll();
    expect([...(await rollups()).keys()]).toEqual([682]);

    await db.sql.query(`DELETE FROM segments WHERE id = $1`, [id]);
    expect(await staleChunks()).toEqual([682]);
    await rebuildAll();
    expect(await rollups()).toEqual(new Map());
  });

  it('cleans up after user deletion', async () => {
    await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
    await rebuildAll();
    await db.sql.query(`DELETE FROM users WHERE id = $1`, [userId]);

    expect(await staleChunks()).toEqual([683]);
    await rebuildAll();
    expect(await rollups()).toEqual(new Map());
    expect(await staleChunks()).toEqual([]);
  });

  it('keeps mark during a rebuild', async () => {
    const id = await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
    expect(await staleChunks()).toEqual([683]);

    // The rebuild's first steps: it locks the stale row and reads the segments as they are.
    const builder = new pg.Client({ connectionString: databaseUrl });
    await builder.connect();
    try {
      await builder.query('BEGIN');
      await builder.query(`SELECT chunk FROM segment_rollup_stale WHERE user_id = $1 FOR UPDATE`, [userId]);

      // A change to the same chunk: its trigger must wait for the rebuild.
      let changed = false;
      const change = db.sql
        .query(`UPDATE segments SET end_at = $2 WHERE id = $1`, [id, new Date(BORDER + 3 * HOUR)])
        .then(() => {
          changed = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(changed).toBe(false);

      // The rebuild ends: it wrote a rollup of the old segment and deleted the mark.
      await builder.query(
        `INSERT INTO segment_rollups (user_id, pair_type, all_keys, pair_key, chunk, bounds)
         VALUES ($1, 'session', true, '', 683, '\\x'), ($1, 'session', false, '', 683, '\\x')`,
        [userId],
      );
      await builder.query(`DELETE FROM segment_rollup_stale WHERE user_id = $1`, [userId]);
      await builder.query('COMMIT');
      await change;
    } finally {
      await builder.end();
    }

    // The change committed after the rebuild, so its chunk is stale again.
    expect(await staleChunks()).toEqual([683]);
    await rebuildAll();
    expect(await rollups()).toEqual(new Map([[683, `[${BORDER + HOUR}, ${BORDER + 3 * HOUR})`]]));
  });

  it('skips chunks held by writers', async () => {
    const id = await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
    await insertSegment(BORDER - CHUNK_MS / 2, BORDER - CHUNK_MS / 2 + HOUR);
    expect(await staleChunks()).toEqual([682, 683]);

    await other.query('BEGIN');
    try {
      await other.query(`UPDATE segments SET end_at = $2 WHERE id = $1`, [id, new Date(BORDER + 4 * HOUR)]);
      // The uncommitted change has chunk 683 locked; the rebuild takes 682 only.
      const rebuilt = await rebuildStaleChunks(db.sql, 100);
      expect(rebuilt).toBeGreaterThanOrEqual(1);
      expect(await staleChunks()).toEqual([683]);
    } finally {
      await other.query('COMMIT');
    }
    await rebuildAll();
    expect((await rollups()).get(683)).toBe(`[${BORDER + HOUR}, ${BORDER + 4 * HOUR})`);
    expect(chunkOf(BORDER - CHUNK_MS / 2)).toBe(682);
  });

  it('keeps rollups per pair key', async () => {
    await insertSegment(BORDER + HOUR, BORDER + 3 * HOUR, 'a');
    await insertSegment(BORDER + 2 * HOUR, BORDER + 4 * HOUR, 'b');
    expect(await staleChunks()).toEqual([683]);
    expect(await staleChunks('a')).toEqual([683]);
    expect(await staleChunks('b')).toEqual([683]);

    await rebuildAll();
    expect(await rollups()).toEqual(new Map([[683, `[${BORDER + HOUR}, ${BORDER + 4 * HOUR})`]]));
    expect(await rollups('a')).toEqual(new Map([[683, `[${BORDER + HOUR}, ${BORDER + 3 * HOUR})`]]));
    expect(await rollups('b')).toEqual(new Map([[683, `[${BORDER + 2 * HOUR}, ${BORDER + 4 * HOUR})`]]));

    const leaf = await loadLeafSets(db.sql, {
      spec: { pairTypes: ['session'], users: [userId], pairKeys: ['b'], meta: null, includeOpen: true },
      defaultUsers: null,
      windowStart: BORDER,
      windowEnd: BORDER + 10 * HOUR,
      openEnd: BORDER + 10 * HOUR,
      withUserIds: false,
    });
    expect(leaf.chunksRead).toBe(1);
    expect(leaf.segmentsRead).toBe(0);
    expect(leaf.set.toString()).toBe(`[${BORDER + 2 * HOUR}, ${BORDER + 4 * HOUR})`);
  });

  it('rebuilds in batches until done', async () => {
    await insertSegment(BORDER - CHUNK_MS, BORDER + CHUNK_MS + HOUR, 'a');
    // Three chunks, each over all keys and for key 'a'.
    expect(await staleChunks()).toEqual([682, 683, 684]);
    const builder = new RollupBuilder({ sql: db.sql, logger: pino({ level: 'silent' }), intervalMs: 1000, batchSize: 2, delayMs: 0 });

    expect(await builder.buildOnce()).toBeGreaterThanOrEqual(6);
    expect(await staleChunks()).toEqual([]);
    expect(await staleChunks('a')).toEqual([]);
  });

  it('handles a segment of 4,900 years', async () => {
    const start = Date.UTC(100, 0, 1);
    const end = Date.UTC(5000, 0, 1);
    await insertSegment(start, end);
    const leaf = {
      spec: { pairTypes: ['session'], users: [userId], pairKeys: null, meta: null, includeOpen: true },
      defaultUsers: null,
      windowStart: start,
      windowEnd: start + 30 * 24 * HOUR,
      openEnd: start + 30 * 24 * HOUR,
      withUserIds: false,
    };
    const expected = `[${start}, ${end})`;
    expect((await loadLeafSets(db.sql, { ...leaf, rollups: false })).set.toString()).toBe(expected);
    expect((await loadLeafSets(db.sql, leaf)).set.toString()).toBe(expected);

    // About 119,000 chunks: few large batches keep the test short.
    await rebuildAll(5000);
    const rebuilt = await loadLeafSets(db.sql, leaf);
    expect(rebuilt.chunksRead).toBe(2);
    expect(rebuilt.set.clip({ start, end: start + 30 * 24 * HOUR }).totalMs).toBe(30 * 24 * HOUR);
  }, 120_000);

  it('marks chunks without JIT', async () => {
    // PostgreSQL estimates 1000 rows for each generate_series call, so a write
    // of a few hundred segments would otherwise compile the trigger's statements.
    const rows = await db.sql.query<{ proconfig: string[] | null }>(
      `SELECT proconfig FROM pg_proc WHERE proname = 'segment_rollups_mark_stale'`,
    );

    expect(rows).toEqual([{ proconfig: ['jit=off'] }]);
  });

  it('postpones a chunk that fails', async () => {
    // A stale row for a chunk far beyond the timestamp range fails every
    // rebuild once its user has a segment to compare with the chunk's bounds.
    // Its user id sorts first, so it comes before every other chunk.
    const poisoned = '00000000-0000-4000-8000-000000000000';
    await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'poisoned', 'MEMBER', 'x')`, [
      poisoned,
    ]);
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_reason, decided_at, decided_seq)
       VALUES (gen_random_uuid(), $1, 'session', '', '2026-01-01T00:00:00Z', 1, gen_random_uuid(),
         '2026-01-01T01:00:00Z', 'CLIENT', '2026-01-01T01:00:00Z', 1)`,
      [poisoned],
    );
    await db.sql.query(
      `INSERT INTO segment_rollup_stale (user_id, pair_type, all_keys, pair_key, chunk) VALUES ($1, 'session', true, '', 1000000000)`,
      [poisoned],
    );
    try {
      await insertSegment(BORDER + HOUR, BORDER + 2 * HOUR);
      const warnings: string[] = [];
      const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
      const builder = new RollupBuilder({ sql: db.sql, logger, intervalMs: 1000, batchSize: 10, delayMs: 0 });

      await builder.buildOnce();

      expect(await staleChunks()).toEqual([]);
      expect(await rollups()).toEqual(new Map([[683, `[${BORDER + HOUR}, ${BORDER + 2 * HOUR})`]]));
      const postponed = await db.sql.query<{ waiting: boolean }>(
        `SELECT marked_at > now() AS waiting FROM segment_rollup_stale WHERE user_id = $1`,
        [poisoned],
      );
      expect(postponed).toEqual([{ waiting: true }]);
      expect(warnings.some((line) => line.includes('is postponed') && line.includes(poisoned))).toBe(true);
    } finally {
      await db.sql.query(`DELETE FROM users WHERE id = $1`, [poisoned]);
      await db.sql.query(`DELETE FROM segment_rollup_stale WHERE user_id = $1`, [poisoned]);
    }
  });
});
