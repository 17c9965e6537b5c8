import { describe, expect, it } from 'vitest';

import {
  ROLES,
  assertCanActFor,
  assertCanReadFor,
  canReadAll,
  isRole,
  requireRole,
  type Role,
  type Viewer,
} from '../../src/auth/viewer.js';
import { DomainError } from '../../src/domain/errors.js';

function viewer(role: Role, userId = 'me'): Viewer {
  return { userId, role };
}

function forbidden(action: () => void): DomainError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('FORBIDDEN');
    return error as DomainError;
  }
  throw new Error('Expected FORBIDDEN, but the call passed.');
}

describe('requireRole', () => {
  it.each([
    ['MEMBER', ['MEMBER'], true],
    ['MEMBER', ['ANALYST', 'ADMIN'], false],
    ['ANALYST', ['ANALYST', 'ADMIN'], true],
    ['ANALYST', ['ADMIN'], false],
    ['ADMIN', ['ADMIN'], true],
  ] as [Role, Role[], boolean][])('%s for %j allowed=%s', (role, required, allowed) => {
    if (allowed) {
      expect(() => requireRole(viewer(role), ...required)).not.toThrow();
      return;
    }
    const error = forbidden(() => requireRole(viewer(role), ...required));
    expect(error.reason).toBe('ROLE_REQUIRED');
    expect(error.details).toEqual({ requiredRoles: required, role });
  });
});

describe('canReadAll', () => {
  it.each([
    ['MEMBER', false],
    ['ANALYST', true],
    ['ADMIN', true],
  ] as [Role, boolean][])('%s -> %s', (role, expected) => {
    expect(canReadAll(viewer(role))).toBe(expected);
  });
});

describe('assertCanActFor', () => {
  it.each(ROLES)('%s acts for itself', (role) => {
    expect(() => assertCanActFor(viewer(role, 'me'), 'me')).not.toThrow();
  });

  it.each(['MEMBER', 'ANALYST'] as Role[])('%s cannot act for others', (role) => {
    const error = forbidden(() => assertCanActFor(viewer(role, 'me'), 'someone-else'));

    expect(error.reason).toBe('OTHER_USER');
    expect(error.details).toEqual({ userId: 'someone-else', role });
  });

  it('ADMIN acts for others', () => {
    expect(() => assertCanActFor(viewer('ADMIN', 'me'), 'someone-else')).not.toThrow();
  });
});

describe('assertCanReadFor', () => {
  it('MEMBER reads own data', () => {
    expect(() => assertCanReadFor(viewer('MEMBER', 'me'), 'me')).not.toThrow();
  });

  it('MEMBER cannot read others', () => {
    const error = forbidden(() => assertCanReadFor(viewer('MEMBER', 'me'), 'someone-else'));

    expect(error.reason).toBe('OTHER_USER');
  });

  it.each(['ANALYST', 'ADMIN'] as Role[])('%s reads others', (role) => {
    expect(() => assertCanReadFor(viewer(role, 'me'), 'someone-else')).not.toThrow();
  });
});

describe('isRole', () => {
  it.each([
    ['MEMBER', true],
    ['ADMIN', true],
    ['admin', false],
    ['ROOT', false],
    [42, false],
    [undefined, false],
  ])('%s -> %s', (value, expected) => {
    expect(isRole(value)).toBe(expected);
  });
});
