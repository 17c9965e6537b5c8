/**
 * NDJSON reading: one JSON value per line, LF or CRLF line endings, blank
 * lines ignored. Every line keeps its 1-based number for error reports.
 */

import { isUtf8 } from 'node:buffer';
import { createReadStream } from 'node:fs';

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

  const checked = checkImportRecord(value);
  if (!checked.ok) {
    return { line, kind: 'invalid', reason: checked.reason };
  }
  return { line, kind: 'record', record: checked.value };
}

/**
 * Splits a stream of bytes into lines, numbered from 1, and decodes each line
 * as UTF-8. A CR before the LF is removed, a byte order mark at the start is
 * dropped, and a last line without a line break is still returned. A line
 * that is not UTF-8 comes back with `text` null rather than with U+FFFD in
 * place of its bad bytes, which would send other text than the file holds.
 */
export async function* splitByteLines(chunks: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<{ line: number; text: string | null }> {
  let pending: Buffer[] = [];
  let lineNumber = 0;
  const decode = (parts: Buffer[]): { line: number; text: string | null } => {
    let bytes = Buffer.concat(parts);
    if (lineNumber === 0 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
      bytes = bytes.subarray(3);
    }
    lineNumber += 1;
    return { line: lineNumber, text: isUtf8(bytes) ? stripCarriageReturn(bytes.toString('utf8')) : null };
  };

  for await (const chunk of chunks) {
    let start = 0;
    let newline = chunk.indexOf(0x0a, start);
    while (newline !== -1) {
      pending.push(chunk.subarray(start, newline));
      yield decode(pending);
      pending = [];
      start = newline + 1;
      newline = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) {
      pending.push(chunk.subarray(start));
    }
  }
  if (pending.length > 0) {
    yield decode(pending);
  }
}

/** Reads import records from UTF-8 byte chunks, skipping blank lines and reporting lines that are not UTF-8. */
export async function* readNdjson(chunks: AsyncIterable<Buffer> | Iterable<Buffer>): AsyncGenerator<NdjsonLine> {
  for await (const { line, text } of splitByteLines(chunks)) {
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
