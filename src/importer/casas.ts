/**
 * Conversion of WSU CASAS sensor logs into Event Master import records.
 *
 * A CASAS line is: date, time, sensor id, value and an optional annotation,
 * separated by tabs or spaces, for example
 * `2009-03-23 10:16:49.428669<TAB>M051<TAB>ON<TAB>1-begin`. The time stamp has
 * no zone and any number of fractional digits.
 *
 * Mapping:
 * - `ON`/`OPEN` and `OFF`/`CLOSE` become `sensor_on`/`sensor_off` of pair type
 *   `sensor`, keyed by the sensor id, with the raw value in meta;
 * - `START_INSTRUCT`/`STOP_INSTRUCT` become `instruction_started`/
 *   `instruction_stopped` of pair type `instruction`, keyed by the sensor id;
 * - every other value becomes a point event `sensor_reading` with
 *   `meta: { sensor, value }`, the value as a number when it is a plain decimal,
 *   except a value that looks cut off (see `truncatedValueProblem`), which
 *   makes the line invalid;
 * - an annotation `N-begin`/`N-end` adds a second event, `activity_begin`/
 *   `activity_end` of pair type `activity` keyed by `N`.
 *
 * Event ids are `<file base name>:<line number>`, and the annotation's event
 * adds the suffix `:activity`, so converting a file twice gives the same ids.
 */

import { DateTime, IANAZone } from 'luxon';

import { describeInstantRange, isStorableInstant } from '../domain/storable.js';

import type { DefinePairTypeInput, EventInput, JsonObject } from './types.js';

export type CasasPairTypeName = 'activity' | 'sensor' | 'instruction';

/**
 * Pair types the converted events use.
 *
 * All three close at the participant's last recorded event (`LAST_ACTIVITY`)
 * when their end is missing, because the logs are recordings: a pair that
 * never ended should not run past the last thing that happened. Activity is
 * any event of the participant, so an open pair only times out once the whole
 * log falls silent. In the 24 recorded WSU CASAS Kyoto sessions, the maximum
 * gap between two consecutive events is under 100 seconds, so a timeout of 30
 * minutes does not cut a pair in the middle of such a session.
 */
export const CASAS_PAIR_TYPES: Readonly<Record<CasasPairTypeName, DefinePairTypeInput>> = {
  activity: {
    name: 'activity',
    startType: 'activity_begin',
    endType: 'activity_end',
    autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
  },
  sensor: {
    name: 'sensor',
    startType: 'sensor_on',
    endType: 'sensor_off',
    autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
  },
  instruction: {
    name: 'instruction',
    startType: 'instruction_started',
    endType: 'instruction_stopped',
    autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
  },
};

/** Order in which pair type records are written. */
export const CASAS_PAIR_TYPE_ORDER: readonly CasasPairTypeName[] = [
  'activity',
  'sensor',
  'instruction',
];

export const READING_EVENT_TYPE = 'sensor_reading';

/** Id suffix of the second event of a line that carries an annotation. */
export const ACTIVITY_ID_SUFFIX = ':activity';

/** Event type and pair type of each sensor value that starts or ends a pair. */
const PAIRED_VALUES: ReadonlyMap<string, { type: string; pairType: CasasPairTypeName }> = new Map(
  [
    ['ON', { type: 'sensor_on', pairType: 'sensor' }],
    ['OPEN', { type: 'sensor_on', pairType: 'sensor' }],
    ['OFF', { type: 'sensor_off', pairType: 'sensor' }],
    ['CLOSE', { type: 'sensor_off', pairType: 'sensor' }],
    ['START_INSTRUCT', { type: 'instruction_started', pairType: 'instruction' }],
    ['STOP_INSTRUCT', { type: 'instruction_stopped', pairType: 'instruction' }],
  ],
);

const DATE_PATTERN = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_PATTERN = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$/;
const ANNOTATION_PATTERN = /^(.+)-(begin|end)$/;
const DECIMAL_PATTERN = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/;
const FIELD_SEPARATOR = /[ \t]+/;

