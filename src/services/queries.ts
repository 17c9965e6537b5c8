/**
 * Paged listings of events and segments (Relay-style connections with
 * keyset cursors), with the access rule that members read only their own.
 */
import type { Viewer } from '../auth/viewer.js';
import { canReadAll } from '../auth/viewer.js';
import { DomainError, badInput, limitExceeded } from '../domain/errors.js';
import { characterCount, exceedsCharacters, firstCharacters, isStorableInstant, textProblem } from '../domain/storable.js';
import {
  EVENT_COLUMNS,
  SEGMENT_COLUMNS,
  toEventRecord,
  toSegmentRecord,
  type EventRecord,
  type SegmentRecord,
  withoutMeta,
} from '../storage/postgres/records.js';
import type { SqlClient } from '../storage/postgres/sql.js';
import type { BeforeRead } from './index.js';
import { USER_ID_HINT, isUuid, sameUserId } from '../domain/user-id.js';
import { MAX_LEAF_ITEM_LENGTH, MAX_LEAF_LIST_ITEMS } from '../domain/report/leaf.js';
import { checkWindowOrder } from '../domain/report/window.js';

/** Maximum number of users in one filter, as in a report leaf. */
const MAX_FILTER_USERS = MAX_LEAF_LIST_ITEMS;

