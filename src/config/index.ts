import { isIP } from 'node:net';
import path from 'node:path';

import { EnvReader, type Environment } from './env-reader.js';
import { ConfigError } from './errors.js';
import { MIN_JWT_SECRET_BYTES } from './jwt-secret.js';
import { redactUrlPassword } from './redact.js';
import type { AdminBootstrap, Config, LogLevel, NodeEnv } from './types.js';

export { ConfigError, dataDirError, type ConfigIssue } from './errors.js';
export type { Environment } from './env-reader.js';
export { resolveJwtSecret, JWT_SECRET_FILE_NAME, MIN_JWT_SECRET_BYTES } from './jwt-secret.js';
export { redactUrlPassword } from './redact.js';
export type { AdminBootstrap, Config, LogLevel, NodeEnv } from './types.js';

const NODE_ENVS: readonly NodeEnv[] = ['development', 'production', 'test'];
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const SECONDS_PER_DAY = 86_400;

/**
 * Reads the environment into a typed, deeply frozen `Config`. Call it once at
 * start-up and pass the result down.
 *
 * @throws ConfigError listing every invalid variable.
 */
export function loadConfig(env: Environment = process.env): Config {
  const reader = new EnvReader(env);
  const poolSize = reader.integer('DB_POOL_SIZE', 10, 1, 100);
  const maxPageSize = reader.integer('PAGE_SIZE_MAX', 1000, 1, 100_000);
  // The maximum stays far below V8's maximum string length (2^29 - 24
  // characters in Node 20), which the whole reply must fit into.
  const maxReplyBytes = reader.integer('MAX_REPLY_BYTES', 67_108_864, 1024, 268_435_456);

  const config: Config = {
    nodeEnv: reader.oneOf('NODE_ENV', 'development', NODE_ENVS),
    logLevel: reader.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    dataDir: path.resolve(reader.string('DATA_DIR', './.data')),

    server: {
      host: reader.string('HOST', '127.0.0.1', 255),
      port: reader.integer('PORT', 4000, 0, 65_535),
      trustProxy: reader.boolean('TRUST_PROXY', false),
      maxBodyBytes: reader.integer('MAX_BODY_BYTES', 33_554_432, 1024, 1_073_741_824),
      anonymousMaxBodyBytes: reader.integer('ANONYMOUS_MAX_BODY_BYTES', 65_536, 1024, 1_073_741_824),
      // Node's own default, which Fastify turns off.
      requestTimeoutMs: reader.integer('REQUEST_TIMEOUT_MS', 300_000, 0, 3_600_000),
      sendTimeoutMs: reader.integer('SEND_TIMEOUT_MS', 60_000, 0, 3_600_000),
      shutdownGraceMs: reader.integer('SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
      shutdownDelayMs: reader.integer('SHUTDOWN_DELAY_MS', 0, 0, 600_000),
      shutdownCloseTimeoutMs: reader.integer('SHUTDOWN_CLOSE_TIMEOUT_MS', 10_000, 0, 600_000),
      // Below the 1 s default timeoutSeconds of a Kubernetes probe.
      readinessTimeoutMs: reader.integer('READINESS_TIMEOUT_MS', 500, 10, 60_000),
      corsOrigins: readCorsOrigins(reader),
      maxRootFields: reader.integer('REQUEST_MAX_ROOT_FIELDS', 20, 1, 1000),
      maxReplyBytes,
      // Four replies of the maximum size at once by default.
      replyMemoryMaxBytes: reader.integer('REPLY_MEMORY_MAX_BYTES', 4 * maxReplyBytes, 1024, 17_179_869_184),
      introspection: reader.boolean('GRAPHQL_INTROSPECTION', true),
    },

    database: {
      url: reader.url('DATABASE_URL', ['postgres', 'postgresql']),
      poolSize,
      statementTimeoutMs: reader.integer('DB_STATEMENT_TIMEOUT_MS', 10_000, 100, 3_600_000),
      preparedStatements: reader.boolean('DB_PREPARED_STATEMENTS', true),
      migrationLockTimeoutMs: reader.integer('DB_MIGRATION_LOCK_TIMEOUT_MS', 5000, 0, 3_600_000),
    },

    redis: {
      url: readRedisUrl(reader),
      keyPrefix: readRedisKeyPrefix(reader),
      commandTimeoutMs: reader.integer('REDIS_COMMAND_TIMEOUT_MS', 2000, 10, 60_000),
      connectTimeoutMs: reader.integer('REDIS_CONNECT_TIMEOUT_MS', 5000, 100, 60_000),
      userStateIdleTtlSeconds: reader.integer(
        'USER_STATE_IDLE_TTL_SECONDS',
        7 * SECONDS_PER_DAY,
        3600,
        366 * SECONDS_PER_DAY,
      ),
    },

    auth: {
      jwtSecret: reader.secret('JWT_SECRET', MIN_JWT_SECRET_BYTES),
      jwtIssuer: reader.string('JWT_ISSUER', 'event-master', 255),
      jwtAudience: reader.string('JWT_AUDIENCE', 'event-master', 255),
      jwtTtlSeconds: reader.integer('JWT_TTL_SECONDS', 3600, 60, SECONDS_PER_DAY),
      jwtMaxSessionSeconds: reader.integer('JWT_MAX_SESSION_SECONDS', 7 * SECONDS_PER_DAY, 60, 366 * SECONDS_PER_DAY),
      jwtClockToleranceSeconds: reader.integer('JWT_CLOCK_TOLERANCE_SECONDS', 5, 0, 60),
      admin: readAdminBootstrap(reader),
      // 17 is the scrypt minimum of the OWASP Password Storage Cheat Sheet
      // (N = 2^17, r = 8, p = 1). Lower values exist only to make tests fast.
      passwordScryptLog2N: reader.integer('PASSWORD_SCRYPT_LOG2_N', 17, 14, 20),
      loginRateLimitMaxAttempts: reader.integer('LOGIN_RATE_LIMIT_MAX_ATTEMPTS', 10, 1, 1000),
      loginRateLimitWindowSeconds: reader.integer(
        'LOGIN_RATE_LIMIT_WINDOW_SECONDS',
        300,
        1,
        SECONDS_PER_DAY,
      ),
    },

    intake: {
      maxBatchSize: reader.integer('MAX_BATCH_SIZE', 1000, 1, 100_000),
      maxMetaBytes: reader.integer('MAX_META_BYTES', 16_384, 2, 1_048_576),
      clockSkewSeconds: reader.integer('CLOCK_SKEW_SECONDS', 300, 0, SECONDS_PER_DAY),
      latenessHorizonSeconds: reader.integer(
        'LATENESS_HORIZON_SECONDS',
        7 * SECONDS_PER_DAY,
        0,
        366 * SECONDS_PER_DAY,
      ),
      defaultAutoCloseTimeoutSeconds: reader.integer(
        'DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS',
        1800,
        1,
        30 * SECONDS_PER_DAY,
      ),
      userLockTtlMs: reader.integer('USER_LOCK_TTL_MS', 30_000, 100, 600_000),
      userLockWaitMs: reader.integer('USER_LOCK_WAIT_MS', 5000, 0, 600_000),
      userLockMaxHoldMs: reader.integer('USER_LOCK_MAX_HOLD_MS', 600_000, 100, 86_400_000),
      replayPageSize: reader.integer('REPLAY_PAGE_SIZE', 10_000, 1, 1_000_000),
      openPairsCacheSize: reader.integer('OPEN_PAIRS_CACHE_SIZE', 100_000, 0, 100_000_000),
      // A quarter of the pool by default, so that settles before reads leave
      // connections for intake, report loads and the reads themselves.
      readSettleConcurrency: reader.integer('READ_SETTLE_CONCURRENCY', Math.max(1, Math.floor(poolSize / 4)), 1, 100),
      // As many users as a filter or report leaf may name.
      readSettleMaxUsers: reader.integer('READ_SETTLE_MAX_USERS', 1000, 0, 100_000),
      // Requests hold a user's lock for the time their batch takes, far less
      // than this; replays and the locks of a crashed process last longer.
      readSettleWaitMs: reader.integer('READ_SETTLE_WAIT_MS', 1000, 0, 600_000),
    },

    sweeper: {
      intervalMs: reader.integer('SWEEPER_INTERVAL_MS', 1000, 10, 3_600_000),
      leaseMs: reader.integer('SWEEPER_LEASE_MS', 30_000, 1000, 3_600_000),
      batchSize: reader.integer('SWEEPER_BATCH_SIZE', 100, 1, 10_000),
      repairIntervalMs: reader.integer('SWEEPER_REPAIR_INTERVAL_MS', 60_000, 100, 86_400_000),
    },

    rollups: {
      intervalMs: reader.integer('ROLLUP_INTERVAL_MS', 1000, 10, 3_600_000),
      batchSize: reader.integer('ROLLUP_BATCH_SIZE', 200, 1, 10_000),
      delayMs: reader.integer('ROLLUP_DELAY_MS', 5000, 0, 3_600_000),
    },

    reports: {
      maxDepth: reader.integer('REPORT_MAX_DEPTH', 32, 1, 1000),
      maxNodes: reader.integer('REPORT_MAX_NODES', 256, 1, 100_000),
      maxLiteralIntervals: reader.integer('REPORT_MAX_LITERAL_INTERVALS', 10_000, 0, 1_000_000),
      maxLeafEntries: reader.integer('REPORT_MAX_LEAF_ENTRIES', 10_000, 0, 1_000_000),
      maxWindowDays: reader.integer('REPORT_MAX_WINDOW_DAYS', 366, 1, 36_600),
      maxIntervals: reader.integer('REPORT_MAX_INTERVALS', 10_000, 1, 10_000_000),
      maxBucketRows: reader.integer('REPORT_MAX_BUCKET_ROWS', 100_000, 1, 10_000_000),
      // Half the pool by default, so that intake and other reads keep connections.
      maxConcurrentLoads: reader.integer('REPORT_MAX_CONCURRENT_LOADS', Math.max(1, Math.floor(poolSize / 2)), 1, 100),
    },

    metrics: {
      host: reader.string('METRICS_HOST', '127.0.0.1', 255),
      port: readMetricsPort(reader),
    },

    pagination: {
      // A lower PAGE_SIZE_MAX lowers the default with it, so setting the maximum alone is valid.
      defaultPageSize: reader.integer('PAGE_SIZE_DEFAULT', Math.min(100, maxPageSize), 1, 100_000),
      maxPageSize,
    },
  };

  checkCrossFieldRules(config, reader);

  if (reader.issues.length > 0) {
    throw new ConfigError(reader.issues);
  }
  return deepFreeze(config);
}

/**
 * Reads CORS_ORIGINS: '*' (the default), 'none', or a comma-separated list of
 * origins such as https://app.example.com or http://localhost:5173. An entry
 * must be an origin exactly as a browser sends it: scheme, host and port
 * only, without a path or a trailing slash.
 */
function readCorsOrigins(reader: EnvReader): '*' | readonly string[] {
  const value = reader.string('CORS_ORIGINS', '*', 8192);
  if (value === '*') {
    return '*';
  }
  if (value.toLowerCase() === 'none') {
    return [];
  }
  const origins: string[] = [];
  for (const entry of value.split(',').map((part) => part.trim())) {
    const problem = originProblem(entry);
    if (problem !== null) {
      reader.fail(
        'CORS_ORIGINS',
        `CORS_ORIGINS has the entry "${entry}", but ${problem}. Give '*', 'none', or origins separated by commas, such as https://app.example.com,http://localhost:5173.`,
      );
      return [];
    }
    origins.push(entry);
  }
  return [...new Set(origins)];
}

/** Says why `entry` is not an origin as browsers send it, or returns null. */
function originProblem(entry: string): string | null {
  if (entry === '') {
    return 'entries must not be empty';
  }
  if (entry === '*') {
    return "'*' must stand alone";
  }
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return 'it is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return 'an origin must use http or https';
  }
  if (url.origin !== entry) {
    return `browsers send the origin as "${url.origin}", without a path, a trailing slash or a default port`;
  }
  return null;
}

