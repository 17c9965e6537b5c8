/**
 * HTTP status of a GraphQL reply without data, from its errors: 503 for an
 * outage, unless a mutation did its work before, and GraphQL's 200 for the rest.
 */
import { describe, expect, it } from 'vitest';

import { statusOfFailure } from '../../src/graphql/plugins.js';

function error(reason: string, options: { path?: Array<string | number>; eventsStored?: boolean } = {}) {
  return {
    extensions: { code: 'SERVICE_UNAVAILABLE', reason, ...(options.eventsStored === true ? { eventsStored: true } : {}) },
    ...(options.path !== undefined ? { path: options.path } : {}),
  };
}

describe('statusOfFailure', () => {
  it.each([
    ['a Redis outage at a root field', [error('REDIS_UNAVAILABLE', { path: ['login'] })], 503],
    ['a database outage without a path', [error('DEPENDENCY_UNAVAILABLE')], 503],
    ['a stopping server', [error('STORE_CLOSED', { path: ['sendEvent'] })], 503],
    ['an outage after stored events', [error('DEPENDENCY_UNAVAILABLE', { path: ['sendEvent'], eventsStored: true })], null],
    ['an outage below a root field', [error('DEPENDENCY_UNAVAILABLE', { path: ['sendEvent', 'event', 'user'] })], null],
    ['a busy user', [error('USER_BUSY', { path: ['sendEvent'] })], null],
    ['a lock lost to another process', [error('LOCK_LOST', { path: ['sendEvents'] })], null],
    ['an outage beside a busy user', [error('REDIS_UNAVAILABLE', { path: ['a'] }), error('USER_BUSY', { path: ['b'] })], null],
  ])('%s', (_name, errors, status) => {
    expect(statusOfFailure(errors, true)).toBe(status);
  });

  it('gives 503 to a query whose outage lies below its root', () => {
    const errors = [error('DEPENDENCY_UNAVAILABLE', { path: ['events', 'nodes', 0, 'user'] })];

    expect(statusOfFailure(errors, false), 'query').toBe(503);
    expect(statusOfFailure(errors, true), 'mutation').toBeNull();
  });
});