export interface Connection<T> {
  edges: Array<{ cursor: string; node: T }>;
  nodes: T[];
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

export interface WindowArg {
  start: Date;
  end: Date;
}

export interface PageArgs<F> {
  filter: F | null;
  window: WindowArg | null;
  first: number | null;
  after: string | null;
  /** Page from the end: the `last` items before `before`, or the last items of all. */
  last?: number | null;
  before?: string | null;
}

/**
 * The bytes that the reads of one request may still take. Reads with `meta`
 * take them, because their rows can be large.
 */
export interface ReadBudget {
  /** Bytes that each row counts besides its `meta`. */
  readonly objectBytes: number;
  /**
   * Runs `read` with the bytes that remain, once the request's earlier reads
   * have finished, and charges the bytes that it returns with its value.
   * Throws LIMIT_EXCEEDED without running `read` once the budget is
   * exceeded, and after a read whose bytes exceed what remained.
   */
  read<T>(read: (remainingBytes: number) => Promise<{ value: T; bytes: number }>): Promise<T>;
}

/**
 * The bytes of a `meta` value as compact JSON, estimated in SQL as the text
 * that PostgreSQL writes for the jsonb value, without the space that it puts
 * after each `:` and `,`. The estimate is at most the value's size as
 * compact JSON, because it also drops such spaces inside strings.
 * NOTE: a number that JSON writes with an exponent, below 1e-6 or from 1e21
 * in magnitude, counts as PostgreSQL writes it, in full decimal, so the
 * estimate exceeds the JSON size for such numbers.
 */
export const META_READ_BYTES = `COALESCE(octet_length(replace(replace(meta::text, '": ', '":'), ', ', ',')), 0)`;

/** A page request: the direction it is counted in, its size and its cursor. */
interface PageRequest {
  backward: boolean;
  limit: number;
  cursor: string | null;
}

export interface EventFilterArg {
  users?: readonly string[] | null;
  types?: readonly string[] | null;
  pairTypes?: readonly string[] | null;
  origins?: readonly string[] | null;
  flags?: readonly string[] | null;
  rules?: readonly string[] | null;
}

export interface SegmentFilterArg {
  users?: readonly string[] | null;
  pairTypes?: readonly string[] | null;
  pairKeys?: readonly string[] | null;
  open?: boolean | null;
}

/** One part of a keyset order: its SQL, and the type of its value in a cursor. */
interface OrderPart {
  sql: string;
  type: 'instant' | 'int' | 'boolean' | 'uuid';
}

/**
 * Events by instant, then as the fold applied them: by position, then a
 * correction synthesised for a client event before that event, whose
 * position it shares, then by ordinal and id.
 */
const EVENT_ORDER: readonly OrderPart[] = [
  { sql: 'occurred_at', type: 'instant' },
  { sql: 'pos_at', type: 'instant' },
  { sql: 'pos_seq', type: 'int' },
  { sql: "(origin = 'CLIENT')", type: 'boolean' },
  { sql: 'ordinal', type: 'int' },
  { sql: 'id', type: 'uuid' },
];

/**
 * Segments by start, then as the fold opened them: by start position, then
 * by depth, so that a session opened for a task at the task's position comes
 * before the task, then by id.
 */
const SEGMENT_ORDER: readonly OrderPart[] = [
  { sql: 'start_at', type: 'instant' },
  { sql: 'start_seq', type: 'int' },
  { sql: 'depth', type: 'int' },
  { sql: 'id', type: 'uuid' },
];

const SQL_TYPES: Record<OrderPart['type'], string> = { instant: 'timestamptz', int: 'int', boolean: 'boolean', uuid: 'uuid' };

/**
 * Encodes the order values of a row that `WhereBuilder.page` read, in its
 * `order_<n>` columns, as a cursor. Instants become epoch milliseconds.
 */
function cursorOf(row: Record<string, unknown>, order: readonly OrderPart[]): string {
  const values = order.map((_, index) => {
    const value = row[`order_${index}`];
    return value instanceof Date ? value.getTime() : value;
  });
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

/** Returns whether a cursor value has the type of its order part and fits its SQL cast. */
function isOrderValue(value: unknown, type: OrderPart['type']): boolean {
  switch (type) {
    case 'instant':
      return typeof value === 'number' && isStorableInstant(value);
    case 'int':
      return Number.isInteger(value) && Math.abs(value as number) <= 2 ** 31 - 1;
    case 'boolean':
      return typeof value === 'boolean';
    case 'uuid':
      return typeof value === 'string' && isUuid(value);
  }
}

/** The order of each paged listing, by the name of its field and table. */
const LISTING_ORDERS: Readonly<Record<string, readonly OrderPart[]>> = { events: EVENT_ORDER, segments: SEGMENT_ORDER };

/** Returns whether `values` are the order values of a row in `order`. */
function fitsOrder(values: unknown, order: readonly OrderPart[]): values is unknown[] {
  return Array.isArray(values) && values.length === order.length && order.every((part, index) => isOrderValue(values[index], part.type));
}

/**
 * Returns what is wrong with a cursor that does not fit the order of
 * `listing`, for the error message.
 */
function cursorProblem(parsed: unknown, listing: string): string {
  const other = Object.keys(LISTING_ORDERS).find((name) => name !== listing && fitsOrder(parsed, LISTING_ORDERS[name]!));
  if (other !== undefined) {
    return `it is a cursor of \`${other}\`, and \`${listing}\` takes only cursors of its own pages`;
  }
  const order = LISTING_ORDERS[listing]!;
  if (!Array.isArray(parsed) || parsed.length !== order.length) {
    return `it is not a cursor that \`${listing}\` returned`;
  }
  const index = order.findIndex((part, position) => !isOrderValue(parsed[position], part.type));
  return `its value ${index + 1} is not a valid ${order[index]!.type}`;
}

/**
 * Returns the order values of a cursor of `listing` (a key of
 * LISTING_ORDERS) as SQL parameters, or throws INVALID_CURSOR naming the
 * argument and the problem.
 */
function decodeCursor(cursor: string, listing: string, backward: boolean): unknown[] {
  const order = LISTING_ORDERS[listing]!;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
  } catch {
    parsed = undefined;
  }
  // A forged cursor must not reach SQL with a value that the casts reject.
  if (fitsOrder(parsed, order)) {
    return parsed.map((value, index) => (order[index]!.type === 'instant' ? new Date(value as number) : value));
  }
  // `before` takes the startCursor of the page after, `after` the endCursor of the page before.
  const argument = backward ? 'before' : 'after';
  const hint = backward ? `a startCursor from the \`${listing}\` page after` : `an endCursor from a previous \`${listing}\` page`;
  throw badInput(
    'INVALID_CURSOR',
    `Cursor ${JSON.stringify(firstCharacters(cursor, 64))} in \`${argument}\` is invalid: ${cursorProblem(parsed, listing)}, so pass ${hint}.`,
    { argument },
  );
}

export class QueryService {
  constructor(
    private readonly sql: SqlClient,
    private readonly pageSize: { defaultPageSize: number; maxPageSize: number },
  ) {}

