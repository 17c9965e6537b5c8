/**
 * Reports: set expressions over stored segments, evaluated in the domain
 * core after each distinct leaf was loaded once.
 */
import type { Viewer } from '../auth/viewer.js';
import { DomainError, badInput, limitExceeded, limitExceededAtLeast } from '../domain/errors.js';
import {
  bucketBoundariesInSlices,
  isValidTimeZone,
  leastBucketCount,
  totalsInBuckets,
  type BucketUnit,
} from '../domain/interval/buckets.js';
import { IntervalSet, type Interval } from '../domain/interval/interval-set.js';
import { unknownTimeZoneMessage } from '../domain/interval/time-zone-names.js';
import {
  bindUser,
  collectLeaves,
  evaluateInSlices,
  findLeafUser,
  toExpression,
  userIndependentNodes,
  validateWindow,
  type SharedValues,
} from '../domain/report/expression.js';
import { MAX_LEAF_LIST_ITEMS } from '../domain/report/leaf.js';
import type { Expr, ExpressionLimits, LeafSpec } from '../domain/report/types.js';
import { USER_ID_HINT, isUuid, sameUserId } from '../domain/user-id.js';
import {
  leafSets,
  readLeaf,
  readLeaves,
  type LeafRead,
  type LeafRows,
  type SnapshotLeafRows,
} from '../storage/postgres/leaf-store.js';
import { ConcurrencyLimit } from './concurrency.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { BeforeRead, Clock } from './index.js';
import { firstCharacters } from '../domain/storable.js';

export interface ReportInterval {
  start: Date;
  end: Date;
  seconds: number;
}

export interface ReportGroupResult {
  userId: string;
  count: number;
  totalSeconds: number;
  intervals: ReportInterval[];
  buckets: ReportInterval[] | null;
  truncated: boolean;
}

export interface ReportResult {
  window: { start: Date; end: Date };
  intervals: ReportInterval[];
  count: number;
  totalSeconds: number;
  truncated: boolean;
  buckets: ReportInterval[] | null;
  groups: ReportGroupResult[] | null;
}

export interface ReportRequest {
  expression: unknown;
  window: { start: Date; end: Date };
  groupBy: 'USER' | null;
  /** With groupBy USER, the users to group by; null for every user the viewer may read. */
  groupUsers?: readonly string[] | null;
  bucket: { unit: BucketUnit; timeZone: string } | null;
  canReadAll: boolean;
}

/**
 * State that the reports of one request share. They share REPORT_MAX_BUCKET_ROWS,
 * so aliases cannot multiply it, and one "now", so that open segments end at
 * the same instant in every report and complementary reports add up.
 */
export interface SharedReportState {
  /** Bucket rows already spent. */
  bucketRows: number;
  /** Epoch ms that open segments run to, fixed by the request's first report or open segment's `seconds`. */
  now?: number;
  /** The turns of the request's leaf loads, created by its first report. */
  loads?: ConcurrencyLimit;
  /** Walks of bucket boundaries started so far, by window, unit and time zone. */
  boundaries?: Map<string, Promise<readonly number[]>>;
}

export interface ReportLimits extends ExpressionLimits {
  maxWindowDays: number;
  maxIntervals: number;
  maxBucketRows: number;
  /** Leaf loads that the process runs at once, over all requests. */
  maxConcurrentLoads: number;
}

/**
 * Leaf loads that one request runs at once. A request with many leaves, or
 * many reports, then uses few connections, and the loads of other requests
 * take turns with it under the process-wide limit.
 */
const LOADS_PER_REQUEST = 2;

export class ReportService {
  private readonly loads: ConcurrencyLimit;

  /**
   * @param pauses Returns the pause of one report's evaluation. The default
   *   lets other work run once SLICE_MS have passed since the last pause;
   *   tests pass one that counts the pauses.
   */
  constructor(
    private readonly sql: SqlClient,
    private readonly clock: Clock,
    private readonly limits: ReportLimits,
    private readonly pauses: () => ReportPause = () => eventLoopSlices(SLICE_MS),
  ) {
    this.loads = new ConcurrencyLimit(limits.maxConcurrentLoads);
  }

