/**
 * The `events` order of two auto-close ends that share a position after an
 * admin shortened a pair type's timeout. The fold decides the first end when
 * the user is settled and the second end, at the same position, when the
 * next event arrives. The listing must show them in that order.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import { SEND_EVENTS, dataOf } from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const T0 = Date.parse('2026-02-01T09:00:00Z');
/** Each user's correction ids are random, so one user would show the wrong order only half of the time. */
const USERS = 8;
const DEFINE = 'mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }';

function pairType(name: string, timeoutSeconds: number) {
  return { name, startType: `${name}_started`, endType: `${name}_ended`, autoClose: { timeoutSeconds, endAt: 'LAST_ACTIVITY' } };
}

describeWithPostgres('event order after a timeout change', () => {
  const clock = new ManualClock(T0 + 1000);
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { clock, sweeper: false, replays: false });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('ends at one position in fold order', async () => {
    await checkEndOrder('kept', async () => {});
  });

  it('ends in fold order after a state rebuild', async () => {
    // Without its Redis state, the fold rebuilds the state from PostgreSQL,
    // which must count the corrections already at the state's position.
    await checkEndOrder('rebuilt', (userId) => server.app.store.deleteUserState(userId));
  });

  async function checkEndOrder(prefix: string, beforeHeartbeat: (userId: string) => Promise<unknown>): Promise<void> {
    const long = `${prefix}-long`;
    const short = `${prefix}-short`;
    clock.set(T0 + 1000);
    const admin = await server.adminToken();
    dataOf(await server.gql(DEFINE, { input: pairType(long, 3600) }, admin), `definePairType ${long}`);
    dataOf(await server.gql(DEFINE, { input: pairType(short, 60) }, admin), `definePairType ${short}`);
    const users = [];
    for (let index = 0; index < USERS; index += 1) {
      const user = await server.createUser(`${prefix}-order-${index}`);
      const events = [
        { type: `${long}_started`, occurredAt: new Date(T0).toISOString() },
        { type: `${short}_started`, occurredAt: new Date(T0).toISOString() },
      ];
      dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
      users.push(user);
    }

    // At T0 + 120 s the short instance ends, decided at its deadline T0 + 60 s.
    clock.set(T0 + 120_000);
    for (const user of users) {
      await server.app.services.intake.settle(user.id);
    }
    // With 30 s, the long instance's deadline lies before the state's position,
    // so the next event ends it at that position, the short end's position.
    dataOf(await server.gql(DEFINE, { input: pairType(long, 30) }, admin), `definePairType ${long} again`);
    for (const user of users) {
      await beforeHeartbeat(user.id);
      const events = [{ type: 'heartbeat', occurredAt: new Date(T0 + 100_000).toISOString() }];
      dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
    }

    for (const user of users) {
      const reply = await server.gql('{ events(first: 10) { nodes { type } } }', {}, user.token);
      const types = ((reply.data?.events?.nodes ?? []) as Array<{ type: string }>).map((node) => node.type);
      expect(types, `events of ${user.id}`).toEqual([
        `${long}_started`,
        `${short}_started`,
        `${short}_ended`,
        `${long}_ended`,
        'heartbeat',
      ]);
    }
  }
});