  /**
   * Reads the paging arguments: `first` and `after` page forward, `last` and
   * `before` page backward. A request that mixes the two directions names no
   * single page, so it is rejected.
   */
  private pageRequest(args: PageArgs<unknown>): PageRequest {
    const forward = args.first !== null || args.after !== null;
    const backward = (args.last ?? null) !== null || (args.before ?? null) !== null;
    if (forward && backward) {
      const givenArguments = (['first', 'after', 'last', 'before'] as const).filter((name) => (args[name] ?? null) !== null);
      throw badInput(
        'INVALID_PAGINATION',
        `The request gives ${givenArguments.join(', ')}: page forward with first and after, or backward with last and before, but not both in one request.`,
        { arguments: givenArguments },
      );
    }
    const name = backward ? 'last' : 'first';
    const size = (backward ? args.last : args.first) ?? this.pageSize.defaultPageSize;
    if (size < 1) {
      throw badInput('INVALID_PAGE_SIZE', `${name} is ${size}; it must be at least 1.`, { value: size, argument: name });
    }
    if (size > this.pageSize.maxPageSize) {
      throw limitExceeded('PAGE_SIZE_MAX', size, this.pageSize.maxPageSize, '', name);
    }
    return { backward, limit: size, cursor: (backward ? args.before : args.after) ?? null };
  }

  /** Returns the users a viewer may list: the filter's after an access check, or the viewer alone for members. */
  private scopeUsers(viewer: Viewer, users: readonly string[] | null | undefined): string[] | null {
    if (users === null || users === undefined) {
      return canReadAll(viewer) ? null : [viewer.userId];
    }
    if (users.length > MAX_FILTER_USERS) {
      throw badInput(
        'LIMIT_EXCEEDED',
        `filter.users has ${users.length} entries, above the maximum of ${MAX_FILTER_USERS}. Leave it out to read every user you may read.`,
        { value: users.length, max: MAX_FILTER_USERS },
      );
    }
    const malformed = users.findIndex((id) => !isUuid(id));
    if (malformed >= 0) {
      throw badInput(
        'INVALID_USER_ID',
        `filter.users[${malformed}] is ${JSON.stringify(firstCharacters(users[malformed]!, 64))}, which is not a user id (a UUID). ${USER_ID_HINT}`,
        { index: malformed },
      );
    }
    if (!canReadAll(viewer)) {
      const other = users.find((id) => !sameUserId(id, viewer.userId));
      if (other !== undefined) {
        throw new DomainError('FORBIDDEN', 'OTHER_USER', `Members may read only their own data; the filter names user ${JSON.stringify(firstCharacters(other, 64))}.`);
      }
    }
    return [...users];
  }

  private checkWindow(window: WindowArg | null): void {
    if (window !== null) {
      checkWindowOrder(window.start.getTime(), window.end.getTime());
    }
  }

