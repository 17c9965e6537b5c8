import type { Logger } from 'pino';

import type { Config } from '../../config/types.js';
import type { CoordinationStore } from './coordination-store.js';
import { createMemoryStore } from './memory-store.js';
import { createRedisStore } from './redis-store.js';

export type {
  AcquireUserLockOptions,
  CoordinationStore,
  UserLock,
  WindowCount,
} from './coordination-store.js';
export {
  createMemoryStore,
  type MemoryStore,
  type MemoryStoreEntryCounts,
  type MemoryStoreOptions,
} from './memory-store.js';
export { createRedisStore, type RedisStoreOptions } from './redis-store.js';

/**
 * Creates the Redis store when REDIS_URL is set, and the in-process store
 * otherwise. The in-process store coordinates only within this process, so
 * it fits a single instance.
 */
export function createCoordinationStore(
  config: Pick<Config, 'redis'>,
  logger: Logger,
): CoordinationStore {
  const { url, keyPrefix, commandTimeoutMs, connectTimeoutMs, userStateIdleTtlSeconds } = config.redis;
  const userStateIdleTtlMs = userStateIdleTtlSeconds * 1000;
  if (url === null) {
    logger.info('REDIS_URL is not set, so locks and engine state stay in this process');
    return createMemoryStore({ userStateIdleTtlMs });
  }
  return createRedisStore({ url, keyPrefix, commandTimeoutMs, connectTimeoutMs, userStateIdleTtlMs, logger });
}
