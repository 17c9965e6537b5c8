/**
 * The auto-close sweeper. Each server process runs one: it claims users whose
 * deadline has passed from the Redis sorted set (a claim hides the user from
 * other sweepers for a lease), then settles them under the user's lock like
 * any request. The close time comes from the engine's policy, never from the
 * moment the sweeper ran.
 *
 * It also repairs what a Redis flush or a crash could lose: when the sentinel
 * key that marks the deadline set as complete is missing, it schedules every
 * user with open segments or unapplied events for an immediate settle.
 */
import type { Logger } from 'pino';

import { DomainError } from '../domain/errors.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { CoordinationStore } from '../storage/redis/coordination-store.js';
import type { Clock } from './index.js';
import type { IntakeService } from './intake.js';

/** Counter key whose presence means the deadline set was seeded from PostgreSQL. */
const SEED_SENTINEL = 'sweeper:deadlines-seeded';
const SENTINEL_LIFETIME_MS = 10 * 365 * 24 * 3600 * 1000;

/** Records that every user's deadline is in the set, so sweepers need not reseed it. */
export async function markDeadlinesSeeded(store: CoordinationStore): Promise<void> {
  await store.incrementWindowCounter(SEED_SENTINEL, SENTINEL_LIFETIME_MS);
}

export interface SweeperOptions {
  sql: SqlClient;
  store: CoordinationStore;
  intake: IntakeService;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  leaseMs: number;
  batchSize: number;
}

export class Sweeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private failures = 0;

  constructor(private readonly options: SweeperOptions) {}

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) {
      return;
    }
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = null;
        this.schedule(this.options.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await this.sweepOnce();
      if (this.failures > 0) {
        this.options.logger.info({ failures: this.failures }, 'sweeper recovered');
      }
      this.failures = 0;
    } catch (error) {
      this.failures += 1;
      // Log the first failure and then every hundredth, so an outage does not flood the log.
      if (this.failures === 1 || this.failures % 100 === 0) {
        this.options.logger.warn({ err: error, failures: this.failures }, 'sweep failed; retrying');
      }
    }
  }

  /** Runs one sweep; returns the number of users settled. Tests call it directly. */
  async sweepOnce(): Promise<number> {
    const { store, clock, leaseMs, batchSize, intake, logger } = this.options;
    await this.seedIfLost();

    let settled = 0;
    for (;;) {
      const due = await store.claimDueUsers(clock.now(), leaseMs, batchSize);
      for (const userId of due) {
        try {
          await intake.settle(userId, 0);
          settled += 1;
        } catch (error) {
          if (error instanceof DomainError && error.reason === 'USER_BUSY') {
            // A request has the lock, and it schedules the deadline itself when done.
            continue;
          }
          logger.warn({ err: error, userId }, 'auto-close of a user failed; retrying after the lease');
        }
      }
      if (due.length < batchSize || this.stopped) {
        return settled;
      }
    }
  }

  private async seedIfLost(): Promise<void> {
    const { store, sql, clock, logger } = this.options;
    const sentinel = await store.getWindowCounter(SEED_SENTINEL);
    if (sentinel.count > 0) {
      return;
    }
    const rows = await sql.query<{ user_id: string }>(
      `SELECT DISTINCT user_id FROM segments WHERE end_at IS NULL
       UNION
       SELECT id FROM users WHERE applied_seq < last_event_seq`,
    );
    const now = clock.now();
    for (const row of rows) {
      await store.scheduleDeadline(row.user_id, now);
    }
    await markDeadlinesSeeded(store);
    logger.info({ users: rows.length }, 'deadline set seeded from PostgreSQL');
  }
}