  /**
   * Returns a page of events. Without `withMeta`, every record's `meta` is
   * null, and PostgreSQL does not read the values, which can be large. With
   * `withMeta` and a `budget`, the page's rows take their bytes from it.
   * `beforeRead` runs once every argument is valid, so a rejected read runs
   * nothing.
   */
  async events(
    viewer: Viewer,
    args: PageArgs<EventFilterArg>,
    withMeta = true,
    budget: ReadBudget | null = null,
    beforeRead: BeforeRead | null = null,
  ): Promise<Connection<EventRecord>> {
    const page = this.pageRequest(args);
    this.checkWindow(args.window);
    const users = this.scopeUsers(viewer, args.filter?.users);
    const where = new WhereBuilder();
    if (users !== null) where.add('user_id = ANY(?::uuid[])', users.filter(isUuid));
    // Intake stores a batch and applies it in two transactions. A client event
    // that is stored but not applied yet is left out, because the corrections
    // that its fold writes sort before it, so a cursor past it would skip them.
    // Its ORPHAN_END flag is not decided yet either. LATE_BEYOND_HORIZON events
    // are never applied, so they are listed as soon as they are stored.
    where.addFixed(`(origin = 'CORRECTION' OR ignored OR seq <= (SELECT u.applied_seq FROM users u WHERE u.id = events.user_id))`);
    checkFilterText('types', args.filter?.types);
    checkFilterText('pairTypes', args.filter?.pairTypes);
    if (args.filter?.types) where.add('type = ANY(?::text[])', args.filter.types);
    if (args.filter?.pairTypes) where.add('pair_type = ANY(?::text[])', args.filter.pairTypes);
    if (args.filter?.origins) where.add('origin::text = ANY(?::text[])', args.filter.origins);
    if (args.filter?.flags) {
      // ORPHAN_END is a column of its own, and the flags set at receipt are an array.
      // The parameter is sent as text[] and cast in SQL, because PGlite sends
      // an enum array parameter as a bare string, which PostgreSQL rejects.
      // `(orphan OR intake_flags <> '{}')` is the predicate of the partial
      // indexes of flagged events, which the planner uses only when the
      // conditions contain it.
      where.add(
        `(origin = 'CLIENT' AND (orphan OR intake_flags <> '{}') AND (intake_flags && ?::text[]::"CorrectionRule"[] OR (orphan AND 'ORPHAN_END' = ANY(?::text[]))))`,
        args.filter.flags,
      );
    }
    // The comparison is strict in `rule`, so it implies the predicate of the
    // partial indexes of corrections, `rule IS NOT NULL`.
    if (args.filter?.rules) where.add('rule::text = ANY(?::text[])', args.filter.rules);
    if (args.window !== null) {
      where.add('occurred_at >= ?', args.window.start);
      where.add('occurred_at < ?', args.window.end);
    }
    await beforeRead?.(users);
    const rows = await this.readPage(where, 'events', EVENT_COLUMNS, EVENT_ORDER, page, withMeta, budget);
    return toConnection(rows, page, EVENT_ORDER, toEventRecord);
  }

  /**
   * Returns a page of segments, with `meta` read only when `withMeta` is
   * true and within `budget`, and with `beforeRead` run first, as `events` does.
   */
  async segments(
    viewer: Viewer,
    args: PageArgs<SegmentFilterArg>,
    withMeta = true,
    budget: ReadBudget | null = null,
    beforeRead: BeforeRead | null = null,
  ): Promise<Connection<SegmentRecord>> {
    const page = this.pageRequest(args);
    this.checkWindow(args.window);
    const users = this.scopeUsers(viewer, args.filter?.users);
    const where = new WhereBuilder();
    if (users !== null) where.add('user_id = ANY(?::uuid[])', users.filter(isUuid));
    checkFilterText('pairTypes', args.filter?.pairTypes);
    checkFilterText('pairKeys', args.filter?.pairKeys);
    if (args.filter?.pairTypes) where.add('pair_type = ANY(?::text[])', args.filter.pairTypes);
    if (args.filter?.pairKeys) where.add('pair_key = ANY(?::text[])', args.filter.pairKeys);
    // An empty segment [t, t) (an auto-close with no activity after the start)
    // is kept for the fold but, like every empty interval, never listed.
    where.addFixed('(end_at IS NULL OR end_at > start_at)');
    if (args.filter?.open === true) where.addFixed('end_at IS NULL');
    if (args.filter?.open === false) where.addFixed('end_at IS NOT NULL');
    if (args.window !== null) {
      // Segments that overlap the window. An open one is listed for every
      // window that ends after its start, as the schema documents, even one after now.
      // NOTE: a report runs an open segment only to now, so for a window after
      // now it finds no time in a segment that this lists.
      where.add('start_at < ?', args.window.end);
      where.add('(end_at IS NULL OR end_at > ?)', args.window.start);
    }
    await beforeRead?.(users);
    const rows = await this.readPage(where, 'segments', SEGMENT_COLUMNS, SEGMENT_ORDER, page, withMeta, budget);
    return toConnection(rows, page, SEGMENT_ORDER, toSegmentRecord);
  }

