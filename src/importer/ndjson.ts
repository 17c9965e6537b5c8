/**
 * NDJSON reading: one JSON value per line, LF or CRLF line endings, blank
 * lines ignored. Every line keeps its 1-based number for error reports.
 */

import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';

import { repeatedKeyPath } from '../http/repeated-keys.js';
import { checkImportRecord } from './records.js';
import type { ImportRecord } from './types.js';

export type NdjsonLine =
  | { line: number; kind: 'record'; record: ImportRecord }
  | { line: number; kind: 'invalid'; reason: string };

function stripCarriageReturn(text: string): string {
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}

/** Parses one NDJSON line. Returns null for a blank line. */
export function parseNdjsonLine(text: string, line: number): NdjsonLine | null {
  if (text.trim() === '') {
    return null;
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { line, kind: 'invalid', reason: `invalid JSON: ${detail}` };
  }
  // JSON.parse keeps the last value of a repeated key, but the server rejects
  // a body that repeats one, so report the line instead of sending another event.
  const repeated = repeatedKeyPath(text, 'line');
  if (repeated !== null) {
    const reason = `the key ${repeated} appears more than once in one object, which the server rejects. Write each key once.`;
    return { line, kind: 'invalid', reason };
  }

  const checked = checkImportRecord(value);
  if (!checked.ok) {
    return { line, kind: 'invalid', reason: checked.reason };
  }
  return { line, kind: 'record', record: checked.value };
}

/**
 * Maximum length of one NDJSON line in bytes. The server accepts at most
 * 1 MiB of `meta` per event (MAX_META_BYTES), so a longer line contains no
 * event that it stores unless most of the line is white space. The reader keeps no more
 * than this of a line in memory.
 */
export const MAX_LINE_BYTES = 64 * 1024 * 1024;

/**
 * Returns the encoding that a UTF-16 byte order mark at the start of `bytes`
 * names, or null. Neither mark is valid UTF-8, so a UTF-8 file never starts
 * with one. Windows PowerShell 5.1 writes such files with `>`, which is
 * Out-File with its default encoding there, Unicode (UTF-16LE).
 */
export function utf16Encoding(bytes: Uint8Array): 'UTF-16LE' | 'UTF-16BE' | null {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) {
    return 'UTF-16LE';
  }
  if (bytes[0] === 0xfe && bytes[1] === 0xff) {
    return 'UTF-16BE';
  }
  return null;
}

/** Describes a file that starts with the byte order mark of `encoding`, for an error message. */
export function describeUtf16File(encoding: 'UTF-16LE' | 'UTF-16BE'): string {
  return (
    `the file is ${encoding} text (it starts with a UTF-16 byte order mark), but it must be UTF-8. ` +
    `Convert it, for example with: iconv -f ${encoding} -t UTF-8`
  );
}

/** A byte stream that is UTF-16 text, so no line of it can be read as UTF-8. */
export class Utf16InputError extends Error {
  constructor(encoding: 'UTF-16LE' | 'UTF-16BE') {
    super(describeUtf16File(encoding));
    this.name = 'Utf16InputError';
  }
}

/**
 * One line of a byte stream. `text` is null for a line that is not UTF-8 or
 * is longer than the maximum, which `byteLength` then gives.
 */
export interface ByteLine {
  line: number;
  text: string | null;
  byteLength?: number;
}

/**
 * Splits a stream of bytes into lines, numbered from 1, and decodes each line
 * as UTF-8. A CR before the LF is removed, a byte order mark at the start is
 * dropped, and a last line without a line break is still returned. A line
 * that is not UTF-8 comes back with `text` null rather than with U+FFFD in
 * place of its bad bytes, which would send other text than the file holds.
 * A line longer than `maxLineBytes` comes back with `text` null and its
 * `byteLength`, and only its length is kept while it is read. A stream that
 * starts with a UTF-16 byte order mark throws `Utf16InputError` instead of
 * returning each line as invalid.
 */
export async function* splitByteLines(
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  maxLineBytes = Number.POSITIVE_INFINITY,
): AsyncGenerator<ByteLine> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineNumber = 0;

  // The first two bytes of the stream, kept even when the first line is too long to keep.
  let firstBytes = Buffer.alloc(0);

  const append = (part: Buffer): void => {
    if (lineNumber === 0 && firstBytes.length < 2) {
      firstBytes = Buffer.concat([firstBytes, part.subarray(0, 2 - firstBytes.length)]);
    }
    pendingBytes += part.length;
    if (pendingBytes > maxLineBytes) {
      pending = [];
    } else if (part.length > 0) {
      pending.push(part);
    }
  };

  const finishLine = (): ByteLine => {
    lineNumber += 1;
    const byteLength = pendingBytes;
    let bytes = Buffer.concat(pending);
    pending = [];
    pendingBytes = 0;
    const encoding = lineNumber === 1 ? utf16Encoding(firstBytes) : null;
    if (encoding !== null) {
      throw new Utf16InputError(encoding);
    }
    if (byteLength > maxLineBytes) {
      return { line: lineNumber, text: null, byteLength };
    }
    if (lineNumber === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      bytes = bytes.subarray(3);
    }
    return { line: lineNumber, text: isUtf8(bytes) ? stripCarriageReturn(bytes.toString('utf8')) : null };
  };

  for await (const chunk of chunks) {
    let start = 0;
    let newline = chunk.indexOf(0x0a, start);
    while (newline !== -1) {
      append(chunk.subarray(start, newline));
      yield finishLine();
      start = newline + 1;
      newline = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) {
      append(chunk.subarray(start));
    }
  }
  if (pendingBytes > 0) {
    yield finishLine();
  }
}

/**
 * Reads import records from UTF-8 byte chunks, skipping blank lines and
 * reporting lines that are not UTF-8 or are longer than `maxLineBytes`.
 */
export async function* readNdjson(
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  maxLineBytes = MAX_LINE_BYTES,
): AsyncGenerator<NdjsonLine> {
  for await (const { line, text, byteLength } of splitByteLines(chunks, maxLineBytes)) {
    if (byteLength !== undefined) {
      const reason = `line is ${byteLength} bytes long, above the maximum of ${maxLineBytes} bytes for one record`;
      yield { line, kind: 'invalid', reason };
      continue;
    }
    if (text === null) {
      yield { line, kind: 'invalid', reason: 'not valid UTF-8: save the file as UTF-8' };
      continue;
    }
    const parsed = parseNdjsonLine(text, line);
    if (parsed !== null) {
      yield parsed;
    }
  }
}

/** Reads import records from a UTF-8 NDJSON file. An unreadable file rejects the iteration. */
export function readNdjsonFile(path: string): AsyncGenerator<NdjsonLine> {
  return readNdjson(createReadStream(path) as AsyncIterable<Buffer>);
}
