/**
 * The rollup builder. Each server process runs one: it rebuilds the rollup
 * chunks that triggers marked stale at least ROLLUP_DELAY_MS ago, in batches,
 * until none are left, then waits for the next round. Reports read a stale
 * chunk's segments, so the delay costs report speed, never correctness. Builders in several processes share the work,
 * because each batch skips the chunks another transaction holds.
 */
import type { Logger } from 'pino';

import { countStaleChunks, postponeNextStaleChunk, rebuildStaleChunks } from '../storage/postgres/rollup-store.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import { PeriodicTask } from './periodic.js';

/** How long a chunk whose rebuild failed waits before the next attempt. */
const POSTPONE_FAILED_MS = 5 * 60_000;

export interface RollupBuilderOptions {
  sql: SqlClient;
  logger: Logger;
  intervalMs: number;
  batchSize: number;
  /** How long a chunk stays stale before a rebuild, so that a busy chunk is rebuilt once for many changes. */
  delayMs: number;
}

export class RollupBuilder {
  private readonly task: PeriodicTask;

  constructor(private readonly options: RollupBuilderOptions) {
    this.task = new PeriodicTask('rollup build', options.intervalMs, options.logger, () => this.buildOnce());
  }

  start(): void {
    this.task.start();
  }

  async stop(): Promise<void> {
    await this.task.stop();
  }

  /** Rebuilds stale chunks until none is left or the builder stops, and returns how many it rebuilt. */
  async buildOnce(): Promise<number> {
    let built = 0;
    for (;;) {
      let count: number;
      try {
        count = await rebuildStaleChunks(this.options.sql, this.options.batchSize, this.options.delayMs);
      } catch {
        // One chunk may be at fault: rebuild one at a time to find it. When
        // the database is down, that fails too and the periodic task logs it.
        count = await this.rebuildOneByOne();
      }
      built += count;
      if (count < this.options.batchSize || this.task.isStopped) {
        if (built > 0) {
          this.options.logger.debug({ chunks: built }, 'rollup chunks rebuilt');
        }
        return built;
      }
    }
  }

  /**
   * Rebuilds up to one batch of chunks one at a time. A chunk whose rebuild
   * fails twice in a row while the database responds is postponed, so it
   * cannot block the chunks after it. Returns how many chunks it rebuilt, and
   * throws when the database fails outright.
   */
  private async rebuildOneByOne(): Promise<number> {
    const { sql, batchSize, delayMs, logger } = this.options;
    let built = 0;
    for (let attempt = 0; attempt < batchSize; attempt += 1) {
      let count: number;
      try {
        count = await rebuildStaleChunks(sql, 1, delayMs);
      } catch {
        try {
          count = await rebuildStaleChunks(sql, 1, delayMs);
        } catch (error) {
          await sql.query('SELECT 1');
          const chunk = await postponeNextStaleChunk(sql, delayMs, POSTPONE_FAILED_MS);
          if (chunk === null) {
            break;
          }
          logger.warn(
            { err: error, chunk, retryInMs: POSTPONE_FAILED_MS },
            'rebuilding a rollup chunk failed twice; it is postponed, and reports read its segments meanwhile',
          );
          continue;
        }
      }
      if (count === 0) {
        break;
      }
      built += count;
    }
    return built;
  }

  /** Counts the chunks waiting for a rebuild. */
  staleCount(): Promise<number> {
    return countStaleChunks(this.options.sql);
  }
}