/** One event derived from a CASAS line, before the file's id prefix and user are attached. */
export interface CasasEvent {
  /** Appended to `<file base name>:<line number>` to form the event id. */
  idSuffix: string;
  type: string;
  pairType: CasasPairTypeName | null;
  /** Null for point events. */
  pairKey: string | null;
  /** UTC instant, RFC 3339 with `Z` and millisecond precision. */
  occurredAt: string;
  meta: JsonObject;
}

export type CasasLineResult =
  | { kind: 'events'; events: CasasEvent[] }
  | { kind: 'blank' }
  | { kind: 'invalid'; reason: string };

/** Returns true when `name` is an IANA time zone in this runtime's time zone data. */
export function isValidTimeZone(name: string): boolean {
  return IANAZone.isValidZone(name);
}

/**
 * Converts a zoneless CASAS date and time, read as local time in `timeZone`,
 * to a UTC instant. Digits beyond milliseconds are dropped, because the server
 * stores milliseconds. Returns a reason string for an invalid or nonexistent
 * local time.
 *
 * NOTE: a local time that occurs twice (when clocks go back) resolves to one
 * of its two instants without a warning. Luxon 3.7 makes the choice, and it
 * is not the same in every zone.
 */
export function casasTimeToUtc(
  date: string,
  time: string,
  timeZone: string,
): { ok: true; instant: string } | { ok: false; reason: string } {
  const dateMatch = DATE_PATTERN.exec(date);
  if (dateMatch === null) {
    return { ok: false, reason: `invalid date "${date}", expected YYYY-MM-DD` };
  }

  const timeMatch = TIME_PATTERN.exec(time);
  if (timeMatch === null) {
    return {
      ok: false,
      reason: `invalid time "${time}", expected HH:MM:SS with an optional fraction`,
    };
  }

  // Luxon reads hour 24 as midnight of the next day, so ranges are checked here.
  const hour = Number(timeMatch[1]);
  const minute = Number(timeMatch[2]);
  const second = Number(timeMatch[3]);
  if (hour > 23 || minute > 59 || second > 59) {
    return {
      ok: false,
      reason: `invalid time "${time}", expected hours 00-23, minutes and seconds 00-59`,
    };
  }

  const fraction = timeMatch[4] ?? '';
  const local = {
    year: Number(dateMatch[1]),
    month: Number(dateMatch[2]),
    day: Number(dateMatch[3]),
    hour,
    minute,
    second,
    millisecond: Number(fraction.padEnd(3, '0').slice(0, 3)),
  };
  const parsed = DateTime.fromObject(local, { zone: timeZone });
  if (!parsed.isValid) {
    return { ok: false, reason: `invalid time stamp "${date} ${time}": ${parsed.invalidReason}` };
  }

  // Luxon moves a local time inside a daylight-saving gap forward instead of
  // failing, so a changed wall-clock reading means the time never existed.
  if (parsed.day !== local.day || parsed.hour !== local.hour || parsed.minute !== local.minute) {
    return {
      ok: false,
      reason:
        `local time "${date} ${time}" does not exist in time zone ${timeZone} ` +
        '(clocks were moved forward)',
    };
  }

  // The import rejects such an instant, and with it the line of the NDJSON
  // output, so the CASAS line is reported here where its number is known.
  const instant = parsed.toMillis();
  if (!isStorableInstant(instant)) {
    return {
      ok: false,
      reason: `time stamp "${date} ${time}" in ${timeZone} is outside the supported range ${describeInstantRange()}`,
    };
  }
  return { ok: true, instant: new Date(instant).toISOString() };
}

/** Parses a reading value: a number for a plain decimal, otherwise the raw text. */
export function parseReadingValue(raw: string): number | string {
  if (DECIMAL_PATTERN.test(raw)) {
    const value = Number(raw);
    if (Number.isFinite(value)) {
      return value;
    }
  }
  return raw;
}

