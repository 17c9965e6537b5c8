/**
 * Delivery of one batch of a user's events through `sendEvents`, with the
 * handling of a batch the server rejects as invalid.
 *
 * The server validates a whole batch before storing any of it. When it
 * rejects the batch with `BAD_USER_INPUT`, it lists the invalid items as
 * `extensions.invalidItems: [{ index, reason, message }]`. Those items are
 * reported and the rest is sent again, in the same order. When the rejection
 * lists no items (for example a GraphQL input coercion error), the batch is
 * split in halves until the invalid event is alone, so one bad event does not
 * block the others. A `LIMIT_EXCEEDED` rejection cuts the batch to its
 * numeric `extensions.max`, or halves it when no maximum is stated.
 */

import { chunk, type PendingEvent } from './batching.js';
import { GraphQLRequestError, type SendEventsSummary } from './graphql-client.js';
import type { EventInput, SourceRef } from './types.js';

export type SendEventsFn = (events: readonly EventInput[]) => Promise<SendEventsSummary>;

/** An event the server rejected, with the line it came from. */
export interface RejectedEvent {
  source: SourceRef;
  eventId: string | null;
  /** Machine-readable reason from the server, or the error code when it gave none. */
  reason: string;
  message: string;
}

export interface DeliveryResult {
  /**
   * Events of the batch that reached the server, each counted once: the ones
   * it accepted (stored or duplicate) and the ones it rejected.
   */
  sent: number;
  stored: number;
  duplicates: number;
  rejected: RejectedEvent[];
  /** `sendEvents` requests made, the rejected ones included. */
  requests: number;
  /**
   * Batch size to use from now on, set after a rejection for size
   * (`LIMIT_EXCEEDED` or HTTP 413): the stated `extensions.max`, or half the
   * rejected size when none was stated.
   */
  maxBatchSize: number | null;
}

export interface InvalidItem {
  index: number;
  reason: string;
  message: string;
}

/**
 * Reads `extensions.invalidItems` from every error of a rejection, keeping the
 * entries whose index lies inside a batch of `batchLength` events, one per
 * index.
 */
export function readInvalidItems(error: GraphQLRequestError, batchLength: number): InvalidItem[] {
  const byIndex = new Map<number, InvalidItem>();
  for (const entry of error.errors) {
    const items = entry.extensions?.invalidItems;
    if (!Array.isArray(items)) {
      continue;
    }
    for (const item of items) {
      if (typeof item !== 'object' || item === null) {
        continue;
      }
      const { index, reason, message } = item as Record<string, unknown>;
      const inBatch = typeof index === 'number' && Number.isInteger(index);
      if (!inBatch || index < 0 || index >= batchLength) {
        continue;
      }
      if (!byIndex.has(index)) {
        byIndex.set(index, {
          index,
          reason: typeof reason === 'string' ? reason : 'INVALID',
          message: typeof message === 'string' ? message : 'rejected by the server',
        });
      }
    }
  }
  return [...byIndex.values()].sort((a, b) => a.index - b.index);
}

/**
 * Returns the stated maximum of a `LIMIT_EXCEEDED` rejection, from
 * `extensions.max` or `extensions.details.max`, or null when it states none.
 */
export function readLimitMax(error: GraphQLRequestError): number | null {
  const { max, details } = error.extensions;
  const nested =
    typeof details === 'object' && details !== null
      ? (details as Record<string, unknown>).max
      : undefined;
  for (const value of [max, nested]) {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 1) {
      return value;
    }
  }
  return null;
}

function isInvalidBatch(error: unknown): error is GraphQLRequestError {
  return (
    error instanceof GraphQLRequestError &&
    (error.code === 'BAD_USER_INPUT' || error.httpStatus === 413)
  );
}

/** True for a rejection of the request's size rather than of its content. */
function isSizeRejection(error: GraphQLRequestError): boolean {
  return error.reason === 'LIMIT_EXCEEDED' || error.httpStatus === 413;
}

