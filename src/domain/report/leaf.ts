/**
 * `segments` leaves: normalisation of the GraphQL `SegmentsLeaf` input, the
 * canonical key that lets identical leaves share one load, and binding to a
 * user for `groupBy: USER`.
 */

import { MAX_JSON_DEPTH, characterCount, exceedsCharacters, jsonProblem, textProblem } from '../storable.js';
import {
  childPath,
  describeValue,
  formatPath,
  isObject,
  presentKeys,
  quoteName,
  type Path,
  type ProblemList,
} from './shape.js';
import type { LeafSpec } from './types.js';

const LEAF_FIELD_LIST = 'pairTypes, users, pairKeys, meta or includeOpen';
/** Maximum number of entries in one leaf list (pairTypes, users or pairKeys). */
export const MAX_LEAF_LIST_ITEMS = 1000;
/** Maximum length of one entry, the longest pair key that intake accepts. */
export const MAX_LEAF_ITEM_LENGTH = 256;
/**
 * Maximum number of keys and array items in one `meta` filter, counted over
 * all levels. Checking a filter of 400,000 keys took 3.7 s in one run on a
 * 2-core machine (Node 20), so without a bound one filter in a 32 MiB body
 * could hold the event loop for many seconds.
 */
export const MAX_META_FILTER_VALUES = 1000;

const LEAF_FIELDS: ReadonlySet<string> = new Set([
  'pairTypes',
  'users',
  'pairKeys',
  'meta',
  'includeOpen',
]);

/** Thrown by canonicalJson for a value that JSON cannot represent. */
export class NotJsonError extends TypeError {
  /** Location of the value below the serialised root, such as `.tags[2]`, or empty for the root. */
  readonly path: string;
  /** Description of the problem, without the path. */
  readonly detail: string;

  constructor(path: string, detail: string) {
    super(`${path === '' ? 'The value' : `The value at ${path}`} ${detail}.`);
    this.name = 'NotJsonError';
    this.path = path;
    this.detail = detail;
  }
}

type Work =
  | { readonly op: 'value'; readonly value: unknown; readonly path: Path }
  | { readonly op: 'text'; readonly text: string }
  | { readonly op: 'leave'; readonly container: object };

const EMPTY_PATH: Path = { parent: null, step: '' };

/**
 * Serialises a JSON value with object keys sorted, so equal values written
 * in different key orders give the same string. Array order is kept. Uses
 * an explicit stack, so deep values cannot overflow the call stack. Throws
 * NotJsonError for undefined, functions, symbols, bigints, non-finite
 * numbers, objects that are not plain (Date, Map) and circular references.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  const open = new Set<object>();
  const stack: Work[] = [{ op: 'value', value, path: EMPTY_PATH }];

  while (stack.length > 0) {
    const work = stack.pop()!;
    if (work.op === 'text') {
      out.push(work.text);
      continue;
    }
    if (work.op === 'leave') {
      open.delete(work.container);
      continue;
    }

    const current = work.value;
    if (current === null || typeof current === 'boolean') {
      out.push(String(current));
    } else if (typeof current === 'string') {
      out.push(JSON.stringify(current));
    } else if (typeof current === 'number') {
      if (!Number.isFinite(current)) {
        throw new NotJsonError(formatPath(work.path), `is ${current}, which JSON cannot represent`);
      }
      out.push(JSON.stringify(current));
    } else if (Array.isArray(current) || isPlainRecord(current)) {
      if (open.has(current)) {
        throw new NotJsonError(formatPath(work.path), 'is a circular reference');
      }
      open.add(current);
      stack.push({ op: 'leave', container: current });
      pushContainer(stack, current, work.path, out);
    } else {
      throw new NotJsonError(
        formatPath(work.path),
        `is ${describeValue(current)}, which is not a JSON value`,
      );
    }
  }

  return out.join('');
}

function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (!isObject(value)) {
    return false;
  }
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Writes the opening bracket and schedules the items and the closing bracket. */
function pushContainer(
  stack: Work[],
  container: unknown[] | Record<string, unknown>,
  path: Path,
  out: string[],
): void {
  if (Array.isArray(container)) {
    out.push('[');
    stack.push({ op: 'text', text: ']' });
    for (let i = container.length - 1; i >= 0; i -= 1) {
      stack.push({ op: 'value', value: container[i], path: childPath(path, `[${i}]`) });
      if (i > 0) {
        stack.push({ op: 'text', text: ',' });
      }
    }
    return;
  }

  const keys = Object.keys(container).sort();
  out.push('{');
  stack.push({ op: 'text', text: '}' });
  for (let i = keys.length - 1; i >= 0; i -= 1) {
    const key = keys[i]!;
    stack.push({ op: 'value', value: container[key], path: childPath(path, `.${key}`) });
    stack.push({ op: 'text', text: `${JSON.stringify(key)}:` });
    if (i > 0) {
      stack.push({ op: 'text', text: ',' });
    }
  }
}

