/**
 * The authenticated user behind a request, and the access rules on it.
 *
 * MEMBER sends events and reads its own data. ANALYST also reads every user's
 * data. ADMIN also manages users and pair types and may send events on behalf
 * of any user.
 */
import { DomainError } from '../domain/errors.js';
import { sameUserId } from '../domain/user-id.js';

export const ROLES = ['MEMBER', 'ANALYST', 'ADMIN'] as const;

export type Role = (typeof ROLES)[number];

/** The user a request acts as, with the role read from the database. */
export interface Viewer {
  userId: string;
  role: Role;
  /** When the viewer logged in with a password (the token's `auth_time`), in seconds since the epoch; unset outside requests. */
  authTime?: number;
  /** The account's token version that the request's token carries; unset outside requests. */
  tokenVersion?: number;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/**
 * Throws FORBIDDEN unless the viewer has one of `roles`.
 *
 * @throws DomainError FORBIDDEN with reason `ROLE_REQUIRED`.
 */
export function requireRole(viewer: Viewer, ...roles: Role[]): void {
  if (roles.includes(viewer.role)) {
    return;
  }
  throw new DomainError(
    'FORBIDDEN',
    'ROLE_REQUIRED',
    `This operation requires the role ${roles.join(' or ')}, but the current user has the role ${viewer.role}.`,
    { requiredRoles: roles, role: viewer.role },
  );
}

/** Tells whether the viewer may read every user's events, segments and reports. */
export function canReadAll(viewer: Viewer): boolean {
  return viewer.role === 'ANALYST' || viewer.role === 'ADMIN';
}

/** Tells whether the viewer may send events for `userId` (its own, or any as ADMIN). */
export function canActFor(viewer: Viewer, userId: string): boolean {
  return sameUserId(viewer.userId, userId) || viewer.role === 'ADMIN';
}

/**
 * Throws FORBIDDEN unless the viewer may send events for `userId`. Users act
 * for themselves, and only ADMIN acts for others.
 *
 * @throws DomainError FORBIDDEN with reason `OTHER_USER`.
 */
export function assertCanActFor(viewer: Viewer, userId: string): void {
  if (canActFor(viewer, userId)) {
    return;
  }
  throw new DomainError(
    'FORBIDDEN',
    'OTHER_USER',
    `Only an ADMIN may act for another user, and the current user has the role ${viewer.role}.`,
    { userId, role: viewer.role },
  );
}

/**
 * Throws FORBIDDEN unless the viewer may read data of `userId`. A MEMBER reads
 * only its own data, and ANALYST and ADMIN read anyone's.
 *
 * @throws DomainError FORBIDDEN with reason `OTHER_USER`.
 */
export function assertCanReadFor(viewer: Viewer, userId: string): void {
  if (sameUserId(viewer.userId, userId) || canReadAll(viewer)) {
    return;
  }
  throw new DomainError(
    'FORBIDDEN',
    'OTHER_USER',
    `A MEMBER may read only its own data, not that of user ${userId}.`,
    { userId, role: viewer.role },
  );
}
