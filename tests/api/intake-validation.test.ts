/**
 * Input validation and idempotency of event intake, through GraphQL and REST:
 * a batch with any invalid item is rejected whole with every problem listed,
 * and stores nothing.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf, readTimeline, type EventNode } from '../support/replay.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const AT = '2026-01-20T09:00:00.000Z';

interface InvalidItem {
  index: number;
  reason: string;
  message: string;
}

const SEND_EVENT = `mutation ($event: EventInput!) {
  sendEvent(event: $event) { duplicate event { id clientId type occurredAt clientOccurredAt pairKey meta flags user { id } } }
}`;

function metaOfBytes(bytes: number): Record<string, string> {
  // {"x":"..."} adds 8 bytes of JSON around the value.
  return { x: 'a'.repeat(bytes - 8) };
}

async function postEvents(server: TestServer, token: string | null, body: unknown) {
  const response = await fetch(`${server.url}/api/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

describe('intake validation', () => {
  let server: TestServer;
  let adminToken: string;
  let userCount = 0;
  const clock = new ManualClock(NOW);

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { clock });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function newUser(role: 'MEMBER' | 'ANALYST' | 'ADMIN' = 'MEMBER') {
    userCount += 1;
    return server.createUser(`validation-${userCount}`, role);
  }

  async function storedEvents(userId: string): Promise<EventNode[]> {
    return (await readTimeline(server, adminToken, userId)).events;
  }

  async function rejectedItems(token: string, events: unknown[]): Promise<InvalidItem[]> {
    const response = await server.gql(SEND_EVENTS, { events }, token);
    expect(response.data).toBeNull();
    expect(response.errors).toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_EVENTS');
    return response.errors?.[0]?.extensions?.invalidItems as InvalidItem[];
  }

  it('rejects a batch with several invalid items whole', async () => {
    const user = await newUser();
    const items = await rejectedItems(user.token, [
      { type: 'session_started', occurredAt: AT },
      { type: '', occurredAt: AT },
      { type: 'heartbeat', occurredAt: AT },
      { type: 'x'.repeat(129), occurredAt: AT },
      { type: 'heartbeat', meta: metaOfBytes(16_385) },
      { type: 'session_started', isPair: false },
      { type: 'session_ended', pairType: 'task' },
    ]);

    expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([
      { index: 1, reason: 'INVALID_TYPE' },
      { index: 3, reason: 'INVALID_TYPE' },
      { index: 4, reason: 'META_TOO_LARGE' },
      { index: 5, reason: 'PAIR_MISMATCH' },
      { index: 6, reason: 'PAIR_MISMATCH' },
    ]);
    for (const item of items) {
      expect(item.message).not.toBe('');
    }
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it.each([
    { name: 'empty', type: '', valid: false },
    { name: 'blank', type: '   ', valid: false },
    { name: '128 characters', type: 't'.repeat(128), valid: true },
    { name: '129 characters', type: 't'.repeat(129), valid: false },
    { name: 'only a zero width space', type: '\u200b', valid: false },
    { name: 'only direction marks', type: '\u200f\u200e ', valid: false },
    { name: '128 emoji', type: '😀'.repeat(128), valid: true },
    { name: '129 emoji', type: '😀'.repeat(129), valid: false },
  ])('type $name', async ({ type, valid }) => {
    const user = await newUser();
    const response = await server.gql(SEND_EVENTS, { events: [{ type, occurredAt: AT }] }, user.token);

    if (valid) {
      expect(response.errors).toBeUndefined();
      expect((await storedEvents(user.id)).map((event) => event.type)).toEqual([type]);
    } else {
      const items = response.errors?.[0]?.extensions?.invalidItems as InvalidItem[];
      expect(items.map((item) => item.reason)).toEqual(['INVALID_TYPE']);
      if (type.length > 128) {
        // Characters are code points: 129 emoji are 129 characters, not 258.
        expect(items[0]?.message).toContain('has 129 characters');
      }
      expect(await storedEvents(user.id)).toEqual([]);
    }
  });

  it.each([
    { name: 'at 16 KB', meta: metaOfBytes(16_384), valid: true },
    { name: 'one byte over 16 KB', meta: metaOfBytes(16_385), valid: false },
    // 8,200 two-byte characters: under the limit in characters, over it in bytes.
    { name: 'over 16 KB in UTF-8 bytes', meta: { x: 'é'.repeat(8_200) }, valid: false },
  ])('meta $name', async ({ meta, valid }) => {
    const user = await newUser();
    const response = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat', occurredAt: AT, meta }] }, user.token);

    if (valid) {
      expect(response.errors).toBeUndefined();
      expect((await storedEvents(user.id)).map((event) => event.type)).toEqual(['heartbeat']);
    } else {
      const items = response.errors?.[0]?.extensions?.invalidItems as InvalidItem[];
      expect(items.map((item) => item.reason)).toEqual(['META_TOO_LARGE']);
      expect(items[0]?.message).toContain('16384');
      expect(await storedEvents(user.id)).toEqual([]);
    }
  });

  it.each(['2026-01-20T09:00:00', '2026-01-20', '2026-01-20 09:00', 'yesterday'])(
    'occurredAt %s is rejected',
    async (occurredAt) => {
      const user = await newUser();
      const response = await server.gql(SEND_EVENT, { event: { type: 'heartbeat', occurredAt } }, user.token);

      expect(response.data).toBeUndefined();
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_DATE_TIME');
      expect(response.errors?.[0]?.message).toContain(occurredAt);
      expect(response.errors?.[0]?.message).toContain('RFC 3339 date-time with a time zone offset');
      expect(await storedEvents(user.id)).toEqual([]);
    },
  );

  it.each([
    { name: 'an array', meta: [1, 2] },
    { name: 'a string', meta: 'project' },
  ])('meta as $name is rejected with a reason', async ({ meta }) => {
    const user = await newUser();
    const variable = await server.gql(SEND_EVENT, { event: { type: 'heartbeat', meta } }, user.token);
    const literal = await server.gql(
      `mutation { sendEvent(event: { type: "heartbeat", meta: ${JSON.stringify(meta)} }) { event { id } } }`,
      {},
      user.token,
    );

    for (const response of [variable, literal]) {
      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_JSON_OBJECT');
      expect(response.errors?.[0]?.message).toContain('Expected a JSON object');
    }
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it.each([
    { name: 'an object value', meta: '{ status: ACTIVE }', fragment: 'enum value ACTIVE at status' },
    { name: 'a list item', meta: '{ tags: ["a", B] }', fragment: 'enum value B at tags[1]' },
  ])('rejects an enum literal as $name in meta', async ({ meta, fragment }) => {
    const user = await newUser();
    const response = await server.gql(
      `mutation { sendEvent(event: { type: "heartbeat", occurredAt: "${AT}", meta: ${meta} }) { event { meta } } }`,
      {},
      user.token,
    );

    expect(response.data).toBeUndefined();
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_JSON_OBJECT');
    expect(response.errors?.[0]?.message).toContain(fragment);
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it.each([
    {
      name: 'in the selection',
      document: `mutation ($s: Boolean = true) {
        sendEvent(event: { type: "heartbeat", occurredAt: "${AT}" }) { duplicate @skip(if: $s) event { id } }
      }`,
    },
    {
      name: 'on the field',
      document: `mutation ($s: Boolean = false) {
        sendEvent(event: { type: "heartbeat", occurredAt: "${AT}" }) @skip(if: $s) { event { id } }
      }`,
    },
    {
      name: 'in the second field',
      document: `mutation ($s: Boolean = true) {
        first: sendEvent(event: { type: "heartbeat", occurredAt: "${AT}" }) { event { id } }
        second: sendEvent(event: { type: "heartbeat", occurredAt: "${AT}" }) { event { id @include(if: $s) } }
      }`,
    },
  ])('null directive variable $name stores nothing', async ({ document }) => {
    const user = await newUser();
    const response = await server.gql(document, { s: null }, user.token);

    expect(response.status, 'HTTP status').toBe(400);
    expect(response.errors?.[0]?.extensions?.code, 'code').toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_VARIABLE');
    expect(response.errors?.[0]?.message, 'message').toContain('Variable "$s" is null');
    expect(await storedEvents(user.id), 'stored events').toEqual([]);
  });

  it('directive variable left out uses its default', async () => {
    const user = await newUser();
    const document = `mutation ($s: Boolean = false) {
      sendEvent(event: { type: "heartbeat", occurredAt: "${AT}" }) { duplicate @skip(if: $s) }
    }`;
    const response = await server.gql(document, {}, user.token);

    expect(response.errors, 'errors').toBeUndefined();
    expect(dataOf(response, 'sendEvent').sendEvent.duplicate, 'duplicate').toBe(false);
    expect(await storedEvents(user.id), 'stored events').toHaveLength(1);
  });

  it('meta naming an unsent variable is rejected', async () => {
    const user = await newUser();
    // The JSONObject scalar reads $room as undefined, and JSON.stringify
    // would drop the key, so a retry of this request would then conflict
    // with what was stored.
    const document = `mutation ($room: String) {
      sendEvents(events: [{ id: "unsent-1", type: "heartbeat", occurredAt: "${AT}", meta: { room: $room, floor: 1 } }]) { storedCount }
    }`;
    const response = await server.gql(document, {}, user.token);
    const items = response.errors?.[0]?.extensions?.['invalidItems'] as InvalidItem[] | undefined;

    expect(response.errors?.[0]?.extensions?.['reason'], 'reason').toBe('INVALID_EVENTS');
    expect(items?.[0]?.reason, 'item reason').toBe('INVALID_META');
    expect(items?.[0]?.message, 'item message').toBe('meta.room is missing, because it names a variable that the request did not send');
    expect(await storedEvents(user.id), 'stored events').toEqual([]);
  });

  it('occurredAt in a literal names the format', async () => {
    const user = await newUser();
    const response = await server.gql(
      `mutation { sendEvent(event: { type: "heartbeat", occurredAt: "2026-01-20T09:00:00" }) { event { id } } }`,
      {},
      user.token,
    );

    expect(response.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_DATE_TIME');
    expect(response.errors?.[0]?.message).toContain('2026-01-20T09:00:00');
    expect(response.errors?.[0]?.message).toContain('RFC 3339 date-time with a time zone offset');
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it.each([
    { name: 'an invalid occurredAt', value: '"yesterday"', field: 'occurredAt', reason: 'INVALID_DATE_TIME' },
    { name: 'an occurredAt out of range', value: '"0001-01-01T00:00:00Z"', field: 'occurredAt', reason: 'INSTANT_OUT_OF_RANGE' },
    { name: 'a meta string', value: '"project"', field: 'meta', reason: 'INVALID_JSON_OBJECT' },
  ])('literal error locates $name', async ({ value, field, reason }) => {
    const user = await newUser();
    const document = `mutation {\n  sendEvent(event: { type: "heartbeat", ${field}: ${value} }) { event { id } }\n}`;
    const column = document.split('\n')[1]!.indexOf(value) + 1;
    const response = await server.gql(document, {}, user.token);

    expect(response.errors, 'errors').toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe(reason);
    expect(response.errors?.[0]?.locations, 'locations').toEqual([{ line: 2, column }]);
    expect(await storedEvents(user.id), 'stored events').toEqual([]);
  });

  it.each([
    { sent: '2026-01-20T09:00:00Z', stored: '2026-01-20T09:00:00.000Z' },
    { sent: '2026-01-20T11:00:00+02:00', stored: '2026-01-20T09:00:00.000Z' },
    { sent: '2026-01-20T04:30:00.250-04:30', stored: '2026-01-20T09:00:00.250Z' },
  ])('occurredAt $sent is stored as UTC', async ({ sent, stored }) => {
    const user = await newUser();
    const response = await server.gql(SEND_EVENT, { event: { type: 'heartbeat', occurredAt: sent } }, user.token);

    expect(dataOf(response, 'sendEvent').sendEvent.event.occurredAt).toBe(stored);
  });

  it.each([
    { name: 'isPair true on a point event', event: { type: 'heartbeat', isPair: true }, named: 'isPair is true but' },
    { name: 'isPair false on a start', event: { type: 'session_started', isPair: false }, named: 'isPair is false but' },
    { name: 'pairType of another pair', event: { type: 'session_started', pairType: 'task' }, named: 'pairType "task" does not match' },
    { name: 'pairType on a point event', event: { type: 'heartbeat', pairType: 'session' }, named: 'pairType "session" was given' },
    { name: 'unknown pairType', event: { type: 'task_ended', pairType: 'nope' }, named: 'pairType "nope" does not match' },
    { name: 'pairKey on a point event', event: { type: 'heartbeat', pairKey: 'k' }, named: 'pairKey was given' },
  ])('rejects $name', async ({ event, named }) => {
    const user = await newUser();
    const items = await rejectedItems(user.token, [{ ...event, occurredAt: AT }]);

    expect(items.map((item) => item.reason)).toEqual(['PAIR_MISMATCH']);
    expect(items[0]?.message, 'message names the GraphQL field').toContain(named);
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it.each([
    { name: 'long pairType', event: { type: 'session_started', pairType: 'p'.repeat(20_000) }, quoted: `pairType "${'p'.repeat(64)}…" does not match` },
    { name: 'long pairType on a point event', event: { type: 'heartbeat', pairType: 'p'.repeat(20_000) }, quoted: `pairType "${'p'.repeat(64)}…" was given` },
    { name: 'long type with isPair', event: { type: 't'.repeat(20_000), isPair: true }, quoted: `event type "${'t'.repeat(128)}…" belongs to no pair type` },
  ])('mismatch message cuts a $name', async ({ event, quoted }) => {
    const user = await newUser();
    const response = await server.gql(SEND_EVENTS, { events: [{ ...event, occurredAt: AT }] }, user.token);
    const items = response.errors?.[0]?.extensions?.invalidItems as InvalidItem[];
    const mismatch = items.find((item) => item.reason === 'PAIR_MISMATCH');

    expect(mismatch?.message, 'item message').toContain(quoted);
    expect(response.errors?.[0]?.message, 'error message').toContain(quoted);
    // The 20,000 characters sent appear nowhere in full, so the reply stays small.
    expect(JSON.stringify(response.errors).length, 'error size').toBeLessThan(2_000);
    expect(await storedEvents(user.id), 'stored events').toEqual([]);
  });

  it.each(['MEMBER', 'ANALYST'] as const)('userId from a %s is forbidden', async (role) => {
    const sender = await newUser(role);
    const other = await newUser();
    const response = await server.gql(
      SEND_EVENTS,
      { events: [{ type: 'heartbeat', occurredAt: AT, userId: other.id }] },
      sender.token,
    );

    expect(response.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(response.errors?.[0]?.extensions?.reason).toBe('OTHER_USER');
    expect(response.errors?.[0]?.message).toBe(
      'Only admins may send events on behalf of another user, but event #0 names another user in userId; nothing was stored.',
    );
    expect(await storedEvents(other.id)).toEqual([]);
    expect(await storedEvents(sender.id)).toEqual([]);
  });

  it('userId naming oneself is accepted', async () => {
    const user = await newUser();
    const event = { type: 'heartbeat', occurredAt: AT, userId: user.id };
    const response = await server.gql(SEND_EVENT, { event }, user.token);

    expect(dataOf(response, 'sendEvent').sendEvent.event.user.id).toBe(user.id);
  });

  it('admin sends on behalf of a user', async () => {
    const user = await newUser();
    const response = await server.gql(
      SEND_EVENTS,
      {
        events: [
          { id: 'a1', type: 'session_started', occurredAt: AT, userId: user.id },
          { id: 'a2', type: 'heartbeat', occurredAt: AT },
        ],
      },
      adminToken,
    );

    expect(dataOf(response, 'sendEvents').sendEvents.storedCount).toBe(2);
    const stored = (await storedEvents(user.id)).filter((event) => event.origin === 'CLIENT');
    expect(stored.map((event) => event.clientId)).toEqual(['a1']);
    const mine = await server.gql(
      `{ events(filter: { types: ["session_started"] }) { nodes { clientId } } }`,
      {},
      user.token,
    );
    expect(dataOf(mine, 'events').events.nodes).toEqual([{ clientId: 'a1' }]);
  });

  it('stores nothing for any user of a rejected batch', async () => {
    const first = await newUser();
    const second = await newUser();
    const items = await rejectedItems(adminToken, [
      { userId: first.id, id: 'm1', type: 'session_started', occurredAt: AT },
      { userId: second.id, id: 'm1', type: 'session_started', occurredAt: AT },
      { userId: second.id, type: 'task_started', pairKey: 'k'.repeat(257), occurredAt: AT },
      { userId: first.id, type: 'heartbeat' },
    ]);

    expect(items).toHaveLength(1);
    expect(items[0]?.index).toBe(2);
    expect(items[0]?.reason).toBe('INVALID_PAIR_KEY');
    expect(items[0]?.message).toContain('257');
    expect(items[0]?.message).toContain('256');
    expect(await storedEvents(first.id)).toEqual([]);
    expect(await storedEvents(second.id)).toEqual([]);
  });

  it('rejected field names events stored before it', async () => {
    const user = await newUser();
    const reply = await server.gql(
      `mutation {
        stored: sendEvent(event: { id: "stored-first", type: "heartbeat", occurredAt: "${AT}" }) { event { id } }
        rejected: sendEvents(events: [{ type: "" }]) { storedCount }
      }`,
      {},
      user.token,
    );

    // Mutation fields are non-null, so the rejection nulls the reply of the field that stored.
    expect(reply.data ?? null, 'data').toBeNull();
    expect(reply.errors?.[0]?.path, 'path').toEqual(['rejected']);
    expect(reply.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_EVENTS');
    expect(reply.errors?.[0]?.extensions?.eventsStored, 'eventsStored').toBe(true);
    expect(reply.errors?.[0]?.message, 'message').toContain('so their events are stored');
    expect((await storedEvents(user.id)).map((event) => event.clientId)).toEqual(['stored-first']);
  });

  it('admin naming a missing user is rejected', async () => {
    const items = await rejectedItems(adminToken, [
      { type: 'heartbeat', occurredAt: AT, userId: '00000000-0000-4000-8000-000000000000' },
      { type: 'heartbeat', occurredAt: AT, userId: 'not-a-uuid' },
    ]);

    expect(items.map((item) => item.reason)).toEqual(['USER_NOT_FOUND', 'USER_NOT_FOUND']);
    expect(items[0]?.message, 'message for a missing user').toContain('does not exist');
    expect(items[1]?.message, 'message for a name').toContain('is not a user id (a UUID)');
  });

  it('rejects an empty batch', async () => {
    const user = await newUser();
    const response = await server.gql(SEND_EVENTS, { events: [] }, user.token);

    expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(response.errors?.[0]?.extensions?.reason).toBe('EMPTY_BATCH');
  });

  it('rejects a batch above MAX_BATCH_SIZE', async () => {
    const user = await newUser();
    const events = Array.from({ length: 1001 }, () => ({ type: 'heartbeat', occurredAt: AT }));
    const response = await server.gql(SEND_EVENTS, { events }, user.token);

    expect(response.status).toBe(400);
    expect(response.errors?.[0]?.extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      reason: 'LIMIT_EXCEEDED',
      limit: 'MAX_BATCH_SIZE',
      value: 1001,
      max: 1000,
    });
    expect(response.errors?.[0]?.message).toContain('MAX_BATCH_SIZE');
    expect(await storedEvents(user.id)).toEqual([]);
  });

  it('requires a token', async () => {
    const response = await server.gql(SEND_EVENT, { event: { type: 'heartbeat' } });

    expect(response.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('truncates digits below a millisecond', async () => {
    const user = await newUser();
    const response = await server.gql(
      SEND_EVENTS,
      {
        events: [
          { type: 'heartbeat', occurredAt: '2026-01-20T09:00:00.9999Z' },
          { type: 'heartbeat', occurredAt: '2026-01-20T10:00:01.123456789+01:00' },
        ],
      },
      user.token,
    );

    expect(response.errors, JSON.stringify(response.errors)).toBeUndefined();
    const stored = (await storedEvents(user.id)).map((event) => event.occurredAt);
    expect(stored, 'stored instants').toEqual(['2026-01-20T09:00:00.999Z', '2026-01-20T09:00:01.123Z']);
  });

  describe('idempotency', () => {
    it('returns the original for a repeated id', async () => {
      const user = await newUser();
      const event = { id: 'once', type: 'session_started', occurredAt: AT, meta: { a: 1, b: [1, 2] } };
      const first = dataOf(await server.gql(SEND_EVENT, { event }, user.token), 'sendEvent').sendEvent;
      // Same content with the meta keys in another order.
      const again = { ...event, meta: { b: [1, 2], a: 1 } };
      const second = dataOf(await server.gql(SEND_EVENT, { event: again }, user.token), 'sendEvent').sendEvent;

      expect(first.duplicate).toBe(false);
      expect(second.duplicate).toBe(true);
      expect(second.event).toEqual(first.event);
      expect((await storedEvents(user.id)).filter((stored) => stored.origin === 'CLIENT')).toHaveLength(1);
    });

    it.each([
      { name: 'type', change: { type: 'session_ended' } },
      { name: 'occurredAt', change: { occurredAt: '2026-01-20T09:00:01Z' } },
      { name: 'meta', change: { meta: { a: 2 } } },
      { name: 'pairKey', change: { type: 'task_started', pairKey: 'k' } },
    ])('rejects a repeated id with other $name', async ({ change }) => {
      const user = await newUser();
      const original = { id: 'same', type: 'task_started', occurredAt: AT, meta: { a: 1 } };
      dataOf(await server.gql(SEND_EVENT, { event: original }, user.token), 'sendEvent');
      const before = await storedEvents(user.id);

      const items = await rejectedItems(user.token, [{ ...original, ...change }]);

      expect(items.map((item) => item.reason)).toEqual(['IDEMPOTENCY_CONFLICT']);
      expect(await storedEvents(user.id)).toEqual(before);
    });

    it('sendEvent names its own reason', async () => {
      const user = await newUser();
      const original = { id: 'single', type: 'heartbeat', occurredAt: AT };
      dataOf(await server.gql(SEND_EVENT, { event: original }, user.token), 'sendEvent');

      const response = await server.gql(SEND_EVENT, { event: { ...original, meta: { other: true } } }, user.token);

      expect(response.data).toBeNull();
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe('IDEMPOTENCY_CONFLICT');
      expect(response.errors?.[0]?.message).toMatch(/^The event is invalid, so nothing was stored: /);
      expect(response.errors?.[0]?.extensions?.invalidItems).toEqual([
        expect.objectContaining({ index: 0, reason: 'IDEMPOTENCY_CONFLICT' }),
      ]);
    });

    it('stores a retried batch once', async () => {
      const user = await newUser();
      const batch = [
        { id: 'r1', type: 'session_started', occurredAt: '2026-01-20T09:00:00Z' },
        { id: 'r2', type: 'task_started', occurredAt: '2026-01-20T09:10:00Z' },
        { id: 'r3', type: 'task_ended', occurredAt: '2026-01-20T09:20:00Z' },
        { id: 'r4', type: 'session_ended', occurredAt: '2026-01-20T09:30:00Z' },
        { id: 'r5', type: 'session_ended', occurredAt: '2026-01-20T09:40:00Z' },
      ];
      const first = dataOf(await server.gql(SEND_EVENTS, { events: batch }, user.token), 'sendEvents').sendEvents;
      const before = await readTimeline(server, adminToken, user.id);
      const second = dataOf(await server.gql(SEND_EVENTS, { events: batch }, user.token), 'sendEvents').sendEvents;

      expect(first).toMatchObject({ storedCount: 5, duplicateCount: 0 });
      expect(second).toMatchObject({ storedCount: 0, duplicateCount: 5 });
      const duplicates = second.results.map((result: { duplicate: boolean }) => result.duplicate);
      expect(duplicates).toEqual([true, true, true, true, true]);
      expect(second.results.map((result: { event: EventNode }) => result.event.id)).toEqual(
        first.results.map((result: { event: EventNode }) => result.event.id),
      );
      expect(await readTimeline(server, adminToken, user.id)).toEqual(before);
    });

    it('stores a repeated id within one batch once', async () => {
      const user = await newUser();
      const event = { id: 'twice', type: 'heartbeat', occurredAt: AT };
      const sent = dataOf(await server.gql(SEND_EVENTS, { events: [event, event] }, user.token), 'sendEvents').sendEvents;

      expect(sent).toMatchObject({ storedCount: 1, duplicateCount: 1 });
      expect(sent.results[1].event.id).toBe(sent.results[0].event.id);
      expect(await storedEvents(user.id)).toHaveLength(1);
    });

    it('lists a conflicting id with other problems', async () => {
      const user = await newUser();
      const items = await rejectedItems(user.token, [
        { id: 'dup-listed', type: 'heartbeat', occurredAt: AT },
        { id: 'dup-listed', type: 'session_started', occurredAt: AT },
        { type: '', occurredAt: AT },
      ]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([
        { index: 1, reason: 'IDEMPOTENCY_CONFLICT' },
        { index: 2, reason: 'INVALID_TYPE' },
      ]);
      expect(items[0]?.message, 'message').toContain('is also used by item #0 of this batch, with other content (it differs in type)');
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('rejects a conflicting id within one batch', async () => {
      const user = await newUser();
      const items = await rejectedItems(user.token, [
        { id: 'dup', type: 'heartbeat', occurredAt: AT },
        { id: 'dup', type: 'heartbeat', occurredAt: '2026-01-20T10:00:00Z' },
      ]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([{ index: 1, reason: 'IDEMPOTENCY_CONFLICT' }]);
      expect(items[0]?.message, 'message').toContain('(it differs in occurredAt)');
      expect(items[0]?.message, 'message names the earlier item').toContain('is also used by item #0 of this batch');
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('lists a stored id conflict with other problems', async () => {
      const user = await newUser();
      dataOf(await server.gql(SEND_EVENT, { event: { id: 'kept', type: 'heartbeat', occurredAt: AT } }, user.token), 'first');
      const before = await storedEvents(user.id);

      const items = await rejectedItems(user.token, [
        { id: 'kept', type: 'session_started', occurredAt: AT },
        { id: 'fresh', type: 'heartbeat', occurredAt: AT },
        { type: '', occurredAt: AT },
      ]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([
        { index: 0, reason: 'IDEMPOTENCY_CONFLICT' },
        { index: 2, reason: 'INVALID_TYPE' },
      ]);
      expect(items[0]?.message, 'message').toContain('id "kept" was already used for an event with other content (it differs in type)');
      expect(await storedEvents(user.id), 'stored events').toEqual(before);
    });

    it('compares a stored id before the batch', async () => {
      const user = await newUser();
      dataOf(await server.gql(SEND_EVENT, { event: { id: 'kept', type: 'heartbeat', occurredAt: AT } }, user.token), 'first');
      const before = await storedEvents(user.id);
      const changed = { id: 'kept', type: 'heartbeat', occurredAt: AT, meta: { a: 1 } };

      // Both items differ from the stored event, as the store would report
      // them, although the second repeats the first.
      const items = await rejectedItems(user.token, [changed, changed, { id: 'kept', type: 'heartbeat', occurredAt: AT }, { type: '' }]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([
        { index: 0, reason: 'IDEMPOTENCY_CONFLICT' },
        { index: 1, reason: 'IDEMPOTENCY_CONFLICT' },
        { index: 3, reason: 'INVALID_TYPE' },
      ]);
      expect(items[1]?.message, 'message').toContain('was already used for an event with other content (it differs in meta)');
      expect(await storedEvents(user.id), 'stored events').toEqual(before);
    });

    it('REST lists a stored id conflict', async () => {
      const user = await newUser();
      dataOf(await server.gql(SEND_EVENT, { event: { id: 'kept', type: 'heartbeat', occurredAt: AT } }, user.token), 'first');
      const before = await storedEvents(user.id);

      const unparsed = await postEvents(server, user.token, [
        { type: 'heartbeat', occurredAt: AT },
        { id: 'kept', type: 'heartbeat', occurred_at: '2026-01-20T10:00:00Z' },
      ]);
      const invalidType = await postEvents(server, user.token, [
        { id: 'kept', type: 'heartbeat', occurred_at: '2026-01-20T10:00:00Z' },
        { type: '' },
      ]);

      expect(unparsed.status, 'status beside an item that did not parse').toBe(400);
      const unparsedItems = unparsed.body.error.invalidItems as InvalidItem[];
      expect(unparsedItems.map((item) => [item.index, item.reason]), 'items beside an item that did not parse').toEqual([
        [0, 'INVALID_EVENT'],
        [1, 'IDEMPOTENCY_CONFLICT'],
      ]);
      expect(unparsedItems[1]?.message, 'message').toContain('was already used for an event with other content (it differs in occurred_at)');
      expect(invalidType.status, 'status beside an invalid type').toBe(400);
      const invalidTypeItems = invalidType.body.error.invalidItems as InvalidItem[];
      expect(invalidTypeItems.map((item) => [item.index, item.reason]), 'items beside an invalid type').toEqual([
        [0, 'IDEMPOTENCY_CONFLICT'],
        [1, 'INVALID_TYPE'],
      ]);
      expect(await storedEvents(user.id), 'stored events').toEqual(before);
    });

    it('names the fields a stored id differs in', async () => {
      const user = await newUser();
      dataOf(await server.gql(SEND_EVENT, { event: { id: 'named', type: 'heartbeat', occurredAt: AT } }, user.token), 'first');
      const response = await server.gql(
        SEND_EVENT,
        { event: { id: 'named', type: 'heartbeat', occurredAt: '2026-01-20T10:00:00Z', meta: { a: 1 } } },
        user.token,
      );

      expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('IDEMPOTENCY_CONFLICT');
      expect(response.errors?.[0]?.message, 'message').toContain('(it differs in occurredAt and meta)');
    });

    it('stores parallel repeats once', async () => {
      const user = await newUser();
      const event = { id: 'racing', type: 'session_started', occurredAt: AT };
      const responses = await Promise.all(
        Array.from({ length: 8 }, () => server.gql(SEND_EVENT, { event }, user.token)),
      );

      const results = responses.map((response) => dataOf(response, 'sendEvent').sendEvent);
      expect(results.filter((result) => !result.duplicate)).toHaveLength(1);
      expect(new Set(results.map((result) => result.event.id)).size).toBe(1);
      const stored = (await storedEvents(user.id)).filter((stored) => stored.origin === 'CLIENT');
      expect(stored).toHaveLength(1);
    });

    it('keeps ids apart per user', async () => {
      const first = await newUser();
      const second = await newUser();
      for (const user of [first, second]) {
        const event = { id: 'shared', type: 'heartbeat', occurredAt: AT };
        const sent = dataOf(await server.gql(SEND_EVENT, { event }, user.token), 'sendEvent');
        expect(sent.sendEvent.duplicate).toBe(false);
      }
    });

    it('keeps the sent future timestamp', async () => {
      const user = await newUser();
      const query = `mutation ($events: [EventInput!]!) {
        sendEvents(events: $events) { results { event { id occurredAt receivedAt clientOccurredAt } } }
      }`;
      const sent = dataOf(
        await server.gql(
          query,
          { events: [{ type: 'heartbeat', occurredAt: '2026-02-01T00:00:00Z' }, { type: 'heartbeat', occurredAt: AT }] },
          user.token,
        ),
        'sendEvents',
      ).sendEvents.results.map((result: { event: Record<string, string | null> }) => result.event);

      expect(sent[0].clientOccurredAt, 'future event').toBe('2026-02-01T00:00:00.000Z');
      expect(sent[0].occurredAt, 'future event applied at receipt').toBe(sent[0].receivedAt);
      expect(sent[1].clientOccurredAt, 'event in the past').toBeNull();
      const listed = dataOf(await server.gql(`{ events { nodes { id clientOccurredAt } } }`, {}, user.token), 'events');
      expect(listed.events.nodes, 'listed events').toEqual(
        expect.arrayContaining([
          { id: sent[0].id, clientOccurredAt: '2026-02-01T00:00:00.000Z' },
          { id: sent[1].id, clientOccurredAt: null },
        ]),
      );
    });

    it('matches a future timestamp by the sent value', async () => {
      const user = await newUser();
      const event = { id: 'future', type: 'heartbeat', occurredAt: '2026-02-01T00:00:00Z' };
      const first = dataOf(await server.gql(SEND_EVENT, { event }, user.token), 'sendEvent').sendEvent;
      const second = dataOf(await server.gql(SEND_EVENT, { event }, user.token), 'sendEvent').sendEvent;

      expect(first.event.flags).toEqual(['FUTURE_TIMESTAMP']);
      expect(second.duplicate).toBe(true);
      expect(second.event.id).toBe(first.event.id);
      expect(second.event.clientOccurredAt, 'sent time in the duplicate reply').toBe('2026-02-01T00:00:00.000Z');
    });
  });

  describe('repeated id with and without occurredAt', () => {
    // The server's receipt time, which an omitted occurredAt means.
    const RECEIPT = new Date(NOW).toISOString();
    const FUTURE = '2026-02-01T00:00:00.000Z';
    type Time = 'omitted' | 'receipt' | 'past' | 'future';
    const SENT: Record<Exclude<Time, 'omitted'>, string> = { receipt: RECEIPT, past: AT, future: FUTURE };

    /** Two items of one batch with the same id and content, apart from how they give the time. */
    const REPEATS: Array<{ first: Time; second: Time }> = [
      { first: 'omitted', second: 'omitted' },
      { first: 'omitted', second: 'receipt' },
      { first: 'receipt', second: 'omitted' },
      { first: 'future', second: 'future' },
    ];
    /** Two items of one batch with the same id and other times. */
    const CONFLICTS: Array<{ first: Time; second: Time }> = [
      { first: 'omitted', second: 'past' },
      { first: 'past', second: 'omitted' },
      { first: 'omitted', second: 'future' },
      { first: 'future', second: 'omitted' },
      { first: 'future', second: 'receipt' },
      { first: 'receipt', second: 'future' },
    ];

    function eventAt(id: string, time: Time): Record<string, string> {
      return time === 'omitted' ? { id, type: 'heartbeat' } : { id, type: 'heartbeat', occurredAt: SENT[time] };
    }

    it.each(REPEATS)('batch stores $first then $second once', async ({ first, second }) => {
      const user = await newUser();
      const sent = dataOf(
        await server.gql(SEND_EVENTS, { events: [eventAt('same', first), eventAt('same', second)] }, user.token),
        'sendEvents',
      ).sendEvents;

      expect(sent.storedCount, 'stored').toBe(1);
      expect(sent.duplicateCount, 'duplicates').toBe(1);
      expect(sent.results[1].duplicate, 'second is a duplicate').toBe(true);
      expect(sent.results[1].event.id, 'second returns the first').toBe(sent.results[0].event.id);
      expect(sent.results[0].event.occurredAt, 'applied at the receipt time').toBe(RECEIPT);
      expect(await storedEvents(user.id)).toHaveLength(1);
    });

    it.each(CONFLICTS)('batch rejects $first then $second', async ({ first, second }) => {
      const user = await newUser();
      const items = await rejectedItems(user.token, [eventAt('same', first), eventAt('same', second)]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([{ index: 1, reason: 'IDEMPOTENCY_CONFLICT' }]);
      expect(items[0]?.message, 'message').toContain('(it differs in occurredAt)');
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it.each(CONFLICTS)('lists $first then $second with other problems', async ({ first, second }) => {
      const user = await newUser();
      const items = await rejectedItems(user.token, [eventAt('same', first), eventAt('same', second), { type: '' }]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([
        { index: 1, reason: 'IDEMPOTENCY_CONFLICT' },
        { index: 2, reason: 'INVALID_TYPE' },
      ]);
    });

    it.each(REPEATS)('lists no conflict for $first then $second', async ({ first, second }) => {
      const user = await newUser();
      const items = await rejectedItems(user.token, [eventAt('same', first), eventAt('same', second), { type: '' }]);

      expect(items.map(({ index, reason }) => ({ index, reason }))).toEqual([{ index: 2, reason: 'INVALID_TYPE' }]);
    });

    // The repeat arrives a minute after the first request, as a retry does.
    // An omitted occurredAt then means the receipt time of the first
    // request, which stored the event, so a retry without a time matches it.
    it.each([
      { stored: 'omitted', repeat: 'omitted', duplicate: true },
      { stored: 'omitted', repeat: 'receipt', duplicate: true },
      { stored: 'receipt', repeat: 'omitted', duplicate: true },
      { stored: 'future', repeat: 'future', duplicate: true },
      { stored: 'past', repeat: 'omitted', duplicate: false },
      { stored: 'future', repeat: 'omitted', duplicate: false },
      { stored: 'future', repeat: 'receipt', duplicate: false },
      { stored: 'omitted', repeat: 'future', duplicate: false },
    ] as Array<{ stored: Time; repeat: Time; duplicate: boolean }>)(
      'stored $stored, later $repeat',
      async ({ stored, repeat, duplicate }) => {
        const user = await newUser();
        const first = dataOf(await server.gql(SEND_EVENT, { event: eventAt('kept', stored) }, user.token), 'first').sendEvent;
        const before = await storedEvents(user.id);
        clock.advance(60_000);
        try {
          const response = await server.gql(SEND_EVENT, { event: eventAt('kept', repeat) }, user.token);
          if (duplicate) {
            const second = dataOf(response, 'repeat').sendEvent;
            expect(second.duplicate, 'duplicate').toBe(true);
            expect(second.event, 'the stored event').toEqual(first.event);
          } else {
            expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('IDEMPOTENCY_CONFLICT');
            expect(response.errors?.[0]?.message, 'message').toContain('(it differs in occurredAt)');
          }
          expect(await storedEvents(user.id), 'stored events').toEqual(before);
        } finally {
          clock.set(NOW);
        }
      },
    );

    it('REST rejects past then omitted', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { id: 'same', type: 'heartbeat', occurred_at: AT },
        { id: 'same', type: 'heartbeat' },
      ]);

      expect(status).toBe(400);
      const items = body.error.invalidItems as InvalidItem[];
      expect(items.map((item) => [item.index, item.reason]), 'items').toEqual([[1, 'IDEMPOTENCY_CONFLICT']]);
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('REST lists a conflict beside an item that did not parse', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'heartbeat', occurredAt: AT },
        { id: 'same', type: 'heartbeat', occurred_at: AT },
        { id: 'same', type: 'heartbeat' },
        { id: 'other', type: 'heartbeat', occurred_at: AT },
        { id: 'other', type: 'heartbeat', occurred_at: '2026-01-20T10:00:00Z' },
      ]);

      expect(status).toBe(400);
      const items = body.error.invalidItems as InvalidItem[];
      expect(items.map((item) => [item.index, item.reason]), 'items').toEqual([
        [0, 'INVALID_EVENT'],
        [2, 'IDEMPOTENCY_CONFLICT'],
        [4, 'IDEMPOTENCY_CONFLICT'],
      ]);
      expect(items[1]?.message, 'message names the earlier item of the request').toContain('item #1 of this batch');
    });
  });

  describe('REST /api/events', () => {
    it('keeps the sent future time as client_occurred_at', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { id: 'rest-future', type: 'heartbeat', occurred_at: '2026-02-01T00:00:00Z' },
        { id: 'rest-past', type: 'heartbeat', occurred_at: AT },
      ]);

      expect(status).toBe(200);
      const events = body.results.map((result: { event: Record<string, unknown> }) => result.event);
      expect(events[0].client_occurred_at, 'future event').toBe('2026-02-01T00:00:00.000Z');
      expect(events[0].occurred_at, 'future event applied at receipt').toBe(events[0].received_at);
      expect(events[1].client_occurred_at, 'event in the past').toBeNull();
    });

    it('truncates digits below a millisecond', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, { type: 'heartbeat', occurred_at: '2026-01-20T09:00:00.000999Z' });

      expect(status).toBe(200);
      expect(body.results[0].event.occurred_at).toBe('2026-01-20T09:00:00.000Z');
    });

    it('rejects occurred_at without offset', async () => {
      const user = await newUser();
      const event = { type: 'heartbeat', occurred_at: '2026-01-20T09:00:00' };
      const { status, body } = await postEvents(server, user.token, event);

      expect(status).toBe(400);
      expect(body.error.code).toBe('BAD_USER_INPUT');
      expect(body.error.message, 'message').toContain('#0: occurred_at "2026-01-20T09:00:00" is not an RFC 3339 instant');
      expect(body.error.invalidItems).toHaveLength(1);
      expect(body.error.invalidItems[0].message).toContain('occurred_at');
      expect(body.error.invalidItems[0].message).toContain('2026-01-31T09:00:00Z) from 0100-01-01');
      expect(body.error.invalidItems[0].message).not.toContain('from from');
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('lists problems of parsed items too', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'task_started', is_pair: false, occurred_at: AT },
        { type: 'heartbeat', occurredAt: AT },
        { type: 'heartbeat', occurred_at: AT },
        { type: '', occurred_at: AT },
      ]);

      expect(status).toBe(400);
      expect(body.error.message, 'message').toContain('3 of 4 events are invalid');
      expect(body.error.message, 'message').toContain('#1: unknown field "occurredAt"');
      expect(body.error.message, 'message').toContain('#3: type');
      const items = body.error.invalidItems as InvalidItem[];
      expect(items.map((item) => [item.index, item.reason]), 'items').toEqual([
        [0, 'PAIR_MISMATCH'],
        [1, 'INVALID_EVENT'],
        [3, 'INVALID_TYPE'],
      ]);
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('counts an event with two problems once', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'heartbeat', occurredAt: AT },
        { type: '', id: '', occurred_at: AT },
        { type: 'heartbeat', occurred_at: AT },
      ]);

      expect(status).toBe(400);
      expect(body.error.message, 'message').toMatch(/^2 of 3 events are invalid; nothing was stored\. #0: /);
      const items = body.error.invalidItems as InvalidItem[];
      expect(items.map((item) => [item.index, item.reason]), 'items').toEqual([
        [0, 'INVALID_EVENT'],
        [1, 'INVALID_TYPE'],
        [1, 'INVALID_ID'],
      ]);
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('names another user of parsed items', async () => {
      const user = await newUser();
      const other = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'heartbeat', bad_field: 1 },
        { type: 'heartbeat', user_id: other.id },
      ]);

      expect(status).toBe(403);
      expect(body.error.reason, 'reason').toBe('OTHER_USER');
      expect((body.error.invalidItems as InvalidItem[]).map((item) => item.index), 'indexes').toEqual([0, 1]);
    });

    it('suggests the snake_case name of a field', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, { type: 'heartbeat', occurredAt: AT, colour: 'red' });

      expect(status).toBe(400);
      const message = body.error.invalidItems[0].message as string;
      expect(message, 'camelCase field').toContain('unknown field "occurredAt"; this route takes snake_case names, so use "occurred_at"');
      expect(message, 'other field').toContain('unknown field "colour"');
      expect(message, 'other field').not.toContain('use "colour"');
    });

    it('lists every invalid item', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'heartbeat', occurred_at: '2026-01-20T09:00:00Z' },
        { type: 'heartbeat', colour: 'red' },
        { type: 'heartbeat', is_pair: 'yes' },
        'not an object',
        { type: 'session_started', is_pair: false },
      ]);

      expect(status).toBe(400);
      expect(body.error.code).toBe('BAD_USER_INPUT');
      // Item 4 parses, and the intake's checks find its pair mismatch.
      expect(body.error.invalidItems.map((item: InvalidItem) => item.index)).toEqual([1, 2, 3, 4]);
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('rejects a pair mismatch', async () => {
      const user = await newUser();
      const { status, body } = await postEvents(server, user.token, [
        { type: 'heartbeat', occurred_at: '2026-01-20T09:00:00Z' },
        { type: 'session_started', is_pair: false },
      ]);

      expect(status).toBe(400);
      expect(body.error.invalidItems.map((item: InvalidItem) => [item.index, item.reason])).toEqual([[1, 'PAIR_MISMATCH']]);
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('rejects a batch above MAX_BATCH_SIZE', async () => {
      const user = await newUser();
      const events = Array.from({ length: 1001 }, () => ({ type: 'heartbeat', occurred_at: AT }));
      const { status, body } = await postEvents(server, user.token, events);

      expect(status).toBe(400);
      expect(body.error).toMatchObject({
        code: 'BAD_USER_INPUT',
        reason: 'LIMIT_EXCEEDED',
        limit: 'MAX_BATCH_SIZE',
        max: 1000,
      });
      expect(await storedEvents(user.id)).toEqual([]);
    });

    it('treats a retry as duplicates', async () => {
      const user = await newUser();
      const events = [
        { id: 'x1', type: 'session_started', occurred_at: '2026-01-20T09:00:00Z' },
        { id: 'x2', type: 'session_ended', occurred_at: '2026-01-20T10:00:00Z' },
      ];
      const first = await postEvents(server, user.token, events);
      const second = await postEvents(server, user.token, events);

      expect(first.body).toMatchObject({ stored_count: 2, duplicate_count: 0 });
      expect(second.body).toMatchObject({ stored_count: 0, duplicate_count: 2 });
      expect(second.body.results.map((result: { event: { id: string } }) => result.event.id)).toEqual(
        first.body.results.map((result: { event: { id: string } }) => result.event.id),
      );
    });

    it('requires a token', async () => {
      const { status, body } = await postEvents(server, null, { type: 'heartbeat' });

      expect(status).toBe(401);
      expect(body.error.code).toBe('UNAUTHENTICATED');
    });

    it('forbids another userId for a member', async () => {
      const sender = await newUser();
      const other = await newUser();
      const { status } = await postEvents(server, sender.token, { type: 'heartbeat', user_id: other.id });

      expect(status).toBe(403);
      expect(await storedEvents(other.id)).toEqual([]);
    });

    describe('messages name snake_case fields', () => {
      /** The whole error body as text, so that a check covers the top-level message and every item. */
      const errorText = (body: Record<string, any>) => JSON.stringify(body.error);

      it.each([
        { name: 'is_pair true on a point event', event: { type: 'heartbeat', is_pair: true }, snake: 'is_pair is true but', camel: 'isPair' },
        { name: 'is_pair false on a start', event: { type: 'session_started', is_pair: false }, snake: 'is_pair is false but', camel: 'isPair' },
        { name: 'pair_type of another pair', event: { type: 'session_started', pair_type: 'task' }, snake: 'pair_type "task" does not match', camel: 'pairType' },
        { name: 'pair_type on a point event', event: { type: 'heartbeat', pair_type: 'session' }, snake: 'pair_type "session" was given', camel: 'pairType' },
        { name: 'pair_key on a point event', event: { type: 'heartbeat', pair_key: 'k' }, snake: 'pair_key was given', camel: 'pairKey' },
        { name: 'pair_key too long', event: { type: 'task_started', pair_key: 'k'.repeat(257) }, snake: 'pair_key has 257 characters', camel: 'pairKey' },
      ])('$name', async ({ event, snake, camel }) => {
        const user = await newUser();
        const { status, body } = await postEvents(server, user.token, { ...event, occurred_at: AT });

        expect(status, 'status').toBe(400);
        expect(body.error.invalidItems[0].message, 'item message').toContain(snake);
        expect(body.error.message, 'error message').toContain(snake);
        expect(errorText(body), 'error body').not.toContain(camel);
        expect(await storedEvents(user.id), 'stored events').toEqual([]);
      });

      it('cuts a long pair_type', async () => {
        const user = await newUser();
        const { status, body } = await postEvents(server, user.token, { type: 'session_started', pair_type: 'p'.repeat(20_000), occurred_at: AT });
        const quoted = `pair_type "${'p'.repeat(64)}…" does not match`;

        expect(status, 'status').toBe(400);
        expect(body.error.invalidItems[0].message, 'item message').toContain(quoted);
        expect(body.error.message, 'error message').toContain(quoted);
        expect(errorText(body).length, 'error size').toBeLessThan(2_000);
        expect(await storedEvents(user.id), 'stored events').toEqual([]);
      });

      it('user_id of another user', async () => {
        const sender = await newUser();
        const other = await newUser();
        const event = { type: 'heartbeat', occurred_at: AT, user_id: other.id };
        const parsed = await postEvents(server, sender.token, [event]);
        const besideUnparsed = await postEvents(server, sender.token, [{ type: 'heartbeat', colour: 'red' }, event]);

        expect(parsed.status, 'status').toBe(403);
        expect(parsed.body.error.message, 'error message').toContain('another user in user_id;');
        expect(parsed.body.error.invalidItems[0].message, 'item message').toContain(`user_id "${other.id}" is another user`);
        expect(errorText(parsed.body), 'error body').not.toContain('userId');
        expect(besideUnparsed.status, 'status beside an item that did not parse').toBe(403);
        expect(besideUnparsed.body.error.message, 'error message beside an item that did not parse').toContain('another user in user_id;');
        expect(besideUnparsed.body.error.invalidItems[1].message, 'item message beside an item that did not parse').toContain(
          `user_id "${other.id}" is another user`,
        );
        expect(errorText(besideUnparsed.body), 'error body beside an item that did not parse').not.toContain('userId');
        expect(await storedEvents(other.id), 'stored events').toEqual([]);
      });

      it('user_id of no user', async () => {
        const missing = '00000000-0000-4000-8000-000000000000';
        const { status, body } = await postEvents(server, adminToken, [
          { type: 'heartbeat', occurred_at: AT, user_id: missing },
          { type: 'heartbeat', occurred_at: AT, user_id: 'not-a-uuid' },
        ]);

        expect(status, 'status').toBe(400);
        const items = body.error.invalidItems as InvalidItem[];
        expect(items.map((item) => item.reason), 'reasons').toEqual(['USER_NOT_FOUND', 'USER_NOT_FOUND']);
        expect(items[0]?.message, 'message for a missing user').toContain(`user_id "${missing}" does not exist`);
        expect(items[1]?.message, 'message for a name').toContain('user_id "not-a-uuid" is not a user id (a UUID)');
        expect(errorText(body), 'error body').not.toContain('userId');
      });

      it('pair type defined during the write', async () => {
        const user = await newUser();
        const intake = server.app.services.intake as unknown as { acquireLocks: (userIds: readonly string[]) => Promise<unknown> };
        const acquireLocks = intake.acquireLocks.bind(intake);
        // After the batch passed its checks and before its write, an admin
        // defines a pair type that makes the batch's is_pair wrong.
        const spy = vi.spyOn(intake, 'acquireLocks').mockImplementationOnce(async (userIds) => {
          const defined = await server.gql(
            `mutation { definePairType(input: { name: "rest-late", startType: "rest_late_started", endType: "rest_late_ended" }) { name } }`,
            {},
            adminToken,
          );
          expect(defined.errors, 'definePairType errors').toBeUndefined();
          return acquireLocks(userIds);
        });
        const { status, body } = await postEvents(server, user.token, { type: 'rest_late_started', is_pair: false, occurred_at: AT });
        spy.mockRestore();

        expect(status, 'status').toBe(400);
        expect(body.error.invalidItems[0].reason, 'reason').toBe('PAIR_MISMATCH');
        expect(body.error.invalidItems[0].message, 'item message').toContain('is_pair is false but');
        expect(errorText(body), 'error body').not.toContain('isPair');
        expect(await storedEvents(user.id), 'stored events').toEqual([]);
      });

      it('idempotency conflict', async () => {
        const user = await newUser();
        const first = { id: 'rest-conflict', type: 'task_started', pair_key: 'a', occurred_at: AT };
        const changed = { ...first, pair_key: 'b', occurred_at: '2026-01-20T10:00:00Z' };
        const fields = '(it differs in pair_key and occurred_at)';
        const inBatch = await postEvents(server, user.token, [first, changed]);
        expect(inBatch.status, 'status within one batch').toBe(400);
        expect((await postEvents(server, user.token, first)).status, 'status of the first delivery').toBe(200);
        const stored = await postEvents(server, user.token, changed);
        const besideUnparsed = await postEvents(server, user.token, [{ type: 'heartbeat', colour: 'red' }, changed]);

        expect(inBatch.body.error.invalidItems[0].message, 'message within one batch').toContain(fields);
        expect(errorText(inBatch.body), 'error body within one batch').not.toMatch(/pairKey|occurredAt/);
        expect(stored.status, 'status against a stored event').toBe(400);
        expect(stored.body.error.invalidItems[0].reason, 'reason against a stored event').toBe('IDEMPOTENCY_CONFLICT');
        expect(stored.body.error.invalidItems[0].message, 'message against a stored event').toContain(fields);
        expect(errorText(stored.body), 'error body against a stored event').not.toMatch(/pairKey|occurredAt/);
        expect(besideUnparsed.status, 'status beside an item that did not parse').toBe(400);
        expect(besideUnparsed.body.error.invalidItems[1].message, 'message beside an item that did not parse').toContain(fields);
        expect(errorText(besideUnparsed.body), 'error body beside an item that did not parse').not.toMatch(/pairKey|occurredAt/);
      });
    });
  });
});

