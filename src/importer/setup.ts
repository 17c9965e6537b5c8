/**
 * Preparation of the server before events are sent: the pair types the input
 * defines and the users it names.
 */

import { randomBytes } from 'node:crypto';

import type { GraphQLClient, PairTypeSummary, UserSummary } from './graphql-client.js';
import { GraphQLRequestError } from './graphql-client.js';
import type { EventRecord, PairTypeRecord } from './read-input.js';
import type { ImportSummary, IssueReporter } from './summary.js';
import type { AutoClosePolicyInput, DefinePairTypeInput } from './types.js';

/** A condition that stops the import before or while it sends events. */
export class ImportStopError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImportStopError';
  }
}

/**
 * Runs a client call with retries and, after a login, a second login when the
 * token expires. `label` names the work in retry messages.
 */
export type CallServer = <T>(call: () => Promise<T>, label?: string) => Promise<T>;

export interface SetupContext {
  client: GraphQLClient;
  call: CallServer;
  viewer: UserSummary;
  summary: ImportSummary;
  report: (message: string) => void;
  issues: IssueReporter;
  /** Stops the setup before its next request once it is aborted, by throwing its reason. */
  signal?: AbortSignal;
}

function where(record: PairTypeRecord): string {
  return `${record.source.file}:${record.source.line}`;
}

function sameEnds(a: DefinePairTypeInput | PairTypeSummary, b: DefinePairTypeInput): boolean {
  return a.startType === b.startType && a.endType === b.endType;
}

function sameDefinition(a: DefinePairTypeInput, b: DefinePairTypeInput): boolean {
  const policyA = a.autoClose ?? null;
  const policyB = b.autoClose ?? null;
  const samePolicy =
    policyA === null || policyB === null
      ? policyA === policyB
      : policyA.timeoutSeconds === policyB.timeoutSeconds && policyA.endAt === policyB.endAt;
  return sameEnds(a, b) && (a.parent ?? null) === (b.parent ?? null) && samePolicy;
}

function describeEnds(pairType: DefinePairTypeInput | PairTypeSummary): string {
  return `start "${pairType.startType}" and end "${pairType.endType}"`;
}

function describePolicy(policy: AutoClosePolicyInput): string {
  return `auto-close after ${policy.timeoutSeconds} s at ${policy.endAt}`;
}

/**
 * Describes how the parent or auto-close policy of a line differs from the
 * server's pair type with the same ends, or returns null when they agree. A
 * line without `autoClose` accepts any policy, and a line without `parent`
 * requests a top-level pair type, as `definePairType` would create it.
 */
function describeOtherSettings(current: PairTypeSummary, requested: DefinePairTypeInput): string | null {
  const differences: string[] = [];
  const requestedParent = requested.parent ?? null;
  if (current.parent !== requestedParent) {
    const describeParent = (parent: string | null) =>
      parent === null ? 'no parent' : `parent "${parent}"`;
    differences.push(
      `${describeParent(current.parent)} on the server, but ${describeParent(requestedParent)} here`,
    );
  }
  const policy = requested.autoClose;
  if (
    policy !== undefined &&
    policy !== null &&
    (policy.timeoutSeconds !== current.autoClose.timeoutSeconds ||
      policy.endAt !== current.autoClose.endAt)
  ) {
    differences.push(
      `${describePolicy(current.autoClose)} on the server, but ${describePolicy(policy)} here`,
    );
  }
  return differences.length === 0 ? null : differences.join(', and ');
}

function recordConflict(context: SetupContext, record: PairTypeRecord, message: string): void {
  const { summary } = context;
  if (!summary.pairTypeConflicts.includes(record.input.name)) {
    summary.pairTypeConflicts.push(record.input.name);
  }
  context.issues.add({
    kind: 'pairTypeConflict',
    file: record.source.file,
    line: record.source.line,
    message,
  });
}

function recordRejectedPairType(
  context: SetupContext,
  record: PairTypeRecord,
  detail: string,
): void {
  const { summary } = context;
  const message = `pair type "${record.input.name}" rejected by the server: ${detail}`;
  summary.pairTypesRejected.push(record.input.name);
  context.issues.add({
    kind: 'rejectedPairType',
    file: record.source.file,
    line: record.source.line,
    message,
  });
}

