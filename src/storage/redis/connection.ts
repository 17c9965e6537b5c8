/**
 * The ioredis client behind the Redis store: options that make commands fail
 * fast while Redis is down, logging of every connection status change, and a
 * bounded wait for the connection to become ready.
 */
import { Redis, type RedisStatus } from 'ioredis';
import type { Logger } from 'pino';

import { redactUrlPassword } from '../../config/redact.js';
import { DomainError } from '../../domain/errors.js';

export interface RedisConnectionOptions {
  /** redis:// or rediss:// URL. Logs show it with the password masked. */
  url: string;
  /** Maximum time for one command, including any wait for a connection. */
  commandTimeoutMs: number;
  /** Maximum time for establishing one TCP (and TLS) connection. */
  connectTimeoutMs: number;
  logger: Logger;
}

export interface RedisConnection {
  client: Redis;
  /** The URL with its password masked. */
  safeUrl: string;
  /**
   * Resolves once the client is ready. Waits at most `commandTimeoutMs`, and
   * rejects at once after `close()`, which also ends the waits in progress.
   *
   * @throws DomainError SERVICE_UNAVAILABLE with reason `REDIS_UNAVAILABLE`.
   */
  waitUntilReady(operation: string): Promise<void>;
  /** Logs a failed command. Repeats of one message are logged once per 10 s, with a count. */
  logCommandFailure(operation: string, error: unknown): void;
  /**
   * Checks the connection with a PING when `error` is a command timeout, and
   * makes new commands wait for the result. When the peer has gone without
   * closing the connection, or a reply was lost, no PONG comes within the
   * command timeout, so the connection is closed and a new one opened. A
   * Redis that was only slow replies, and keeps the connection and the
   * commands in flight on it.
   */
  checkAfterTimeout(error: unknown): void;
  close(): Promise<void>;
  /** Number of callers waiting in `waitUntilReady`. */
  countWaitersForTests(): number;
}

const FIRST_RECONNECT_DELAY_MS = 50;
const MAX_RECONNECT_DELAY_MS = 2000;
const REPEAT_LOG_INTERVAL_MS = 10_000;
/** The message of the error with which ioredis rejects a command after `commandTimeout`. */
const COMMAND_TIMEOUT_MESSAGE = 'Command timed out';

const STATUSES: readonly RedisStatus[] = [
  'wait',
  'connecting',
  'connect',
  'ready',
  'close',
  'reconnecting',
  'end',
];

/**
 * Returns the message of a connection error. Node 20 reports a host whose
 * addresses all failed, such as localhost with ::1 and 127.0.0.1, as an
 * AggregateError with an empty message, so its errors' messages are joined.
 */
function describeConnectionError(error: Error): string {
  if (error.message !== '') {
    return error.message;
  }
  if (error instanceof AggregateError && error.errors.length > 0) {
    return error.errors.map((each: unknown) => (each instanceof Error ? each.message : String(each))).join('; ');
  }
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error.name;
}

