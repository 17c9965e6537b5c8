/**
 * The one place that turns any thrown value into a client-facing error.
 * Domain errors keep their code, reason and details. Failures of PostgreSQL
 * or Redis become SERVICE_UNAVAILABLE, and a request value that PostgreSQL
 * rejects becomes BAD_USER_INPUT. Everything else is masked as
 * INTERNAL_SERVER_ERROR and logged whole with the request id.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

import { unwrapResolverError } from '@apollo/server/errors';
import { GraphQLError, Kind, type GraphQLFormattedError } from 'graphql';

import {
  DomainError,
  internalErrorAfterStore,
  storedCountBefore,
  withStoredEvents,
  type DomainErrorKind,
} from '../domain/errors.js';
import { FIELD_LIST as SET_EXPRESSION_FIELDS } from '../domain/report/shape.js';
import { withoutSecretValues } from './secret-values.js';

export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'SERVICE_UNAVAILABLE'
  | 'INTERNAL_SERVER_ERROR';

export function codeForKind(kind: DomainErrorKind): ErrorCode {
  switch (kind) {
    case 'BAD_USER_INPUT':
    case 'NOT_FOUND':
      return 'BAD_USER_INPUT';
    case 'UNAUTHENTICATED':
      return 'UNAUTHENTICATED';
    case 'FORBIDDEN':
      return 'FORBIDDEN';
    case 'SERVICE_UNAVAILABLE':
      return 'SERVICE_UNAVAILABLE';
  }
}

export function httpStatusForCode(code: ErrorCode): number {
  switch (code) {
    case 'BAD_USER_INPUT':
      return 400;
    case 'UNAUTHENTICATED':
      return 401;
    case 'FORBIDDEN':
      return 403;
    case 'SERVICE_UNAVAILABLE':
      return 503;
    case 'INTERNAL_SERVER_ERROR':
      return 500;
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  // PostgreSQL: query_canceled (statement timeout), admin_shutdown, crash_shutdown, cannot_connect_now.
  '57014',
  '57P01',
  '57P02',
  '57P03',
  // Prisma: cannot reach the database, timeouts, connection closed.
  'P1001',
  'P1002',
  'P1008',
  'P1017',
  'P2024',
]);

/**
 * Kinds of the `meta.driverAdapterError.cause` of a Prisma error that mean
 * the connection failed. @prisma/adapter-pg 7.10 maps ECONNRESET to
 * ConnectionClosed, ECONNREFUSED and ENOTFOUND to DatabaseNotReachable, and
 * ETIMEDOUT to SocketTimeout. It keeps neither the socket's code nor its
 * message, so a raw query that meets them fails with P2010 and none of the
 * codes above.
 */
const CONNECTION_FAILURE_KINDS = new Set(['ConnectionClosed', 'DatabaseNotReachable', 'SocketTimeout']);

/**
 * Returns the error codes of one error: its own `code`, and the PostgreSQL
 * code that Prisma keeps in `meta.driverAdapterError.cause` when a driver
 * adapter query fails, such as 57014 under its own P2010.
 */
function codesOf(error: Error): unknown[] {
  const { code, meta } = error as {
    code?: unknown;
    meta?: { driverAdapterError?: { cause?: { code?: unknown; originalCode?: unknown } } };
  };
  const cause = meta?.driverAdapterError?.cause;
  return [code, cause?.code, cause?.originalCode];
}

/** Returns whether a Prisma error's driver adapter reported a failed connection. */
function isConnectionFailureKind(error: Error): boolean {
  const kind = (error as { meta?: { driverAdapterError?: { cause?: { kind?: unknown } } } }).meta?.driverAdapterError?.cause?.kind;
  return typeof kind === 'string' && CONNECTION_FAILURE_KINDS.has(kind);
}

/**
 * Recognises failures of the database or Redis connection, as opposed to bugs.
 * pg 8 reports a statement on a client whose connection failed earlier as
 * "Client has encountered a connection error and is not queryable", and a
 * statement whose reply did not come within `query_timeout` as "Query read timeout".
 */
