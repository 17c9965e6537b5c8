import type { LevelWithSilent } from 'pino';

export type NodeEnv = 'development' | 'production' | 'test';

export type LogLevel = LevelWithSilent;

/** Login credentials of the first admin, created on a start with no users. */
export interface AdminBootstrap {
  username: string;
  password: string;
}

/**
 * Settings read from the environment once at start-up by `loadConfig`. Every
 * object in it is frozen. The comment on each field names its variable.
 */
export interface Config {
  /** NODE_ENV */
  nodeEnv: NodeEnv;
  /** LOG_LEVEL */
  logLevel: LogLevel;
  /** DATA_DIR, resolved to an absolute path. Embedded PGlite and the generated JWT secret live here. */
  dataDir: string;

  server: {
    /** HOST */
    host: string;
    /** PORT. 0 lets the operating system pick a free port. */
    port: number;
    /** TRUST_PROXY: whether to take the client address from X-Forwarded-For. */
    trustProxy: boolean;
    /** MAX_BODY_BYTES: maximum size of a request body. */
    maxBodyBytes: number;
    /** ANONYMOUS_MAX_BODY_BYTES: maximum size of a request body without a valid token. */
    anonymousMaxBodyBytes: number;
    /**
     * REQUEST_TIMEOUT_MS: time a client has to send a whole request, headers
     * and body, before it gets 408 and its connection closes. 0 turns it off.
     * The headers also have Node's own limit of 60 s, which stays at 0.
     */
    requestTimeoutMs: number;
    /**
     * SEND_TIMEOUT_MS: time a reply may wait for the client to read more of
     * it before its connection closes. 0 turns it off.
     */
    sendTimeoutMs: number;
    /**
     * SHUTDOWN_GRACE_MS: time that in-flight requests get to finish once the
     * drain begins. With none in flight when it ends, the stop goes on.
     */
    shutdownGraceMs: number;
    /**
     * SHUTDOWN_DELAY_MS: time between a stop signal and the drain, during
     * which `/readyz` returns 503 and requests are still served.
     */
    shutdownDelayMs: number;
    /**
     * SHUTDOWN_CLOSE_TIMEOUT_MS: time that stopping the background jobs and
     * closing Redis and the database get once no request is left. 0 waits
     * without limit.
     */
    shutdownCloseTimeoutMs: number;
    /**
     * READINESS_TIMEOUT_MS: time that `/readyz` waits for each dependency's
     * ping before it reports that dependency unreachable.
     */
    readinessTimeoutMs: number;
    /**
     * CORS_ORIGINS: the web origins whose pages may call the API from a
     * browser, '*' for any origin, or an empty list for no CORS headers.
     */
    corsOrigins: '*' | readonly string[];
    /** REQUEST_MAX_ROOT_FIELDS: maximum number of top-level fields in one GraphQL operation, aliases counted. */
    maxRootFields: number;
    /**
     * MAX_REPLY_BYTES: maximum estimated size of the events, segments, and
     * report intervals and buckets in the reply to one query, over all its
     * root fields, and of the rows that
     * the query reads with `meta` (see `ReplyBudget`).
     */
    maxReplyBytes: number;
    /**
     * REPLY_MEMORY_MAX_BYTES: maximum estimated bytes that the replies of all
     * queries of the process may hold at once, counted as MAX_REPLY_BYTES
     * counts one reply (see `ReplyMemory`).
     */
    replyMemoryMaxBytes: number;
    /** GRAPHQL_INTROSPECTION: whether clients with a valid token may introspect the schema. */
    introspection: boolean;
  };

  database: {
    /** DATABASE_URL, or null for embedded PGlite under `dataDir`. */
    url: string | null;
    /** DB_POOL_SIZE */
    poolSize: number;
    /** DB_STATEMENT_TIMEOUT_MS */
    statementTimeoutMs: number;
    /** DB_PREPARED_STATEMENTS: keep the frequent intake statements prepared on each connection. */
    preparedStatements: boolean;
    /** DB_MIGRATION_LOCK_TIMEOUT_MS: maximum wait in ms of a migration statement for a lock; 0 waits without limit. */
    migrationLockTimeoutMs: number;
  };

  redis: {
    /** REDIS_URL, or null for the in-process store. */
    url: string | null;
    /** REDIS_KEY_PREFIX: prepended to every key this service writes. */
    keyPrefix: string;
    /** REDIS_COMMAND_TIMEOUT_MS */
    commandTimeoutMs: number;
    /** REDIS_CONNECT_TIMEOUT_MS */
    connectTimeoutMs: number;
    /**
     * USER_STATE_IDLE_TTL_SECONDS: time without a lock of the user after
     * which its engine state and lock fence expire, in Redis and in the
     * in-process store alike.
     */
    userStateIdleTtlSeconds: number;
  };

