/**
 * `@defer` and `@stream` over HTTP: the server has no incremental delivery,
 * so a document that uses either directive gets one JSON reply with a
 * validation error naming the directive, also when the Accept header offers
 * `multipart/mixed` beside a JSON type.
 */
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { Defer20220824Handler } from '@apollo/client/incremental';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';

/** The Accept header that Apollo Client 4.3 sends for an operation with `@defer` when its `Defer20220824Handler` is set. */
const APOLLO_DEFER_ACCEPT = 'multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9';

interface Reply {
  status: number;
  contentType: string | null;
  body: any;
}

describe('incremental delivery', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function post(query: string, accept: string | null): Promise<Reply> {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${token}`,
        ...(accept === null ? {} : { accept }),
      },
      body: JSON.stringify({ query }),
    });
    return { status: response.status, contentType: response.headers.get('content-type'), body: await response.json() };
  }

  const documents: Array<[string, string]> = [
    ['@defer', '{ me { id ... @defer { username } } }'],
    ['@defer', '{ me { id ... on User @defer(label: "name") { username } } }'],
    ['@defer', 'query { me { ...Name @defer } } fragment Name on User { username }'],
    ['@stream', '{ pairTypes @stream(initialCount: 1) { name } }'],
  ];
  const accepts = [null, 'application/json', APOLLO_DEFER_ACCEPT, 'multipart/mixed; deferSpec=20220824, application/json'];

  describe.each(accepts)('Accept: %s', (accept) => {
    it.each(documents)('%s rejected by name: %s', async (directive, query) => {
      const reply = await post(query, accept);

      expect(reply.status, 'status').toBe(400);
      expect(reply.contentType, 'content type').not.toMatch(/^multipart\//);
      expect(reply.body.data, 'data').toBeUndefined();
      expect(reply.body.errors, 'errors').toHaveLength(1);
      const error = reply.body.errors[0];
      expect(error.message, 'message').toContain(`"${directive}"`);
      expect(error.message, 'message').toContain('does not support incremental delivery');
      expect(error.extensions.code, 'code').toBe('GRAPHQL_VALIDATION_FAILED');
      expect(error.extensions.reason, 'reason').toBe('INCREMENTAL_DELIVERY_NOT_SUPPORTED');
    });
  });

  it('each use gets an error', async () => {
    const reply = await post('{ me { id ... @defer { username } } pairTypes @stream { name } }', APOLLO_DEFER_ACCEPT);

    expect(reply.status).toBe(400);
    const messages = (reply.body.errors as Array<{ message: string }>).map((error) => error.message);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toMatch(/^Unknown directive "@defer"\. /);
    expect(messages[1]).toMatch(/^Unknown directive "@stream"\. /);
  });

  it('mutation with @defer stores nothing', async () => {
    const reply = await post(
      'mutation { sendEvent(event: { type: "heartbeat", occurredAt: "2026-01-05T09:00:00Z" }) { event { id } ... @defer { duplicate } } }',
      APOLLO_DEFER_ACCEPT,
    );

    expect(reply.status).toBe(400);
    expect(reply.body.errors[0].extensions.reason).toBe('INCREMENTAL_DELIVERY_NOT_SUPPORTED');
    const events = await server.gql('{ events { nodes { id } } }', {}, token);
    expect(events.data?.events.nodes).toEqual([]);
  });

  it('multipart-only Accept gets 406', async () => {
    // Apollo Server 5 sends replies only in JSON types, and checks the Accept header before parsing.
    const reply = await post('{ me { id ... @defer { username } } }', 'multipart/mixed; deferSpec=20220824');

    expect(reply.status, 'status').toBe(406);
    expect(reply.contentType, 'content type').toMatch(/^application\/json/);
    expect(reply.body.errors?.[0]?.extensions?.code, 'code').toBe('BAD_REQUEST');
    expect(reply.body.errors?.[0]?.message, 'message').toContain('application/json');
  });

  it('Apollo Client gets the error', async () => {
    const client = new ApolloClient({
      link: new HttpLink({ uri: `${server.url}/graphql`, fetch, headers: { authorization: `Bearer ${token}` } }),
      cache: new InMemoryCache(),
      incrementalHandler: new Defer20220824Handler(),
    });
    const query = gql`
      query MeDeferred {
        me {
          id
          ... @defer {
            username
          }
        }
      }
    `;

    const result = await client.query({ query, errorPolicy: 'all', fetchPolicy: 'no-cache' }).catch((error: unknown) => ({ error }));

    expect(CombinedGraphQLErrors.is(result.error), 'error type').toBe(true);
    const errors = (result.error as CombinedGraphQLErrors).errors;
    expect(errors[0]?.message, 'message').toContain('"@defer"');
    expect(errors[0]?.extensions?.reason, 'reason').toBe('INCREMENTAL_DELIVERY_NOT_SUPPORTED');
  });

  it('without a token gets 401', async () => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: APOLLO_DEFER_ACCEPT },
      body: JSON.stringify({ query: '{ me { id ... @defer { username } } }' }),
    });
    const body = (await response.json()) as { errors?: Array<{ extensions?: { reason?: string } }> };

    expect(response.status).toBe(401);
    expect(body.errors?.[0]?.extensions?.reason).toBe('MISSING_TOKEN');
  });
});