function sortedUnique(values: readonly string[]): string[] {
  return [...new Set(values)].sort();
}

/** Reads an optional list of strings. GraphQL coerces a single string into a list of one. */
function readStringList(value: unknown, path: Path, problems: ProblemList): string[] | null {
  if (value === undefined || value === null) {
    return null;
  }
  const items = Array.isArray(value) ? value : [value];
  if (items.length > MAX_LEAF_LIST_ITEMS) {
    problems.add(path, `has ${items.length} entries, above the maximum of ${MAX_LEAF_LIST_ITEMS} per list`);
    return null;
  }
  let valid = true;
  items.forEach((item, index) => {
    const itemPath = Array.isArray(value) ? childPath(path, `[${index}]`) : path;
    if (typeof item !== 'string') {
      problems.add(itemPath, `must be a string, got ${describeValue(item)}`);
      valid = false;
      return;
    }
    const problem =
      exceedsCharacters(item, MAX_LEAF_ITEM_LENGTH)
        ? `is ${characterCount(item)} characters long, above the maximum of ${MAX_LEAF_ITEM_LENGTH}`
        : textProblem(item);
    if (problem !== null) {
      problems.add(itemPath, problem);
      valid = false;
    }
  });
  return valid ? sortedUnique(items as string[]) : null;
}

/**
 * Normalises a coerced `SegmentsLeaf` value, or records its problems and
 * returns null.
 */
export function normaliseLeaf(value: unknown, path: Path, problems: ProblemList): LeafSpec | null {
  if (!isObject(value)) {
    problems.add(path, `must be an object, got ${describeValue(value)}`);
    return null;
  }

  let valid = true;
  for (const key of presentKeys(value)) {
    if (!LEAF_FIELDS.has(key)) {
      problems.add(
        path,
        `has unknown field ${quoteName(key)}, expected ${LEAF_FIELD_LIST}`,
      );
      valid = false;
    }
  }

  const before = problems.count;
  const pairTypes = readStringList(value['pairTypes'], childPath(path, '.pairTypes'), problems);
  const users = readStringList(value['users'], childPath(path, '.users'), problems);
  const pairKeys = readStringList(value['pairKeys'], childPath(path, '.pairKeys'), problems);
  const meta = readMeta(value['meta'], childPath(path, '.meta'), problems);

  let includeOpen = true;
  const rawIncludeOpen = value['includeOpen'];
  if (typeof rawIncludeOpen === 'boolean') {
    includeOpen = rawIncludeOpen;
  } else if (rawIncludeOpen !== undefined && rawIncludeOpen !== null) {
    problems.add(
      childPath(path, '.includeOpen'),
      `must be a boolean, got ${describeValue(rawIncludeOpen)}`,
    );
  }

  if (!valid || problems.count !== before) {
    return null;
  }
  return { pairTypes, users, pairKeys, meta, includeOpen };
}

function readMeta(
  value: unknown,
  path: Path,
  problems: ProblemList,
): Record<string, unknown> | null {
  if (value === undefined || value === null) {
    return null;
  }
  if (!isPlainRecord(value)) {
    problems.add(path, `must be a JSON object, got ${describeValue(value)}`);
    return null;
  }
  if (countJsonValues(value, MAX_META_FILTER_VALUES, MAX_JSON_DEPTH).count > MAX_META_FILTER_VALUES) {
    problems.add(path, `has more than ${MAX_META_FILTER_VALUES} keys and array items over all levels, the maximum for a meta filter`);
    return null;
  }
  // Stored meta never nests deeper or contains such text. The loader's JSON.stringify would also overflow on deep values.
  const problem = jsonProblem(value, MAX_JSON_DEPTH);
  if (problem !== null) {
    problems.add(childPath(path, problem.path), problem.message);
    return null;
  }
  try {
    canonicalJson(value);
  } catch (error) {
    if (error instanceof NotJsonError) {
      problems.add(childPath(path, error.path), error.detail);
      return null;
    }
    throw error;
  }
  return Object.keys(value).length === 0 ? null : value;
}

