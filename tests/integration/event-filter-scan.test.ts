/**
 * The `flags` and `rules` filters of event listings must read about the
 * flagged events and corrections alone. Among tens of thousands of plain
 * client events, a page of rare ORPHAN_END events or AUTO_CLOSE corrections
 * must not scan the events between them, across users or for one user.
 */
import { randomUUID } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Viewer } from '../../src/auth/viewer.js';
import { QueryService, type EventFilterArg, type PageArgs } from '../../src/services/queries.js';
import type { Database } from '../../src/storage/postgres/database.js';
import type { EventRecord } from '../../src/storage/postgres/records.js';
import { openMigratedTestDatabase, wrapSql } from '../support/database.js';
import { rowsScanned, type PlanNode } from '../support/plan.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const USERS = 4;
const EVENTS = 40_000;
/** Each kind of flagged event and correction is one event in EVERY, so each kind has EVENTS / EVERY rows. */
const EVERY = 1_000;
const PAGE = 10;
/** Far below the thousands of events between two of one kind, and above the 4 * EVENTS / EVERY rows of all kinds. */
const MAX_SCANNED = 300;
const FIRST_EVENT_MS = Date.parse('2025-01-01T00:00:00Z');
/** The middle half of the events' minutes. */
const MIDDLE_HALF = {
  start: new Date(FIRST_EVENT_MS + (EVENTS / 4) * 60_000),
  end: new Date(FIRST_EVENT_MS + ((3 * EVENTS) / 4) * 60_000),
};

