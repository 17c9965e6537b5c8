/**
 * Every intake request runs a few statements whose cost must not grow with
 * the tables. With many stored segments and users, the reply's lookup of
 * ended segments, the events write (which also updates the users' counters)
 * and the derived write must find their rows by index instead of scanning.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Database } from '../../src/storage/postgres/database.js';
import { appendClientEvents, loadReply, writeDerived } from '../../src/storage/postgres/intake-store.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { openMigratedTestDatabase, wrapSql } from '../support/database.js';
import { heartbeatRow } from '../support/intake-rows.js';
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

describeWithPostgres('intake statement plans', () => {
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
    await db.sql.query(
      `INSERT INTO users (id, username, role, password_hash)
       SELECT gen_random_uuid(), 'user-' || n, 'MEMBER', 'x' FROM generate_series(1, 10000) AS n`,
    );
    await db.sql.query('ANALYZE segments');
    await db.sql.query('ANALYZE users');
  }, 120_000);

  afterAll(async () => {
    await dropDatabase?.();
  });

  /** Runs `work` against a client that records statements, and returns the plan of the last one. */
  async function planOfLast(work: (sql: SqlClient) => Promise<unknown>): Promise<PlanNode> {
    const statements: Array<{ text: string; params: unknown[] }> = [];
    const recording = wrapSql(db.sql, {
      query: (text, params = []) => {
        statements.push({ text, params });
        return db.sql.query(text, params);
      },
    });
    await work(recording);
    const statement = statements.at(-1)!;
    const plan = await db.sql.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (FORMAT JSON) ${statement.text}`,
      statement.params,
    );
    return plan[0]!['QUERY PLAN'][0]!.Plan;
  }

  it('finds the users of an events write by key', async () => {
    const at = Date.UTC(2026, 0, 1);
    const plan = await planOfLast((sql) =>
      appendClientEvents(sql, [heartbeatRow(userId, 1)], [{ id: userId, lastEventSeq: 1, maxOccurredAt: at, expectedSeq: 0 }]),
    );

    expect(scanTypes(plan, 'users').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'users')).not.toContain('Seq Scan');
    expect(scanTypes(plan, 'events')).not.toContain('Seq Scan');
  }, 60_000);

  it('finds the segments a derived write closes by key', async () => {
    const open = await db.sql.query<{ id: string; start_at: Date }>(`SELECT id, start_at FROM segments LIMIT 1`);
    const at = open[0]!.start_at.getTime() + 60_000;
    // The write may fail its fence check; only its plan matters.
    const plan = await planOfLast((sql) =>
      writeDerived(sql, {
        userId,
        fence: 1,
        expectedVersion: 0,
        receivedAt: at,
        corrections: [],
        newSegments: [],
        closedSegments: [
          {
            segmentId: open[0]!.id,
            pairType: 'session',
            startAt: open[0]!.start_at.getTime(),
            end: { endAt: at, endEventId: randomUUID(), endReason: 'CLIENT', decidedAt: { at, seq: 2 } },
          },
        ],
        orphanEventIds: [],
        head: { appliedSeq: 0, position: null, lastActivityAt: null },
      }).catch(() => undefined),
    );

    expect(scanTypes(plan, 'segments').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'segments')).not.toContain('Seq Scan');
    expect(scanTypes(plan, 'users')).not.toContain('Seq Scan');
  }, 60_000);

  it('uses the end-event index', async () => {
    const ended = await db.sql.query<{ end_event_id: string }>(`SELECT end_event_id FROM segments LIMIT 1`);
    const plan = await planOfLast(async (sql) => {
      const reply = await loadReply(sql, [userId], [ended[0]!.end_event_id, randomUUID()]);
      expect(reply.segments).toHaveLength(1);
    });

    expect(scanTypes(plan, 'segments').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'segments')).not.toContain('Seq Scan');
  }, 60_000);
});