/**
 * Returns why `value` looks like the rest of a line that was cut off, or null.
 * A strict prefix of a paired value (`OF`, `START_INS`) is the start of a
 * word that never ends, and an annotation in the value field means the value
 * is missing. Both would otherwise become point readings.
 *
 * NOTE: a line cut inside a number or a sensor id, or just before its
 * annotation, still looks complete and is converted as it is.
 */
function truncatedValueProblem(value: string, annotation: string | undefined): string | null {
  const completions = [...PAIRED_VALUES.keys()].filter(
    (word) => word.length > value.length && word.startsWith(value),
  );
  if (completions.length > 0) {
    return (
      `truncated value "${value}": it is the start of ${completions.join(' or ')}, ` +
      'so the line looks cut off'
    );
  }
  if (annotation === undefined && ANNOTATION_PATTERN.test(value)) {
    return `missing value: the last field "${value}" is an annotation, not a sensor value`;
  }
  return null;
}

/**
 * Parses one CASAS line (without its line break) into the events it yields:
 * one for the sensor value, and a second one when the line carries an
 * annotation.
 */
export function parseCasasLine(text: string, timeZone: string): CasasLineResult {
  const trimmed = text.replace(/^[ \t\r]+|[ \t\r]+$/g, '');
  if (trimmed === '') {
    return { kind: 'blank' };
  }

  const fields = trimmed.split(FIELD_SEPARATOR);
  if (fields.length < 4 || fields.length > 5) {
    return {
      kind: 'invalid',
      reason:
        'expected 4 or 5 fields (date, time, sensor, value, optional annotation), ' +
        `found ${fields.length}`,
    };
  }
  const [date = '', time = '', sensor = '', value = '', annotation] = fields;

  const converted = casasTimeToUtc(date, time, timeZone);
  if (!converted.ok) {
    return { kind: 'invalid', reason: converted.reason };
  }
  const occurredAt = converted.instant;

  const truncation = truncatedValueProblem(value, annotation);
  if (truncation !== null) {
    return { kind: 'invalid', reason: truncation };
  }

  let annotationMatch: RegExpExecArray | null = null;
  if (annotation !== undefined) {
    annotationMatch = ANNOTATION_PATTERN.exec(annotation);
    if (annotationMatch === null) {
      return {
        kind: 'invalid',
        reason: `invalid annotation "${annotation}", expected NAME-begin or NAME-end`,
      };
    }
  }

  const events: CasasEvent[] = [];
  const paired = PAIRED_VALUES.get(value);
  if (paired === undefined) {
    events.push({
      idSuffix: '',
      type: READING_EVENT_TYPE,
      pairType: null,
      pairKey: null,
      occurredAt,
      meta: { sensor, value: parseReadingValue(value) },
    });
  } else {
    events.push({
      idSuffix: '',
      type: paired.type,
      pairType: paired.pairType,
      pairKey: sensor,
      occurredAt,
      meta: { sensor, value },
    });
  }

  if (annotationMatch !== null && annotation !== undefined) {
    const task = annotationMatch[1] ?? '';
    const isBegin = annotationMatch[2] === 'begin';
    events.push({
      idSuffix: ACTIVITY_ID_SUFFIX,
      type: isBegin ? 'activity_begin' : 'activity_end',
      pairType: 'activity',
      pairKey: task,
      occurredAt,
      meta: { annotation, sensor, value },
    });
  }

  return { kind: 'events', events };
}

/** An event line of the converter's output. */
export interface CasasEventRecord {
  kind: 'event';
  username: string;
  input: EventInput;
}

export interface CasasLineIssue {
  line: number;
  reason: string;
}

export interface CasasFileConversion {
  records: CasasEventRecord[];
  issues: CasasLineIssue[];
  /** Number of lines in the file, blank lines included. */
  lineCount: number;
  blankLineCount: number;
  /** Number of events per event type. */
  eventCountByType: Map<string, number>;
  pairTypesUsed: Set<CasasPairTypeName>;
  /**
   * Activities whose last `N-begin` annotation, in file order, has no later
   * `N-end`, with the line of that begin. The server closes such a pair by
   * auto-close, at the participant's last event before 30 minutes without
   * events, which in a continuous recording is the end of the file.
   */
  unendedActivities: { key: string; line: number }[];
}

