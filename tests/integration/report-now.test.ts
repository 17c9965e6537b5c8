/**
 * The now that open segments run to is taken after a report's leaves have
 * read their snapshot. Every event that the snapshot shows was then received
 * at or before now. Otherwise an end received after now and committed before
 * the read closes a task after now, while its still open session stops at
 * now, and the report shows the task outside its session.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import type { Viewer } from '../../src/auth/viewer.js';
import { ReportService, type SharedReportState } from '../../src/services/reports.js';
import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { wrapSql } from '../support/database.js';
import { describeWithPostgres } from '../support/services.js';

const AT = Date.UTC(2026, 2, 9, 9, 0);
const WINDOW = { start: new Date(AT - 3_600_000), end: new Date(AT + 3_600_000) };
const TASK_OUTSIDE_SESSION = {
  difference: { from: { segments: { pairTypes: ['task'] } }, subtract: { segments: { pairTypes: ['session'] } } },
};
const LITERAL = { intervals: [{ start: new Date(AT), end: new Date(AT + 1_000) }] };

describeWithPostgres('report now', () => {
  let server: TestServer;
  const clock = new ManualClock(AT);

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock });
  });

  afterAll(async () => {
    await server?.close();
  });

  /**
   * Starts a session with a task for a new member at AT, and returns a
   * report service whose first transaction first waits for a request,
   * received 5 s later, that ends the task. The session stays open.
   */
  async function racingReports(username: string): Promise<{ viewer: Viewer; reports: ReportService; writes: () => number }> {
    clock.set(AT);
    const member = await server.createUser(username);
    const viewer: Viewer = { userId: member.id, role: 'MEMBER' };
    const intake = server.app.services.intake;
    await intake.send(viewer, [{ type: 'session_started' }, { type: 'task_started' }]);

    const sql = server.app.db.sql;
    let writes = 0;
    const writing = wrapSql(sql, {
      transaction: async (work) => {
        if (writes === 0) {
          writes += 1;
          clock.advance(5_000);
          await intake.send(viewer, [{ type: 'task_ended' }]);
        }
        return sql.transaction(work);
      },
    });
    const reports = new ReportService(writing, clock, {
      maxDepth: 10,
      maxNodes: 100,
      maxLiteralIntervals: 100,
      maxLeafEntries: 10_000,
      maxWindowDays: 400,
      maxIntervals: 100_000,
      maxBucketRows: 100_000,
      maxConcurrentLoads: 5,
    });
    return { viewer, reports, writes: () => writes };
  }

  function request(expression: unknown) {
    return { expression, window: WINDOW, groupBy: null, bucket: null, canReadAll: false };
  }

  it('follows events read by the leaves', async () => {
    const { viewer, reports, writes } = await racingReports('now-member');
    const state: SharedReportState = { bucketRows: 0 };

    const report = await reports.run(viewer, request(TASK_OUTSIDE_SESSION), state);

    expect(writes()).toBe(1);
    expect(report.intervals).toEqual([]);
    expect(report.totalSeconds).toBe(0);
    expect(state.now).toBe(AT + 5_000);
  });

  it('is not fixed by a report without leaves', async () => {
    const { viewer, reports, writes } = await racingReports('now-literal-member');
    const state: SharedReportState = { bucketRows: 0 };

    const literal = await reports.run(viewer, request(LITERAL), state);
    const report = await reports.run(viewer, request(TASK_OUTSIDE_SESSION), state);

    expect(literal.totalSeconds).toBe(1);
    expect(writes()).toBe(1);
    expect(report.intervals).toEqual([]);
    expect(state.now).toBe(AT + 5_000);
  });
});
