/**
 * Calls that name the id of no user are rejected without writing a Redis
 * key. Taking a user's lock creates the user's fence counter, which stays for
 * USER_STATE_IDLE_TTL_SECONDS (7 days by default), so each such call that
 * took the lock would leave a key behind for that long.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS } from '../support/replay.js';
import { describeWithRedis, redisUrl, uniqueKeyPrefix } from '../support/services.js';
import { deleteRedisKeys } from '../../bench/lib/services.js';

const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { timeoutSeconds } }`;
const EVENTS = `query ($users: [ID!]) { events(filter: { users: $users }, first: 10) { nodes { id } } }`;
const SEGMENTS = `query ($users: [ID!]) { segments(filter: { users: $users }, first: 10) { nodes { id } } }`;
/** Ids of no user, in lower and upper case. */
const UNKNOWN_IDS = ['00000000-0000-4000-8000-00000000abcd', '00000000-0000-4000-8000-00000000ABCE'];

describeWithRedis('calls naming an unknown user id', () => {
  const keyPrefix = uniqueKeyPrefix(import.meta.filename);
  let server: TestServer;
  let redis: Redis;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { keyPrefix, sweeper: false, replays: false });
    redis = new Redis(redisUrl()!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    adminToken = await server.adminToken();
  }, 60_000);

  afterAll(async () => {
    redis?.disconnect();
    await server?.close();
    await deleteRedisKeys(redisUrl()!, keyPrefix);
  });

  /** Lists every key under the server's prefix, sorted. */
  async function keysUnderPrefix(): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys.sort();
  }

  it('setAutoClosePreference writes no key', async () => {
    const before = await keysUnderPrefix();

    for (const userId of UNKNOWN_IDS) {
      const response = await server.gql(
        SET_PREFERENCE,
        { input: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId } },
        adminToken,
      );
      expect(response.errors?.[0]?.extensions?.code, `${userId}: code`).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason, `${userId}: reason`).toBe('USER_NOT_FOUND');
      expect(response.errors?.[0]?.message, `${userId}: message`).toContain(userId.toLowerCase());
    }

    const after = await keysUnderPrefix();
    expect(after.filter((key) => key.includes('{u:')), 'user keys').toEqual([]);
    expect(after, 'keys under the prefix').toEqual(before);
  });

  it('unknown pair type writes no key', async () => {
    const member = await server.createUser('unknown-keys-member');
    const before = await keysUnderPrefix();

    const response = await server.gql(
      SET_PREFERENCE,
      { input: { pairType: 'no-such-type', timeoutSeconds: 60, endAt: 'DEADLINE', userId: member.id } },
      adminToken,
    );

    expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('PAIR_TYPE_NOT_FOUND');
    expect(await keysUnderPrefix(), 'keys under the prefix').toEqual(before);
  });

  it('preference for a known user still stored', async () => {
    const member = await server.createUser('unknown-keys-known');

    const response = await server.gql(
      SET_PREFERENCE,
      { input: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId: member.id.toUpperCase() } },
      adminToken,
    );

    expect(response.errors, 'errors').toBeUndefined();
    expect(response.data?.setAutoClosePreference, 'stored policy').toEqual({ timeoutSeconds: 60 });
    // The replay took the user's lock, so the fence counter is there, under the lower-case id.
    expect(await keysUnderPrefix(), 'keys under the prefix').toContain(`${keyPrefix}{u:${member.id}}:fence`);
  });

  it('intake and reads write no key', async () => {
    const before = await keysUnderPrefix();

    for (const userId of UNKNOWN_IDS) {
      const sent = await server.gql(SEND_EVENTS, { events: [{ type: 'session_started', userId }] }, adminToken);
      expect(sent.errors?.[0]?.extensions?.reason, `${userId}: sendEvents reason`).toBe('INVALID_EVENTS');
      const events = await server.gql(EVENTS, { users: [userId] }, adminToken);
      expect(events.errors, `${userId}: events errors`).toBeUndefined();
      const segments = await server.gql(SEGMENTS, { users: [userId] }, adminToken);
      expect(segments.errors, `${userId}: segments errors`).toBeUndefined();
    }

    expect(await keysUnderPrefix(), 'keys under the prefix').toEqual(before);
  });
});
