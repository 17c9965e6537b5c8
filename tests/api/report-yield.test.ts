/**
 * A report evaluates its expression on the event loop, once more per user
 * when grouped by user. Between the nodes of an evaluation, between groups
 * and while it walks bucket boundaries it lets other work run, so a costly
 * report does not hold the loop for its whole evaluation. The server here
 * pauses at every step, and the tests count the pauses of one report and
 * check that other callbacks of the test process ran during each of them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { eventLoopSlices, type ReportPause } from '../../src/services/reports.js';
import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const USERS = 80;
const SEGMENTS_PER_USER = 1500;
const WINDOW = { start: '2026-01-05T00:00:00.000Z', end: '2026-01-07T00:00:00.000Z' };
const CHAINS = 16;
const CHAIN_DEPTH = 100;

/**
 * Builds a union of `chains` chains of CHAIN_DEPTH complements over the segments
 * of `pairType`, so that evaluating the expression takes most of the report's time.
 */
function costlyExpression(pairType: string, chains = CHAINS): unknown {
  const chain = () => {
    let expression: unknown = { segments: { pairTypes: [pairType] } };
    for (let depth = 0; depth < CHAIN_DEPTH; depth += 1) {
      expression = { complement: expression };
    }
    return expression;
  };
  return { union: Array.from({ length: chains }, chain) };
}

/** Pauses of the reports since the last reset, and those during which other callbacks ran. */
const counts = { pauses: 0, yielded: 0 };
/** Callbacks of a setImmediate loop that runs while a report does. */
let ticks = 0;

/** Pauses at every step, as the server's pause does once a slice of time has passed. */
function countingPauses(): ReportPause {
  const pause = eventLoopSlices(-1);
  return () => {
    const waiting = pause();
    if (waiting === undefined) {
      return undefined;
    }
    counts.pauses += 1;
    const before = ticks;
    return waiting.then(() => {
      if (ticks > before) {
        counts.yielded += 1;
      }
    });
  };
}

describeWithPostgres('costly report on a busy loop', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      reportPauses: countingPauses,
      env: {
        REPORT_MAX_DEPTH: String(CHAIN_DEPTH + 2),
        REPORT_MAX_NODES: String(CHAINS * (CHAIN_DEPTH + 1) + 1),
        // Room for the HOUR buckets of four years.
        REPORT_MAX_WINDOW_DAYS: '1500',
      },
    });
    const sql = server.app.db.sql;
    // Every user has the same task times, so the report over all users, which
    // runs before the groups, stays cheap.
    await sql.query(
      `INSERT INTO users (id, username, role, password_hash)
       SELECT gen_random_uuid(), 'yield-' || i, 'MEMBER', 'x' FROM generate_series(1, $1::int) AS i`,
      [USERS],
    );
    await sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id,
         end_at, end_event_id, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), u.id, 'task', '', timestamptz '2026-01-05' + i * interval '1 minute', i,
         gen_random_uuid(), timestamptz '2026-01-05' + i * interval '1 minute' + interval '30 seconds',
         gen_random_uuid(), 'CLIENT', timestamptz '2026-01-05' + i * interval '1 minute' + interval '30 seconds', i
       FROM users u, generate_series(1, $1::int) AS i WHERE u.username LIKE 'yield-%'`,
      [SEGMENTS_PER_USER],
    );
    // Sessions of 0.2 s start half a second apart between users, so that the
    // sessions of all users stay apart: a leaf of all users has USERS * SEGMENTS_PER_USER intervals.
    await sql.query(
      `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id,
         end_at, end_event_id, end_reason, decided_at, decided_seq)
       SELECT gen_random_uuid(), u.id, 'session', '', timestamptz '2026-01-05' + i * interval '1 minute' + u.n * interval '500 milliseconds', i,
         gen_random_uuid(), timestamptz '2026-01-05' + i * interval '1 minute' + u.n * interval '500 milliseconds' + interval '200 milliseconds',
         gen_random_uuid(), 'CLIENT', timestamptz '2026-01-05' + i * interval '1 minute' + interval '59 seconds', i
       FROM (SELECT id, row_number() OVER (ORDER BY username) AS n FROM users WHERE username LIKE 'yield-%') AS u,
         generate_series(1, $1::int) AS i`,
      [SEGMENTS_PER_USER],
    );
    await sql.query(
      `INSERT INTO segment_length_bounds (user_id, pair_type, max_ms)
       SELECT id, pair_type, CASE pair_type WHEN 'task' THEN 30000 ELSE 200 END
       FROM users, (VALUES ('task'), ('session')) AS t(pair_type) WHERE username LIKE 'yield-%'`,
    );
  }, 120_000);

  /** Runs `query` beside a setImmediate loop, and returns its report with the counts of its pauses. */
  async function counted(query: string, variables: Record<string, unknown>) {
    const admin = await server.adminToken();
    counts.pauses = 0;
    counts.yielded = 0;
    let running = true;
    const tick = () => {
      ticks += 1;
      if (running) {
        setImmediate(tick);
      }
    };
    setImmediate(tick);
    try {
      const reply = await server.gql(query, variables, admin);
      return { report: dataOf(reply, 'report').report, ...counts };
    } finally {
      running = false;
    }
  }

  afterAll(async () => {
    await server?.close();
  });

  it('yields between groups', async () => {
    const query = `query ($expression: SetExpression!, $window: WindowInput!) {
      report(expression: $expression, window: $window, groupBy: USER) { groups { count } }
    }`;
    const { report, pauses, yielded } = await counted(query, { expression: costlyExpression('task'), window: WINDOW });

    const groups = report.groups as Array<{ count: number }>;
    expect(groups.length, 'groups').toBe(USERS + 1);
    // At least one pause per group, besides those between nodes.
    expect(pauses, 'pauses').toBeGreaterThan(USERS);
    expect(yielded, 'pauses during which other callbacks ran').toBe(pauses);
  }, 60_000);

  it('yields between nodes of one evaluation', async () => {
    const query = `query ($expression: SetExpression!, $window: WindowInput!) {
      report(expression: $expression, window: $window) { count }
    }`;
    const { report, pauses, yielded } = await counted(query, { expression: costlyExpression('session', 6), window: WINDOW });

    // An even number of complements gives back the sessions.
    expect(report.count, 'intervals').toBe(USERS * SEGMENTS_PER_USER);
    // A pause after each node but the root: six chains of CHAIN_DEPTH complements over a leaf each.
    expect(pauses, 'pauses').toBeGreaterThanOrEqual(6 * (CHAIN_DEPTH + 1));
    expect(yielded, 'pauses during which other callbacks ran').toBe(pauses);
  }, 60_000);

  it('yields while walking bucket boundaries', async () => {
    const query = `query ($expression: SetExpression!, $window: WindowInput!) {
      report(expression: $expression, window: $window, bucket: { unit: HOUR, timeZone: "Europe/Prague" }) {
        buckets { seconds }
      }
    }`;
    const window = { start: '2022-01-01T00:00:00.000Z', end: '2026-01-01T00:00:00.000Z' };
    const { report, pauses, yielded } = await counted(query, { expression: { intervals: [] }, window });

    expect(report.buckets, 'buckets').toHaveLength(35_064);
    // A pause after each boundary of the walk.
    expect(pauses, 'pauses').toBeGreaterThanOrEqual(35_064);
    expect(yielded, 'pauses during which other callbacks ran').toBe(pauses);
  }, 60_000);
});