export function isDependencyFailure(error: unknown): boolean {
  let cursor: unknown = error;
  for (let depth = 0; depth < 5 && cursor instanceof Error; depth += 1) {
    if (codesOf(cursor).some((code) => typeof code === 'string' && CONNECTION_ERROR_CODES.has(code)) || isConnectionFailureKind(cursor)) {
      return true;
    }
    const message = cursor.message;
    if (
      /Connection terminated|connection timeout|timeout exceeded when trying to connect|Connection is closed|Stream isn't writeable|Command timed out|max retries per request|ECONNREFUSED|is not queryable|Query read timeout/i.test(
        message,
      )
    ) {
      return true;
    }
    cursor = (cursor as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * PostgreSQL data exceptions caused by a value in the request:
 * character_not_in_repertoire (a NUL character in text), untranslatable_character
 * (`\u0000` in jsonb), datetime_field_overflow and numeric_value_out_of_range.
 */
const UNSTORABLE_VALUE_CODES = new Set(['22021', '22P05', '22008', '22003']);

/**
 * Recognises a PostgreSQL error (from `pg` or PGlite) that a value in the
 * request caused. Input validation should have rejected that value, so
 * callers log these as a missing check.
 */
export function isUnstorableValue(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && UNSTORABLE_VALUE_CODES.has(code);
}

/**
 * Converts a domain or dependency failure into a DomainError, and returns
 * null for anything else. A SERVICE_UNAVAILABLE error that came after the
 * request stored events (see `markStoredBefore`) says so.
 */
export function toDomainError(error: unknown): DomainError | null {
  const stored = storedCountBefore(error);
  if (error instanceof DomainError) {
    return stored !== null && error.kind === 'SERVICE_UNAVAILABLE' ? withStoredEvents(error, stored) : error;
  }
  if (isDependencyFailure(error)) {
    const unavailable = 'A storage service is unavailable or did not respond in time.';
    return stored === null
      ? new DomainError(
          'SERVICE_UNAVAILABLE',
          'DEPENDENCY_UNAVAILABLE',
          `${unavailable} Retry the request: events sent again with the same ids are stored once.`,
        )
      : withStoredEvents(new DomainError('SERVICE_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE', unavailable), stored);
  }
  if (isUnstorableValue(error)) {
    return new DomainError(
      'BAD_USER_INPUT',
      'UNSTORABLE_VALUE',
      `The database rejected a value in the request (SQLSTATE ${(error as { code: string }).code}), such as a NUL character or an instant outside the supported range. Remove the value and retry.`,
      { sqlState: (error as { code: string }).code },
    );
  }
  return null;
}

/** Returns the `extensions` that a domain error carries to clients. */
export function domainErrorExtensions(error: DomainError): Record<string, unknown> {
  return { code: codeForKind(error.kind), reason: error.reason, ...error.details };
}

/**
 * Tells whether a value is a GraphQLError by the `Symbol.toStringTag` that
 * graphql-js sets. `instanceof` fails when two copies of graphql are loaded,
 * such as its ESM and CommonJS builds.
 */
function isGraphQLError(value: unknown): value is GraphQLError {
  return Object.prototype.toString.call(value) === '[object GraphQLError]';
}

/**
 * Tells whether a thrown value is one the client may see as it is: a domain
 * error, or an error that GraphQL or Apollo raised for the request itself
 * (syntax, validation, variable coercion), which carries a client code.
 */
export function isExpectedError(raw: unknown): boolean {
  const original = unwrapResolverError(raw);
  if (toDomainError(original) !== null) {
    return true;
  }
  if (!isGraphQLError(original)) {
    return false;
  }
  const code = original.extensions?.code;
  return original.originalError === undefined || (typeof code === 'string' && code !== 'INTERNAL_SERVER_ERROR');
}

/** AST kinds of argument values, where graphql-js locates the errors of argument coercion. */
const VALUE_KINDS: ReadonlySet<string> = new Set([
  Kind.VARIABLE,
  Kind.INT,
  Kind.FLOAT,
  Kind.STRING,
  Kind.BOOLEAN,
  Kind.NULL,
  Kind.ENUM,
  Kind.LIST,
  Kind.OBJECT,
]);

/**
 * Tells whether `error` comes from graphql-js 16 coercing a field's
 * arguments during execution, such as `Argument "window" of non-null type
 * "WindowInput!" must not be null.` Validation has checked the literals by
 * then, so the value at fault comes from a variable. It is null where the
 * variable's default made validation accept it, or null or missing in a
 * @oneOf field. Execution bugs, such as an abstract type that resolves to
 * no object type, are located at the field instead.
 */
function isArgumentCoercionError(error: GraphQLError): boolean {
  const nodes = error.nodes ?? [];
  return (
    error.originalError === undefined &&
    error.extensions?.code === undefined &&
    nodes.length > 0 &&
    nodes.every((node) => VALUE_KINDS.has(node.kind))
  );
}

/** The errors that `formatError` masked during the HTTP request running in the store. */
const maskedErrorScope = new AsyncLocalStorage<unknown[]>();

/** Errors that were logged whole, by the error-logging plugin or by the HTTP layer. */
const loggedErrors = new WeakSet<object>();

/** Reasons of SERVICE_UNAVAILABLE that mean PostgreSQL or Redis did not respond. */
const DEPENDENCY_REASONS = new Set(['REDIS_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE']);

/**
 * Returns the log message of a SERVICE_UNAVAILABLE error, such as "request
 * failed: a dependency is unavailable" for an outage of PostgreSQL or Redis,
 * and "request failed: service unavailable (USER_BUSY)" for the other
 * reasons, such as a user whose lock another request holds.
 */
export function unavailableLogMessage(failed: 'request failed' | 'token check failed', error: DomainError): string {
  return DEPENDENCY_REASONS.has(error.reason) ? `${failed}: a dependency is unavailable` : `${failed}: service unavailable (${error.reason})`;
}

/** Records that `error` was logged whole, so that `collectUnloggedErrors` and the HTTP error handler leave it out. */
export function markLogged(error: unknown): void {
  if (typeof error === 'object' && error !== null) {
    loggedErrors.add(error);
  }
}

/** Returns whether `markLogged` recorded `error`. */
export function wasLogged(error: unknown): boolean {
  return typeof error === 'object' && error !== null && loggedErrors.has(error);
}

/**
 * Runs `handle` and returns its result with the errors that `formatError`
 * masked as INTERNAL_SERVER_ERROR meanwhile and that no plugin logged.
 * Apollo Server 5 formats some errors outside every plugin hook, such as a
 * reply that fails to serialise or a context that fails to build, and
 * sends HTTP 500 for them.
 */
export async function collectUnloggedErrors<T>(handle: () => Promise<T>): Promise<{ result: T; unlogged: unknown[] }> {
  const masked: unknown[] = [];
  const result = await maskedErrorScope.run(masked, handle);
  const unlogged = masked.filter((error) => typeof error !== 'object' || error === null || !loggedErrors.has(error));
  return { result, unlogged };
}

/**
 * Builds Apollo's `formatError`: the only path by which errors leave the
 * GraphQL server.
 */
export function createFormatError(includeStack: boolean) {
  return (formatted: GraphQLFormattedError, raw: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(raw);
    const domain = toDomainError(original);
    if (domain !== null) {
      return {
        message: domain.message,
        ...(formatted.locations ? { locations: formatted.locations } : {}),
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: domainErrorExtensions(domain),
      };
    }

    // Errors GraphQL itself raised (syntax, validation, variable coercion)
    // already carry a code and a message meant for the client.
    const code = formatted.extensions?.code;
    if (isGraphQLError(original) && typeof code === 'string' && code !== 'INTERNAL_SERVER_ERROR') {
      // Apollo marks variable values that fail GraphQL's type checks with
      // BAD_USER_INPUT but no reason, which every input error carries here.
      const withReason =
        code === 'BAD_USER_INPUT' && formatted.extensions?.reason === undefined
          ? { ...formatted, extensions: { ...formatted.extensions, reason: 'INVALID_VARIABLE' } }
          : formatted;
      // The stack trace's first line can repeat the message, and so the values it quotes.
      const message = shortened(withSetExpressionFields(withoutQuotedPasswords(formatted.message)));
      const clientError = mapStackLines({ ...withReason, message }, withoutQuotedPasswords);
      return includeStack ? clientError : withoutStack(clientError);
    }

    if (isGraphQLError(original) && isArgumentCoercionError(original)) {
      return {
        message: shortened(
          `${withoutQuotedPasswords(original.message)} A variable that it uses is null or missing where the schema requires a value.`,
        ),
        ...(formatted.locations ? { locations: formatted.locations } : {}),
        ...(formatted.path ? { path: formatted.path } : {}),
        extensions: { code: 'BAD_USER_INPUT', reason: 'INVALID_VARIABLE' },
      };
    }

    // Apollo rejects some requests with a 4xx status but no code, for example
    // a persisted-query hash that does not match the query.
    const status = (original as { extensions?: { http?: { status?: unknown } } } | null)?.extensions?.http?.status;
    if (isGraphQLError(original) && original.originalError === undefined && typeof status === 'number' && status < 500) {
      const clientError = includeStack ? formatted : withoutStack(formatted);
      return { ...clientError, extensions: { ...clientError.extensions, code: 'BAD_REQUEST' } };
    }

    // Logged whole, with the request id, by the logging plugin, or by the
    // /graphql route when no plugin hook saw the error. The message of a
    // failure after stored events reports them, as outages do, so that the
    // client does not send them again as new ones.
    maskedErrorScope.getStore()?.push(original);
    const stored = storedCountBefore(original);
    return {
      message: stored === null ? 'Internal server error.' : internalErrorAfterStore(stored),
      ...(formatted.path ? { path: formatted.path } : {}),
      extensions: {
        code: 'INTERNAL_SERVER_ERROR',
        ...(stored === null ? {} : { eventsStored: true }),
        ...(includeStack && original instanceof Error ? { stacktrace: original.stack?.split('\n') } : {}),
      },
    };
  };
}

/**
 * Maximum length, in characters, of the message of an error that GraphQL
 * raised, as sent to the client. graphql-js quotes the whole invalid value,
 * so a 5 MB variable would give a reply twice that size.
 */
export const MAX_CLIENT_MESSAGE_CHARS = 2000;

const SET_EXPRESSION_KEY_COUNT = 'OneOf Input Object "SetExpression" must specify exactly one key.';

/**
 * Adds the fields to choose from to graphql-js's error for a SetExpression
 * literal with no field or several, such as `expression: {}`, which names none.
 */
function withSetExpressionFields(message: string): string {
  return message === SET_EXPRESSION_KEY_COUNT ? `${message} Set exactly one of ${SET_EXPRESSION_FIELDS}.` : message;
}

/** Cuts `message` to MAX_CLIENT_MESSAGE_CHARS and appends its original length. */
function shortened(message: string): string {
  if (message.length <= MAX_CLIENT_MESSAGE_CHARS) {
    return message;
  }
  return `${message.slice(0, MAX_CLIENT_MESSAGE_CHARS)}… (message cut to ${MAX_CLIENT_MESSAGE_CHARS} of its ${message.length} characters)`;
}

/**
 * Masks the password fields that GraphQL quotes when it rejects an input
 * object, as in `got invalid value { username: "x", password: "..." }`, so
 * that client-side error logs do not keep them.
 */
export function withoutPasswords(message: string): string {
  return message.replace(/(\b\w*password\b"?\s*:\s*)"(?:[^"\\]|\\.)*"/gi, '$1"[redacted]"');
}

/**
 * Masks the passwords that GraphQL quotes in a message: those of the running
 * request wherever they occur, and any string under a password key.
 */
function withoutQuotedPasswords(message: string): string {
  return withoutPasswords(withoutSecretValues(message));
}

/** Applies `rewrite` to each line of the error's stack trace, which development mode sends. */
export function mapStackLines(formatted: GraphQLFormattedError, rewrite: (line: string) => string): GraphQLFormattedError {
  const stacktrace = formatted.extensions?.stacktrace;
  if (!Array.isArray(stacktrace)) {
    return formatted;
  }
  return {
    ...formatted,
    extensions: { ...formatted.extensions, stacktrace: stacktrace.map((line) => (typeof line === 'string' ? rewrite(line) : line)) },
  };
}

function withoutStack(formatted: GraphQLFormattedError): GraphQLFormattedError {
  if (formatted.extensions === undefined || !('stacktrace' in formatted.extensions)) {
    return formatted;
  }
  const { stacktrace: _stacktrace, ...extensions } = formatted.extensions;
  return { ...formatted, extensions };
}
