/**
 * Vitest global setup: gives the run an id that every Redis key prefix of
 * the run starts with, and deletes the keys under it when the run ends, so
 * test runs leave no keys in a shared Redis. Keys of a run that was killed
 * stay, under `test:<run id>:`.
 */
import { randomBytes } from 'node:crypto';

import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    redisRunId: string;
  }
}

export default function setup(project: TestProject): () => Promise<void> {
  const runId = randomBytes(4).toString('hex');
  project.provide('redisRunId', runId);
  return async () => {
    const url = process.env.REDIS_URL;
    if (url === undefined || url === '') {
      return;
    }
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `test:${runId}:*`, 'COUNT', 1000);
        cursor = next;
        if (keys.length > 0) {
          await redis.unlink(...keys);
        }
      } while (cursor !== '0');
    } catch (error) {
      console.warn(`Could not delete the Redis keys of this test run (test:${runId}:*): ${(error as Error).message}`);
    } finally {
      redis.disconnect();
    }
  };
}