export function openRedisConnection(options: RedisConnectionOptions): RedisConnection {
  const { commandTimeoutMs, connectTimeoutMs } = options;
  const safeUrl = redactUrlPassword(options.url);
  const logger = options.logger.child({ component: 'redis', redis: safeUrl });

  const client = new Redis(options.url, {
    connectionName: 'event-master',
    commandTimeout: commandTimeoutMs,
    connectTimeout: connectTimeoutMs,
    // Exponential backoff from 50 ms, capped at 2 s, with jitter so that many
    // processes do not reconnect in lockstep. It never gives up, and the store
    // reports SERVICE_UNAVAILABLE per command while Redis is down.
    retryStrategy: (attempt) => {
      const delay = Math.min(MAX_RECONNECT_DELAY_MS, FIRST_RECONNECT_DELAY_MS * 2 ** Math.min(attempt, 16));
      return Math.round(delay / 2 + Math.random() * (delay / 2));
    },
    // Commands fail at once while disconnected instead of queueing; the store
    // waits for the connection itself, bounded by the command timeout. A
    // command queued across a reconnect could run long after its caller gave
    // up, for example taking a lock whose token no caller has, which blocks
    // the user until the lock's TTL ends.
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 1,
  });

  // The constructor already set the status to 'connecting' before any event
  // fired, so the first logged change starts from 'initial'.
  let lastStatus: RedisStatus | 'initial' = 'initial';
  let closed = false;
  // Callers waiting until the connection can take commands again. A caller
  // whose wait times out removes itself, so a long outage does not grow the set.
  let usableWaiters = new Set<() => void>();
  // Set while a PING checks the connection after a command timed out.
  let probing = false;
  // Set from a reset until the new connection is ready: the old one may still
  // report 'ready' until its socket has closed.
  let resetting = false;
  const notifyUsable = (): void => {
    const waiters = usableWaiters;
    usableWaiters = new Set();
    for (const wake of waiters) {
      wake();
    }
  };
  // The cause of the current outage, for the error of a command that timed out waiting for the connection.
  let lastConnectionError: string | null = null;
  client.on('ready', () => {
    resetting = false;
    lastConnectionError = null;
    notifyUsable();
  });
  const throttle = createRepeatThrottle(REPEAT_LOG_INTERVAL_MS);

  // One function logs every status change, as old -> new.
  function logStatusChange(next: RedisStatus, detail: unknown): void {
    const fields: Record<string, unknown> = { from: lastStatus, to: next };
    if (next === 'reconnecting' && typeof detail === 'number') {
      fields.retryDelayMs = detail;
    }
    lastStatus = next;

    const message = `redis connection ${fields.from} -> ${next}`;
    // After close() the connection closes on purpose, so that is logged at info level.
    if (next === 'ready' || next === 'end' || (closed && next === 'close')) {
      logger.info(fields, message);
    } else if (next === 'close' || next === 'reconnecting') {
      throttle.log(`status:${next}`, () => logger.warn(fields, message), (suppressed) =>
        logger.warn({ ...fields, suppressed }, message),
      );
    } else {
      logger.debug(fields, message);
    }
  }

  for (const status of STATUSES) {
    client.on(status, (detail: unknown) => logStatusChange(status, detail));
  }

  // Without an 'error' listener ioredis prints connection errors to stderr itself.
  client.on('error', (error: Error) => {
    if (client.status !== 'ready') {
      lastConnectionError = describeConnectionError(error);
    }
    throttle.log(
      `error:${error.message}`,
      () => logger.warn({ err: error }, 'redis connection error'),
      (suppressed) => logger.warn({ err: error, suppressed }, 'redis connection error'),
    );
  });

  function isUsable(): boolean {
    return client.status === 'ready' && !resetting && !probing;
  }

  async function waitUntilReady(operation: string): Promise<void> {
    if (closed) {
      const error = redisUnavailable('the store is closed');
      logCommandFailure(operation, error);
      throw error;
    }
    if (isUsable()) {
      return;
    }

    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    const outcome = await new Promise<'ready' | 'timeout'>((resolve) => {
      wake = () => resolve('ready');
      usableWaiters.add(wake);
      timer = setTimeout(() => resolve('timeout'), commandTimeoutMs);
    });
    clearTimeout(timer);
    if (wake !== undefined) {
      usableWaiters.delete(wake);
    }
    if (closed) {
      const error = redisUnavailable('the store is closed');
      logCommandFailure(operation, error);
      throw error;
    }
    if (outcome === 'timeout') {
      // The error leaves out the operation, which is internal, so the log names it.
      const error = new RedisUnavailableError(
        `not connected within ${commandTimeoutMs} ms (REDIS_COMMAND_TIMEOUT_MS), status ${client.status}`,
        lastConnectionError,
      );
      logCommandFailure(operation, error);
      throw error;
    }
  }

  function logCommandFailure(operation: string, error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    throttle.log(
      `command:${operation}:${message}`,
      () => logger.warn({ err: error, operation }, 'redis command failed'),
      (suppressed) => logger.warn({ err: error, operation, suppressed }, 'redis command failed'),
    );
  }

  function checkAfterTimeout(error: unknown): void {
    if (closed || resetting || probing || !(error instanceof Error) || error.message !== COMMAND_TIMEOUT_MESSAGE || client.status !== 'ready') {
      return;
    }
    probing = true;
    const stream = client.stream;
    logger.warn({ commandTimeoutMs }, 'redis command timed out; checking the connection with PING');
    // A caller's error handling in this turn may still send commands on this
    // connection, after the PING and ahead of the commands that wait for it.
    client
      .ping()
      .then(
        (reply) => (reply === 'PONG' ? null : `PING got ${JSON.stringify(reply)}, another command's reply`),
        (pingError: unknown) => (pingError instanceof Error ? pingError.message : String(pingError)),
      )
      .then((failure) => {
        probing = false;
        if (failure === null) {
          notifyUsable();
          return;
        }
        if (closed || client.stream !== stream) {
          // The connection closed meanwhile; 'ready' wakes the waiting callers.
          return;
        }
        resetting = true;
        logger.warn({ failure }, 'redis connection failed its check; opening a new connection');
        // Commands still waiting on the old connection fail by their own
        // timeout at the latest. The socket is destroyed, because
        // disconnect() waits up to ioredis's disconnectTimeout (2 s) for the
        // peer to close its side, which a peer that stopped replying may never do.
        stream.destroy();
      });
  }

  async function close(): Promise<void> {
    if (closed) {
      return;
    }
    closed = true;
    // Callers waiting for the connection fail now rather than at their timeout.
    notifyUsable();
    try {
      await client.quit();
    } catch {
      // QUIT fails while disconnected, and then there is nothing to flush.
      client.disconnect();
    }
  }

  return {
    client,
    safeUrl,
    waitUntilReady,
    logCommandFailure,
    checkAfterTimeout,
    close,
    countWaitersForTests: () => usableWaiters.size,
  };
}

