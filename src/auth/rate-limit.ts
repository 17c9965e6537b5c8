/**
 * Limits failed logins per username and per client address, each in its own
 * fixed window. The username limit slows guessing of one account from many
 * addresses. The address limit slows one client trying many accounts.
 */
import { createHash, randomUUID, type BinaryLike } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

import type { Logger } from 'pino';

import { DomainError } from '../domain/errors.js';

/** The part of the coordination store that the limiter needs. */
export interface WindowCounterStore {
  incrementWindowCounter(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }>;
  decrementWindowCounter(key: string): Promise<{ count: number; resetInMs: number }>;
  getWindowCounter(key: string): Promise<{ count: number; resetInMs: number }>;
  resetCounter(key: string): Promise<void>;
  addRunning(key: string, member: string, ttlMs: number): Promise<number>;
  removeRunning(key: string, member: string): Promise<void>;
}

/** The limit that rejected a login attempt. */
export type LoginLimit = 'username' | 'address' | 'running';

/**
 * The error of an attempt that a login limit rejected: UNAUTHENTICATED with
 * reason `RATE_LIMITED`. `firstInWindow` is true for the first rejection by
 * that limit for that username or address in the limit's current window.
 * The store counts the rejections, so this is true across every process that
 * shares the store. Callers log only those, so that a flood of rejected
 * attempts logs one line per window.
 */
export class LoginRateLimitedError extends DomainError {
  constructor(
    message: string,
    details: { retryAfterSeconds: number; maxAttempts: number; windowSeconds: number },
    readonly limit: LoginLimit,
    readonly firstInWindow: boolean,
  ) {
    super('UNAUTHENTICATED', 'RATE_LIMITED', message, details);
  }

  get retryAfterSeconds(): number {
    return this.details.retryAfterSeconds as number;
  }
}

export interface LoginRateLimitOptions {
  /** Failed logins allowed per window before further attempts are rejected. */
  maxAttempts: number;
  windowSeconds: number;
  /** Receives the store errors that the limiter catches and does not raise. */
  logger?: Pick<Logger, 'warn'>;
}

/**
 * An attempt counts against its username from the moment it starts, so
 * attempts on one account that run at once cannot all pass the limit before
 * any has failed. Against the address, failures count for the window, and
 * attempts count while they run: an address may have at most `maxAttempts`
 * failures and running attempts together. So a burst of guesses on many
 * usernames from one address cannot all pass before their failures count,
 * while correct logins of many users behind one address count against each
 * other only while they run. An attempt that succeeds, or fails before its
 * credentials are checked, is taken back.
 */
export interface LoginRateLimiter {
  /**
   * Counts an attempt against the username. Call it before checking the password.
   *
   * @throws LoginRateLimitedError (UNAUTHENTICATED with reason
   *   `RATE_LIMITED` and `retryAfterSeconds` in its details) when the
   *   username or the address has used up its failed attempts, or when the
   *   address has as many attempts running as its failures leave room for.
   *   The rejected attempt is not counted.
   */
  beginAttempt(username: string, clientAddress: string): Promise<void>;
  /** Counts a failed login against the address and ends the attempt. The username counted it when the attempt began. */
  recordFailure(username: string, clientAddress: string): Promise<void>;
  /**
   * Clears the username's failures after a successful login. The address
   * keeps its failures, so one valid account cannot reset the limit of an
   * address that is guessing at others.
   */
  recordSuccess(username: string, clientAddress: string): Promise<void>;
  /** Takes back an attempt that failed before its credentials were checked, such as when the database was unavailable. */
  cancelAttempt(username: string, clientAddress: string): Promise<void>;
}

