/**
 * The head update that ends every derived write checks the lock fence and
 * the derived version read at the start of the fold: a stale writer writes
 * nothing and gets LOCK_LOST instead of a constraint error. The fold's head
 * and pending events come from one snapshot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { loadDerivedHead, loadHeadAndPending, writeDerived, type DerivedWrite } from '../../src/storage/postgres/intake-store.js';
import { startTestServer, type TestServer } from '../support/app.js';

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
    const head = await loadDerivedHead(server.app.db.sql, userId);
    const version = await server.app.db.sql.transaction((tx) =>
      writeDerived(tx, emptyWrite(10, head?.derivedVersion ?? -1)),
    );
    expect(version).toBe((head?.derivedVersion ?? 0) + 1);
  });

  it.each([
    ['a stale version', 20, -1],
    ['an older fence', 5, null],
  ])('rejects %s', async (_name, fence, version) => {
    const before = await loadDerivedHead(server.app.db.sql, userId);
    const expected = version ?? before?.derivedVersion ?? 0;
    const attempt = server.app.db.sql.transaction((tx) => writeDerived(tx, emptyWrite(fence, expected)));

    await expect(attempt).rejects.toBeInstanceOf(DomainError);
    await expect(attempt).rejects.toMatchObject({ reason: 'LOCK_LOST' });
    const after = await loadDerivedHead(server.app.db.sql, userId);
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
});
