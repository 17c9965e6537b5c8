/**
 * A pair type defined in one server process must give its event types their
 * role in every other process at once, also in a process that stored one
 * of those types as a point event a moment before and still caches it. Roles are decided when an event is stored and never change, so a
 * late cache would leave such events as point events for good. The other
 * process must also fold and settle users whose pairs already use the type.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { dataOf } from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const DEFINE = `mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }`;
const SEND = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) { results { event { id type role pairType } } }
}`;

interface SentEvent {
  id: string;
  type: string;
  role: string;
  pairType: string | null;
}

describeWithPostgres('pair type defined in another process', () => {
  let definer: TestServer;
  let sender: TestServer;

  beforeAll(async () => {
    definer = await startTestServer(import.meta.filename, WITHOUT_WORKERS);
    sender = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, databaseUrl: definer.databaseUrl as string });
  });

  afterAll(async () => {
    await sender?.close();
    await definer?.close();
  });

  async function send(token: string, events: Array<Record<string, unknown>>): Promise<SentEvent[]> {
    const reply = await sender.gql(SEND, { events }, token);
    return dataOf(reply, 'sendEvents').sendEvents.results.map((result: { event: SentEvent }) => result.event);
  }

  it('applies at once where the type was a point event', async () => {
    const member = await sender.createUser('door-member');
    const adminToken = await definer.adminToken();
    // The sender now caches both types as point events.
    const before = await send(member.token, [
      { type: 'door_opened', occurredAt: '2026-03-02T08:00:00Z' },
      { type: 'heartbeat', occurredAt: '2026-03-02T08:00:30Z' },
    ]);
    expect(before[0]).toMatchObject({ role: 'POINT', pairType: null });

    const defined = await definer.gql(DEFINE, { input: { name: 'door', startType: 'door_opened', endType: 'door_closed' } }, adminToken);
    dataOf(defined, 'definePairType');

    // Well within the sender's pair type cache lifetime (1 s).
    const after = await send(member.token, [
      { type: 'door_opened', occurredAt: '2026-03-02T08:01:00Z' },
      { type: 'heartbeat', occurredAt: '2026-03-02T08:02:00Z' },
    ]);

    expect(after[0]).toMatchObject({ type: 'door_opened', role: 'START', pairType: 'door' });
    expect(after[1]).toMatchObject({ type: 'heartbeat', role: 'POINT', pairType: null });
  });

  it('accepts events that name it at once', async () => {
    const member = await sender.createUser('gate-member');
    const adminToken = await definer.adminToken();
    const before = await send(member.token, [{ type: 'gate_opened', occurredAt: '2026-03-03T08:00:00Z' }]);
    expect(before[0]).toMatchObject({ role: 'POINT', pairType: null });

    const defined = await definer.gql(DEFINE, { input: { name: 'gate', startType: 'gate_opened', endType: 'gate_closed' } }, adminToken);
    dataOf(defined, 'definePairType');

    // The sender's cache still has gate_opened as a point event.
    const after = await send(member.token, [
      { type: 'gate_opened', isPair: true, pairType: 'gate', pairKey: 'north', occurredAt: '2026-03-03T08:01:00Z' },
    ]);

    expect(after[0]).toMatchObject({ type: 'gate_opened', role: 'START', pairType: 'gate' });
  });

  it('settles a user with its open pairs', async () => {
    const member = await definer.createUser('vault-member');
    const adminToken = await definer.adminToken();
    // The other process loads its pair types before the definition.
    await sender.app.services.intake.settle(member.id);

    dataOf(await definer.gql(DEFINE, { input: { name: 'vault', startType: 'vault_opened', endType: 'vault_closed' } }, adminToken), 'definePairType');
    // Recent enough that the pair stays open, so the fold needs its policy.
    const occurredAt = new Date(Date.now() - 60_000).toISOString();
    const sent = await definer.gql(SEND, { events: [{ type: 'vault_opened', occurredAt }] }, member.token);
    dataOf(sent, 'sendEvents');

    // Within the other process's cache lifetime (1 s), which lacks the pair type.
    const settled = await sender.app.services.intake.settle(member.id);
    expect(settled.changed).toBe(false);
    const reply = await sender.gql('{ segments(filter: { pairTypes: ["vault"] }) { nodes { pairType end } } }', {}, member.token);
    expect(dataOf(reply, 'segments').segments.nodes).toEqual([{ pairType: 'vault', end: null }]);
  });
});
