/**
 * Cross-origin requests as a browser sends them: preflights and the headers
 * on real responses, for any origin, a list of origins, and CORS turned off.
 * Requests go through node:http, because fetch implementations may not
 * allow setting the Origin header that a browser sends.
 */
import { request as httpRequest } from 'node:http';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CORS_MAX_AGE_SECONDS } from '../../src/http/cors.js';
import { startTestServer, type TestServer } from '../support/app.js';

const APP_ORIGIN = 'https://app.example.com';
const OTHER_ORIGIN = 'https://evil.example.net';

interface RawReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function raw(url: string, method: string, headers: Record<string, string>, body?: string): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(body);
  });
}

function preflight(server: TestServer, path: string, origin: string, extraHeaders: Record<string, string> = {}): Promise<RawReply> {
  return raw(`${server.url}${path}`, 'OPTIONS', {
    origin,
    'access-control-request-method': 'POST',
    'access-control-request-headers': 'authorization, content-type, apollo-require-preflight',
    ...extraHeaders,
  });
}

/** The header that Chrome's Private Network Access adds to a preflight for a server on a private address. */
const PRIVATE_NETWORK_REQUEST = { 'access-control-request-private-network': 'true' };

function postQuery(server: TestServer, origin: string | null, body = JSON.stringify({ query: '{ __typename }' })): Promise<RawReply> {
  return raw(
    `${server.url}/graphql`,
    'POST',
    { 'content-type': 'application/json', ...(origin === null ? {} : { origin }) },
    body,
  );
}

describe('CORS for any origin (the default)', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.url, { sweeper: false });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('preflight gets 204', async () => {
    const reply = await preflight(server, '/graphql', 'http://localhost:5173');

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe('*');
    expect(reply.headers['access-control-allow-methods']).toContain('POST');
    expect(reply.headers['access-control-allow-headers']).toBe('authorization, content-type, apollo-require-preflight');
    expect(reply.headers['access-control-max-age']).toBe(String(CORS_MAX_AGE_SECONDS));
    expect(reply.headers['access-control-allow-credentials']).toBeUndefined();
  });

  it('private network not granted to any origin', async () => {
    const reply = await preflight(server, '/graphql', 'https://public.example.org', PRIVATE_NETWORK_REQUEST);

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe('*');
    expect(reply.headers['access-control-allow-private-network']).toBeUndefined();
  });

  it('no private network header unrequested', async () => {
    const reply = await preflight(server, '/graphql', 'https://public.example.org');

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-private-network']).toBeUndefined();
  });

  it('REST preflight gets 204', async () => {
    const reply = await preflight(server, '/api/events', 'http://localhost:5173');

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe('*');
  });

  it('operation response readable', async () => {
    const reply = await postQuery(server, 'http://localhost:5173');

    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ data: { __typename: 'Query' } });
    expect(reply.headers['access-control-allow-origin']).toBe('*');
    expect(reply.headers['access-control-expose-headers']).toContain('x-request-id');
  });

  it('error response readable', async () => {
    const reply = await postQuery(server, 'http://localhost:5173', '{"query": ');

    expect(reply.status).toBe(400);
    expect(reply.headers['access-control-allow-origin']).toBe('*');
  });

  it('no headers without Origin', async () => {
    const reply = await postQuery(server, null);

    expect(reply.status).toBe(200);
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('CORS for listed origins', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.url, {
      sweeper: false,
      env: { CORS_ORIGINS: `${APP_ORIGIN},http://localhost:5173` },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('listed origin echoed', async () => {
    const reply = await preflight(server, '/graphql', APP_ORIGIN);

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    expect(reply.headers.vary).toContain('Origin');
  });

  it('unlisted origin preflight rejected', async () => {
    const reply = await preflight(server, '/graphql', OTHER_ORIGIN);

    expect(reply.status).toBe(403);
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
    const body = JSON.parse(reply.body) as { error: { code: string; reason: string; message: string } };
    expect(body.error.code).toBe('FORBIDDEN');
    expect(body.error.reason).toBe('ORIGIN_NOT_ALLOWED');
    expect(body.error.message).toContain(OTHER_ORIGIN);
    expect(body.error.message).toContain('CORS_ORIGINS');
  });

  it('private network allowed for listed origin', async () => {
    const reply = await preflight(server, '/api/events', APP_ORIGIN, PRIVATE_NETWORK_REQUEST);

    expect(reply.status).toBe(204);
    expect(reply.headers['access-control-allow-origin']).toBe(APP_ORIGIN);
    expect(reply.headers['access-control-allow-private-network']).toBe('true');
  });

  it('private network denied for unlisted origin', async () => {
    const reply = await preflight(server, '/graphql', OTHER_ORIGIN, PRIVATE_NETWORK_REQUEST);

    expect(reply.status).toBe(403);
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
    expect(reply.headers['access-control-allow-private-network']).toBeUndefined();
  });

  it('unlisted origin served without headers', async () => {
    const reply = await postQuery(server, OTHER_ORIGIN);

    expect(reply.status).toBe(200);
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
    expect(reply.headers.vary).toContain('Origin');
  });

  it('listed origin response readable', async () => {
    const reply = await postQuery(server, 'http://localhost:5173');

    expect(reply.status).toBe(200);
    expect(reply.headers['access-control-allow-origin']).toBe('http://localhost:5173');
  });
});

describe('CORS turned off', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.url, { sweeper: false, env: { CORS_ORIGINS: 'none' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('sends no CORS headers', async () => {
    const answer = await preflight(server, '/graphql', APP_ORIGIN, PRIVATE_NETWORK_REQUEST);
    const reply = await postQuery(server, APP_ORIGIN);

    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(answer.headers['access-control-allow-methods']).toBeUndefined();
    expect(answer.headers['access-control-allow-private-network']).toBeUndefined();
    expect(reply.status).toBe(200);
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
  });
});
