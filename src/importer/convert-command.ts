/**
 * The `convert:casas` command: reads CASAS files and writes NDJSON import
 * records to stdout. Kept apart from `src/cli/convert-casas.ts` so tests can
 * run it in process with their own streams.
 */

import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';

import { usernameProblem } from '../domain/username.js';

import {
  convertCasasLines,
  formatCasasNdjson,
  isValidTimeZone,
  type CasasFileConversion,
  type CasasSourceLine,
} from './casas.js';
import { escapeControlCharacters } from './escape.js';
import { splitByteLines, utf16Encoding, Utf16InputError } from './ndjson.js';

export const CONVERT_USAGE = `\
Usage: npm run -s convert:casas -- [--time-zone ZONE] [--user NAME] FILE... > events.ndjson

Converts WSU CASAS sensor logs into NDJSON records for \`npm run import\`.
Keep npm's -s, because without it npm writes its own "> event-master..."
lines to standard output, so they land in the NDJSON file and the import
skips them as invalid JSON.

Options:
  --time-zone ZONE  IANA time zone the zoneless time stamps are read in (default UTC)
  --user NAME       user that receives the events (default: the file name without
                    extension); only valid with a single file
  --help, -h        print this help

Lines that cannot be converted, such as lines that are not valid UTF-8 or are
cut off, are skipped and reported on standard error with file, line number
and reason, followed by the total of skipped lines. The other lines are
converted.

Exit status: 0 when every file was read, even with skipped lines; 1 when a
file could not be read (nothing is written) or the output could not be
written, for example because the reader of a pipe exited; 2 for invalid
arguments, such as a user name the server would reject.
`;

/** Exit codes of the converter. */
export const CONVERT_EXIT = { ok: 0, unreadableFile: 1, unwritableOutput: 1, usage: 2 } as const;

export interface ConvertOptions {
  timeZone: string;
  user: string | null;
  files: string[];
}

/** An invalid command line. The message names the value to change. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Parses the converter's arguments, or returns `'help'` when help was requested. */
export function parseConvertArgs(argv: readonly string[]): ConvertOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        'time-zone': { type: 'string' },
        user: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }

  if (parsed.values.help === true) {
    return 'help';
  }

  const files = parsed.positionals;
  if (files.length === 0) {
    throw new UsageError('missing FILE: name at least one CASAS file to convert');
  }

  const timeZone = parsed.values['time-zone'] ?? 'UTC';
  if (!isValidTimeZone(timeZone)) {
    throw new UsageError(
      `invalid --time-zone "${timeZone}": expected an IANA time zone such as UTC or Asia/Tokyo`,
    );
  }

  const user = parsed.values.user ?? null;
  if (user !== null && user.trim() === '') {
    throw new UsageError('invalid --user: the user name is empty');
  }
  const userProblem = user === null ? null : usernameProblem(user);
  if (userProblem !== null) {
    throw new UsageError(`invalid --user: ${userProblem}`);
  }
  if (user !== null && files.length > 1) {
    throw new UsageError(
      `--user is only valid with one file, but ${files.length} files were given; ` +
        'without --user each file goes to the user named like the file',
    );
  }

  // Ids are built from the base name, so two files with one base name would
  // produce the same ids for the same user, and the second would be dropped as
  // duplicates on import.
  const seen = new Map<string, string>();
  for (const file of files) {
    const base = fileBaseName(file);
    const baseProblem = user === null ? usernameProblem(base) : null;
    if (baseProblem !== null) {
      throw new UsageError(
        `"${file}" would go to the user named like the file, but that ${baseProblem}; rename the file or pass --user NAME`,
      );
    }
    const previous = seen.get(base);
    if (previous !== undefined) {
      throw new UsageError(
        `"${previous}" and "${file}" have the same base name "${base}", ` +
          'so their event ids would collide; rename one',
      );
    }
    seen.set(base, file);
  }

  return { timeZone, user, files };
}

/** Returns the file name without folder and extension: `data/P002.txt` -> `P002`. */
export function fileBaseName(file: string): string {
  const name = basename(file);
  return name.slice(0, name.length - extname(name).length);
}

export interface ConvertIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Reader of a file's bytes (default: `readFile` from disk). */
  readBytes?: (file: string) => Promise<Buffer>;
}

/**
 * Splits file bytes into numbered lines. A line that is not valid UTF-8 has
 * `text` null, so it is reported and skipped rather than converted with
 * U+FFFD in place of its bad bytes.
 */
async function splitCasasBytes(bytes: Buffer): Promise<CasasSourceLine[]> {
  const lines: CasasSourceLine[] = [];
  for await (const line of splitByteLines([bytes])) {
    lines.push(line);
  }
  return lines;
}

