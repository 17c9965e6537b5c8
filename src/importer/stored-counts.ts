/**
 * The corrections and the flagged events stored for the imported users once
 * every event was sent, counted by rule. A `sendEvents` reply lists what its
 * events caused at that moment, and a later batch can undo it. For example
 * the server auto-closes the pairs still open at the end of a batch of old
 * recordings, because its clock is past their deadlines, and the next batch
 * reopens them with events from before those deadlines. A late start also
 * clears the ORPHAN_END flag of an end stored earlier. So the sum of the
 * replies overcounts, and the summary reads what is stored instead.
 */

import { chunk } from './batching.js';
import { readLimitMax } from './deliver.js';
import { GraphQLRequestError, type GraphQLClient, type StoredEventFilter, type StoredEventPage } from './graphql-client.js';
import type { CallServer } from './setup.js';

/** Events requested per page. A server whose PAGE_SIZE_MAX is lower states its maximum, and the pages shrink to it. */
export const STORED_EVENTS_PAGE_SIZE = 1000;
/** Maximum number of user ids in one `events` filter, the limit the server sets on filter lists. */
const MAX_USERS_PER_FILTER = 1000;
/** The flags that the server sets on client events. */
const EVENT_FLAGS = ['FUTURE_TIMESTAMP', 'LATE_BEYOND_HORIZON', 'LATE_EVENT', 'ORPHAN_END'];

/** The corrections stored for the imported users counted by rule, and their flagged client events counted by flag. */
export interface StoredCounts {
  correctionsByRule: Record<string, number>;
  /** An event with two flags counts under each. */
  flaggedByRule: Record<string, number>;
}

/**
 * Reads every correction and every flagged client event stored for `userIds`,
 * and counts them. Once `signal` is aborted, it starts no further request and
 * throws the signal's reason.
 */
export async function countStored(
  client: GraphQLClient,
  call: CallServer,
  userIds: readonly string[],
  signal?: AbortSignal,
): Promise<StoredCounts> {
  // Both reads use the page size that the server accepted last.
  const paging = { pageSize: STORED_EVENTS_PAGE_SIZE, signal };
  const correctionsByRule = await countStoredEvents(
    client,
    call,
    userIds,
    paging,
    (users) => ({ users, origins: ['CORRECTION'] }),
    (event) => [event.rule ?? 'UNKNOWN'],
    'reading the stored corrections',
  );
  const flaggedByRule = await countStoredEvents(
    client,
    call,
    userIds,
    paging,
    (users) => ({ users, flags: EVENT_FLAGS }),
    (event) => event.flags,
    'reading the flagged events',
  );
  return { correctionsByRule, flaggedByRule };
}

/** Reads every stored event that `filterOf` selects, page by page, and counts each key that `keysOf` gives it. */
async function countStoredEvents(
  client: GraphQLClient,
  call: CallServer,
  userIds: readonly string[],
  paging: { pageSize: number; signal: AbortSignal | undefined },
  filterOf: (users: readonly string[]) => StoredEventFilter,
  keysOf: (event: StoredEventPage['events'][number]) => readonly string[],
  action: string,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const users of chunk(userIds, MAX_USERS_PER_FILTER)) {
    const filter = filterOf(users);
    let after: string | null = null;
    for (;;) {
      let page: StoredEventPage;
      try {
        paging.signal?.throwIfAborted();
        const size = paging.pageSize;
        const cursor = after;
        page = await call(() => client.storedEvents(filter, size, cursor), action);
      } catch (error) {
        const max = error instanceof GraphQLRequestError && error.reason === 'LIMIT_EXCEEDED' ? readLimitMax(error) : null;
        if (max === null || max >= paging.pageSize) {
          throw error;
        }
        paging.pageSize = max;
        continue;
      }

      for (const event of page.events) {
        for (const key of keysOf(event)) {
          counts[key] = (counts[key] ?? 0) + 1;
        }
      }
      if (page.nextCursor === null) {
        break;
      }
      after = page.nextCursor;
    }
  }
  return counts;
}
