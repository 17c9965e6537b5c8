/**
 * Errors as an Apollo Client 4 application receives them (`HttpLink` over the
 * global `fetch`, `InMemoryCache`). Apollo Client's HttpLink asks for
 * `application/graphql-response+json` and reads a reply of that type as a
 * GraphQL result whatever its status, so `extensions.code` reaches the
 * application. A non-2xx reply in `application/json` becomes a
 * `ServerError` that carries only the body text. The cases check that the
 * errors of `/graphql` reach the client as GraphQL errors, also those that
 * the HTTP layer sends before Apollo Server runs, and that such an early
 * reply does not hold the server's shutdown open.
 */
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { ApolloLink } from '@apollo/client/core';
import { SetContextLink } from '@apollo/client/link/context';
import { describe, expect, it } from 'vitest';

import { ManualClock, startTestServer } from '../support/app.js';

const START = Date.parse('2026-04-01T00:00:00Z');
/** JWT_TTL_SECONDS of the servers below (its default), in ms. */
const TOKEN_TTL_MS = 3_600_000;

const SEND_EVENTS = gql`
  mutation SendEvents($events: [EventInput!]!) {
    sendEvents(events: $events) {
      storedCount
    }
  }
`;

/** A client whose requests carry the bearer token that `token()` returns at request time. */
function createClient(url: string, token: () => string): ApolloClient {
  const auth = new SetContextLink((previous) => ({ headers: { ...previous.headers, authorization: `Bearer ${token()}` } }));
  const http = new HttpLink({ uri: `${url}/graphql`, fetch });
  return new ApolloClient({ link: ApolloLink.from([auth, http]), cache: new InMemoryCache() });
}

/** Heartbeats with a `meta` of about `metaBytes` each, for request bodies of a chosen size. */
function heartbeats(count: number, metaBytes: number): unknown[] {
  return Array.from({ length: count }, (_, index) => ({ type: 'heartbeat', meta: { index, note: 'x'.repeat(metaBytes) } }));
}

/** Runs a mutation and returns what Apollo Client throws, or null when it resolves. */
async function mutationError(client: ApolloClient, events: unknown[]): Promise<unknown> {
  return client.mutate({ mutation: SEND_EVENTS, variables: { events } }).then(
    () => null,
    (error: unknown) => error,
  );
}

describe('shutdown after an early 401', () => {
  it('closes without waiting for the body', async () => {
    const clock = new ManualClock(START);
    const server = await startTestServer(import.meta.filename, { clock, sweeper: false });
    let closing: Promise<void> | null = null;
    try {
      const member = await server.createUser('ivo');
      const client = createClient(server.url, () => member.token);
      clock.advance(2 * TOKEN_TTL_MS);
      // The 401 for the expired token comes before the server has read the body.
      const error = await mutationError(client, heartbeats(25, 4_000));
      client.stop();
      expect(error).not.toBeNull();

      closing = server.close();
      const timeout = new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 10_000).unref());
      const outcome = await Promise.race([closing.then(() => 'closed' as const), timeout]);
      // Without `Connection: close` the half-read request held close() open for the 72 s keep-alive timeout.
      expect(outcome).toBe('closed');
    } finally {
      await (closing ?? server.close());
    }
  }, 120_000);
});
