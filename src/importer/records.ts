/**
 * Shape checks for import records, so a malformed line is reported with its
 * line number instead of failing a whole `sendEvents` request. The checks
 * cover what GraphQL input coercion would reject: types, unknown fields,
 * required fields, and instants without an offset or outside the range that
 * storage supports. Rules about content, such as meta size or unknown event
 * types, stay with the server, which reports them per item.
 */

import { describeInstantRange, isLeapSecondText, isStorableInstant, LEAP_SECOND_PROBLEM } from '../domain/storable.js';
import type {
  DefinePairTypeInput,
  EventInput,
  ImportRecord,
  JsonObject,
} from './types.js';

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

const EVENT_INPUT_FIELDS = [
  'id',
  'type',
  'isPair',
  'pairType',
  'pairKey',
  'occurredAt',
  'meta',
  'userId',
] as const;
const PAIR_TYPE_INPUT_FIELDS = ['name', 'startType', 'endType', 'parent', 'autoClose'] as const;
const AUTO_CLOSE_FIELDS = ['timeoutSeconds', 'endAt'] as const;
const END_AT_VALUES = ['LAST_ACTIVITY', 'DEADLINE'] as const;

/**
 * RFC 3339 date-time with an explicit offset, date and time separated by `T`
 * or `t`. The server's DateTime scalar (graphql-scalars) rejects the space
 * that RFC 3339 lets applications use instead.
 */
const RFC3339_PATTERN =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/;

const GRAPHQL_INT_MIN = -(2 ** 31);
const GRAPHQL_INT_MAX = 2 ** 31 - 1;

function fail<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describeJsonType(value: unknown): string {
  if (value === undefined) {
    return 'nothing';
  }
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function findUnknownField(value: JsonObject, allowed: readonly string[]): string | undefined {
  return Object.keys(value).find((key) => !allowed.includes(key));
}

function unknownField(field: string, owner: string, allowed: readonly string[]): string {
  return `unknown field "${field}" in ${owner}; allowed fields: ${allowed.join(', ')}`;
}

function describeValue(value: unknown): string {
  return JSON.stringify(value) ?? 'nothing';
}

function checkOptionalString(object: JsonObject, field: string, owner: string): string | null {
  const value = object[field];
  if (value === undefined || value === null || typeof value === 'string') {
    return null;
  }
  return `${owner}.${field} must be a string, found ${describeJsonType(value)}`;
}

function checkRequiredString(object: JsonObject, field: string, owner: string): string | null {
  const value = object[field];
  if (value === undefined || value === null) {
    return `${owner}.${field} is missing`;
  }
  if (typeof value !== 'string') {
    return `${owner}.${field} must be a string, found ${describeJsonType(value)}`;
  }
  return null;
}

/** Checks that `value` has the shape of the GraphQL `EventInput`. */
export function checkEventInput(value: unknown): Checked<EventInput> {
  const owner = 'EventInput';
  if (!isJsonObject(value)) {
    return fail(`${owner} must be a JSON object, found ${describeJsonType(value)}`);
  }

  const unknown = findUnknownField(value, EVENT_INPUT_FIELDS);
  if (unknown !== undefined) {
    return fail(unknownField(unknown, owner, EVENT_INPUT_FIELDS));
  }

  const problem =
    checkRequiredString(value, 'type', owner) ??
    checkOptionalString(value, 'id', owner) ??
    checkOptionalString(value, 'pairType', owner) ??
    checkOptionalString(value, 'pairKey', owner) ??
    checkOptionalString(value, 'occurredAt', owner) ??
    checkOptionalString(value, 'userId', owner);
  if (problem !== null) {
    return fail(problem);
  }

  const isPair = value.isPair;
  if (isPair !== undefined && isPair !== null && typeof isPair !== 'boolean') {
    return fail(`${owner}.isPair must be a boolean, found ${describeJsonType(isPair)}`);
  }

  const meta = value.meta;
  if (meta !== undefined && meta !== null && !isJsonObject(meta)) {
    return fail(`${owner}.meta must be a JSON object, found ${describeJsonType(meta)}`);
  }

  const occurredAt = value.occurredAt;
  if (typeof occurredAt === 'string') {
    const problem = describeInstantProblem(occurredAt);
    if (problem !== null) {
      return fail(`${owner}.occurredAt "${occurredAt}" ${problem}`);
    }
  }

  return { ok: true, value: value as unknown as EventInput };
}

/**
 * Returns why the server's DateTime would reject `text`, worded to follow
 * the quoted value, or null when it accepts it. DateTime rejects an instant
 * that storage cannot hold, and with it the whole batch.
 */
function describeInstantProblem(text: string): string | null {
  if (isAcceptedInstant(text)) {
    return null;
  }
  if (isLeapSecondText(text, isAcceptedInstant)) {
    return LEAP_SECOND_PROBLEM;
  }
  if (!isRfc3339WithOffset(text)) {
    return 'is not an RFC 3339 instant with an offset, for example 2009-03-23T10:16:02.214Z';
  }
  return `is outside the supported range ${describeInstantRange()}`;
}

/** Returns whether the server's DateTime accepts `text`, an RFC 3339 date-time with an offset in the storable range. */
function isAcceptedInstant(text: string): boolean {
  return isRfc3339WithOffset(text) && isStorableInstant(Date.parse(text));
}

/**
 * Returns true for an RFC 3339 date-time with `Z` or `±hh:mm` whose fields are
 * in range. `Date.parse` alone is not enough, because it rolls 30 February
 * over into March.
 */
export function isRfc3339WithOffset(text: string): boolean {
  const match = RFC3339_PATTERN.exec(text);
  if (match === null) {
    return false;
  }
  // Groups 7 and 8 (the offset) are absent for `Z` and count as 0.
  const fields = match.slice(1, 9).map((field) => Number(field ?? 0));
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = fields;
  const [offsetHour = 0, offsetMinute = 0] = fields.slice(6);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offsetHour <= 23 &&
    offsetMinute <= 59
  );
}

