/**
 * The `import` command: parses arguments and credentials, runs `runImport`
 * with progress on stderr, and prints the summary on stdout. Kept apart from
 * `src/cli/import.ts` so tests can run it in process.
 */

import { constants as osConstants } from 'node:os';
import { parseArgs } from 'node:util';

import { redactUrlPassword } from '../config/redact.js';

import { escapeControlCharacters } from './escape.js';
import { describeInvalidToken } from './graphql-client.js';
import { ProgressReporter } from './progress.js';
import {
  DEFAULT_BATCH_SIZE,
  DEFAULT_CONCURRENCY,
  DEFAULT_REPLY_WAIT_MS,
  ImportFailedError,
  ImportInterruptedError,
  MAX_BATCH_SIZE,
  MAX_CONCURRENCY,
  runImport,
  type RunImportOptions,
} from './run-import.js';
import { formatSummary, isClean, type ImportSummary } from './summary.js';

export const DEFAULT_SERVER_URL = 'http://127.0.0.1:4000';

/**
 * Time after the first stop signal in which another one counts as the same,
 * in milliseconds. One Ctrl-C under `npm run import` can reach the import
 * twice in quick succession, first from the terminal. The second copy comes
 * from npm, which forwards signals to its child (npm 11), or from tsx, which
 * relays a signal that the import did not confirm within 30 ms (tsx 4.23).
 */
export const REPEATED_SIGNAL_MS = 1000;

export const IMPORT_USAGE = `\
Usage: npm run import -- [options] FILE...

Sends events from NDJSON files to an Event Master server over GraphQL.

Each line is {"kind":"pairType","input":{...}}, {"kind":"event","username":"NAME","input":{...}}
or a bare EventInput object, which is sent as an event of the logged-in user.

Options:
  --url URL           server base URL, without credentials; GraphQL is at URL/graphql
                      (default ${DEFAULT_SERVER_URL})
  --batch-size N      events per sendEvents request, 1 to ${MAX_BATCH_SIZE}
                      (default ${DEFAULT_BATCH_SIZE}); cut to the server's maximum when it
                      rejects a larger batch
  --concurrency N     users imported in parallel, 1 to ${MAX_CONCURRENCY}
                      (default ${DEFAULT_CONCURRENCY})
  --json              print the summary as JSON; to pipe it or write it to a file,
                      run \`npm run -s import -- --json ...\`, as npm writes its own
                      lines to standard output without -s
  --strict            exit with status 1 when any line was skipped, any event was
                      rejected or not sent, or any pair type was rejected or is
                      in conflict
  --help, -h          print this help

Credentials (environment):
  EVENT_MASTER_TOKEN                            a bearer token, used when set
  EVENT_MASTER_USERNAME, EVENT_MASTER_PASSWORD  otherwise, log in with these
Lines that name another user or define a pair type need the ADMIN role.

Exit status: 0 when every line was processed, 1 when the import stopped early,
no line of the input was valid, no event read was stored (all rejected or not
sent), or --strict found problems, 2 for invalid
options or missing credentials, 130 after Ctrl-C (SIGINT) and 143 after SIGTERM.
On the first of those signals the import sends no new batch, waits up to
${DEFAULT_REPLY_WAIT_MS / 1000} s for the replies of batches in flight and prints the summary. Another
one, ${REPEATED_SIGNAL_MS / 1000} s or more later, exits at once. Running the same command again
continues the import.
A summary that cannot be written, for example to a pipe whose reader exited,
is reported on stderr and leaves the exit status as it is.
`;

export const IMPORT_EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface ImportCommandOptions {
  url: string;
  batchSize: number;
  concurrency: number;
  json: boolean;
  strict: boolean;
  files: string[];
}

/** An invalid command line or environment. The message names the value to change. */
export class ImportUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportUsageError';
  }
}

function parseCount(
  option: string,
  text: string | undefined,
  fallback: number,
  max: number,
): number {
  if (text === undefined) {
    return fallback;
  }
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new ImportUsageError(`invalid ${option} "${text}": expected an integer from 1 to ${max}`);
  }
  return value;
}