/**
 * A request for part of a batch failed with an error other than a rejection
 * of its events. `delivery` counts the parts of the batch that had replies
 * before it, and `eventsWithoutReply` is the size of the part that failed.
 * Parts after it were not sent. The message is that of `cause`.
 */
export class BatchDeliveryError extends Error {
  readonly delivery: DeliveryResult;
  readonly eventsWithoutReply: number;

  constructor(delivery: DeliveryResult, eventsWithoutReply: number, cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'BatchDeliveryError';
    this.delivery = delivery;
    this.eventsWithoutReply = eventsWithoutReply;
  }
}

/**
 * Sends `batch` in order, resending without the events the server rejects.
 * Any other failure, such as an error code other than `BAD_USER_INPUT` or
 * HTTP 413, is thrown as the `cause` of a `BatchDeliveryError`, which keeps
 * the counts of the parts that had replies. Retrying transient failures is
 * the job of `send`.
 */
export async function deliverBatch(
  batch: readonly PendingEvent[],
  send: SendEventsFn,
): Promise<DeliveryResult> {
  const result: DeliveryResult = {
    sent: 0,
    stored: 0,
    duplicates: 0,
    rejected: [],
    requests: 0,
    maxBatchSize: null,
  };

  // Parts still to send, in input order. A split replaces the first part by its pieces.
  const parts: PendingEvent[][] = batch.length > 0 ? [[...batch]] : [];

  while (parts.length > 0) {
    const part = parts.shift() ?? [];
    if (part.length === 0) {
      continue;
    }

    let reply: SendEventsSummary;
    try {
      result.requests += 1;
      reply = await send(part.map((event) => event.input));
    } catch (error) {
      if (!isInvalidBatch(error)) {
        result.sent += result.rejected.length;
        throw new BatchDeliveryError(result, part.length, error);
      }
      parts.unshift(...handleRejection(error, part, result));
      continue;
    }

    addReply(result, reply, part.length);
  }

  result.sent += result.rejected.length;
  return result;
}

/**
 * Records the events a rejection of `part` lists, or decides how to split
 * `part`, and returns the parts to send instead.
 */
function handleRejection(
  error: GraphQLRequestError,
  part: PendingEvent[],
  result: DeliveryResult,
): PendingEvent[][] {
  const invalid = readInvalidItems(error, part.length);
  if (invalid.length > 0) {
    const invalidIndexes = new Set(invalid.map((item) => item.index));
    for (const item of invalid) {
      const event = part[item.index];
      if (event !== undefined) {
        result.rejected.push(rejection(event, item.reason, item.message));
      }
    }
    return [part.filter((_, index) => !invalidIndexes.has(index))];
  }

  if (part.length > 1) {
    // A size limit without a stated maximum is found by halving, and the
    // halved size becomes the caller's next batch size, so later batches do
    // not pay for the same rejection again.
    const tooLarge = isSizeRejection(error);
    const stated = tooLarge ? readLimitMax(error) : null;
    const size = stated !== null && stated < part.length ? stated : Math.ceil(part.length / 2);
    if (tooLarge) {
      result.maxBatchSize = Math.min(result.maxBatchSize ?? size, size);
    }
    return chunk(part, size);
  }

  const [only] = part;
  if (only !== undefined) {
    const message = error.errors[0]?.message ?? error.message;
    result.rejected.push(rejection(only, error.reason ?? error.code, message));
  }
  return [];
}

function rejection(event: PendingEvent, reason: string, message: string): RejectedEvent {
  return {
    source: event.source,
    eventId: typeof event.input.id === 'string' ? event.input.id : null,
    reason,
    message,
  };
}

function addReply(result: DeliveryResult, reply: SendEventsSummary, eventCount: number): void {
  result.sent += eventCount;
  result.stored += reply.storedCount;
  result.duplicates += reply.duplicateCount;
}
