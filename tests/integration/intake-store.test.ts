/**
 * The head update that ends every derived write checks the lock fence and
 * the derived version read at the start of the fold: a stale writer writes
 * nothing and gets LOCK_LOST instead of a constraint error. A derived write
 * is one statement, so a failed check keeps none of its parts. The fold's
 * head and pending events come from one snapshot. Storing client events
 * writes only while the counters it read have not moved, and reads again
 * when they have.
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { Deriver } from '../../src/services/derive.js';
import { IntakeService, type IntakeOptions } from '../../src/services/intake.js';
import {
  CountersMovedError,
  PairTypesChangedError,
  appendClientEvents,
  loadHeadAndPending,
  loadIntakeSnapshot,
  writeDerived,
  type DerivedWrite,
} from '../../src/storage/postgres/intake-store.js';
import { startTestServer, type TestServer } from '../support/app.js';
import { wrapSql } from '../support/database.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { heartbeatRow } from '../support/intake-rows.js';
import { describeWithPostgres } from '../support/services.js';

/** Wraps `sql` so that `onRows` gets the text and rows of every queryArrays inside a transaction, and the read waits for it. */
function watchTransactionReads(sql: SqlClient, onRows: (text: string, rows: unknown[][]) => void | Promise<void>): SqlClient {
  return wrapSql(sql, {
    transaction: (work) =>
      sql.transaction((tx) =>
        work(
          wrapSql(tx, {
            queryArrays: async (text, params) => {
              const rows = await tx.queryArrays(text, params);
              await onRows(text, rows);
              return rows;
            },
          }),
        ),
      ),
  });
}

describe('writeDerived checks', () => {
  let server: TestServer;
  let userId: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false });
    userId = (await server.createUser('store-checks')).id;
  });

  afterAll(async () => {
    await server?.close();
  });

  function emptyWrite(fence: number, expectedVersion: number): DerivedWrite {
    return {
      userId,
      fence,
      receivedAt: Date.now(),
      corrections: [],
      newSegments: [],
      closedSegments: [],
      orphanEventIds: [],
      head: { appliedSeq: 0, position: null, lastActivityAt: null },
      expectedVersion,
    };
  }

  it('writes with the current version and fence', async () => {
    const head = (await loadHeadAndPending(server.app.db.sql, userId))?.head;
    const { version } = await server.app.db.sql.transaction((tx) =>
      writeDerived(tx, emptyWrite(10, head?.derivedVersion ?? -1)),
    );
    expect(version).toBe((head?.derivedVersion ?? 0) + 1);
  });

  it.each([
    ['a stale version', 20, -1],
    ['an older fence', 5, null],
  ])('rejects %s', async (_name, fence, version) => {
    const before = (await loadHeadAndPending(server.app.db.sql, userId))?.head;
    const expected = version ?? before?.derivedVersion ?? 0;
    const attempt = server.app.db.sql.transaction((tx) => writeDerived(tx, emptyWrite(fence, expected)));

    await expect(attempt).rejects.toBeInstanceOf(DomainError);
    await expect(attempt).rejects.toMatchObject({ reason: 'LOCK_LOST' });
    const after = (await loadHeadAndPending(server.app.db.sql, userId))?.head;
    expect(after?.derivedVersion).toBe(before?.derivedVersion);
  });

  it('leaves events beyond the head for the next fold', async () => {
    // Event 2 is stored, but the head still counts one event. This is what a fold
    // reads when a request whose lock expired stores events meanwhile.
    const other = (await server.createUser('store-pending')).id;
    const sql = server.app.db.sql;
    for (const seq of [1, 2]) {
      await sql.query(
        `INSERT INTO events (id, user_id, seq, type, role, occurred_at, received_at, origin, pos_at, pos_seq)
         VALUES (gen_random_uuid(), $1, $2, 'heartbeat', 'POINT', $3, $3, 'CLIENT', $3, $2)`,
        [other, seq, new Date(Date.UTC(2026, 0, 1, 0, seq))],
      );
    }
    await sql.query(`UPDATE users SET last_event_seq = 1 WHERE id = $1`, [other]);

    const loaded = await loadHeadAndPending(sql, other);

    expect(loaded?.head.lastEventSeq).toBe(1);
    expect(loaded?.pending.map((entry) => entry.event.seq)).toEqual([1]);
  });

  it('returns null for an unknown user', async () => {
    expect(await loadHeadAndPending(server.app.db.sql, '00000000-0000-4000-8000-000000000001')).toBeNull();
  });

  it('rolls back a write that closes a closed segment', async () => {
    const sql = server.app.db.sql;
    const before = (await loadHeadAndPending(sql, userId))?.head;
    const segmentId = randomUUID();
    const write: DerivedWrite = {
      ...emptyWrite(1000, before?.derivedVersion ?? 0),
      newSegments: [
        {
          start: {
            segmentId,
            pairType: 'session',
            pairKey: '',
            startAt: Date.UTC(2026, 0, 2),
            startSeq: 1,
            startEventId: randomUUID(),
            parentSegmentId: null,
          },
          depth: 0,
          meta: null,
          end: null,
        },
      ],
      closedSegments: [
        {
          segmentId: randomUUID(),
          pairType: 'session',
          startAt: Date.UTC(2026, 0, 1),
          end: { endAt: Date.UTC(2026, 0, 1, 1), endEventId: randomUUID(), endReason: 'CLIENT', decidedAt: { at: Date.UTC(2026, 0, 1, 1), seq: 2 } },
        },
      ],
    };

    await expect(writeDerived(sql, write)).rejects.toThrow(/disagree with the engine state/);
    expect(await sql.query(`SELECT id FROM segments WHERE id = $1`, [segmentId])).toEqual([]);
    expect(((await loadHeadAndPending(sql, userId))?.head)?.derivedVersion).toBe(before?.derivedVersion);
  });
});