describeWithPostgres('event filter scans', () => {
  let db: Database;
  let dropDatabase: () => Promise<void>;
  const userIds = Array.from({ length: USERS }, () => randomUUID());
  const analyst: Viewer = { userId: randomUUID(), role: 'ANALYST' };

  beforeAll(async () => {
    ({ db, drop: dropDatabase } = await openMigratedTestDatabase(postgresUrl() as string, {
      prefix: 'em_test_flagscan',
      poolSize: 2,
    }));
    await db.sql.query(
      `INSERT INTO users (id, username, role, password_hash)
       SELECT id, 'u' || n, 'MEMBER', 'x' FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)`,
      [userIds],
    );
    // One event a minute, seven of a user's in turn. Offsets 0, 250, 500 and 750 of every
    // EVERY events are an ORPHAN_END, an AUTO_CLOSE correction, a LATE_EVENT
    // and a MISSING_PARENT_START correction.
    await db.sql.query(
      `INSERT INTO events (id, user_id, seq, client_id, type, role, occurred_at, received_at, origin, rule, intake_flags,
         orphan, pos_at, pos_seq, ordinal)
       SELECT gen_random_uuid(), ($1::uuid[])[1 + (n / 7) % cardinality($1::uuid[])], n, CASE WHEN rule IS NULL THEN 'c' || n END,
         'heartbeat', 'POINT', t, t, CASE WHEN rule IS NULL THEN 'CLIENT' ELSE 'CORRECTION' END::"EventOrigin",
         rule::"CorrectionRule", CASE WHEN n % $3 = 500 THEN ARRAY['LATE_EVENT'] ELSE '{}' END::"CorrectionRule"[],
         n % $3 = 0, t, n, 0
       FROM (
         SELECT n, timestamptz '2025-01-01T00:00:00Z' + n * interval '1 minute' AS t,
           CASE n % $3 WHEN 250 THEN 'AUTO_CLOSE' WHEN 750 THEN 'MISSING_PARENT_START' END AS rule
         FROM generate_series(1, $2::int) AS n
       ) AS s`,
      [userIds, EVENTS, EVERY],
    );
    // Listings show only the client events that the fold applied.
    await db.sql.query(`UPDATE users SET applied_seq = $1, last_event_seq = $1`, [EVENTS]);
    await db.sql.query('ANALYZE events');
  }, 120_000);

  afterAll(async () => {
    await dropDatabase?.();
  });

  /** Lists a page as the analyst and returns its nodes and the rows that PostgreSQL scanned for it. */
  async function listAndExplain(args: PageArgs<EventFilterArg>): Promise<{ nodes: EventRecord[]; scanned: number }> {
    const statements: Array<{ text: string; params: unknown[] }> = [];
    const recording = wrapSql(db.sql, {
      query: (text, params, options) => {
        statements.push({ text, params: params ?? [] });
        return db.sql.query(text, params, options);
      },
    });
    const page = await new QueryService(recording, { defaultPageSize: PAGE, maxPageSize: 100 }).events(analyst, args);
    const statement = statements.at(-1);
    expect(statement, 'recorded statement').toBeDefined();
    const plan = await db.sql.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${statement?.text}`,
      statement?.params,
    );
    return { nodes: page.nodes, scanned: rowsScanned(plan[0]!['QUERY PLAN'][0]!.Plan) };
  }

  /** Tells whether an event meets the users, flags and rules conditions of `filter`. */
  function matches(event: EventRecord, filter: EventFilterArg): boolean {
    if (filter.users && !filter.users.includes(event.userId)) return false;
    if (filter.flags) {
      const flagged =
        event.intakeFlags.some((flag) => filter.flags!.includes(flag)) || (event.orphan && filter.flags.includes('ORPHAN_END'));
      if (event.origin !== 'CLIENT' || !flagged) return false;
    }
    if (filter.rules && (event.rule === null || !filter.rules.includes(event.rule))) return false;
    return true;
  }

  const cases: Array<{ name: string; filter: EventFilterArg; window?: boolean; backward?: boolean }> = [
    { name: 'ORPHAN_END across users', filter: { flags: ['ORPHAN_END'] } },
    { name: 'LATE_EVENT across users', filter: { flags: ['LATE_EVENT'] } },
    { name: 'ORPHAN_END of one user', filter: { users: [userIds[0]!], flags: ['ORPHAN_END'] } },
    { name: 'flags last page', filter: { flags: ['ORPHAN_END', 'LATE_EVENT'] }, backward: true },
    { name: 'flags in a window', filter: { flags: ['LATE_EVENT'] }, window: true },
    { name: 'AUTO_CLOSE across users', filter: { rules: ['AUTO_CLOSE'] } },
    { name: 'AUTO_CLOSE of one user', filter: { users: [userIds[0]!], rules: ['AUTO_CLOSE'] } },
    { name: 'rules last page', filter: { rules: ['MISSING_PARENT_START'] }, backward: true },
  ];

  describe.each(cases)('$name', ({ filter, window, backward }) => {
    it('scans about the matching rows', async () => {
      const { nodes, scanned } = await listAndExplain({
        filter,
        window: window ? MIDDLE_HALF : null,
        first: backward ? null : PAGE,
        after: null,
        last: backward ? PAGE : null,
        before: null,
      });
      expect(nodes.length).toBeGreaterThan(0);
      expect(nodes.length).toBeLessThanOrEqual(PAGE);
      expect(nodes.filter((node) => !matches(node, filter))).toEqual([]);
      expect(scanned).toBeLessThan(MAX_SCANNED);
    });

    it('returns every matching row', async () => {
      // Each case matches at most 2 * EVENTS / EVERY rows, so one page of 100 contains them all.
      const page = await new QueryService(db.sql, { defaultPageSize: PAGE, maxPageSize: 100 }).events(analyst, {
        filter,
        window: window ? MIDDLE_HALF : null,
        first: 100,
        after: null,
        last: null,
        before: null,
      });
      const all = await db.sql.query<{ id: string; user_id: string; occurred_at: Date; origin: 'CLIENT' | 'CORRECTION'; rule: string | null; intake_flags: string[]; orphan: boolean }>(
        'SELECT id, user_id, occurred_at, origin, rule::text, intake_flags::text[], orphan FROM events',
      );
      const expected = all
        .filter((row) => !window || (row.occurred_at >= MIDDLE_HALF.start && row.occurred_at < MIDDLE_HALF.end))
        .filter((row) =>
          matches(
            { userId: row.user_id, origin: row.origin, rule: row.rule, intakeFlags: row.intake_flags, orphan: row.orphan } as EventRecord,
            filter,
          ),
        )
        .map((row) => row.id)
        .sort();

      expect(expected.length, 'matching rows in the table').toBeGreaterThan(0);
      expect(page.nodes.map((node) => node.id).sort()).toEqual(expected);
    });
  });
});
