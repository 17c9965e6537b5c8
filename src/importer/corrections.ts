/**
 * The corrections stored for the imported users once every event was sent,
 * counted by rule. A `sendEvents` reply lists the corrections that its events
 * caused at that moment, and a later batch can undo them. For example the
 * server auto-closes the pairs still open at the end of a batch of old
 * recordings, because its clock is past their deadlines, and the next batch
 * reopens them with events from before those deadlines. So the sum of the
 * replies overcounts, and the summary reads what is stored instead.
 */

import { chunk } from './batching.js';
import { readLimitMax } from './deliver.js';
import { GraphQLRequestError, type CorrectionPage, type GraphQLClient } from './graphql-client.js';
import type { CallServer } from './setup.js';

/** Corrections requested per page. A server whose PAGE_SIZE_MAX is lower states its maximum, and the pages shrink to it. */
export const CORRECTION_PAGE_SIZE = 1000;
/** Maximum number of user ids in one `events` filter, the limit the server sets on filter lists. */
const MAX_USERS_PER_FILTER = 1000;

/** Reads every correction stored for `userIds` and returns their number by rule. */
export async function countStoredCorrections(
  client: GraphQLClient,
  call: CallServer,
  userIds: readonly string[],
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let pageSize = CORRECTION_PAGE_SIZE;
  for (const users of chunk(userIds, MAX_USERS_PER_FILTER)) {
    let after: string | null = null;
    for (;;) {
      let page: CorrectionPage;
      try {
        const size = pageSize;
        const cursor = after;
        page = await call(() => client.corrections(users, size, cursor), 'reading the stored corrections');
      } catch (error) {
        const max = error instanceof GraphQLRequestError && error.reason === 'LIMIT_EXCEEDED' ? readLimitMax(error) : null;
        if (max === null || max >= pageSize) {
          throw error;
        }
        pageSize = max;
        continue;
      }

      for (const rule of page.rules) {
        const key = rule ?? 'UNKNOWN';
        counts[key] = (counts[key] ?? 0) + 1;
      }
      if (page.nextCursor === null) {
        break;
      }
      after = page.nextCursor;
    }
  }
  return counts;
}
