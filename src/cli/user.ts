/**
 * Manages accounts from the command line, against the database the server
 * uses (DATABASE_URL, or embedded PGlite under DATA_DIR).
 *
 *     npm run user -- create NAME --role ADMIN|ANALYST|MEMBER   (password on standard input)
 *     npm run user -- list [--json]
 *     npm run user -- set-password NAME                          (password on standard input)
 *     npm run user -- set-role NAME --role ROLE
 *     npm run user -- disable NAME | enable NAME
 *
 * Pending migrations are applied first, as the server does at start-up, so
 * the first admin can be created before the server has ever run.
 */
import { loadDotEnvFile } from '../config/dotenv.js';
import { isUtf8 } from 'node:buffer';
import { parseArgs } from 'node:util';

import pino, { type Logger } from 'pino';

import type { LoginRateLimiter } from '../auth/rate-limit.js';
import type { TokenService } from '../auth/tokens.js';
import { ROLES, isRole, type Role } from '../auth/viewer.js';
import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { DomainError } from '../domain/errors.js';
import { UserService } from '../services/users.js';
import { describeConnectionFailure, describeDatabase } from '../storage/connection-failure.js';
import { openDatabase, type Database } from '../storage/postgres/database.js';

const USAGE = `Usage:
  npm run user -- create NAME --role ADMIN|ANALYST|MEMBER
  npm run user -- list [--json]
  npm run user -- set-password NAME
  npm run user -- set-role NAME --role ADMIN|ANALYST|MEMBER
  npm run user -- disable NAME
  npm run user -- enable NAME

Commands:
  create NAME        create an account; the password is the first line of
                     standard input, or, on a terminal, typed twice without echo
  list               print every account: username, role, status, id and
                     creation time
  set-password NAME  replace the password, read as for create, and revoke the
                     account's tokens; this is how to recover a lost admin
                     password
  set-role NAME      change the role to --role
  disable NAME       disable the account: its tokens fail at their next request
                     and its logins fail as a wrong password does
  enable NAME        enable a disabled account again; tokens issued before it
                     was disabled stay revoked

Options:
  --role ROLE   role of the account: ${ROLES.join(', ')} (required for create and set-role)
  --json        print the list as JSON; to pipe it or write it to a file, run
                \`npm run -s user -- list --json\`, as npm writes its own lines
                to standard output without -s
  --help, -h    print this help

The database is the one the server uses: DATABASE_URL, or the embedded PGlite
database under DATA_DIR when DATABASE_URL is unset. Pending migrations are
applied first. Embedded PGlite allows one process at a time, so stop the
server before running this command against the same DATA_DIR.

Example: npm run user -- create alice --role ADMIN < password.txt

Exit status: 0 on success, 1 when the account was rejected or the database
failed, 2 for invalid arguments or configuration.
`;

const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

const COMMANDS = 'create, list, set-password, set-role, disable or enable';

/**
 * Maximum length in bytes of the line read from standard input. Passwords are
 * limited to 1024 characters, so this only stops a stream without a newline
 * from filling the memory.
 */
const MAX_INPUT_LINE_BYTES = 65_536;

type UserCommand =
  | { kind: 'create'; username: string; role: Role }
  | { kind: 'list'; json: boolean }
  | { kind: 'set-password'; username: string }
  | { kind: 'set-role'; username: string; role: Role }
  | { kind: 'disable' | 'enable'; username: string }
  | { kind: 'help' };

/** Returns the one NAME of a command that takes exactly one. */
function singleName(command: string, rest: readonly string[]): string {
  if (rest.length !== 1 || rest[0] === undefined) {
    throw new UsageError(`${command} expects exactly one NAME, but got ${rest.length} arguments.`);
  }
  return rest[0];
}