export interface CasasConversionOptions {
  /** File name without folder and extension; the prefix of every event id. */
  fileBase: string;
  username: string;
  timeZone: string;
}

/** Splits text into lines on LF, removing the CR of CRLF endings and the final empty line. */
export function splitLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') {
    lines.pop();
  }
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/** One line of a CASAS file: its 1-based number, and its text, or null when it is not valid UTF-8. */
export interface CasasSourceLine {
  line: number;
  text: string | null;
}

/**
 * Converts the text of one CASAS file into event records in file order.
 * Lines that cannot be parsed are returned as issues and skipped.
 */
export function convertCasasText(
  text: string,
  options: CasasConversionOptions,
): CasasFileConversion {
  return convertCasasLines(
    splitLines(text).map((line, index) => ({ line: index + 1, text: line })),
    options,
  );
}

/**
 * Converts the lines of one CASAS file into event records in file order.
 * Lines that cannot be parsed or decoded are returned as issues and skipped.
 */
export function convertCasasLines(
  lines: readonly CasasSourceLine[],
  options: CasasConversionOptions,
): CasasFileConversion {
  const conversion: CasasFileConversion = {
    records: [],
    issues: [],
    lineCount: lines.length,
    blankLineCount: 0,
    eventCountByType: new Map(),
    pairTypesUsed: new Set(),
    unendedActivities: [],
  };
  // Line of the open begin annotation per activity key, in file order.
  const openActivities = new Map<string, number>();

  for (const { line: lineNumber, text } of lines) {
    if (text === null) {
      conversion.issues.push({
        line: lineNumber,
        reason: 'the line is not valid UTF-8; save the file as UTF-8',
      });
      continue;
    }

    const withoutMark = lineNumber === 1 ? text.replace(/^\uFEFF/, '') : text;
    const result = parseCasasLine(withoutMark, options.timeZone);

    if (result.kind === 'blank') {
      conversion.blankLineCount += 1;
      continue;
    }
    if (result.kind === 'invalid') {
      conversion.issues.push({ line: lineNumber, reason: result.reason });
      continue;
    }

    for (const event of result.events) {
      conversion.records.push({
        kind: 'event',
        username: options.username,
        input: toEventInput(event, `${options.fileBase}:${lineNumber}${event.idSuffix}`),
      });
      conversion.eventCountByType.set(
        event.type,
        (conversion.eventCountByType.get(event.type) ?? 0) + 1,
      );
      if (event.pairType !== null) {
        conversion.pairTypesUsed.add(event.pairType);
      }
      if (event.type === 'activity_begin' && event.pairKey !== null) {
        openActivities.set(event.pairKey, lineNumber);
      } else if (event.type === 'activity_end' && event.pairKey !== null) {
        openActivities.delete(event.pairKey);
      }
    }
  }

  for (const [key, line] of openActivities) {
    conversion.unendedActivities.push({ key, line });
  }
  return conversion;
}

function toEventInput(event: CasasEvent, id: string): EventInput {
  const input: EventInput = { id, type: event.type };
  if (event.pairKey !== null) {
    input.pairKey = event.pairKey;
  }
  input.occurredAt = event.occurredAt;
  input.meta = event.meta;
  return input;
}

/**
 * Builds the NDJSON output lines for converted files: first one `pairType`
 * record per pair type any of them uses, then every event in file order.
 */
export function formatCasasNdjson(conversions: readonly CasasFileConversion[]): string[] {
  const used = new Set<CasasPairTypeName>();
  for (const conversion of conversions) {
    for (const name of conversion.pairTypesUsed) {
      used.add(name);
    }
  }

  const lines: string[] = [];
  for (const name of CASAS_PAIR_TYPE_ORDER) {
    if (used.has(name)) {
      lines.push(JSON.stringify({ kind: 'pairType', input: CASAS_PAIR_TYPES[name] }));
    }
  }
  for (const conversion of conversions) {
    for (const record of conversion.records) {
      lines.push(JSON.stringify(record));
    }
  }
  return lines;
}
