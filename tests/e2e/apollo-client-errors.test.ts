/**
 * Errors as an Apollo Client 4 application receives them (`HttpLink` over the
 * global `fetch`, `InMemoryCache`). Apollo Client's HttpLink requests
 * `application/graphql-response+json` and reads a reply of that type as a
 * GraphQL result whatever its status, so `extensions.code` reaches the
 * application. A non-2xx reply in `application/json` becomes a
 * `ServerError` that carries only the body text. The cases check that the
 * errors of `/graphql` reach the client as GraphQL errors, also those that
 * the HTTP layer sends before Apollo Server runs, and that such an early
 * reply does not hold the server's shutdown open.
 */
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { ApolloLink } from '@apollo/client/core';
import { SetContextLink } from '@apollo/client/link/context';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

const START = Date.parse('2026-04-01T00:00:00Z');
/** JWT_TTL_SECONDS of the servers below (its default), in ms. */
const TOKEN_TTL_MS = 3_600_000;
/** MAX_BODY_BYTES of the server below. ANONYMOUS_MAX_BODY_BYTES keeps its default of 65536. */
const MAX_BODY_BYTES = 262_144;

const SEND_EVENTS = gql`
  mutation SendEvents($events: [EventInput!]!) {
    sendEvents(events: $events) {
      storedCount
    }
  }
`;

const ME = gql`
  query Me {
    me {
      id
      username
    }
  }
`;

const RENEW = gql`
  mutation Renew {
    renewToken {
      token
      expiresAt
    }
  }
`;

const DASHBOARD = gql`
  query Dashboard($window: WindowInput!) {
    good: report(window: $window, expression: { segments: { pairTypes: ["session"] } }, bucket: { unit: DAY, timeZone: "Europe/Prague" }) {
      id
      totalSeconds
    }
    bad: report(window: $window, expression: { segments: { pairTypes: ["session"] } }, bucket: { unit: DAY, timeZone: "Europe/Nowhere" }) {
      id
      totalSeconds
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

/**
 * Returns the `extensions` of the first GraphQL error in what Apollo Client
 * threw, or fails when it threw something else, such as a `ServerError`.
 */
function firstExtensions(error: unknown): Record<string, unknown> | undefined {
  expect(CombinedGraphQLErrors.is(error), `expected CombinedGraphQLErrors, got ${String(error)}`).toBe(true);
  return (error as CombinedGraphQLErrors).errors[0]?.extensions;
}

describe('Apollo Client error handling', () => {
  const clock = new ManualClock(START);
  let server: TestServer;
  let member: { id: string; token: string };
  let client: ApolloClient;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: { JWT_TTL_SECONDS: String(TOKEN_TTL_MS / 1000), MAX_BODY_BYTES: String(MAX_BODY_BYTES) },
    });
    member = await server.createUser('mia');
    token = member.token;
    client = createClient(server.url, () => token);
  });

  afterAll(async () => {
    client?.stop();
    await server?.close();
  });

  it('failed report leaves partial data', async () => {
    const result = await client.query<{ good: { id: string; totalSeconds: number } | null; bad: unknown }>({
      query: DASHBOARD,
      variables: { window: { start: '2026-03-28T23:00:00Z', end: '2026-03-30T22:00:00Z' } },
      errorPolicy: 'all',
      fetchPolicy: 'network-only',
    });

    expect(result.data?.good?.totalSeconds).toBe(0);
    expect(result.data?.bad).toBeNull();
    expect(CombinedGraphQLErrors.is(result.error)).toBe(true);
    const error = (result.error as CombinedGraphQLErrors).errors[0];
    expect(error?.path).toEqual(['bad']);
    expect(error?.extensions?.reason).toBe('INVALID_TIME_ZONE');
  });

  it('body over MAX_BODY_BYTES is a GraphQL error', async () => {
    const extensions = firstExtensions(await mutationError(client, heartbeats(40, 8_000)));

    expect(extensions?.code).toBe('BAD_USER_INPUT');
    expect(extensions?.reason).toBe('BODY_TOO_LARGE');
    expect(extensions?.limit).toBe('MAX_BODY_BYTES');
  });

  it('renewToken keeps client signed in', async () => {
    clock.advance(TOKEN_TTL_MS - 60_000);
    const renewedAt = clock.now();
    const renewed = await client.mutate<{ renewToken: { token: string; expiresAt: string } }>({ mutation: RENEW });
    token = renewed.data!.renewToken.token;
    clock.advance(120_000);

    const me = await client.query<{ me: { id: string } }>({ query: ME, fetchPolicy: 'network-only' });
    expect(me.data?.me.id).toBe(member.id);
    expect(Date.parse(renewed.data!.renewToken.expiresAt)).toBe(renewedAt + TOKEN_TTL_MS);
  });

  it('expired token on small body', async () => {
    clock.advance(TOKEN_TTL_MS);
    const extensions = firstExtensions(await mutationError(client, heartbeats(1, 10)));

    expect(extensions?.code).toBe('UNAUTHENTICATED');
    expect(extensions?.reason).toBe('INVALID_TOKEN');
  });

  it('expired token on large body', async () => {
    // Above ANONYMOUS_MAX_BODY_BYTES, so the HTTP layer rejects the token before Apollo Server runs.
    const extensions = firstExtensions(await mutationError(client, heartbeats(20, 4_000)));

    expect(extensions?.code).toBe('UNAUTHENTICATED');
    expect(extensions?.reason).toBe('INVALID_TOKEN');
  });

  it('renewToken rejects expired token', async () => {
    const error = await client.mutate({ mutation: RENEW }).then(
      () => null,
      (caught: unknown) => caught,
    );

    expect(firstExtensions(error)?.reason).toBe('INVALID_TOKEN');
  });

  it('plain JSON client keeps application/json', async () => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: SEND_EVENTS.loc!.source.body, variables: { events: heartbeats(20, 4_000) } }),
    });
    const body = (await response.json()) as { errors: Array<{ extensions: { reason: string } }> };

    expect(response.status).toBe(401);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(body.errors[0]?.extensions.reason).toBe('INVALID_TOKEN');
  });
});

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
