import { assertCanActFor, requireRole } from '../../auth/viewer.js';
import { DomainError } from '../../domain/errors.js';
import { isUuid } from '../../domain/user-id.js';
import type { InvalidItem } from '../../services/intake.js';
import { preferenceId } from '../cache-ids.js';
import { requireViewer } from '../context.js';
import type { MutationResolvers } from '../generated/types.js';

/**
 * Returns the error of a rejected batch of one event with that event's own
 * reason, such as IDEMPOTENCY_CONFLICT, in place of INVALID_EVENTS, which
 * speaks of a batch that `sendEvent` does not have. Other errors pass as they are.
 */
function asSingleEventError(error: unknown): unknown {
  if (!(error instanceof DomainError) || error.reason !== 'INVALID_EVENTS') {
    return error;
  }
  const items = (error.details.invalidItems ?? []) as InvalidItem[];
  const reasons = new Set(items.map((item) => item.reason));
  if (reasons.size !== 1) {
    return error;
  }
  const messages = items.map((item) => item.message).join('; ');
  return new DomainError(error.kind, items[0]!.reason, `The event is invalid, so nothing was stored: ${messages}.`, error.details);
}

export const Mutation: MutationResolvers = {
  login: async (_parent, args, context) => {
    return context.services.users.login(args.username, args.password, context.clientAddress);
  },

  renewToken: async (_parent, _args, context) => {
    return context.services.users.renew(requireViewer(context));
  },

  sendEvent: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    const outcome = await context.services.intake
      .send(viewer, [args.event], { requestId: context.requestId })
      .catch((error: unknown) => {
        throw asSingleEventError(error);
      });
    const result = outcome.results[0];
    if (result === undefined) {
      throw new Error('Intake returned no result for a single event.');
    }
    return result;
  },

  sendEvents: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    return context.services.intake.send(viewer, args.events, { requestId: context.requestId });
  },

  definePairType: async (_parent, args, context) => {
    requireRole(requireViewer(context), 'ADMIN');
    return context.services.pairTypes.define(args.input);
  },

  setAutoClosePreference: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    const requested = args.input.userId ?? viewer.userId;
    // User ids are UUIDs; one spelling keeps the Redis lock key the same as intake's.
    const userId = requested.toLowerCase();
    assertCanActFor(viewer, userId);
    const policy = { timeoutSeconds: args.input.timeoutSeconds, endAt: args.input.endAt };
    // Checked before the lock, because taking a user's lock creates the
    // user's fence counter in Redis, which stays for USER_STATE_IDLE_TTL_SECONDS.
    // An id that is not a UUID is named in the error as the client spelled it.
    await context.services.pairTypes.checkPreference(isUuid(userId) ? userId : requested, args.input.pairType, policy);
    const store = () => context.services.pairTypes.storePreference(userId, args.input.pairType, policy);
    // Derived rows are a function of the preferences, so every call recomputes
    // the user's whole history under the user's lock, even with the policy
    // unchanged: a retry after a failed replay then completes it.
    await context.services.intake.replay(userId, store);
    return { id: preferenceId(userId, args.input.pairType), userId, pairType: args.input.pairType, ...policy };
  },

  updateUser: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    requireRole(viewer, 'ADMIN');
    return context.services.users.update(viewer, args.input);
  },

  changePassword: async (_parent, args, context) => {
    const viewer = requireViewer(context);
    return context.services.users.changePassword(viewer, args.currentPassword, args.newPassword, context.clientAddress);
  },

  createUser: async (_parent, args, context) => {
    requireRole(requireViewer(context), 'ADMIN');
    return context.services.users.create(args.input);
  },
};
