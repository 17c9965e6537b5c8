/**
 * The auto-close sweeper. Each server process runs one: it claims users whose
 * deadline has passed from the Redis sorted set (a claim hides the user from
 * other sweepers for a lease), then settles them under the user's lock like
 * any request. The close time comes from the engine's policy, never from the
 * moment the sweeper ran.
 *
 * It also repairs what a Redis flush or a crash could lose: when the marker
 * that the deadline set is complete is missing from the set, or was written
 * while an earlier run of the Redis server ran, it schedules every user with
 * open segments or unapplied events for an immediate settle. Every
 * `repairIntervalMs` it also schedules the users with unapplied events, and
 * the users with open segments that have no deadline in the set. A request
 * whose user lock expired can store events after the next holder folded and
 * replaced the deadline, and then no deadline would fold them. A Redis that
 * restarts from an older snapshot, or a replica that lagged behind, brings
 * back deadlines as they were when it was saved, and a marker of an earlier
 * server run, which does not count.
 */
import type { Logger } from 'pino';

import { DomainError } from '../domain/errors.js';
import type { AppMetrics } from '../metrics/metrics.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { CoordinationStore, DeadlineSeed } from '../storage/redis/coordination-store.js';
import type { Clock } from './index.js';
import type { IntakeService } from './intake.js';
import { PeriodicTask } from './periodic.js';

/**
 * Records that every user's deadline is in the set, so sweepers need not
 * reseed it, and returns true. The record is part of the set, so a deletion of
 * the set always takes it too, and the next sweep reseeds. After a Redis
 * restart since `seed` it records nothing and returns false, so the next sweep
 * reseeds too.
 */
export async function markDeadlinesSeeded(store: CoordinationStore, seed: DeadlineSeed): Promise<boolean> {
  return store.markDeadlinesComplete(seed);
}

/**
 * The users with open segments, one index probe each: a skip scan of the
 * partial index on open segments, which leads with `user_id`. A plain
 * `SELECT DISTINCT` reads every open segment, and took 264 ms against 10 ms
 * for this query on 1,000,000 open segments of 500 users.
 */
const OPEN_SEGMENT_USERS = `WITH RECURSIVE open_users AS (
    (SELECT user_id FROM segments WHERE end_at IS NULL ORDER BY user_id LIMIT 1)
    UNION ALL
    SELECT (SELECT next.user_id FROM segments next
            WHERE next.end_at IS NULL AND next.user_id > open_users.user_id
            ORDER BY next.user_id LIMIT 1)
    FROM open_users WHERE open_users.user_id IS NOT NULL
  )
  SELECT user_id FROM open_users WHERE user_id IS NOT NULL`;

/** Users whose deadlines one round trip to Redis looks up in the repair scan. */
const DEADLINE_CHECK_BATCH_SIZE = 1000;

export interface SweeperOptions {
  sql: SqlClient;
  store: CoordinationStore;
  intake: IntakeService;
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  leaseMs: number;
  batchSize: number;
  /** Minimum pause in ms between two scans for users with unapplied events. */
  repairIntervalMs: number;
  /** Counts settled users and auto-closes, or null when METRICS_PORT is unset. */
  metrics?: AppMetrics | null;
}

export class Sweeper {
  private readonly task: PeriodicTask;
  /** `performance.now()` of the last scan for unapplied events, or null before the first. */
  private lastRepairAt: number | null = null;

  constructor(private readonly options: SweeperOptions) {
    this.task = new PeriodicTask('sweep', options.intervalMs, options.logger, () => this.sweepOnce());
  }

  start(): void {
    this.task.start();
  }

  async stop(): Promise<void> {
    await this.task.stop();
  }

