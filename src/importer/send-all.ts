/**
 * Sending of all events: one queue per user in file order, several users at
 * a time, each user's batches strictly one after another.
 */

import { groupBy, type PendingEvent } from './batching.js';
import { BatchDeliveryError, deliverBatch, type DeliveryResult, type SendEventsFn } from './deliver.js';
import { NetworkError, type GraphQLClient, type UserSummary } from './graphql-client.js';
import type { ImportProgress } from './progress.js';
import type { EventRecord } from './read-input.js';
import type { CallServer, ResolvedUsers } from './setup.js';
import type { SourceRef } from './types.js';
import { addDelivery, formatRejection, type ImportSummary, type IssueReporter } from './summary.js';

export interface SendAllContext {
  client: GraphQLClient;
  call: CallServer;
  viewer: UserSummary;
  summary: ImportSummary;
  report: (message: string) => void;
  issues: IssueReporter;
  batchSize: number;
  concurrency: number;
  onProgress: ((progress: ImportProgress) => void) | undefined;
  /** Stops the sending: no batch starts once it is aborted, and a batch in flight that fails then is not an error. */
  signal?: AbortSignal;
  /**
   * Called with the events of each request that failed after `signal`
   * aborted, such as on an aborted request, which the server may have
   * stored. The parts of a split batch that had replies before such a
   * failure are counted as sent instead. Unlike a return value, the count
   * reaches the caller also when `sendAll` throws.
   */
  onEventsWithoutReply?: (count: number) => void;
}

/**
 * Sends every event record. Events of a user that could not be created are
 * counted as not sent, without a request, and reported once per user. The first failure stops every
 * worker after its current batch and is thrown. An abort of `context.signal`
 * stops every worker after its current batch too, without an error.
 */
export async function sendAll(
  context: SendAllContext,
  records: readonly EventRecord[],
  users: ResolvedUsers,
): Promise<void> {
  const { summary, report, issues } = context;
  const isStopped = (): boolean => context.signal?.aborted === true;

  const progress: ImportProgress = { done: 0, total: records.length };
  const advance = (count: number): void => {
    progress.done += count;
    context.onProgress?.({ ...progress });
  };

  // The first report starts the clock of the rate and the ETA.
  advance(0);

  const queued: { userId: string; event: PendingEvent }[] = [];
  const unsent = new Map<string, { count: number; first: SourceRef }>();
  for (const record of records) {
    if (record.username === null) {
      const userId = record.event.input.userId ?? context.viewer.id;
      queued.push({ userId, event: record.event });
      continue;
    }

    const userId = users.ids.get(record.username);
    if (userId === undefined) {
      const entry = unsent.get(record.username);
      if (entry === undefined) {
        unsent.set(record.username, { count: 1, first: record.event.source });
      } else {
        entry.count += 1;
      }
      continue;
    }
    const input = { ...record.event.input, userId };
    queued.push({ userId, event: { input, source: record.event.source } });
  }

  for (const [username, { count, first }] of unsent) {
    const reason = users.failed.get(username) ?? 'the user was not resolved';
    reportUnsent(summary, issues, username, count, first, reason);
    advance(count);
  }

  const queues = [...groupBy(queued, (entry) => entry.userId).values()].map((entries) =>
    entries.map((entry) => entry.event),
  );

  const shared = {
    batchSize: context.batchSize,
    nextQueue: 0,
    failure: null as { error: unknown } | null,
  };

  const recordDelivery = (delivery: DeliveryResult): void => {
    addDelivery(summary, delivery);
    for (const rejected of delivery.rejected) {
      const { file, line } = rejected.source;
      const message = formatRejection(rejected.eventId, rejected.reason, rejected.message);
      issues.add({ kind: 'rejectedEvent', file, line, message });
    }
  };

  const sendQueue = async (events: readonly PendingEvent[]): Promise<void> => {
    let offset = 0;
    while (offset < events.length && shared.failure === null && !isStopped()) {
      const batch = events.slice(offset, offset + shared.batchSize);
      let delivery;
      try {
        delivery = await deliverBatch(batch, sendFunction(context, batch));
      } catch (error) {
        if (!(error instanceof BatchDeliveryError)) {
          throw error;
        }
        // The parts of a split batch that had replies before the failure count as sent.
        recordDelivery(error.delivery);
        if (!isStopped()) {
          throw error.cause;
        }
        context.onEventsWithoutReply?.(error.eventsWithoutReply);
        // The stop hides the error, so any failure other than the abort at
        // the end of the reply wait, such as a TLS error, is reported here.
        if (!isAbortedRequest(error.cause)) {
          report(`${describeLines(batch)}: ${error.message}`);
        }
        return;
      }
      recordDelivery(delivery);

      if (delivery.maxBatchSize !== null && delivery.maxBatchSize < shared.batchSize) {
        shared.batchSize = delivery.maxBatchSize;
        report(`the server limits batches to ${shared.batchSize} events; sending smaller batches`);
      }

      offset += batch.length;
      advance(batch.length);
    }
  };

  const worker = async (): Promise<void> => {
    while (shared.failure === null && !isStopped()) {
      const queue = queues[shared.nextQueue];
      if (queue === undefined) {
        return;
      }
      shared.nextQueue += 1;
      try {
        await sendQueue(queue);
      } catch (error) {
        shared.failure ??= { error };
      }
    }
  };

  const workerCount = Math.min(context.concurrency, queues.length);
  await Promise.all(Array.from({ length: workerCount }, () => worker()));

  if (shared.failure !== null) {
    throw shared.failure.error;
  }
}

/** Tells whether `error` is a request that the import aborted, which fetch rejects with an `AbortError`. */
function isAbortedRequest(error: unknown): boolean {
  return error instanceof NetworkError && error.cause instanceof Error && error.cause.name === 'AbortError';
}

/** Returns the `sendEvents` call for one batch, labelled with its lines for retry messages. */
function sendFunction(context: SendAllContext, batch: readonly PendingEvent[]): SendEventsFn {
  const label = `sending ${describeLines(batch)}`;
  return (inputs) => context.call(() => context.client.sendEvents(inputs), label);
}

/** Describes where a batch comes from: `file:first-last`, or its first line when files differ. */
export function describeLines(batch: readonly PendingEvent[]): string {
  const first = batch[0]?.source;
  const last = batch[batch.length - 1]?.source;
  if (first === undefined || last === undefined) {
    return 'no lines';
  }
  if (first.file !== last.file) {
    return `lines from ${first.file}:${first.line}`;
  }
  if (first.line === last.line) {
    return `${first.file}:${first.line}`;
  }
  return `${first.file}:${first.line}-${last.line}`;
}

/**
 * Counts the events of a user that could not be created as not sent, and
 * adds one issue for all of them at the line of the first.
 */
function reportUnsent(
  summary: ImportSummary,
  issues: IssueReporter,
  username: string,
  count: number,
  first: SourceRef,
  reason: string,
): void {
  const events = count === 1 ? '1 event' : `${count} events`;
  const message = `${events} of user "${username}" not sent, because the user cannot be created: ${reason}`;
  summary.notSent += count;
  issues.add({ kind: 'unsentEvent', file: first.file, line: first.line, message });
}