/**
 * Reads REDIS_URL. Its path may name a database number, such as `/2`.
 * ioredis sends any other path to Redis as the database of a SELECT, and when
 * that SELECT fails it only emits an error event and goes on in database 0.
 * NOTE: a number beyond the server's `databases` setting gets the same
 * treatment, and only the server can tell.
 */
function readRedisUrl(reader: EnvReader): string | null {
  const url = reader.url('REDIS_URL', ['redis', 'rediss']);
  if (url === null) {
    return null;
  }
  const urlPath = new URL(url).pathname;
  if (!/^\/?(\d{1,5})?$/.test(urlPath)) {
    reader.fail(
      'REDIS_URL',
      `REDIS_URL is "${redactUrlPassword(url)}", but its path "${urlPath}" must be empty or a database number such as /0.`,
    );
    return null;
  }
  return url;
}

/**
 * Reads METRICS_PORT: unset turns the metrics listener off, and 0 lets the
 * operating system pick a free port, as tests do.
 */
function readMetricsPort(reader: EnvReader): number | null {
  const value = reader.raw('METRICS_PORT');
  if (value === undefined) {
    return null;
  }
  const parsed = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(parsed) || parsed > 65_535) {
    reader.fail(
      'METRICS_PORT',
      `METRICS_PORT is "${value}", but it must be an integer from 0 to 65535, or unset to turn metrics off.`,
    );
    return null;
  }
  return parsed;
}

