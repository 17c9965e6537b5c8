/**
 * An independent model of what the server should derive from a raw WSU CASAS
 * file, written for the end-to-end test without the importer's code.
 *
 * A line is `date time sensor value [annotation]`, separated by spaces or
 * tabs, with a zoneless time stamp that is read as UTC and cut to whole
 * milliseconds (the server stores milliseconds). Times are milliseconds since
 * the epoch, and every interval is half-open, `[start, end)`.
 */

export type CasasPairType = 'activity' | 'sensor' | 'instruction';

export interface RawEvent {
  at: number;
  /** 1-based line number in the file. */
  line: number;
  /** Null for a reading that neither starts nor ends a pair. */
  pairType: CasasPairType | null;
  key: string;
  role: 'begin' | 'end' | 'point';
}

export interface ModelSegment {
  pairType: CasasPairType;
  key: string;
  start: number;
  end: number;
  endReason: 'CLIENT' | 'DUPLICATE_START' | 'AUTO_CLOSE';
}

const SENSOR_VALUES: ReadonlyMap<string, { pairType: CasasPairType; role: 'begin' | 'end' }> =
  new Map([
    ['ON', { pairType: 'sensor', role: 'begin' }],
    ['OPEN', { pairType: 'sensor', role: 'begin' }],
    ['OFF', { pairType: 'sensor', role: 'end' }],
    ['CLOSE', { pairType: 'sensor', role: 'end' }],
    ['START_INSTRUCT', { pairType: 'instruction', role: 'begin' }],
    ['STOP_INSTRUCT', { pairType: 'instruction', role: 'end' }],
  ]);

const STAMP = /^(\d{4})-(\d{2})-(\d{2})[ \t]+(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$/;

/** Reads a zoneless `YYYY-MM-DD HH:MM:SS[.fraction]` as UTC, dropping digits beyond milliseconds. */
export function parseStamp(text: string): number {
  const match = STAMP.exec(text);
  if (match === null) {
    throw new Error(`invalid CASAS time stamp "${text}"`);
  }
  const [, year, month, day, hour, minute, second, fraction = ''] = match;
  const millis = Number(fraction.padEnd(3, '0').slice(0, 3));
  return Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second), millis);
}

/**
 * Parses every line of a raw CASAS file into events in file order: one per
 * line, plus an `activity` event when the line has an `N-begin` or `N-end`
 * annotation. A line whose value is cut off before the end of a paired
 * value, such as `OF`, yields no event, and its number is added to `cutOff`.
 * Throws on any other line it cannot read, so that a format this model does
 * not know fails the test instead of skewing the expected numbers.
 */
export function parseRawCasas(text: string, cutOff: number[] = []): RawEvent[] {
  const events: RawEvent[] = [];
  const lines = text.split(/\r?\n/);

  lines.forEach((raw, index) => {
    const line = index + 1;
    const fields = raw.trim().split(/\s+/);
    if (fields.length === 1 && fields[0] === '') {
      return;
    }
    if (fields.length < 4 || fields.length > 5) {
      throw new Error(`line ${line}: expected 4 or 5 fields, found ${fields.length}: "${raw}"`);
    }

    const [date, time, sensor, value, annotation] = fields as [string, string, string, string, string?];
    const at = parseStamp(`${date} ${time}`);
    const isCutOff = [...SENSOR_VALUES.keys()].some((word) => word !== value && word.startsWith(value));
    if (isCutOff) {
      cutOff.push(line);
      return;
    }
    const paired = SENSOR_VALUES.get(value);
    if (paired === undefined) {
      events.push({ at, line, pairType: null, key: sensor, role: 'point' });
    } else {
      events.push({ at, line, pairType: paired.pairType, key: sensor, role: paired.role });
    }

    if (annotation !== undefined) {
      const match = /^(.+)-(begin|end)$/.exec(annotation);
      if (match === null) {
        throw new Error(`line ${line}: invalid annotation "${annotation}"`);
      }
      events.push({ at, line, pairType: 'activity', key: match[1] ?? '', role: match[2] === 'begin' ? 'begin' : 'end' });
    }
  });

  return events;
}

/**
 * Pairs begins with ends per pair type and key, applying the events in time
 * order, with ties in file order.
 * - A second begin ends the open pair at its own time.
 * - An end with nothing open is ignored.
 * - After more than `timeoutMs` of silence, and at the end of the file, every
 *   open pair ends at the user's last event before the silence (an auto-close
 *   at the last activity). A pair whose begin is that last event is empty.
 *
 * NOTE: an event exactly `timeoutMs` after the previous one counts as activity
 * here. The Kyoto files have no pause near 30 minutes, so the test never
 * depends on that edge.
 */
export function modelSegments(events: readonly RawEvent[], timeoutMs: number): ModelSegment[] {
  // Array.prototype.sort is stable, so equal times keep their file order.
  const ordered = [...events].sort((a, b) => a.at - b.at);
  const segments: ModelSegment[] = [];
  const open = new Map<string, { pairType: CasasPairType; key: string; start: number }>();
  let lastAt: number | null = null;

  const closeAllIdle = (): void => {
    for (const pair of open.values()) {
      segments.push({ ...pair, end: lastAt ?? pair.start, endReason: 'AUTO_CLOSE' });
    }
    open.clear();
  };

  for (const event of ordered) {
    if (lastAt !== null && event.at - lastAt > timeoutMs) {
      closeAllIdle();
    }
    lastAt = event.at;
    if (event.pairType === null) {
      continue;
    }

    const id = `${event.pairType}\u0000${event.key}`;
    const current = open.get(id);
    if (event.role === 'begin') {
      if (current !== undefined) {
        segments.push({ ...current, end: event.at, endReason: 'DUPLICATE_START' });
      }
      open.set(id, { pairType: event.pairType, key: event.key, start: event.at });
    } else if (current !== undefined) {
      segments.push({ ...current, end: event.at, endReason: 'CLIENT' });
      open.delete(id);
    }
  }
  closeAllIdle();

  return segments;
}

/** Merges intervals into sorted, disjoint, non-touching, non-empty pieces. */
export function unionIntervals(intervals: readonly { start: number; end: number }[]): { start: number; end: number }[] {
  const sorted = intervals.filter((i) => i.end > i.start).sort((a, b) => a.start - b.start);
  const merged: { start: number; end: number }[] = [];
  for (const interval of sorted) {
    const last = merged[merged.length - 1];
    if (last !== undefined && interval.start <= last.end) {
      last.end = Math.max(last.end, interval.end);
    } else {
      merged.push({ ...interval });
    }
  }
  return merged;
}

/** Intersects two lists of sorted, disjoint intervals. */
export function intersectIntervals(
  left: readonly { start: number; end: number }[],
  right: readonly { start: number; end: number }[],
): { start: number; end: number }[] {
  const result: { start: number; end: number }[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) {
    const a = left[i]!;
    const b = right[j]!;
    const start = Math.max(a.start, b.start);
    const end = Math.min(a.end, b.end);
    if (start < end) {
      result.push({ start, end });
    }
    if (a.end < b.end) {
      i += 1;
    } else {
      j += 1;
    }
  }
  return result;
}

/** Total length in milliseconds of intervals that are already disjoint. */
export function totalLength(intervals: readonly { start: number; end: number }[]): number {
  return intervals.reduce((sum, interval) => sum + (interval.end - interval.start), 0);
}
