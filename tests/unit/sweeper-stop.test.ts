/**
 * A sweeper stopped in the middle of a batch of claimed users. The stop must
 * not wait for the whole batch, because shutdown has a grace period. The
 * users it did not settle must be due again at once, not hidden from other
 * sweepers until the lease ends.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { pino } from 'pino';
import { expect, it } from 'vitest';

import type { IntakeService } from '../../src/services/intake.js';
import { systemClock } from '../../src/services/index.js';
import { Sweeper } from '../../src/services/sweeper.js';
import type { SqlClient } from '../../src/storage/postgres/sql.js';
import { createMemoryStore } from '../../src/storage/redis/memory-store.js';

const SETTLE_MS = 200;
const USERS = 10;
const LEASE_MS = 60_000;

it('sweeper stop leaves rest of batch due', async () => {
  const store = createMemoryStore();
  await store.markDeadlinesComplete(await store.startDeadlineSeed());
  const userIds = Array.from({ length: USERS }, () => randomUUID());
  for (const userId of userIds) {
    await store.scheduleDeadline(userId, Date.now() - 1000);
  }
  const settled: string[] = [];
  let settleStarted!: () => void;
  const firstSettle = new Promise<void>((resolve) => (settleStarted = resolve));
  const intake = {
    async settle(userId: string): Promise<void> {
      settleStarted();
      await sleep(SETTLE_MS);
      settled.push(userId);
    },
  } as unknown as IntakeService;
  const sql = { query: async () => [] } as unknown as SqlClient;
  const sweeper = new Sweeper({
    sql,
    store,
    intake,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    intervalMs: 10,
    leaseMs: LEASE_MS,
    batchSize: 100,
    repairIntervalMs: 60_000,
  });

  sweeper.start();
  await firstSettle;
  await sweeper.stop();

  // Only the settle that was running when stop() came is waited for.
  expect(settled, 'users settled').toHaveLength(1);
  const reclaimed = await store.claimDueUsers(Date.now(), LEASE_MS, 100);
  expect(reclaimed.sort()).toEqual(userIds.filter((userId) => !settled.includes(userId)).sort());
});
