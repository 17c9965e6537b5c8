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

/** Builds the error for a configured limit that a request exceeds. */
export function limitExceeded(limit: string, value: number, max: number, unit = ''): DomainError {
  const suffix = unit === '' ? '' : ` ${unit}`;
  return badInput(
    'LIMIT_EXCEEDED',
    `${limit} is ${value}${suffix}, above the maximum of ${max}${suffix}.`,
    { limit, value, max },
  );
}

/** Marks a switch branch that the type checker proves unreachable. */
export function assertNever(value: never): never {
  throw new TypeError(`Unexpected value: ${JSON.stringify(value)}`);
}