/** Reads --role for a command that requires it. */
function requiredRole(command: string, value: string | undefined): Role {
  if (value === undefined) {
    throw new UsageError(`${command} requires --role, one of ${ROLES.join(', ')}.`);
  }
  const role = value.toUpperCase();
  if (!isRole(role)) {
    throw new UsageError(`--role ${JSON.stringify(value)} is invalid: use one of ${ROLES.join(', ')}.`);
  }
  return role;
}

/** An invalid command line. The message names the argument to change. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the user can act on, printed without a stack trace. */
class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

function parseCommand(argv: readonly string[]): UserCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        role: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    return { kind: 'help' };
  }

  const [command, ...rest] = positionals;
  switch (command) {
    case 'create': {
      const username = singleName(command, rest);
      const role = requiredRole(command, values.role);
      if (values.json) {
        throw new UsageError('--json applies only to list.');
      }
      return { kind: 'create', username, role };
    }
    case 'set-role': {
      const username = singleName(command, rest);
      const role = requiredRole(command, values.role);
      if (values.json) {
        throw new UsageError('--json applies only to list.');
      }
      return { kind: 'set-role', username, role };
    }
    case 'set-password':
    case 'disable':
    case 'enable': {
      const username = singleName(command, rest);
      if (values.role !== undefined || values.json) {
        throw new UsageError(`${command} takes no options.`);
      }
      return { kind: command, username };
    }
    case 'list': {
      if (rest.length > 0) {
        throw new UsageError(`list takes no arguments, but got ${rest.length}.`);
      }
      if (values.role !== undefined) {
        throw new UsageError('--role applies only to create and set-role.');
      }
      return { kind: 'list', json: values.json };
    }
    case undefined:
      throw new UsageError(`A command is missing: use ${COMMANDS}.`);
    default:
      throw new UsageError(`Unknown command ${JSON.stringify(command)}: use ${COMMANDS}.`);
  }
}

/** Reads the new password: twice without echo on a terminal, else the first line of standard input. */
async function readNewPassword(): Promise<string> {
  const input = process.stdin;
  if (input.isTTY) {
    const [password, repeated] = await promptHidden(['Password: ', 'Repeat password: '], input, process.stderr);
    if (password !== repeated) {
      throw new CommandError('The two passwords differ. Nothing was stored.');
    }
    return password ?? '';
  }

  const line = await readFirstLine(input);
  if (line === null) {
    throw new CommandError(
      'No password on standard input. Pipe it as one line, for example: npm run user -- create NAME --role ROLE < password.txt',
    );
  }
  return line;
}

/**
 * Returns the first line of a stream without a leading byte order mark and
 * without its line terminator (LF or CRLF), or null when the stream ends before any byte. Spaces are kept
 * because they are part of the password.
 */
async function readFirstLine(input: NodeJS.ReadableStream): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  let sawData = false;
  for await (const chunk of input) {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
    sawData ||= bytes.length > 0;
    const newline = bytes.indexOf(0x0a);
    const part = newline === -1 ? bytes : bytes.subarray(0, newline);
    chunks.push(part);
    size += part.length;
    if (size > MAX_INPUT_LINE_BYTES) {
      throw new CommandError(`The first line of standard input is longer than ${MAX_INPUT_LINE_BYTES} bytes.`);
    }
    if (newline !== -1) {
      // Leaving the loop destroys the stream, so the rest of the input is never read.
      break;
    }
  }
  if (!sawData) {
    return null;
  }
  const bytes = Buffer.concat(chunks);
  if (!isUtf8(bytes)) {
    // Decoding would replace such bytes with U+FFFD, and other bytes would then log in too.
    throw new CommandError('The first line of standard input is not valid UTF-8. Nothing was stored.');
  }
  // A byte order mark, which some editors write at the start of a UTF-8
  // file, is not part of the password that the user types to log in.
  const line = bytes.toString('utf8').replace(/^\uFEFF/, '');
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/**
 * Writes each prompt to `output` and reads one line per prompt from the
 * terminal `input` in raw mode, so the typed characters are not echoed.
 * Backspace deletes the last character. Ctrl-C, and Ctrl-D on an empty line,
 * cancel. One listener reads all lines, so a paste of several lines at once
 * fills several prompts.
 */
