/**
 * The now that open segments run to is taken after a report's leaves have
 * read their snapshot. Every event that the snapshot shows was then received
 * at or before now. Otherwise an end received after now and committed before
 * the read closes a task after now, while its still open session stops at
 * now, and the report shows the task outside its session.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ReportService } from '../../src/services/reports.js';
import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { wrapSql } from '../support/database.js';
import { describeWithPostgres } from '../support/services.js';

const AT = Date.UTC(2026, 2, 9, 9, 0);
const WINDOW = { start: new Date(AT - 3_600_000), end: new Date(AT + 3_600_000) };
const TASK_OUTSIDE_SESSION = {
  difference: { from: { segments: { pairTypes: ['task'] } }, subtract: { segments: { pairTypes: ['session'] } } },
};

describeWithPostgres('report now', () => {
  let server: TestServer;
  const clock = new ManualClock(AT);

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('follows events read by the leaves', async () => {
    const member = await server.createUser('now-member');
    const viewer = { userId: member.id, role: 'MEMBER' } as const;
    const intake = server.app.services.intake;
    await intake.send(viewer, [{ type: 'session_started' }, { type: 'task_started' }]);

    // Between the report's start and its first leaf read, a request
    // received 5 s later ends the task. The session stays open.
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
    const request = { expression: TASK_OUTSIDE_SESSION, window: WINDOW, groupBy: null, bucket: null, canReadAll: false };
    const state = { bucketRows: 0 };

    const report = await reports.run(viewer, request, state);

    expect(writes).toBe(1);
    expect(report.intervals).toEqual([]);
    expect(report.totalSeconds).toBe(0);
    expect(state).toMatchObject({ now: AT + 5_000 });
  });
});
