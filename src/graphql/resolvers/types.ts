/**
 * Field resolvers of the object types whose storage shape differs from the
 * schema, and of the fields that charge the reply budget of a query
 * (MAX_REPLY_BYTES): `meta`, the events and segments of pages, and the
 * intervals and buckets of reports.
 */
import type { GraphQLResolveInfo } from 'graphql';

import type {
  EventConnectionResolvers,
  EventResolvers,
  PairTypeResolvers,
  ReportGroupResolvers,
  ReportResolvers,
  SegmentConnectionResolvers,
  SegmentResolvers,
  UserResolvers,
} from '../generated/types.js';
import { arrivalOf } from '../../storage/postgres/records.js';
import { requireRole } from '../../auth/viewer.js';
import { requireViewer, type GraphQLContext } from '../context.js';
import { isQuery } from '../reply-budget.js';
import { selectsPath } from '../selection.js';

/**
 * Loads an event of a segment, with `meta` only when the field selects it,
 * and then in a query within the request's read budget.
 */
function loadEvent(context: GraphQLContext, info: GraphQLResolveInfo, id: string) {
  if (!selectsPath(info, ['meta'])) {
    return context.loaders.eventsWithoutMeta.load(id);
  }
  return isQuery(info) ? context.loaders.budgetedEvents.load(id) : context.loaders.events.load(id);
}

async function loadUser(context: GraphQLContext, id: string) {
  const user = await context.loaders.users.load(id);
  if (user === null) {
    throw new Error(`User ${id} referenced by a stored row does not exist.`);
  }
  return user;
}

export const User: UserResolvers = {
  createdAt: (user) => user.createdAt,
  disabled: (user) => user.disabledAt !== null,
};

export const Event: EventResolvers = {
  user: (event, _args, context) => loadUser(context, event.userId),
  pairKey: (event) => event.pairKey,
  arrival: (event) => arrivalOf(event),
  flags: (event) => {
    const flags = [...event.intakeFlags];
    if (event.orphan) {
      flags.push('ORPHAN_END');
    }
    return flags as never;
  },
  meta: (event, _args, context, info) => (context.replyBudget.chargeMeta(info, event.meta) ? event.meta : null),
};

// Once the budget is exceeded, pages resolve empty, because the plugin
// replaces the whole reply with the error.
export const EventConnection: EventConnectionResolvers = {
  edges: (page, _args, context, info) => (context.replyBudget.chargeObjects(info, page.edges.length) ? page.edges : []),
  nodes: (page, _args, context, info) => (context.replyBudget.chargeObjects(info, page.nodes.length) ? page.nodes : []),
};

export const SegmentConnection: SegmentConnectionResolvers = {
  edges: (page, _args, context, info) => (context.replyBudget.chargeObjects(info, page.edges.length) ? page.edges : []),
  nodes: (page, _args, context, info) => (context.replyBudget.chargeObjects(info, page.nodes.length) ? page.nodes : []),
};

export const Segment: SegmentResolvers = {
  user: (segment, _args, context) => loadUser(context, segment.userId),
  start: (segment) => segment.startAt,
  end: (segment) => segment.endAt,
  open: (segment) => segment.endAt === null,
  seconds: (segment, _args, context) => {
    // An open segment runs to the request's one now, as in its reports.
    const end = segment.endAt?.getTime() ?? (context.reportState.now ??= context.services.clock.now());
    return Math.max(0, end - segment.startAt.getTime()) / 1000;
  },
  // Once the budget is exceeded, events that select `meta` in a query fail
  // to load. The others still resolve, because `startEvent` is non-null.
  // The plugin replaces the reply either way.
  startEvent: async (segment, _args, context, info) => {
    context.replyBudget.chargeObjects(info, 1);
    const event = await loadEvent(context, info, segment.startEventId);
    if (event === null) {
      throw new Error(`Start event ${segment.startEventId} of segment ${segment.id} does not exist.`);
    }
    return event;
  },
  endEvent: async (segment, _args, context, info) => {
    if (segment.endEventId === null) {
      return null;
    }
    context.replyBudget.chargeObjects(info, 1);
    return loadEvent(context, info, segment.endEventId);
  },
  meta: (segment, _args, context, info) => (context.replyBudget.chargeMeta(info, segment.meta) ? segment.meta : null),
};

export const PairType: PairTypeResolvers = {
  // Pair type names are unique, so the name identifies one in a client cache.
  id: (pairType) => pairType.name,
  pendingReplays: async (pairType, _args, context) => {
    requireRole(requireViewer(context), 'ANALYST', 'ADMIN');
    return (await context.loaders.replayStatus.load(pairType.name)).queuedUsers;
  },
  recomputing: async (pairType, _args, context) => {
    requireRole(requireViewer(context), 'ANALYST', 'ADMIN');
    const status = await context.loaders.replayStatus.load(pairType.name);
    return status.awaitingQueue || status.queuedUsers > 0;
  },
};

// Aliases of one report repeat its intervals, up to REPORT_MAX_INTERVALS each.
export const Report: ReportResolvers = {
  intervals: (report, _args, context, info) =>
    context.replyBudget.chargeIntervals(info, report.intervals.length) ? report.intervals : [],
  buckets: (report, _args, context, info) =>
    report.buckets === null || context.replyBudget.chargeIntervals(info, report.buckets.length) ? report.buckets : [],
};

export const ReportGroup: ReportGroupResolvers = {
  user: (group, _args, context) => loadUser(context, group.userId),
  intervals: (group, _args, context, info) =>
    context.replyBudget.chargeIntervals(info, group.intervals.length) ? group.intervals : [],
  buckets: (group, _args, context, info) =>
    group.buckets === null || context.replyBudget.chargeIntervals(info, group.buckets.length) ? group.buckets : [],
};
