/**
 * Prometheus metrics of one app, on a registry of its own rather than
 * prom-client's global one, so that several apps in one process, as in
 * tests, keep apart. Label values come from bounded sets only: route
 * patterns, HTTP methods and statuses, schema field names, error codes and
 * correction rules, never user ids or raw URLs.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';

import type { SynthesisRule } from '../domain/pairing/types.js';

export const METRIC_PREFIX = 'event_master_';

/** Connection statuses of ioredis, one series each in `event_master_redis_connection_status`. */
export const REDIS_STATUSES = ['wait', 'connecting', 'connect', 'ready', 'close', 'reconnecting', 'end'] as const;

/** Counts of the PostgreSQL pool, as pg-pool reports them. */
export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

/** The values that a scrape reads from the app's storage. */
export interface ScrapeSources {
  /** Counts of the PostgreSQL pool, or null for embedded PGlite, which has none. */
  poolStats: (() => PoolStats) | null;
  /** The ioredis status of the Redis connection, or null for the in-process store. */
  redisStatus: (() => string) | null;
  /** Users whose auto-close deadline has passed, claimed ones included. */
  countOverdueDeadlines(): Promise<number>;
  countStaleRollupChunks(): Promise<number>;
}

export class AppMetrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: `${METRIC_PREFIX}http_requests_total`,
    help: 'HTTP requests of the API listener that got a reply, by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpRequestDuration = new Histogram({
    name: `${METRIC_PREFIX}http_request_duration_seconds`,
    help: 'Time from the arrival of an HTTP request to the end of its reply, by route pattern, method and status.',
    labelNames: ['route', 'method', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly graphqlOperations = new Counter({
    name: `${METRIC_PREFIX}graphql_operations_total`,
    help: 'Root fields of GraphQL operations, by operation type, field and outcome: ok, or the code of the error on that field.',
    labelNames: ['operation', 'field', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly eventsStored = new Counter({
    name: `${METRIC_PREFIX}events_stored_total`,
    help: 'Client events stored by intake requests, duplicates not counted.',
    registers: [this.registry],
  });

  readonly eventsDuplicate = new Counter({
    name: `${METRIC_PREFIX}events_duplicate_total`,
    help: 'Client events of intake requests that repeated a stored event by client id and were not stored again.',
    registers: [this.registry],
  });

  readonly correctionsWritten = new Counter({
    name: `${METRIC_PREFIX}corrections_written_total`,
    help: 'Corrections that folds wrote, by rule. A recompute, after a late event or a changed auto-close policy, writes corrections again, and they count again.',
    labelNames: ['rule'] as const,
    registers: [this.registry],
  });

  readonly batchesRejected = new Counter({
    name: `${METRIC_PREFIX}intake_batches_rejected_total`,
    help: 'Intake batches that the intake checks rejected before anything was stored, by error code and reason. GraphQL requests whose variables fail coercion are not counted.',
    labelNames: ['code', 'reason'] as const,
    registers: [this.registry],
  });

  readonly userLockBusy = new Counter({
    name: `${METRIC_PREFIX}user_lock_busy_total`,
    help: 'Waits for a per-user lock that ended in USER_BUSY, from requests, reads that settle users and the sweeper.',
    registers: [this.registry],
  });

  readonly sweeperUsersSettled = new Counter({
    name: `${METRIC_PREFIX}sweeper_users_settled_total`,
    help: 'Users with a passed deadline that the sweeper settled.',
    registers: [this.registry],
  });

  readonly sweeperAutoCloses = new Counter({
    name: `${METRIC_PREFIX}sweeper_auto_closes_total`,
    help: 'AUTO_CLOSE corrections that the sweeper wrote.',
    registers: [this.registry],
  });

  constructor(sources: ScrapeSources, logger: Logger) {
    collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX });
    registerScrapeGauges(this.registry, sources, logger);
  }

  /** Counts the corrections of one fold's write, by rule. */
  countCorrections(counts: ReadonlyMap<SynthesisRule, number>): void {
    for (const [rule, count] of counts) {
      this.correctionsWritten.inc({ rule }, count);
    }
  }

  /** Returns the exposition text of every metric. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Time in ms that a scrape waits for one storage read before it reports NaN.
 * It stays below Prometheus's default `scrape_timeout` of 10 s, because a
 * read can otherwise wait DB_STATEMENT_TIMEOUT_MS for a connection of a busy
 * pool, and a scrape that times out loses every metric, the pool's included.
 */
export const SCRAPE_READ_TIMEOUT_MS = 2000;

/**
 * Resolves as `read` does, or rejects once SCRAPE_READ_TIMEOUT_MS has passed.
 * NOTE: the read goes on after the timeout, so a query that waits for a pool
 * connection stays queued until it gets one or DB_STATEMENT_TIMEOUT_MS ends.
 */
async function readWithTimeout(read: Promise<number>): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`the read timed out after ${SCRAPE_READ_TIMEOUT_MS} ms`)), SCRAPE_READ_TIMEOUT_MS);
    timer.unref();
  });
  try {
    return await Promise.race([read, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Registers the gauges whose values a scrape reads from storage. A read that
 * fails or times out sets its gauge to NaN for that scrape and is logged at
 * debug level, because a scrape every few seconds during an outage would
 * repeat the errors that requests log already.
 */
function registerScrapeGauges(registry: Registry, sources: ScrapeSources, logger: Logger): void {
  const { poolStats, redisStatus } = sources;
  if (poolStats !== null) {
    const poolGauge = (name: string, help: string, pick: (stats: PoolStats) => number) =>
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        registers: [registry],
        collect() {
          this.set(pick(poolStats()));
        },
      });
    poolGauge('pg_pool_connections', 'PostgreSQL connections open in the pool, idle and in use.', (stats) => stats.total);
    poolGauge('pg_pool_idle_connections', 'PostgreSQL connections of the pool that no query uses.', (stats) => stats.idle);
    poolGauge('pg_pool_waiting_requests', 'Queries waiting for a connection of the PostgreSQL pool.', (stats) => stats.waiting);
  }

  if (redisStatus !== null) {
    new Gauge({
      name: `${METRIC_PREFIX}redis_connection_status`,
      help: 'Status of the Redis connection: 1 for the current ioredis status, 0 for the others.',
      labelNames: ['status'] as const,
      registers: [registry],
      collect() {
        const current = redisStatus();
        for (const status of REDIS_STATUSES) {
          this.set({ status }, status === current ? 1 : 0);
        }
      },
    });
  }

  const storageGauge = (name: string, help: string, read: () => Promise<number>) =>
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers: [registry],
      async collect() {
        try {
          this.set(await readWithTimeout(read()));
        } catch (error) {
          this.set(Number.NaN);
          logger.debug({ err: error, metric: name }, 'reading a metric for a scrape failed');
        }
      },
    });
  storageGauge(
    'sweeper_overdue_deadlines',
    'Users whose auto-close deadline has passed, including those a sweeper has claimed and not yet settled.',
    () => sources.countOverdueDeadlines(),
  );
  // NOTE: an exact count reads every stale row, which stays cheap while the
  // rollup builder keeps up and grows with its backlog.
  storageGauge(
    'rollup_stale_chunks',
    'Report rollup chunks marked stale and not yet rebuilt.',
    () => sources.countStaleRollupChunks(),
  );
}
