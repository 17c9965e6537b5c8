/**
 * Automatic persisted queries as Apollo Client's persisted-query link uses
 * them: a hash alone, then the query with its hash, then the hash alone
 * again, over GET as `useGETForQueries` sends it. Batched bodies are rejected.
 */
import { createHash } from 'node:crypto';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

const QUERY = '{ me { username } }';
const HASH = createHash('sha256').update(QUERY).digest('hex');

describe('persisted queries', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function getWithHash(): Promise<{ status: number; body: Record<string, any> }> {
    const extensions = JSON.stringify({ persistedQuery: { version: 1, sha256Hash: HASH } });
    const response = await fetch(`${server.url}/graphql?extensions=${encodeURIComponent(extensions)}`, {
      headers: { authorization: `Bearer ${token}`, 'apollo-require-preflight': 'true' },
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> };
  }

  it('registers a query by its hash', async () => {
    const unknown = await getWithHash();
    expect(unknown.body.errors?.[0]?.extensions?.code, 'code of an unknown hash').toBe('PERSISTED_QUERY_NOT_FOUND');

    const registered = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: QUERY, extensions: { persistedQuery: { version: 1, sha256Hash: HASH } } }),
    });
    expect(registered.status, 'status of the registration').toBe(200);

    const known = await getWithHash();
    expect(known.status, 'status of a known hash').toBe(200);
    expect(known.body.data, 'data of a known hash').toEqual({ me: { username: 'admin' } });
  });

  it('hides registered hashes without a token', async () => {
    const query = '{ pairTypes { name } }';
    const hash = createHash('sha256').update(query).digest('hex');
    const neverSent = createHash('sha256').update(`${query} `).digest('hex');
    const post = async (body: Record<string, unknown>, authorization?: string) => {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
        body: JSON.stringify(body),
      });
      return { status: response.status, body: (await response.json()) as Record<string, any> };
    };
    const registered = await post({ query, extensions: { persistedQuery: { version: 1, sha256Hash: hash } } }, `Bearer ${token}`);
    expect(registered.body.data?.pairTypes, 'registration').toBeDefined();

    const unknown = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: neverSent } } });
    const known = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });
    const forged = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash } } }, 'Bearer not.a.token');
    const withText = await post({ query, extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });

    // A client without a token must not learn which queries others have run.
    expect(known, 'known hash without a token').toEqual(unknown);
    expect(forged, 'known hash with an invalid token').toEqual(unknown);
    expect(unknown.body.errors?.[0]?.extensions?.code, 'code').toBe('PERSISTED_QUERY_NOT_FOUND');
    // The persisted-query link then sends the text, which gets the usual 401.
    expect(withText.status, 'status with the text').toBe(401);
    expect(withText.body.errors?.[0]?.extensions?.code, 'code with the text').toBe('UNAUTHENTICATED');
  });

  it('rejects batched operations', async () => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify([{ query: QUERY }, { query: QUERY }]),
    });
    expect(response.status, 'status of a batch').toBe(400);
  });
});

// Under NODE_ENV=development, the default, GraphQL errors carry stack traces.
describe('persisted queries in development', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false, env: { NODE_ENV: 'development' } });
    token = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('known and unknown hashes match', async () => {
    const query = '{ me { id } }';
    const hash = createHash('sha256').update(query).digest('hex');
    const neverSent = createHash('sha256').update(`${query} `).digest('hex');
    const post = async (body: Record<string, unknown>, authorization?: string) => {
      const response = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
        body: JSON.stringify(body),
      });
      const headers = ['content-type', 'cache-control', 'www-authenticate'].map((name) => [name, response.headers.get(name)]);
      return { status: response.status, headers: Object.fromEntries(headers), text: await response.text() };
    };
    const registered = await post({ query, extensions: { persistedQuery: { version: 1, sha256Hash: hash } } }, `Bearer ${token}`);
    expect(registered.status, 'status of the registration').toBe(200);

    const unknown = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: neverSent } } });
    const known = await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash } } });

    expect(known, 'known hash without a token').toEqual(unknown);
    expect(JSON.parse(unknown.text).errors?.[0]?.extensions?.code, 'code').toBe('PERSISTED_QUERY_NOT_FOUND');
  });
});
