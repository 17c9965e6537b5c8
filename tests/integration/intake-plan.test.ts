/**
 * Every intake request runs a few statements whose cost must not grow with
 * the tables. With many stored segments, events and users, the reply's
 * lookup of ended segments, the events write (which also updates the users'
 * counters) and the derived write must find their rows by index instead of
 * scanning. The statements kept prepared must do so with the plan that
 * PostgreSQL makes once for all parameter values, too.
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Database } from '../../src/storage/postgres/database.js';
import {
  appendClientEvents,
  loadHeadAndPending,
  loadIntakeSnapshot,
  loadReply,
  loadRewindInput,
  truncateDerivedFrom,
  writeDerived,
  type DerivedWrite,
} from '../../src/storage/postgres/intake-store.js';
import type { QueryOptions, SqlClient } from '../../src/storage/postgres/sql.js';
import { openMigratedTestDatabase, wrapSql } from '../support/database.js';
import { heartbeatRow } from '../support/intake-rows.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** The pair types every database starts with (session and task), as intake passes their count. */
const BUILT_IN_PAIR_TYPES = 2;
const TABLES = ['users', 'events', 'segments'];

/** Counts the rows that the scans of the intake tables read in an analysed plan, kept or filtered out. */
function rowsRead(node: PlanNode): number {
  const own =
    node['Relation Name'] !== undefined && TABLES.includes(node['Relation Name'])
      ? ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0)) *
        (node['Actual Loops'] ?? 1)
      : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child), 0);
}

function scanTypes(node: PlanNode, relation: string): string[] {
  const own = node['Relation Name'] === relation ? [node['Node Type']] : [];
  return [...own, ...(node.Plans ?? []).flatMap((child) => scanTypes(child, relation))];
}