describe('intake limits from the environment', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      env: { MAX_BATCH_SIZE: '5', MAX_META_BYTES: '64' },
    });
    token = (await server.createUser('limits')).token;
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    { size: 5, accepted: true },
    { size: 6, accepted: false },
  ])('MAX_BATCH_SIZE=5 with $size events', async ({ size, accepted }) => {
    const events = Array.from({ length: size }, () => ({ type: 'heartbeat', occurredAt: AT }));
    const response = await server.gql(SEND_EVENTS, { events }, token);

    if (accepted) {
      expect(dataOf(response, 'sendEvents').sendEvents.storedCount).toBe(size);
    } else {
      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.extensions).toMatchObject({ limit: 'MAX_BATCH_SIZE', value: 6, max: 5 });
    }
  });

  it.each([
    { bytes: 64, accepted: true },
    { bytes: 65, accepted: false },
  ])('MAX_META_BYTES=64 with $bytes bytes', async ({ bytes, accepted }) => {
    const events = [{ type: 'heartbeat', occurredAt: AT, meta: metaOfBytes(bytes) }];
    const response = await server.gql(SEND_EVENTS, { events }, token);

    if (accepted) {
      expect(response.errors).toBeUndefined();
    } else {
      const items = response.errors?.[0]?.extensions?.invalidItems as InvalidItem[];
      expect(items.map((item) => item.reason)).toEqual(['META_TOO_LARGE']);
      expect(items[0]?.message).toContain('64 bytes');
    }
  });
});