/**
 * Returns whether listeners on `first` and `second` would take the same
 * port: the same host, or a wildcard address that covers the other. `::`
 * covers IPv4 too, because Node listens on it in dual-stack mode, and
 * 0.0.0.0 covers IPv4 addresses only. NOTE: two names of one address, such
 * as localhost and 127.0.0.1, are not compared, so they fail at the listen.
 */
function hostsOverlap(first: string, second: string): boolean {
  const covers = (wildcard: string, other: string) => wildcard === '::' || (wildcard === '0.0.0.0' && isIP(other) === 4);
  return first === second || covers(first, second) || covers(second, first);
}

function readRedisKeyPrefix(reader: EnvReader): string {
  const defaultPrefix = 'em:';
  const prefix = reader.string('REDIS_KEY_PREFIX', defaultPrefix, 100);

  // A brace in the prefix would become the Redis Cluster hash tag of every key
  // in place of the per-user `{u:<userId>}` tag.
  if (/[{}]/.test(prefix)) {
    reader.fail(
      'REDIS_KEY_PREFIX',
      `REDIS_KEY_PREFIX is "${prefix}", but it must not contain "{" or "}" because they change Redis Cluster hash slots.`,
    );
    return defaultPrefix;
  }
  return prefix;
}

function readAdminBootstrap(reader: EnvReader): AdminBootstrap | null {
  const username = reader.string('ADMIN_USERNAME', '', 255);
  // Read raw and untrimmed, so no message can include the password and its
  // spaces stay part of it.
  const password = reader.raw('ADMIN_PASSWORD', { trim: false }) ?? '';

  if (username === '' && password === '') {
    return null;
  }
  if (username === '' || password === '') {
    const missing = username === '' ? 'ADMIN_USERNAME' : 'ADMIN_PASSWORD';
    reader.fail(
      missing,
      `${missing} is not set, but ADMIN_USERNAME and ADMIN_PASSWORD must be set together or not at all.`,
    );
    return null;
  }
  return { username, password };
}