/** Converts a statement parameter to an SQL literal of unknown type, which PostgreSQL casts to the parameter's type. */
function toLiteral(value: unknown): string {
  if (value === null || value === undefined) {
    return 'NULL';
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return String(value);
  }
  if (value instanceof Date) {
    return pg.escapeLiteral(value.toISOString());
  }
  if (Array.isArray(value)) {
    const items = value.map((item) => (item === null ? 'NULL' : `"${String(item).replace(/["\\]/g, '\\$&')}"`));
    return pg.escapeLiteral(`{${items.join(',')}}`);
  }
  return pg.escapeLiteral(String(value));
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
    // Each session is decided an hour after its end, as an auto-close is, so
    // the rewind near the end of the history reopens one of them.
    await db.sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id, end_at, end_event_id, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), $1, 'session', '', t, n, gen_random_uuid(), t + interval '10 minutes', gen_random_uuid(), 'AUTO_CLOSE', t + interval '70 minutes', n
       FROM (SELECT n, timestamptz '2020-01-01' + n * interval '1 hour' AS t FROM generate_series(1, 50000) AS n) AS s`,
      [userId],
    );
    await db.sql.query(
      `INSERT INTO users (id, username, role, password_hash)
       SELECT gen_random_uuid(), 'user-' || n, 'MEMBER', 'x' FROM generate_series(1, 10000) AS n`,
    );
    await db.sql.query(
      `INSERT INTO events (id, user_id, seq, client_id, type, role, occurred_at, received_at, origin, pos_at, pos_seq)
       SELECT gen_random_uuid(), $1, n, 'c' || n, 'heartbeat', 'POINT', t, t, 'CLIENT', t, n
       FROM (SELECT n, timestamptz '2020-01-01' + n * interval '1 hour' + interval '30 minutes' AS t
             FROM generate_series(1, 50000) AS n) AS s`,
      [userId],
    );
    await db.sql.query('ANALYZE segments');
    await db.sql.query('ANALYZE events');
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
      appendClientEvents(sql, [heartbeatRow(userId, 50_001)], [{ id: userId, lastEventSeq: 50_001, maxOccurredAt: at, expectedSeq: 0 }]),
    );

    expect(scanTypes(plan, 'users').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'users')).not.toContain('Seq Scan');
    expect(scanTypes(plan, 'events')).not.toContain('Seq Scan');
  }, 60_000);

  let openedSegments = 0;

  /** Builds a derived write, from the user's current head, that closes a new open segment a minute after its start. */
  async function closingWrite(orphanEventIds: string[] = []): Promise<DerivedWrite> {
    openedSegments += 1;
    const open = await db.sql.query<{ id: string; start_at: Date }>(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id)
       VALUES (gen_random_uuid(), $1, 'session', '', timestamptz '2030-01-01' + $2 * interval '1 day', 50000 + $2, gen_random_uuid())
       RETURNING id, start_at`,
      [userId, openedSegments],
    );
    const startAt = open[0]!.start_at.getTime();
    const at = startAt + 60_000;
    // The head as it is, so that the write passes its checks when it runs.
    const head = await db.sql.query<{ derived_version: number; fence: string }>(
      `SELECT derived_version, fence FROM users WHERE id = $1`,
      [userId],
    );
    return {
      userId,
      fence: Number(head[0]!.fence) + 1,
      expectedVersion: head[0]!.derived_version,
      receivedAt: at,
      corrections: [],
      newSegments: [],
      closedSegments: [
        {
          segmentId: open[0]!.id,
          pairType: 'session',
          startAt,
          end: { endAt: at, endEventId: randomUUID(), endReason: 'CLIENT', decidedAt: { at, seq: 2 } },
        },
      ],
      orphanEventIds,
      head: { appliedSeq: 0, position: null, lastActivityAt: null },
    };
  }

  it('finds the segments a derived write closes by key', async () => {
    const write = await closingWrite();
    // The write may fail its fence check; only its plan matters.
    const plan = await planOfLast((sql) => writeDerived(sql, write).catch(() => undefined));

    expect(scanTypes(plan, 'segments').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'segments')).not.toContain('Seq Scan');
    expect(scanTypes(plan, 'users')).not.toContain('Seq Scan');
  }, 60_000);

  it('uses the end-event index', async () => {
    const ended = await db.sql.query<{ end_event_id: string }>(
      `SELECT end_event_id FROM segments WHERE end_event_id IS NOT NULL LIMIT 1`,
    );
    const plan = await planOfLast(async (sql) => {
      const reply = await loadReply(sql, [userId], [ended[0]!.end_event_id, randomUUID()]);
      expect(reply.segments).toHaveLength(1);
    });

    expect(scanTypes(plan, 'segments').length).toBeGreaterThan(0);
    expect(scanTypes(plan, 'segments')).not.toContain('Seq Scan');
  }, 60_000);

  /** Calls `work` against a client that runs nothing and returns no rows, and returns the statements it sent. */
  async function capture(
    work: (sql: SqlClient) => Promise<unknown>,
  ): Promise<Array<{ text: string; params: unknown[]; options: QueryOptions | undefined }>> {
    const statements: Array<{ text: string; params: unknown[]; options: QueryOptions | undefined }> = [];
    const record = async (text: string, params: unknown[] = [], options?: QueryOptions): Promise<never[]> => {
      statements.push({ text, params, options });
      return [];
    };
    const capturing: SqlClient = {
      query: record,
      queryArrays: record,
      exec: async () => {},
      transaction: (inner) => inner(capturing),
    };
    await work(capturing).catch(() => undefined);
    return statements;
  }

  let planNumber = 0;

  /**
   * Runs a statement under EXPLAIN ANALYZE and rolls back what it wrote. With
   * `generic`, the statement is prepared and run with the plan PostgreSQL makes
   * once for all parameter values, as it may for the statements kept prepared.
   */
  async function analysedPlan(statement: { text: string; params: unknown[] }, generic: boolean): Promise<PlanNode> {
    let plan: PlanNode | undefined;
    const rollback = new Error('roll back the analysed statement');
    await db.sql
      .transaction(async (tx) => {
        let rows: Array<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>;
        if (generic) {
          planNumber += 1;
          const name = `generic_check_${planNumber}`;
          await tx.query(`SET LOCAL plan_cache_mode = force_generic_plan`);
          await tx.query(`PREPARE ${name} AS ${statement.text}`);
          // EXPLAIN EXECUTE takes its arguments as literals, not as parameters.
          const args = statement.params.map(toLiteral).join(', ');
          rows = await tx.query(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ${name}${args === '' ? '' : `(${args})`}`);
          await tx.query(`DEALLOCATE ${name}`);
        } else {
          rows = await tx.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statement.text}`, statement.params);
        }
        plan = rows[0]!['QUERY PLAN'][0]!.Plan;
        throw rollback;
      })
      .catch((error: unknown) => {
        if (error !== rollback) {
          throw error;
        }
      });
    return plan!;
  }

  it('returns the earliest end that a rewind reopens', async () => {
    const hour = 3_600_000;
    const position = { at: Date.UTC(2020, 0, 1) + 49_900 * hour, seq: 49_900 };
    const rolledBack = new Error('roll back the truncation');
    let earliestEnd: number | null = null;
    await db.sql
      .transaction(async (tx) => {
        earliestEnd = await truncateDerivedFrom(tx, userId, position);
        throw rolledBack;
      })
      .catch((error: unknown) => {
        if (error !== rolledBack) {
          throw error;
        }
      });

    // The session that started an hour before the position ended 50 minutes
    // before it, and its decision came 10 minutes after it.
    expect(earliestEnd).toBe(position.at - 50 * 60_000);
  });

  it('plans prepared statements for all values', async () => {
    const at = Date.UTC(2026, 0, 1);
    // Near the end of the user's 50,000 hourly events and segments, where late
    // events land, so that a plan that reads the history before it shows.
    const position = { at: Date.UTC(2020, 0, 1) + 49_900 * 3_600_000, seq: 49_900 };
    const derived = await closingWrite([randomUUID()]);
    const counters = [{ id: userId, lastEventSeq: 50_001, maxOccurredAt: at, expectedSeq: 0 }];
    const fresh = heartbeatRow(userId, 50_001);
    const calls: Array<(sql: SqlClient) => Promise<unknown>> = [
      (sql) => loadIntakeSnapshot(sql, [userId], ['c1']),
      (sql) => appendClientEvents(sql, [fresh], counters, null, BUILT_IN_PAIR_TYPES),
      (sql) => appendClientEvents(sql, [fresh], counters, [fresh.clientId!], BUILT_IN_PAIR_TYPES),
      (sql) => loadHeadAndPending(sql, userId, { from: 50_001, to: 50_001 }),
      (sql) => writeDerived(sql, derived),
      (sql) => loadReply(sql, [userId], [randomUUID()]),
    ];
    const statements = (await Promise.all(calls.map((call) => capture(call)))).flat();
    const prepared = statements.filter((statement) => statement.options?.prepare === true);
    expect(prepared).toHaveLength(statements.length);
    expect(prepared).toHaveLength(calls.length);

    for (const statement of prepared) {
      const label = statement.text.replace(/\s+/g, ' ').slice(0, 60);
      const generic = await analysedPlan(statement, true);
      const custom = await analysedPlan(statement, false);
      expect(TABLES.flatMap((table) => scanTypes(generic, table)).length, label).toBeGreaterThan(0);
      for (const table of TABLES) {
        expect(scanTypes(generic, table), `${table} in ${label}`).not.toContain('Seq Scan');
      }
      expect(rowsRead(generic), label).toBeLessThanOrEqual(2 * rowsRead(custom) + 100);
    }

    // A rewind's statements stay unprepared, and their plans for the values
    // at hand walk an index from the position instead of the user's history.
    const rewind = [
      ...(await capture((sql) => loadRewindInput(sql, userId, position, 50_000, null))),
      ...(await capture((sql) => truncateDerivedFrom(sql, userId, position))),
    ];
    expect(rewind).toHaveLength(2);
    for (const statement of rewind) {
      const label = statement.text.replace(/\s+/g, ' ').slice(0, 60);
      expect(statement.options?.prepare, label).not.toBe(true);
      expect(rowsRead(await analysedPlan(statement, false)), label).toBeLessThan(1000);
    }
  }, 120_000);

  it('plans larger requests for all values', async () => {
    const rows = Array.from({ length: 100 }, (_, index) => heartbeatRow(userId, 50_001 + index));
    const counters = [{ id: userId, lastEventSeq: 50_100, maxOccurredAt: null, expectedSeq: 0 }];
    const write = await closingWrite(rows.map((row) => row.id));
    const reply = await capture((sql) => loadReply(sql, [userId], [randomUUID(), randomUUID()]));
    const statements = [
      ...(await capture((sql) => loadIntakeSnapshot(sql, [userId], rows.map((row) => row.clientId!)))),
      ...(await capture((sql) => appendClientEvents(sql, rows, counters, null, BUILT_IN_PAIR_TYPES))),
      ...(await capture((sql) => writeDerived(sql, write))),
    ];

    // The reply's best plan depends on how many ids it looks up.
    expect(reply).toHaveLength(1);
    expect(reply[0]?.options?.prepare, 'reply of several events').not.toBe(true);
    expect(statements).toHaveLength(3);
    for (const statement of statements) {
      const label = statement.text.replace(/\s+/g, ' ').slice(0, 60);
      expect(statement.options?.prepare, label).toBe(true);
      const generic = await analysedPlan(statement, true);
      const custom = await analysedPlan(statement, false);
      for (const table of TABLES) {
        expect(scanTypes(generic, table), `${table} in ${label}`).not.toContain('Seq Scan');
      }
      expect(rowsRead(generic), label).toBeLessThanOrEqual(2 * rowsRead(custom) + 100);
    }
  }, 120_000);
});