  /** Reads the rows of a page: without `meta`, with it, or with it within `budget`. */
  private async readPage(
    where: WhereBuilder,
    table: string,
    columns: string,
    order: readonly OrderPart[],
    page: PageRequest,
    withMeta: boolean,
    budget: ReadBudget | null,
  ): Promise<Array<Record<string, unknown>>> {
    if (!withMeta) {
      return this.sql.query(where.page(table, withoutMeta(columns), order, page), where.params);
    }
    if (budget === null) {
      return this.sql.query(where.page(table, columns, order, page), where.params);
    }
    return budget.read(async (remainingBytes) => {
      const text = where.budgetedPage(table, columns, order, page, remainingBytes, budget.objectBytes);
      const rows = await this.sql.query(text, where.params);
      // The row read beyond the page, to detect whether more follow, is not charged.
      const lastPageRow = rows[Math.min(rows.length, page.limit) - 1];
      return { value: rows, bytes: lastPageRow === undefined ? 0 : (lastPageRow.read_bytes as number) };
    });
  }

  /**
   * Returns the events with these ids, in no particular order, with `meta`
   * read only when `withMeta` is true. With `withMeta` and a `budget`, the
   * rows take their bytes from it.
   */
  async eventsByIds(ids: readonly string[], withMeta = true, budget: ReadBudget | null = null): Promise<EventRecord[]> {
    const params: unknown[] = [ids.filter(isUuid)];
    if (!withMeta || budget === null) {
      const columns = withMeta ? EVENT_COLUMNS : withoutMeta(EVENT_COLUMNS);
      const rows = await this.sql.query(`SELECT ${columns} FROM events WHERE id = ANY($1::uuid[])`, params);
      return rows.map(toEventRecord);
    }
    return budget.read(async (remainingBytes) => {
      // As in `WhereBuilder.budgetedPage`, rows come while the bytes of the
      // rows before them, in the order of `ids`, are within the budget.
      const text = `SELECT ${EVENT_COLUMNS}, read_bytes FROM (
          SELECT sized.*, (sum(row_bytes) OVER (ORDER BY id_index ROWS UNBOUNDED PRECEDING))::float8 AS read_bytes
          FROM (
            SELECT events.*, ids.id_index, $3::int + ${META_READ_BYTES} AS row_bytes
            FROM unnest($1::uuid[]) WITH ORDINALITY AS ids(id, id_index)
            JOIN events ON events.id = ids.id
          ) sized
        ) counted
        WHERE read_bytes - row_bytes <= $2::float8`;
      const rows = await this.sql.query(text, [...params, remainingBytes, budget.objectBytes]);
      const bytes = rows.reduce((max, row) => Math.max(max, row.read_bytes as number), 0);
      return { value: rows.map(toEventRecord), bytes };
    });
  }
}

/** Collects parameterised WHERE conditions and builds a keyset-paged query. */
class WhereBuilder {
  readonly params: unknown[] = [];
  private readonly conditions: string[] = [];

  /** Adds a condition whose `?` marks stand for `value`. */
  add(condition: string, value: unknown): void {
    this.params.push(value);
    this.conditions.push(condition.replaceAll('?', `$${this.params.length}`));
  }

  addFixed(condition: string): void {
    this.conditions.push(condition);
  }

  /**
   * Returns the query of one page in `order`: after the cursor going
   * forward, or before it going backward. A backward page is read in
   * descending order, one row more than the page to tell whether more come
   * before it, and `toConnection` puts it back in ascending order. Each row
   * also carries its order values as `order_<n>`, for `cursorOf`.
   */
  page(table: string, columns: string, order: readonly OrderPart[], page: PageRequest): string {
    const keys = order.map((part) => part.sql).join(', ');
    if (page.cursor !== null) {
      const values = decodeCursor(page.cursor, table, page.backward);
      const markers = values.map((value, index) => {
        this.params.push(value);
        return `$${this.params.length}::${SQL_TYPES[order[index]!.type]}`;
      });
      this.conditions.push(`(${keys}) ${page.backward ? '<' : '>'} (${markers.join(', ')})`);
    }
    this.params.push(page.limit + 1);
    const where = this.conditions.length > 0 ? `WHERE ${this.conditions.join(' AND ')}` : '';
    const direction = page.backward ? ' DESC' : '';
    const orderBy = order.map((part) => `${part.sql}${direction}`).join(', ');
    const orderColumns = order.map((part, index) => `${part.sql} AS order_${index}`).join(', ');
    return `SELECT ${columns}, ${orderColumns} FROM ${table} ${where} ORDER BY ${orderBy} LIMIT $${this.params.length}`;
  }

