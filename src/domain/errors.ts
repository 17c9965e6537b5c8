/**
 * Domain errors: mistakes a caller can fix, each with a stable code, a message
 * that names the offending value and the limit, and structured fields. The
 * GraphQL and HTTP layers map `kind` to `extensions.code` and an HTTP status;
 * `reason` travels to clients as `extensions.reason`.
 */

export type DomainErrorKind =
  | 'BAD_USER_INPUT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'SERVICE_UNAVAILABLE';

export class DomainError extends Error {
  readonly kind: DomainErrorKind;
  /** Machine-readable reason, for example `LIMIT_EXCEEDED` or `INVALID_WINDOW`. */
  readonly reason: string;
  /** Offending values and limits, sent to clients beside the message. */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    kind: DomainErrorKind,
    reason: string,
    message: string,
    details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'DomainError';
    this.kind = kind;
    this.reason = reason;
    this.details = details;
  }
}

/** Builds a BAD_USER_INPUT error. */
export function badInput(
  reason: string,
  message: string,
  details: Record<string, unknown> = {},
): DomainError {
  return new DomainError('BAD_USER_INPUT', reason, message, details);
}

/** The quantity each configured limit bounds, named in error messages. */
const LIMIT_SUBJECTS: Readonly<Record<string, string>> = {
  REPORT_MAX_WINDOW_DAYS: 'The report window',
  REPORT_MAX_DEPTH: 'The expression depth',
  REPORT_MAX_NODES: 'The expression size',
  REPORT_MAX_LITERAL_INTERVALS: 'The number of literal intervals',
  REPORT_MAX_LEAF_ENTRIES:
    'The number of leaf entries (entries of pairTypes, users and pairKeys, and keys and array items of meta, over all segments leaves)',
  REPORT_MAX_BUCKET_ROWS: 'The number of bucket rows',
};

/** Advice on staying within each configured limit, added to the limit's error message. */
export const LIMIT_ADVICE: Readonly<Record<string, string>> = {
  PAGE_SIZE_MAX: 'Request smaller pages and follow the cursors of `pageInfo` to the next ones.',
  REPORT_MAX_WINDOW_DAYS: 'Split the window into shorter reports.',
  REPORT_MAX_DEPTH: 'Nest less deeply: `union` and `intersect` take any number of operands.',
  REPORT_MAX_NODES: 'Use fewer nodes: one `segments` leaf takes lists of pair types, users and pair keys.',
  REPORT_MAX_LITERAL_INTERVALS: 'Merge touching or overlapping intervals, or split the report.',
  REPORT_MAX_LEAF_ENTRIES: 'Name fewer entries, or split the report into several.',
  REPORT_MAX_BUCKET_ROWS: 'Use a larger bucket unit, a shorter window or fewer groups.',
};

/** Returns the advice for `limit` with a leading space, or an empty string when there is none. */
function adviceFor(limit: string): string {
  const advice = LIMIT_ADVICE[limit];
  return advice === undefined ? '' : ` ${advice}`;
}

/**
 * Builds the error for a configured limit that a request exceeds, such as
 * "The report window is 516 days, above the maximum of 366 days
 * (REPORT_MAX_WINDOW_DAYS)." followed by the limit's LIMIT_ADVICE. An
 * `argument`, such as `first`, replaces the limit's subject in the message
 * and is added to the details.
 */
export function limitExceeded(limit: string, value: number, max: number, unit = '', argument?: string): DomainError {
  const suffix = unit === '' ? '' : ` ${unit}`;
  const subject = argument ?? LIMIT_SUBJECTS[limit] ?? 'The value';
  return badInput(
    'LIMIT_EXCEEDED',
    `${subject} is ${value}${suffix}, above the maximum of ${max}${suffix} (${limit}).${adviceFor(limit)}`,
    argument === undefined ? { limit, value, max } : { limit, value, max, argument },
  );
}

/**
 * Builds the error for a limit that a request exceeds when only a lower
 * bound of its value is known. Checks that stop counting early or estimate
 * the count use it: "The expression size is at least 301 nodes, above the
 * maximum of 256 nodes (REPORT_MAX_NODES)."
 */
export function limitExceededAtLeast(limit: string, value: number, max: number, unit = ''): DomainError {
  const suffix = unit === '' ? '' : ` ${unit}`;
  const subject = LIMIT_SUBJECTS[limit] ?? 'The value';
  return badInput(
    'LIMIT_EXCEEDED',
    `${subject} is at least ${value}${suffix}, above the maximum of ${max}${suffix} (${limit}).${adviceFor(limit)}`,
    { limit, value, max },
  );
}

/** Advice to the client about events that a failed request stored. */
export const STORED_EVENTS_ADVICE =
  'Send them again only with the same `id` each was sent with, which makes the repeat a duplicate instead of a second event.';

/** Advice to the client about the one event that a failed request stored. */
const STORED_EVENT_ADVICE =
  'Send it again only with the same `id` it was sent with, which makes the repeat a duplicate instead of a second event.';

function storedEventsAdvice(count: number): string {
  return count === 1 ? STORED_EVENT_ADVICE : STORED_EVENTS_ADVICE;
}

/** Errors thrown after a request stored events, with the number of events it stored. */
const storedBeforeErrors = new WeakMap<object, number>();

/** Records that the request that threw `error` had stored `count` events before. */
export function markStoredBefore(error: unknown, count: number): void {
  if (typeof error === 'object' && error !== null) {
    storedBeforeErrors.set(error, count);
  }
}

/** Returns the number of events stored before `error` was thrown, or null when none were recorded. */
export function storedCountBefore(error: unknown): number | null {
  return typeof error === 'object' && error !== null ? (storedBeforeErrors.get(error) ?? null) : null;
}

/**
 * Returns `error` with `eventsStored` in its details and a sentence about
 * the `count` events that the request stored before the error came.
 */
export function withStoredEvents(error: DomainError, count: number): DomainError {
  return new DomainError(
    error.kind,
    error.reason,
    `${error.message} ${storedEventsClause(count)}, and ${count === 1 ? 'its segments follow' : 'their segments follow'} once the service recovers. ${storedEventsAdvice(count)}`,
    { ...error.details, eventsStored: true },
  );
}

/**
 * Returns the message of an unexpected failure after the request stored
 * `count` events. It promises no segments, because the same fault may come
 * back when the service derives them again.
 */
export function internalErrorAfterStore(count: number): string {
  return `Internal server error. ${storedEventsClause(count)}. ${storedEventsAdvice(count)}`;
}

function storedEventsClause(count: number): string {
  return `${count === 1 ? 'The new event of this request was' : `The ${count} new events of this request were`} stored before the failure`;
}

/** Marks a switch branch that the type checker proves unreachable. */
export function assertNever(value: never): never {
  throw new TypeError(`Unexpected value: ${JSON.stringify(value)}`);
}
