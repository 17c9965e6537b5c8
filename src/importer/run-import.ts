/**
 * The bulk import: reads NDJSON files, defines missing pair types, resolves
 * and creates users, then sends each user's events in file order through
 * `sendEvents`, several users at a time.
 */

import {
  describeInvalidToken,
  GraphQLClient,
  GraphQLRequestError,
  graphqlEndpoint,
  isTransientError,
  TlsError,
  type UserSummary,
} from './graphql-client.js';
import type { ImportProgress } from './progress.js';
import { readImportInput, UnreadableFileError, type LineReader } from './read-input.js';
import { redactUrlPassword } from '../config/redact.js';
import { isUuid } from '../domain/user-id.js';
import { DEFAULT_RETRY_DELAYS_MS, RetriesExhaustedError, withRetry } from './retry.js';
import { sendAll } from './send-all.js';
import { checkOtherUserIds, ensurePairTypes, ensureUsers, ImportStopError, type CallServer } from './setup.js';
import { countStored } from './stored-counts.js';
import { createSummary, IssueReporter, type ImportSummary } from './summary.js';

export const DEFAULT_BATCH_SIZE = 500;
export const DEFAULT_CONCURRENCY = 4;
/**
 * Largest `batchSize` accepted. The server's own limit (MAX_BATCH_SIZE, 1000
 * by default) may be lower: a batch it rejects for size is cut to the maximum
 * it states, or halved, and later batches use that size.
 */
export const MAX_BATCH_SIZE = 10_000;
export const MAX_CONCURRENCY = 64;
/** Default wait for the replies of batches in flight once the import is stopped, in milliseconds. */
export const DEFAULT_REPLY_WAIT_MS = 10_000;

export interface RunImportOptions {
  /** Server base URL, for example `http://127.0.0.1:4000`, with GraphQL at `<url>/graphql`. */
  url: string;
  /** Bearer token. When it is absent, `username` and `password` are used to log in. */
  token?: string | null;
  username?: string | null;
  password?: string | null;
  files: readonly string[];
  /** Events per `sendEvents` request (default 500). */
  batchSize?: number;
  /** Users imported in parallel (default 4). */
  concurrency?: number;
  /** Called after each batch with the events processed so far. */
  onProgress?: (progress: ImportProgress) => void;
  /** Called with one line per reported problem or notable step (default: ignored). */
  onMessage?: (message: string) => void;
  /** Waits before each retry of a transient failure, in milliseconds (default 0.5 s to 8 s). */
  retryDelaysMs?: readonly number[];
  /** Time limit of one HTTP request, in milliseconds (default 60000). */
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  /** Clock for the elapsed time, in milliseconds (default `Date.now`). */
  now?: () => number;
  /** Source of NDJSON lines per file (default: read the file from disk). */
  readLines?: LineReader;
  /**
   * Stops the import: once it is aborted, no new batch or request starts,
   * not even a new login for an expired token. `runImport` throws
   * `ImportInterruptedError` when the batches in flight have their replies.
   * A string reason, such as `SIGINT`, names the cause in the message.
   */
  signal?: AbortSignal;
  /**
   * Wait for the replies of batches in flight after `signal` aborts, in
   * milliseconds (default 10000). Requests still open then are aborted.
   */
  replyWaitMs?: number;
}

/**
 * The import stopped before it processed every event: an unreadable file,
 * missing rights, a failed login, or a server that stayed unreachable.
 * `summary` counts what happened up to that point.
 */
export class ImportFailedError extends Error {
  readonly summary: ImportSummary;

  constructor(message: string, summary: ImportSummary, cause?: unknown) {
    super(message, { cause });
    this.name = 'ImportFailedError';
    this.summary = summary;
  }
}

/**
 * The import stopped because `signal` was aborted. `reason` is the signal's
 * reason, such as `SIGINT`, and `summary` counts what was stored before.
 * When an error of its own, such as an unreadable file, stopped the import
 * at the same time, the message names that error first, and `cause` is it.
 */
export class ImportInterruptedError extends ImportFailedError {
  readonly reason: unknown;

  constructor(message: string, summary: ImportSummary, reason: unknown, cause?: unknown) {
    super(message, summary, cause);
    this.name = 'ImportInterruptedError';
    this.reason = reason;
  }
}

