/**
 * Reading of all import files before anything is sent, so the progress total
 * is known and an unreadable file stops the import before its first request.
 */

import type { PendingEvent } from './batching.js';
import { readNdjsonFile, type NdjsonLine } from './ndjson.js';
import type { ImportSummary, IssueReporter } from './summary.js';
import type { DefinePairTypeInput, SourceRef } from './types.js';

export interface PairTypeRecord {
  input: DefinePairTypeInput;
  source: SourceRef;
}

export interface EventRecord {
  /** User named by the line, or null for an event of the logged-in user. */
  username: string | null;
  event: PendingEvent;
}

export interface ImportInput {
  pairTypes: PairTypeRecord[];
  events: EventRecord[];
  /** Events without an `id`, which a retry or a re-run may store twice. */
  eventsWithoutId: number;
}

/** A file that could not be opened or read. */
export class UnreadableFileError extends Error {
  readonly file: string;

  constructor(file: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(`cannot read ${file}: ${detail}`, { cause });
    this.name = 'UnreadableFileError';
    this.file = file;
  }
}

export type LineReader = (file: string) => AsyncIterable<NdjsonLine>;

/**
 * Reads every file in order into one `ImportInput`, counting lines in
 * `summary` and adding each bad line to `issues`. Returns what it has read
 * so far once `signal` is aborted.
 *
 * NOTE: all events stay in memory until they are sent, an estimated few
 * hundred bytes each, so inputs of many millions of events need splitting.
 */
export async function readImportInput(
  files: readonly string[],
  summary: ImportSummary,
  issues: IssueReporter,
  readLines: LineReader = readNdjsonFile,
  signal?: AbortSignal,
): Promise<ImportInput> {
  const input: ImportInput = { pairTypes: [], events: [], eventsWithoutId: 0 };

  for (const file of files) {
    try {
      for await (const line of readLines(file)) {
        if (signal?.aborted === true) {
          return input;
        }
        summary.linesRead += 1;
        addLine(input, summary, issues, file, line);
      }
    } catch (error) {
      throw new UnreadableFileError(file, error);
    }
  }

  return input;
}

function addLine(
  input: ImportInput,
  summary: ImportSummary,
  issues: IssueReporter,
  file: string,
  line: NdjsonLine,
): void {
  const source: SourceRef = { file, line: line.line };

  if (line.kind === 'invalid') {
    summary.badLines += 1;
    const issue = { kind: 'badLine', file, line: line.line, message: line.reason } as const;
    issues.add(issue, `${file}:${line.line}: skipped line: ${line.reason}`);
    return;
  }

  const record = line.record;
  if (record.kind === 'pairType') {
    input.pairTypes.push({ input: record.input, source });
    return;
  }

  summary.eventsRead += 1;
  if (typeof record.input.id !== 'string') {
    input.eventsWithoutId += 1;
  }
  input.events.push({ username: record.username, event: { input: record.input, source } });
}