function checkCrossFieldRules(config: Config, reader: EnvReader): void {
  const { defaultPageSize, maxPageSize } = config.pagination;
  if (defaultPageSize > maxPageSize) {
    reader.fail(
      'PAGE_SIZE_DEFAULT',
      `PAGE_SIZE_DEFAULT is ${defaultPageSize}, but it must not exceed PAGE_SIZE_MAX (${maxPageSize}).`,
    );
  }
  const { maxReplyBytes, replyMemoryMaxBytes } = config.server;
  if (replyMemoryMaxBytes < maxReplyBytes) {
    reader.fail(
      'REPLY_MEMORY_MAX_BYTES',
      `REPLY_MEMORY_MAX_BYTES is ${replyMemoryMaxBytes}, but it must be at least MAX_REPLY_BYTES (${maxReplyBytes}), so that one reply of the maximum size fits.`,
    );
  }
  const { port: metricsPort, host: metricsHost } = config.metrics;
  if (metricsPort !== null && metricsPort !== 0 && metricsPort === config.server.port && hostsOverlap(metricsHost, config.server.host)) {
    const where =
      metricsHost === config.server.host
        ? 'on the same host'
        : `and METRICS_HOST ${metricsHost} and HOST ${config.server.host} overlap, because a wildcard address covers the other`;
    reader.fail(
      'METRICS_PORT',
      `METRICS_PORT is ${metricsPort}, the same as PORT ${where}, but metrics need a listener of their own. Choose another port.`,
    );
  }
  const { userLockTtlMs, userLockMaxHoldMs } = config.intake;
  if (userLockMaxHoldMs < userLockTtlMs) {
    reader.fail(
      'USER_LOCK_MAX_HOLD_MS',
      `USER_LOCK_MAX_HOLD_MS is ${userLockMaxHoldMs}, but it must be at least USER_LOCK_TTL_MS (${userLockTtlMs}).`,
    );
  }
}

function deepFreeze<T extends object>(value: T): Readonly<T> {
  for (const child of Object.values(value)) {
    if (child !== null && typeof child === 'object') {
      deepFreeze(child as object);
    }
  }
  return Object.freeze(value);
}