  /** Runs one sweep; returns the number of users settled. Tests call it directly. */
  async sweepOnce(): Promise<number> {
    const { store, clock, leaseMs, batchSize, intake, logger, intervalMs, metrics } = this.options;
    await this.seedIfLost();
    await this.scheduleUnsettled();

    let settled = 0;
    for (;;) {
      const due = await store.claimDueUsers(clock.now(), leaseMs, batchSize);
      for (const [index, userId] of due.entries()) {
        if (this.task.isStopped) {
          // Shutdown waits for this sweep, so the rest of the batch goes
          // back to the set as due, for another sweeper or the next start,
          // instead of staying hidden until the lease ends.
          await this.releaseClaims(due.slice(index));
          return settled;
        }
        try {
          const result = await intake.settle(userId, 0);
          settled += 1;
          metrics?.sweeperUsersSettled.inc();
          metrics?.sweeperAutoCloses.inc(result.correctionsByRule.get('AUTO_CLOSE') ?? 0);
        } catch (error) {
          if (error instanceof DomainError && error.reason === 'USER_BUSY') {
            // The holder may have scheduled this deadline before the claim
            // replaced it, so it is tried again at the next sweep instead.
            // A holder that schedules later replaces this entry.
            await store.scheduleDeadline(userId, clock.now() + intervalMs);
            continue;
          }
          logger.warn({ err: error, userId }, 'auto-close of a user failed; retrying after the lease');
        }
      }
      if (due.length < batchSize || this.task.isStopped) {
        return settled;
      }
    }
  }

  private async releaseClaims(userIds: readonly string[]): Promise<void> {
    const { store, clock, logger } = this.options;
    for (const userId of userIds) {
      await store.scheduleDeadline(userId, clock.now());
    }
    logger.info({ users: userIds.length }, 'sweep stopped by shutdown; its unsettled users are due again');
  }

  private async seedIfLost(): Promise<void> {
    const { store, sql, clock, logger } = this.options;
    if (await store.deadlinesComplete()) {
      return;
    }
    const seed = await store.startDeadlineSeed();
    const rows = await sql.query<{ user_id: string }>(
      `SELECT DISTINCT user_id FROM segments WHERE end_at IS NULL
       UNION
       SELECT id FROM users WHERE applied_seq < last_event_seq`,
    );
    const now = clock.now();
    for (const row of rows) {
      await store.scheduleDeadline(row.user_id, now);
    }
    if (await markDeadlinesSeeded(store, seed)) {
      logger.info({ users: rows.length }, 'deadline set seeded from PostgreSQL');
    } else {
      logger.warn({ users: rows.length }, 'Redis restarted while the deadline set was seeded from PostgreSQL, so the next sweep seeds it again');
    }
  }

  /**
   * Schedules an immediate settle, at most once per `repairIntervalMs`, for
   * each user whose stored events no fold applied and for each user with open
   * segments but no entry in the deadline set. Users in the middle of a
   * request match too. Their settle finds the lock taken and is retried at
   * the next sweep, when the request has folded the events.
   */
  private async scheduleUnsettled(): Promise<void> {
    const { store, sql, clock, logger, repairIntervalMs } = this.options;
    // Wall-clock time of this process, independent of the clock that services read.
    const now = performance.now();
    if (this.lastRepairAt !== null && now - this.lastRepairAt < repairIntervalMs) {
      return;
    }
    this.lastRepairAt = now;
    const rows = await sql.query<{ id: string }>(`SELECT id FROM users WHERE applied_seq < last_event_seq`);
    for (const row of rows) {
      await store.scheduleDeadline(row.id, clock.now());
    }
    if (rows.length > 0) {
      logger.debug({ users: rows.length }, 'scheduled users with unapplied events for a settle');
    }
    await this.scheduleOpenWithoutDeadline();
  }

  /**
   * Schedules an immediate settle for each user with open segments whose
   * deadline is missing from the set. A deadline that a restored snapshot
   * brought back is replaced earlier, by the reseed after the Redis restart,
   * except on a Redis whose INFO has no run_id.
   */
  private async scheduleOpenWithoutDeadline(): Promise<void> {
    const { store, sql, clock, logger } = this.options;
    const rows = await sql.query<{ user_id: string }>(OPEN_SEGMENT_USERS);
    let missing = 0;
    for (let start = 0; start < rows.length; start += DEADLINE_CHECK_BATCH_SIZE) {
      const userIds = rows.slice(start, start + DEADLINE_CHECK_BATCH_SIZE).map((row) => row.user_id);
      const deadlines = await store.peekDeadlines(userIds);
      for (const [index, deadline] of deadlines.entries()) {
        if (deadline === null) {
          await store.scheduleDeadline(userIds[index] as string, clock.now());
          missing += 1;
        }
      }
    }
    // Users in the middle of a request match too, such as one whose last
    // open segment closed between the query and the lookup. So a count here
    // does not mean that Redis lost data, and busy servers find some users in
    // most scans.
    if (missing > 0) {
      logger.debug({ users: missing }, 'scheduled users with open segments and no deadline in Redis for a settle');
    }
  }
}
