/**
 * Per-request resolver context: the authenticated viewer or the reason there
 * is none, the request id for logs, the services and per-request loaders.
 */
import type { FastifyBaseLogger } from 'fastify';

import type { Viewer } from '../auth/viewer.js';
import { DomainError } from '../domain/errors.js';
import type { Services } from '../services/index.js';
import type { SharedReportState } from '../services/reports.js';
import type { EventRecord, UserRecord } from '../storage/postgres/records.js';
import { createBatchLoader, type BatchLoader } from './batch-loader.js';
import type { ReplyBudget } from './reply-budget.js';

/** The replays after changes of one pair type. */
export interface PairTypeReplayStatus {
  /** Users queued and not replayed yet. */
  queuedUsers: number;
  /** True while a change waits for its users to be queued. */
  awaitingQueue: boolean;
}

export interface GraphQLContext {
  viewer: Viewer | null;
  /** Set when the request carried a token that failed verification. */
  authError: DomainError | null;
  requestId: string;
  clientAddress: string;
  logger: FastifyBaseLogger;
  services: Services;
  loaders: {
    users: BatchLoader<string, UserRecord | null>;
    /** Events with `meta`, read outside the read budget, for mutation replies. */
    events: BatchLoader<string, EventRecord | null>;
    /** Events with `meta`, read within the request's read budget (MAX_REPLY_BYTES), for query replies. */
    budgetedEvents: BatchLoader<string, EventRecord | null>;
    /** Events whose `meta` is null, for fields that do not select it. */
    eventsWithoutMeta: BatchLoader<string, EventRecord | null>;
    /** How far the replays after changes of a pair type have come, by its name. */
    replayStatus: BatchLoader<string, PairTypeReplayStatus>;
  };
  /** Bucket rows spent and the instant of "now", shared by the reports of this request. */
  reportState: SharedReportState;
  /** The budget of reply bytes for the events and segments of this request (MAX_REPLY_BYTES). */
  replyBudget: ReplyBudget;
  /**
   * The settlings of due users that the reads of this request wait for, once
   * started, by their scope: the sorted user ids, or "*" for every user.
   */
  dueSettled?: Map<string, Promise<void>>;
}

export function createContext(input: Omit<GraphQLContext, 'loaders' | 'reportState'>): GraphQLContext {
  const users = createBatchLoader<string, UserRecord | null>(async (ids) => {
    const rows = await input.services.users.findByIds(ids);
    const byId = new Map(rows.map((row) => [row.id, row]));
    return ids.map((id) => byId.get(id) ?? null);
  });
  const eventsLoader = (withMeta: boolean, budget: ReplyBudget | null) =>
    createBatchLoader<string, EventRecord | null>(async (ids) => {
      const rows = await input.services.queries.eventsByIds(ids, withMeta, budget);
      const byId = new Map(rows.map((row) => [row.id, row]));
      return ids.map((id) => byId.get(id) ?? null);
    });
  const replayStatus = createBatchLoader<string, PairTypeReplayStatus>(async (names) => {
    const status = await input.services.pairTypes.replayStatus();
    return names.map((name) => ({ queuedUsers: status.queued.get(name) ?? 0, awaitingQueue: status.awaitingQueue.has(name) }));
  });
  return {
    ...input,
    loaders: {
      users,
      events: eventsLoader(true, null),
      budgetedEvents: eventsLoader(true, input.replyBudget),
      eventsWithoutMeta: eventsLoader(false, null),
      replayStatus,
    },
    reportState: { bucketRows: 0 },
  };
}

/** Returns the viewer or throws UNAUTHENTICATED. */
export function requireViewer(context: GraphQLContext): Viewer {
  if (context.authError !== null) {
    throw context.authError;
  }
  if (context.viewer === null) {
    throw new DomainError('UNAUTHENTICATED', 'MISSING_TOKEN', 'Authentication required: send a bearer token from `login`.');
  }
  return context.viewer;
}
