import type { GraphQLResolveInfo } from 'graphql';

import { assertCanReadFor, requireRole, canReadAll } from '../../auth/viewer.js';
import { toUserRecord } from '../../services/users.js';
import { DomainError, badInput } from '../../domain/errors.js';
import { isUuid } from '../../domain/user-id.js';
import { preferenceId, reportId, withCacheIds } from '../cache-ids.js';
import { requireViewer, type GraphQLContext } from '../context.js';
import { selectsPath } from '../selection.js';
import type { Viewer } from '../../auth/viewer.js';
import type { QueryResolvers, SetExpression } from '../generated/types.js';

/**
 * Returns whether a page field selects the `meta` of its events or segments.
 * Page reads leave the column out otherwise, because its values can be large.
 */
function selectsNodeMeta(info: GraphQLResolveInfo): boolean {
  return selectsPath(info, ['nodes', 'meta']) || selectsPath(info, ['edges', 'node', 'meta']);
}

/**
 * Settles the due users a read may show, once per request and scope, so
 * that segments and reports show auto-closes whose deadline has passed. A
 * read that names its users settles those. Without names, a viewer who reads
 * everyone settles the users due first, up to the limit of `settleDue`, so
 * a user due later may be left out. The read also waits for the settles
 * that the request's other reads started.
 */
function settleBeforeRead(context: GraphQLContext, viewer: Viewer, namedUsers: readonly string[] | null = null): Promise<void> {
  let scope: string[] | null;
  if (!canReadAll(viewer)) {
    scope = [viewer.userId];
  } else if (namedUsers !== null && namedUsers.length > 0) {
    // Access and the UUID format are checked by the read itself, which runs after.
    scope = [...new Set(namedUsers.filter(isUuid).map((id) => id.toLowerCase()))].sort();
  } else {
    scope = null;
  }
  const key = scope === null ? '*' : scope.join(',');
  context.dueSettled ??= new Map();
  if (!context.dueSettled.has(key)) {
    context.dueSettled.set(key, context.services.intake.settleDue(scope));
  }
  // Wait for every settle of the request, not only this scope's. A settle
  // skips a user whose lock another settle holds, so this scope's settle
  // can return before another read's settle of a user it shows.
  return Promise.all(context.dueSettled.values()).then(() => undefined);
}

/**
 * Returns the users that the segments leaves of a report expression name,
 * or null when a leaf names none and so selects every user the viewer reads.
 * The walk uses an explicit stack, because the report's depth limit is
 * checked after this runs.
 */
function usersNamedByLeaves(expression: SetExpression): string[] | null {
  const users: string[] = [];
  const stack: SetExpression[] = [expression];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    if (node.segments !== undefined && node.segments !== null) {
      const named = node.segments.users;
      if (named === undefined || named === null) {
        return null;
      }
      // A spread would pass each id as a call argument, and a long list, such
      // as 200,000 ids, overflows the stack. The report checks lengths later.
      for (const userId of named) {
        users.push(userId);
      }
    }
    for (const operand of [...(node.union ?? []), ...(node.intersect ?? [])]) {
      stack.push(operand);
    }
    if (node.complement !== undefined && node.complement !== null) {
      stack.push(node.complement);
    }
    if (node.difference !== undefined && node.difference !== null) {
      stack.push(node.difference.from, node.difference.subtract);
    }
  }
  return users;
}

export const Query: QueryResolvers = {
  me: async (_parent, _args, context) => {
    const viewer = requireViewer(context);
    const user = await context.services.users.findById(viewer.userId);
    if (user === null) {
      throw new DomainError('UNAUTHENTICATED', 'USER_NOT_FOUND', 'The token belongs to a user that no longer exists.');
    }
    return toUserRecord(user);
  },

  users: async (_parent, _args, context) => {
    requireRole(requireViewer(context), 'ANALYST', 'ADMIN');
    return context.services.users.list();
  },

  pairTypes: async (_parent, _args, context) => {
    requireViewer(context);
    return context.services.pairTypes.list();
  },

  autoClosePreferences: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    const userId = (args.userId ?? viewer.userId).toLowerCase();
    if (!isUuid(userId)) {
      throw badInput('INVALID_USER_ID', `userId ${JSON.stringify(userId.slice(0, 64))} is not a user id (a UUID).`, {
        userId: userId.slice(0, 64),
      });
    }
    assertCanReadFor(viewer, userId);
    const preferences = await context.services.pairTypes.preferences(userId);
    return preferences.map((preference) => ({ id: preferenceId(userId, preference.pairType), userId, ...preference }));
  },

  events: async (_parent, args, context, info) => {
    const viewer = requireViewer(context);
    await settleBeforeRead(context, viewer, args.filter?.users ?? null);
    return context.services.queries.events(viewer, pageArgsOf(args), selectsNodeMeta(info), context.replyBudget);
  },

  segments: async (_parent, args, context, info) => {
    const viewer = requireViewer(context);
    await settleBeforeRead(context, viewer, args.filter?.users ?? null);
    return context.services.queries.segments(viewer, pageArgsOf(args), selectsNodeMeta(info), context.replyBudget);
  },

  report: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    await settleBeforeRead(context, viewer, usersNamedByLeaves(args.expression));
    const result = await context.services.reports.run(viewer, {
      expression: args.expression,
      window: args.window,
      groupBy: args.groupBy ?? null,
      groupUsers: args.groupUsers ?? null,
      bucket: args.bucket ?? null,
      canReadAll: canReadAll(viewer),
    }, context.reportState);
    return withCacheIds(result, reportId(viewer.userId, args));
  },
};

/** Returns the filter, window and paging arguments of a page query with null for each one omitted. */
function pageArgsOf<F>(args: {
  filter?: F | null;
  window?: { start: Date; end: Date } | null;
  first?: number | null;
  after?: string | null;
  last?: number | null;
  before?: string | null;
}) {
  return {
    filter: args.filter ?? null,
    window: args.window ?? null,
    first: args.first ?? null,
    after: args.after ?? null,
    last: args.last ?? null,
    before: args.before ?? null,
  };
}
