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
 * request: GraphQL coerces input objects in schema field order, and the keys
 * of JSON values such as a `meta` condition are sorted here. The viewer is
 * part of it, because a member's report covers other users than an analyst's.
 */
export function reportId(viewerId: string, args: unknown): string {
  const canonical = JSON.stringify(args, withSortedKeys);
  const digest = createHash('sha256').update(viewerId.toLowerCase()).update('\n').update(canonical).digest('base64url');
  return `report:${digest.slice(0, 27)}`;
}

/** JSON.stringify replacer that writes the keys of every object in sorted order. JSON.stringify calls toJSON before it, so dates arrive as strings. */
function withSortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return value;
  }
  const sorted: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    Object.defineProperty(sorted, key, { value: (value as Record<string, unknown>)[key], enumerable: true, writable: true, configurable: true });
  }
  return sorted;
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
