/**
 * The deadline set's completeness marker names the Redis server's run_id from
 * INFO. A Redis whose ACL denies INFO to the service's user must still let
 * the sweeper mark and check the set.
 */
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

  it('marks and reads the set', async () => {
    expect(await store.deadlinesComplete()).toBe(false);

    expect(await store.markDeadlinesComplete(await store.startDeadlineSeed())).toBe(true);

    expect(await store.deadlinesComplete()).toBe(true);
  });

  it('warns once about INFO', () => {
    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string }).filter((entry) => entry.level >= 40);
    expect(warnings.map((entry) => entry.msg)).toEqual([
      'Redis rejected INFO, so a restart of Redis from an older snapshot cannot be detected and its deadlines stay until they pass',
    ]);
  });
});