/**
 * Counts the object keys and array items of `value` over all levels. The
 * walk stops once it has counted more than `max`. It also stops at a
 * container nested deeper than `maxDepth`, with a count of at most `max`,
 * so that jsonProblem, which walks in the same order, reports the depth.
 * `complete` is false when the walk stopped early. The walk uses an
 * explicit stack.
 */
function countJsonValues(value: unknown, max: number, maxDepth: number): { count: number; complete: boolean } {
  let count = 0;
  const stack: Array<{ value: unknown; depth: number }> = [{ value, depth: 1 }];
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop()!;
    if (current === null || typeof current !== 'object') {
      continue;
    }
    if (depth > maxDepth) {
      return { count, complete: false };
    }
    // On an object of 2,000,000 keys, Object.keys took 1.2 s and
    // Object.values 2.9 s in one run (Node 20), so the values are read only
    // once the count fits.
    const keys = Array.isArray(current) ? null : Object.keys(current);
    count += keys === null ? (current as unknown[]).length : keys.length;
    if (count > max) {
      return { count, complete: false };
    }
    if (keys === null) {
      for (const item of current as unknown[]) {
        stack.push({ value: item, depth: depth + 1 });
      }
    } else {
      for (const key of keys) {
        stack.push({ value: (current as Record<string, unknown>)[key], depth: depth + 1 });
      }
    }
  }
  return { count, complete: true };
}

/**
 * Counts the leaf entries of one `segments` operand, before it is checked:
 * the entries of `pairTypes`, `users` and `pairKeys` and the keys and array
 * items of `meta`. A list or filter above its own maximum counts as one
 * more than that maximum, so that one leaf costs at most a few thousand
 * steps, and normaliseLeaf then reports that list or filter. `exact` is
 * false when such a cap, or a filter nested too deeply, made the count a
 * lower bound.
 */
export function countLeafEntries(operand: unknown): { count: number; exact: boolean } {
  if (!isObject(operand)) {
    return { count: 0, exact: true };
  }
  let count = 0;
  let exact = true;
  for (const field of ['pairTypes', 'users', 'pairKeys'] as const) {
    const value = operand[field];
    // GraphQL coerces a single value given for a list type into a list of one.
    const length = value === undefined || value === null ? 0 : Array.isArray(value) ? value.length : 1;
    if (length > MAX_LEAF_LIST_ITEMS) {
      count += MAX_LEAF_LIST_ITEMS + 1;
      exact = false;
    } else {
      count += length;
    }
  }
  const meta = countJsonValues(operand['meta'], MAX_META_FILTER_VALUES, MAX_JSON_DEPTH);
  count += Math.min(meta.count, MAX_META_FILTER_VALUES + 1);
  return { count, exact: exact && meta.complete };
}

/**
 * Returns the canonical key of a leaf: JSON with sorted object keys and
 * sorted, deduplicated lists, so identical leaves written in different
 * places or orders share one key.
 */
export function leafKey(spec: LeafSpec): string {
  return canonicalJson({
    pairTypes: spec.pairTypes === null ? null : sortedUnique(spec.pairTypes),
    users: spec.users === null ? null : sortedUnique(spec.users),
    pairKeys: spec.pairKeys === null ? null : sortedUnique(spec.pairKeys),
    meta: spec.meta,
    includeOpen: spec.includeOpen,
  });
}

/**
 * Binds a leaf to the user of a `groupBy: USER` group: a leaf that names no
 * users selects that user's segments. A leaf that names users is returned
 * unchanged.
 */
export function bindUser(spec: LeafSpec, userId: string): LeafSpec {
  if (spec.users !== null) {
    return spec;
  }
  return { ...spec, users: [userId] };
}