/**
 * Defines the pair types the server lacks, parents before their children. A
 * pair type that exists with the same definition is accepted as it is. One
 * that exists with other start or end types, another parent or another
 * auto-close policy, or that the input defines twice differently, is
 * reported as a conflict and left unchanged.
 */
export async function ensurePairTypes(
  context: SetupContext,
  records: readonly PairTypeRecord[],
): Promise<void> {
  if (records.length === 0) {
    return;
  }

  const wanted = new Map<string, PairTypeRecord>();
  for (const record of records) {
    const first = wanted.get(record.input.name);
    if (first === undefined) {
      wanted.set(record.input.name, record);
    } else if (!sameDefinition(first.input, record.input)) {
      recordConflict(
        context,
        record,
        `pair type "${record.input.name}" is defined again differently from ${where(first)}; ` +
          'the first definition is used',
      );
    }
  }

  const serverPairTypes = await context.call(() => context.client.pairTypes());
  const existing = new Map(serverPairTypes.map((pairType) => [pairType.name, pairType]));

  const missing: PairTypeRecord[] = [];
  for (const record of wanted.values()) {
    const current = existing.get(record.input.name);
    if (current === undefined) {
      missing.push(record);
    } else if (sameEnds(current, record.input)) {
      const otherSettings = describeOtherSettings(current, record.input);
      if (otherSettings === null) {
        context.summary.pairTypesExisting.push(record.input.name);
      } else {
        recordConflict(
          context,
          record,
          `pair type "${record.input.name}" differs from the server's: ${otherSettings}; ` +
            "the server's definition is kept, so segments follow it",
        );
      }
    } else {
      recordConflict(
        context,
        record,
        `pair type "${record.input.name}" exists on the server with ${describeEnds(current)}, ` +
          `but this line defines ${describeEnds(record.input)}; the server's definition is kept`,
      );
    }
  }

  if (missing.length > 0 && context.viewer.role !== 'ADMIN') {
    const first = missing[0] as PairTypeRecord;
    const { username, role } = context.viewer;
    throw new ImportStopError(
      `${where(first)} defines pair type "${first.input.name}", which the server lacks, ` +
        `and defining pair types needs the ADMIN role, but ${username} has role ${role}`,
    );
  }

  for (const record of parentsFirst(missing)) {
    context.signal?.throwIfAborted();
    await definePairType(context, record);
  }
}

async function definePairType(context: SetupContext, record: PairTypeRecord): Promise<void> {
  try {
    await context.call(() => context.client.definePairType(record.input));
  } catch (error) {
    if (error instanceof GraphQLRequestError && error.code === 'BAD_USER_INPUT') {
      const detail = error.errors[0]?.message ?? error.message;
      recordRejectedPairType(context, record, detail);
      return;
    }
    throw error;
  }
  context.summary.pairTypesDefined.push(record.input.name);
  context.report(`defined pair type "${record.input.name}" (${describeEnds(record.input)})`);
}

/** Orders records so that a parent defined in the same input comes before its children. */
export function parentsFirst(records: readonly PairTypeRecord[]): PairTypeRecord[] {
  const byName = new Map(records.map((record) => [record.input.name, record]));
  const ordered: PairTypeRecord[] = [];
  const visited = new Set<string>();

  const visit = (record: PairTypeRecord): void => {
    if (visited.has(record.input.name)) {
      return;
    }
    // Marking before the parent is visited ends a parent cycle, which the
    // server rejects anyway.
    visited.add(record.input.name);
    const parent = record.input.parent;
    const parentRecord = typeof parent === 'string' ? byName.get(parent) : undefined;
    if (parentRecord !== undefined) {
      visit(parentRecord);
    }
    ordered.push(record);
  };

  for (const record of records) {
    visit(record);
  }
  return ordered;
}

/** Maximum number of characters of a userId that a message quotes. */
const MAX_QUOTED_USER_ID = 64;

/**
 * Stops the import before anything is sent when a user other than an admin
 * gives an event with the `userId` of another user. The server would reject
 * every batch of that user with FORBIDDEN and stop the import part-way, with
 * no line number.
 */
