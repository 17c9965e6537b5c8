import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  ConfigError,
  JWT_SECRET_FILE_NAME,
  loadConfig,
  redactUrlPassword,
  resolveJwtSecret,
} from '../../src/config/index.js';

const SECRET_32 = 'x'.repeat(32);

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

function capturingLogger(): { logger: pino.Logger; output: () => string } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  return { logger, output: () => lines.join('') };
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    const config = loadConfig({});

    expect(config.nodeEnv).toBe('development');
    expect(config.logLevel).toBe('info');
    expect(config.dataDir).toBe(path.resolve('./.data'));
    expect(config.server).toEqual({
      host: '127.0.0.1',
      port: 4000,
      trustProxy: false,
      maxBodyBytes: 33_554_432,
      anonymousMaxBodyBytes: 65_536,
      requestTimeoutMs: 300_000,
      sendTimeoutMs: 60_000,
      shutdownGraceMs: 10_000,
      shutdownDelayMs: 0,
      shutdownCloseTimeoutMs: 10_000,
      readinessTimeoutMs: 500,
      corsOrigins: '*',
      maxRootFields: 20,
      maxReplyBytes: 67_108_864,
      replyMemoryMaxBytes: 268_435_456,
      introspection: true,
    });
    expect(config.database).toEqual({
      url: null,
      poolSize: 10,
      statementTimeoutMs: 10_000,
      preparedStatements: true,
      migrationLockTimeoutMs: 5000,
    });
    expect(config.redis).toEqual({
      url: null,
      keyPrefix: 'em:',
      commandTimeoutMs: 2000,
      connectTimeoutMs: 5000,
      userStateIdleTtlSeconds: 604_800,
    });
    expect(config.auth).toEqual({
      jwtSecret: null,
      jwtIssuer: 'event-master',
      jwtAudience: 'event-master',
      jwtTtlSeconds: 3600,
      jwtMaxSessionSeconds: 604800,
      jwtClockToleranceSeconds: 5,
      admin: null,
      passwordScryptLog2N: 17,
      loginRateLimitMaxAttempts: 10,
      loginRateLimitWindowSeconds: 300,
    });
    expect(config.intake).toEqual({
      maxBatchSize: 1000,
      maxMetaBytes: 16_384,
      clockSkewSeconds: 300,
      latenessHorizonSeconds: 604_800,
      defaultAutoCloseTimeoutSeconds: 1800,
      userLockTtlMs: 30_000,
      userLockWaitMs: 5000,
      userLockMaxHoldMs: 600_000,
      replayPageSize: 10_000,
      openPairsCacheSize: 100_000,
      readSettleConcurrency: 2,
      readSettleMaxUsers: 1000,
      readSettleWaitMs: 1000,
    });
    expect(config.sweeper).toEqual({ intervalMs: 1000, leaseMs: 30_000, batchSize: 100, repairIntervalMs: 60_000 });
    expect(config.reports).toEqual({
      maxDepth: 32,
      maxNodes: 256,
      maxLiteralIntervals: 10_000,
      maxLeafEntries: 10_000,
      maxWindowDays: 366,
      maxIntervals: 10_000,
      maxBucketRows: 100_000,
      maxConcurrentLoads: 5,
    });
    expect(config.pagination).toEqual({ defaultPageSize: 100, maxPageSize: 1000 });
  });

  it('reads readiness timeout alone', () => {
    const config = loadConfig({ READINESS_TIMEOUT_MS: '250' });

    expect(config.server.readinessTimeoutMs, 'readiness timeout').toBe(250);
    expect(config.redis.commandTimeoutMs, 'Redis command timeout').toBe(2000);
    expect(config.database.statementTimeoutMs, 'statement timeout').toBe(10_000);
  });

  it('accepts port 0 for a free port', () => {
    expect(loadConfig({ PORT: '0' }).server.port).toBe(0);
  });

  it('reads set values', () => {
    const config = loadConfig({
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '0.0.0.0',
      PORT: '8080',
      DATABASE_URL: 'postgres://app:pw@db:5432/events',
      REDIS_URL: 'rediss://cache:6380',
      JWT_SECRET: SECRET_32,
      ADMIN_USERNAME: 'root',
      ADMIN_PASSWORD: ' pass word ',
      TRUST_PROXY: 'true',
      PASSWORD_SCRYPT_LOG2_N: '14',
      DB_PREPARED_STATEMENTS: 'false',
    });

    expect(config.nodeEnv).toBe('production');
    expect(config.logLevel).toBe('warn');
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.server.port).toBe(8080);
    expect(config.server.trustProxy).toBe(true);
    expect(config.database.url).toBe('postgres://app:pw@db:5432/events');
    expect(config.database.preparedStatements).toBe(false);
    expect(config.redis.url).toBe('rediss://cache:6380');
    expect(config.auth.jwtSecret).toBe(SECRET_32);
    expect(config.auth.admin).toEqual({ username: 'root', password: ' pass word ' });
    expect(config.auth.passwordScryptLog2N).toBe(14);
  });

  it('returns deeply frozen object', () => {
    const config = loadConfig({});

    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.auth)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('treats blank as unset', () => {
    const config = loadConfig({ PORT: '  ', REDIS_URL: '', JWT_SECRET: '' });

    expect(config.server.port).toBe(4000);
    expect(config.redis.url).toBeNull();
    expect(config.auth.jwtSecret).toBeNull();
  });

  it.each([
    ['PORT', '-1', '0 to 65535'],
    ['PORT', '65536', '0 to 65535'],
    ['PORT', 'http', '0 to 65535'],
    ['PORT', '4000.5', '0 to 65535'],
    ['PORT', '1e3', '0 to 65535'],
    ['DB_POOL_SIZE', '101', '1 to 100'],
    ['REDIS_COMMAND_TIMEOUT_MS', '5', '10 to 60000'],
    ['USER_STATE_IDLE_TTL_SECONDS', '3599', '3600 to 31622400'],
    ['USER_STATE_IDLE_TTL_SECONDS', '31622401', '3600 to 31622400'],
    ['JWT_TTL_SECONDS', '59', '60 to 86400'],
    ['JWT_TTL_SECONDS', '86401', '60 to 86400'],
    ['JWT_CLOCK_TOLERANCE_SECONDS', '61', '0 to 60'],
    ['PASSWORD_SCRYPT_LOG2_N', '13', '14 to 20'],
    ['PASSWORD_SCRYPT_LOG2_N', '21', '14 to 20'],
    ['SWEEPER_BATCH_SIZE', '-1', '1 to 10000'],
    ['SWEEPER_REPAIR_INTERVAL_MS', '99', '100 to 86400000'],
    ['ROLLUP_BATCH_SIZE', '0', '1 to 10000'],
    ['ROLLUP_INTERVAL_MS', '5', '10 to 3600000'],
    ['ROLLUP_DELAY_MS', '-1', '0 to 3600000'],
    ['MAX_REPLY_BYTES', '1023', '1024 to 268435456'],
    ['MAX_REPLY_BYTES', '268435457', '1024 to 268435456'],
    ['REPLY_MEMORY_MAX_BYTES', '1023', '1024 to 17179869184'],
    ['DB_MIGRATION_LOCK_TIMEOUT_MS', '-1', '0 to 3600000'],
    ['READINESS_TIMEOUT_MS', '9', '10 to 60000'],
    ['REQUEST_TIMEOUT_MS', '-1', '0 to 3600000'],
    ['REQUEST_TIMEOUT_MS', '3600001', '0 to 3600000'],
    ['SEND_TIMEOUT_MS', '-1', '0 to 3600000'],
    ['SEND_TIMEOUT_MS', '3600001', '0 to 3600000'],
    ['SHUTDOWN_DELAY_MS', '-1', '0 to 600000'],
    ['SHUTDOWN_DELAY_MS', '600001', '0 to 600000'],
    ['SHUTDOWN_DELAY_MS', '5s', '0 to 600000'],
    ['SHUTDOWN_CLOSE_TIMEOUT_MS', '-1', '0 to 600000'],
    ['SHUTDOWN_CLOSE_TIMEOUT_MS', '600001', '0 to 600000'],
    ['READINESS_TIMEOUT_MS', '60001', '10 to 60000'],
    ['DB_MIGRATION_LOCK_TIMEOUT_MS', '3600001', '0 to 3600000'],
  ])('rejects %s=%s', (variable, value, range) => {
    const error = configError({ [variable]: value });

    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.variable).toBe(variable);
    expect(error.message).toContain(variable);
    expect(error.message).toContain(`"${value}"`);
    expect(error.message).toContain(range);
  });

  it.each([
    ['NODE_ENV', 'staging'],
    ['LOG_LEVEL', 'verbose'],
    ['TRUST_PROXY', 'maybe'],
    ['DB_PREPARED_STATEMENTS', 'sometimes'],
  ])('rejects enum %s=%s', (variable, value) => {
    const error = configError({ [variable]: value });

    expect(error.issues[0]?.variable).toBe(variable);
    expect(error.message).toContain(`"${value}"`);
  });

  it.each([
    ['*', '*'],
    ['none', []],
    ['NONE', []],
    ['http://localhost:5173', ['http://localhost:5173']],
    [' https://app.example.com , http://localhost:5173,https://app.example.com', ['https://app.example.com', 'http://localhost:5173']],
  ])('reads CORS_ORIGINS=%s', (value, expected) => {
    expect(loadConfig({ CORS_ORIGINS: value }).server.corsOrigins).toEqual(expected);
  });

  it.each([
    ['https://app.example.com/', 'https://app.example.com'],
    ['https://App.example.com', 'https://app.example.com'],
    ['https://app.example.com:443', 'https://app.example.com'],
    ['https://app.example.com/graphql', 'https://app.example.com'],
    ['app.example.com', 'not a URL'],
    ['ftp://files.example.com', 'http or https'],
    ['*,https://app.example.com', 'must stand alone'],
    ['https://app.example.com,,http://localhost:5173', 'must not be empty'],
  ])('rejects CORS_ORIGINS entry in %s', (value, hint) => {
    const error = configError({ CORS_ORIGINS: value });

    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.variable).toBe('CORS_ORIGINS');
    expect(error.message).toContain(hint);
    expect(error.message).toContain("Give '*', 'none', or origins separated by commas");
  });

  it('rejects short JWT secret without value', () => {
    const error = configError({ JWT_SECRET: 'short-secret-123' });

    expect(error.issues[0]?.variable).toBe('JWT_SECRET');
    expect(error.message).toContain('16 bytes');
    expect(error.message).toContain('at least 32 bytes');
    expect(error.message).not.toContain('short-secret-123');
  });

  it('counts JWT secret in bytes', () => {
    // 11 characters of 3 bytes each: 33 bytes.
    const config = loadConfig({ JWT_SECRET: '€'.repeat(11) });

    expect(config.auth.jwtSecret).toBe('€'.repeat(11));
  });

  it('requires admin username with password', () => {
    const error = configError({ ADMIN_PASSWORD: 'swordfish-42' });

    expect(error.issues[0]?.variable).toBe('ADMIN_USERNAME');
    expect(error.message).not.toContain('swordfish-42');
  });

  it('requires admin password with username', () => {
    const error = configError({ ADMIN_USERNAME: 'root' });

    expect(error.issues[0]?.variable).toBe('ADMIN_PASSWORD');
  });

  it('masks password in bad URL', () => {
    const error = configError({ DATABASE_URL: 'mysql://app:topsecret@db/events' });

    expect(error.issues[0]?.variable).toBe('DATABASE_URL');
    expect(error.message).toContain('mysql://app:***@db/events');
    expect(error.message).not.toContain('topsecret');
  });

  it('rejects unparsable URL', () => {
    const error = configError({ REDIS_URL: 'not a url' });

    expect(error.issues[0]?.variable).toBe('REDIS_URL');
    expect(error.message).toContain('not a valid URL');
  });

  it.each(['redis://cache:6379/abc', 'redis://cache:6379/-1', 'redis://:s3cret@cache:6379/db1'])('rejects Redis database path in %s', (url) => {
    const error = configError({ REDIS_URL: url });

    expect(error.issues[0]?.variable).toBe('REDIS_URL');
    expect(error.message).toContain('must be empty or a database number such as /0');
    expect(error.message).not.toContain('s3cret');
  });

  it.each(['redis://cache:6379', 'redis://cache:6379/', 'redis://cache:6379/15', 'rediss://:pw@cache:6380/0?family=6'])(
    'accepts Redis URL %s',
    (url) => {
      expect(loadConfig({ REDIS_URL: url }).redis.url).toBe(url);
    },
  );

  it('rejects brace in key prefix', () => {
    const error = configError({ REDIS_KEY_PREFIX: '{em}:' });

    expect(error.issues[0]?.variable).toBe('REDIS_KEY_PREFIX');
  });

  it('rejects default page above max', () => {
    const error = configError({ PAGE_SIZE_DEFAULT: '500', PAGE_SIZE_MAX: '200' });

    expect(error.issues[0]?.variable).toBe('PAGE_SIZE_DEFAULT');
    expect(error.message).toContain('PAGE_SIZE_MAX (200)');
  });

  it('lowers default page to a lower max', () => {
    const config = loadConfig({ PAGE_SIZE_MAX: '50' });

    expect(config.pagination.maxPageSize).toBe(50);
    expect(config.pagination.defaultPageSize).toBe(50);
  });

  it('rejects reply memory below one reply', () => {
    const error = configError({ MAX_REPLY_BYTES: '2000000', REPLY_MEMORY_MAX_BYTES: '1999999' });

    expect(error.issues[0]?.variable).toBe('REPLY_MEMORY_MAX_BYTES');
    expect(error.message).toContain('REPLY_MEMORY_MAX_BYTES is 1999999, but it must be at least MAX_REPLY_BYTES (2000000)');
  });

  it('sizes reply memory for four replies', () => {
    expect(loadConfig({ MAX_REPLY_BYTES: '1000000' }).server.replyMemoryMaxBytes).toBe(4_000_000);
    expect(loadConfig({ MAX_REPLY_BYTES: '1000000', REPLY_MEMORY_MAX_BYTES: '1000000' }).server.replyMemoryMaxBytes).toBe(1_000_000);
  });

  it('lets reads skip the wait for busy users', () => {
    expect(loadConfig({ READ_SETTLE_WAIT_MS: '0' }).intake.readSettleWaitMs).toBe(0);
  });

  it('rejects maximum hold below lock TTL', () => {
    const error = configError({ USER_LOCK_TTL_MS: '30000', USER_LOCK_MAX_HOLD_MS: '10000' });

    expect(error.issues[0]?.variable).toBe('USER_LOCK_MAX_HOLD_MS');
    expect(error.message).toContain('USER_LOCK_MAX_HOLD_MS is 10000, but it must be at least USER_LOCK_TTL_MS (30000)');
  });

  it('collects every issue', () => {
    const error = configError({ PORT: 'x', NODE_ENV: 'prod', JWT_SECRET: 'short' });

    expect(error.issues.map((issue) => issue.variable)).toEqual(['NODE_ENV', 'PORT', 'JWT_SECRET']);
  });

  it.each([
    ['1', true],
    ['yes', true],
    ['TRUE', true],
    ['0', false],
    ['no', false],
    ['False', false],
  ])('reads TRUST_PROXY=%s', (value, expected) => {
    expect(loadConfig({ TRUST_PROXY: value }).server.trustProxy).toBe(expected);
  });

  it('switch error lists accepted spellings', () => {
    const error = configError({ TRUST_PROXY: 'on' });

    expect(error.message, 'true or false').toContain('must be true or false');
    expect(error.message, 'digits').toContain('1 or 0');
    expect(error.message, 'words').toContain('yes or no');
  });
});

