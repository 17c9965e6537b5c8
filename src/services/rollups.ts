/**
 * The rollup builder. Each server process runs one: it rebuilds the rollup
 * chunks that triggers marked stale at least ROLLUP_DELAY_MS ago, in batches,
 * until none are left, then waits for the next round. Reports read a stale
 * chunk's segments, so the delay costs report speed, never correctness. Builders in several processes share the work,
 * because each batch skips the chunks another transaction holds.
 */
import type { Logger } from 'pino';

import { countStaleChunks, rebuildStaleChunks } from '../storage/postgres/rollup-store.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import { PeriodicTask } from './periodic.js';

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
      const count = await rebuildStaleChunks(this.options.sql, this.options.batchSize, this.options.delayMs);
      built += count;
      if (count < this.options.batchSize || this.task.isStopped) {
        if (built > 0) {
          this.options.logger.debug({ chunks: built }, 'rollup chunks rebuilt');
        }
        return built;
      }
    }
  }

  /** Counts the chunks waiting for a rebuild. */
  staleCount(): Promise<number> {
    return countStaleChunks(this.options.sql);
  }
}
