/**
 * Access to the external services that integration tests need.
 *
 * Tests read DATABASE_URL and REDIS_URL. When one is unset, the suites that
 * need it are skipped with a printed reason, except under CI=true, where a
 * missing variable fails the run so a CI job cannot pass without testing.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';

import { describe, inject } from 'vitest';

const isCi = process.env.CI === 'true';

function serviceUrl(variable: string, example: string): string | undefined {
  const value = process.env[variable]?.trim();
  if (value !== undefined && value !== '') {
    return value;
  }
  if (isCi) {
    throw new Error(`${variable} is not set, but CI=true requires it. Set it, for example ${variable}=${example}.`);
  }
  return undefined;
}

/** Returns DATABASE_URL, or undefined when it is unset (outside CI). */
export function postgresUrl(): string | undefined {
  return serviceUrl('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/test');
}

/** Returns REDIS_URL, or undefined when it is unset (outside CI). */
export function redisUrl(): string | undefined {
  return serviceUrl('REDIS_URL', 'redis://127.0.0.1:6379');
}

/**
 * Runs `describe` when `url` is set. Otherwise it registers the suite as
 * skipped and prints why. The URL is read at call time, so a file that needs
 * only Redis never fails for a missing DATABASE_URL under CI.
 */
function describeIfSet(
  variable: string,
  url: () => string | undefined,
): (name: string, body: () => void) => void {
  return (name, body) => {
    if (url() !== undefined) {
      describe(name, body);
      return;
    }
    console.warn(`Skipping "${name}": ${variable} is not set.`);
    describe.skip(name, body);
  };
}

/** `describe` when DATABASE_URL is set, `describe.skip` with a printed reason otherwise. */
export const describeWithPostgres = describeIfSet('DATABASE_URL', postgresUrl);

/** `describe` when REDIS_URL is set, `describe.skip` with a printed reason otherwise. */
export const describeWithRedis = describeIfSet('REDIS_URL', redisUrl);

/**
 * Returns a Redis key prefix unique to this test file and run, such as
 * `test:9f8e7d6c:store-contract:1a2b3c4d:`, so parallel files and runs never
 * share keys. The first id is the run's, under which the global setup
 * deletes the keys when the run ends.
 */
export function uniqueKeyPrefix(testFile: string): string {
  const name = path.basename(testFile).replace(/\.test\.[cm]?[jt]s$/, '');
  return `test:${inject('redisRunId')}:${name}:${randomBytes(4).toString('hex')}:`;
}