async function promptHidden(
  prompts: readonly string[],
  input: NodeJS.ReadStream,
  output: NodeJS.WriteStream,
): Promise<string[]> {
  const lines: string[] = [];
  // Raw mode first: a character typed right after the prompt appears must
  // not be echoed.
  input.setRawMode(true);
  input.resume();
  output.write(prompts[0] ?? '');

  try {
    return await new Promise<string[]>((resolve, reject) => {
      // Bytes, not text: a character may arrive split over two chunks, and
      // bytes that are not UTF-8 must be rejected, not decoded to U+FFFD.
      let lineBytes: number[] = [];
      const stop = (error: Error | null) => {
        input.off('data', onData);
        if (error === null) {
          resolve(lines);
        } else {
          output.write('\n');
          reject(error);
        }
      };
      const onData = (chunk: Buffer) => {
        for (const byte of chunk) {
          if (byte === 0x0d || byte === 0x0a) {
            output.write('\n');
            const line = Buffer.from(lineBytes);
            lineBytes = [];
            if (!isUtf8(line)) {
              stop(new CommandError('The typed password is not valid UTF-8; set the terminal to UTF-8. Nothing was stored.'));
              return;
            }
            lines.push(line.toString('utf8'));
            if (lines.length === prompts.length) {
              stop(null);
              return;
            }
            output.write(prompts[lines.length] ?? '');
            continue;
          }
          if (byte === 0x03 || (byte === 0x04 && lineBytes.length === 0)) {
            stop(new CommandError('Cancelled. Nothing was stored.'));
            return;
          }
          if (byte === 0x7f || byte === 0x08) {
            // Deletes the last character: its UTF-8 continuation bytes (10xxxxxx), then its first byte.
            while (lineBytes.length > 0 && ((lineBytes.at(-1) ?? 0) & 0xc0) === 0x80) {
              lineBytes.pop();
            }
            lineBytes.pop();
            continue;
          }
          lineBytes.push(byte);
        }
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
  }
}

/**
 * Builds a UserService for account management only. Login is never called
 * here, so its token service and rate limiter reject every use.
 */
function createUserService(db: Database, config: Config, logger: Logger): UserService {
  const unavailable = (): never => {
    throw new Error('Login is not available in the user command.');
  };
  const tokens: TokenService = { issue: unavailable, verify: unavailable };
  const rateLimiter: LoginRateLimiter = {
    beginAttempt: unavailable,
    recordFailure: unavailable,
    recordSuccess: unavailable,
    cancelAttempt: unavailable,
  };
  return new UserService({
    prisma: db.prisma,
    tokens,
    rateLimiter,
    passwordScryptLog2N: config.auth.passwordScryptLog2N,
    logger,
  });
}

async function run(command: Exclude<UserCommand, { kind: 'help' }>, config: Config): Promise<void> {
  // Logs go to standard error, so standard output carries only the result.
  // Unless LOG_LEVEL is set, only warnings and errors are logged, because the
  // result line already reports what the service logs at info level.
  const level = process.env.LOG_LEVEL === undefined || process.env.LOG_LEVEL === '' ? 'warn' : config.logLevel;
  const logger = pino({ level }, pino.destination({ fd: 2, sync: true }));

  // Read before opening the database, so a terminal prompt is not delayed
  // and a missing password costs no connection.
  const password = command.kind === 'create' || command.kind === 'set-password' ? await readNewPassword() : null;

  let db: Database;
  try {
    db = await openDatabase({
      databaseUrl: config.database.url ?? undefined,
      dataDir: config.dataDir,
      poolSize: 1,
      statementTimeoutMs: config.database.statementTimeoutMs,
      migrationLockTimeoutMs: config.database.migrationLockTimeoutMs,
      logger,
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      throw error;
    }
    throw new CommandError(`Opening the database (${describeDatabase(config)}) failed: ${(error as Error).message}`);
  }

  try {
    const migrations = await db.migrate();
    if (migrations.applied.length > 0) {
      process.stderr.write(`Applied pending migrations: ${migrations.applied.join(', ')}\n`);
    }
    if (migrations.unknown.length > 0) {
      process.stderr.write(
        `warning: the database has applied migrations that this version does not contain: ${migrations.unknown.join(', ')}. ` +
          'Such migrations come from a newer version of the service.\n',
      );
    }
    const users = createUserService(db, config, logger);

    if (command.kind === 'create') {
      const user = await users.create({ username: command.username, password: password ?? '', role: command.role });
      process.stdout.write(`Created user ${user.username} with role ${user.role} and id ${user.id}.\n`);
      return;
    }
    if (command.kind !== 'list') {
      const found = await users.findByUsername(command.username);
      if (found === null) {
        throw new CommandError(`User ${JSON.stringify(command.username)} not found. List the users with: npm run user -- list`);
      }
      const changes =
        command.kind === 'set-password'
          ? { password: password ?? '' }
          : command.kind === 'set-role'
            ? { role: command.role }
            : { disabled: command.kind === 'disable' };
      // The operator on the command line may change any account, their own included.
      const user = await users.update(null, { id: found.id, ...changes });
      const outcome =
        command.kind === 'set-password'
          ? 'has a new password'
          : command.kind === 'set-role'
            ? `has the role ${user.role}`
            : command.kind === 'disable'
              ? 'is disabled'
              : 'is enabled';
      process.stdout.write(`User ${user.username} ${outcome}.\n`);
      return;
    }

    const list = await users.list();
    if (command.json) {
      const rows = list.map((user) => ({
        id: user.id,
        username: user.username,
        role: user.role,
        disabled: user.disabledAt !== null,
        createdAt: user.createdAt.toISOString(),
      }));
      process.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      return;
    }
    if (list.length === 0) {
      process.stdout.write('No users. Create one with: npm run user -- create NAME --role ADMIN\n');
      return;
    }
    process.stdout.write(formatTable(list));
  } finally {
    await db.close();
  }
}

function formatTable(
  users: ReadonlyArray<{ id: string; username: string; role: string; createdAt: Date; disabledAt: Date | null }>,
): string {
  const header = ['USERNAME', 'ROLE', 'STATUS', 'ID', 'CREATED AT'];
  const rows = users.map((user) => [
    user.username,
    user.role,
    user.disabledAt === null ? 'enabled' : 'disabled',
    user.id,
    user.createdAt.toISOString(),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const lines = [header, ...rows].map((row) =>
    row
      .map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  '),
  );
  return `${lines.join('\n')}\n`;
}

async function main(argv: readonly string[]): Promise<number> {
  let command: UserCommand;
  let config: Config;
  try {
    command = parseCommand(argv);
    if (command.kind === 'help') {
      process.stdout.write(USAGE);
      return EXIT.ok;
    }
    loadDotEnvFile();
    config = loadConfig();
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`error: ${error.message}\nRun npm run user -- --help for usage.\n`);
      return EXIT.usage;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    throw error;
  }

  try {
    await run(command, config);
    return EXIT.ok;
  } catch (error) {
    if (error instanceof DomainError || error instanceof CommandError) {
      process.stderr.write(`error: ${error.message}\n`);
      return EXIT.failed;
    }
    // An unusable DATA_DIR is found only when the database opens.
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    // A PostgreSQL pool connects at its first query, so a wrong DATABASE_URL
    // fails in db.migrate(), not in openDatabase().
    const failure = describeConnectionFailure(error, config);
    if (failure !== null) {
      process.stderr.write(`error: ${failure}\n`);
      return EXIT.failed;
    }
    process.stderr.write(`error: the user command failed: ${error instanceof Error ? error.message : String(error)}\n`);
    return EXIT.failed;
  }
}

process.exitCode = await main(process.argv.slice(2));
