import { describe, expect, it } from 'vitest';

import {
  addressGroup,
  addressKey,
  createLoginRateLimiter,
  LoginRateLimitedError,
  runningKey,
  usernameKey,
  type LoginRateLimiter,
} from '../../src/auth/rate-limit.js';
import { DomainError } from '../../src/domain/errors.js';
import { createMemoryStore } from '../../src/storage/redis/memory-store.js';

const WINDOW_SECONDS = 300;

/** Creates a limiter on a memory store whose clock the test moves by hand. */
function setup(maxAttempts = 3) {
  const clock = { nowMs: 1_000_000 };
  const store = createMemoryStore({ now: () => clock.nowMs });
  const limiter = createLoginRateLimiter(store, { maxAttempts, windowSeconds: WINDOW_SECONDS });
  return { clock, store, limiter };
}

/** Plays a login with a wrong password: the attempt begins, and its failure is recorded. */
async function failedLogin(limiter: LoginRateLimiter, username: string, clientAddress: string): Promise<void> {
  await limiter.beginAttempt(username, clientAddress);
  await limiter.recordFailure(username, clientAddress);
}

async function rateLimitError(promise: Promise<unknown>): Promise<DomainError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(DomainError);
  const domainError = error as DomainError;
  expect(domainError.kind).toBe('UNAUTHENTICATED');
  expect(domainError.reason).toBe('RATE_LIMITED');
  return domainError;
}