  /**
   * Validates and evaluates one report. `beforeLoad` runs once the request
   * is valid and before the leaves load, with the users that the leaves read.
   */
  async run(
    viewer: Viewer,
    request: ReportRequest,
    requestState: SharedReportState = { bucketRows: 0 },
    beforeLoad: BeforeRead | null = null,
  ): Promise<ReportResult> {
    if (request.bucket !== null && !isValidTimeZone(request.bucket.timeZone)) {
      throw badInput(
        'INVALID_TIME_ZONE',
        unknownTimeZoneMessage(request.bucket.timeZone),
        { timeZone: firstCharacters(request.bucket.timeZone, 64) },
      );
    }
    // With buckets, the window's length counts calendar days in their zone.
    const window = validateWindow(
      request.window.start.getTime(),
      request.window.end.getTime(),
      this.limits.maxWindowDays,
      request.bucket?.timeZone ?? null,
    );
    const expr = toExpression(request.expression, window, this.limits);
    const leaves = collectLeaves(expr);

    // The collected leaves show whether an id is malformed. Only then is the
    // expression walked again, for the path of the first one.
    const anyMalformed = [...leaves.values()].some((spec) => spec.users?.some((userId) => !isUuid(userId)) === true);
    const malformed = anyMalformed ? findLeafUser(request.expression, (userId) => !isUuid(userId)) : null;
    if (malformed !== null) {
      throw badInput(
        'INVALID_USER_ID',
        `Invalid report expression: ${malformed.path} is ${JSON.stringify(firstCharacters(malformed.userId, 64))}, which is not a user id (a UUID). ${USER_ID_HINT}`,
        { userId: firstCharacters(malformed.userId, 64), path: malformed.path },
      );
    }
    this.checkGroupUsers(viewer, request);
    if (!request.canReadAll) {
      for (const spec of leaves.values()) {
        const other = spec.users?.find((id) => !sameUserId(id, viewer.userId));
        if (other !== undefined) {
          // Only a rejected report walks the expression again, for the path.
          const found = findLeafUser(request.expression, (userId) => !sameUserId(userId, viewer.userId));
          const where = found === null ? 'the expression' : found.path;
          throw new DomainError(
            'FORBIDDEN',
            'OTHER_USER',
            `Members may report only on their own segments; ${where} names user ${JSON.stringify(firstCharacters(other, 64))}.`,
            found === null ? {} : { path: found.path },
          );
        }
      }
    }

    // Leaves that name no users cover everyone the viewer may read.
    const visibleUsers: readonly string[] | null = request.canReadAll ? null : [viewer.userId];
    const loaded = new Map<string, { set: IntervalSet; perUser: Map<string, IntervalSet> | null }>();

    const grouped = request.groupBy === 'USER';
    const groupUsers = grouped ? await this.groupUsers(viewer, request.canReadAll, request.groupUsers ?? null) : [];

    // A costly report takes long to compute, so it lets other requests have
    // the event loop while it walks bucket boundaries, between the nodes of
    // its expression, and between groups.
    const pause = this.pauses();
    let boundaries: readonly number[] | null = null;
    if (request.bucket !== null) {
      // One row per bucket for the result and for each group: bound the
      // response size. A lower bound rejects most windows over the limit
      // before their boundaries are walked.
      // The reports of a request run at once, so each reserves its lower
      // bound before it walks, and the others count that reservation.
      const rowsPerBucket = 1 + groupUsers.length;
      const leastRows = leastBucketCount(window, request.bucket.unit) * rowsPerBucket;
      this.checkBucketRows(leastRows, requestState, true);
      requestState.bucketRows += leastRows;
      // The same bucket boundaries serve the whole result, every group, and
      // the other reports of the request with the same window and buckets,
      // which wait for one walk.
      const boundaryKey = `${window.start}/${window.end}/${request.bucket.unit}/${request.bucket.timeZone}`;
      requestState.boundaries ??= new Map();
      let walk = requestState.boundaries.get(boundaryKey);
      if (walk === undefined) {
        walk = bucketBoundariesInSlices(window, request.bucket.unit, request.bucket.timeZone, this.limits.maxBucketRows, pause);
        requestState.boundaries.set(boundaryKey, walk);
      }
      try {
        boundaries = await walk;
      } finally {
        // The walked count replaces the reservation, which a failed walk releases.
        requestState.bucketRows -= leastRows;
      }
      const bucketRows = (boundaries.length - 1) * rowsPerBucket;
      this.checkBucketRows(bucketRows, requestState);
      requestState.bucketRows += bucketRows;
    }

    await beforeLoad?.(collectLeafUsers(leaves.values(), visibleUsers));

    // Each load uses a pool connection, so the loads take turns within the
    // request and within the process, and the pool keeps connections free
    // for intake and other reads.
    const requestLoads = (requestState.loads ??= new ConcurrencyLimit(Math.min(LOADS_PER_REQUEST, this.loads.max)));
    const entries = [...leaves.entries()];
    const reads: LeafRead[] = entries.map(([, spec]) => ({
      spec,
      defaultUsers: visibleUsers,
      windowStart: window.start,
      windowEnd: window.end,
      withUserIds: grouped && spec.users === null,
    }));
    const readTogether = (): Promise<LeafRows[]> => requestLoads.run(() => this.loads.run(() => readLeaves(this.sql, reads)));
    let leafRows: LeafRows[] = [];
    if (reads.length === 1) {
      leafRows = await readTogether();
    } else if (reads.length > 1) {
      const parallel: SnapshotLeafRows[] = await Promise.all(
        reads.map((read) => requestLoads.run(() => this.loads.run(() => readLeaf(this.sql, read)))),
      );
      // Leaves loaded at once read their own snapshots. When a write committed
      // between two of them, set algebra across them could show time that never
      // existed, such as a task outside its session, so they load again one
      // after another in one transaction.
      const consistent = new Set(parallel.map((leaf) => leaf.snapshot)).size === 1;
      leafRows = consistent ? parallel : await readTogether();
    }

    // Now is taken once the leaves have read, so that every event they show
    // was received at or before it. Taken before the read, an end received
    // in between could close a task after now while its open session stops
    // at now. NOTE: when another report or a segment's `seconds` of the same
    // request fixed now first, this report keeps that now, and its leaves can
    // show events received after it. An end whose occurredAt lies in the
    // future, which CLOCK_SKEW_SECONDS allows, can also lie after now.
    // A report without leaves leaves now to the reports that read some.
    if (entries.length > 0) {
      requestState.now ??= this.clock.now();
      const openEnd = Math.min(requestState.now, window.end);
      entries.forEach(([key], index) => {
        const sets = leafSets(leafRows[index]!, openEnd);
        loaded.set(key, { set: sets.set, perUser: sets.perUser });
      });
    }

    // Nodes that do not depend on a group's user are computed once, here, and
    // reused by every group, whose bound expression shares them.
    const shared: SharedValues | undefined = grouped ? { nodes: userIndependentNodes(expr), values: new Map() } : undefined;
    const whole = await evaluateInSlices(expr, window, (key) => requireLeaf(loaded, key).set, pause, shared);
    const result: ReportResult = {
      window: { start: new Date(window.start), end: new Date(window.end) },
      ...this.summarise(whole, window, boundaries),
      groups: null,
    };

    if (grouped) {
      // The groups share one budget of REPORT_MAX_INTERVALS returned intervals,
      // so the response stays bounded however many users there are.
      let budget = this.limits.maxIntervals;
      const groups: NonNullable<ReportResult['groups']> = [];
      for (const userId of groupUsers) {
        const bound = bindExpression(expr, userId);
        const set = await evaluateInSlices(
          bound,
          window,
          (key) => {
            const direct = loaded.get(key);
            if (direct !== undefined) {
              return direct.set;
            }
            // A leaf bound to this user: its rows were loaded unbound and split by user.
            const [unboundKey, user] = splitBoundKey(key);
            return requireLeaf(loaded, unboundKey).perUser?.get(user) ?? IntervalSet.empty();
          },
          pause,
          shared,
        );
        const summary = this.summarise(set, window, boundaries, budget);
        budget -= summary.intervals.length;
        groups.push({ userId, ...summary });
        const waiting = pause();
        if (waiting !== undefined) {
          await waiting;
        }
      }
      result.groups = groups;
    }
    return result;
  }

