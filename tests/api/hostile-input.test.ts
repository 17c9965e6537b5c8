/**
 * Hostile event input through GraphQL and REST: values that PostgreSQL
 * cannot store (NUL characters, unpaired surrogates, instants outside the
 * supported range), deeply nested meta and oversized batches. Each must be
 * rejected as BAD_USER_INPUT naming the value and the limit, store nothing,
 * and leave the server serving.
 */
import { Writable } from 'node:stream';

import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const AT = '2026-01-20T09:00:00.000Z';
const RANGE_START = '0100-01-01T00:00:00.000Z';

const SEND_EVENTS = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) { storedCount duplicateCount results { duplicate event { id occurredAt meta } } }
}`;

interface InvalidItem {
  index: number;
  reason: string;
  message: string;
}

/** Builds meta with `levels` nested objects, counting meta itself as the first. */
function nestedMetaJson(levels: number): string {
  return `${'{"a":'.repeat(levels - 1)}{"b":1}${'}'.repeat(levels - 1)}`;
}

/** Collects the JSON log lines of a server, to check the level of what it logged. */
function captureLogs(): { logger: pino.Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) {
        if (line.trim() !== '') {
          lines.push(JSON.parse(line) as { level: number; msg: string });
        }
      }
      callback();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

describe('hostile event input', () => {
  let server: TestServer;
  let adminToken: string;
  let logs: ReturnType<typeof captureLogs>;
  let userCount = 0;

  beforeAll(async () => {
    logs = captureLogs();
    server = await startTestServer(import.meta.filename, { clock: new ManualClock(NOW), logger: logs.logger });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function newUser() {
    userCount += 1;
    return server.createUser(`hostile-input-${userCount}`);
  }

  async function storedCount(userId: string): Promise<number> {
    const response = await server.gql<{ events: { nodes: unknown[] } }>(
      `query ($users: [ID!]) { events(filter: { users: $users }, first: 1000) { nodes { id } } }`,
      { users: [userId] },
      adminToken,
    );
    expect(response.errors).toBeUndefined();
    return response.data?.events.nodes.length ?? -1;
  }

  async function rejectedItems(token: string, events: unknown[]): Promise<{ message: string; items: InvalidItem[] }> {
    const response = await server.gql(SEND_EVENTS, { events }, token);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_EVENTS');
    return {
      message: response.errors?.[0]?.message ?? '',
      items: response.errors?.[0]?.extensions?.invalidItems as InvalidItem[],
    };
  }

  async function postJson(path: string, token: string | null, body: string) {
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      },
      body,
    });
    const text = await response.text();
    return { status: response.status, text, body: JSON.parse(text) as Record<string, any> };
  }

  describe('text PostgreSQL cannot store', () => {
    it.each([
      ['NUL in type', { type: 'a\u0000b' }, 'INVALID_TYPE', 'NUL character U+0000'],
      ['NUL in id', { type: 'heartbeat', id: 'id\u0000' }, 'INVALID_ID', 'NUL character U+0000'],
      ['NUL in pairKey', { type: 'task_started', pairKey: 'k\u0000' }, 'INVALID_PAIR_KEY', 'NUL character U+0000'],
      ['NUL in a meta value', { type: 'heartbeat', meta: { note: 'a\u0000' } }, 'INVALID_META', 'meta.note contains the NUL'],
      ['NUL in a meta key', { type: 'heartbeat', meta: { ['k\u0000']: 1 } }, 'INVALID_META', 'has a key that contains the NUL'],
      ['NUL deep in meta', { type: 'heartbeat', meta: { list: [1, { x: '\u0000' }] } }, 'INVALID_META', 'meta.list[1].x'],
      ['unpaired surrogate in type', { type: 'x\ud800' }, 'INVALID_TYPE', 'unpaired UTF-16 surrogate'],
      ['unpaired surrogate in meta', { type: 'heartbeat', meta: { note: '\udc00' } }, 'INVALID_META', 'unpaired UTF-16 surrogate'],
    ])('rejects %s', async (_name, event, reason, fragment) => {
      const user = await newUser();
      const { items } = await rejectedItems(user.token, [{ ...event, occurredAt: AT }]);

      expect(items).toHaveLength(1);
      expect(items[0]?.reason).toBe(reason);
      expect(items[0]?.message).toContain(fragment);
      expect(await storedCount(user.id)).toBe(0);
    });

    it('stores a paired surrogate', async () => {
      const user = await newUser();
      const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt: AT, meta: { face: '😀' } }] }, user.token);

      expect(response.errors).toBeUndefined();
      expect(response.data?.sendEvents.results[0].event.meta).toEqual({ face: '😀' });
    });

    it('rejects NUL over REST', async () => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, JSON.stringify({ type: 'x\u0000', occurred_at: AT }));

      expect(reply.status).toBe(400);
      expect(reply.body.error.code).toBe('BAD_USER_INPUT');
      expect(reply.body.error.invalidItems[0].reason).toBe('INVALID_TYPE');
      expect(await storedCount(user.id)).toBe(0);
    });

    it('counts events, not problems', async () => {
      const user = await newUser();
      const { message, items } = await rejectedItems(user.token, [
        { type: 'x\u0000', meta: { note: '\u0000' }, occurredAt: AT },
        { type: 'heartbeat', occurredAt: AT },
      ]);

      expect(items).toHaveLength(2);
      expect(message).toMatch(/^1 of 2 events are invalid/);
    });
  });

  describe('numbers JSON cannot carry exactly', () => {
    it.each([
      ['a number beyond doubles', '{"big":1e400}', 'meta.big is a number beyond the range'],
      ['a negative number beyond doubles', '{"n":[-2e308]}', 'meta.n[0] is a number beyond the range'],
    ])('rejects %s', async (_name, meta, fragment) => {
      const user = await newUser();
      const body = `{"query":${JSON.stringify(SEND_EVENTS)},"variables":{"events":[{"type":"heartbeat","occurredAt":"${AT}","meta":${meta}}]}}`;
      const reply = await postJson('/graphql', user.token, body);

      expect(reply.body.errors[0].extensions.invalidItems[0].reason).toBe('INVALID_META');
      expect(reply.body.errors[0].extensions.invalidItems[0].message).toContain(fragment);
      expect(await storedCount(user.id)).toBe(0);
    });

    it('stores large and small floats', async () => {
      const user = await newUser();
      const body = `{"query":${JSON.stringify(SEND_EVENTS)},"variables":{"events":[{"type":"heartbeat","occurredAt":"${AT}","meta":{"n":9007199254740991,"big":6.022e23,"f":1.5e-300}}]}}`;
      const reply = await postJson('/graphql', user.token, body);

      expect(reply.body.errors).toBeUndefined();
      expect(reply.body.data.sendEvents.results[0].event.meta).toEqual({ n: 9007199254740991, big: 6.022e23, f: 1.5e-300 });
    });
  });

  describe('meta size', () => {
    // {"x":"..."} adds 8 bytes of JSON around the value, and é is 2 bytes in UTF-8.
    const metaOfBytes = (bytes: number) => ({ x: 'é'.repeat((bytes - 8) / 2) });

    it('accepts 16,384 bytes of two-byte characters', async () => {
      const user = await newUser();
      const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt: AT, meta: metaOfBytes(16_384) }] }, user.token);

      expect(response.errors).toBeUndefined();
      expect(response.data?.sendEvents.storedCount).toBe(1);
    });

    it('rejects 16,386 bytes of two-byte characters', async () => {
      const user = await newUser();
      const { items } = await rejectedItems(user.token, [{ type: 'heartbeat', occurredAt: AT, meta: metaOfBytes(16_386) }]);

      expect(items[0]?.reason).toBe('META_TOO_LARGE');
      expect(items[0]?.message).toContain('16386 bytes');
    });
  });

  describe('meta nesting', () => {
    it('accepts 100 levels', async () => {
      const user = await newUser();
      const body = `{"query":${JSON.stringify(SEND_EVENTS)},"variables":{"events":[{"type":"heartbeat","meta":${nestedMetaJson(100)}}]}}`;
      const reply = await postJson('/graphql', user.token, body);

      expect(reply.body.errors).toBeUndefined();
      expect(reply.body.data.sendEvents.storedCount).toBe(1);
    });

    it('rejects 101 levels', async () => {
      const user = await newUser();
      const body = `{"query":${JSON.stringify(SEND_EVENTS)},"variables":{"events":[{"type":"heartbeat","meta":${nestedMetaJson(101)}}]}}`;
      const reply = await postJson('/graphql', user.token, body);

      expect(reply.body.errors[0].extensions.invalidItems[0].reason).toBe('INVALID_META');
      expect(reply.body.errors[0].extensions.invalidItems[0].message).toContain('maximum of 100 levels');
      expect(await storedCount(user.id)).toBe(0);
    });

    it.each([
      ['objects', `{"type":"heartbeat","meta":${nestedMetaJson(100_000)}}`],
      ['arrays', `{"type":"heartbeat","meta":{"a":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`],
    ])('rejects 100,000 levels of %s over REST', async (_name, event) => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, event);

      expect(reply.status).toBe(400);
      expect(reply.body.error.invalidItems[0].reason).toBe('INVALID_META');
      expect(reply.text).not.toContain('    at ');
    });
  });

  describe('instant range', () => {
    it.each([
      ['year 0', '0000-01-01T00:00:00Z'],
      ['year 1', '0001-01-01T00:00:00Z'],
      ['year 99', '0099-12-31T23:59:59.999Z'],
      ['year 10000 by offset', '9999-12-31T23:59:59-10:00'],
    ])('rejects %s', async (_name, occurredAt) => {
      const user = await newUser();
      const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt }] }, user.token);

      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.message).toContain(`from ${RANGE_START} to 9999-12-31T23:59:59.999Z`);
      expect(await storedCount(user.id)).toBe(0);
    });

    it.each([
      ['year 100', '0100-01-01T00:00:00Z', '0100-01-01T00:00:00.000Z'],
      ['1970', '1970-01-01T00:00:00Z', '1970-01-01T00:00:00.000Z'],
    ])('stores %s unchanged', async (_name, occurredAt, expected) => {
      const user = await newUser();
      const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt }] }, user.token);

      expect(response.errors).toBeUndefined();
      expect(response.data?.sendEvents.results[0].event.occurredAt).toBe(expected);
    });

    it.each([
      ['February 30', '2021-02-30T00:00:00Z'],
      ['April 31', '2021-04-31T12:00:00Z'],
      ['February 29 of 2100', '2100-02-29T00:00:00Z'],
      ['a leap second', '2016-12-31T23:59:60Z'],
      ['year 0', '0000-01-01T00:00:00Z'],
      ['year 10000 by offset', '9999-12-31T23:59:59-23:59'],
    ])('rejects %s over REST', async (_name, occurredAt) => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, JSON.stringify({ type: 'heartbeat', occurred_at: occurredAt }));

      expect(reply.status).toBe(400);
      expect(reply.body.error.code).toBe('BAD_USER_INPUT');
      expect(reply.body.error.invalidItems[0].message).toContain(JSON.stringify(occurredAt));
      expect(await storedCount(user.id)).toBe(0);
    });

    it('names a leap second over REST', async () => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, JSON.stringify({ type: 'heartbeat', occurred_at: '2016-12-31T23:59:60Z' }));

      expect(reply.status).toBe(400);
      expect(reply.body.error.invalidItems[0].message).toBe(
        'occurred_at "2016-12-31T23:59:60Z" is a leap second, which JavaScript dates cannot hold, so send second 59.999 or the next second instead',
      );
      expect(await storedCount(user.id)).toBe(0);
    });

    it('accepts February 29 of 2024 over REST', async () => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, JSON.stringify({ type: 'heartbeat', occurred_at: '2024-02-29T10:00:00+02:00' }));

      expect(reply.status).toBe(200);
      expect(reply.body.results[0].event.occurred_at).toBe('2024-02-29T08:00:00.000Z');
    });
  });

  describe('batches', () => {
    it('rejects an oversized REST batch before its items', async () => {
      const user = await newUser();
      const reply = await postJson('/api/events', user.token, JSON.stringify(Array.from({ length: 100_000 }, () => 5)));

      expect(reply.status).toBe(400);
      expect(reply.body.error.reason).toBe('LIMIT_EXCEEDED');
      expect(reply.body.error).toMatchObject({ limit: 'MAX_BATCH_SIZE', value: 100_000, max: 1000 });
      expect(reply.text.length).toBeLessThan(1000);
    });

    it('rejects an id repeated with and without occurredAt', async () => {
      const user = await newUser();
      const { items } = await rejectedItems(user.token, [
        { id: 'twice', type: 'heartbeat' },
        { id: 'twice', type: 'heartbeat', occurredAt: AT },
      ]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([{ index: 1, reason: 'IDEMPOTENCY_CONFLICT' }]);
      expect(await storedCount(user.id)).toBe(0);
    });

    it('rejects the same repeat across batches', async () => {
      const user = await newUser();
      const first = await server.gql(SEND_EVENTS, { events: [{ id: 'twice', type: 'heartbeat' }] }, user.token);
      expect(first.errors).toBeUndefined();
      const { items } = await rejectedItems(user.token, [{ id: 'twice', type: 'heartbeat', occurredAt: AT }]);

      expect(items.map(({ reason }) => reason)).toEqual(['IDEMPOTENCY_CONFLICT']);
      expect(await storedCount(user.id)).toBe(1);
    });

    it('counts the whole batch in a repeat conflict', async () => {
      const user = await newUser();
      const first = await server.gql(SEND_EVENTS, { events: [{ id: 'twice', type: 'heartbeat' }] }, user.token);
      expect(first.errors).toBeUndefined();
      const { message, items } = await rejectedItems(user.token, [
        { id: 'fresh', type: 'heartbeat' },
        { id: 'twice', type: 'heartbeat', occurredAt: AT },
      ]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([{ index: 1, reason: 'IDEMPOTENCY_CONFLICT' }]);
      expect(message).toMatch(/^1 of 2 events are invalid; nothing was stored\. #1: /);
      expect(await storedCount(user.id)).toBe(1);
    });
  });

  describe('request errors', () => {
    it.each([
      ['an instant', 'mutation ($i: EventInput!) { sendEvent(event: $i) { duplicate } }', { type: 'x', occurredAt: 'x'.repeat(1_000_000) }],
      [
        'an enum',
        'mutation ($i: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $i) { pairType } }',
        { pairType: 'task', timeoutSeconds: 10, endAt: 'Y'.repeat(1_000_000) },
      ],
    ])('cuts the quoted value of %s', async (_case, query, input) => {
      const reply = await server.gql(query, { i: input }, adminToken);
      const message = reply.errors?.[0]?.message ?? '';

      expect(reply.status, 'HTTP status').toBe(400);
      expect(message.length, 'message length').toBeLessThan(2100);
      expect(message, 'message').toContain('message cut to 2000 of its');
    });

    it('answers a persisted-query hash mismatch as BAD_REQUEST', async () => {
      const reply = await postJson(
        '/graphql',
        null,
        JSON.stringify({ query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } }),
      );

      expect(reply.status).toBe(400);
      expect(reply.body.errors[0].extensions.code).toBe('BAD_REQUEST');
      expect(reply.body.errors[0].message).toContain('sha');
    });

    it.each([
      ['an unknown enum value', 'mutation ($i: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $i) { pairType } }', { i: { pairType: 'task', timeoutSeconds: 10, endAt: 'NEVER' } }, 'INVALID_VARIABLE'],
      ['a missing field', 'mutation ($e: EventInput!) { sendEvent(event: $e) { duplicate } }', { e: { occurredAt: AT } }, 'INVALID_VARIABLE'],
      ['an Int beyond 32 bits', 'query ($n: Int) { events(first: $n) { nodes { id } } }', { n: 1e12 }, 'INVALID_VARIABLE'],
      ['an invalid instant', 'mutation ($e: EventInput!) { sendEvent(event: $e) { duplicate } }', { e: { type: 'x', occurredAt: 'nope' } }, 'INVALID_DATE_TIME'],
    ])('variable with %s gets a reason', async (_case, query, variables, reason) => {
      const reply = await server.gql(query, variables, adminToken);

      expect(reply.status, 'HTTP status').toBe(400);
      expect(reply.errors?.[0]?.extensions?.code, 'code').toBe('BAD_USER_INPUT');
      expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe(reason);
    });

    it('logs client errors below error level', async () => {
      const before = logs.lines.length;
      const requests = [
        '{ me { ',
        '{ me { nope } }',
        '{ me { ...A } } fragment A on User { ...B } fragment B on User { ...A }',
      ];
      for (const query of requests) {
        const reply = await postJson('/graphql', adminToken, JSON.stringify({ query }));
        expect(reply.status).toBe(400);
      }
      const coerced = await server.gql(`query ($f: Int) { events(first: $f) { nodes { id } } }`, { f: 1.5 }, adminToken);
      expect(coerced.status).toBe(400);
      const nullInOneOf = await server.gql(
        `query ($x: SetExpression) { report(expression: { complement: $x }, window: { start: "${AT}", end: "2026-01-21T00:00:00Z" }) { count } }`,
        { x: null },
        adminToken,
      );
      expect(nullInOneOf.status).toBe(400);

      const errors = logs.lines.slice(before).filter((line) => line.level >= 50);
      expect(errors.map((line) => line.msg)).toEqual([]);
    });

    it('keeps serving', async () => {
      const health = await fetch(`${server.url}/healthz`);
      expect(health.status).toBe(200);
      const user = await newUser();
      const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt: AT }] }, user.token);
      expect(response.data?.sendEvents.storedCount).toBe(1);
    });
  });
});

describe('prototype keys in JSON bodies and literals', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename);
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    ['__proto__', '{"type":"heartbeat","meta":{"__proto__":{"polluted":true}}}', 'body.variables.e.meta.__proto__'],
    ['escaped __proto__', '{"type":"heartbeat","meta":{"\\u005f_proto__":{"polluted":true}}}', 'body.variables.e.meta.__proto__'],
    [
      'escaped constructor.prototype',
      '{"type":"heartbeat","meta":{"\\u0063onstructor":{"prototype":{"polluted":true}}}}',
      'body.variables.e.meta.constructor.prototype',
    ],
    [
      'constructor.prototype',
      '{"type":"heartbeat","meta":{"constructor":{"prototype":{"polluted":true}}}}',
      'body.variables.e.meta.constructor.prototype',
    ],
  ])('rejects %s in meta', async (_name, event, path) => {
    const token = await server.adminToken();
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"query":"mutation ($e: EventInput!) { sendEvent(event: $e) { event { id } } }","variables":{"e":${event}}}`,
    });
    const body = (await response.json()) as {
      errors?: Array<{ message?: string; extensions?: { code?: string; reason?: string } }>;
    };

    expect(response.status).toBe(400);
    expect(body.errors?.[0]?.message).toContain(`has the key ${path}`);
    expect(body.errors?.[0]?.message).toContain('Rename the key');
    expect(body.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', reason: 'PROTOTYPE_KEY' });
    const events = await server.gql('{ events { nodes { id } } }', {}, token);
    expect(events.data?.events.nodes).toEqual([]);
  });

  it.each([
    ['event field', '{"type":"heartbeat","type":"session_started"}', 'body.variables.e.type'],
    ['meta key', '{"type":"heartbeat","meta":{"a":1,"a":2}}', 'body.variables.e.meta.a'],
  ])('rejects a repeated %s', async (_name, event, path) => {
    const token = await server.adminToken();
    const response = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: `{"query":"mutation ($e: EventInput!) { sendEvent(event: $e) { event { id } } }","variables":{"e":${event}}}`,
    });
    const body = (await response.json()) as {
      errors?: Array<{ message?: string; extensions?: { code?: string; reason?: string } }>;
    };

    expect(response.status, 'status').toBe(400);
    expect(body.errors?.[0]?.message, 'message').toContain(`has the key ${path} more than once`);
    expect(body.errors?.[0]?.message, 'fix').toContain('Send each key once');
    expect(body.errors?.[0]?.extensions, 'extensions').toMatchObject({ code: 'BAD_USER_INPUT', reason: 'DUPLICATE_KEY' });
    const events = await server.gql('{ events { nodes { id } } }', {}, token);
    expect(events.data?.events.nodes, 'stored events').toEqual([]);
  });

  it.each([
    ['/api/events', '[{"type":"heartbeat"},{"type":"heartbeat","meta":{"n":1,"n":2}}]', 'body[1].meta.n'],
    ['/auth/login', '{"username":"nobody","username":"admin","password":"x"}', 'body.username'],
  ])('rejects a repeated key on %s', async (route, text, path) => {
    const token = await server.adminToken();
    const response = await fetch(`${server.url}${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: text,
    });
    const body = (await response.json()) as { error?: { code?: string; reason?: string; message?: string } };

    expect(response.status, 'status').toBe(400);
    expect(body.error?.reason, 'reason').toBe('DUPLICATE_KEY');
    expect(body.error?.message, 'message').toContain(`has the key ${path} more than once`);
    const events = await server.gql('{ events { nodes { id } } }', {}, token);
    expect(events.data?.events.nodes, 'stored events').toEqual([]);
  });

  it.each([
    ['__proto__', 'meta: { __proto__: { polluted: true } }', 'meta.__proto__'],
    ['constructor.prototype', 'meta: { nested: { constructor: { prototype: { polluted: true } } } }', 'meta.nested.constructor'],
  ])('rejects %s in a GraphQL literal', async (_name, meta, path) => {
    const token = await server.adminToken();
    const result = await server.gql(`mutation { sendEvent(event: { type: "heartbeat", ${meta} }) { event { id } } }`, {}, token);

    expect(result.data ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_META');
    expect(result.errors?.[0]?.extensions?.invalidItems).toMatchObject([{ index: 0, reason: 'INVALID_META' }]);
    expect(result.errors?.[0]?.message).toContain(`${path} is a key that this server rejects`);
    const events = await server.gql('{ events { nodes { id } } }', {}, token);
    expect(events.data?.events.nodes).toEqual([]);
  });

  it('rejects __proto__ in a report meta literal', async () => {
    const token = await server.adminToken();
    const result = await server.gql(
      `{ report(expression: { segments: { meta: { __proto__: { polluted: true } } } },
          window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }) { count } }`,
      {},
      token,
    );

    expect(result.data?.report ?? null).toBeNull();
    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.message).toContain('__proto__');
  });

  it('names where JSON breaks, not the text', async () => {
    const response = await fetch(`${server.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"username":"admin","password":"Secret-In-Broken-Json" ',
    });
    const body = (await response.json()) as { error?: { reason?: string; message?: string } };

    expect(response.status).toBe(400);
    expect(body.error?.reason).toBe('INVALID_JSON');
    expect(body.error?.message).toMatch(/^The body is not valid JSON at character \d+\.$/);
    expect(body.error?.message).not.toContain('Secret-In-Broken-Json');
  });
});
