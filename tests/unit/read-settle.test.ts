/**
 * Each read of a request waits for the settles that the request's reads
 * started. A settle that finds a user locked for its whole wait skips it,
 * so a read whose own settle skipped a user that another read of the
 * request is settling would otherwise show that user before its auto-close.
 */
import type { GraphQLResolveInfo } from 'graphql';
import { expect, it, vi } from 'vitest';

import type { GraphQLContext } from '../../src/graphql/context.js';
import { Query } from '../../src/graphql/resolvers/query.js';

const NAMED_USER = '00000000-0000-4000-8000-000000000001';
const INFO = { fieldNodes: [], fragments: {}, variableValues: {} } as unknown as GraphQLResolveInfo;

it('read waits for settle of named user', async () => {
  let finishNamedSettle = (): void => {};
  const namedSettle = new Promise<void>((resolve) => {
    finishNamedSettle = resolve;
  });
  // The settle of every user returns at once, as when it skips the named
  // user because the other settle holds that user's lock.
  const settleDue = vi.fn((scope: readonly string[] | null) => (scope === null ? Promise.resolve() : namedSettle));
  // Like the query service, the mock reads once the settle it runs before
  // the read has finished.
  const read = vi.fn();
  const events = vi.fn(async (_viewer: unknown, args: { filter: { users?: string[] } | null }, _withMeta: boolean, _budget: unknown, beforeRead: (users: readonly string[] | null) => Promise<void>) => {
    await beforeRead(args.filter?.users ?? null);
    read();
    return { nodes: [] };
  });
  const context = {
    viewer: { userId: '00000000-0000-4000-8000-0000000000ad', role: 'ADMIN' },
    authError: null,
    services: { intake: { settleDue }, queries: { events } },
    replyBudget: {},
  } as unknown as GraphQLContext;
  const resolve = Query.events as unknown as (parent: unknown, args: unknown, context: GraphQLContext, info: GraphQLResolveInfo) => Promise<unknown>;

  const namedRead = resolve({}, { filter: { users: [NAMED_USER] } }, context, INFO);
  const everyoneRead = resolve({}, {}, context, INFO);
  await new Promise((done) => setImmediate(done));

  expect(settleDue).toHaveBeenCalledWith([NAMED_USER]);
  expect(settleDue).toHaveBeenCalledWith(null);
  expect(read).not.toHaveBeenCalled();

  finishNamedSettle();
  await Promise.all([namedRead, everyoneRead]);
  expect(read).toHaveBeenCalledTimes(2);
});
