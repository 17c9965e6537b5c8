/**
 * HTTP behaviour around the operations: JSON errors for everything Fastify
 * and Apollo reject, CSRF prevention, masking and logging of unexpected
 * errors, request ids, and the health endpoints.
 */
import { connect, createServer } from 'node:net';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';

import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import type { IntakeStep } from '../../src/services/derive.js';
import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { describeWithPostgres, describeWithRedis } from '../support/services.js';

const FAULT_MESSAGE = 'injected fault: storage step failed';
const MAX_BODY_BYTES = 65_536;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: any;
}

async function send(url: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(url, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/**
 * Returns the fields of an error that the HTTP layer sent: `error` on the
 * REST routes, and on /graphql the first of `errors` with its extensions
 * spread beside its message.
 */
function httpError(path: string, reply: Reply): Record<string, any> | undefined {
  if (path !== '/graphql') {
    return reply.json?.error;
  }
  const first = reply.json?.errors?.[0];
  return first === undefined ? undefined : { message: first.message, ...first.extensions };
}

/** A test server whose logs land in memory and whose intake fails for chosen users. */
interface FaultyServer {
  server: TestServer;
  logLines: string[];
  /** Users whose events fail after they are stored, with a plain Error. */
  faultyUsers: Set<string>;
}

async function startFaultyServer(testFile: string, env: Record<string, string>): Promise<FaultyServer> {
  const logLines: string[] = [];
  const faultyUsers = new Set<string>();
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(chunk.toString('utf8'));
      callback();
    },
  });
  const server = await startTestServer(testFile, {
    sweeper: false,
    logger: pino({ level: 'info' }, stream),
    fault: (step: IntakeStep, userId: string) => {
      if (step === 'events-stored' && faultyUsers.has(userId)) {
        throw new Error(FAULT_MESSAGE);
      }
    },
    env,
  });
  return { server, logLines, faultyUsers };
}

function logEntries(lines: readonly string[]): Array<Record<string, any>> {
  return lines.map((line) => JSON.parse(line) as Record<string, any>);
}

