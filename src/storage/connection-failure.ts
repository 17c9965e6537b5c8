/**
 * One-line messages for a failed connection to PostgreSQL or Redis, which the
 * server start-up and the `user`, `migrate` and `rebuild` commands print in
 * place of a stack trace. Passwords in URLs are masked as `***`.
 */
import { redactUrlPassword, type Config } from '../config/index.js';
import { QUERY_READ_TIMEOUT_MESSAGE } from './postgres/database.js';
import { RedisUnavailableError } from './redis/connection.js';

/** Names the database in use, with the password of its URL masked. */
export function describeDatabase(config: Config): string {
  return config.database.url === null
    ? `embedded PGlite in ${config.dataDir}`
    : `PostgreSQL at ${redactUrlPassword(config.database.url)}`;
}

/** Node.js socket and DNS error codes of a PostgreSQL server that cannot be reached. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * Messages of `pg` 8.x and `pg-pool` 3.x for a connection that was not
 * established within `connectionTimeoutMillis`, or that the server closed.
 */
const UNREACHABLE_MESSAGE =
  /timeout exceeded when trying to connect|Connection terminated due to connection timeout|Connection terminated unexpectedly/i;

const UNREACHABLE_ADVICE =
  'Check that PostgreSQL is running and accepts connections at that host and port, or correct DATABASE_URL.';

const STALLED_ADVICE =
  'PostgreSQL stopped replying on an open connection: check that its host is not overloaded or frozen, and the network between the two.';

/** PostgreSQL error codes (SQLSTATE) of a rejected connection, with what to do about each. */
const REJECTED_CONNECTION_ADVICE = new Map<string, string>([
  // invalid_catalog_name: the database in the URL does not exist.
  ['3D000', 'Create the database, for example with createdb, or correct its name in DATABASE_URL.'],
  // invalid_password
  ['28P01', 'Correct the user name or password in DATABASE_URL.'],
  // invalid_authorization_specification: an unknown role, or no pg_hba.conf entry for it.
  [
    '28000',
    'Correct the user name in DATABASE_URL, or create that role or allow it to connect in pg_hba.conf.',
  ],
]);

/** Messages of `pg` 8.x when the SSL request of a connection fails. */
const SSL_NEGOTIATION_MESSAGE =
  /^(The server does not support SSL connections|There was an error establishing an SSL connection)$/;

const SSL_NEGOTIATION_ADVICE =
  'Set sslmode in DATABASE_URL to what the server supports, for example sslmode=disable for a server without SSL, or enable SSL on the server.';

/** Node.js TLS error codes of a server certificate that does not verify. */
const CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

const CERTIFICATE_ADVICE =
  "The server's certificate did not verify: give its CA with sslrootcert in DATABASE_URL, or correct the host name or sslmode.";

/**
 * Advice for PostgreSQL errors of severity FATAL by SQLSTATE. PostgreSQL ends
 * the session after a FATAL error, such as one for an invalid startup
 * parameter that the `options` of DATABASE_URL set.
 */
const FATAL_ADVICE = new Map<string, string>([
  // too_many_connections
  ['53300', 'Lower DB_POOL_SIZE, stop other clients, or raise max_connections on the server.'],
  // cannot_connect_now: the server is starting up, shutting down or in recovery.
  ['57P03', 'Wait until PostgreSQL has started, then start again.'],
]);

const OTHER_FATAL_ADVICE =
  'PostgreSQL ended the connection: check the parameters in DATABASE_URL, such as options, and the server log.';

/**
 * Describes `error` when it, or an error in its `cause` chain, is a failed
 * connection to PostgreSQL or Redis: the setting, its target with the
 * password masked, the reason and what to do. Returns null for any other
 * error, such as a bug, whose stack trace the caller should print.
 */
export function describeConnectionFailure(error: unknown, config: Config): string | null {
  let cursor: unknown = error;
  for (let depth = 0; depth < 5 && cursor instanceof Error; depth += 1) {
    const message = describeOne(cursor, config);
    if (message !== null) {
      return message;
    }
    cursor = cursor.cause;
  }
  return null;
}

function describeOne(error: Error, config: Config): string | null {
  if (error instanceof RedisUnavailableError && config.redis.url !== null) {
    const cause = error.connectionError === null ? '' : ` (last connection error: ${error.connectionError})`;
    return (
      `connecting to Redis at ${redactUrlPassword(config.redis.url)} (REDIS_URL) failed: ${error.failure}${cause}. ` +
      'Check that Redis is running and accepts connections at that host and port, or correct REDIS_URL, ' +
      'including its password.'
    );
  }
  // Embedded PGlite opens files, not connections, so only a DATABASE_URL can fail this way.
  if (config.database.url === null) {
    return null;
  }

  const code = (error as { code?: unknown }).code;
  const advice = adviceForPostgresError(error, code);
  if (advice === null) {
    return null;
  }
  // An AggregateError from a host with several addresses has an empty message and only a code.
  const reason = error.message === '' ? String(code) : error.message;
  return `connecting to ${describeDatabase(config)} (DATABASE_URL) failed: ${reason}. ${advice}`;
}

/** Returns what to do about a PostgreSQL connection error, or null for an error of another kind. */
function adviceForPostgresError(error: Error, code: unknown): string | null {
  if (typeof code === 'string') {
    const rejected = REJECTED_CONNECTION_ADVICE.get(code);
    if (rejected !== undefined) {
      return rejected;
    }
    if (UNREACHABLE_CODES.has(code)) {
      return UNREACHABLE_ADVICE;
    }
    if (CERTIFICATE_CODES.has(code)) {
      return CERTIFICATE_ADVICE;
    }
  }
  if ((error as { severity?: unknown }).severity === 'FATAL') {
    return (typeof code === 'string' ? FATAL_ADVICE.get(code) : undefined) ?? OTHER_FATAL_ADVICE;
  }
  if (SSL_NEGOTIATION_MESSAGE.test(error.message)) {
    return SSL_NEGOTIATION_ADVICE;
  }
  if (error.message === QUERY_READ_TIMEOUT_MESSAGE) {
    return STALLED_ADVICE;
  }
  return UNREACHABLE_MESSAGE.test(error.message) ? UNREACHABLE_ADVICE : null;
}
