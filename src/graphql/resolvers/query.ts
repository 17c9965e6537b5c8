import type { GraphQLResolveInfo } from 'graphql';

import { assertCanReadFor, requireRole, canReadAll } from '../../auth/viewer.js';
import { toUserRecord } from '../../services/users.js';
import { DomainError, badInput } from '../../domain/errors.js';
import { USER_ID_HINT, isUuid } from '../../domain/user-id.js';
import { preferenceId, reportId, withCacheIds } from '../cache-ids.js';
import { requireViewer, type GraphQLContext } from '../context.js';
import { selectsPath } from '../selection.js';
import type { QueryResolvers } from '../generated/types.js';
import { firstCharacters } from '../../domain/storable.js';

/**
 * Returns whether a page field selects the `meta` of its events or segments.
 * Page reads leave the column out otherwise, because its values can be large.
 */
function selectsNodeMeta(info: GraphQLResolveInfo): boolean {
  return selectsPath(info, ['nodes', 'meta']) || selectsPath(info, ['edges', 'node', 'meta']);
}

/**
 * Settles the due users that a read shows, once per request and scope, so
 * that segments and reports show auto-closes whose deadline has passed.
 * `users` are the users that the read reads after its arguments were
 * validated, or null for every user (see `IntakeService.settleDue`). The
 * read also waits for the settles that the request's other reads started.
 */
function settleBeforeRead(context: GraphQLContext, users: readonly string[] | null): Promise<void> {
  const scope = users === null ? null : [...new Set(users.map((id) => id.toLowerCase()))].sort();
  const key = scope === null ? '*' : scope.join(',');
  context.dueSettled ??= new Map();
  if (!context.dueSettled.has(key)) {
    context.dueSettled.set(key, context.services.intake.settleDue(scope));
  }
  // Wait for every settle of the request, not only this scope's. A settle
  // skips a user whose lock stays held past USER_LOCK_WAIT_MS, such as by
  // another read's settle, so this scope's settle can return before
  // another read's settle of a user it shows.
  return Promise.all(context.dueSettled.values()).then(() => undefined);
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
    const requested = args.userId ?? viewer.userId;
    if (!isUuid(requested)) {
      throw badInput('INVALID_USER_ID', `userId ${JSON.stringify(firstCharacters(requested, 64))} is not a user id (a UUID). ${USER_ID_HINT}`, {
        userId: firstCharacters(requested, 64),
      });
    }
    const userId = requested.toLowerCase();
    assertCanReadFor(viewer, userId);
    const preferences = await context.services.pairTypes.preferences(userId);
    return preferences.map((preference) => ({ id: preferenceId(userId, preference.pairType), userId, ...preference }));
  },

  events: async (_parent, args, context, info) => {
    const viewer = requireViewer(context);
    const settle = (users: readonly string[] | null) => settleBeforeRead(context, users);
    return context.services.queries.events(viewer, pageArgsOf(args), selectsNodeMeta(info), context.replyBudget, settle);
  },

  segments: async (_parent, args, context, info) => {
    const viewer = requireViewer(context);
    const settle = (users: readonly string[] | null) => settleBeforeRead(context, users);
    return context.services.queries.segments(viewer, pageArgsOf(args), selectsNodeMeta(info), context.replyBudget, settle);
  },

  report: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    const settle = (users: readonly string[] | null) => settleBeforeRead(context, users);
    const result = await context.services.reports.run(viewer, {
      expression: args.expression,
      window: args.window,
      groupBy: args.groupBy ?? null,
      groupUsers: args.groupUsers ?? null,
      bucket: args.bucket ?? null,
      canReadAll: canReadAll(viewer),
    }, context.reportState, settle);
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