describe('login rate limiter', () => {
  it('allows attempts under limit', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'alice', '192.0.2.1');
    await failedLogin(limiter, 'alice', '192.0.2.1');

    await expect(limiter.beginAttempt('alice', '192.0.2.1')).resolves.toBeUndefined();
  });

  it('blocks username across addresses', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'alice', '192.0.2.1');
    await failedLogin(limiter, 'alice', '192.0.2.2');
    await failedLogin(limiter, 'alice', '192.0.2.3');

    const error = await rateLimitError(limiter.beginAttempt('alice', '198.51.100.7'));

    expect(error.details).toMatchObject({ retryAfterSeconds: WINDOW_SECONDS, maxAttempts: 3 });
    expect(error.message).toContain(`Try again in ${WINDOW_SECONDS} seconds`);
    await expect(limiter.beginAttempt('bob', '198.51.100.7')).resolves.toBeUndefined();
  });

  it('blocks address across usernames', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'alice', '192.0.2.1');
    await failedLogin(limiter, 'bob', '192.0.2.1');
    await failedLogin(limiter, 'carol', '192.0.2.1');

    await rateLimitError(limiter.beginAttempt('dave', '192.0.2.1'));
    await expect(limiter.beginAttempt('dave', '192.0.2.2')).resolves.toBeUndefined();
  });

  it('retry-after shrinks with time', async () => {
    const { clock, limiter } = setup();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await failedLogin(limiter, 'alice', '192.0.2.1');
    }
    clock.nowMs += 100_500;

    const error = await rateLimitError(limiter.beginAttempt('alice', '192.0.2.1'));

    expect(error.details.retryAfterSeconds).toBe(200);
  });

  it('window end lifts block', async () => {
    const { clock, limiter } = setup();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await failedLogin(limiter, 'alice', '192.0.2.1');
    }
    clock.nowMs += WINDOW_SECONDS * 1000;

    await expect(limiter.beginAttempt('alice', '192.0.2.1')).resolves.toBeUndefined();
  });

  it('success resets username only', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'alice', '192.0.2.1');
    await failedLogin(limiter, 'alice', '192.0.2.1');
    await limiter.beginAttempt('alice', '192.0.2.1');
    await limiter.recordSuccess('alice', '192.0.2.1');
    await failedLogin(limiter, 'alice', '192.0.2.1');

    // alice has 1 failure since the reset, but the address has 3.
    await rateLimitError(limiter.beginAttempt('alice', '192.0.2.1'));
    await expect(limiter.beginAttempt('alice', '192.0.2.9')).resolves.toBeUndefined();
  });

  it('correct logins pass once running ones end', async () => {
    const { limiter } = setup();
    const users = Array.from({ length: 8 }, (_, index) => `user-${index}`);

    const outcomes = await Promise.allSettled(users.map((user) => limiter.beginAttempt(user, '192.0.2.1')));
    const started = users.filter((_, index) => outcomes[index]?.status === 'fulfilled');
    expect(started).toHaveLength(3);
    await Promise.all(started.map((user) => limiter.recordSuccess(user, '192.0.2.1')));

    // Successes leave no trace against the address, so the rest pass in turn.
    for (const user of users.filter((name) => !started.includes(name))) {
      await limiter.beginAttempt(user, '192.0.2.1');
      await limiter.recordSuccess(user, '192.0.2.1');
    }
  });

  it('burst on many usernames stops at limit', async () => {
    const { limiter } = setup();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, index) => limiter.beginAttempt(`guess-${index}`, '192.0.2.1')),
    );

    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(3);
    const error = (outcomes.find((outcome) => outcome.status === 'rejected') as PromiseRejectedResult).reason as DomainError;
    expect(error).toMatchObject({ kind: 'UNAUTHENTICATED', reason: 'RATE_LIMITED' });
    expect(error.details.retryAfterSeconds).toBe(1);
    expect(error.message).toContain('Too many logins at once from this address: 3 are running and 0 failed');
    expect(error.message).toContain('at most 3');
    await expect(limiter.beginAttempt('guess-other', '192.0.2.2')).resolves.toBeUndefined();
  });

  it('running attempts and failures share the address budget', async () => {
    const { store, limiter } = setup();
    await failedLogin(limiter, 'a', '192.0.2.1');
    await limiter.beginAttempt('b', '192.0.2.1');
    await limiter.beginAttempt('c', '192.0.2.1');

    expect((await rateLimitError(limiter.beginAttempt('d', '192.0.2.1'))).message).toContain('2 are running and 1 failed');
    await limiter.recordFailure('b', '192.0.2.1');
    expect((await rateLimitError(limiter.beginAttempt('d', '192.0.2.1'))).message).toContain('1 are running and 2 failed');
    await limiter.cancelAttempt('c', '192.0.2.1');
    await limiter.beginAttempt('d', '192.0.2.1');
    await limiter.recordSuccess('d', '192.0.2.1');

    // Nothing runs any more: a new member is alone in the set.
    expect(await store.addRunning(runningKey('192.0.2.1'), 'probe', 1000)).toBe(1);
    expect((await store.getWindowCounter(addressKey('192.0.2.1'))).count).toBe(2);
  });

  it('attempts past their time leave later ones counted', async () => {
    // Three correct logins outlive the running time, three guesses start
    // after it, and then the logins end: the guesses still fill the budget.
    const { clock, limiter } = setup();
    for (const user of ['a', 'b', 'c']) {
      await limiter.beginAttempt(user, '192.0.2.1');
    }
    clock.nowMs += 60_000;
    for (const user of ['g1', 'g2', 'g3']) {
      await limiter.beginAttempt(user, '192.0.2.1');
    }
    for (const user of ['a', 'b', 'c']) {
      await limiter.recordSuccess(user, '192.0.2.1');
    }

    const error = await rateLimitError(limiter.beginAttempt('g4', '192.0.2.1'));
    expect(error.message).toContain('3 are running and 0 failed');
  });

  it('failed start leaves others counted', async () => {
    const { store, limiter } = setup();
    const addRunning = store.addRunning.bind(store);
    await limiter.beginAttempt('a', '192.0.2.1');
    store.addRunning = async () => {
      throw new Error('store unavailable');
    };
    await expect(limiter.beginAttempt('b', '192.0.2.1')).rejects.toThrow('store unavailable');
    store.addRunning = addRunning;

    // 'a' still runs, so two more fill the budget of three.
    await limiter.beginAttempt('c', '192.0.2.1');
    await limiter.beginAttempt('d', '192.0.2.1');
    const error = await rateLimitError(limiter.beginAttempt('e', '192.0.2.1'));
    expect(error.message).toContain('3 are running');
  });

  it.each([
    ['recordFailure', 'incrementWindowCounter'],
    ['recordSuccess', 'resetCounter'],
    ['cancelAttempt', 'decrementWindowCounter'],
  ] as const)('failed %s still ends the attempt', async (method, storeMethod) => {
    const store = createMemoryStore();
    let failing = false;
    const unavailable = () => Promise.reject(new Error('store unavailable'));
    const flaky = { ...store, [storeMethod]: (...args: [string, number]) => (failing ? unavailable() : store[storeMethod](...args)) };
    const limiter = createLoginRateLimiter(flaky, { maxAttempts: 3, windowSeconds: WINDOW_SECONDS });
    await limiter.beginAttempt('a', '192.0.2.1');
    failing = true;
    await expect(limiter[method]('a', '192.0.2.1')).rejects.toThrow('store unavailable');
    failing = false;

    // 'a' has ended, so three new attempts fit the budget of three.
    for (const user of ['b', 'c', 'd']) {
      await expect(limiter.beginAttempt(user, '192.0.2.1'), user).resolves.toBeUndefined();
    }
    const error = await rateLimitError(limiter.beginAttempt('e', '192.0.2.1'));
    expect(error.message).toContain('3 are running');
  });

  it('failed record and end raise the record error', async () => {
    const store = createMemoryStore();
    const warnings: unknown[] = [];
    let failing = false;
    const flaky = {
      ...store,
      incrementWindowCounter: (key: string, windowMs: number) =>
        failing ? Promise.reject(new Error('counter unavailable')) : store.incrementWindowCounter(key, windowMs),
      removeRunning: (key: string, member: string) =>
        failing ? Promise.reject(new Error('running set unavailable')) : store.removeRunning(key, member),
    };
    const logger = { warn: (fields: unknown) => warnings.push(fields) };
    const limiter = createLoginRateLimiter(flaky, { maxAttempts: 3, windowSeconds: WINDOW_SECONDS, logger });
    await limiter.beginAttempt('a', '192.0.2.1');
    failing = true;

    await expect(limiter.recordFailure('a', '192.0.2.1')).rejects.toThrow('counter unavailable');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ err: { message: 'running set unavailable' }, clientAddress: '192.0.2.1' });
  });

  it('rejection survives a failed end', async () => {
    const store = createMemoryStore();
    const warnings: unknown[] = [];
    const flaky = { ...store, removeRunning: () => Promise.reject(new Error('running set unavailable')) };
    const logger = { warn: (fields: unknown) => warnings.push(fields) };
    const limiter = createLoginRateLimiter(flaky, { maxAttempts: 1, windowSeconds: WINDOW_SECONDS, logger });
    await store.incrementWindowCounter(addressKey('192.0.2.1'), WINDOW_SECONDS * 1000);

    const error = await rateLimitError(limiter.beginAttempt('a', '192.0.2.1'));
    expect(error).toBeInstanceOf(LoginRateLimitedError);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ err: { message: 'running set unavailable' } });
  });

  it('running count of a stopped process expires', async () => {
    const { clock, limiter } = setup();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await limiter.beginAttempt(`left-${attempt}`, '192.0.2.1');
    }
    await rateLimitError(limiter.beginAttempt('next', '192.0.2.1'));

    clock.nowMs += 60_000;
    await expect(limiter.beginAttempt('next', '192.0.2.1')).resolves.toBeUndefined();
  });

  it('concurrent attempts stop at limit', async () => {
    const { limiter } = setup();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, () => limiter.beginAttempt('alice', '192.0.2.1')),
    );

    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(3);
    const rejected = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(rejected).toHaveLength(7);
    for (const outcome of rejected) {
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ reason: 'RATE_LIMITED' });
    }
  });

  it('rejected attempts are not counted', async () => {
    const { store, limiter } = setup();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await limiter.beginAttempt('alice', '192.0.2.1');
    }
    await rateLimitError(limiter.beginAttempt('alice', '192.0.2.1'));
    await rateLimitError(limiter.beginAttempt('alice', '192.0.2.1'));

    expect((await store.getWindowCounter(usernameKey('alice'))).count).toBe(3);
    // Only failures count against the address, and none has been recorded.
    expect((await store.getWindowCounter(addressKey('192.0.2.1'))).count).toBe(0);
  });

  it('cancelled attempt is taken back', async () => {
    const { limiter } = setup();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await limiter.beginAttempt('alice', '192.0.2.1');
    }
    await limiter.cancelAttempt('alice', '192.0.2.1');

    await expect(limiter.beginAttempt('alice', '192.0.2.1')).resolves.toBeUndefined();
    await rateLimitError(limiter.beginAttempt('alice', '192.0.2.1'));
  });

  it('folds username case', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'Alice', '192.0.2.1');
    await failedLogin(limiter, 'ALICE', '192.0.2.2');
    await failedLogin(limiter, 'alice', '192.0.2.3');

    await rateLimitError(limiter.beginAttempt('aLiCe', '192.0.2.4'));
  });

  it('counts IPv6 per /64', async () => {
    const { limiter } = setup();
    await failedLogin(limiter, 'a', '2001:db8:1:2::1');
    await failedLogin(limiter, 'b', '2001:db8:1:2::2');
    await failedLogin(limiter, 'c', '2001:db8:1:2:ffff:ffff:ffff:ffff');

    await rateLimitError(limiter.beginAttempt('d', '2001:db8:1:2:abcd::9'));
    await expect(limiter.beginAttempt('d', '2001:db8:1:3::1')).resolves.toBeUndefined();
  });

  describe('first rejection in a window', () => {
    /** Returns the limit and `firstInWindow` of the rejection of an attempt. */
    async function rejection(limiter: LoginRateLimiter, username: string, clientAddress: string) {
      const error = await rateLimitError(limiter.beginAttempt(username, clientAddress));
      expect(error, 'error class').toBeInstanceOf(LoginRateLimitedError);
      const limited = error as LoginRateLimitedError;
      return { limit: limited.limit, firstInWindow: limited.firstInWindow, retryAfterSeconds: limited.retryAfterSeconds };
    }

    it('username limit marks its first rejection', async () => {
      const { clock, limiter } = setup();
      for (let attempt = 1; attempt <= 3; attempt += 1) {
        await failedLogin(limiter, 'alice', `192.0.2.${attempt}`);
      }

      expect(await rejection(limiter, 'alice', '198.51.100.1')).toEqual({ limit: 'username', firstInWindow: true, retryAfterSeconds: WINDOW_SECONDS });
      expect(await rejection(limiter, 'ALICE', '198.51.100.2'), 'same username in another case').toMatchObject({ firstInWindow: false });
      clock.nowMs += 100_000;
      expect(await rejection(limiter, 'alice', '198.51.100.3'), 'later in the window').toMatchObject({ firstInWindow: false });

      // The next window starts once this one ends, and its first rejection is marked again.
      clock.nowMs += (WINDOW_SECONDS - 100) * 1000;
      for (let attempt = 1; attempt <= 3; attempt += 1) {
        await failedLogin(limiter, 'alice', `192.0.2.${10 + attempt}`);
      }
      expect(await rejection(limiter, 'alice', '198.51.100.4'), 'next window').toEqual({ limit: 'username', firstInWindow: true, retryAfterSeconds: WINDOW_SECONDS });
    });

    it('address limit marks one rejection for every username', async () => {
      const { limiter } = setup();
      for (const username of ['a', 'b', 'c']) {
        await failedLogin(limiter, username, '192.0.2.1');
      }

      expect(await rejection(limiter, 'd', '192.0.2.1')).toMatchObject({ limit: 'address', firstInWindow: true });
      expect(await rejection(limiter, 'e', '192.0.2.1'), 'another username').toMatchObject({ limit: 'address', firstInWindow: false });
    });

    it('username limits counted apart', async () => {
      const { limiter } = setup();
      for (let attempt = 1; attempt <= 3; attempt += 1) {
        await failedLogin(limiter, 'alice', `192.0.2.${attempt}`);
        await failedLogin(limiter, 'bob', `192.0.2.${10 + attempt}`);
      }

      expect(await rejection(limiter, 'alice', '198.51.100.1'), 'alice').toMatchObject({ limit: 'username', firstInWindow: true });
      expect(await rejection(limiter, 'bob', '198.51.100.1'), 'bob').toMatchObject({ limit: 'username', firstInWindow: true });
    });

    it('store failure keeps the rejection', async () => {
      const store = createMemoryStore();
      const failing = {
        ...store,
        incrementWindowCounter: (key: string, windowMs: number) =>
          key.startsWith('login:rejections:') ? Promise.reject(new Error('store down')) : store.incrementWindowCounter(key, windowMs),
      };
      const warnings: unknown[] = [];
      const limiter = createLoginRateLimiter(failing, {
        maxAttempts: 3,
        windowSeconds: WINDOW_SECONDS,
        logger: { warn: (fields: unknown) => warnings.push(fields) },
      });
      for (let attempt = 1; attempt <= 3; attempt += 1) {
        await failedLogin(limiter, 'alice', `192.0.2.${attempt}`);
      }

      expect(await rejection(limiter, 'alice', '198.51.100.1')).toMatchObject({ limit: 'username', firstInWindow: false });
      expect(warnings, 'logged store errors').toHaveLength(1);
      expect((warnings[0] as { err?: Error }).err?.message, 'logged error').toBe('store down');
    });

    it('running limit marks one rejection per second', async () => {
      const { clock, limiter } = setup();
      for (const username of ['a', 'b', 'c']) {
        await limiter.beginAttempt(username, '192.0.2.1');
      }

      expect(await rejection(limiter, 'd', '192.0.2.1')).toEqual({ limit: 'running', firstInWindow: true, retryAfterSeconds: 1 });
      expect(await rejection(limiter, 'e', '192.0.2.1'), 'same second').toMatchObject({ firstInWindow: false });
      clock.nowMs += 1000;
      expect(await rejection(limiter, 'f', '192.0.2.1'), 'next second').toMatchObject({ firstInWindow: true });
    });
  });

  it('rejects invalid options', () => {
    const store = createMemoryStore();

    expect(() => createLoginRateLimiter(store, { maxAttempts: 0, windowSeconds: 60 })).toThrow(RangeError);
    expect(() => createLoginRateLimiter(store, { maxAttempts: 5, windowSeconds: 0.5 })).toThrow(RangeError);
  });
});

describe('rate limit keys', () => {
  it('hash usernames to bounded keys', () => {
    const long = 'x'.repeat(100_000);
    const key = usernameKey(long);

    expect(key).toMatch(/^login:user:[0-9a-f]{32}$/);
    expect(usernameKey('alice')).not.toContain('alice');
    expect(usernameKey('alice')).not.toBe(usernameKey('alicf'));
  });

  it('hash addresses to bounded keys', () => {
    expect(addressKey('192.0.2.1')).toMatch(/^login:address:[0-9a-f]{32}$/);
    expect(addressKey('192.0.2.1')).toBe(addressKey('::ffff:192.0.2.1'));
  });

  it.each([
    ['192.0.2.1', '192.0.2.1'],
    [' 192.0.2.1 ', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::ffff:c000:201', '192.0.2.1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::', '2001:db8:1:2::/64'],
    ['2001:DB8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['1::', '1:0:0:0::/64'],
    ['unknown', 'unknown'],
  ])('group of %s', (address, expected) => {
    expect(addressGroup(address)).toBe(expected);
  });
});
