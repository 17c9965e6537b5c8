/** A pino logger whose lines a test reads back. */
import { Writable } from 'node:stream';

import pino from 'pino';

/** One parsed log line, with the fields that tests check. */
export interface LogEntry {
  msg: string;
  level: number;
  reqId?: string;
  userId?: string;
  waitMs?: number;
  err?: { message?: string };
}

/**
 * Creates a logger at `level` whose lines the test reads back, parsed with
 * `entries` or as raw text with `text`.
 */
export function captureLogs(level: pino.Level): { logger: pino.Logger; entries: () => LogEntry[]; text: () => string } {
  const logLines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logLines.push(chunk.toString('utf8'));
      callback();
    },
  });
  const text = () => logLines.join('');
  const entries = () =>
    text()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as LogEntry);
  return { logger: pino({ level }, stream), entries, text };
}