describe('REPORT_MAX_CONCURRENT_LOADS', () => {
  it.each([
    [{ DB_POOL_SIZE: '10' }, 5],
    [{ DB_POOL_SIZE: '3' }, 1],
    [{ DB_POOL_SIZE: '1' }, 1],
    [{ DB_POOL_SIZE: '2', REPORT_MAX_CONCURRENT_LOADS: '4' }, 4],
  ])('follows %j', (env, expected) => {
    expect(loadConfig(env).reports.maxConcurrentLoads).toBe(expected);
  });
});

describe('READ_SETTLE_CONCURRENCY', () => {
  it.each([
    [{ DB_POOL_SIZE: '10' }, 2],
    [{ DB_POOL_SIZE: '20' }, 5],
    [{ DB_POOL_SIZE: '3' }, 1],
    [{ DB_POOL_SIZE: '2', READ_SETTLE_CONCURRENCY: '4' }, 4],
  ])('follows %j', (env, expected) => {
    expect(loadConfig(env).intake.readSettleConcurrency).toBe(expected);
  });
});

describe('.env.example', () => {
  const repositoryRoot = path.resolve(import.meta.dirname, '../..');
  const example = readFileSync(path.join(repositoryRoot, '.env.example'), 'utf8');
  const exampleEnv = Object.fromEntries(
    example
      .split('\n')
      .map((line) => /^([A-Z0-9_]+)=(.*)$/.exec(line))
      .filter((match) => match !== null)
      .map((match) => [match[1], match[2]]),
  ) as Record<string, string>;

  it('matches defaults', () => {
    expect(loadConfig(exampleEnv)).toEqual(loadConfig({}));
  });

  it('keeps pool-derived defaults', () => {
    // A copy of the file with a larger pool must scale these as an unset variable does.
    const config = loadConfig({ ...exampleEnv, DB_POOL_SIZE: '40' });

    expect(config.intake.readSettleConcurrency).toBe(10);
    expect(config.reports.maxConcurrentLoads).toBe(20);
  });

  it('keeps the page size default', () => {
    // A copy of the file with a lower PAGE_SIZE_MAX must lower the default as an unset variable does.
    const config = loadConfig({ ...exampleEnv, PAGE_SIZE_MAX: '50' });

    expect(config.pagination.defaultPageSize).toBe(50);
  });

  it('lists every variable', () => {
    const source = readFileSync(path.join(repositoryRoot, 'src/config/index.ts'), 'utf8');
    const read = new Set([...source.matchAll(/reader\.\w+\(\s*'([A-Z0-9_]+)'/g)].map((match) => match[1]));

    expect(read.size).toBeGreaterThan(40);
    expect(Object.keys(exampleEnv).sort()).toEqual([...read].sort());
  });
});

describe('redactUrlPassword', () => {
  it.each([
    ['redis://:pw@127.0.0.1:6379', 'redis://:***@127.0.0.1:6379'],
    ['postgres://user:pw@db:5432/test', 'postgres://user:***@db:5432/test'],
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
    ['bad url //user:pw@host', 'bad url //user:***@host'],
    ['postgresql://u:p@ssLEAK@h:99999/db', 'postgresql://u:***@h:99999/db'],
    ['postgresql://u:p/ssLEAK@h:99999/db', 'postgresql://u:***@h:99999/db'],
    ['redis://:p@ss:LEAK@h:99999', 'redis://:***@h:99999'],
    ['postgresql://u:12/secret@h:5432/db', 'postgresql://u:***@h:5432/db'],
    ['postgres://u@h/db?password=LEAK', 'postgres://u@h/db?password=***'],
    ['postgres://u@h/db?sslmode=require&sslpassword=LEAK', 'postgres://u@h/db?sslmode=require&sslpassword=***'],
    ['postgres://u@h/db?pass%77ord=LEAK&x=1', 'postgres://u@h/db?pass%77ord=***&x=1'],
    ['postgres://u:pw@h/db?password=LEAK#f', 'postgres://u:***@h/db?password=***#f'],
    ['redis://h:6379?password=LEAK', 'redis://h:6379?password=***'],
    ['postgres://u@h:99999/db?password=LEAK', 'postgres://u@h:99999/db?password=***'],
  ])('%s', (input, expected) => {
    expect(redactUrlPassword(input)).toBe(expected);
  });
});

describe('resolveJwtSecret', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = path.join(await mkdtemp(path.join(tmpdir(), 'em-config-')), 'data');
  });

  afterEach(async () => {
    await rm(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('returns JWT_SECRET when set', async () => {
    const { logger, output } = capturingLogger();
    const config = loadConfig({ JWT_SECRET: SECRET_32, DATA_DIR: dataDir });

    expect(await resolveJwtSecret(config, logger)).toBe(SECRET_32);
    await expect(stat(path.join(dataDir, JWT_SECRET_FILE_NAME))).rejects.toThrow();
    expect(output()).toBe('');
  });

  it('creates secret file once', async () => {
    const { logger, output } = capturingLogger();
    const config = loadConfig({ DATA_DIR: dataDir });

    const first = await resolveJwtSecret(config, logger);
    const second = await resolveJwtSecret(config, logger);
    const file = path.join(dataDir, JWT_SECRET_FILE_NAME);
    const { mode } = await stat(file);

    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(second).toBe(first);
    expect((await readFile(file, 'utf8')).trim()).toBe(first);
    expect(mode & 0o777).toBe(0o600);
    expect(output()).toContain('JWT_SECRET is not set');
    expect(output()).toContain(file);
    expect(output()).not.toContain(first);
  });

  it('agrees under concurrent first start', async () => {
    const { logger } = capturingLogger();
    const config = loadConfig({ DATA_DIR: dataDir });

    const secrets = await Promise.all(
      Array.from({ length: 8 }, () => resolveJwtSecret(config, logger)),
    );

    expect(new Set(secrets).size).toBe(1);
  });

  it('rejects short secret file', async () => {
    const { logger } = capturingLogger();
    const config = loadConfig({ DATA_DIR: dataDir });
    await resolveJwtSecret(config, logger);
    await writeFile(path.join(dataDir, JWT_SECRET_FILE_NAME), 'tiny\n');

    await expect(resolveJwtSecret(config, logger)).rejects.toThrow(ConfigError);
    await expect(resolveJwtSecret(config, logger)).rejects.toThrow(/4 bytes long/);
  });

  it('rejects DATA_DIR that is a file', async () => {
    const { logger } = capturingLogger();
    await writeFile(dataDir, 'not a directory\n');
    const config = loadConfig({ DATA_DIR: dataDir });

    const error = await resolveJwtSecret(config, logger).then(
      () => null,
      (thrown: unknown) => thrown,
    );

    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues[0]?.variable).toBe('DATA_DIR');
    expect((error as ConfigError).message).toContain(`DATA_DIR is "${dataDir}"`);
    expect((error as ConfigError).message).toContain('ENOTDIR');
  });
});

