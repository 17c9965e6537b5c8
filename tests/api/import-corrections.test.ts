/**
 * The import summary's corrections and flags against a real server: it
 * counts what is stored once every event was sent, not what the replies of
 * earlier batches listed and later batches undid.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runImport } from '../../src/importer/run-import.js';
import { startTestServer, type TestServer } from '../support/app.js';

const SENSOR = {
  kind: 'pairType',
  input: {
    name: 'sensor',
    startType: 'sensor_on',
    endType: 'sensor_off',
    autoClose: { timeoutSeconds: 1800, endAt: 'DEADLINE' },
  },
};

/** Returns an import line with an event of user P900, recorded years before the server's clock. */
function recorded(id: string, type: string, occurredAt: string) {
  return { kind: 'event', username: 'P900', input: { id, type, pairKey: 'M001', occurredAt } };
}

describe('import stored counts', () => {
  let server: TestServer;
  let token: string;
  let folder: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename);
    token = await server.adminToken();
    folder = mkdtempSync(join(tmpdir(), 'em-import-corrections-'));
  });

  afterAll(async () => {
    await server?.close();
    rmSync(folder, { recursive: true, force: true });
  });

  it('counts what is stored at the end', async () => {
    const file = join(folder, 'events.ndjson');
    // One event per batch. After the first, the open pair is past its
    // deadline and is auto-closed, and the second, from before that
    // deadline, reopens it and ends it. The last pair stays auto-closed.
    const lines = [
      SENSOR,
      recorded('1', 'sensor_on', '2009-03-23T10:00:00Z'),
      recorded('2', 'sensor_off', '2009-03-23T10:05:00Z'),
      recorded('3', 'sensor_on', '2009-03-23T11:00:00Z'),
    ];
    writeFileSync(file, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');

    const summary = await runImport({ url: server.url, token, files: [file], batchSize: 1 });

    expect(summary.stored, 'stored').toBe(3);
    expect(summary.correctionsByRule, 'corrections').toEqual({ AUTO_CLOSE: 1 });
    const rows = await server.app.db.sql.query<{ rule: string; count: number }>(
      `SELECT rule, count(*)::int AS count FROM events WHERE origin = 'CORRECTION' GROUP BY rule`,
    );
    expect(rows, 'stored rows').toEqual([{ rule: 'AUTO_CLOSE', count: 1 }]);
  });

  it('counts flags stored at the end', async () => {
    const file = join(folder, 'flags.ndjson');
    // The end comes first and is flagged ORPHAN_END. The start, sent in the
    // next batch, lies before it, so it is late and gives the end its pair.
    const lines = [
      SENSOR,
      { kind: 'event', username: 'P901', input: { id: '1', type: 'sensor_off', pairKey: 'M002', occurredAt: '2009-03-24T10:05:00Z' } },
      { kind: 'event', username: 'P901', input: { id: '2', type: 'sensor_on', pairKey: 'M002', occurredAt: '2009-03-24T10:00:00Z' } },
    ];
    writeFileSync(file, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');

    const summary = await runImport({ url: server.url, token, files: [file], batchSize: 1 });

    expect(summary.stored, 'stored').toBe(2);
    expect(summary.flaggedByRule, 'flags').toEqual({ LATE_EVENT: 1 });
    const orphans = await server.app.db.sql.query<{ count: number }>(`SELECT count(*)::int AS count FROM events WHERE orphan`);
    expect(orphans, 'orphan rows').toEqual([{ count: 0 }]);
  });

  it('counts stored events despite a malformed userId', async () => {
    const file = join(folder, 'malformed-user.ndjson');
    // The server rejects the event that names "P902" as its userId, a
    // username where a UUID belongs, and the count must skip that id.
    const lines = [
      SENSOR,
      { kind: 'event', input: { id: 'm1', type: 'sensor_off', pairKey: 'M003', occurredAt: '2009-03-25T10:05:00Z', userId: 'P902' } },
      { kind: 'event', username: 'P903', input: { id: 'm2', type: 'sensor_off', pairKey: 'M003', occurredAt: '2009-03-25T10:05:00Z' } },
    ];
    writeFileSync(file, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');

    const summary = await runImport({ url: server.url, token, files: [file], batchSize: 1 });

    expect(summary.rejected, 'rejected').toBe(1);
    expect(summary.stored, 'stored').toBe(1);
    expect(summary.flaggedByRule, 'flags').toEqual({ ORPHAN_END: 1 });
  });
});
