/** Field resolvers of the object types whose storage shape differs from the schema. */
import type {
  EventResolvers,
  PairTypeResolvers,
  ReportGroupResolvers,
  SegmentResolvers,
  UserResolvers,
} from '../generated/types.js';
import { requireRole } from '../../auth/viewer.js';
import { requireViewer, type GraphQLContext } from '../context.js';

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
  flags: (event) => {
    const flags = [...event.intakeFlags];
    if (event.orphan) {
      flags.push('ORPHAN_END');
    }
    return flags as never;
  },
};

export const Segment: SegmentResolvers = {
  user: (segment, _args, context) => loadUser(context, segment.userId),
  start: (segment) => segment.startAt,
  end: (segment) => segment.endAt,
  open: (segment) => segment.endAt === null,
  seconds: (segment, _args, context) => {
    const end = segment.endAt?.getTime() ?? context.services.clock.now();
    return Math.max(0, end - segment.startAt.getTime()) / 1000;
  },
  startEvent: async (segment, _args, context) => {
    const event = await context.loaders.events.load(segment.startEventId);
    if (event === null) {
      throw new Error(`Start event ${segment.startEventId} of segment ${segment.id} does not exist.`);
    }
    return event;
  },
  endEvent: async (segment, _args, context) =>
    segment.endEventId === null ? null : context.loaders.events.load(segment.endEventId),
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

export const ReportGroup: ReportGroupResolvers = {
  user: (group, _args, context) => loadUser(context, group.userId),
};
