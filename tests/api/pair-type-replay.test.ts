/**
 * A change of a pair type's parent or default auto-close policy queues every
 * user with segments of that type, and the replay worker recomputes them, so
 * their rows end up as if the new definition had applied from the start.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import {
  claimPendingReplay,
  extendPendingReplayClaim,
  finishPendingReplay,
  queueDueChange,
  releasePendingReplayClaim,
} from '../../src/storage/postgres/replay-store.js';
import { ManualClock, startTestServer, type TestServer } from '../support/app.js';
import {
  SEND_EVENTS,
  chunk,
  dataOf,
  generateStream,
  inTimeOrder,
  replayInFreshServer,
  settleAndReadTimelines,
  type StreamEvent,
} from '../support/replay.js';
import { describeWithPostgres } from '../support/services.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');
const STREAM_START = NOW - 3 * 24 * 3600 * 1000;
const DEFINE = `mutation ($input: DefinePairTypeInput!) {
  definePairType(input: $input) { name parent autoClose { timeoutSeconds endAt } pendingReplays recomputing }
}`;
const PAIR_TYPES = '{ pairTypes { name pendingReplays recomputing } }';

interface Definition {
  name: string;
  startType: string;
  endType: string;
  parent: string | null;
  autoClose: { timeoutSeconds: number; endAt: 'LAST_ACTIVITY' | 'DEADLINE' };
}

const WORK_BEFORE: Definition = {
  name: 'work',
  startType: 'work_started',
  endType: 'work_ended',
  parent: null,
  autoClose: { timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' },
};
const STEP_BEFORE: Definition = {
  name: 'step',
  startType: 'step_started',
  endType: 'step_ended',
  parent: null,
  autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
};
const WORK_AFTER: Definition = { ...WORK_BEFORE, autoClose: { timeoutSeconds: 900, endAt: 'DEADLINE' } };
const STEP_AFTER: Definition = { ...STEP_BEFORE, parent: 'work', autoClose: { timeoutSeconds: 600, endAt: 'LAST_ACTIVITY' } };

/** Returns a top-level pair type `name`, with events `<name>_started` and `<name>_ended` and the policy of WORK_BEFORE. */
function pairTypeNamed(name: string): Definition {
  return { ...WORK_BEFORE, name, startType: `${name}_started`, endType: `${name}_ended` };
}

/** Generates a session and task stream and renames its events to the custom pair types `work` and `step`. */
function workStream(seed: number, idPrefix: string): StreamEvent[] {
  return generateStream({ idPrefix, seed, count: 120, startAt: STREAM_START, maxGapSeconds: 1500 }).map((event) => ({
    ...event,
    type: event.type.replace('session', 'work').replace('task', 'step'),
  }));
}

async function define(server: TestServer, token: string, definition: Definition) {
  const data = dataOf(await server.gql(DEFINE, { input: definition }, token), `definePairType ${definition.name}`);
  return data.definePairType as { name: string; pendingReplays: number; recomputing: boolean };
}

/** Returns `pendingReplays` and `recomputing` of each pair type by name. */
async function replayStatus(server: TestServer, token: string): Promise<Record<string, [number, boolean]>> {
  const data = dataOf(await server.gql(PAIR_TYPES, {}, token), 'pairTypes');
  const types = data.pairTypes as Array<{ name: string; pendingReplays: number; recomputing: boolean }>;
  return Object.fromEntries(types.map((type) => [type.name, [type.pendingReplays, type.recomputing]]));
}

async function sendStream(server: TestServer, token: string, stream: readonly StreamEvent[]): Promise<void> {
  for (const batch of chunk(inTimeOrder(stream), 40)) {
    dataOf(await server.gql(SEND_EVENTS, { events: batch }, token), 'sendEvents');
  }
}

