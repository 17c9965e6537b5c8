import dns from 'node:dns';

import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';

import { openRedisConnection, RedisUnavailableError, type RedisConnection } from '../../src/storage/redis/connection.js';
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

  // The wait's own timeout is an hour, far beyond this test's timeout, so a
  // close() that left the waiter to its timeout makes the test time out.
  it('close fails waiting callers at once', { timeout: 10_000 }, async () => {
    const connection = await openUnreachable(3_600_000);
    const wait = connection.waitUntilReady('wait');
    const failed = expect(wait).rejects.toThrow('the store is closed');
    await connection.close();

    await failed;
    expect(connection.countWaitersForTests()).toBe(0);
  });
});

describe('redis connection error', () => {
  // Node tries every address of such a host and then reports an AggregateError with an empty message.
  it('names a refused dual-stack host', { timeout: 10_000 }, async () => {
    const port = await unusedLoopbackPort();
    const realLookup = dns.lookup;
    const lookup = vi.spyOn(dns, 'lookup').mockImplementation(((hostname: string, options: unknown, callback: unknown) => {
      if (hostname !== 'dual-stack.test') {
        return (realLookup as (...args: unknown[]) => void)(hostname, options, callback);
      }
      (callback as (error: null, addresses: dns.LookupAddress[]) => void)(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ]);
    }) as typeof dns.lookup);
    const connection = openRedisConnection({
      url: `redis://dual-stack.test:${port}`,
      commandTimeoutMs: 500,
      connectTimeoutMs: 200,
      logger: pino({ level: 'silent' }),
    });
    try {
      const error = await connection.waitUntilReady('wait').then(
        () => null,
        (failure: unknown) => failure,
      );

      expect(lookup, 'lookup of the test host').toHaveBeenCalled();
      expect(error, 'error').toBeInstanceOf(RedisUnavailableError);
      expect((error as RedisUnavailableError).connectionError, 'connection error').toContain('ECONNREFUSED');
      // Each address's own error, not only the shared code, so the message shows which addresses were tried.
      expect((error as RedisUnavailableError).connectionError, 'IPv6 address').toContain(`::1:${port}`);
      expect((error as RedisUnavailableError).connectionError, 'IPv4 address').toContain(`127.0.0.1:${port}`);
    } finally {
      await connection.close();
      lookup.mockRestore();
    }
  });
});
