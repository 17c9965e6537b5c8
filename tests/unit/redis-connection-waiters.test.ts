import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { openRedisConnection, type RedisConnection } from '../../src/storage/redis/connection.js';
import { unusedLoopbackPort } from '../support/cli.js';

/** Opens a connection to a loopback port that nothing listens on, so Redis stays unreachable. */
async function openUnreachable(commandTimeoutMs: number): Promise<RedisConnection> {
  const port = await unusedLoopbackPort();
  return openRedisConnection({
    url: `redis://127.0.0.1:${port}`,
    commandTimeoutMs,
    connectTimeoutMs: 20,
    logger: pino({ level: 'silent' }),
  });
}

describe('redis connection waiters', () => {
  it('timed-out waits leave no waiter', async () => {
    const connection = await openUnreachable(20);
    try {
      // Redis stays unreachable, so every wait times out.
      const waits = Array.from({ length: 200 }, (_, index) => connection.waitUntilReady(`wait ${index}`));
      const outcomes = await Promise.allSettled(waits);

      expect(outcomes.every((outcome) => outcome.status === 'rejected')).toBe(true);
      expect(connection.countWaitersForTests()).toBe(0);
    } finally {
      await connection.close();
    }
  });

  it('close fails waiting callers at once', async () => {
    const connection = await openUnreachable(5_000);
    const started = performance.now();
    const wait = connection.waitUntilReady('wait');
    const failed = expect(wait).rejects.toThrow('the store is closed');
    await connection.close();

    await failed;
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(connection.countWaitersForTests()).toBe(0);
  });
});
