/**
 * The head update that ends every derived write checks the lock fence and
 * the derived version read at the start of the fold: a stale writer writes
 * nothing and gets LOCK_LOST instead of a constraint error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { loadDerivedHead, writeDerived, type DerivedWrite } from '../../src/storage/postgres/intake-store.js';
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
});