describe('METRICS_PORT and METRICS_HOST', () => {
  it('turns metrics off by default', () => {
    const config = loadConfig({});

    expect(config.metrics.port).toBeNull();
    expect(config.metrics.host).toBe('127.0.0.1');
  });

  it.each([
    ['0', 0],
    ['9464', 9464],
    ['65535', 65535],
    [' 9464 ', 9464],
  ])('reads METRICS_PORT=%j', (value, expected) => {
    expect(loadConfig({ METRICS_PORT: value }).metrics.port).toBe(expected);
  });

  it('treats a blank METRICS_PORT as unset', () => {
    expect(loadConfig({ METRICS_PORT: '  ' }).metrics.port).toBeNull();
  });

  it('reads METRICS_HOST', () => {
    expect(loadConfig({ METRICS_HOST: '0.0.0.0' }).metrics.host).toBe('0.0.0.0');
  });

  it.each(['-1', '65536', 'off', '9464.5', '1e3'])('rejects METRICS_PORT=%j', (value) => {
    const error = configError({ METRICS_PORT: value });

    expect(error.issues.map((issue) => issue.variable)).toEqual(['METRICS_PORT']);
    expect(error.message).toContain(`METRICS_PORT is "${value}"`);
    expect(error.message).toContain('0 to 65535');
    expect(error.message).toContain('unset to turn metrics off');
  });

  it('rejects a METRICS_HOST above 255 characters', () => {
    const error = configError({ METRICS_HOST: 'h'.repeat(256) });

    expect(error.issues.map((issue) => issue.variable)).toEqual(['METRICS_HOST']);
  });

  it('rejects the API port on the API host', () => {
    const error = configError({ PORT: '4000', METRICS_PORT: '4000' });

    expect(error.issues.map((issue) => issue.variable)).toEqual(['METRICS_PORT']);
    expect(error.message).toContain('the same as PORT');
  });

  it.each([
    [{ HOST: '0.0.0.0' }],
    [{ HOST: '::' }],
    [{ METRICS_HOST: '0.0.0.0' }],
    [{ HOST: '::', METRICS_HOST: '::1' }],
  ])('rejects the API port under a wildcard host %j', (hosts) => {
    const error = configError({ PORT: '4000', METRICS_PORT: '4000', ...hosts });

    expect(error.issues.map((issue) => issue.variable)).toEqual(['METRICS_PORT']);
    expect(error.message).toContain('the same as PORT');
  });

  it('accepts the API port on another address family', () => {
    const config = loadConfig({ HOST: '0.0.0.0', PORT: '4000', METRICS_HOST: '::1', METRICS_PORT: '4000' });

    expect(config.metrics.port).toBe(4000);
  });

  it('accepts the API port on another host', () => {
    const config = loadConfig({ PORT: '4000', METRICS_PORT: '4000', METRICS_HOST: '127.0.0.2' });

    expect(config.metrics.port).toBe(4000);
  });

  it('accepts 0 for both ports', () => {
    const config = loadConfig({ PORT: '0', METRICS_PORT: '0' });

    expect(config.metrics.port).toBe(0);
  });
});