export function createLoginRateLimiter(
  store: WindowCounterStore,
  options: LoginRateLimitOptions,
): LoginRateLimiter {
  const { maxAttempts, windowSeconds } = options;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(`maxAttempts is ${maxAttempts}, but it must be a positive integer.`);
  }
  if (!Number.isInteger(windowSeconds) || windowSeconds < 1) {
    throw new RangeError(`windowSeconds is ${windowSeconds}, but it must be a positive integer.`);
  }
  const windowMs = windowSeconds * 1000;
  // The members this process added to each address's running set, oldest
  // first. Attempts of one address are alike, so an attempt that ends
  // removes the oldest member still there.
  const membersByAddress = new Map<string, string[]>();

  async function startRunning(clientAddress: string): Promise<number> {
    const key = runningKey(clientAddress);
    const member = randomUUID();
    const members = membersByAddress.get(key) ?? [];
    members.push(member);
    membersByAddress.set(key, members);
    try {
      return await store.addRunning(key, member, RUNNING_TTL_MS);
    } catch (error) {
      // Forgets this member only: if the store added it after all, it expires on its own.
      members.splice(members.indexOf(member), 1);
      if (members.length === 0) {
        membersByAddress.delete(key);
      }
      throw error;
    }
  }

  async function stopRunning(clientAddress: string): Promise<void> {
    const key = runningKey(clientAddress);
    const members = membersByAddress.get(key);
    const member = members?.shift();
    if (members?.length === 0) {
      membersByAddress.delete(key);
    }
    if (member !== undefined) {
      await store.removeRunning(key, member);
    }
  }

  /**
   * Counts a rejection by the limit whose counter is `counterKey`, in a
   * counter that ends with the limit's window in `resetInMs`, and returns
   * whether it is the first one. When the store fails, it logs the error
   * and returns false, so the attempt still gets its rejection rather than
   * a store error.
   */
  async function isFirstRejection(counterKey: string, resetInMs: number): Promise<boolean> {
    try {
      const rejections = await store.incrementWindowCounter(rejectionsKey(counterKey), Math.max(1, Math.ceil(resetInMs)));
      return rejections.count === 1;
    } catch (error) {
      options.logger?.warn({ err: error }, 'counting a rejected login attempt failed, so the rejection is not logged');
      return false;
    }
  }

  async function rateLimited(limit: LoginLimit, counterKey: string, waitMs: number): Promise<LoginRateLimitedError> {
    const retryAfterSeconds = Math.max(1, Math.ceil(waitMs / 1000));
    return new LoginRateLimitedError(
      `Too many failed logins: the limit is ${maxAttempts} per ${windowSeconds} seconds. ` +
        `Try again in ${retryAfterSeconds} seconds.`,
      { retryAfterSeconds, maxAttempts, windowSeconds },
      limit,
      await isFirstRejection(counterKey, waitMs),
    );
  }

  async function tooManyRunning(clientAddress: string, running: number, failures: number): Promise<LoginRateLimitedError> {
    return new LoginRateLimitedError(
      `Too many logins at once from this address: ${running} are running and ${failures} failed in the last ` +
        `${windowSeconds} seconds, and together they may be at most ${maxAttempts}. Try again in 1 second.`,
      { retryAfterSeconds: 1, maxAttempts, windowSeconds },
      'running',
      await isFirstRejection(runningKey(clientAddress), 1000),
    );
  }

  async function beginAttempt(username: string, clientAddress: string): Promise<void> {
    // The running count goes up before the failures are read, so of the
    // attempts that start together only as many pass as the failures leave room for.
    const running = await startRunning(clientAddress);
    try {
      const byAddress = await store.getWindowCounter(addressKey(clientAddress));
      if (byAddress.count >= maxAttempts) {
        throw await rateLimited('address', addressKey(clientAddress), byAddress.resetInMs);
      }
      if (byAddress.count + running > maxAttempts) {
        throw await tooManyRunning(clientAddress, running - 1, byAddress.count);
      }
      // The count includes this attempt, so up to maxAttempts of them pass.
      const byUsername = await store.incrementWindowCounter(usernameKey(username), windowMs);
      if (byUsername.count > maxAttempts) {
        await store.decrementWindowCounter(usernameKey(username));
        throw await rateLimited('username', usernameKey(username), byUsername.resetInMs);
      }
    } catch (error) {
      await stopRunningAfter(clientAddress, error);
    }
  }

  /**
   * Ends an attempt that failed with `error`, and raises `error`. A store
   * error while ending it is logged, not raised, so it cannot replace
   * `error`, such as a rate-limit rejection. The attempt then counts as
   * running until RUNNING_TTL_MS.
   */
  async function stopRunningAfter(clientAddress: string, error: unknown): Promise<never> {
    try {
      await stopRunning(clientAddress);
    } catch (stopError) {
      options.logger?.warn(
        { err: stopError, clientAddress },
        'ending a failed login attempt failed, so it counts as running until its entry in the store expires',
      );
    }
    throw error;
  }

  /**
   * Runs `record` and then ends the attempt, also when `record` fails.
   * Otherwise a store error would leave the attempt counted as running until
   * RUNNING_TTL_MS, and its member in `membersByAddress` until the process stops.
   */
  async function endAttempt(clientAddress: string, record: () => Promise<unknown>): Promise<void> {
    try {
      await record();
    } catch (error) {
      await stopRunningAfter(clientAddress, error);
    }
    await stopRunning(clientAddress);
  }

  async function recordFailure(_username: string, clientAddress: string): Promise<void> {
    await endAttempt(clientAddress, () => store.incrementWindowCounter(addressKey(clientAddress), windowMs));
  }

  async function recordSuccess(username: string, clientAddress: string): Promise<void> {
    await endAttempt(clientAddress, () => store.resetCounter(usernameKey(username)));
  }

  async function cancelAttempt(username: string, clientAddress: string): Promise<void> {
    await endAttempt(clientAddress, () => store.decrementWindowCounter(usernameKey(username)));
  }

  return { beginAttempt, recordFailure, recordSuccess, cancelAttempt };
}

