/**
 * The reply of every intake request looks up the segments its events ended.
 * With many stored segments, that lookup must use the index on end_event_id
 * instead of scanning the table.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Database } from '../../src/storage/postgres/database.js';
import { loadReply } from '../../src/storage/postgres/intake-store.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { openMigratedTestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function scanTypes(node: PlanNode, relation: string): string[] {
  const own = node['Relation Name'] === relation ? [node['Node Type']] : [];
  return [...own, ...(node.Plans ?? []).flatMap((child) => scanTypes(child, relation))];
}

describeWithPostgres('intake reply lookup', () => {
  let db: Database;
  let dropDatabase: () => Promise<void>;
  const userId = randomUUID();

  beforeAll(async () => {
    ({ db, drop: dropDatabase } = await openMigratedTestDatabase(postgresUrl() as string, {
      prefix: 'em_test_intakeplan',
      poolSize: 2,
    }));
    await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'plan', 'MEMBER', 'x')`, [userId]);
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_event_id, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), $1, 'session', '', t, n, gen_random_uuid(), t + interval '10 minutes', gen_random_uuid(), 'CLIENT', t + interval '10 minutes', n
       FROM (SELECT n, timestamptz '2020-01-01' + n * interval '1 hour' AS t FROM generate_series(1, 50000) AS n) AS s`,
      [userId],
    );
    await db.sql.query('ANALYZE segments');
  }, 120_000);

  afterAll(async () => {
    await dropDatabase?.();
  });

  it('uses the end-event index', async () => {
    const statements: Array<{ text: string; params: unknown[] }> = [];
    const recording: SqlClient = {
      query: (text, params = []) => {
        statements.push({ text, params });
        return db.sql.query(text, params);
      },
      queryArrays: (text, params) => db.sql.queryArrays(text, params),
      exec: (script) => db.sql.exec(script),
      transaction: (work) => db.sql.transaction(work),
    };
    const ended = await db.sql.query<{ end_event_id: string }>(`SELECT end_event_id FROM segments LIMIT 1`);
    const reply = await loadReply(recording, [userId], [ended[0]!.end_event_id, randomUUID()]);
    expect(reply.segments).toHaveLength(1);

    const statement = statements.at(-1)!;
    const plan = await db.sql.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (FORMAT JSON) ${statement.text}`,
      statement.params,
    );
    const scans = scanTypes(plan[0]!['QUERY PLAN'][0]!.Plan, 'segments');
    expect(scans.length).toBeGreaterThan(0);
    expect(scans).not.toContain('Seq Scan');
  }, 60_000);
});
