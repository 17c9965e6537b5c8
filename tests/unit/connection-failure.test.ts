import { describe, expect, it } from 'vitest';

import { loadConfig } from '../../src/config/index.js';
import { describeConnectionFailure } from '../../src/storage/connection-failure.js';
import { RedisUnavailableError } from '../../src/storage/redis/connection.js';

const config = loadConfig({
  DATABASE_URL: 'postgres://app:PgS3cret@127.0.0.1:5999/events',
  REDIS_URL: 'redis://:RdS3cret@127.0.0.1:5998',
});
const embedded = loadConfig({ DATA_DIR: '/tmp/em-data' });

function errorWithCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Returns an error as `pg` reports a FATAL one, which ends the session. */
function fatal(message: string, code: string): Error {
  return Object.assign(errorWithCode(message, code), { severity: 'FATAL' });
}

describe('describeConnectionFailure', () => {
  it.each([
    ['refused', errorWithCode('connect ECONNREFUSED 127.0.0.1:5999', 'ECONNREFUSED'), 'is running'],
    ['unknown host', errorWithCode('getaddrinfo ENOTFOUND db.example', 'ENOTFOUND'), 'is running'],
    ['pool timeout', new Error('timeout exceeded when trying to connect'), 'is running'],
    ['missing database', errorWithCode('database "events" does not exist', '3D000'), 'createdb'],
    ['wrong password', errorWithCode('password authentication failed for user "app"', '28P01'), 'password'],
    ['unknown role', errorWithCode('role "app" does not exist', '28000'), 'create that role'],
    ['a stalled connection', new Error('Query read timeout'), 'stopped replying'],
    ['a server without SSL', new Error('The server does not support SSL connections'), 'sslmode=disable'],
    ['an untrusted certificate', errorWithCode('self-signed certificate', 'DEPTH_ZERO_SELF_SIGNED_CERT'), 'sslrootcert'],
    ['too many clients', fatal('sorry, too many clients already', '53300'), 'DB_POOL_SIZE'],
    ['a server starting up', fatal('the database system is starting up', '57P03'), 'has started'],
    ['a bad startup parameter', fatal('invalid value for parameter "statement_timeout": "abc"', '22023'), 'options'],
  ])('names DATABASE_URL for %s', (_name, error, advice) => {
    const message = describeConnectionFailure(error, config);
    expect(message).toContain(
      `connecting to PostgreSQL at postgres://app:***@127.0.0.1:5999/events (DATABASE_URL) failed: ${error.message}. `,
    );
    expect(message).toContain(advice);
    expect(message).not.toContain('PgS3cret');
  });

  it('names REDIS_URL for Redis', () => {
    const error = new RedisUnavailableError('not connected within 2000 ms, status reconnecting');
    const message = describeConnectionFailure(error, config);
    expect(message).toMatch(
      /^connecting to Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:5998\/? \(REDIS_URL\) failed: not connected within 2000 ms, status reconnecting\. Check /,
    );
    expect(message).not.toContain('RdS3cret');
  });

  it('finds a failure in the cause chain', () => {
    const cause = errorWithCode('connect ECONNREFUSED 127.0.0.1:5999', 'ECONNREFUSED');
    const error = new Error('the migration failed', { cause });
    expect(describeConnectionFailure(error, config)).toContain('failed: connect ECONNREFUSED 127.0.0.1:5999.');
  });

  it('uses the code of an empty message', () => {
    const error = Object.assign(new AggregateError([], ''), { code: 'ECONNREFUSED' });
    expect(describeConnectionFailure(error, config)).toContain('(DATABASE_URL) failed: ECONNREFUSED.');
  });

  it.each([
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'id')"), config],
    ['a query error', errorWithCode('relation "events" does not exist', '42P01'), config],
    ['a code on embedded PGlite', errorWithCode('connect ECONNREFUSED 127.0.0.1:5999', 'ECONNREFUSED'), embedded],
    ['Redis without REDIS_URL', new RedisUnavailableError('the store is closed'), embedded],
    ['a string', 'ECONNREFUSED', config],
  ])('returns null for %s', (_name, error, settings) => {
    expect(describeConnectionFailure(error, settings)).toBeNull();
  });
});
