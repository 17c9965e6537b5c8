import { describe, expect, it } from 'vitest';

import { toDomainError } from '../../src/graphql/errors.js';

describe('toDomainError for connection failures', () => {
  it.each([
    'Connection terminated unexpectedly',
    'Client has encountered a connection error and is not queryable',
    'Client was closed and is not queryable',
    'Command timed out',
  ])('%s', (message) => {
    const error = toDomainError(new Error(message));

    expect(error?.kind).toBe('SERVICE_UNAVAILABLE');
    expect(error?.reason).toBe('DEPENDENCY_UNAVAILABLE');
  });

  it('leaves other errors alone', () => {
    expect(toDomainError(new Error('Cannot read properties of undefined'))).toBeNull();
  });
});
