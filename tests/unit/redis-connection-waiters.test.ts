import { createServer } from 'node:net';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { openRedisConnection } from '../../src/storage/redis/connection.js';

/** Returns a loopback port that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') {
    throw new Error(`unexpected server address ${JSON.stringify(address)}`);
  }
  return address.port;
}

describe('redis connection waiters', () => {
  it('timed-out waits leave no waiter', async () => {
    const port = await closedPort();
    const connection = openRedisConnection({
      url: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 20,
      connectTimeoutMs: 20,
      logger: pino({ level: 'silent' }),
    });
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
    const port = await closedPort();
    const connection = openRedisConnection({
      url: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 5_000,
      connectTimeoutMs: 20,
      logger: pino({ level: 'silent' }),
    });
    const started = performance.now();
    const wait = connection.waitUntilReady('wait');
    const failed = expect(wait).rejects.toThrow('the store is closed');
    await connection.close();

    await failed;
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(connection.countWaitersForTests()).toBe(0);
  });
});