describeWithPostgres('pair type changes', () => {
  const clock = new ManualClock(NOW);
  let server: TestServer;
  let admin: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { clock, sweeper: false, replays: false, replayChangeDelayMs: 0 });
    admin = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  it('recompute users as if defined so from the start', async () => {
    await define(server, admin, WORK_BEFORE);
    await define(server, admin, STEP_BEFORE);
    const streams = [1, 2, 3].map((seed) => workStream(seed, `u${seed}`));
    const users = [];
    for (const [index, stream] of streams.entries()) {
      const user = await server.createUser(`history-${index}`);
      await sendStream(server, user.token, stream);
      users.push(user);
    }

    const work = await define(server, admin, WORK_AFTER);
    expect([work.pendingReplays, work.recomputing], 'work right after its change').toEqual([0, true]);
    const step = await define(server, admin, STEP_AFTER);
    expect([step.pendingReplays, step.recomputing], 'step right after its change').toEqual([0, true]);
    expect(await server.app.replays.queueDueChanges(), 'changes queued').toBe(2);
    expect(await replayStatus(server, admin), 'status once queued').toMatchObject({ work: [3, true], step: [3, true] });

    const expected = await replayInFreshServer(import.meta.filename, streams, {
      now: NOW,
      prepareServer: async (fresh) => {
        const token = await fresh.adminToken();
        await define(fresh, token, WORK_AFTER);
        await define(fresh, token, STEP_AFTER);
      },
    });
    const before = await settleAndReadTimelines(server, users);
    expect(before.timelines, 'timelines before the replays').not.toEqual(expected);

    expect(await server.app.replays.runOnce(), 'users replayed').toBe(3);
    expect(await replayStatus(server, admin), 'status after the worker ran').toMatchObject({ work: [0, false], step: [0, false] });
    const after = await settleAndReadTimelines(server, users);
    expect(after.timelines, 'timelines after the replays').toEqual(expected);
  });

  it('leave users who override the policy', async () => {
    const overriding = await server.createUser('overriding');
    const following = await server.createUser('following');
    const call = {
      ...WORK_BEFORE,
      name: 'call',
      startType: 'call_started',
      endType: 'call_ended',
      autoClose: { timeoutSeconds: 7200, endAt: 'LAST_ACTIVITY' as const },
    };
    await define(server, admin, call);
    dataOf(
      await server.gql(
        'mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { pairType } }',
        { input: { pairType: 'call', timeoutSeconds: 7200, endAt: 'LAST_ACTIVITY' } },
        overriding.token,
      ),
      'setAutoClosePreference',
    );
    for (const user of [overriding, following]) {
      const events = [
        { type: 'call_started', occurredAt: new Date(NOW - 7200_000).toISOString() },
        { type: 'heartbeat', occurredAt: new Date(NOW - 6600_000).toISOString() },
      ];
      dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
    }

    await define(server, admin, { ...call, autoClose: { timeoutSeconds: 1200, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    expect((await replayStatus(server, admin)).call, 'status of the policy change').toEqual([1, true]);
    expect(await server.app.replays.runOnce(), 'users replayed').toBe(1);

    const segments = async (token: string) => {
      const reply = await server.gql('{ segments(filter: { pairTypes: ["call"] }) { nodes { end endReason } } }', {}, token);
      return dataOf(reply, 'segments').segments.nodes as Array<{ end: string | null; endReason: string | null }>;
    };
    // The heartbeat at NOW - 6600 s plus the new timeout of 1200 s has passed, and DEADLINE ends it there.
    expect(await segments(following.token), 'segment under the new default').toEqual([
      { end: new Date(NOW - 5400_000).toISOString(), endReason: 'AUTO_CLOSE' },
    ]);
    expect(await segments(overriding.token), 'segment under the override').toEqual([{ end: null, endReason: null }]);
  });

  it('finish a preference replay that died', async () => {
    const patrol = pairTypeNamed('patrol');
    const sentry = pairTypeNamed('sentry');
    const stream = generateStream({ idPrefix: 'patrol', seed: 7, count: 120, startAt: STREAM_START, maxGapSeconds: 1500 }).map(
      (event) => ({ ...event, type: event.type.replace('session', 'patrol').replace('task', 'sentry') }),
    );
    const policy = { pairType: 'patrol', timeoutSeconds: 300, endAt: 'DEADLINE' as const };
    await define(server, admin, patrol);
    await define(server, admin, sentry);
    const user = await server.createUser('preference-crash');
    await sendStream(server, user.token, stream);

    // The process stops after storing the preference, before its replay ran.
    const replay = server.app.services.intake.replay(user.id, async () => {
      await server.app.services.pairTypes.setPreference(user.id, policy.pairType, policy);
      throw new Error('process stopped');
    });
    await expect(replay).rejects.toThrow('process stopped');

    const expected = await replayInFreshServer(import.meta.filename, [stream], {
      now: NOW,
      prepareServer: async (fresh) => {
        const token = await fresh.adminToken();
        await define(fresh, token, patrol);
        await define(fresh, token, sentry);
      },
      prepareUser: async (fresh, freshUser) => {
        const reply = await fresh.gql(
          'mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { pairType } }',
          { input: policy },
          freshUser.token,
        );
        dataOf(reply, 'setAutoClosePreference');
      },
    });
    const before = await settleAndReadTimelines(server, [user]);
    expect(before.timelines, 'timeline with the replay undone').not.toEqual(expected);

    // The claim of the stopped process runs out.
    await server.app.db.sql.query(`UPDATE pending_replays SET claimed_until = NULL WHERE user_id = $1`, [user.id]);
    expect(await server.app.replays.runOnce(), 'users replayed').toBe(1);
    const after = await settleAndReadTimelines(server, [user]);
    expect(after.timelines, 'timeline after the worker').toEqual(expected);
  });

  it('count pending replays for staff only', async () => {
    const member = await server.createUser('member-reader');
    const reply = await server.gql('{ pairTypes { name pendingReplays } }', {}, member.token);
    expect(reply.status, 'HTTP status').toBe(200);
    expect(reply.data?.pairTypes?.[0]?.pendingReplays, 'count for a member').toBeNull();
    expect(reply.errors?.[0]?.extensions?.code, 'error code').toBe('FORBIDDEN');
    const names = await server.gql('{ pairTypes { name } }', {}, member.token);
    expect(names.errors, 'errors without the count').toBeUndefined();
  });
});

describeWithPostgres('replay worker', () => {
  const clock = new ManualClock(NOW);
  let server: TestServer;
  let admin: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      replays: false,
      replayChangeDelayMs: 0,
      env: { USER_LOCK_WAIT_MS: '200' },
    });
    admin = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  /** Ends the claim or the pause that hides a queued user from the worker. */
  async function endPause(userId: string): Promise<void> {
    await server.app.db.sql.query(`UPDATE pending_replays SET claimed_until = clock_timestamp() WHERE user_id = $1`, [userId]);
  }

  async function queuedRow(userId: string) {
    const rows = await server.app.db.sql.query<{ version: number; attempts: number; claimed: boolean }>(
      `SELECT version, attempts, claimed_until > clock_timestamp() AS claimed FROM pending_replays WHERE user_id = $1`,
      [userId],
    );
    return rows[0] ?? null;
  }

  async function userWithSegments(name: string, pairType: Definition) {
    const user = await server.createUser(name);
    const events = [{ type: pairType.startType, occurredAt: new Date(NOW - 600_000).toISOString() }];
    dataOf(await server.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
    return user;
  }

  it('retries a user whose lock is busy', async () => {
    const pairType: Definition = pairTypeNamed('shift');
    await define(server, admin, pairType);
    const user = await userWithSegments('busy', pairType);
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });

    const heldLock = await server.app.store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });
    try {
      expect(await server.app.replays.runOnce(), 'users replayed while locked').toBe(0);
    } finally {
      await server.app.store.releaseUserLock(heldLock);
    }
    expect(await queuedRow(user.id), 'row after the failure').toEqual({ version: 1, attempts: 1, claimed: true });
    expect(await server.app.replays.runOnce(), 'users replayed during the pause').toBe(0);

    await endPause(user.id);
    expect(await server.app.replays.runOnce(), 'users replayed after the pause').toBe(1);
    expect(await queuedRow(user.id), 'row after the replay').toBeNull();
  });

  it('keeps a change queued during a replay', async () => {
    const pairType: Definition = pairTypeNamed('visit');
    await define(server, admin, pairType);
    const user = await userWithSegments('changed-twice', pairType);
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 120, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    const first = await queuedRow(user.id);
    expect(first?.version, 'version after one change').toBe(1);

    // A second change lands after a replay read version 1, as if during it.
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    await finishPendingReplay(server.app.db.sql, user.id, 1);
    expect(await queuedRow(user.id), 'row after a stale finish').toEqual({ version: 2, attempts: 0, claimed: null });

    expect(await server.app.replays.runOnce(), 'users replayed').toBe(1);
    expect(await queuedRow(user.id), 'row after the replay').toBeNull();
  });

  it('reads a change made in another process', async () => {
    const other = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      replays: false,
      replayChangeDelayMs: 0,
      databaseUrl: server.databaseUrl!,
    });
    try {
      const pairType: Definition = pairTypeNamed('watch');
      await define(server, admin, pairType);
      // Sending through the other server fills its pair type cache.
      const user = await server.createUser('other-process');
      const events = [{ type: 'watch_started', occurredAt: new Date(NOW - 600_000).toISOString() }];
      dataOf(await other.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
      await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });

      expect(await other.app.replays.runOnce(), 'users replayed by the other server').toBe(1);
      const reply = await other.gql('{ segments(filter: { pairTypes: ["watch"] }) { nodes { end endReason } } }', {}, user.token);
      expect(dataOf(reply, 'segments').segments.nodes, 'segment after the replay').toEqual([
        { end: new Date(NOW - 540_000).toISOString(), endReason: 'AUTO_CLOSE' },
      ]);
    } finally {
      await other.close();
    }
  });

  it('queues users another process folded stale', async () => {
    const other = await startTestServer(import.meta.filename, {
      clock,
      sweeper: false,
      replays: false,
      databaseUrl: server.databaseUrl!,
    });
    try {
      const outer: Definition = pairTypeNamed('outer');
      const inner: Definition = pairTypeNamed('inner');
      await define(server, admin, outer);
      await define(server, admin, inner);
      const user = await server.createUser('stale-fold');
      // A heartbeat through the other server fills its pair type cache, in which inner has no parent.
      const heartbeat = [{ type: 'heartbeat', occurredAt: new Date(NOW - 900_000).toISOString() }];
      dataOf(await other.gql(SEND_EVENTS, { events: heartbeat }, user.token), 'sendEvents');
      await define(server, admin, { ...inner, parent: 'outer' });
      // Within its cache's second, the other server folds the user's first inner start without the parent.
      const start = [{ type: 'inner_started', occurredAt: new Date(NOW - 600_000).toISOString() }];
      dataOf(await other.gql(SEND_EVENTS, { events: start }, user.token), 'sendEvents');

      expect(await server.app.replays.runOnce(), 'users replayed').toBe(1);
      const reply = await server.gql('{ segments { nodes { pairType parentSegmentId id } } }', {}, user.token);
      const nodes = dataOf(reply, 'segments').segments.nodes as Array<{ pairType: string; parentSegmentId: string | null; id: string }>;
      const parent = nodes.find((node) => node.pairType === 'outer');
      expect(parent, 'outer segment opened for the inner start').toBeDefined();
      expect(nodes.find((node) => node.pairType === 'inner')?.parentSegmentId, 'parent of the inner segment').toBe(parent?.id);
    } finally {
      await other.close();
    }
  });

  it('queues a change once it is old enough', async () => {
    const pairType: Definition = pairTypeNamed('tour');
    await define(server, admin, pairType);
    const users = [await userWithSegments('batch-a', pairType), await userWithSegments('batch-b', pairType)];
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });

    expect(await queueDueChange(server.app.db.sql, 60_000, 1), 'change younger than the delay').toBeNull();
    // One user per statement: the keyset walk must reach both.
    expect((await queueDueChange(server.app.db.sql, 0, 1))?.pairType, 'change queued').toBe('tour');
    for (const user of users) {
      expect(await queuedRow(user.id), `row of ${user.id}`).toEqual({ version: 1, attempts: 0, claimed: null });
    }
    expect(await queueDueChange(server.app.db.sql, 0, 1), 'change after it was queued').toBeNull();
    expect(await server.app.replays.runOnce(), 'users replayed').toBe(2);
  });

  it('extends a claim while its replay runs', async () => {
    const pairType: Definition = pairTypeNamed('ride');
    await define(server, admin, pairType);
    const user = await userWithSegments('extended', pairType);
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    const claim = await claimPendingReplay(server.app.db.sql, 1);
    expect(claim?.userId, 'claimed user').toBe(user.id);

    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(await extendPendingReplayClaim(server.app.db.sql, claim!, 60_000), 'extension').toBe(true);
    expect(await claimPendingReplay(server.app.db.sql, 1), 'claim by another worker').toBeNull();

    // A new change gives the row a newer version, and the claim still keeps other workers away.
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 90, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    expect(await extendPendingReplayClaim(server.app.db.sql, claim!, 60_000), 'extension after a change').toBe(true);
    expect(await server.app.replays.runOnce(), 'users replayed during the claim').toBe(0);
    // The holder's replay ends and leaves the newer change to the next worker at once.
    await releasePendingReplayClaim(server.app.db.sql, claim!);
    expect(await server.app.replays.runOnce(), 'users replayed after the release').toBe(1);
  });

  it('keeps queued users in place', async () => {
    const pairType: Definition = pairTypeNamed('hike');
    await define(server, admin, pairType);
    const users = [await userWithSegments('place-a', pairType), await userWithSegments('place-b', pairType)];
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
    const requestedAt = async () =>
      server.app.db.sql.query<{ user_id: string; requested_at: Date }>(
        `SELECT user_id, requested_at FROM pending_replays WHERE user_id = ANY($1::uuid[]) ORDER BY user_id`,
        [users.map((user) => user.id)],
      );
    const before = await requestedAt();
    const claim = await claimPendingReplay(server.app.db.sql, 60_000);

    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 90, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();

    expect(await requestedAt(), 'request times after a second change').toEqual(before);
    expect((await queuedRow(claim!.userId))?.claimed, 'claim after a second change').toBe(true);
    for (const user of users) {
      expect((await queuedRow(user.id))?.version, `version of ${user.id}`).toBe(2);
    }
    await releasePendingReplayClaim(server.app.db.sql, claim!);
    expect(await server.app.replays.runOnce(), 'users replayed').toBe(2);
  });

  it('queues a change made during a backlog', async () => {
    const lane: Definition = pairTypeNamed('lane');
    const dock: Definition = pairTypeNamed('dock');
    await define(server, admin, lane);
    await define(server, admin, dock);
    for (let index = 0; index < 4; index += 1) {
      await userWithSegments(`lane-${index}`, lane);
    }
    const dockUser = await userWithSegments('dock-user', dock);
    await define(server, admin, { ...lane, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();

    // The first lane replay changes dock; the worker must queue it before the lane backlog ends.
    const intake = server.app.services.intake;
    const replay = intake.replay.bind(intake);
    const dockQueuedBefore: boolean[] = [];
    intake.replay = async (userId, prepare) => {
      if (dockQueuedBefore.length === 0) {
        await define(server, admin, { ...dock, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
      }
      dockQueuedBefore.push((await queuedRow(dockUser.id)) !== null);
      return replay(userId, prepare);
    };
    try {
      expect(await server.app.replays.runOnce(), 'users replayed').toBe(5);
    } finally {
      intake.replay = replay;
    }
    // The worker queues the dock change between the first and the second lane replay.
    expect(dockQueuedBefore.slice(0, 2), 'dock user queued after the first replay').toEqual([false, true]);
  });

  let timeout = 100;
  /** Changes the policy of `pairType` and queues its users at once. */
  async function change(pairType: Definition) {
    timeout += 1;
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: timeout, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();
  }

  /** Makes the worker fail on the user `times` times, because its lock is busy, ending each pause. */
  async function failTimes(userId: string, times: number) {
    for (let index = 0; index < times; index += 1) {
      await endPause(userId);
      const heldLock = await server.app.store.acquireUserLock(userId, { ttlMs: 30_000, waitMs: 0 });
      try {
        expect(await server.app.replays.runOnce(), 'users replayed while locked').toBe(0);
      } finally {
        await server.app.store.releaseUserLock(heldLock);
      }
    }
  }

  async function pauseSeconds(userId: string): Promise<number | null> {
    const rows = await server.app.db.sql.query<{ pause: number | null }>(
      `SELECT round(extract(epoch FROM claimed_until - clock_timestamp()))::int AS pause FROM pending_replays WHERE user_id = $1`,
      [userId],
    );
    return rows[0]?.pause ?? null;
  }

  it('takes other users before a replay again', async () => {
    const lap: Definition = pairTypeNamed('lap');
    await define(server, admin, lap);
    const users = [await userWithSegments('lap-a', lap), await userWithSegments('lap-b', lap)];
    await change(lap);

    // Each replay of the first user reads the pair types after the version
    // of its row, and a change lands right then, so its row stays queued.
    const { intake, pairTypes } = server.app.services;
    const replay = intake.replay.bind(intake);
    const list = pairTypes.list.bind(pairTypes);
    const order: string[] = [];
    let injecting = false;
    intake.replay = async (userId, prepare) => {
      order.push(userId);
      return replay(userId, prepare);
    };
    pairTypes.list = async () => {
      if (!injecting && order.length > 0 && order.at(-1) === order[0] && order.length < 6) {
        injecting = true;
        try {
          await change(lap);
        } finally {
          injecting = false;
        }
      }
      return list();
    };
    try {
      await server.app.replays.runOnce();
    } finally {
      intake.replay = replay;
      pairTypes.list = list;
    }
    const other = users.find((user) => user.id !== order[0])!.id;
    expect(order.indexOf(other), 'replays before the other user').toBe(1);
  });

  it('ends a pause when a change comes', async () => {
    const jog: Definition = pairTypeNamed('jog');
    await define(server, admin, jog);
    const user = await userWithSegments('jog-a', jog);
    await change(jog);
    await failTimes(user.id, 8);
    expect(await pauseSeconds(user.id), 'pause after eight failures').toBeGreaterThan(100);

    await change(jog);
    expect(await server.app.replays.runOnce(), 'users replayed after the change').toBe(1);
  });

  it('counts the pause from the latest change', async () => {
    const row: Definition = pairTypeNamed('row');
    await define(server, admin, row);
    const user = await userWithSegments('row-a', row);
    await change(row);
    await failTimes(user.id, 8);
    await endPause(user.id);

    // The worker claims the user after eight failures; a change comes while its replay waits for the busy lock.
    const intake = server.app.services.intake;
    const replay = intake.replay.bind(intake);
    intake.replay = async (userId, prepare) => {
      await change(row);
      return replay(userId, prepare);
    };
    const heldLock = await server.app.store.acquireUserLock(user.id, { ttlMs: 30_000, waitMs: 0 });
    try {
      expect(await server.app.replays.runOnce(), 'users replayed while locked').toBe(0);
    } finally {
      await server.app.store.releaseUserLock(heldLock);
      intake.replay = replay;
    }
    expect(await pauseSeconds(user.id), 'pause after the first failure since the change').toBeLessThanOrEqual(2);
    await endPause(user.id);
    expect(await server.app.replays.runOnce(), 'users replayed after the pause').toBe(1);
  });

  it('hands one user to one worker at a time', async () => {
    const pairType: Definition = pairTypeNamed('trip');
    await define(server, admin, pairType);
    const users = [await userWithSegments('claim-a', pairType), await userWithSegments('claim-b', pairType)];
    await define(server, admin, { ...pairType, autoClose: { timeoutSeconds: 60, endAt: 'DEADLINE' } });
    await server.app.replays.queueDueChanges();

    const claims = await Promise.all([1, 2, 3].map(() => claimPendingReplay(server.app.db.sql, 60_000)));
    const claimed = claims.flatMap((claim) => (claim === null ? [] : [claim.userId]));
    expect(claimed.sort(), 'users claimed by three workers').toEqual(users.map((user) => user.id).sort());
    expect(await server.app.replays.runOnce(), 'users replayed while claimed').toBe(0);

    await server.app.db.sql.query(`UPDATE pending_replays SET claimed_until = clock_timestamp()`);
    expect(await server.app.replays.runOnce(), 'users replayed after the claims expired').toBe(2);
  });

  it('replays built-ins whose default changed at a start', async () => {
    const first = await startTestServer(import.meta.filename, { clock, sweeper: false, replays: false, replayChangeDelayMs: 0 });
    let second: TestServer | undefined;
    try {
      const user = await first.createUser('default-change');
      const start = NOW - 2 * 3600_000;
      // 45 minutes of silence exceed the default timeout of 30 minutes, so the session closes at its start.
      const events = [
        { type: 'session_started', occurredAt: new Date(start).toISOString() },
        { type: 'heartbeat', occurredAt: new Date(start + 45 * 60_000).toISOString() },
      ];
      dataOf(await first.gql(SEND_EVENTS, { events }, user.token), 'sendEvents');
      // A user with a preference of their own for sessions is not replayed when the default changes.
      const overriding = await first.createUser('default-change-overriding');
      dataOf(
        await first.gql(
          'mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { pairType } }',
          { input: { pairType: 'session', timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
          overriding.token,
        ),
        'setAutoClosePreference',
      );
      dataOf(await first.gql(SEND_EVENTS, { events }, overriding.token), 'sendEvents');
      const segments = '{ segments(filter: { pairTypes: ["session"] }) { nodes { start end endReason } } }';
      expect(dataOf(await first.gql(segments, {}, user.token), 'segments').segments.nodes, 'sessions under 30 minutes').toEqual([]);

      // A start with a one-hour default on the same database changes the built-in policy.
      second = await startTestServer(import.meta.filename, {
        clock,
        sweeper: false,
        replays: false,
        replayChangeDelayMs: 0,
        databaseUrl: first.databaseUrl!,
        env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: '3600' },
      });
      const admin = await second.adminToken();
      const status = await replayStatus(second, admin);
      expect(status.session, 'session right after the start').toEqual([0, true]);
      expect(status.task, 'task right after the start').toEqual([0, true]);
      expect(await second.app.replays.queueDueChanges(), 'changes queued').toBe(2);
      // The user has no task segments, so the change of task queues no one, and the overriding user is skipped.
      expect(await second.app.replays.runOnce(), 'users replayed').toBe(1);
      expect(dataOf(await second.gql(segments, {}, user.token), 'segments').segments.nodes, 'sessions under one hour').toEqual([
        { start: new Date(start).toISOString(), end: new Date(start + 45 * 60_000).toISOString(), endReason: 'AUTO_CLOSE' },
      ]);
    } finally {
      await second?.close();
      await first.close();
    }
  });
});
