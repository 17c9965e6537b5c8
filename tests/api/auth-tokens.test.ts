/**
 * Access tokens over the real HTTP stack. Every kind of bad token is rejected
 * with UNAUTHENTICATED on GraphQL and 401 on REST. A well-formed token that
 * this file builds itself is accepted, so each rejection comes from the one
 * defect that its case introduces.
 */
import { request as httpRequest } from 'node:http';

import { generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

interface RestReply {
  status: number;
  contentType: string | null;
  body: { error?: { code?: string; reason?: string; message?: string } } & Record<string, unknown>;
}

type ClaimOverrides = { [K in 'sub' | 'iat' | 'exp' | 'iss' | 'aud' | 'role' | 'pad']?: unknown };

describe('access tokens over HTTP', () => {
  let server: TestServer;
  let secret: Uint8Array;
  let member: { id: string; token: string };

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false });
    const configured = server.app.config.auth.jwtSecret;
    if (configured === null) {
      throw new Error('The test server has no JWT_SECRET.');
    }
    secret = new TextEncoder().encode(configured);
    member = await server.createUser('token-member');
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Returns the claims of a valid member token with `overrides` applied. An `undefined` override removes the claim. */
  function claims(overrides: ClaimOverrides = {}): JWTPayload {
    const now = Math.floor(Date.now() / 1000);
    const payload: Record<string, unknown> = {
      sub: member.id,
      role: 'MEMBER',
      iss: server.app.config.auth.jwtIssuer,
      aud: server.app.config.auth.jwtAudience,
      iat: now - 10,
      exp: now + 600,
    };
    for (const [name, value] of Object.entries(overrides)) {
      if (value === undefined) {
        delete payload[name];
      } else {
        payload[name] = value;
      }
    }
    return payload as JWTPayload;
  }

  function sign(payload: JWTPayload, alg = 'HS256', key: Uint8Array | CryptoKey = secret): Promise<string> {
    return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT' }).sign(key);
  }

  function base64UrlJson(value: unknown): string {
    return Buffer.from(JSON.stringify(value)).toString('base64url');
  }

  async function gqlMe(token: string) {
    return server.gql<{ me: { id: string } }>('{ me { id role } }', {}, token);
  }

  async function postEvent(authorization: string | null): Promise<RestReply> {
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(authorization !== null ? { authorization } : {}),
      },
      body: JSON.stringify({ type: 'token_probe', occurred_at: '2026-01-05T09:00:00Z' }),
    });
    return {
      status: response.status,
      contentType: response.headers.get('content-type'),
      body: (await response.json()) as RestReply['body'],
    };
  }

  /** Posts JSON with one Authorization line per entry of `authorizations`, which `fetch` would join into one line. */
  function postWithHeaderLines(
    url: string,
    authorizations: readonly string[],
    body: string,
  ): Promise<{ status: number; challenge: string | undefined; body: Record<string, any> }> {
    return new Promise((resolve, reject) => {
      // Headers given as a list of lines get no defaults, so Host and Content-Length are set here.
      const headers = ['host', new URL(url).host, 'content-type', 'application/json', 'content-length', String(Buffer.byteLength(body))];
      for (const authorization of authorizations) {
        headers.push('authorization', authorization);
      }
      const request = httpRequest(url, { method: 'POST', headers });
      request.on('error', reject);
      request.on('response', (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => {
          const challenge = response.headers['www-authenticate'];
          resolve({ status: response.statusCode ?? 0, challenge, body: JSON.parse(text) as Record<string, any> });
        });
      });
      request.end(body);
    });
  }

  async function storedProbeEvents(): Promise<number> {
    const rows = await server.app.db.sql.query<{ count: string }>(
      `SELECT count(*)::text AS count FROM events WHERE type = 'token_probe'`,
    );
    return Number(rows[0]?.count);
  }

  it('valid token accepted', async () => {
    const token = await sign(claims());

    const result = await gqlMe(token);
    expect(result.errors).toBeUndefined();
    expect(result.data?.me).toEqual({ id: member.id, role: 'MEMBER' });

    const rest = await postEvent(`Bearer ${token}`);
    expect(rest.status).toBe(200);
  });

  const cases: Array<[string, () => Promise<string>]> = [
    ['alg none', async () => new UnsecuredJWT(claims()).encode()],
    [
      'alg none with signature',
      async () => {
        const [, payload, signature] = (await sign(claims())).split('.');
        return `${base64UrlJson({ alg: 'none', typ: 'JWT' })}.${payload}.${signature}`;
      },
    ],
    [
      'tampered signature',
      async () => {
        const [header, payload, signature = ''] = (await sign(claims())).split('.');
        // A middle character, because the last one also carries padding bits.
        const flipped = signature[10] === 'A' ? 'B' : 'A';
        return `${header}.${payload}.${signature.slice(0, 10)}${flipped}${signature.slice(11)}`;
      },
    ],
    [
      'tampered payload',
      async () => {
        const [header, , signature] = (await sign(claims())).split('.');
        return `${header}.${base64UrlJson(claims({ role: 'ADMIN' }))}.${signature}`;
      },
    ],
    ['HS512 same secret', async () => sign(claims(), 'HS512')],
    [
      'RS256 key pair',
      async () => {
        const { privateKey } = await generateKeyPair('RS256');
        return sign(claims(), 'RS256', privateKey);
      },
    ],
    [
      'exp in the past',
      async () => {
        const now = Math.floor(Date.now() / 1000);
        return sign(claims({ iat: now - 120, exp: now - 60 }));
      },
    ],
    ['exp missing', async () => sign(claims({ exp: undefined }))],
    ['sub missing', async () => sign(claims({ sub: undefined }))],
    ['sub empty', async () => sign(claims({ sub: '' }))],
    ['iat missing', async () => sign(claims({ iat: undefined }))],
    ['iat in the future', async () => sign(claims({ iat: Math.floor(Date.now() / 1000) + 300 }))],
    [
      'lifetime above JWT_TTL_SECONDS',
      async () => {
        const now = Math.floor(Date.now() / 1000);
        return sign(claims({ iat: now - 2 * server.app.config.auth.jwtTtlSeconds, exp: now + 600 }));
      },
    ],
    ['wrong issuer', async () => sign(claims({ iss: 'someone-else' }))],
    ['wrong audience', async () => sign(claims({ aud: 'someone-else' }))],
    ['unknown role', async () => sign(claims({ role: 'ROOT' }))],
    ['wrong secret', async () => sign(claims(), 'HS256', new TextEncoder().encode('another-secret-that-is-32-bytes-long!'))],
    ['garbage', async () => 'not-a-token'],
    ['three garbage parts', async () => 'abc.def.ghi'],
    ['10 KB signed token', async () => sign(claims({ pad: 'x'.repeat(10_240) }))],
    [
      'deleted user',
      async () => {
        const doomed = await server.createUser('token-deleted');
        await server.app.db.prisma.user.delete({ where: { id: doomed.id } });
        return doomed.token;
      },
    ],
  ];

  it.each(cases)('%s rejected', async (_name, makeToken) => {
    const token = await makeToken();
    const before = await storedProbeEvents();

    const result = await gqlMe(token);
    expect(result.data ?? null).toBeNull();
    expect(result.errors).toHaveLength(1);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.status).toBe(401);

    const rest = await postEvent(`Bearer ${token}`);
    expect(rest.status).toBe(401);
    expect(rest.contentType).toMatch(/^application\/json/);
    expect(rest.body.error?.code).toBe('UNAUTHENTICATED');
    expect(await storedProbeEvents()).toBe(before);
  });

  it('rejections share one message', async () => {
    const tokens = [
      await sign(claims({ exp: undefined })),
      await sign(claims(), 'HS512'),
      'not-a-token',
      await sign(claims({ pad: 'x'.repeat(10_240) })),
    ];
    const deleted = await server.createUser('token-deleted-message');
    await server.app.db.prisma.user.delete({ where: { id: deleted.id } });
    tokens.push(deleted.token);

    const messages = new Set<string | undefined>();
    const reasons = new Set<unknown>();
    for (const token of tokens) {
      const result = await gqlMe(token);
      messages.add(result.errors?.[0]?.message);
      reasons.add(result.errors?.[0]?.extensions?.reason);
      const rest = await postEvent(`Bearer ${token}`);
      messages.add(rest.body.error?.message);
      reasons.add(rest.body.error?.reason);
    }
    // One message and reason for all, so a client cannot tell which check failed.
    expect([...reasons]).toEqual(['INVALID_TOKEN']);
    expect(messages.size).toBe(1);
  });

  it('401 names the Bearer scheme', async () => {
    for (const [url, init] of [
      [`${server.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ me { id } }"}' }],
      [`${server.url}/api/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"x"}' }],
    ] as const) {
      const response = await fetch(url, init);
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toBe('Bearer');
    }
  });

  it('401 names the error of a rejected token', async () => {
    const cases = [
      ['Bearer not.a.token', 'Bearer error="invalid_token"'],
      ['Bearer', 'Bearer error="invalid_request"'],
      ['bearer one two', 'Bearer error="invalid_request"'],
      // RFC 6750 section 3.1: no error code for a scheme the server does not support.
      ['Basic YWRtaW46YWRtaW4=', 'Bearer'],
    ] as const;
    for (const [authorization, challenge] of cases) {
      for (const [url, body] of [
        [`${server.url}/graphql`, '{"query":"{ me { id } }"}'],
        [`${server.url}/api/events`, '{"type":"x"}'],
      ] as const) {
        const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization }, body });
        expect(response.status, `${authorization} at ${url}: status`).toBe(401);
        expect(response.headers.get('www-authenticate'), `${authorization} at ${url}: challenge`).toBe(challenge);
      }
    }
  });

  it('401 for a wrong password blames no token', async () => {
    const authorization = `Bearer ${member.token}`;
    const rest = await fetch(`${server.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ username: 'token-member', password: 'wrong-password' }),
    });
    expect(rest.status, 'REST status').toBe(401);
    expect(rest.headers.get('www-authenticate'), 'REST challenge').toBe('Bearer');

    const graphql = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ query: 'mutation { login(username: "token-member", password: "wrong-password") { token } }' }),
    });
    expect(graphql.status, 'GraphQL status').toBe(401);
    expect(graphql.headers.get('www-authenticate'), 'GraphQL challenge').toBe('Bearer');
  });

  it('mutation with a stored field keeps 200', async () => {
    const query = `mutation {
      sendEvent(event: { id: "kept-before-denied", type: "token_probe", occurredAt: "2026-01-05T09:00:00Z" }) { event { id } }
      definePairType(input: { name: "denied", startType: "denied_started", endType: "denied_ended" }) { name }
    }`;
    const result = await server.gql(query, {}, member.token);

    // definePairType is denied, which nulls data, but the event was stored first.
    expect(result.data ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(result.status).toBe(200);
    const events = await server.gql<{ events: { nodes: Array<{ clientId: string }> } }>(
      '{ events(filter: { types: ["token_probe"] }) { nodes { clientId } } }',
      {},
      member.token,
    );
    expect(events.data?.events.nodes.map((node) => node.clientId)).toContain('kept-before-denied');
  });

  it('no token on protected query', async () => {
    const result = await server.gql('{ me { id } }');
    expect(result.data ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.status).toBe(401);

    const rest = await postEvent(null);
    expect(rest.status).toBe(401);
    expect(rest.body.error?.code).toBe('UNAUTHENTICATED');
  });

  it.each([
    ['Basic scheme', 'Basic YWRtaW46YWRtaW4='],
    ['Bearer without token', 'Bearer '],
    ['two tokens', 'Bearer a.b.c d.e.f'],
    ['token without scheme', 'a.b.c'],
  ])('%s header rejected', async (_name, authorization) => {
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: JSON.stringify({ query: '{ me { id } }' }),
    });
    const body = (await response.json()) as { errors?: Array<{ message?: string; extensions?: { code?: string; reason?: string } }> };
    expect(body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(body.errors?.[0]?.extensions?.reason, 'reason').toBe('MALFORMED_AUTHORIZATION');
    expect(body.errors?.[0]?.message, 'message').toContain('"Bearer "');

    const rest = await postEvent(authorization);
    expect(rest.status).toBe(401);
    expect(rest.body.error?.code).toBe('UNAUTHENTICATED');
  });

  it('two Authorization headers rejected', async () => {
    // Node keeps only the first Authorization line of a request, so a
    // service that read `request.headers` alone would act on one of two tokens.
    const valid = `Bearer ${member.token}`;
    const forged = `Bearer ${await sign(claims(), 'HS256', new TextEncoder().encode('another-secret-that-is-32-bytes-long!'))}`;
    const before = await storedProbeEvents();
    for (const headers of [[valid, forged], [forged, valid], [valid, valid], ['', valid]]) {
      for (const [path, body] of [
        ['/graphql', '{"query":"{ me { id } }"}'],
        ['/api/events', JSON.stringify({ type: 'token_probe', occurred_at: '2026-01-05T09:00:00Z' })],
      ] as const) {
        const reply = await postWithHeaderLines(`${server.url}${path}`, headers, body);
        const error = (reply.body.errors?.[0] ?? reply.body.error) as { extensions?: { reason?: string }; reason?: string } | undefined;

        expect(reply.status, `${path}: status`).toBe(401);
        expect(error?.extensions?.reason ?? error?.reason, `${path}: reason`).toBe('MALFORMED_AUTHORIZATION');
        expect(reply.challenge, `${path}: challenge`).toBe('Bearer error="invalid_request"');
      }
    }
    expect(await storedProbeEvents()).toBe(before);
  });

  it('20 KB header rejected', async () => {
    const authorization = `Bearer ${'a'.repeat(20_480)}`;

    // Node's HTTP parser rejects headers above its 16 KiB default
    // (--max-http-header-size) with 431 before any route runs.
    const response = await fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization },
      body: '{}',
    });
    expect(response.status).toBe(431);

    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
  });

  it('__typename without token', async () => {
    const result = await server.gql('{ __typename }');
    expect(result.errors).toBeUndefined();
    expect(result.data).toEqual({ __typename: 'Query' });
  });
});

describe('login token with a short session limit', () => {
  const clock = new ManualClock(Date.parse('2026-06-01T08:00:00Z'));
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: { JWT_TTL_SECONDS: '7200', JWT_MAX_SESSION_SECONDS: '3600' },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('ends with the session', async () => {
    const member = await server.createUser('short-session');
    const login = await server.gql<{ login: { expiresAt: string } }>(
      'mutation ($username: String!, $password: String!) { login(username: $username, password: $password) { expiresAt } }',
      { username: 'short-session', password: 'short-session-password' },
    );

    expect(login.data?.login.expiresAt).toBe('2026-06-01T09:00:00.000Z');
    clock.set(Date.parse('2026-06-01T09:00:06Z'));
    const late = await server.gql('{ me { id } }', {}, member.token);
    expect(late.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
  });
});

describe('token renewal over HTTP', () => {
  const HOUR_MS = 3_600_000;
  const clock = new ManualClock(Date.parse('2026-06-01T08:00:00Z'));
  const RENEW = 'mutation { renewToken { token expiresAt user { id role } } }';
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      env: { JWT_TTL_SECONDS: '3600', JWT_MAX_SESSION_SECONDS: String(3 * 3600) },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  type Renewed = { renewToken: { token: string; expiresAt: string; user: { id: string; role: string } } };

  it('renews until the session ends', async () => {
    clock.set(Date.parse('2026-06-01T08:00:00Z'));
    const member = await server.createUser('renew-member');

    // Each renewal 50 minutes after the last keeps the client signed in.
    let token = member.token;
    for (let step = 1; step <= 2; step += 1) {
      clock.advance(50 * 60_000);
      const renewed = await server.gql<Renewed>(RENEW, {}, token);
      expect(renewed.errors).toBeUndefined();
      expect(renewed.data?.renewToken.user).toEqual({ id: member.id, role: 'MEMBER' });
      expect(Date.parse(renewed.data!.renewToken.expiresAt)).toBe(clock.now() + HOUR_MS);
      token = renewed.data!.renewToken.token;
      expect((await server.gql('{ me { id } }', {}, token)).data?.me?.id).toBe(member.id);
    }

    // At 10:30 a full hour would pass the session end at 11:00, so the token stops there.
    clock.set(Date.parse('2026-06-01T10:30:00Z'));
    const capped = await server.gql<Renewed>(RENEW, {}, token);
    expect(capped.data?.renewToken.expiresAt).toBe('2026-06-01T11:00:00.000Z');

    // At 11:00 the token still passes within the 5 s clock tolerance, but the session is over.
    clock.set(Date.parse('2026-06-01T11:00:00Z'));
    const expired = await server.gql(RENEW, {}, capped.data!.renewToken.token);
    expect(expired.data ?? null).toBeNull();
    expect(expired.status).toBe(401);
    expect(expired.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(expired.errors?.[0]?.extensions?.reason).toBe('SESSION_EXPIRED');
    expect(expired.errors?.[0]?.message).toContain('JWT_MAX_SESSION_SECONDS (10800 s)');

    clock.set(Date.parse('2026-06-01T11:00:06Z'));
    const stale = await server.gql(RENEW, {}, capped.data!.renewToken.token);
    expect(stale.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
  });

  it('renewal takes the stored role', async () => {
    clock.set(Date.parse('2026-06-01T08:00:00Z'));
    const member = await server.createUser('renew-promoted');
    await server.app.db.prisma.user.update({ where: { id: member.id }, data: { role: 'ANALYST' } });

    const renewed = await server.gql<Renewed>(RENEW, {}, member.token);
    expect(renewed.data?.renewToken.user.role).toBe('ANALYST');
  });

  it('renewal needs a token', async () => {
    const result = await server.gql(RENEW);
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });
});