describeWithPostgres('prepared intake statements', () => {
  it.each([true, false])('stay on the connection when DB_PREPARED_STATEMENTS=%s', async (enabled) => {
    const { db, drop } = await openMigratedTestDatabase(postgresUrl() as string, {
      prefix: 'em_test_prepared',
      poolSize: 1,
      preparedStatements: enabled,
    });
    try {
      const userId = randomUUID();
      await db.sql.query(`INSERT INTO users (id, username, role, password_hash) VALUES ($1, 'prepared', 'MEMBER', 'x')`, [userId]);
      const snapshot = await loadIntakeSnapshot(db.sql, [userId], ['c1']);
      expect(snapshot.counters.get(userId)?.lastEventSeq).toBe(0);
      await appendClientEvents(db.sql, [heartbeatRow(userId, 1)], [{ id: userId, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 }]);
      // Twice, so a statement that PostgreSQL could not run again would fail here.
      await loadIntakeSnapshot(db.sql, [userId], ['c1']);

      // The pool has one connection, so this reads the session that ran the statements.
      const rows = await db.sql.query<{ statement: string }>(`SELECT statement FROM pg_prepared_statements`);
      expect(rows.length).toBe(enabled ? 2 : 0);
    } finally {
      await drop();
    }
  }, 60_000);
});