  /**
   * Rejects a report with `rows` bucket rows when they are above
   * REPORT_MAX_BUCKET_ROWS alone or together with the earlier reports of the
   * request. `isLowerBound` marks `rows` as an estimate that the report may
   * exceed, and the message then reads "at least".
   */
  private checkBucketRows(rows: number, requestState: SharedReportState, isLowerBound = false): void {
    const max = this.limits.maxBucketRows;
    if (rows > max) {
      if (isLowerBound) {
        throw limitExceededAtLeast('REPORT_MAX_BUCKET_ROWS', rows, max);
      }
      throw limitExceeded('REPORT_MAX_BUCKET_ROWS', rows, max);
    }
    const qualifier = isLowerBound ? 'at least ' : '';
    const requestRows = requestState.bucketRows + rows;
    if (requestRows > max) {
      throw badInput(
        'LIMIT_EXCEEDED',
        `The reports of this request have ${qualifier}${requestRows} bucket rows in all, above the maximum of ${max} (REPORT_MAX_BUCKET_ROWS). Ask for fewer or longer buckets, or send the reports in separate requests.`,
        { limit: 'REPORT_MAX_BUCKET_ROWS', value: requestRows, max },
      );
    }
  }

  /** Rejects `groupUsers` without `groupBy: USER`, with ids that are not UUIDs or too many of them, or naming another user for a member. */
  private checkGroupUsers(viewer: Viewer, request: ReportRequest): void {
    const chosen = request.groupUsers ?? null;
    if (chosen === null) {
      return;
    }
    if (request.groupBy !== 'USER') {
      throw badInput('INVALID_GROUP_USERS', 'groupUsers chooses the groups of groupBy: USER; send it together with groupBy: USER.');
    }
    if (chosen.length > MAX_LEAF_LIST_ITEMS) {
      throw badInput('LIMIT_EXCEEDED', `groupUsers has ${chosen.length} entries, above the maximum of ${MAX_LEAF_LIST_ITEMS}.`, {
        field: 'groupUsers',
        value: chosen.length,
        max: MAX_LEAF_LIST_ITEMS,
      });
    }
    const malformed = chosen.find((id) => !isUuid(id));
    if (malformed !== undefined) {
      throw badInput('INVALID_USER_ID', `groupUsers names ${JSON.stringify(firstCharacters(malformed, 64))}, which is not a user id (a UUID). ${USER_ID_HINT}`, {
        userId: firstCharacters(malformed, 64),
      });
    }
    const other = request.canReadAll ? undefined : chosen.find((id) => !sameUserId(id, viewer.userId));
    if (other !== undefined) {
      throw new DomainError(
        'FORBIDDEN',
        'OTHER_USER',
        `Members may report only on their own segments; groupUsers names user ${JSON.stringify(firstCharacters(other, 64))}.`,
      );
    }
  }