  /**
   * Returns the query of `page` that stops at a budget of bytes. Each row
   * counts `objectBytes` plus its `meta` (META_READ_BYTES), and `read_bytes`
   * is the sum of a row and the rows before it in the page's order. Rows
   * come while the rows before them take at most `remainingBytes`, so a page
   * over the budget ends with the row that crosses it. The row read beyond
   * the page, to detect whether more follow, comes with its `meta` as NULL.
   * NOTE: PostgreSQL still reads the page's rows to sum them. Only the rows
   * it sends to the server stop at the budget.
   */
  budgetedPage(
    table: string,
    columns: string,
    order: readonly OrderPart[],
    page: PageRequest,
    remainingBytes: number,
    objectBytes: number,
  ): string {
    const pageQuery = this.page(table, columns, order, page);
    this.params.push(page.limit);
    const limit = `$${this.params.length}::int`;
    this.params.push(remainingBytes);
    const remaining = `$${this.params.length}::float8`;
    this.params.push(objectBytes);
    const rowBytes = `$${this.params.length}::int + ${META_READ_BYTES}`;
    const direction = page.backward ? ' DESC' : '';
    const orderNames = order.map((_, index) => `order_${index}`);
    const windowOrder = orderNames.map((name) => `${name}${direction}`).join(', ');
    const outerColumns = columns.replace(/\bmeta\b/, `CASE WHEN row_index <= ${limit} THEN meta END AS meta`);
    return `SELECT ${outerColumns}, ${orderNames.join(', ')}, read_bytes FROM (
        SELECT sized.*, row_number() OVER read_order AS row_index,
          (sum(row_bytes) OVER read_order)::float8 AS read_bytes
        FROM (SELECT page.*, ${rowBytes} AS row_bytes FROM (${pageQuery}) page) sized
        WINDOW read_order AS (ORDER BY ${windowOrder} ROWS UNBOUNDED PRECEDING)
      ) counted
      WHERE read_bytes - row_bytes <= ${remaining}
      ORDER BY row_index`;
  }
}

/** Throws INVALID_FILTER for a filter string that PostgreSQL cannot compare, such as one with a NUL character. */
function checkFilterText(field: string, values: readonly string[] | null | undefined): void {
  if (values !== null && values !== undefined && values.length > MAX_LEAF_LIST_ITEMS) {
    throw badInput(
      'LIMIT_EXCEEDED',
      `filter.${field} has ${values.length} entries, above the maximum of ${MAX_LEAF_LIST_ITEMS}.`,
      { field: `filter.${field}`, value: values.length, max: MAX_LEAF_LIST_ITEMS },
    );
  }
  values?.forEach((value, index) => {
    const problem =
      exceedsCharacters(value, MAX_LEAF_ITEM_LENGTH)
        ? `is ${characterCount(value)} characters long, above the maximum of ${MAX_LEAF_ITEM_LENGTH}`
        : textProblem(value);
    if (problem !== null) {
      throw badInput('INVALID_FILTER', `filter.${field}[${index}] ${JSON.stringify(firstCharacters(value, 64))} ${problem}.`, {
        field: `filter.${field}[${index}]`,
      });
    }
  });
}

/**
 * Builds a connection from the rows of `page`, which hold one row beyond the
 * page when more follow in its direction. Items before `after`, or after
 * `before`, exist because the cursor came from one of them, so the other
 * direction's flag is true when a cursor was given.
 */
function toConnection<T>(
  rows: Array<Record<string, unknown>>,
  page: PageRequest,
  order: readonly OrderPart[],
  toNode: (row: Record<string, unknown>) => T,
): Connection<T> {
  const more = rows.length > page.limit;
  const pageRows = more ? rows.slice(0, page.limit) : rows;
  const ordered = page.backward ? pageRows.reverse() : pageRows;
  const edges = ordered.map((row) => ({ cursor: cursorOf(row, order), node: toNode(row) }));
  const nodes = edges.map((edge) => edge.node);
  const pastCursor = page.cursor !== null;
  return {
    edges,
    nodes,
    pageInfo: {
      hasNextPage: page.backward ? pastCursor : more,
      hasPreviousPage: page.backward ? more : pastCursor,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges.at(-1)?.cursor ?? null,
    },
  };
}
