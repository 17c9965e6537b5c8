/**
 * The leaves of one report read one snapshot. Otherwise a request that
 * commits between two leaf reads shows in one leaf and not in the other,
 * and set algebra between them returns time that never existed, such as a
 * task outside its session. Leaves load at once in transactions of their
 * own, and when their snapshots differ, they load again in one transaction.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ReportService } from '../../src/services/reports.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { wrapSql } from '../support/database.js';
import { describeWithPostgres } from '../support/services.js';

const AT = Date.UTC(2026, 2, 9, 9, 0);
const WINDOW = { start: new Date(AT - 3_600_000), end: new Date(AT + 3_600_000) };
const SESSION = { segments: { pairTypes: ['session'] } };
const TASK = { segments: { pairTypes: ['task'] } };
// The session leaf comes first, and the expression equals task minus session,
// which is empty whenever both leaves read the same state.
const TASK_OUTSIDE_SESSION = {
  union: [{ difference: { from: SESSION, subtract: SESSION } }, { difference: { from: TASK, subtract: SESSION } }],
};

describeWithPostgres('report leaves', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, WITHOUT_WORKERS);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('read one snapshot', async () => {
    const member = await server.createUser('snapshot-member');
    const sql = server.app.db.sql;
    const events = [
      { id: 's1', type: 'session_started', occurredAt: new Date(AT) },
      { id: 't1', type: 'task_started', occurredAt: new Date(AT) },
      { id: 't2', type: 'task_ended', occurredAt: new Date(AT + 300_000) },
      { id: 's2', type: 'session_ended', occurredAt: new Date(AT + 600_000) },
    ];

    // After the first leaf read, a request stores a session with a task.
    // Every later transaction starts only once it committed.
    let markWritten: () => void = () => {};
    const written = new Promise<void>((resolve) => {
      markWritten = resolve;
    });
    let writes = 0;
    let transactions = 0;
    const readTx = (tx: SqlClient): SqlClient =>
      wrapSql(tx, {
        queryArrays: async (text, params) => {
          const rows = await tx.queryArrays(text, params);
          if (writes === 0) {
            writes += 1;
            await server.app.services.intake.send({ userId: member.id, role: 'MEMBER' }, events);
            markWritten();
          }
          return rows;
        },
      });
    const writing = wrapSql(sql, {
      transaction: async (work) => {
        transactions += 1;
        if (transactions > 1) {
          await written;
        }
        return sql.transaction((tx) => work(readTx(tx)));
      },
    });
    const reports = new ReportService(writing, server.app.services.clock, {
      maxDepth: 10,
      maxNodes: 100,
      maxLiteralIntervals: 100,
      maxLeafEntries: 10_000,
      maxWindowDays: 400,
      maxIntervals: 100_000,
      maxBucketRows: 100_000,
      maxConcurrentLoads: 5,
    });
    const request = { expression: TASK_OUTSIDE_SESSION, window: WINDOW, groupBy: null, bucket: null, canReadAll: false };

    const during = await reports.run({ userId: member.id, role: 'MEMBER' }, request);

    expect(writes).toBe(1);
    expect(transactions).toBeGreaterThan(1);
    expect(during.totalSeconds).toBe(0);
    const after = await server.app.services.reports.run({ userId: member.id, role: 'MEMBER' }, { ...request, expression: TASK });
    expect(after.totalSeconds).toBe(300);
  });
});