describe('HTTP behaviour', () => {
  const servers = new Map<'test' | 'production', FaultyServer>();
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    const [testMode, productionMode] = await Promise.all([
      startFaultyServer(import.meta.filename, { NODE_ENV: 'test', MAX_BODY_BYTES: String(MAX_BODY_BYTES) }),
      startFaultyServer(import.meta.filename, { NODE_ENV: 'production' }),
    ]);
    servers.set('test', testMode);
    servers.set('production', productionMode);
    server = testMode.server;
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await Promise.all([...servers.values()].map((entry) => entry.server.close()));
  });

  describe('request bodies', () => {
    it.each(['/graphql', '/auth/login', '/api/events'])('malformed JSON on %s is JSON 400', async (path) => {
      const reply = await send(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: '{"query": "{ __typename }", ',
      });
      expect(reply.status).toBe(400);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(httpError(path, reply)?.code).toBe('BAD_USER_INPUT');
      expect(reply.text).not.toContain('<');
    });

    it.each(['/graphql', '/auth/login', '/api/events'])('XML body on %s is JSON 415', async (path) => {
      const reply = await send(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/xml', authorization: `Bearer ${adminToken}` },
        body: '<query>{ __typename }</query>',
      });
      expect(reply.status).toBe(415);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(httpError(path, reply)?.code).toBe('BAD_USER_INPUT');
      expect(httpError(path, reply)?.reason, 'reason').toBe('UNSUPPORTED_CONTENT_TYPE');
      expect(httpError(path, reply)?.message, 'message names the sent type').toContain('"application/xml"');
      expect(httpError(path, reply)?.message, 'message names the accepted type').toContain('Content-Type: application/json');
    });

    it.each(['/graphql', '/auth/login', '/api/events'])('invalid UTF-8 on %s is JSON 400', async (path) => {
      // "café" with é as the Latin-1 byte 0xE9, which is not UTF-8.
      const body = Buffer.concat([
        Buffer.from('{"type":"heartbeat","query":"{ __typename }","username":"admin","password":"admin-password-1","meta":{"name":"caf'),
        Buffer.from([0xe9]),
        Buffer.from('"}}'),
      ]);
      const reply = await send(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body,
      });
      expect(reply.status).toBe(400);
      expect(httpError(path, reply)?.reason).toBe('INVALID_UTF8');
      expect(httpError(path, reply)?.message).toContain('not valid UTF-8');
    });

    it.each(['/graphql', '/auth/login', '/api/events'])('gzip body on %s is JSON 415', async (path) => {
      const reply = await send(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', authorization: `Bearer ${adminToken}` },
        body: gzipSync(JSON.stringify({ type: 'heartbeat', query: '{ __typename }', username: 'admin', password: 'admin-password-1' })),
      });
      expect(reply.status).toBe(415);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(httpError(path, reply)?.code).toBe('BAD_USER_INPUT');
      expect(httpError(path, reply)?.reason, 'reason').toBe('UNSUPPORTED_CONTENT_ENCODING');
      expect(httpError(path, reply)?.message).toContain('Content-Encoding "gzip" is not supported');
      expect(reply.headers.get('accept-encoding'), 'accepted codings').toBe('identity');
    });

    it('long Content-Encoding is cut', async () => {
      const coding = `gzip${'x'.repeat(8_000)}`;
      const reply = await send(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': coding, authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      const message = httpError('/graphql', reply)?.message ?? '';

      expect(reply.status, 'status').toBe(415);
      expect(message, 'quoted value').toContain(`Content-Encoding "${coding.slice(0, 100)}…" is not supported`);
      expect(message.length, 'message length').toBeLessThan(300);
    });

    it('identity content coding is accepted', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'identity', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ type: 'heartbeat' }),
      });
      expect(reply.status).toBe(200);
    });

    it('charset parameter is ignored', async () => {
      // RFC 8259 defines no charset for application/json: ASCII bytes are UTF-8 whatever the label.
      const ascii = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=iso-8859-1', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ type: 'heartbeat' }),
      });
      expect(ascii.status).toBe(200);
      const latin1 = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=iso-8859-1', authorization: `Bearer ${adminToken}` },
        body: Buffer.concat([Buffer.from('{"type":"heartbeat","meta":{"name":"caf'), Buffer.from([0xe9]), Buffer.from('"}}')]),
      });
      expect(latin1.status).toBe(400);
      expect(latin1.json?.error?.reason).toBe('INVALID_UTF8');
    });

    it('UTF-8 charset is accepted', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=UTF-8', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ type: 'heartbeat', meta: { name: 'café' } }),
      });
      expect(reply.status).toBe(200);
      expect(reply.json?.results?.[0]?.event?.meta).toEqual({ name: 'café' });
    });

    it('UTF-8 byte order mark is ignored', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ type: 'heartbeat', meta: { sent: 'with BOM' } }))]),
      });
      expect(reply.status, 'status').toBe(200);
      expect(reply.json?.results?.[0]?.event?.meta, 'meta').toEqual({ sent: 'with BOM' });
    });

    it('oversized body is JSON 413', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ type: 'big', meta: { pad: 'x'.repeat(MAX_BODY_BYTES) } }),
      });
      expect(reply.status).toBe(413);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json?.error?.code).toBe('BAD_USER_INPUT');
      expect(reply.json?.error?.max).toBe(MAX_BODY_BYTES);
      expect(reply.json?.error?.reason, 'reason').toBe('BODY_TOO_LARGE');
      expect(reply.json?.error?.message).toContain(`${MAX_BODY_BYTES + 32} bytes`);
      expect(reply.json?.error?.message).toContain(`maximum of ${MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)`);
    });

    it('text/plain events body names the type', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ type: 'heartbeat' }),
      });
      expect(reply.status).toBe(400);
      expect(reply.json?.error?.reason).toBe('UNSUPPORTED_CONTENT_TYPE');
      expect(reply.json?.error?.message).toContain('"text/plain"');
    });

    it('text/plain login body is 400', async () => {
      const reply = await send(`${server.url}/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify({ username: 'admin', password: 'admin-password-1' }),
      });
      expect(reply.status).toBe(400);
      expect(reply.json?.token).toBeUndefined();
    });

    describe('error body keys', () => {
      const big = JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(MAX_BODY_BYTES) } });
      const cases: Array<[string, number, () => Record<string, string>, string]> = [
        ['INVALID_JSON', 400, () => ({ 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }), '{"query": '],
        ['UNSUPPORTED_CONTENT_TYPE', 415, () => ({ 'content-type': 'application/xml', authorization: `Bearer ${adminToken}` }), '<query/>'],
        [
          'UNSUPPORTED_CONTENT_ENCODING',
          415,
          () => ({ 'content-type': 'application/json', 'content-encoding': 'br', authorization: `Bearer ${adminToken}` }),
          '{"query": "{ __typename }"}',
        ],
        [
          'PROTOTYPE_KEY',
          400,
          () => ({ 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }),
          '{"query": "{ __typename }", "variables": {"__proto__": {}}}',
        ],
        ['BODY_TOO_LARGE', 413, () => ({ 'content-type': 'application/json', authorization: `Bearer ${adminToken}` }), big],
        ['INVALID_TOKEN', 401, () => ({ 'content-type': 'application/json', authorization: 'Bearer not.a.token' }), big],
        ['ANONYMOUS_BODY_TOO_LARGE', 413, () => ({ 'content-type': 'application/json' }), big],
      ];

      it.each(cases)('%s on /graphql has only errors', async (reason, status, headers, body) => {
        for (const accept of ['application/json', 'application/graphql-response+json']) {
          const reply = await send(`${server.url}/graphql`, { method: 'POST', headers: { ...headers(), accept }, body });
          expect(reply.status, `${accept}: status`).toBe(status);
          expect(Object.keys(reply.json ?? {}), `${accept}: top-level keys`).toEqual(['errors']);
          expect(reply.json?.errors?.[0]?.extensions?.reason, `${accept}: reason`).toBe(reason);
        }
      });

      it.each(cases)('%s on REST has only error', async (reason, status, headers, body) => {
        const reply = await send(`${server.url}/api/events`, { method: 'POST', headers: headers(), body });
        expect(reply.status, 'status').toBe(status);
        expect(Object.keys(reply.json ?? {}), 'top-level keys').toEqual(['error']);
        expect(reply.json?.error?.reason, 'reason').toBe(reason);
      });
    });

    describe('media type of early errors', () => {
      /** The Accept header of Apollo Client 4's HttpLink. */
      const APOLLO_CLIENT_ACCEPT = 'application/graphql-response+json,application/json;q=0.9';
      const deepQuery = `{ me ${'{'.repeat(200)}${'}'.repeat(200)} }`;
      const cases: Array<[string, number, () => RequestInit]> = [
        ['METHOD_NOT_ALLOWED', 405, () => ({ method: 'PUT' })],
        ['MISSING_QUERY', 400, () => ({ method: 'GET' })],
        [
          'MAX_DOCUMENT_DEPTH',
          400,
          () => ({
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
            body: JSON.stringify({ query: deepQuery }),
          }),
        ],
        [
          'INVALID_JSON',
          400,
          () => ({
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
            body: '{"query": ',
          }),
        ],
      ];

      // Apollo Client 4 reads a non-2xx reply as GraphQL errors only in
      // application/graphql-response+json, and throws a ServerError otherwise.
      it.each(cases)('%s follows the Accept header', async (name, status, init) => {
        const request = init();
        const expectedTypes: Array<[string, string]> = [
          [APOLLO_CLIENT_ACCEPT, 'application/graphql-response+json'],
          ['application/json', 'application/json'],
        ];
        for (const [accept, type] of expectedTypes) {
          const reply = await send(`${server.url}/graphql`, {
            ...request,
            headers: { ...(request.headers as Record<string, string>), accept },
          });
          expect(reply.status, `${accept}: status`).toBe(status);
          expect(reply.headers.get('content-type'), `${accept}: content type`).toBe(`${type}; charset=utf-8`);
          const extensions = reply.json?.errors?.[0]?.extensions;
          expect([extensions?.code, extensions?.reason, extensions?.limit], `${accept}: error`).toContain(name);
        }
      });
    });
  });

  describe('CSRF prevention', () => {
    const query = encodeURIComponent('{ __typename }');

    it('GET without preflight header rejected', async () => {
      const reply = await send(`${server.url}/graphql?query=${query}`);
      expect(reply.status).toBe(400);
      expect(reply.json?.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
      expect(reply.json?.errors?.[0]?.message).toContain('Cross-Site Request Forgery');
      expect(reply.json?.data).toBeUndefined();
    });

    it.each([
      ['no headers', {}],
      ['preflight header', { 'apollo-require-preflight': 'true' }],
    ])('GET without a query, %s, names it', async (_name, headers) => {
      const reply = await send(`${server.url}/graphql`, { headers });
      expect(reply.status, 'status').toBe(400);
      expect(reply.json?.errors?.[0]?.extensions?.reason, 'reason').toBe('MISSING_QUERY');
      expect(reply.json?.errors?.[0]?.message, 'message').toContain('GET /graphql has no query parameter.');
      expect(reply.json?.data, 'data').toBeUndefined();
    });

    it('GET without a query from a browser gets the Sandbox', async () => {
      const reply = await send(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(reply.status, 'status').toBe(200);
      expect(reply.headers.get('content-type'), 'content type').toContain('text/html');
    });

    it('GET with preflight header served', async () => {
      const reply = await send(`${server.url}/graphql?query=${query}`, {
        headers: { 'apollo-require-preflight': 'true' },
      });
      expect(reply.status).toBe(200);
      expect(reply.json?.data).toEqual({ __typename: 'Query' });
      expect(reply.headers.get('cache-control')).toBe('no-store');
    });

    it('text/plain POST rejected', async () => {
      const reply = await send(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'text/plain' },
        body: JSON.stringify({
          query: 'mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
          variables: { u: 'admin', p: 'admin-password-1' },
        }),
      });
      expect(reply.status).toBe(400);
      expect(reply.json?.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
      expect(reply.json?.errors?.[0]?.message).toContain('Cross-Site Request Forgery');
      expect(reply.json?.data).toBeUndefined();
      expect(reply.text).not.toContain('"token"');
    });

    it.each(['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x'])(
      '%s POST rejected',
      async (contentType) => {
        const reply = await send(`${server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': contentType },
          body: 'query=%7B__typename%7D',
        });
        // Fastify has no parser for these types, so the request never reaches Apollo.
        expect(reply.status).toBe(415);
        expect(httpError('/graphql', reply)?.code).toBe('BAD_USER_INPUT');
        expect(reply.text).not.toContain('"Query"');
      },
    );

    it('mutation over GET rejected', async () => {
      const mutation = encodeURIComponent(
        'mutation { createUser(input: { username: "csrf-made", password: "csrf-made-password", role: ADMIN }) { id } }',
      );
      const reply = await send(`${server.url}/graphql?query=${mutation}`, {
        headers: { 'apollo-require-preflight': 'true', authorization: `Bearer ${adminToken}` },
      });
      expect(reply.status).toBe(405);
      expect(reply.json?.errors?.[0]?.extensions?.code).toBe('BAD_REQUEST');
      const madeUser = await server.app.db.prisma.user.findUnique({ where: { username: 'csrf-made' } });
      expect(madeUser).toBeNull();
    });
  });

  describe.each(['test', 'production'] as const)('unexpected error, NODE_ENV=%s', (mode) => {
    let faulty: FaultyServer;
    let member: { id: string; token: string };

    beforeAll(async () => {
      faulty = servers.get(mode) as FaultyServer;
      member = await faulty.server.createUser(`faulty-${mode}`);
      faulty.faultyUsers.add(member.id);
    });

    it('masked on GraphQL', async () => {
      const reply = await send(`${faulty.server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
        body: JSON.stringify({
          query: 'mutation { sendEvent(event: { type: "fault_probe", occurredAt: "2026-01-05T09:00:00Z" }) { duplicate } }',
        }),
      });
      const error = reply.json?.errors?.[0];
      // The fault comes after the event was stored, so the message reports it.
      expect(error?.message).toMatch(/^Internal server error\. The new event of this request was stored before the failure\./);
      expect(error?.extensions?.eventsStored).toBe(true);
      expect(error?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
      expect(error?.extensions?.stacktrace).toBeUndefined();
      expect(reply.text).not.toContain(FAULT_MESSAGE);
      expect(reply.text).not.toMatch(/\.ts:\d+/);

      const requestId = reply.headers.get('x-request-id');
      const logged = logEntries(faulty.logLines).filter((entry) => entry.err?.message === FAULT_MESSAGE);
      expect(logged.map((entry) => entry.reqId)).toContain(requestId);
      const entry = logged.find((candidate) => candidate.reqId === requestId);
      expect(entry?.level).toBe(50);
      expect(entry?.err?.stack).toContain(FAULT_MESSAGE);
    });

    it('logged when the reply cannot be serialised', async () => {
      // Apollo serialises the reply after every plugin hook has run. A reply
      // longer than V8's maximum string length fails there with this RangeError.
      const stringify = JSON.stringify;
      const spy = vi.spyOn(JSON, 'stringify').mockImplementation((value: unknown, ...rest: unknown[]) => {
        if ((value as { data?: Record<string, unknown> } | null)?.data?.serialisationProbe !== undefined) {
          throw new RangeError('Invalid string length');
        }
        return stringify(value, ...(rest as [undefined]));
      });
      let reply: Reply;
      try {
        reply = await send(`${faulty.server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
          body: stringify({ query: '{ serialisationProbe: me { id } }' }),
        });
      } finally {
        spy.mockRestore();
      }

      expect(reply.status).toBe(500);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json).toEqual({ errors: [{ message: 'Internal server error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
      const requestId = reply.headers.get('x-request-id');
      const errors = logEntries(faulty.logLines).filter((entry) => entry.reqId === requestId && entry.level >= 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.err?.type).toBe('RangeError');
      expect(errors[0]?.err?.message).toBe('Invalid string length');
      expect(errors[0]?.statusCode).toBe(500);
      expect(JSON.stringify(errors)).not.toContain(member.token);
    });

    it('logged when the context fails to build', async () => {
      const lookupFault = 'injected fault: user lookup failed';
      const spy = vi.spyOn(faulty.server.app.services.users, 'findById').mockRejectedValueOnce(new Error(lookupFault));
      let reply: Reply;
      try {
        reply = await send(`${faulty.server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
          body: JSON.stringify({ query: '{ me { id } }' }),
        });
      } finally {
        spy.mockRestore();
      }

      expect(reply.status).toBe(500);
      expect(reply.json).toEqual({ errors: [{ message: 'Internal server error.', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
      expect(reply.text).not.toContain(lookupFault);
      const requestId = reply.headers.get('x-request-id');
      const errors = logEntries(faulty.logLines).filter((entry) => entry.reqId === requestId && entry.level >= 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.err?.message).toContain(lookupFault);
    });

    // pg-pool's error when no connection became free or opened in time.
    const POOL_TIMEOUT = 'timeout exceeded when trying to connect';
    it.each([
      {
        name: 'the token check',
        method: 'findById' as const,
        path: '/graphql',
        token: true,
        body: { query: '{ me { id } }' },
      },
      {
        name: 'a REST login',
        method: 'login' as const,
        path: '/auth/login',
        token: false,
        body: { username: 'nobody', password: 'not-a-password' },
      },
    ])('logged when $name loses the database', async ({ method, path, token, body }) => {
      const spy = vi.spyOn(faulty.server.app.services.users, method).mockRejectedValueOnce(new Error(POOL_TIMEOUT));
      let reply: Reply;
      try {
        reply = await send(`${faulty.server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${member.token}` } : {}) },
          body: JSON.stringify(body),
        });
      } finally {
        spy.mockRestore();
      }

      expect(reply.status).toBe(503);
      const requestId = reply.headers.get('x-request-id');
      const warnings = logEntries(faulty.logLines).filter((entry) => entry.reqId === requestId && entry.level >= 40);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]?.err?.message).toBe(POOL_TIMEOUT);
    });

    it('logged once when masked in execution', async () => {
      const reply = await send(`${faulty.server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
        body: JSON.stringify({
          query: 'mutation { sendEvent(event: { type: "fault_probe", occurredAt: "2026-01-05T11:00:00Z" }) { duplicate } }',
        }),
      });
      expect(reply.json?.errors?.[0]?.extensions?.code).toBe('INTERNAL_SERVER_ERROR');

      const requestId = reply.headers.get('x-request-id');
      const errors = logEntries(faulty.logLines).filter((entry) => entry.reqId === requestId && entry.level >= 50);
      expect(errors).toHaveLength(1);
      expect(errors[0]?.err?.message).toBe(FAULT_MESSAGE);
    });

    it('masked on REST', async () => {
      const reply = await send(`${faulty.server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${member.token}` },
        body: JSON.stringify({ type: 'fault_probe', occurred_at: '2026-01-05T10:00:00Z' }),
      });
      expect(reply.status).toBe(500);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json?.error?.code).toBe('INTERNAL_SERVER_ERROR');
      expect(reply.text).not.toContain(FAULT_MESSAGE);
      expect(reply.text).not.toMatch(/\.ts:\d+/);

      const requestId = reply.headers.get('x-request-id');
      expect(reply.json?.error?.requestId).toBe(requestId);
      const logged = logEntries(faulty.logLines).filter(
        (entry) => entry.err?.message === FAULT_MESSAGE && entry.reqId === requestId,
      );
      expect(logged).toHaveLength(1);
      expect(logged[0]?.level).toBe(50);
    });
  });

  describe('body cut off by the client', () => {
    it.each([
      ['closed connection', false],
      ['reset connection', true],
    ])('%s logged as a cut-off body', async (_case, reset) => {
      const faulty = servers.get('test') as FaultyServer;
      const requestId = `cut-body-${reset ? 'reset' : 'closed'}`;
      const { port } = new URL(faulty.server.url);
      const socket = connect(Number(port), '127.0.0.1');
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      const head = `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-request-id: ${requestId}\r\nContent-Length: 1000\r\n\r\n`;
      await new Promise<void>((resolve) => socket.write(`${head}{"query":`, () => resolve()));
      // Waits until the server has logged the request, so that the connection closes in the body, not in the headers.
      while (!logEntries(faulty.logLines).some((entry) => entry.reqId === requestId)) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      if (reset) {
        socket.resetAndDestroy();
      } else {
        socket.destroy();
      }
      const isOutcome = (entry: Record<string, any>) => entry.reqId === requestId && entry.err !== undefined;
      while (!logEntries(faulty.logLines).some(isOutcome)) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }

      const outcomes = logEntries(faulty.logLines).filter(isOutcome);
      expect(outcomes.map((entry) => entry.msg), 'log messages').toEqual([
        'the connection closed before the whole request body arrived',
      ]);
      expect(outcomes[0]?.level, 'log level').toBe(30);
    });
  });

  describe('request ids', () => {
    it('generated per response', async () => {
      const first = await send(`${server.url}/healthz`);
      const second = await send(`${server.url}/no-such-route`);
      const firstId = first.headers.get('x-request-id');
      const secondId = second.headers.get('x-request-id');
      expect(firstId).toMatch(UUID);
      expect(secondId).toMatch(UUID);
      expect(secondId).not.toBe(firstId);
    });

    it('client id echoed', async () => {
      const reply = await send(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'client-request-42' },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      expect(reply.headers.get('x-request-id')).toBe('client-request-42');
    });

    it.each([['x'.repeat(200)], ['has spaces and <tags>']])('client id %# replaced', async (sent) => {
      const reply = await send(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': sent },
        body: JSON.stringify({ query: '{ __typename }' }),
      });
      const requestId = reply.headers.get('x-request-id');
      expect(requestId).not.toBe(sent);
      expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe('bodies without a token', () => {
    // About 100 KB, above the 64 KiB that a request without a valid token may
    // send and below the production server's MAX_BODY_BYTES.
    const bigBody = JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(100_000) } });
    const json = { 'content-type': 'application/json' };

    const production = () => servers.get('production')!.server;

    /** Posts `bigBody` to the production server, in chunks without a declared length when `chunked` is true. */
    function postBig(path: string, headers: Record<string, string>, chunked: boolean): Promise<Reply> {
      const init = chunked ? { body: new Blob([bigBody]).stream(), duplex: 'half' } : { body: bigBody };
      return send(`${production().url}${path}`, { method: 'POST', headers, ...init } as RequestInit);
    }

    function expectRejected(reply: Reply, label: string): void {
      expect(reply.status, `${label}: status`).toBe(413);
      expect(reply.json?.errors?.[0]?.extensions?.reason, `${label}: reason`).toBe('ANONYMOUS_BODY_TOO_LARGE');
      expect(reply.json?.errors?.[0]?.extensions?.max, `${label}: max`).toBe(65_536);
    }

    it('rejects a large body without a token', async () => {
      expectRejected(await postBig('/graphql', json, false), 'declared length');
      expectRejected(await postBig('/graphql', json, true), 'chunked');
      expectRejected(await postBig('/graphql', { 'content-type': 'text/plain' }, true), 'chunked text/plain');
    });

    it('answers 401 to a large body with an invalid token', async () => {
      const invalid = { ...json, authorization: 'Bearer not.a.token' };
      const reply = await postBig('/graphql', invalid, false);
      expect(reply.status, 'status').toBe(401);
      expect(reply.headers.get('www-authenticate'), 'challenge').toBe('Bearer error="invalid_token"');
      expect(reply.json?.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_TOKEN');

      const chunked = await postBig('/api/events', invalid, true);
      expect(chunked.status, 'chunked: status').toBe(401);
      expect(chunked.json?.error?.reason, 'chunked: reason').toBe('INVALID_TOKEN');
    });

    it.each([false, true])('accepts a large body with a token, chunked: %s', async (chunked) => {
      const reply = await postBig('/graphql', { ...json, authorization: `Bearer ${await production().adminToken()}` }, chunked);
      expect(reply.status).toBe(200);
      expect(reply.json?.data).toEqual({ __typename: 'Query' });
    });
  });

  describe('routes', () => {
    it.each([
      ['GET', '/no-such-route'],
      ['POST', '/no-such-route'],
    ])('%s %s is JSON 404', async (method, path) => {
      const reply = await send(`${server.url}${path}`, { method });
      expect(reply.status).toBe(404);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json?.error?.code).toBe('NOT_FOUND');
    });

    it.each([
      ['GET', '/api/events', 'POST'],
      ['GET', '/auth/login', 'POST'],
      ['POST', '/healthz', 'GET, HEAD'],
    ])('%s %s is JSON 405', async (method, path, allow) => {
      const reply = await send(`${server.url}${path}`, { method });
      expect(reply.status, 'status').toBe(405);
      expect(reply.headers.get('allow'), 'Allow').toBe(allow);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(reply.json?.error?.code, 'code').toBe('METHOD_NOT_ALLOWED');
      expect(reply.json?.error?.message, 'message').toContain(`use ${allow}`);
    });

    it('DELETE /graphql is a GraphQL 405', async () => {
      const allow = 'GET, HEAD, POST, OPTIONS';
      const reply = await send(`${server.url}/graphql`, { method: 'DELETE' });
      expect(reply.status, 'status').toBe(405);
      expect(reply.headers.get('allow'), 'Allow').toBe(allow);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(Object.keys(reply.json ?? {}), 'top-level keys').toEqual(['errors']);
      expect(reply.json?.errors?.[0]?.extensions?.code, 'code').toBe('METHOD_NOT_ALLOWED');
      expect(reply.json?.errors?.[0]?.message, 'message').toContain(`use ${allow}`);
    });

    // Node rejects a request line and headers above 16 KB before any route
    // runs, as a long GET of a report with a large expression in `variables`.
    it.each([
      ['application/graphql-response+json,application/json;q=0.9', 'application/graphql-response+json'],
      ['application/json', 'application/json'],
    ])('long GET /graphql URL is a GraphQL 431 (Accept %s)', async (accept, type) => {
      const variables = encodeURIComponent(JSON.stringify({ pad: 'x'.repeat(20_000) }));
      const reply = await send(`${server.url}/graphql?query=${encodeURIComponent('{ __typename }')}&variables=${variables}`, {
        headers: { 'apollo-require-preflight': 'true', accept },
      });
      expect(reply.status, 'status').toBe(431);
      expect(reply.headers.get('content-type'), 'content type').toBe(`${type}; charset=utf-8`);
      expect(Object.keys(reply.json ?? {}), 'top-level keys').toEqual(['errors']);
      expect(reply.json?.errors?.[0]?.extensions?.code, 'code').toBe('BAD_REQUEST');
      expect(reply.json?.errors?.[0]?.extensions?.reason, 'reason').toBe('HEADERS_TOO_LARGE');
      expect(reply.json?.errors?.[0]?.message, 'message').toContain('POST');
    });

    // A client matches pipelined replies to its requests by their order, so
    // the 431 of the second request must not take the place of the first's reply.
    it('pipelined 431 follows earlier reply', async () => {
      const { port } = new URL(server.url);
      const socket = connect(Number(port), '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      const first = `GET /graphql?query=${encodeURIComponent('{ __typename }')} HTTP/1.1\r\nHost: 127.0.0.1\r\napollo-require-preflight: true\r\n\r\n`;
      const second = `GET /graphql?query=${'x'.repeat(20_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
      socket.write(first + second);
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));

      const replies = Buffer.concat(received).toString('utf8');
      const statusLines = replies.match(/HTTP\/1\.1 \d{3}/g) ?? [];
      expect(statusLines, 'status lines in order').toEqual(['HTTP/1.1 200', 'HTTP/1.1 431']);
      expect(replies, 'first reply').toContain('"__typename":"Query"');
    });

    it('long REST header is a REST 431', async () => {
      const reply = await send(`${server.url}/api/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-pad': 'x'.repeat(20_000) },
        body: '{}',
      });
      expect(reply.status, 'status').toBe(431);
      expect(reply.headers.get('content-type'), 'content type').toBe('application/json; charset=utf-8');
      expect(Object.keys(reply.json ?? {}), 'top-level keys').toEqual(['error']);
      expect(reply.json?.error?.code, 'code').toBe('BAD_REQUEST');
      expect(reply.json?.error?.reason, 'reason').toBe('HEADERS_TOO_LARGE');
    });

    // Only a CORS preflight carries Access-Control-Request-Method. A plain
    // OPTIONS request gets the route's methods in Allow (RFC 9110, section 9.3.7).
    it.each([
      ['no headers', {}],
      ['a JSON Content-Type', { 'content-type': 'application/json' }],
      ['the preflight header', { 'apollo-require-preflight': 'true' }],
    ])('OPTIONS /graphql with %s lists methods', async (_name, headers) => {
      const reply = await send(`${server.url}/graphql`, { method: 'OPTIONS', headers });
      expect(reply.status, 'status').toBe(204);
      expect(reply.headers.get('allow'), 'Allow').toBe('GET, HEAD, POST, OPTIONS');
      expect(reply.text, 'body').toBe('');
    });

    it('HEAD /graphql matches GET', async () => {
      const page = await fetch(`${server.url}/graphql`, { method: 'HEAD', headers: { accept: 'text/html' } });
      expect(page.status, 'status of the page').toBe(200);
      expect(page.headers.get('content-type'), 'content type of the page').toMatch(/^text\/html/);

      const query = await fetch(`${server.url}/graphql?query=${encodeURIComponent('{ __typename }')}`, {
        method: 'HEAD',
        headers: { 'apollo-require-preflight': 'true' },
      });
      expect(query.status, 'status of a query').toBe(200);
      expect(query.headers.get('content-type'), 'content type of a query').toMatch(/^application\/json/);
      expect(await query.text(), 'body of a query').toBe('');
    });

    it('HEAD /graphql checks document depth', async () => {
      const deep = `{ ${'a { '.repeat(200)}b${' }'.repeat(200)} }`;
      const reply = await fetch(`${server.url}/graphql?query=${encodeURIComponent(deep)}`, {
        method: 'HEAD',
        headers: { 'apollo-require-preflight': 'true' },
      });
      expect(reply.status).toBe(400);
    });

    it('404 lists the routes', async () => {
      const reply = await send(`${server.url}/graphq`, { method: 'POST' });
      expect(reply.json?.error?.message).toBe(
        'No route for POST /graphq. GraphQL is served at /graphql (POST, or GET in a browser for the Sandbox), REST at POST /auth/login and POST /api/events, health at GET /healthz and GET /readyz.',
      );
    });

    it('root redirects browsers', async () => {
      const browser = await fetch(`${server.url}/`, { headers: { accept: 'text/html,*/*' }, redirect: 'manual' });
      expect(browser.status, 'status for a browser').toBe(302);
      expect(browser.headers.get('location'), 'location').toBe('/graphql');

      const client = await send(`${server.url}/`);
      expect(client.status, 'status for another client').toBe(404);
      expect(client.json?.error?.code, 'code for another client').toBe('NOT_FOUND');
    });

    it('healthz 200', async () => {
      const reply = await send(`${server.url}/healthz`);
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({ status: 'ok' });
    });

    it('readyz 200', async () => {
      const reply = await send(`${server.url}/readyz`);
      expect(reply.status).toBe(200);
      expect(reply.json?.status).toBe('ok');
      expect(reply.json?.database).toBe(server.app.db.kind);
    });

    it('readyz 503 for a stalled ping', async () => {
      // As a database connection that stops responding without closing.
      const db = server.app.db as { ping: () => Promise<void> };
      const ping = db.ping;
      db.ping = () => new Promise<void>(() => {});
      try {
        // Without the readiness bound, this request never returns and the test times out.
        const reply = await send(`${server.url}/readyz`);

        expect(reply.status).toBe(503);
        expect(reply.json?.unreachable).toEqual(['database']);
      } finally {
        db.ping = ping;
      }
    });

    it('sandbox page without cookies or telemetry', async () => {
      const response = await fetch(`${server.url}/graphql`, { headers: { accept: 'text/html' } });
      const html = await response.text();

      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(html).toContain('"runTelemetry":false');
      expect(html).toContain('"includeCookies":false');
      expect(html).toContain('mutation Login');
    });
  });
});

