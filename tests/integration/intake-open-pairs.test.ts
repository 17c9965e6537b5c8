/**
 * A user with many open pairs. Above INLINE_OPEN_MAX, the engine state in
 * Redis leaves them out. A batch writes only the rows it changes. A process
 * that did not fold the user last reads the open pairs from PostgreSQL, and
 * does not use what it cached before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { INLINE_OPEN_MAX } from '../../src/services/derive.js';
import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';
import { describeWithPostgres, describeWithRedis } from '../support/services.js';

const NOW = Date.parse('2026-03-10T12:00:00Z');
const BATCH = 1000;
/** Tasks opened before the checks: enough that, with their session, the open pairs exceed INLINE_OPEN_MAX. */
const TASKS = INLINE_OPEN_MAX + 100;

const SEND = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) {
    results { event { pairKey flags } corrections { rule pairKey } closedSegments { pairType pairKey endReason } }
  }
}`;

interface SendResult {
  event: { pairKey: string | null; flags: string[] };
  corrections: Array<{ rule: string; pairKey: string }>;
  closedSegments: Array<{ pairType: string; pairKey: string; endReason: string }>;
}

interface StoredStateJson {
  derivedVersion: number;
  engine?: { open: Record<string, unknown> };
  engineWithoutOpen?: { appliedSeq: number; open?: unknown };
}

/** Returns the events that start tasks `first` to `first + count - 1`, one millisecond apart, before NOW. */
function taskStarts(first: number, count: number): Array<Record<string, unknown>> {
  return Array.from({ length: count }, (_, index) => ({
    type: 'task_started',
    pairKey: `k${first + index}`,
    occurredAt: new Date(NOW - 60_000 + first + index).toISOString(),
  }));
}

async function send(server: TestServer, token: string, events: Array<Record<string, unknown>>): Promise<SendResult[]> {
  const response = await server.gql<{ sendEvents: { results: SendResult[] } }>(SEND, { events }, token);
  return dataOf(response, 'sendEvents').sendEvents.results;
}

/** Sends task starts for tasks 0 to `count - 1` in batches of BATCH. */
async function openTasks(server: TestServer, token: string, count: number): Promise<void> {
  for (let first = 0; first < count; first += BATCH) {
    await send(server, token, taskStarts(first, Math.min(BATCH, count - first)));
  }
}

async function storedState(server: TestServer, userId: string): Promise<StoredStateJson> {
  const text = await server.app.store.loadUserState(userId);
  expect(text).not.toBeNull();
  return JSON.parse(text as string) as StoredStateJson;
}

describe('engine state of many open pairs', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock: new ManualClock(NOW) });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('keeps few open pairs inline', async () => {
    const user = await server.createUser('few-open');
    await openTasks(server, user.token, 3);

    const stored = await storedState(server, user.id);

    expect(Object.keys(stored.engine?.open ?? {})).toHaveLength(4);
    expect(stored.engineWithoutOpen).toBeUndefined();
  });

  it('leaves many open pairs out', async () => {
    const user = await server.createUser('many-open');
    await openTasks(server, user.token, TASKS);

    const stored = await storedState(server, user.id);

    expect(stored.engine).toBeUndefined();
    expect(stored.engineWithoutOpen?.appliedSeq).toBe(TASKS);
    expect(stored.engineWithoutOpen?.open).toBeUndefined();
    // The rest is a few fields: versions, counters, positions and a fingerprint.
    expect(JSON.stringify(stored).length).toBeLessThan(1000);
  });

  it('closes cached open pairs', async () => {
    const user = await server.createUser('cached-close');
    await openTasks(server, user.token, TASKS);

    const [ended] = await send(server, user.token, [
      { type: 'task_ended', pairKey: 'k7', occurredAt: new Date(NOW - 1000).toISOString() },
    ]);
    const [sessionEnded] = await send(server, user.token, [
      { type: 'session_ended', occurredAt: new Date(NOW - 500).toISOString() },
    ]);

    expect(ended?.closedSegments).toEqual([{ pairType: 'task', pairKey: 'k7', endReason: 'CLIENT' }]);
    expect(sessionEnded?.corrections).toHaveLength(TASKS - 1);
    expect(sessionEnded?.closedSegments).toHaveLength(TASKS);
    expect(sessionEnded?.closedSegments.filter((segment) => segment.pairKey === 'k7')).toEqual([]);
    expect((await storedState(server, user.id)).engine?.open).toEqual({});
  });

  describeWithPostgres('segment rows', () => {
    it('batch leaves open segments untouched', async () => {
      const user = await server.createUser('untouched');
      await openTasks(server, user.token, TASKS);
      const versions = async (): Promise<Map<string, string>> => {
        const rows = await server.app.db.sql.query<{ id: string; xmin: string }>(
          `SELECT id, xmin::text AS xmin FROM segments WHERE user_id = $1`,
          [user.id],
        );
        return new Map(rows.map((row) => [row.id, row.xmin]));
      };
      const before = await versions();

      await send(server, user.token, taskStarts(TASKS, BATCH));
      const after = await versions();

      // xmin changes whenever PostgreSQL writes a new version of a row.
      expect(before.size).toBe(TASKS + 1);
      expect(after.size).toBe(TASKS + 1 + BATCH);
      const rewritten = [...before].filter(([id, xmin]) => after.get(id) !== xmin);
      expect(rewritten).toEqual([]);
    });
  });
});

// A second in-process server stands for another process: it shares the
// database and the Redis keys but has its own cache.
describeWithPostgres('open pairs across processes', () => {
  describeWithRedis('with shared Redis', () => {
    let first: TestServer;
    let second: TestServer;

    beforeAll(async () => {
      first = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock: new ManualClock(NOW) });
      second = await startTestServer(import.meta.filename, {
        ...WITHOUT_WORKERS,
        clock: new ManualClock(NOW),
        databaseUrl: first.databaseUrl as string,
        keyPrefix: first.app.config.redis.keyPrefix,
      });
    });

    afterAll(async () => {
      await second?.close();
      await first?.close();
    });

    it('other process reads open pairs', async () => {
      const user = await first.createUser('two-processes');
      await openTasks(first, user.token, TASKS);

      // The second process never folded this user, so it reads the open pairs
      // from PostgreSQL.
      const [closedThere] = await send(second, user.token, [
        { type: 'task_ended', pairKey: 'k3', occurredAt: new Date(NOW - 1000).toISOString() },
      ]);
      // The first process cached k3 as open, but the derived version has moved
      // since, so it must read again and find k3 closed.
      const [again] = await send(first, user.token, [
        { type: 'task_ended', pairKey: 'k3', occurredAt: new Date(NOW - 900).toISOString() },
      ]);
      const [other] = await send(first, user.token, [
        { type: 'task_ended', pairKey: 'k4', occurredAt: new Date(NOW - 800).toISOString() },
      ]);

      expect(closedThere?.closedSegments).toEqual([{ pairType: 'task', pairKey: 'k3', endReason: 'CLIENT' }]);
      expect(again?.event.flags).toEqual(['ORPHAN_END']);
      expect(again?.closedSegments).toEqual([]);
      expect(other?.closedSegments).toEqual([{ pairType: 'task', pairKey: 'k4', endReason: 'CLIENT' }]);
    });
  });
});