/** The error that every failed Redis operation surfaces as: SERVICE_UNAVAILABLE with reason `REDIS_UNAVAILABLE`. */
export class RedisUnavailableError extends DomainError {
  /**
   * The failure alone, such as `connect ECONNREFUSED 127.0.0.1:6379`, without
   * the advice that the message gives API clients. Command-line programs print it.
   */
  readonly failure: string;

  /**
   * The message of the connection's last error while it was not ready, such
   * as `connect ECONNREFUSED 127.0.0.1:6379`, or null. Command-line programs
   * print it. The message for API clients leaves it out, because it names the Redis host.
   */
  readonly connectionError: string | null;

  constructor(failure: string, connectionError: string | null = null) {
    super(
      'SERVICE_UNAVAILABLE',
      'REDIS_UNAVAILABLE',
      `Redis is unavailable (${failure}), so the request could not be completed. Retry later.`,
    );
    this.failure = failure;
    this.connectionError = connectionError;
  }
}

/** Builds the error that every failed Redis operation surfaces as. */
export function redisUnavailable(reason: string): DomainError {
  return new RedisUnavailableError(reason);
}

/**
 * Lets a repeated log line through once per interval per key, and reports how
 * many repeats it held back in between.
 */
function createRepeatThrottle(intervalMs: number) {
  const entries = new Map<string, { lastLoggedAt: number; suppressed: number }>();

  return {
    log(key: string, first: () => void, repeat: (suppressed: number) => void): void {
      const current = Date.now();
      const entry = entries.get(key);
      if (entry === undefined) {
        // Bound the map: keys include error messages, which vary.
        if (entries.size >= 100) {
          entries.clear();
        }
        entries.set(key, { lastLoggedAt: current, suppressed: 0 });
        first();
        return;
      }
      if (current - entry.lastLoggedAt < intervalMs) {
        entry.suppressed += 1;
        return;
      }
      const suppressed = entry.suppressed;
      entry.lastLoggedAt = current;
      entry.suppressed = 0;
      repeat(suppressed);
    },
  };
}