export function checkOtherUserIds(context: SetupContext, records: readonly EventRecord[]): void {
  const { viewer } = context;
  if (viewer.role === 'ADMIN') {
    return;
  }
  const other = records.find(
    (record) =>
      record.username === null &&
      typeof record.event.input.userId === 'string' &&
      record.event.input.userId.toLowerCase() !== viewer.id.toLowerCase(),
  );
  if (other !== undefined) {
    const { file, line } = other.event.source;
    // A line may hold megabytes, so only the start of the id is quoted, as the server does.
    const userId = String(other.event.input.userId);
    const quoted = userId.length > MAX_QUOTED_USER_ID ? `${userId.slice(0, MAX_QUOTED_USER_ID)}...` : userId;
    throw new ImportStopError(
      `${file}:${line} gives userId ${JSON.stringify(quoted)}, another user's id, and sending events ` +
        `for other users needs the ADMIN role, but ${viewer.username} has role ${viewer.role}`,
    );
  }
}

/** Returns a random password of 32 base64url characters (192 bits). */
export function randomPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** Result of resolving the user names of the input. */
export interface ResolvedUsers {
  /** User id by user name. */
  ids: Map<string, string>;
  /** User names that could not be created, with the server's message. */
  failed: Map<string, string>;
}

/**
 * Resolves user names to ids without regard to case, as logins match them,
 * creating each missing user with role MEMBER and a random password that is
 * neither printed nor stored.
 */
export async function ensureUsers(
  context: SetupContext,
  usernames: readonly string[],
): Promise<ResolvedUsers> {
  const resolved: ResolvedUsers = { ids: new Map(), failed: new Map() };
  const { viewer } = context;

  // A line may name the user the import logs in as, such as converter
  // output for one's own account, which needs no ADMIN role.
  const others: string[] = [];
  for (const username of usernames) {
    if (username.toLowerCase() === viewer.username.toLowerCase()) {
      resolved.ids.set(username, viewer.id);
    } else {
      others.push(username);
    }
  }
  if (others.length === 0) {
    return resolved;
  }

  if (viewer.role !== 'ADMIN') {
    throw new ImportStopError(
      `the input names other users (for example "${others[0]}"), and sending events for other users ` +
        `needs the ADMIN role, but ${viewer.username} has role ${viewer.role}`,
    );
  }

  // Keyed by lower-case name, because the server treats usernames that
  // differ only in case as one account and rejects creating the second.
  const existing = new Map(
    (await context.call(() => context.client.users())).map((user) => [
      user.username.toLowerCase(),
      user.id,
    ]),
  );

  for (const username of others) {
    context.signal?.throwIfAborted();
    const id = existing.get(username.toLowerCase());
    if (id !== undefined) {
      resolved.ids.set(username, id);
      continue;
    }

    try {
      const created = await context.call(() =>
        context.client.createUser(username, randomPassword(), 'MEMBER'),
      );
      resolved.ids.set(username, created.id);
      existing.set(username.toLowerCase(), created.id);
      context.summary.usersCreated.push(username);
      context.report(
        `created user "${username}" with role MEMBER and a random password that was not saved`,
      );
    } catch (error) {
      if (!(error instanceof GraphQLRequestError) || error.code !== 'BAD_USER_INPUT') {
        throw error;
      }
      // Another client, such as a second import of the same users, created
      // the account after the list above was read. Its events go to that
      // account, as they would had it existed before.
      const takenId = error.reason === 'USERNAME_TAKEN' ? await findUserId(context, username) : undefined;
      if (takenId !== undefined) {
        resolved.ids.set(username, takenId);
        existing.set(username.toLowerCase(), takenId);
        context.report(`user "${username}" was created by another client meanwhile; sending its events there`);
        continue;
      }
      const message = error.errors[0]?.message ?? error.message;
      resolved.failed.set(username, message);
    }
  }

  return resolved;
}

/** Reads the user list again and returns the id of `username`, matched without regard to case. */
async function findUserId(context: SetupContext, username: string): Promise<string | undefined> {
  const users = await context.call(() => context.client.users());
  return users.find((user) => user.username.toLowerCase() === username.toLowerCase())?.id;
}