  private summarise(
    set: IntervalSet,
    window: Interval,
    boundaries: readonly number[] | null,
    maxReturned = this.limits.maxIntervals,
  ) {
    const returned = set.count > maxReturned ? set.slice(0, maxReturned) : set;
    const intervals: ReportInterval[] = [];
    for (const [start, end] of returned) {
      intervals.push({ start: new Date(start), end: new Date(end), seconds: (end - start) / 1000 });
    }
    return {
      intervals,
      count: set.count,
      totalSeconds: set.totalMs / 1000,
      truncated: set.count > maxReturned,
      buckets:
        boundaries === null
          ? null
          : totalsInBuckets(set, window, boundaries).map((b) => ({
              start: new Date(b.start),
              end: new Date(b.end),
              seconds: b.ms / 1000,
            })),
    };
  }

  /**
   * Returns the users that get a group, in username order: those of `chosen`
   * that exist, or every user the viewer may read. A member only ever gets
   * its own group, and the caller has checked that `chosen` names no one else.
   */
  private async groupUsers(viewer: Viewer, canReadAll: boolean, chosen: readonly string[] | null): Promise<string[]> {
    if (!canReadAll) {
      return chosen === null || chosen.some((id) => sameUserId(id, viewer.userId)) ? [viewer.userId] : [];
    }
    const rows =
      chosen === null
        ? await this.sql.query<{ id: string }>(`SELECT id FROM users ORDER BY lower(username) COLLATE "C"`)
        : await this.sql.query<{ id: string }>(`SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY lower(username) COLLATE "C"`, [
            chosen.map((id) => id.toLowerCase()),
          ]);
    return rows.map((row) => row.id);
  }
}