/** Runs the converter and returns the process exit code. */
export async function runConvertCommand(argv: readonly string[], io: ConvertIo): Promise<number> {
  const readBytes = io.readBytes ?? ((file: string) => readFile(file));

  let options: ConvertOptions | 'help';
  try {
    options = parseConvertArgs(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr.write(`convert:casas: ${escapeControlCharacters(error.message)}\n\n${CONVERT_USAGE}`);
      return CONVERT_EXIT.usage;
    }
    throw error;
  }
  if (options === 'help') {
    io.stdout.write(CONVERT_USAGE);
    return CONVERT_EXIT.ok;
  }

  io.stderr.write(`convert:casas: reading time stamps as local time in ${options.timeZone}\n`);

  // Read every file before writing anything, so an unreadable file leaves no
  // partial output behind for the import to pick up.
  const contents: Buffer[] = [];
  let unreadable = 0;
  for (const file of options.files) {
    try {
      const bytes = await readBytes(file);
      const encoding = utf16Encoding(bytes);
      if (encoding !== null) {
        throw new Utf16InputError(encoding);
      }
      contents.push(bytes);
    } catch (error) {
      unreadable += 1;
      const reason = error instanceof Error ? error.message : String(error);
      io.stderr.write(`convert:casas: cannot read ${escapeControlCharacters(`${file}: ${reason}`)}\n`);
    }
  }
  if (unreadable > 0) {
    io.stderr.write(
      `convert:casas: ${unreadable} file(s) could not be read; nothing was written\n`,
    );
    return CONVERT_EXIT.unreadableFile;
  }

  const conversions: CasasFileConversion[] = [];
  for (const [index, file] of options.files.entries()) {
    const fileBase = fileBaseName(file);
    const lines = await splitCasasBytes(contents[index] ?? Buffer.alloc(0));
    const conversion = convertCasasLines(lines, {
      fileBase,
      username: options.user ?? fileBase,
      timeZone: options.timeZone,
    });
    reportConversion(io.stderr, file, conversion);
    conversions.push(conversion);
  }
  reportSkippedTotal(io.stderr, conversions);

  try {
    await writeLines(io.stdout, formatCasasNdjson(conversions));
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    io.stderr.write(`convert:casas: cannot write the output: ${detail}; the output is incomplete\n`);
    return CONVERT_EXIT.unwritableOutput;
  }
  return CONVERT_EXIT.ok;
}

function reportConversion(
  stderr: NodeJS.WritableStream,
  file: string,
  conversion: CasasFileConversion,
): void {
  for (const issue of conversion.issues) {
    stderr.write(`convert:casas: ${escapeControlCharacters(`${file}:${issue.line}: skipped line: ${issue.reason}`)}\n`);
  }
  for (const { key, line } of conversion.unendedActivities) {
    const where = escapeControlCharacters(`${file}:${line}: warning: activity "${key}"`);
    stderr.write(
      `convert:casas: ${where} begins here and never ends, ` +
        "so its segment will run to the participant's last event (auto-close)\n",
    );
  }

  const counts = [...conversion.eventCountByType]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, count]) => `${type} ${count}`)
    .join(', ');
  stderr.write(
    `convert:casas: ${escapeControlCharacters(file)}: ${conversion.lineCount} lines, ${conversion.records.length} events` +
      ` (${counts === '' ? 'none' : counts}), ${conversion.issues.length} skipped\n`,
  );
}

function reportSkippedTotal(
  stderr: NodeJS.WritableStream,
  conversions: readonly CasasFileConversion[],
): void {
  const skipped = conversions.reduce((sum, conversion) => sum + conversion.issues.length, 0);
  if (skipped === 0) {
    return;
  }
  const files = conversions.filter((conversion) => conversion.issues.length > 0).length;
  const lines = skipped === 1 ? '1 line' : `${skipped} lines`;
  const total = conversions.length === 1 ? '1 file' : `${conversions.length} files`;
  stderr.write(`convert:casas: skipped ${lines} in ${files} of ${total}; every other line was converted\n`);
}

/**
 * Writes lines with a trailing line break each, waiting whenever the stream
 * buffer is full. Rejects with the stream's error, such as EPIPE when the
 * reader of a pipe exits early, instead of leaving it unhandled.
 */
async function writeLines(stream: NodeJS.WritableStream, lines: readonly string[]): Promise<void> {
  let failure: unknown = null;
  const recordFailure = (error: unknown): void => {
    failure ??= error;
  };
  stream.on('error', recordFailure);

  try {
    const chunkSize = 1000;
    for (let start = 0; start < lines.length; start += chunkSize) {
      const chunk = lines.slice(start, start + chunkSize).join('\n') + '\n';
      const hasRoom = stream.write(chunk);
      if (failure !== null) {
        throw failure;
      }
      if (!hasRoom) {
        // `once` rejects when the stream emits 'error' while it waits.
        await once(stream, 'drain');
      }
    }

    // The callback of a last, empty write runs after every earlier write
    // has finished or failed.
    await new Promise<void>((resolve, reject) => {
      stream.write('', (error?: Error | null) => (error ? reject(error) : resolve()));
    });
    if (failure !== null) {
      throw failure;
    }
  } finally {
    stream.off('error', recordFailure);
  }
}