function checkIntegerOption(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${value}`);
  }
}

interface Credentials {
  token: string | null;
  username: string | null;
  password: string | null;
}

/**
 * Runs the import and returns its summary. Throws `ImportFailedError` when it
 * stops early, and `TypeError` or `RangeError` for invalid options.
 */
export async function runImport(options: RunImportOptions): Promise<ImportSummary> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const concurrency = options.concurrency ?? DEFAULT_CONCURRENCY;
  checkIntegerOption('batchSize', batchSize, MAX_BATCH_SIZE);
  checkIntegerOption('concurrency', concurrency, MAX_CONCURRENCY);
  if (options.files.length === 0) {
    throw new TypeError('files is empty: name at least one NDJSON file');
  }
  const credentials: Credentials = {
    token: options.token ?? null,
    username: options.username ?? null,
    password: options.password ?? null,
  };
  if (
    credentials.token === null &&
    (credentials.username === null || credentials.password === null)
  ) {
    throw new TypeError('credentials are missing: give a token, or a username and a password');
  }
  const tokenProblem = credentials.token === null ? null : describeInvalidToken(credentials.token);
  if (tokenProblem !== null) {
    throw new TypeError(`token is invalid: ${tokenProblem}`);
  }
  const endpoint = graphqlEndpoint(options.url);

  const now = options.now ?? Date.now;
  const startedAt = now();
  const report = options.onMessage ?? (() => {});
  const summary = createSummary(options.files.length);
  const issues = new IssueReporter(summary, report);
  let sendingStarted = false;
  let eventsWithoutId = 0;
  let eventsWithoutReply = 0;

  // Once `signal` aborts, the requests in flight get `replyWaitMs` to finish
  // before they are aborted too.
  const { signal } = options;
  const requestAbort = new AbortController();
  let replyWaitTimer: NodeJS.Timeout | undefined;
  const startReplyWait = (): void => {
    replyWaitTimer = setTimeout(() => requestAbort.abort(), options.replyWaitMs ?? DEFAULT_REPLY_WAIT_MS);
  };
  signal?.addEventListener('abort', startReplyWait, { once: true });

  try {
    signal?.throwIfAborted();
    const input = await readImportInput(options.files, summary, issues, options.readLines, signal);
    issues.reportUnreported();
    signal?.throwIfAborted();
    eventsWithoutId = input.eventsWithoutId;
    if (summary.linesRead > 0 && summary.badLines === summary.linesRead) {
      throw new ImportStopError(describeNoRecords(summary.linesRead));
    }
    if (input.eventsWithoutId > 0) {
      const count = input.eventsWithoutId;
      report(
        count === 1
          ? '1 event has no id, so a retry or a re-run may store it twice'
          : `${count} events have no id, so a retry or a re-run may store them twice`,
      );
    }

    const client = new GraphQLClient({
      endpoint,
      token: credentials.token,
      fetch: options.fetch,
      requestTimeoutMs: options.requestTimeoutMs,
      signal: requestAbort.signal,
    });
    const retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const call = createCallServer(client, credentials, { retryDelaysMs, signal }, summary, report);

    const viewer = await authenticate(client, call, credentials, endpoint);
    signal?.throwIfAborted();
    const setup = { client, call, viewer, summary, report, issues, signal };
    checkOtherUserIds(setup, input.events);
    await ensurePairTypes(setup, input.pairTypes);

    const usernames = new Set<string>();
    for (const record of input.events) {
      if (record.username !== null) {
        usernames.add(record.username);
      }
    }
    const users = await ensureUsers(setup, [...usernames]);

    signal?.throwIfAborted();
    sendingStarted = true;
    const onEventsWithoutReply = (count: number): void => {
      eventsWithoutReply += count;
    };
    await sendAll(
      { ...setup, batchSize, concurrency, onProgress: options.onProgress, onEventsWithoutReply },
      input.events,
      users,
    );
    signal?.throwIfAborted();

    const importedUserIds = new Set<string>();
    for (const record of input.events) {
      const userId =
        record.username === null ? (record.event.input.userId ?? viewer.id) : users.ids.get(record.username);
      // The server rejected the events of an id that is not a UUID, and the
      // events filter would reject the whole read for it.
      if (userId !== undefined && isUuid(userId)) {
        importedUserIds.add(userId.toLowerCase());
      }
    }
    Object.assign(summary, await countStored(client, call, [...importedUserIds], signal));
  } catch (error) {
    issues.reportUnreported();
    summary.elapsedSeconds = (now() - startedAt) / 1000;
    if (signal?.aborted === true) {
      // An error of its own, such as an unreadable file, is named before the
      // stop, because it needs fixing before a re-run. The exit status stays
      // that of the signal.
      const progress = { sendingStarted, eventsWithoutId, eventsWithoutReply };
      const message = isCausedByStop(error, signal)
        ? describeInterruption(signal.reason, summary, progress)
        : describeFailureAtStop(error, signal.reason, progress);
      throw new ImportInterruptedError(message, summary, signal.reason, error);
    }
    throw new ImportFailedError(describeStop(error, sendingStarted), summary, error);
  } finally {
    signal?.removeEventListener('abort', startReplyWait);
    clearTimeout(replyWaitTimer);
  }

  issues.reportUnreported();
  summary.elapsedSeconds = (now() - startedAt) / 1000;
  return summary;
}

/**
 * Builds the wrapper of every server call: retries of transient failures,
 * counted in the summary, and one new login when a token from `login`
 * expires during a long import. Once `signal` is aborted, a request that
 * needs a new login fails with `LoginAfterStopError` instead.
 */
function createCallServer(
  client: GraphQLClient,
  credentials: Credentials,
  retry: { retryDelaysMs: readonly number[]; signal: AbortSignal | undefined },
  summary: ImportSummary,
  report: (message: string) => void,
): CallServer {
  const { retryDelaysMs, signal } = retry;
  const isStopped = (): boolean => signal?.aborted === true;
  return async <T>(operation: () => Promise<T>, label?: string): Promise<T> => {
    const attempt = () =>
      withRetry(operation, {
        delaysMs: retryDelaysMs,
        signal,
        onRetry: (error, retry, delayMs) => {
          summary.retries += 1;
          const detail = error instanceof Error ? error.message : String(error);
          const prefix = label === undefined ? '' : `${label}: `;
          report(`${prefix}${detail}; retry ${retry} of ${retryDelaysMs.length} in ${delayMs} ms`);
        },
      });

    try {
      return await attempt();
    } catch (error) {
      const { token, username, password } = credentials;
      // Without a token yet, the request that failed was the login itself, so
      // there is nothing to renew and its error is the one to show.
      const canLogIn = token === null && username !== null && password !== null && client.hasToken;
      if (!isUnauthenticated(error) || !canLogIn) {
        throw error;
      }
      // After the stop no new request starts, neither the login nor the
      // request sent again with its token.
      if (isStopped()) {
        throw new LoginAfterStopError(error);
      }
      report('the token expired; logging in again');
      await withRetry(() => client.login(username, password), { delaysMs: retryDelaysMs, signal });
      if (isStopped()) {
        throw new LoginAfterStopError(error);
      }
      return attempt();
    }
  };
}

/**
 * A request that failed because the token from `login` expired, and that
 * was not sent again with a new token because the import was stopped.
 * `cause` is the server's `UNAUTHENTICATED` error.
 */
class LoginAfterStopError extends Error {
  constructor(cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(`${detail}. The token expired, and after a stop the import does not log in again`, { cause });
    this.name = 'LoginAfterStopError';
  }
}

function isUnauthenticated(error: unknown): boolean {
  return error instanceof GraphQLRequestError && error.code === 'UNAUTHENTICATED';
}

/**
 * Logs in, or checks the token with `me`, and returns the user the import acts as.
 * `endpoint` is the GraphQL URL, named when the reply is no GraphQL reply.
 */
async function authenticate(
  client: GraphQLClient,
  call: CallServer,
  credentials: Credentials,
  endpoint: string,
): Promise<UserSummary> {
  const { token, username, password } = credentials;
  try {
    if (token === null && username !== null && password !== null) {
      return await call(() => client.login(username, password));
    }
    return await call(() => client.me());
  } catch (error) {
    if (error instanceof GraphQLRequestError) {
      const subject = token === null ? `login as "${username}"` : 'the token';
      const detail = error.errors[0]?.message ?? error.message;
      // Without a GraphQL errors list the reply came from something other
      // than the GraphQL endpoint, such as a 404 page for a wrong --url path,
      // so the credentials were never checked.
      if (error.code === `HTTP_${error.httpStatus}`) {
        throw new ImportStopError(
          `${subject} failed, because ${redactUrlPassword(endpoint)} sent no GraphQL reply but ${detail}. ` +
            'Check --url: it is the base URL of the server, and GraphQL is at URL/graphql',
          { cause: error },
        );
      }
      throw new ImportStopError(`${subject} was not accepted: ${detail}`, { cause: error });
    }
    throw error;
  }
}

/**
 * Describes input of which no line is an import record, such as a CASAS
 * sensor log given without converting it first.
 */
function describeNoRecords(linesRead: number): string {
  const lines = linesRead === 1 ? 'the only line read is' : `all ${linesRead} lines read are`;
  return (
    `${lines} invalid, so nothing was sent. The input does not look like NDJSON import records ` +
    'as npm run convert:casas writes them. Convert a CASAS log first, with ' +
    'npm run -s convert:casas -- FILE > events.ndjson, and import that file. Keep the -s, because ' +
    'without it npm writes its own lines into the file'
  );
}

/**
 * Describes an import stopped by its signal: what was sent, what may have
 * been stored without a reply, and that a re-run continues it.
 */
function describeInterruption(
  reason: unknown,
  summary: ImportSummary,
  progress: { sendingStarted: boolean; eventsWithoutId: number; eventsWithoutReply: number },
): string {
  const cause = typeof reason === 'string' ? `stopped by ${reason}` : 'stopped on request';
  if (!progress.sendingStarted) {
    return `${cause} before any event was sent. Run the same command again to import the files`;
  }
  let text = `${cause}: ${summary.eventsSent} of ${summary.eventsRead} events were sent and have a reply`;
  if (progress.eventsWithoutReply > 0) {
    text +=
      `, and ${progress.eventsWithoutReply} more were sent without a reply before the wait ended, ` +
      'so the server may have stored them';
  }
  text +=
    '. Stored events stay stored. Run the same command again to continue: the server stores ' +
    'an event with an id only once and counts a repeat as a duplicate';
  if (progress.eventsWithoutId > 0) {
    text += `, but it stores events without an id again (${progress.eventsWithoutId} in these files)`;
  }
  return text;
}

/**
 * Tells whether `error` comes from the stop itself: the signal's reason, an
 * aborted request, a transient failure that the stop left without a retry,
 * or a request that the stop left without a new login.
 */
function isCausedByStop(error: unknown, signal: AbortSignal): boolean {
  if (error === signal.reason || error instanceof LoginAfterStopError) {
    return true;
  }
  if (error instanceof Error && error.name === 'AbortError') {
    return true;
  }
  // `authenticate` wraps a failed login or `me` request in an ImportStopError.
  const failure = error instanceof ImportStopError ? error.cause : error;
  return isTransientError(failure);
}

/**
 * Describes an error that stopped the import on its own while the stop
 * signal was aborted: the error with its advice, then the stop and the
 * events that may have been stored without a reply.
 */
function describeFailureAtStop(
  error: unknown,
  reason: unknown,
  progress: { sendingStarted: boolean; eventsWithoutReply: number },
): string {
  const stop = typeof reason === 'string' ? `${reason} stopped the import` : 'A stop request came';
  let text = `${describeStop(error, progress.sendingStarted)}. ${stop} at the same time`;
  if (progress.eventsWithoutReply > 0) {
    text +=
      `, and ${progress.eventsWithoutReply} events were sent without a reply before the wait ended, ` +
      'so the server may have stored them';
  }
  return text;
}

/**
 * Turns the error that stopped the import into one message for the user.
 * `sendingStarted` is true once a `sendEvents` request may have reached
 * the server, which may have stored its events even when no reply came back.
 */
function describeStop(error: unknown, sendingStarted: boolean): string {
  if (error instanceof UnreadableFileError) {
    return `${error.message}; nothing was sent`;
  }
  if (error instanceof TlsError && sendingStarted) {
    return `${error.message}. Events already stored stay stored; run the same command again once the TLS problem is fixed`;
  }
  if (error instanceof ImportStopError || error instanceof TlsError) {
    return error.message;
  }
  if (error instanceof RetriesExhaustedError) {
    if (!sendingStarted) {
      return (
        `the server stayed unavailable (${error.message}). No event was sent; ` +
        'run the same command again when the server is up'
      );
    }
    return (
      `the server stayed unavailable (${error.message}). Events already stored stay stored; ` +
      'run the same command again to continue, because events with an id are not stored twice'
    );
  }
  if (error instanceof GraphQLRequestError) {
    return `the import stopped: ${error.message}`;
  }
  const detail = error instanceof Error ? error.message : String(error);
  return `the import stopped on an unexpected error: ${detail}`;
}
