/**
 * Composition root: opens storage, builds the services, the GraphQL server
 * and the HTTP app, and stops them in reverse order.
 */
import { randomBytes } from 'node:crypto';

import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';

import { createLoginRateLimiter } from './auth/rate-limit.js';
import { createTokenService } from './auth/tokens.js';
import { resolveJwtSecret, type Config } from './config/index.js';
import { createGraphQLServer } from './graphql/server.js';
import { buildHttpApp } from './http/app.js';
import { createMetricsPlugin } from './metrics/graphql-plugin.js';
import { AppMetrics } from './metrics/metrics.js';
import { createMetricsServer } from './metrics/server.js';
import { Deriver, type FaultHook } from './services/derive.js';
import { systemClock, type Clock, type Services } from './services/index.js';
import { IntakeService } from './services/intake.js';
import { PairTypeService } from './services/pair-types.js';
import { QueryService } from './services/queries.js';
import { ReportService, type ReportPause } from './services/reports.js';
import { RollupBuilder } from './services/rollups.js';
import { ReplayWorker } from './services/replays.js';
import { Sweeper } from './services/sweeper.js';
import { UserService } from './services/users.js';
import { openDatabase, type Database } from './storage/postgres/database.js';
import { countStaleChunks } from './storage/postgres/rollup-store.js';
import { createCoordinationStore, type CoordinationStore } from './storage/redis/index.js';

export interface AppOptions {
  logger?: Logger;
  clock?: Clock;
  /** Run the auto-close sweeper (default true). */
  sweeper?: boolean;
  /** Run the rollup builder (default true). */
  rollups?: boolean;
  /** Run the replay worker, which recomputes users after pair type changes (default true). */
  replays?: boolean;
  /** Age at which a pair type change gets its users queued; for tests that cannot wait. */
  replayChangeDelayMs?: number;
  /** Stops intake between storage steps; for crash tests only. */
  fault?: FaultHook;
  /** Returns the pause of each report's evaluation; for tests that count the pauses. */
  reportPauses?: () => ReportPause;
  /**
   * Whether the app issues and checks tokens (default true). A command that
   * serves no requests, such as `rebuild`, passes false, so that it neither
   * reads nor creates the secret file and signs with a random key instead.
   */
  tokens?: boolean;
  /**
   * Whether the app pings the coordination store before it changes anything
   * (default false). A command that needs Redis, such as `rebuild`, passes
   * true, so that it exits before it applies DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS.
   */
  requireStore?: boolean;
}

export interface App {
  config: Config;
  logger: Logger;
  fastify: FastifyInstance;
  services: Services;
  sweeper: Sweeper;
  rollups: RollupBuilder;
  replays: ReplayWorker;
  db: Database;
  store: CoordinationStore;
  /** Names of the built-in pair types whose policy this start changed to DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS. */
  changedBuiltInPairTypes: readonly string[];
  /** The app's Prometheus metrics, or null when METRICS_PORT is unset. */
  metrics: AppMetrics | null;
  /**
   * Listens on the configured host and port (0 picks a free port), and
   * returns the base URL of the API. With METRICS_PORT set, it then starts
   * the metrics listener, whose failure throws a `MetricsListenError`.
   */
  listen(): Promise<string>;
  /** Returns the base URL of the metrics listener once `listen` has started it, or null. */
  metricsUrl(): string | null;
  /** Makes `/readyz` return 503 "shutting down" while the app still serves every other request. */
  announceShutdown(): void;
  /** Returns the number of HTTP requests in progress. */
  countRequestsInFlight(): number;
  /** Closes every HTTP connection at once, also one that has sent only part of a request head. */
  closeConnections(): void;
  /**
   * Drains requests, then stops the background jobs and closes the metrics
   * listener, Redis and the database. `onDrained` runs once no request is
   * left, before the jobs stop. A failed step is logged and the later steps
   * still run, and the returned promise then rejects with the first error.
   */
  close(options?: { onDrained?: () => void }): Promise<void>;
}