/**
 * Returns the users whose segments the leaves read: the users they name, in
 * lower case, or `visibleUsers` as soon as one leaf names none.
 */
function collectLeafUsers(leaves: Iterable<LeafSpec>, visibleUsers: readonly string[] | null): string[] | null {
  const users = new Set<string>();
  for (const spec of leaves) {
    if (spec.users === null) {
      return visibleUsers === null ? null : [...visibleUsers];
    }
    for (const userId of spec.users) {
      users.add(userId.toLowerCase());
    }
  }
  return [...users];
}

function requireLeaf<T>(loaded: Map<string, T>, key: string): T {
  const value = loaded.get(key);
  if (value === undefined) {
    throw new Error(`Leaf ${key} was not loaded.`);
  }
  return value;
}

const BOUND_SEPARATOR = '\u0000bound-to\u0000';
/** Time, in ms, after which a report's evaluation lets other work run at its next node or group. */
const SLICE_MS = 20;

/** A pause of a report's evaluation: a promise to wait for before the next step, or nothing to go on at once. */
export type ReportPause = () => Promise<void> | undefined;

/**
 * Returns a pause for `evaluateInSlices`: once more than `maxMs` have passed
 * since the last pause, it returns a promise that resolves after the event
 * loop's pending work (setImmediate), and otherwise nothing.
 */
export function eventLoopSlices(maxMs: number): ReportPause {
  let sliceStarted = performance.now();
  return () => {
    if (performance.now() - sliceStarted <= maxMs) {
      return undefined;
    }
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      sliceStarted = performance.now();
    });
  };
}

/**
 * Returns `expr` with each leaf that names no users bound to `userId`. A
 * subtree without such leaves is returned as the same object, so that the
 * groups' expressions share it and its value is computed once.
 */
function bindExpression(expr: Expr, userId: string): Expr {
  switch (expr.kind) {
    case 'segments': {
      if (expr.spec.users !== null) {
        return expr;
      }
      const spec: LeafSpec = bindUser(expr.spec, userId);
      return { kind: 'segments', spec, key: `${expr.key}${BOUND_SEPARATOR}${userId}` };
    }
    case 'intervals':
      return expr;
    case 'union':
    case 'intersect': {
      const operands = expr.operands.map((operand) => bindExpression(operand, userId));
      return operands.every((operand, index) => operand === expr.operands[index]) ? expr : { kind: expr.kind, operands };
    }
    case 'difference': {
      const from = bindExpression(expr.from, userId);
      const subtract = bindExpression(expr.subtract, userId);
      return from === expr.from && subtract === expr.subtract ? expr : { kind: 'difference', from, subtract };
    }
    case 'complement': {
      const operand = bindExpression(expr.operand, userId);
      return operand === expr.operand ? expr : { kind: 'complement', operand };
    }
  }
}

function splitBoundKey(key: string): [string, string] {
  const at = key.lastIndexOf(BOUND_SEPARATOR);
  return [key.slice(0, at), key.slice(at + BOUND_SEPARATOR.length)];
}

