/**
 * Progress output on stderr: one line rewritten in place on a terminal, or a
 * plain line every few seconds when stderr is a file or a pipe.
 */

import { escapeControlCharacters } from './escape.js';

export interface ImportProgress {
  /** Events processed so far: accepted or rejected by the server. */
  done: number;
  /** Events to process in all. */
  total: number;
}

/** Formats a duration in whole seconds as `42s`, `3m05s` or `2h07m`, or `?` when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return '?';
  }
  const whole = Math.round(seconds);
  if (whole < 60) {
    return `${whole}s`;
  }
  if (whole < 3600) {
    const minutes = Math.floor(whole / 60);
    return `${minutes}m${String(whole % 60).padStart(2, '0')}s`;
  }
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  return `${hours}h${String(minutes).padStart(2, '0')}m`;
}

/** Returns events per second over the elapsed time, or 0 before any time has passed. */
export function eventRate(done: number, elapsedMs: number): number {
  return elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
}

/** Returns the estimated seconds left at the average rate so far, or null while it is unknown. */
export function estimateRemainingSeconds(
  done: number,
  total: number,
  elapsedMs: number,
): number | null {
  if (done >= total) {
    return 0;
  }
  const rate = eventRate(done, elapsedMs);
  return rate > 0 ? (total - done) / rate : null;
}

/** Formats `events 1200/60985 (2%), 850 events/s, ETA 1m13s`. */
export function formatProgressLine(progress: ImportProgress, elapsedMs: number): string {
  const { done, total } = progress;
  const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
  const rate = Math.round(eventRate(done, elapsedMs));
  const eta = formatDuration(estimateRemainingSeconds(done, total, elapsedMs));
  return `events ${done}/${total} (${percent}%), ${rate} events/s, ETA ${eta}`;
}

export interface ProgressReporterOptions {
  stream: NodeJS.WritableStream;
  /** True when `stream` is a terminal, so the line can be rewritten in place. */
  isTTY: boolean;
  /** Minimum time between two updates on a terminal, in milliseconds (default 200). */
  ttyIntervalMs?: number;
  /** Minimum time between two plain lines, in milliseconds (default 5000). */
  plainIntervalMs?: number;
  /** Clock in milliseconds (default `Date.now`). */
  now?: () => number;
}

const CLEAR_LINE = '\r\x1b[K';

/** Writes progress lines and keeps them apart from other messages on the same stream. */
export class ProgressReporter {
  private readonly stream: NodeJS.WritableStream;
  private readonly isTTY: boolean;
  private readonly intervalMs: number;
  private readonly now: () => number;
  /** Time of the first update, from which the rate is measured. */
  private startedAt: number | null = null;
  private lastWriteAt: number | null = null;
  private lastProgress: ImportProgress | null = null;
  private lastWritten: ImportProgress | null = null;
  /** True while the terminal shows a progress line without a line break after it. */
  private lineShown = false;

  constructor(options: ProgressReporterOptions) {
    this.stream = options.stream;
    this.isTTY = options.isTTY;
    this.intervalMs = options.isTTY
      ? (options.ttyIntervalMs ?? 200)
      : (options.plainIntervalMs ?? 5000);
    this.now = options.now ?? Date.now;
  }

  /** Records new progress and writes it when the interval since the last write has passed. */
  update(progress: ImportProgress): void {
    this.lastProgress = progress;
    const now = this.now();
    this.startedAt ??= now;
    if (this.lastWriteAt !== null && now - this.lastWriteAt < this.intervalMs) {
      return;
    }
    this.write(progress, now);
  }

  /**
   * Writes a message on its own line, with its control characters escaped
   * because it may quote input files. On a terminal the progress line is
   * redrawn below it.
   */
  note(message: string): void {
    if (this.isTTY && this.lineShown) {
      this.stream.write(CLEAR_LINE);
      this.lineShown = false;
    }
    this.stream.write(`${escapeControlCharacters(message)}\n`);
    if (this.isTTY && this.lastProgress !== null) {
      this.write(this.lastProgress, this.now());
    }
  }

  /** Writes the last progress unless it is already shown, and ends the line. */
  finish(): void {
    if (this.lastProgress !== null && this.lastProgress !== this.lastWritten) {
      this.write(this.lastProgress, this.now());
    }
    if (this.isTTY && this.lineShown) {
      this.stream.write('\n');
      this.lineShown = false;
    }
  }

  private write(progress: ImportProgress, now: number): void {
    const line = formatProgressLine(progress, now - (this.startedAt ?? now));
    if (this.isTTY) {
      this.stream.write(`${CLEAR_LINE}${line}`);
      this.lineShown = true;
    } else {
      this.stream.write(`${line}\n`);
    }
    this.lastWriteAt = now;
    this.lastWritten = progress;
  }
}