/** Returns a loopback port on which nothing listens (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') {
    throw new Error('The probe server has no TCP address.');
  }
  return address.port;
}

describe('ANONYMOUS_MAX_BODY_BYTES', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { ANONYMOUS_MAX_BODY_BYTES: '4096' },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('limits bodies without a token', async () => {
    const body = JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(5000) } });
    const reply = await send(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

    expect(reply.status, 'status').toBe(413);
    expect(reply.json?.errors?.[0]?.extensions?.limit, 'limit').toBe('ANONYMOUS_MAX_BODY_BYTES');
    expect(reply.json?.errors?.[0]?.extensions?.max, 'max').toBe(4096);
    expect(reply.json?.errors?.[0]?.message, 'message').toContain('above the maximum of 4096 bytes (ANONYMOUS_MAX_BODY_BYTES)');
  });

  it('keeps smaller bodies', async () => {
    const body = JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(3000) } });
    const reply = await send(`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

    expect(reply.status, 'status').toBe(200);
    expect(reply.json?.data, 'data').toEqual({ __typename: 'Query' });
  });
});

/**
 * Sends `head` on a raw connection, then `piece` every 50 ms until the server
 * closes the connection, and returns the reply text and its JSON body.
 */
async function trickleUntilClosed(
  server: TestServer,
  head: string,
  piece: string,
): Promise<{ reply: string; body: { error?: Record<string, unknown> } }> {
  const { port } = new URL(server.url);
  const socket = connect(Number(port), '127.0.0.1');
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.write(head);
  const trickle = setInterval(() => socket.write(piece), 50);
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  clearInterval(trickle);

  const reply = Buffer.concat(received).toString('utf8');
  const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4)) as { error?: Record<string, unknown> };
  return { reply, body };
}