/** A failed listen of the metrics listener, whose `cause` is the error of the listen. */
export class MetricsListenError extends Error {
  override readonly name = 'MetricsListenError';

  constructor(cause: unknown) {
    super(`the metrics listener could not listen: ${(cause as Error).message}`, { cause });
  }
}

export function createLogger(config: Config): Logger {
  const redact = {
    paths: [
      'req.headers.authorization',
      'req.headers.cookie',
      'password',
      '*.password',
      'token',
      '*.token',
      'secret',
      '*.secret',
    ],
    censor: '[redacted]',
  };
  if (config.nodeEnv === 'development') {
    return pino({
      level: config.logLevel,
      redact,
      transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level: config.logLevel, redact });
}

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config);
  const clock = options.clock ?? systemClock;

  const db = await openDatabase({
    databaseUrl: config.database.url ?? undefined,
    dataDir: config.dataDir,
    poolSize: config.database.poolSize,
    statementTimeoutMs: config.database.statementTimeoutMs,
    preparedStatements: config.database.preparedStatements,
    migrationLockTimeoutMs: config.database.migrationLockTimeoutMs,
    logger,
  });
  let store: CoordinationStore | null = null;
  try {
    const migrations = await db.migrate();
    if (migrations.applied.length > 0) {
      logger.info({ applied: migrations.applied }, 'database migrations applied');
    }
    if (migrations.unknown.length > 0) {
      logger.warn(
        { unknown: migrations.unknown },
        'the database has applied migrations that this version does not contain, such as ones a newer version applied; this version may not work with the schema',
      );
    }
    store = createCoordinationStore(config, logger);
    const metricsStore = store;
    const metrics =
      config.metrics.port === null
        ? null
        : new AppMetrics(
            {
              poolStats: db.poolStats,
              redisStatus: config.redis.url === null ? null : () => metricsStore.connectionStatus() ?? 'end',
              countOverdueDeadlines: () => metricsStore.countDueUsers(clock.now()),
              countStaleRollupChunks: () => countStaleChunks(db.sql),
            },
            logger,
          );
    if (options.requireStore === true) {
      await store.ping();
    }

    const secret = options.tokens === false ? randomBytes(48).toString('base64') : await resolveJwtSecret(config, logger);
    const tokens = createTokenService({
      secret,
      issuer: config.auth.jwtIssuer,
      audience: config.auth.jwtAudience,
      ttlSeconds: config.auth.jwtTtlSeconds,
      clockToleranceSeconds: config.auth.jwtClockToleranceSeconds,
      logger,
      now: () => clock.now(),
    });
    const rateLimiter = createLoginRateLimiter(store, {
      maxAttempts: config.auth.loginRateLimitMaxAttempts,
      windowSeconds: config.auth.loginRateLimitWindowSeconds,
      logger,
    });

    const users = new UserService({
      prisma: db.prisma,
      tokens,
      rateLimiter,
      passwordScryptLog2N: config.auth.passwordScryptLog2N,
      logger,
      sql: db.sql,
      maxSessionSeconds: config.auth.jwtMaxSessionSeconds,
      now: () => clock.now(),
    });
    const pairTypes = new PairTypeService(
      db.prisma,
      { timeoutSeconds: config.intake.defaultAutoCloseTimeoutSeconds, endAt: 'LAST_ACTIVITY' },
      logger,
      db.sql,
    );
    const changedBuiltInPairTypes = await pairTypes.applyBuiltInDefaults();
    await users.bootstrapAdmin(config.auth.admin);

    const deriver = new Deriver(
      db.sql,
      store,
      (fresh) => (fresh === true ? pairTypes.list() : pairTypes.cachedList()),
      logger,
      options.fault,
      config.intake.replayPageSize,
      config.intake.openPairsCacheSize,
      metrics,
    );
    const intake = new IntakeService({
      sql: db.sql,
      store,
      pairTypes,
      deriver,
      clock,
      logger,
      maxBatchSize: config.intake.maxBatchSize,
      maxMetaBytes: config.intake.maxMetaBytes,
      clockSkewSeconds: config.intake.clockSkewSeconds,
      latenessHorizonSeconds: config.intake.latenessHorizonSeconds,
      userLockTtlMs: config.intake.userLockTtlMs,
      userLockWaitMs: config.intake.userLockWaitMs,
      userLockMaxHoldMs: config.intake.userLockMaxHoldMs,
      readSettleConcurrency: config.intake.readSettleConcurrency,
      readSettleMaxUsers: config.intake.readSettleMaxUsers,
      readSettleWaitMs: config.intake.readSettleWaitMs,
      ...(options.fault ? { fault: options.fault } : {}),
      metrics,
    });
    const services: Services = {
      clock,
      users,
      pairTypes,
      intake,
      queries: new QueryService(db.sql, config.pagination),
      reports: new ReportService(db.sql, clock, {
        maxDepth: config.reports.maxDepth,
        maxNodes: config.reports.maxNodes,
        maxLiteralIntervals: config.reports.maxLiteralIntervals,
        maxLeafEntries: config.reports.maxLeafEntries,
        maxWindowDays: config.reports.maxWindowDays,
        maxIntervals: config.reports.maxIntervals,
        maxBucketRows: config.reports.maxBucketRows,
        maxConcurrentLoads: config.reports.maxConcurrentLoads,
      }, options.reportPauses),
    };
    const sweeper = new Sweeper({
      sql: db.sql,
      store,
      intake,
      clock,
      logger,
      intervalMs: config.sweeper.intervalMs,
      leaseMs: config.sweeper.leaseMs,
      batchSize: config.sweeper.batchSize,
      repairIntervalMs: config.sweeper.repairIntervalMs,
      metrics,
    });

    const rollups = new RollupBuilder({
      sql: db.sql,
      logger,
      intervalMs: config.rollups.intervalMs,
      batchSize: config.rollups.batchSize,
      delayMs: config.rollups.delayMs,
    });

    const replays = new ReplayWorker({
      sql: db.sql,
      intake,
      logger,
      ...(options.replayChangeDelayMs === undefined ? {} : { changeDelayMs: options.replayChangeDelayMs }),
    });

    const readyStore = store;
    const { fastify, apollo, announceShutdown, beginDrain, countRequestsInFlight } = await buildHttpApp({
      logger,
      services,
      tokens,
      createApollo: async (drainPlugin) => {
        const apollo = createGraphQLServer({
          development: config.nodeEnv === 'development',
          introspection: config.server.introspection,
          limits: {
            expression: {
              maxDepth: config.reports.maxDepth,
              maxNodes: config.reports.maxNodes,
              maxLiteralIntervals: config.reports.maxLiteralIntervals,
              maxLeafEntries: config.reports.maxLeafEntries,
            },
            maxBatchSize: config.intake.maxBatchSize,
            maxRootFields: config.server.maxRootFields,
          },
          extraPlugins: metrics === null ? [drainPlugin] : [drainPlugin, createMetricsPlugin(metrics)],
        });
        await apollo.start();
        return apollo;
      },
      maxBodyBytes: config.server.maxBodyBytes,
      requestTimeoutMs: config.server.requestTimeoutMs,
      sendTimeoutMs: config.server.sendTimeoutMs,
      anonymousMaxBodyBytes: config.server.anonymousMaxBodyBytes,
      trustProxy: config.server.trustProxy,
      corsOrigins: config.server.corsOrigins,
      // Each expression level nests two brackets ({ union: [ ... ] }); the
      // rest covers selection sets and other arguments.
      maxDocumentDepth: 2 * config.reports.maxDepth + 64,
      maxReplyBytes: config.server.maxReplyBytes,
      replyMemoryMaxBytes: config.server.replyMemoryMaxBytes,
      metrics,
      checkReadiness: async () => {
        // A connection that stalls without closing would hold the ping, and
        // the probe, for as long as it stalls. A Redis that is down delays it
        // by REDIS_COMMAND_TIMEOUT_MS, the wait for a connection. The ping
        // runs on after this timeout until its own command timeout ends it.
        const timeoutMs = config.server.readinessTimeoutMs;
        const pingError = (ping: Promise<unknown>) =>
          new Promise<unknown>((resolve) => {
            const timer = setTimeout(
              () => resolve(new Error(`the ping timed out after ${timeoutMs} ms (READINESS_TIMEOUT_MS)`)),
              timeoutMs,
            );
            ping.then(
              () => resolve(null),
              (error: unknown) => resolve(error ?? new Error('the ping failed')),
            ).finally(() => clearTimeout(timer));
          });
        const [databaseError, redisError] = await Promise.all([pingError(db.ping()), pingError(readyStore.ping())]);
        return {
          database: { kind: db.kind, error: databaseError },
          redis: { kind: config.redis.url === null ? 'in-process' : 'redis', error: redisError },
        };
      },
    });

    if (options.sweeper !== false) {
      sweeper.start();
    }
    if (options.rollups !== false) {
      rollups.start();
    }
    if (options.replays !== false) {
      replays.start();
    }

    const metricsServer = metrics === null ? null : createMetricsServer(metrics, logger);
    let metricsUrl: string | null = null;
    let closing: Promise<void> | null = null;
    return {
      config,
      logger,
      fastify,
      services,
      sweeper,
      rollups,
      replays,
      db,
      store,
      changedBuiltInPairTypes,
      metrics,
      async listen() {
        await fastify.listen({ host: config.server.host, port: config.server.port });
        if (metricsServer !== null && config.metrics.port !== null) {
          try {
            metricsUrl = await metricsServer.listen(config.metrics.host, config.metrics.port);
          } catch (error) {
            throw new MetricsListenError(error);
          }
        }
        const address = fastify.server.address();
        const port = typeof address === 'object' && address !== null ? address.port : config.server.port;
        const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
        return `http://${host}:${port}`;
      },
      metricsUrl: () => metricsUrl,
      announceShutdown,
      countRequestsInFlight,
      closeConnections: () => fastify.server.closeAllConnections(),
      close(options) {
        closing ??= (async () => {
          // Every step runs even when an earlier one fails, so that a failed
          // job stop still closes the metrics listener, Redis and the
          // database. Each failure is logged, and close rejects with the first.
          const errors: unknown[] = [];
          const runStep = async (step: string, run: () => unknown): Promise<void> => {
            try {
              await run();
            } catch (error) {
              logger.error({ err: error, step }, `shutdown step failed: ${step}`);
              errors.push(error);
            }
          };
          // Draining requests comes first, and replies to the requests still
          // running ask their clients to close the connection.
          await runStep('drain the HTTP server', async () => {
            beginDrain();
            await fastify.close();
          });
          // Apollo's drain plugin closes Fastify again, which returns at once.
          await runStep('stop Apollo Server', () => apollo.stop());
          await runStep('run onDrained', () => options?.onDrained?.());
          await runStep('stop the sweeper', () => sweeper.stop());
          await runStep('stop the rollup builder', () => rollups.stop());
          await runStep('stop the replay worker', () => replays.stop());
          // Scrapes go on during the drain and the stop of the jobs, and end
          // before the scrape-time gauges would read a closed pool or store.
          await runStep('close the metrics listener', () => metricsServer?.close());
          await runStep('close the coordination store', () => readyStore.close());
          await runStep('close the database', () => db.close());
          if (errors.length > 0) {
            throw errors[0];
          }
        })();
        return closing;
      },
    };
  } catch (error) {
    await store?.close().catch(() => {});
    await db.close().catch(() => {});
    throw error;
  }
}