function checkAutoClose(value: unknown): string | null {
  const owner = 'DefinePairTypeInput.autoClose';
  if (value === undefined || value === null) {
    return null;
  }
  if (!isJsonObject(value)) {
    return `${owner} must be a JSON object, found ${describeJsonType(value)}`;
  }

  const unknown = findUnknownField(value, AUTO_CLOSE_FIELDS);
  if (unknown !== undefined) {
    return unknownField(unknown, owner, AUTO_CLOSE_FIELDS);
  }

  const timeout = value.timeoutSeconds;
  if (
    typeof timeout !== 'number' ||
    !Number.isInteger(timeout) ||
    timeout < GRAPHQL_INT_MIN ||
    timeout > GRAPHQL_INT_MAX
  ) {
    return `${owner}.timeoutSeconds must be a 32-bit integer, found ${describeValue(timeout)}`;
  }

  const endAt = value.endAt;
  if (typeof endAt !== 'string' || !(END_AT_VALUES as readonly string[]).includes(endAt)) {
    const allowed = END_AT_VALUES.join(', ');
    return `${owner}.endAt must be one of ${allowed}, found ${describeValue(endAt)}`;
  }
  return null;
}

/** Checks that `value` has the shape of the GraphQL `DefinePairTypeInput`. */
export function checkPairTypeInput(value: unknown): Checked<DefinePairTypeInput> {
  const owner = 'DefinePairTypeInput';
  if (!isJsonObject(value)) {
    return fail(`${owner} must be a JSON object, found ${describeJsonType(value)}`);
  }

  const unknown = findUnknownField(value, PAIR_TYPE_INPUT_FIELDS);
  if (unknown !== undefined) {
    return fail(unknownField(unknown, owner, PAIR_TYPE_INPUT_FIELDS));
  }

  const problem =
    checkRequiredString(value, 'name', owner) ??
    checkRequiredString(value, 'startType', owner) ??
    checkRequiredString(value, 'endType', owner) ??
    checkOptionalString(value, 'parent', owner) ??
    checkAutoClose(value.autoClose);
  if (problem !== null) {
    return fail(problem);
  }

  return { ok: true, value: value as unknown as DefinePairTypeInput };
}

/**
 * Checks one parsed NDJSON value: `{"kind":"pairType","input":...}`,
 * `{"kind":"event","username":...,"input":...}`, or a bare `EventInput`
 * (no `kind`), which is an event of the logged-in user.
 */
export function checkImportRecord(value: unknown): Checked<ImportRecord> {
  if (!isJsonObject(value)) {
    return fail(`expected a JSON object, found ${describeJsonType(value)}`);
  }
  if (!('kind' in value)) {
    const event = checkEventInput(value);
    if (!event.ok) {
      return event;
    }
    return { ok: true, value: { kind: 'event', username: null, input: event.value } };
  }

  switch (value.kind) {
    case 'pairType': {
      const unknown = findUnknownField(value, ['kind', 'input']);
      if (unknown !== undefined) {
        return fail(`unknown field "${unknown}" in a pairType record; allowed fields: kind, input`);
      }
      const input = checkPairTypeInput(value.input);
      if (!input.ok) {
        return input;
      }
      return { ok: true, value: { kind: 'pairType', input: input.value } };
    }

    case 'event': {
      const unknown = findUnknownField(value, ['kind', 'username', 'input']);
      if (unknown !== undefined) {
        return fail(
          `unknown field "${unknown}" in an event record; allowed fields: kind, username, input`,
        );
      }
      const username = value.username;
      if (username !== undefined && username !== null && typeof username !== 'string') {
        return fail(`username must be a string, found ${describeJsonType(username)}`);
      }
      if (username === '') {
        return fail('username is empty; omit it to send the event as the logged-in user');
      }
      const input = checkEventInput(value.input);
      if (!input.ok) {
        return input;
      }
      if (typeof username === 'string' && typeof input.value.userId === 'string') {
        return fail('an event record names both username and input.userId; give only one');
      }
      const name = typeof username === 'string' ? username : null;
      return { ok: true, value: { kind: 'event', username: name, input: input.value } };
    }

    default:
      return fail(`unknown kind ${JSON.stringify(value.kind)}, expected "pairType" or "event"`);
  }
}
