/**
 * Ids of the computed objects that a client cache normalises. Apollo Client
 * stores an object under its `__typename` and `id`. An object without an id
 * stays inside its parent, so two queries that select different fields of
 * the same report overwrite each other there.
 */
import { createHash } from 'node:crypto';

import type { ReportGroupResult, ReportResult } from '../services/reports.js';

/** A report with the id under which clients cache it. */
export interface ReportNode extends Omit<ReportResult, 'groups'> {
  id: string;
  groups: ReportGroupNode[] | null;
}

/** A group of a grouped report, with the id under which clients cache it. */
export interface ReportGroupNode extends ReportGroupResult {
  id: string;
}

/**
 * Returns the id of the report that `viewerId` requested with `args`. The
 * same arguments give the same id, whatever the order of the fields in the
 * request, because GraphQL coerces input objects in schema field order. The
 * viewer is part of it, because a member's report covers other users than an analyst's.
 */
export function reportId(viewerId: string, args: unknown): string {
  const digest = createHash('sha256').update(viewerId.toLowerCase()).update('\n').update(JSON.stringify(args)).digest('base64url');
  return `report:${digest.slice(0, 27)}`;
}

/** Adds the report's id, and each group's id (the report's id and the group's user id), to a report result. */
export function withCacheIds(result: ReportResult, id: string): ReportNode {
  return {
    ...result,
    id,
    groups: result.groups === null ? null : result.groups.map((group) => ({ ...group, id: `${id}:${group.userId}` })),
  };
}

/** Returns the id of a user's auto-close preference for one pair type. */
export function preferenceId(userId: string, pairType: string): string {
  return `${userId.toLowerCase()}:${pairType}`;
}