/** Sends a login body a byte at a time and checks the 408 that names REQUEST_TIMEOUT_MS at `limitMs`. */
async function expectSlowLoginBodyTimedOut(server: TestServer, limitMs: number): Promise<void> {
  const { reply, body } = await trickleUntilClosed(
    server,
    'POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
    ' ',
  );

  expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
  expect(body.error?.reason, 'reason').toBe('REQUEST_TIMEOUT');
  expect(body.error?.limit, 'limit').toBe('REQUEST_TIMEOUT_MS');
  expect(body.error?.max, 'max').toBe(limitMs);
  expect(body.error?.message, 'message').toContain(`within ${limitMs} ms (REQUEST_TIMEOUT_MS)`);
}

describe('REQUEST_TIMEOUT_MS', () => {
  const REQUEST_TIMEOUT_MS = 500;
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('closes a body sent a byte at a time', { timeout: 15_000 }, async () => {
    // The client is never idle, so only a limit on the whole request ends it.
    await expectSlowLoginBodyTimedOut(server, REQUEST_TIMEOUT_MS);
  });

  it('answers a slow /graphql body as GraphQL', { timeout: 15_000 }, async () => {
    const { reply, body } = await trickleUntilClosed(
      server,
      'POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
      ' ',
    );
    const graphqlBody = body as { error?: unknown; errors?: Array<{ message?: string; extensions?: Record<string, unknown> }> };

    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
    expect(Object.keys(graphqlBody), 'top-level keys').toEqual(['errors']);
    expect(graphqlBody.errors?.[0]?.extensions?.reason, 'reason').toBe('REQUEST_TIMEOUT');
    expect(graphqlBody.errors?.[0]?.extensions?.limit, 'limit').toBe('REQUEST_TIMEOUT_MS');
    expect(graphqlBody.errors?.[0]?.message, 'message').toContain(`within ${REQUEST_TIMEOUT_MS} ms (REQUEST_TIMEOUT_MS)`);
  });

  it.each([
    ['application/graphql-response+json,application/json;q=0.9', 'application/graphql-response+json'],
    ['application/json', 'application/json'],
  ])('slow /graphql body 408 follows Accept %s', { timeout: 15_000 }, async (accept, type) => {
    const { reply } = await trickleUntilClosed(
      server,
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: ${accept}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`,
      ' ',
    );

    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
    expect(reply, 'content type').toContain(`\r\nContent-Type: ${type}; charset=utf-8\r\n`);
  });

  it('names REQUEST_TIMEOUT_MS for slow headers', { timeout: 15_000 }, async () => {
    // Node derives the headers limit from REQUEST_TIMEOUT_MS below 60 s, so the message names the setting.
    const { reply, body } = await trickleUntilClosed(server, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X-Padding: x\r\n');

    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
    expect(body.error?.limit, 'limit').toBe('REQUEST_TIMEOUT_MS');
    expect(body.error?.max, 'max').toBe(REQUEST_TIMEOUT_MS);
  });

  it('malformed request is a 400', async () => {
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    // A header line without a colon is a parse error, not a timeout.
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n');
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));

    const reply = Buffer.concat(received).toString('utf8');
    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 400 /);
    expect(reply, 'body').not.toContain('REQUEST_TIMEOUT');
    expect(reply, 'reason').toContain('"reason":"INVALID_HTTP_REQUEST"');
  });

  // A body that fails to parse never completes, so its own reply must not
  // wait for it: the 400 comes at once, not the 408 of REQUEST_TIMEOUT_MS.
  it.each([
    ['body with a bad chunk', 'Transfer-Encoding: chunked\r\n\r\n5\r\n{"que\r\nzz\r\n', false],
    ['body cut off by the client', 'Content-Length: 1000\r\n\r\n{"query":', true],
  ])('%s is a 400', async (_case, rest, closeWrite) => {
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write(`POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${rest}`);
    if (closeWrite) {
      // The client stops sending but keeps reading, as a cancelled upload can.
      socket.end();
    }
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));

    const reply = Buffer.concat(received).toString('utf8');
    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 400 /);
    expect(reply, 'body').not.toContain('REQUEST_TIMEOUT');
    expect(reply, 'reason').toContain('"reason":"INVALID_HTTP_REQUEST"');
  });

  it('keeps serving after a timeout', async () => {
    const reply = await send(`${server.url}/healthz`);
    expect(reply.status).toBe(200);
  });
});

describe('request headers timeout', () => {
  const REQUEST_TIMEOUT_MS = 2000;
  const HEADERS_TIMEOUT_MS = 300;
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) },
    });
    // Node's own limit on headers is 60 s below a longer REQUEST_TIMEOUT_MS. A lower one keeps the test short.
    server.app.fastify.server.headersTimeout = HEADERS_TIMEOUT_MS;
  });

  afterAll(async () => {
    await server?.close();
  });

  it('names the headers limit', { timeout: 15_000 }, async () => {
    // One header line at a time, so that the headers never end.
    const { reply, body } = await trickleUntilClosed(server, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n', 'X-Padding: x\r\n');

    expect(reply, 'status line').toMatch(/^HTTP\/1\.1 408 /);
    expect(body.error?.reason, 'reason').toBe('REQUEST_TIMEOUT');
    expect(body.error?.max, 'max').toBe(HEADERS_TIMEOUT_MS);
    expect(body.error?.message, 'message').toContain(`headers were not received in full within ${HEADERS_TIMEOUT_MS} ms`);
    expect(body.error?.message, 'message').not.toContain('REQUEST_TIMEOUT_MS');
  });

  it('names the request limit for a slow body', { timeout: 15_000 }, async () => {
    // The headers came in full, so the longer limit on the whole request ends it, not the one for headers.
    await expectSlowLoginBodyTimedOut(server, REQUEST_TIMEOUT_MS);
  });
});

describe('REQUEST_TIMEOUT_MS of 0', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { REQUEST_TIMEOUT_MS: '0' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('keeps the 60 s headers limit', () => {
    // A headers timeout of 0 would let a client send its headers a line at a time for ever.
    const http = server.app.fastify.server;
    expect(http.requestTimeout, 'request timeout').toBe(0);
    expect(http.headersTimeout, 'headers timeout').toBe(60_000);
  });
});

describe('SEND_TIMEOUT_MS', () => {
  const SEND_TIMEOUT_MS = 300;
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS), MAX_META_BYTES: '65536' },
    });
    adminToken = await server.adminToken();
    // About 30 MB of meta, far more than loopback socket buffers take in.
    const meta = { pad: 'm'.repeat(60_000) };
    const events = Array.from({ length: 500 }, () => ({ type: 'stalled_reply', meta }));
    const stored = await server.gql('mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }', { events }, adminToken);
    expect(stored.data?.sendEvents?.storedCount).toBe(500);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('closes a reply the client stops reading', { timeout: 30_000 }, async () => {
    const body = JSON.stringify({ query: '{ events(first: 500, filter: { types: ["stalled_reply"] }) { nodes { meta } } }' });
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${adminToken}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    socket.pause();
    // Far longer than SEND_TIMEOUT_MS, so the server gives up on the reply meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 20 * SEND_TIMEOUT_MS));
    // A connection kept alive stays open after a whole reply, so the wait also ends when all of it came.
    const lengthOf = (reply: Buffer) => {
      const headerEnd = reply.indexOf('\r\n\r\n');
      const declared = /content-length: (\d+)/i.exec(reply.subarray(0, Math.max(headerEnd, 0)).toString('latin1'))?.[1];
      return { headerEnd, declared: declared === undefined ? Infinity : Number(declared) };
    };
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.on('data', () => {
        const reply = Buffer.concat(received);
        const { headerEnd, declared } = lengthOf(reply);
        if (headerEnd >= 0 && reply.length - headerEnd - 4 >= declared) {
          resolve();
        }
      });
      socket.resume();
    });
    socket.destroy();

    const reply = Buffer.concat(received);
    const { headerEnd, declared } = lengthOf(reply);
    expect(reply.subarray(0, 16).toString('latin1'), 'status line').toMatch(/^HTTP\/1\.1 200 /);
    expect(declared, 'declared length').toBeGreaterThan(30_000_000);
    expect(reply.length - headerEnd - 4, 'bytes received').toBeLessThan(declared);
  });

  it('keeps serving after a stalled reply', async () => {
    const reply = await send(`${server.url}/healthz`);
    expect(reply.status).toBe(200);
  });
});

describeWithPostgres('SEND_TIMEOUT_MS with pipelined requests', () => {
  const SEND_TIMEOUT_MS = 300;
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS) } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('keeps a long pipelined request', { timeout: 30_000 }, async () => {
    const member = await server.createUser('pipelined_member');
    // A row lock on the user makes sendEvent wait, as a slow request does, until the commit.
    const blocker = new pg.Client({ connectionString: server.databaseUrl! });
    await blocker.connect();
    await blocker.query('BEGIN');
    await blocker.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [member.id]);

    const body = JSON.stringify({ query: 'mutation { sendEvent(event: { type: "pipelined" }) { duplicate } }' });
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    // Ends when the second reply came, or when the server closed the connection.
    const done = new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.on('data', (chunk: Buffer) => {
        received.push(chunk);
        if (Buffer.concat(received).includes('"duplicate"')) {
          resolve();
        }
      });
    });
    // Both requests in one write: the second runs while the first reply goes out.
    socket.write(
      'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' +
        `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${member.token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // Far longer than SEND_TIMEOUT_MS, which must not count while the second request runs.
    await new Promise((resolve) => setTimeout(resolve, 10 * SEND_TIMEOUT_MS));
    await blocker.query('COMMIT');
    await blocker.end();
    await done;
    socket.destroy();

    const replies = Buffer.concat(received).toString('utf8');
    expect(replies.match(/HTTP\/1\.1 \d+/g), 'status lines').toEqual(['HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(replies, 'second reply').toContain('{"data":{"sendEvent":{"duplicate":false}}}');
  });
});

describeWithRedis('readiness timeout', () => {
  let server: TestServer;
  const logLines: string[] = [];

  beforeAll(async () => {
    const port = await closedPort();
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(chunk.toString('utf8'));
        callback();
      },
    });
    // Commands wait up to a minute for Redis to come back; the probe must not.
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      logger: pino({ level: 'info' }, stream),
      env: {
        REDIS_URL: `redis://127.0.0.1:${port}`,
        REDIS_COMMAND_TIMEOUT_MS: '60000',
        REDIS_CONNECT_TIMEOUT_MS: '200',
        READINESS_TIMEOUT_MS: '300',
      },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('readyz names timed-out Redis', async () => {
    const reply = await send(`${server.url}/readyz`);

    expect(reply.status, 'status').toBe(503);
    expect(reply.json?.unreachable, 'unreachable dependencies').toEqual(['redis']);
    expect(reply.json?.message, 'message').toBe('Redis is not reachable.');
    const failures = logEntries(logLines).filter((entry) => entry.msg === 'readiness check failed');
    expect(failures.map((entry) => entry.dependency), 'dependencies in the log').toEqual(['redis']);
    expect(failures[0]?.err?.message, 'logged cause').toBe('the ping timed out after 300 ms (READINESS_TIMEOUT_MS)');
    expect(server.app.config.redis.commandTimeoutMs, 'Redis command timeout').toBe(60_000);
  });
});

describeWithRedis('readiness without Redis', () => {
  const redisPassword = 'redis-password-not-in-output';
  let server: TestServer;
  const logLines: string[] = [];

  beforeAll(async () => {
    const port = await closedPort();
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(chunk.toString('utf8'));
        callback();
      },
    });
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      logger: pino({ level: 'debug' }, stream),
      env: {
        REDIS_URL: `redis://:${redisPassword}@127.0.0.1:${port}`,
        REDIS_COMMAND_TIMEOUT_MS: '200',
        REDIS_CONNECT_TIMEOUT_MS: '200',
      },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('readyz 503', async () => {
    const reply = await send(`${server.url}/readyz`);
    expect(reply.status).toBe(503);
    expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
    expect(reply.json?.status).toBe('unavailable');
    expect(reply.text).not.toContain(redisPassword);
    expect(reply.json?.unreachable, 'unreachable dependencies').toEqual(['redis']);
    expect(reply.json?.message, 'message').toBe('Redis is not reachable.');
  });

  it('login without Redis gets 503', async () => {
    const reply = await send(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { login(username: "admin", password: "admin-password-1") { token } }' }),
    });
    const error = reply.json?.errors?.[0];

    expect(reply.status, 'HTTP status').toBe(503);
    expect(reply.headers.get('retry-after'), 'Retry-After').toBe('1');
    expect(error?.extensions?.code, 'code').toBe('SERVICE_UNAVAILABLE');
    expect(error?.extensions?.reason, 'reason').toBe('REDIS_UNAVAILABLE');
    expect(error?.message, 'message').not.toMatch(/addRunning|acquireUserLock/);
    const failures = logEntries(logLines).filter((entry) => entry.msg === 'redis command failed');
    expect(failures.map((entry) => entry.operation), 'operations named in the log').toContain('addRunning');
  });

  it('healthz still 200', async () => {
    const reply = await send(`${server.url}/healthz`);
    expect(reply.status).toBe(200);
  });

  it('Redis password absent from logs', () => {
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('')).not.toContain(redisPassword);
  });
});