/** Parses the import's arguments, or returns `'help'` when help was requested. */
export function parseImportArgs(argv: readonly string[]): ImportCommandOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        'batch-size': { type: 'string' },
        concurrency: { type: 'string' },
        json: { type: 'boolean' },
        strict: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new ImportUsageError(error instanceof Error ? error.message : String(error));
  }

  const { values, positionals } = parsed;
  if (values.help === true) {
    return 'help';
  }
  if (positionals.length === 0) {
    throw new ImportUsageError('missing FILE: name at least one NDJSON file to import');
  }

  const url = values.url ?? DEFAULT_SERVER_URL;
  const maskedUrl = redactUrlPassword(url);
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    throw new ImportUsageError(
      `invalid --url "${maskedUrl}": expected a URL such as ${DEFAULT_SERVER_URL}`,
    );
  }
  if (parsedUrl.protocol !== 'http:' && parsedUrl.protocol !== 'https:') {
    throw new ImportUsageError(`invalid --url "${maskedUrl}": expected an http:// or https:// URL`);
  }
  if (parsedUrl.username !== '' || parsedUrl.password !== '') {
    // fetch rejects such a URL, and a password in the arguments shows in ps and in the shell history.
    throw new ImportUsageError(
      `invalid --url "${maskedUrl}": it contains a user name or password. Remove them from the URL ` +
        'and set EVENT_MASTER_USERNAME and EVENT_MASTER_PASSWORD, or EVENT_MASTER_TOKEN, instead',
    );
  }

  return {
    url,
    batchSize: parseCount(
      '--batch-size',
      values['batch-size'],
      DEFAULT_BATCH_SIZE,
      MAX_BATCH_SIZE,
    ),
    concurrency: parseCount(
      '--concurrency',
      values.concurrency,
      DEFAULT_CONCURRENCY,
      MAX_CONCURRENCY,
    ),
    json: values.json === true,
    strict: values.strict === true,
    files: positionals,
  };
}

export interface ImportCredentials {
  token: string | null;
  username: string | null;
  password: string | null;
}

/** Reads credentials from the environment. A token wins over a username and password. */
export function readCredentials(env: NodeJS.ProcessEnv): ImportCredentials {
  // Surrounding white space, such as the line break of a token file read
  // with $(cat token.txt) on Windows line endings, is not part of the token.
  const token = nonEmpty(env.EVENT_MASTER_TOKEN?.trim());
  if (token !== null) {
    const problem = describeInvalidToken(token);
    if (problem !== null) {
      throw new ImportUsageError(`invalid EVENT_MASTER_TOKEN: ${problem}. Set it to the token alone`);
    }
    return { token, username: null, password: null };
  }

  const username = nonEmpty(env.EVENT_MASTER_USERNAME);
  const password = nonEmpty(env.EVENT_MASTER_PASSWORD);
  if (username === null || password === null) {
    throw new ImportUsageError(
      'missing credentials: set EVENT_MASTER_TOKEN, ' +
        'or both EVENT_MASTER_USERNAME and EVENT_MASTER_PASSWORD',
    );
  }
  return { token: null, username, password };
}

function nonEmpty(value: string | undefined): string | null {
  return value === undefined || value === '' ? null : value;
}

export interface ImportIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** True when stderr is a terminal, so progress is one line rewritten in place. */
  stderrIsTTY: boolean;
  env: NodeJS.ProcessEnv;
  /**
   * Stops the import when it is aborted, with the name of the signal that
   * stopped it, such as `SIGINT`, as the reason (see `listenForStopSignals`).
   */
  stopSignal?: AbortSignal;
  /** Extra options for tests: a fake `fetch`, short retry delays, a clock. */
  overrides?: Partial<
    Pick<RunImportOptions, 'fetch' | 'retryDelaysMs' | 'now' | 'requestTimeoutMs' | 'replyWaitMs'>
  >;
}

/** Returns the exit status of a process stopped by `signal`, 128 plus its number as shells report it, or 1 for another reason. */
export function signalExitCode(signal: unknown): number {
  const number = typeof signal === 'string' ? osConstants.signals[signal as NodeJS.Signals] : undefined;
  return number === undefined ? IMPORT_EXIT.failed : 128 + number;
}

/** The parts of `process` that `listenForStopSignals` uses. */
export interface SignalTarget {
  on(event: 'SIGINT' | 'SIGTERM', listener: (signal: NodeJS.Signals) => void): unknown;
  exit(code: number): void;
}

/**
 * Returns a signal that the first SIGINT or SIGTERM aborts, with the signal's
 * name as its reason. A second signal of either kind, `REPEATED_SIGNAL_MS`
 * or more after the first, writes a line to `stderr` and exits at once,
 * without waiting for replies. `now` is the clock in milliseconds.
 */
export function listenForStopSignals(
  target: SignalTarget,
  stderr: NodeJS.WritableStream,
  now: () => number = Date.now,
): AbortSignal {
  const controller = new AbortController();
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!controller.signal.aborted) {
      firstSignalAt = now();
      controller.abort(signal);
      return;
    }
    if (now() - firstSignalAt < REPEATED_SIGNAL_MS) {
      return;
    }
    stderr.write(
      `import: ${signal} received again; exiting without waiting for replies. ` +
        'Run the same command again to continue the import\n',
    );
    target.exit(signalExitCode(signal));
  };
  target.on('SIGINT', onSignal);
  target.on('SIGTERM', onSignal);
  return controller.signal;
}