  auth: {
    /** JWT_SECRET, or null to use the secret generated under `dataDir` (see `resolveJwtSecret`). */
    jwtSecret: string | null;
    /** JWT_ISSUER */
    jwtIssuer: string;
    /** JWT_AUDIENCE */
    jwtAudience: string;
    /** JWT_TTL_SECONDS: lifetime of an issued token. */
    jwtTtlSeconds: number;
    /** JWT_MAX_SESSION_SECONDS: how long after a password login `renewToken` still issues tokens. */
    jwtMaxSessionSeconds: number;
    /** JWT_CLOCK_TOLERANCE_SECONDS: allowed clock difference when checking `exp` and `iat`. */
    jwtClockToleranceSeconds: number;
    /** ADMIN_USERNAME and ADMIN_PASSWORD, or null when neither is set. */
    admin: AdminBootstrap | null;
    /** PASSWORD_SCRYPT_LOG2_N: scrypt cost N = 2^value for new password hashes. */
    passwordScryptLog2N: number;
    /** LOGIN_RATE_LIMIT_MAX_ATTEMPTS: failed logins allowed per window, per username and per client address. */
    loginRateLimitMaxAttempts: number;
    /** LOGIN_RATE_LIMIT_WINDOW_SECONDS */
    loginRateLimitWindowSeconds: number;
  };

  intake: {
    /** MAX_BATCH_SIZE: maximum number of events in one request. */
    maxBatchSize: number;
    /** MAX_META_BYTES: maximum size of one event's `meta` as JSON. */
    maxMetaBytes: number;
    /** CLOCK_SKEW_SECONDS: how far in the future `occurredAt` may be before it is replaced by the receipt time. */
    clockSkewSeconds: number;
    /** LATENESS_HORIZON_SECONDS: how far back a late event may still change segments. */
    latenessHorizonSeconds: number;
    /** DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: auto-close timeout of the built-in pair types (endAt LAST_ACTIVITY). */
    defaultAutoCloseTimeoutSeconds: number;
    /** USER_LOCK_TTL_MS: how long a per-user lock lives unless it is extended. */
    userLockTtlMs: number;
    /** USER_LOCK_WAIT_MS: how long a request waits for a busy user's lock. */
    userLockWaitMs: number;
    /** USER_LOCK_MAX_HOLD_MS: how long a holder keeps extending a per-user lock while its work runs. */
    userLockMaxHoldMs: number;
    /** REPLAY_PAGE_SIZE: events read, folded and written per step when a replay recomputes a user's history. */
    replayPageSize: number;
    /** OPEN_PAIRS_CACHE_SIZE: open pairs, summed over users, whose instances a process keeps in memory between requests. */
    openPairsCacheSize: number;
    /**
     * READ_SETTLE_CONCURRENCY: maximum number of due users that the reads of
     * one process settle at once, each with a PostgreSQL connection.
     */
    readSettleConcurrency: number;
    /** READ_SETTLE_MAX_USERS: maximum number of due users that a read of every user settles before it runs. */
    readSettleMaxUsers: number;
    /**
     * READ_SETTLE_WAIT_MS: maximum time in all that a read waits for the locks
     * of due users that other requests hold, before it shows them as stored.
     */
    readSettleWaitMs: number;
  };

  sweeper: {
    /** SWEEPER_INTERVAL_MS: pause between two auto-close sweeps. */
    intervalMs: number;
    /** SWEEPER_LEASE_MS: how long a claimed deadline stays hidden from other sweepers. */
    leaseMs: number;
    /** SWEEPER_BATCH_SIZE: maximum number of users claimed per sweep. */
    batchSize: number;
    /** SWEEPER_REPAIR_INTERVAL_MS: minimum pause between two scans for users with stored events that no fold applied, or with open segments and no deadline. */
    repairIntervalMs: number;
  };

  rollups: {
    /** ROLLUP_INTERVAL_MS: pause between two rounds of rebuilding stale rollup chunks. */
    intervalMs: number;
    /** ROLLUP_BATCH_SIZE: chunks rebuilt per transaction. */
    batchSize: number;
    /** ROLLUP_DELAY_MS: how long a chunk stays stale before the builder rebuilds it. */
    delayMs: number;
  };

  reports: {
    /** REPORT_MAX_DEPTH: maximum nesting depth of a set expression. */
    maxDepth: number;
    /** REPORT_MAX_NODES: maximum number of nodes in a set expression. The reports of one request may have 4 times as many. */
    maxNodes: number;
    /** REPORT_MAX_LITERAL_INTERVALS: maximum number of literal intervals in one expression. The reports of one request may have 4 times as many. */
    maxLiteralIntervals: number;
    /**
     * REPORT_MAX_LEAF_ENTRIES: maximum number of entries of `pairTypes`, `users`
     * and `pairKeys` and keys and array items of `meta` over all leaves of one expression,
     * and 4 times as many over all expressions of one request.
     */
    maxLeafEntries: number;
    /**
     * REPORT_MAX_WINDOW_DAYS: maximum length of a report window in days, calendar
     * days in the bucket time zone for a report with buckets.
     */
    maxWindowDays: number;
    /** REPORT_MAX_INTERVALS: maximum number of intervals in one result before it is truncated. */
    maxIntervals: number;
    /** REPORT_MAX_BUCKET_ROWS: maximum number of buckets in one report, over the result and all groups together. */
    maxBucketRows: number;
    /** REPORT_MAX_CONCURRENT_LOADS: maximum number of report leaf loads that one process runs at once. */
    maxConcurrentLoads: number;
  };

  metrics: {
    /** METRICS_HOST: address of the listener that serves `GET /metrics`. */
    host: string;
    /** METRICS_PORT, or null when it is unset and metrics are off. 0 lets the operating system pick a free port. */
    port: number | null;
  };

  pagination: {
    /** PAGE_SIZE_DEFAULT: page size when a query gives no `first`. */
    defaultPageSize: number;
    /** PAGE_SIZE_MAX: maximum accepted `first`. */
    maxPageSize: number;
  };
}