/**
 * Counter key for a username. Usernames are user input of any length, so the
 * key contains a hash. Case and Unicode form are folded so that "Bob" and "bob"
 * share one budget.
 */
export function usernameKey(username: string): string {
  return `login:user:${digest(username.normalize('NFC').toLowerCase())}`;
}

/** Key of the counter of the rejections by the limit whose counter is `counterKey`. */
export function rejectionsKey(counterKey: string): string {
  return `login:rejections:${counterKey}`;
}

/**
 * How long a running attempt counts at most. An attempt left counted by a
 * process that stopped frees its place then.
 * NOTE: an attempt still running after this time no longer counts.
 */
const RUNNING_TTL_MS = 60_000;

/** Key of the set of a client address's running attempts. */
export function runningKey(clientAddress: string): string {
  return `login:running:${digest(addressGroup(clientAddress))}`;
}

/**
 * Counter key for a client address. An IPv6 client usually controls a whole
 * /64 network, so IPv6 addresses count per /64. IPv4-mapped IPv6 addresses
 * count as their IPv4 address.
 */
export function addressKey(clientAddress: string): string {
  return `login:address:${digest(addressGroup(clientAddress))}`;
}

function digest(value: BinaryLike): string {
  // 128 bits of SHA-256 are plenty to keep distinct inputs apart.
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}

/** Returns the address itself for IPv4, its /64 network for IPv6, and the input for anything else. */
export function addressGroup(clientAddress: string): string {
  const address = clientAddress.trim();
  if (isIPv4(address)) {
    return address;
  }
  if (!isIPv6(address)) {
    return address;
  }

  const groups = expandIpv6(address);
  const isIpv4Mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  if (isIpv4Mapped) {
    const high = groups[6] ?? 0;
    const low = groups[7] ?? 0;
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }

  const prefix = groups.slice(0, 4).map((group) => group.toString(16));
  return `${prefix.join(':')}::/64`;
}

/** Expands a valid IPv6 address into its eight 16-bit groups. */
function expandIpv6(address: string): number[] {
  // Drop a zone index such as "%eth0".
  let text = address.split('%')[0] ?? address;

  // A trailing dotted IPv4 part ("::ffff:192.0.2.1") is two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const octets = tail.split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }

  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');

  return [...headGroups, ...zeros, ...tailGroups].map((group) => Number.parseInt(group, 16));
}