/** Runs the import command and returns the process exit code. */
export async function runImportCommand(argv: readonly string[], io: ImportIo): Promise<number> {
  let options: ImportCommandOptions | 'help';
  let credentials: ImportCredentials;
  try {
    options = parseImportArgs(argv);
    if (options === 'help') {
      io.stdout.write(IMPORT_USAGE);
      return IMPORT_EXIT.ok;
    }
    credentials = readCredentials(io.env);
  } catch (error) {
    if (error instanceof ImportUsageError) {
      io.stderr.write(`import: ${escapeControlCharacters(error.message)}\n\n${IMPORT_USAGE}`);
      return IMPORT_EXIT.usage;
    }
    throw error;
  }

  const progress = new ProgressReporter({ stream: io.stderr, isTTY: io.stderrIsTTY });
  const replyWaitMs = io.overrides?.replyWaitMs ?? DEFAULT_REPLY_WAIT_MS;
  const noteStop = (): void => {
    const reason = io.stopSignal?.reason;
    const name = typeof reason === 'string' ? reason : 'a stop request';
    // A repeat within REPEATED_SIGNAL_MS counts as the same signal, so the advice names the wait.
    const again = reason === 'SIGINT' ? 'Press Ctrl-C again' : 'Send SIGINT or SIGTERM again';
    progress.note(
      `import: ${name} received: sending no new batches and waiting up to ${replyWaitMs / 1000} s ` +
        `for the replies of batches in flight. ${again}, ${REPEATED_SIGNAL_MS / 1000} s or more ` +
        'from now, to exit at once',
    );
  };
  io.stopSignal?.addEventListener('abort', noteStop, { once: true });
  const printSummary = async (summary: ImportSummary): Promise<void> => {
    const text = options.json ? `${JSON.stringify(summary, null, 2)}\n` : formatSummary(summary);
    try {
      await writeText(io.stdout, text);
    } catch (error) {
      // The import has finished, so its exit status does not change.
      const detail = error instanceof Error ? error.message : String(error);
      io.stderr.write(`import: cannot write the summary: ${detail}\n`);
    }
  };

  let summary: ImportSummary;
  try {
    summary = await runImport({
      url: options.url,
      ...credentials,
      files: options.files,
      batchSize: options.batchSize,
      concurrency: options.concurrency,
      onProgress: (update) => progress.update(update),
      onMessage: (message) => progress.note(`import: ${message}`),
      signal: io.stopSignal,
      ...io.overrides,
    });
  } catch (error) {
    // Nothing is in flight any more, so a signal from now on has nothing to wait for.
    io.stopSignal?.removeEventListener('abort', noteStop);
    progress.finish();
    if (error instanceof ImportInterruptedError) {
      io.stderr.write(`import: ${escapeControlCharacters(error.message)}\n`);
      await printSummary(error.summary);
      return signalExitCode(error.reason);
    }
    if (error instanceof ImportFailedError) {
      io.stderr.write(`import: ${escapeControlCharacters(error.message)}\n`);
      await printSummary(error.summary);
      return IMPORT_EXIT.failed;
    }
    throw error;
  } finally {
    io.stopSignal?.removeEventListener('abort', noteStop);
  }

  progress.finish();
  await printSummary(summary);
  if (summary.eventsRead > 0 && summary.stored + summary.duplicates === 0) {
    io.stderr.write(
      `import: none of the ${summary.eventsRead} events read was stored: ` +
        `${summary.rejected} rejected by the server, ${summary.notSent} not sent because their user could not be created\n`,
    );
    return IMPORT_EXIT.failed;
  }
  if (options.strict && !isClean(summary)) {
    io.stderr.write(
      `import: --strict: ${summary.badLines} bad lines, ${summary.rejected} rejected events, ` +
        `${summary.notSent} events not sent, ` +
        `${summary.pairTypeConflicts.length} pair type conflicts, ` +
        `${summary.pairTypesRejected.length} pair types rejected\n`,
    );
    return IMPORT_EXIT.failed;
  }
  return IMPORT_EXIT.ok;
}

/**
 * Writes `text` and resolves once it is written. Rejects with the stream's
 * error, such as EPIPE when the reader of a pipe exited, instead of leaving
 * the error unhandled.
 */
async function writeText(stream: NodeJS.WritableStream, text: string): Promise<void> {
  let failure: unknown = null;
  const recordFailure = (error: unknown): void => {
    failure ??= error;
  };
  // The listener is not removed, because a stream may emit the error again after the callback.
  stream.on('error', recordFailure);
  await new Promise<void>((resolve, reject) => {
    stream.write(text, (error?: Error | null) => (error ? reject(error) : resolve()));
  });
  if (failure !== null) {
    throw failure;
  }
}