describe('storing client events', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('rejects a store after the counters moved', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-race')).id;
    const snapshot = await loadIntakeSnapshot(sql, [userId], []);
    const counters = snapshot.counters.get(userId)!;
    expect(counters.lastEventSeq).toBe(0);

    // Both writers read seq 0; the first one to write wins. The second one's
    // sequence numbers do not collide, so only the counters check stops it.
    await appendClientEvents(sql, [heartbeatRow(userId, 1)], [{ ...counters, lastEventSeq: 1, expectedSeq: 0 }]);
    const late = appendClientEvents(sql, [heartbeatRow(userId, 2), heartbeatRow(userId, 3)], [{ ...counters, lastEventSeq: 3, expectedSeq: 0 }]);

    await expect(late).rejects.toBeInstanceOf(CountersMovedError);
    const rows = await sql.query<{ seq: number }>(`SELECT seq FROM events WHERE user_id = $1 ORDER BY seq`, [userId]);
    expect(rows.map((row) => row.seq)).toEqual([1]);
    expect((await loadIntakeSnapshot(sql, [userId], [])).counters.get(userId)?.lastEventSeq).toBe(1);
  });

  it('rejects a store after a pair type was added', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-catalog')).id;
    const { count } = (await sql.query<{ count: number }>(`SELECT count(*)::int AS count FROM pair_types`))[0]!;

    // Roles decided from one pair type fewer than PostgreSQL holds.
    const stale = appendClientEvents(sql, [heartbeatRow(userId, 1)], [{ id: userId, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 }], null, count - 1);

    await expect(stale).rejects.toBeInstanceOf(PairTypesChangedError);
    expect(await sql.query(`SELECT seq FROM events WHERE user_id = $1`, [userId])).toEqual([]);
    expect((await loadIntakeSnapshot(sql, [userId], [])).counters.get(userId)?.lastEventSeq).toBe(0);

    await appendClientEvents(sql, [heartbeatRow(userId, 1)], [{ id: userId, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 }], null, count);
    expect(await sql.query(`SELECT seq FROM events WHERE user_id = $1`, [userId])).toEqual([{ seq: 1 }]);
  });

  it('retries a store after a concurrent writer', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-retry')).id;
    let raced = false;
    // Another writer, as after an expired lock, stores an event right after the service's snapshot.
    const racing = wrapSql(sql, {
      queryArrays: async (text, params) => {
        const rows = await sql.queryArrays(text, params);
        if (!raced && text.includes('x.existing')) {
          raced = true;
          await appendClientEvents(sql, [heartbeatRow(userId, 1)], [{ id: userId, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 }]);
        }
        return rows;
      },
    });
    const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
    const intake = new IntakeService({ ...options, sql: racing });

    const outcome = await intake.send({ userId, role: 'MEMBER' }, [
      { id: 'after-race', type: 'heartbeat', occurredAt: new Date(Date.UTC(2026, 0, 1, 0, 5)) },
    ]);

    expect(raced).toBe(true);
    expect(outcome.storedCount).toBe(1);
    const rows = await sql.query<{ seq: number; client_id: string }>(
      `SELECT seq, client_id FROM events WHERE user_id = $1 AND origin = 'CLIENT' ORDER BY seq`,
      [userId],
    );
    expect(rows.map((row) => row.seq)).toEqual([1, 2]);
    expect(rows[1]?.client_id).toBe('after-race');
  });

  it('writes no user when one moved', async () => {
    const sql = server.app.db.sql;
    const moved = (await server.createUser('store-moved-one')).id;
    const still = (await server.createUser('store-moved-other')).id;
    const earlier = heartbeatRow(moved, 1);
    await appendClientEvents(sql, [earlier], [{ id: moved, lastEventSeq: 1, maxOccurredAt: earlier.occurredAt, expectedSeq: 0 }]);

    // The counters of `still` match and would move alone, so the statement fails as a whole.
    const attempt = appendClientEvents(
      sql,
      [heartbeatRow(moved, 1), heartbeatRow(still, 1)],
      [
        { id: moved, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 },
        { id: still, lastEventSeq: 1, maxOccurredAt: null, expectedSeq: 0 },
      ],
    );

    await expect(attempt).rejects.toBeInstanceOf(CountersMovedError);
    const snapshot = await loadIntakeSnapshot(sql, [moved, still], []);
    expect(snapshot.counters.get(still)?.lastEventSeq).toBe(0);
    const rows = await sql.query(`SELECT 1 FROM events WHERE user_id = $1`, [still]);
    expect(rows).toHaveLength(0);
  });

  it('writes nothing for a stored id', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-unseen')).id;
    const first = heartbeatRow(userId, 1);
    await appendClientEvents(sql, [first], [{ id: userId, lastEventSeq: 1, maxOccurredAt: first.occurredAt, expectedSeq: 0 }]);

    const repeat = { ...heartbeatRow(userId, 2), clientId: first.clientId };
    // Inside a transaction, so that a failed statement would show. It would
    // abort the transaction, and PostgreSQL would log it as an error.
    await sql.transaction(async (tx) => {
      const attempt = appendClientEvents(
        tx,
        [repeat],
        [{ id: userId, lastEventSeq: 2, maxOccurredAt: repeat.occurredAt, expectedSeq: 1 }],
        [repeat.clientId!],
      );
      await expect(attempt).rejects.toBeInstanceOf(CountersMovedError);
      expect(await tx.query(`SELECT 1 AS usable`)).toEqual([{ usable: 1 }]);
    });
    const rows = await sql.query<{ seq: number }>(`SELECT seq FROM events WHERE user_id = $1 ORDER BY seq`, [userId]);
    expect(rows.map((row) => row.seq)).toEqual([1]);
    expect((await loadIntakeSnapshot(sql, [userId], [])).counters.get(userId)?.lastEventSeq).toBe(1);
  });

  describe('small requests with the counters from the lock', () => {
    /** Builds an intake service that counts its snapshot reads. */
    function recordingIntake(): { intake: IntakeService; snapshotReads: () => number } {
      const sql = server.app.db.sql;
      let reads = 0;
      const recording = wrapSql(sql, {
        queryArrays: async (text, params, options) => {
          if (text.includes('x.existing')) {
            reads += 1;
          }
          return sql.queryArrays(text, params, options);
        },
      });
      const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
      return { intake: new IntakeService({ ...options, sql: recording }), snapshotReads: () => reads };
    }

    const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 1, 9, minutes));

    it('store without a snapshot read', async () => {
      const userId = (await server.createUser('guess-plain')).id;
      const viewer = { userId, role: 'MEMBER' as const };
      await server.app.services.intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(0) }]);
      const { intake, snapshotReads } = recordingIntake();

      const outcome = await intake.send(viewer, [{ id: 'b', type: 'heartbeat', occurredAt: at(1) }]);

      expect(snapshotReads()).toBe(0);
      expect(outcome.results[0]?.duplicate).toBe(false);
      expect(outcome.results[0]?.event.seq).toBe(2);
    });

    it('report a repeat as duplicate', async () => {
      const userId = (await server.createUser('guess-repeat')).id;
      const viewer = { userId, role: 'MEMBER' as const };
      const first = await server.app.services.intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(0) }]);
      const { intake, snapshotReads } = recordingIntake();

      const outcome = await intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(0) }]);

      expect(snapshotReads()).toBe(1);
      expect(outcome.results[0]?.duplicate).toBe(true);
      expect(outcome.results[0]?.event.id).toBe(first.results[0]?.event.id);
      const rows = await server.app.db.sql.query(`SELECT 1 FROM events WHERE user_id = $1`, [userId]);
      expect(rows).toHaveLength(1);
    });

    it('reject an id with other content', async () => {
      const userId = (await server.createUser('guess-conflict')).id;
      const viewer = { userId, role: 'MEMBER' as const };
      await server.app.services.intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(0) }]);
      const { intake } = recordingIntake();

      const attempt = intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(5) }]);

      await expect(attempt).rejects.toMatchObject({ kind: 'BAD_USER_INPUT' });
      await expect(attempt).rejects.toThrow(/already used for an event with other content/);
    });

    it('read after another writer stored', async () => {
      const sql = server.app.db.sql;
      const userId = (await server.createUser('guess-stale')).id;
      const viewer = { userId, role: 'MEMBER' as const };
      await server.app.services.intake.send(viewer, [{ id: 'a', type: 'heartbeat', occurredAt: at(0) }]);
      // Stored as by a process whose lock expired, so the saved counters are now behind.
      const other = heartbeatRow(userId, 2);
      await appendClientEvents(sql, [other], [{ id: userId, lastEventSeq: 2, maxOccurredAt: other.occurredAt, expectedSeq: 1 }]);
      const { intake, snapshotReads } = recordingIntake();

      const outcome = await intake.send(viewer, [{ id: 'c', type: 'heartbeat', occurredAt: at(30) }]);

      expect(snapshotReads()).toBe(1);
      expect(outcome.results[0]?.event.seq).toBe(3);
      const rows = await sql.query<{ seq: number }>(`SELECT seq FROM events WHERE user_id = $1 AND origin = 'CLIENT' ORDER BY seq`, [userId]);
      expect(rows.map((row) => row.seq)).toEqual([1, 2, 3]);
    });
  });

  it('folds events stored earlier but not folded yet', async () => {
    // A session start is stored, as by a request that stopped before its
    // fold. The next request's write returns it as pending, so its end pairs with it.
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-pending-fold')).id;
    const start = { ...heartbeatRow(userId, 1), type: 'session_started', role: 'START' as const, pairType: 'session', pairKey: '' };
    await appendClientEvents(sql, [start], [{ id: userId, lastEventSeq: 1, maxOccurredAt: start.occurredAt, expectedSeq: 0 }]);

    const outcome = await server.app.services.intake.send({ userId, role: 'MEMBER' }, [
      { id: 'end', type: 'session_ended', occurredAt: new Date(start.occurredAt + 600_000) },
    ]);

    expect(outcome.results[0]?.event.seq).toBe(2);
    expect(outcome.results[0]?.closedSegments.map((segment) => segment.startEventId)).toEqual([start.id]);
    const segments = await sql.query<{ start_event_id: string; end_reason: string }>(
      `SELECT start_event_id, end_reason FROM segments WHERE user_id = $1`,
      [userId],
    );
    expect(segments).toEqual([{ start_event_id: start.id, end_reason: 'CLIENT' }]);
  });

  it('absorbs a late heartbeat', async () => {
    // Minutes before now, so no auto-close is due after the late heartbeat.
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-absorb')).id;
    const now = Date.now();
    const ago = (minutes: number): Date => new Date(now - minutes * 60_000);
    const viewer = { userId, role: 'MEMBER' as const };
    await server.app.services.intake.send(viewer, [
      { id: 'start', type: 'session_started', occurredAt: ago(10) },
      { id: 'beat', type: 'heartbeat', occurredAt: ago(2) },
    ]);
    const before = await sql.query(`SELECT id, start_at, end_at FROM segments WHERE user_id = $1`, [userId]);
    let transactions = 0;
    const counting = wrapSql(sql, {
      transaction: (work) => {
        transactions += 1;
        return sql.transaction(work);
      },
    });
    const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
    const deriver = new Deriver(counting, options.store, () => options.pairTypes.cachedList(), options.logger);
    const intake = new IntakeService({ ...options, sql: counting, deriver });

    const outcome = await intake.send(viewer, [{ id: 'late', type: 'heartbeat', occurredAt: ago(5) }]);

    expect(transactions).toBe(0);
    expect(outcome.results[0]?.event.seq).toBe(3);
    expect(await sql.query(`SELECT id, start_at, end_at FROM segments WHERE user_id = $1`, [userId])).toEqual(before);
    const head = await sql.query<{ applied_seq: number; last_event_seq: number }>(
      `SELECT applied_seq, last_event_seq FROM users WHERE id = $1`,
      [userId],
    );
    expect(head).toEqual([{ applied_seq: 3, last_event_seq: 3 }]);
  });

  it('rewinds without rereading its events', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-rewind-memory')).id;
    const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 1, 9, minutes));
    const viewer = { userId, role: 'MEMBER' as const };
    await server.app.services.intake.send(viewer, [
      { id: 'start', type: 'session_started', occurredAt: at(0) },
      { id: 'beat', type: 'heartbeat', occurredAt: at(10) },
    ]);
    // The rewind's read of the events to fold again, inside its transaction.
    const reread: string[][] = [];
    const recording = watchTransactionReads(sql, (text, rows) => {
      if (text.includes('LIMIT $7')) {
        const events = (rows[0]?.[5] as Array<{ id: string }> | null) ?? [];
        reread.push(events.map((event) => event.id));
      }
    });
    const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
    const deriver = new Deriver(recording, options.store, () => options.pairTypes.cachedList(), options.logger);
    const intake = new IntakeService({ ...options, sql: recording, deriver });

    // The late heartbeat sorts before the stored one, so the fold rewinds to it.
    const outcome = await intake.send(viewer, [
      { id: 'late', type: 'heartbeat', occurredAt: at(5) },
      { id: 'end', type: 'session_ended', occurredAt: at(20) },
    ]);

    const ids = await sql.query<{ id: string; client_id: string }>(
      `SELECT id, client_id FROM events WHERE user_id = $1 AND origin = 'CLIENT'`,
      [userId],
    );
    const idOf = new Map(ids.map((row) => [row.client_id, row.id]));
    expect(reread).toEqual([[idOf.get('beat')]]);
    expect(outcome.results[1]?.closedSegments.map((segment) => segment.startEventId)).toEqual([idOf.get('start')]);
    const segments = await sql.query<{ start_at: Date; end_at: Date; end_reason: string }>(
      `SELECT start_at, end_at, end_reason FROM segments WHERE user_id = $1`,
      [userId],
    );
    expect(segments).toEqual([{ start_at: at(0), end_at: at(20), end_reason: 'CLIENT' }]);
  });

  it('replays in pages', async () => {
    const sql = server.app.db.sql;
    const userId = (await server.createUser('store-replay-pages')).id;
    const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 2, 9, minutes));
    const viewer = { userId, role: 'MEMBER' as const };
    // Four sessions of six events and three heartbeats: 27 events. Pages of
    // five end inside sessions, with tasks open.
    const events = [];
    for (let session = 0; session < 4; session += 1) {
      const base = session * 30;
      events.push(
        { id: `s${session}`, type: 'session_started', occurredAt: at(base) },
        { id: `t${session}`, type: 'task_started', pairKey: `k${session}`, occurredAt: at(base + 1) },
        { id: `b${session}`, type: 'heartbeat', occurredAt: at(base + 2) },
        { id: `u${session}`, type: 'task_started', pairKey: 'shared', occurredAt: at(base + 3) },
        { id: `c${session}`, type: 'heartbeat', occurredAt: at(base + 10) },
        { id: `e${session}`, type: 'session_ended', occurredAt: at(base + 20) },
      );
    }
    events.push(...[0, 1, 2].map((index) => ({ id: `h${index}`, type: 'heartbeat', occurredAt: at(125 + index) })));
    await server.app.services.intake.send(viewer, events);

    const readSegments = () =>
      sql.query(
        `SELECT pair_type, pair_key, start_at, end_at, end_reason FROM segments WHERE user_id = $1 ORDER BY start_at, pair_type, pair_key`,
        [userId],
      );
    const readCorrections = () =>
      sql.query(
        `SELECT type, rule, occurred_at FROM events WHERE user_id = $1 AND origin = 'CORRECTION' ORDER BY occurred_at, type`,
        [userId],
      );
    const [segmentsBefore, correctionsBefore] = [await readSegments(), await readCorrections()];

    // The number of events each read of the replay returned, in order.
    const pages: number[] = [];
    const recording = watchTransactionReads(sql, (text, rows) => {
      if (text.includes('LIMIT $7')) {
        pages.push(((rows[0]?.[5] as unknown[] | null) ?? []).length);
      } else if (text.includes('LIMIT $5')) {
        pages.push(((rows[0]?.[0] as unknown[] | null) ?? []).length);
      }
    });
    const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
    const deriver = new Deriver(recording, options.store, () => options.pairTypes.cachedList(), options.logger, undefined, 5);
    const intake = new IntakeService({ ...options, sql: recording, deriver });

    await intake.replay(userId);

    expect(pages).toEqual([5, 5, 5, 5, 5, 2]);
    expect(segmentsBefore.length).toBeGreaterThan(8);
    expect(correctionsBefore.length).toBeGreaterThan(0);
    expect(await readSegments()).toEqual(segmentsBefore);
    expect(await readCorrections()).toEqual(correctionsBefore);
  });

  // Reads from another connection while the replay's transaction runs, which
  // PGlite, with its one connection, cannot serve.
  describeWithPostgres('full rebuild visibility', () => {
    it('full rebuild keeps rows until commit', async () => {
      const sql = server.app.db.sql;
      const userId = (await server.createUser('store-rebuild-visible')).id;
      const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 4, 9, minutes));
      const types = ['session_started', 'heartbeat', 'task_started', 'session_ended'];
      const events = Array.from({ length: 12 }, (_, index) => ({ id: `e${index}`, type: types[index % 4]!, occurredAt: at(index * 5) }));
      await server.app.services.intake.send({ userId, role: 'MEMBER' }, events);
      const readSegments = () =>
        sql.query(`SELECT pair_type, start_at, end_at, end_reason FROM segments WHERE user_id = $1 ORDER BY start_at, pair_type`, [userId]);
      const segmentsBefore = await readSegments();

      // What other connections see when the replay's transaction makes its first read.
      let visibleDuring: number | null = null;
      const watching = watchTransactionReads(sql, async () => {
        if (visibleDuring === null) {
          const [row] = await sql.query<{ count: number }>(`SELECT count(*)::int AS count FROM segments WHERE user_id = $1`, [userId]);
          visibleDuring = row!.count;
        }
      });
      const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
      const deriver = new Deriver(watching, options.store, () => options.pairTypes.cachedList(), options.logger);
      const intake = new IntakeService({ ...options, sql: watching, deriver });

      await intake.rebuild(userId, true);

      expect(segmentsBefore.length).toBe(6);
      expect(visibleDuring).toBe(segmentsBefore.length);
      expect(await readSegments()).toEqual(segmentsBefore);
    });
  });

  describeWithPostgres('replays and account changes', () => {
    it('replay pages leave the user row free', async () => {
      // An account change updates the user's row. If a replay's page writes
      // locked it, the change would wait for the whole replay.
      const sql = server.app.db.sql;
      const userId = (await server.createUser('store-replay-row')).id;
      const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 3, 9, minutes));
      // Three sessions of a start, two heartbeats and an end.
      const types = ['session_started', 'heartbeat', 'heartbeat', 'session_ended'];
      const events = Array.from({ length: 12 }, (_, index) => ({ id: `e${index}`, type: types[index % 4]!, occurredAt: at(index * 5) }));
      await server.app.services.intake.send({ userId, role: 'MEMBER' }, events);
      const segmentsBefore = await sql.query(`SELECT start_at, end_at, end_reason FROM segments WHERE user_id = $1 ORDER BY start_at`, [userId]);

      const other = new pg.Client({ connectionString: server.databaseUrl! });
      await other.connect();
      let lockProbe: unknown = 'not run';
      let reads = 0;
      const pausing = watchTransactionReads(sql, async (text) => {
        // The second page read comes after the first page's write.
        if (text.includes('LIMIT $5') && ++reads === 2) {
          lockProbe = await other
            .query('SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE NOWAIT', [userId])
            .then(() => 'free', (error: { code?: string }) => error.code);
        }
      });
      const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
      const deriver = new Deriver(pausing, options.store, () => options.pairTypes.cachedList(), options.logger, undefined, 3);
      const intake = new IntakeService({ ...options, sql: pausing, deriver });

      try {
        await intake.replay(userId);
      } finally {
        await other.end();
      }

      expect(reads).toBeGreaterThanOrEqual(2);
      expect(lockProbe).toBe('free');
      expect(await sql.query(`SELECT start_at, end_at, end_reason FROM segments WHERE user_id = $1 ORDER BY start_at`, [userId])).toEqual(segmentsBefore);
    });
  });

  // These two simulate a second writer of the user, which needs a second
  // connection. NOTE: on PGlite, which has one, both hang until the test
  // timeout. The exact wait was not traced further.
  describeWithPostgres('races between writers', () => {
    it('reports a raced rewind as LOCK_LOST', async () => {
      // Another writer, as after an expired lock, folds between this request's
      // store and its rewind, so its rows no longer match the head read with the
      // store. Here an open segment starts after the last activity before the
      // rewind position, which no state at that position can contain.
      const sql = server.app.db.sql;
      const userId = (await server.createUser('store-rewind-race')).id;
      const at = (minutes: number): Date => new Date(Date.UTC(2026, 0, 1, 9, minutes));
      const viewer = { userId, role: 'MEMBER' as const };
      await server.app.services.intake.send(viewer, [
        { id: 'start', type: 'session_started', occurredAt: at(0) },
        { id: 'beat', type: 'heartbeat', occurredAt: at(10) },
      ]);
      const racing = wrapSql(sql, {
        transaction: (work) =>
          sql.transaction(async (tx) => {
            await sql.query(
              `INSERT INTO segments (id, user_id, pair_type, pair_key, start_at, start_seq, start_event_id)
               VALUES (gen_random_uuid(), $1, 'task', 'other', $2, 99, gen_random_uuid())`,
              [userId, at(4)],
            );
            await sql.query(`UPDATE users SET derived_version = derived_version + 1 WHERE id = $1`, [userId]);
            return work(tx);
          }),
      });
      const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
      const deriver = new Deriver(racing, options.store, () => options.pairTypes.cachedList(), options.logger);
      const intake = new IntakeService({ ...options, sql: racing, deriver });

      const attempt = intake.send(viewer, [{ id: 'late', type: 'heartbeat', occurredAt: at(5) }]);

      await expect(attempt).rejects.toMatchObject({ kind: 'SERVICE_UNAVAILABLE', reason: 'LOCK_LOST' });
    });

    it('reports a deadlocked derived write as a lost lock', async () => {
      // PostgreSQL breaks a deadlock between two writers of one user, one of
      // them past its lock, by failing one statement with SQLSTATE 40P01.
      const sql = server.app.db.sql;
      const userId = (await server.createUser('store-deadlock')).id;
      const deadlocking = wrapSql(sql, {
        query: async (text, params) => {
          if (text.startsWith('WITH head AS')) {
            throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
          }
          return sql.query(text, params);
        },
      });
      const options = (server.app.services.intake as unknown as { options: IntakeOptions }).options;
      const deriver = new Deriver(deadlocking, options.store, () => options.pairTypes.cachedList(), options.logger);
      const intake = new IntakeService({ ...options, sql: deadlocking, deriver });

      const attempt = intake.send({ userId, role: 'MEMBER' }, [{ id: 'dl', type: 'heartbeat', occurredAt: new Date(Date.UTC(2026, 0, 1)) }]);

      await expect(attempt).rejects.toMatchObject({ kind: 'SERVICE_UNAVAILABLE', reason: 'LOCK_LOST' });
    });
  });
});
