/**
 * Rows as the services and GraphQL resolvers see them. Instants are `Date`
 * objects in UTC with millisecond precision.
 */

export type Role = 'MEMBER' | 'ANALYST' | 'ADMIN';

export interface UserRecord {
  id: string;
  username: string;
  role: Role;
  createdAt: Date;
  /** When an admin disabled the account, or null while it is enabled. */
  disabledAt: Date | null;
  /** Counter that a password change or disabling increments, so that older tokens stop working. */
  tokenVersion: number;
}

export interface EventRecord {
  id: string;
  userId: string;
  seq: number;
  clientId: string | null;
  type: string;
  role: 'START' | 'END' | 'POINT';
  pairType: string | null;
  pairKey: string | null;
  occurredAt: Date;
  /** The instant the client sent, when the server replaced it with the receipt time (FUTURE_TIMESTAMP). */
  clientOccurredAt: Date | null;
  receivedAt: Date;
  meta: Record<string, unknown> | null;
  origin: 'CLIENT' | 'CORRECTION';
  rule: string | null;
  causeEventId: string | null;
  intakeFlags: string[];
  orphan: boolean;
  ignored: boolean;
}

/**
 * Returns the arrival number of a client event: its per-user `seq`, which
 * orders events at the same instant. Corrections get null, because their
 * `seq` is that of their position.
 */
export function arrivalOf(event: Pick<EventRecord, 'origin' | 'seq'>): number | null {
  return event.origin === 'CLIENT' ? event.seq : null;
}

export interface SegmentRecord {
  id: string;
  userId: string;
  pairType: string;
  pairKey: string;
  startAt: Date;
  endAt: Date | null;
  endReason: 'CLIENT' | 'PARENT_CLOSED' | 'DUPLICATE_START' | 'AUTO_CLOSE' | null;
  startEventId: string;
  endEventId: string | null;
  meta: Record<string, unknown> | null;
  parentSegmentId: string | null;
}

/**
 * Returns a copy of a JSON value with object keys in the order that a read
 * from a jsonb column gives: PostgreSQL keeps shorter keys first, then orders
 * by the keys' UTF-8 bytes. JavaScript then still puts integer-like keys
 * first, as it does when it parses that read.
 */
export function inJsonbKeyOrder(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(inJsonbKeyOrder);
  }
  if (value === null || typeof value !== 'object') {
    return value;
  }
  const source = value as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(source).sort(compareJsonbKeys)) {
    const copy = inJsonbKeyOrder(source[key]);
    if (key === '__proto__') {
      // Assigning `__proto__` would set the copy's prototype instead of
      // adding the key that jsonb stores.
      Object.defineProperty(ordered, key, { value: copy, enumerable: true, writable: true, configurable: true });
    } else {
      ordered[key] = copy;
    }
  }
  return ordered;
}

function compareJsonbKeys(a: string, b: string): number {
  const leftBytes = Buffer.byteLength(a, 'utf8');
  const rightBytes = Buffer.byteLength(b, 'utf8');
  if (leftBytes !== rightBytes) {
    return leftBytes - rightBytes;
  }
  // One byte per character means ASCII, whose UTF-16 order is its byte order.
  if (leftBytes === a.length && rightBytes === b.length) {
    if (a === b) {
      return 0;
    }
    return a < b ? -1 : 1;
  }
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Column list and row mapping shared by every query that returns events. */
export const EVENT_COLUMNS = `id, user_id, seq, client_id, type, role, pair_type, pair_key,
  occurred_at, received_at, meta, origin, rule, cause_event_id, intake_flags, orphan, ignored, client_occurred_at`;

/** Returns `columns` with `meta` read as NULL, for reads whose callers select no `meta`. */
export function withoutMeta(columns: string): string {
  const replaced = columns.replace(/\bmeta\b/, 'NULL::jsonb AS meta');
  if (replaced === columns) {
    throw new Error('The column list has no meta column.');
  }
  return replaced;
}

export function toEventRecord(row: Record<string, unknown>): EventRecord {
  return {
    id: row.id as string,
    userId: row.user_id as string,
    seq: row.seq as number,
    clientId: (row.client_id as string | null) ?? null,
    type: row.type as string,
    role: row.role as EventRecord['role'],
    pairType: (row.pair_type as string | null) ?? null,
    pairKey: (row.pair_key as string | null) ?? null,
    occurredAt: row.occurred_at as Date,
    clientOccurredAt: (row.client_occurred_at as Date | null) ?? null,
    receivedAt: row.received_at as Date,
    meta: (row.meta as Record<string, unknown> | null) ?? null,
    origin: row.origin as EventRecord['origin'],
    rule: (row.rule as string | null) ?? null,
    causeEventId: (row.cause_event_id as string | null) ?? null,
    intakeFlags: parseEnumArray(row.intake_flags),
    orphan: row.orphan as boolean,
    ignored: row.ignored as boolean,
  };
}

export const SEGMENT_COLUMNS = `id, user_id, pair_type, pair_key, start_at, end_at, end_reason,
  start_event_id, end_event_id, meta, parent_segment_id`;

export function toSegmentRecord(row: Record<string, unknown>): SegmentRecord {
  return {
    id: row.id as string,
    userId: row.user_id as string,
    pairType: row.pair_type as string,
    pairKey: row.pair_key as string,
    startAt: row.start_at as Date,
    endAt: (row.end_at as Date | null) ?? null,
    endReason: (row.end_reason as SegmentRecord['endReason']) ?? null,
    startEventId: row.start_event_id as string,
    endEventId: (row.end_event_id as string | null) ?? null,
    meta: (row.meta as Record<string, unknown> | null) ?? null,
    parentSegmentId: (row.parent_segment_id as string | null) ?? null,
  };
}

/**
 * Reads a PostgreSQL array of an enum type. `pg` returns arrays of custom
 * types in their text form (`{A,B}`), PGlite may return a JS array.
 */
export function parseEnumArray(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value as string[];
  }
  if (typeof value === 'string') {
    const inner = value.replace(/^\{|\}$/g, '');
    return inner === '' ? [] : inner.split(',');
  }
  return [];
}
