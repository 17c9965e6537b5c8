/**
 * The deadline set's completeness marker names the Redis server's run_id from
 * INFO. A Redis whose ACL denies INFO to the service's user must still let
 * the sweeper mark and check the set, and a BUSY reply must stay an error.
 */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { createRedisStore } from '../../src/storage/redis/redis-store.js';
import type { CoordinationStore } from '../../src/storage/redis/coordination-store.js';
import { describeWithPrivateRedis, startPrivateRedis, type PrivateRedis } from '../support/redis-server.js';

describeWithPrivateRedis('deadline marker without INFO', () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
  let redis: PrivateRedis;
  let store: CoordinationStore;

  beforeAll(async () => {
    // An ACL user without INFO gets NOPERM for it. ioredis then skips its
    // ready check with a console warning, so the connection itself works.
    redis = await startPrivateRedis(['--user', 'noinfo', 'on', '>noinfo-password', '~*', '&*', '+@all', '-info']);
    const url = redis.url.replace('redis://', 'redis://noinfo:noinfo-password@');
    store = createRedisStore({ url, keyPrefix: 'noinfo:', commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger });
  }, 60_000);

  afterAll(async () => {
    await store?.close();
    await redis?.stop();
  });

  it('marks the set and warns once', async () => {
    expect(await store.deadlinesComplete()).toBe(false);

    expect(await store.markDeadlinesComplete(await store.startDeadlineSeed())).toBe(true);

    expect(await store.deadlinesComplete()).toBe(true);
    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((entry) => entry.level >= 40);
    expect(warnings.map((entry) => entry.msg)).toEqual([
      'Redis rejected INFO, so a restart of Redis from an older snapshot cannot be detected and its deadlines stay until they pass',
    ]);
  });
});

describeWithPrivateRedis('deadline marker while Redis is busy', () => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
  let redis: PrivateRedis;
  let store: CoordinationStore;
  let scriptClient: Redis;

  beforeAll(async () => {
    // Other clients get BUSY once a script has run for 100 ms (Redis 7 option).
    redis = await startPrivateRedis(['--busy-reply-threshold', '100']);
    store = createRedisStore({ url: redis.url, keyPrefix: 'busy:', commandTimeoutMs: 2000, connectTimeoutMs: 2000, logger });
    scriptClient = new Redis(redis.url, { enableReadyCheck: false, maxRetriesPerRequest: 0 });
  }, 60_000);

  afterAll(async () => {
    scriptClient?.disconnect();
    await store?.close();
    await redis?.stop();
  });

  it('reports BUSY as unavailable', async () => {
    await store.markDeadlinesComplete(await store.startDeadlineSeed());
    const script = scriptClient.eval('while true do end', 0).catch((error: unknown) => error);
    const probe = new Redis(redis.url, { enableReadyCheck: false, maxRetriesPerRequest: 0 });
    try {
      // Waits until the script blocks the server, which then replies BUSY to INFO too.
      for (;;) {
        const reply = await probe.ping().catch((error: unknown) => (error as Error).message);
        if (reply.startsWith('BUSY')) {
          break;
        }
      }
      await expect(store.deadlinesComplete()).rejects.toMatchObject({ reason: 'REDIS_UNAVAILABLE' });
      await probe.call('SCRIPT', 'KILL');
      await script;
    } finally {
      probe.disconnect();
    }

    expect(await store.deadlinesComplete(), 'deadline set complete after the script').toBe(true);
    const messages = lines.map((line) => (JSON.parse(line) as { msg: string }).msg);
    // BUSY passes, so it is no reason to stop checking for restarts.
    expect(messages, 'log messages').not.toContain(
      'Redis rejected INFO, so a restart of Redis from an older snapshot cannot be detected and its deadlines stay until they pass',
    );
  }, 60_000);
});
