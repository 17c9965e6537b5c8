/**
 * The replay worker. Each server process runs one. It queues the users of
 * recorded pair type changes once no server's pair type cache can hold the
 * old definition, then claims queued users (see `replay-store.ts`) and
 * recomputes each user's derived rows under the user's lock, like
 * `setAutoClosePreference` does. A failed replay is retried after a pause
 * that doubles with each failure.
 */
import type { Logger } from 'pino';

import {
  claimPendingReplay,
  deferPendingReplay,
  extendPendingReplayClaim,
  queueDueChange,
  releasePendingReplayClaim,
  REPLAY_CLAIM_MS,
  type ReplayClaim,
} from '../storage/postgres/replay-store.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { IntakeService } from './intake.js';
import { PeriodicTask } from './periodic.js';
import { CATALOG_CACHE_MS } from './pair-types.js';

/** Pause between polls of the queue while it is empty, in ms. */
export const REPLAY_POLL_MS = 1000;
export { REPLAY_CLAIM_MS };
/**
 * Age in ms at which a recorded change gets its users queued. Every server
 * reloads its pair types within CATALOG_CACHE_MS of a change, so by then no
 * fold uses the old definition, and the users it reached are queued too.
 * NOTE: a fold that read the pair types before the change can still commit
 * after this delay. When its user had no segments of the type before, that
 * user is not queued, and `npm run rebuild -- --full` recomputes it.
 */
export const CHANGE_DELAY_MS = 3 * CATALOG_CACHE_MS;
/** Users read per statement when a change's users are queued. */
const QUEUE_BATCH_USERS = 10_000;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 5 * 60 * 1000;

export interface ReplayWorkerOptions {
  sql: SqlClient;
  intake: IntakeService;
  logger: Logger;
  /** How long a claim hides a user from other workers, in ms; REPLAY_CLAIM_MS unless a test shortens it. */
  claimMs?: number;
  pollMs?: number;
  /** Age at which a change gets its users queued; CHANGE_DELAY_MS unless a test shortens it. */
  changeDelayMs?: number;
}

export class ReplayWorker {
  private readonly task: PeriodicTask;

  constructor(private readonly options: ReplayWorkerOptions) {
    this.task = new PeriodicTask('replay', options.pollMs ?? REPLAY_POLL_MS, options.logger, () => this.runOnce());
  }

  start(): void {
    this.task.start();
  }

  async stop(): Promise<void> {
    await this.task.stop();
  }

  /** Queues the users of every change old enough, oldest first; returns the number of changes. Tests call it directly. */
  async queueDueChanges(): Promise<number> {
    const { sql, logger, changeDelayMs = CHANGE_DELAY_MS } = this.options;
    let changes = 0;
    while (!this.task.isStopped) {
      const change = await queueDueChange(sql, changeDelayMs, QUEUE_BATCH_USERS);
      if (change === null) {
        break;
      }
      changes += 1;
      logger.info({ pairType: change.pairType, users: change.queuedUsers }, 'queued the users of a pair type change for replays');
    }
    return changes;
  }

  /**
   * Replays queued users one after another until the queue has none that
   * another worker does not hold, or the worker stops. Before each user it
   * queues the users of changes that have come due, so a change made during
   * a long backlog waits CHANGE_DELAY_MS, not for the backlog. Returns the
   * number of users replayed. Tests call it directly.
   */
  async runOnce(): Promise<number> {
    const { sql, claimMs = REPLAY_CLAIM_MS } = this.options;
    let replayed = 0;
    while (!this.task.isStopped) {
      await this.queueDueChanges();
      const claim = await claimPendingReplay(sql, claimMs);
      if (claim === null) {
        break;
      }
      if (await this.replayClaimed(claim, claimMs)) {
        replayed += 1;
      }
    }
    return replayed;
  }

  /** Replays a claimed user, extending the claim meanwhile, and defers the user when the replay fails. */
  private async replayClaimed(claim: ReplayClaim, claimMs: number): Promise<boolean> {
    const { sql, intake, logger } = this.options;
    const started = performance.now();
    let extending: Promise<unknown> = Promise.resolve();
    const extension = setInterval(() => {
      extending = extendPendingReplayClaim(sql, claim, claimMs).catch((error: unknown) => {
        logger.warn({ err: error, userId: claim.userId }, 'extending a replay claim failed; another worker may take the user');
      });
    }, claimMs / 3);
    extension.unref();
    let failure: unknown = null;
    try {
      await intake.replay(claim.userId);
    } catch (error) {
      failure = error;
    } finally {
      clearInterval(extension);
      // An extension still running would otherwise land after the deferral and undo its pause.
      await extending;
    }
    if (failure === null) {
      logger.info({ userId: claim.userId, ms: Math.round(performance.now() - started) }, 'replayed user after a pair type change');
      await releasePendingReplayClaim(sql, claim);
      return true;
    }
    const retryMs = await deferPendingReplay(sql, claim, FIRST_RETRY_MS, MAX_RETRY_MS);
    logger.warn({ err: failure, userId: claim.userId, retryMs }, 'replay after a pair type change failed; retrying later');
    return false;
  }
}
