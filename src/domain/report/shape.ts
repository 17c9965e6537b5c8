/**
 * Structure checks shared by the walkers of a `SetExpression`: the @oneOf
 * rule, list operands and the `{ from, subtract }` object. They accept
 * untrusted values and report problems as data, never by throwing.
 */

import { badInput, type DomainError } from '../errors.js';
import type { ExpressionProblem } from './types.js';

export type OperatorField =
  | 'segments'
  | 'intervals'
  | 'union'
  | 'intersect'
  | 'difference'
  | 'complement';

const OPERATOR_FIELDS: ReadonlySet<string> = new Set<OperatorField>([
  'segments',
  'intervals',
  'union',
  'intersect',
  'difference',
  'complement',
]);

export const FIELD_LIST = 'segments, intervals, union, intersect, difference or complement';

/** Maximum number of problems kept for one error, so a hostile input cannot make it huge. */
const MAX_PROBLEMS = 50;

/**
 * Maximum number of problems written into the error message. The details
 * contain all kept problems.
 */
const MAX_PROBLEMS_IN_MESSAGE = 5;

/** Maximum length of a field name quoted in a message. Longer hostile names are cut. */
const MAX_QUOTED_NAME = 40;

/**
 * A path from the root as a linked list of steps, so walkers pay for the
 * string only when they report a problem.
 */
export interface Path {
  readonly parent: Path | null;
  /** `.field` or `[index]`. */
  readonly step: string;
}

export const ROOT_PATH: Path = { parent: null, step: 'expression' };

export function childPath(parent: Path, step: string): Path {
  return { parent, step };
}

export function formatPath(path: Path): string {
  const steps: string[] = [];
  for (let cursor: Path | null = path; cursor !== null; cursor = cursor.parent) {
    steps.push(cursor.step);
  }
  return steps.reverse().join('');
}

/** Collects problems up to MAX_PROBLEMS and builds the INVALID_EXPRESSION error. */
export class ProblemList {
  readonly problems: ExpressionProblem[] = [];
  #dropped = 0;

  add(path: Path, message: string): void {
    if (this.problems.length < MAX_PROBLEMS) {
      this.problems.push({ path: formatPath(path), message });
    } else {
      this.#dropped += 1;
    }
  }

  get isEmpty(): boolean {
    return this.problems.length === 0;
  }

  /** Number of problems added, including those beyond the cap. */
  get count(): number {
    return this.problems.length + this.#dropped;
  }

  toError(): DomainError {
    const total = this.count;
    const shown = this.problems
      .slice(0, MAX_PROBLEMS_IN_MESSAGE)
      .map((problem) => `${problem.path} ${problem.message}`);
    const rest = total - shown.length;
    const suffix = rest > 0 ? `; and ${rest} more` : '';
    return badInput(
      'INVALID_EXPRESSION',
      `Invalid report expression: ${shown.join('; ')}${suffix}.`,
      { problems: this.problems, problemCount: total },
    );
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Names the JSON type of a value for messages: null, a list, a string, ... */
export function describeValue(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (value instanceof Date) {
    return 'a date';
  }
  if (typeof value === 'object') {
    return 'an object';
  }
  return `a ${typeof value}`;
}

export function quoteName(name: string): string {
  const shown = name.length > MAX_QUOTED_NAME ? `${name.slice(0, MAX_QUOTED_NAME)}…` : name;
  return JSON.stringify(shown);
}

/** Own keys whose value is not undefined, as JSON would keep them. */
export function presentKeys(value: Record<string, unknown>): string[] {
  return Object.keys(value).filter((key) => value[key] !== undefined);
}

export type NodeReading =
  | { readonly ok: true; readonly field: OperatorField; readonly operand: unknown }
  | { readonly ok: false; readonly message: string };

/**
 * Applies the @oneOf rule to one `SetExpression` value: a non-null object
 * with exactly one known field whose value is not null.
 */
export function readNode(value: unknown): NodeReading {
  if (!isObject(value)) {
    return { ok: false, message: `must be an object, got ${describeValue(value)}` };
  }

  const keys = presentKeys(value);
  if (keys.length !== 1) {
    const named = keys.slice(0, 6).map(quoteName).join(', ');
    const found = keys.length === 0 ? 'none' : `${keys.length} (${named})`;
    return { ok: false, message: `must set exactly one of ${FIELD_LIST}, but sets ${found}` };
  }

  const field = keys[0]!;
  if (!OPERATOR_FIELDS.has(field)) {
    return {
      ok: false,
      message: `sets unknown field ${quoteName(field)} instead of one of ${FIELD_LIST}`,
    };
  }

  const operand = value[field];
  if (operand === null) {
    return { ok: false, message: `sets ${field} to null, which a @oneOf input does not allow` };
  }
  return { ok: true, field: field as OperatorField, operand };
}

/**
 * Returns the items of a list operand. GraphQL coerces a single value given
 * for a list type into a list of one, so a non-list operand is one item.
 */
export function operandList(operand: unknown): { items: readonly unknown[]; isList: boolean } {
  if (Array.isArray(operand)) {
    return { items: operand, isList: true };
  }
  return { items: [operand], isList: false };
}

/**
 * Returns the path step of item `index` of a list operand, which is empty for
 * a single coerced value.
 */
export function itemStep(index: number, isList: boolean): string {
  return isList ? `[${index}]` : '';
}

export interface DifferenceReading {
  /** Present operands, in the order `from`, `subtract`. */
  readonly operands: ReadonlyArray<{
    readonly field: 'from' | 'subtract';
    readonly value: unknown;
  }>;
  /** Problems relative to the difference path. */
  readonly problems: ReadonlyArray<{ readonly step: string; readonly message: string }>;
}

/** Checks the `{ from, subtract }` object of a difference. */
export function readDifference(operand: unknown): DifferenceReading {
  if (!isObject(operand)) {
    return {
      operands: [],
      problems: [
        {
          step: '',
          message: `must be an object with from and subtract, got ${describeValue(operand)}`,
        },
      ],
    };
  }

  const operands: Array<{ field: 'from' | 'subtract'; value: unknown }> = [];
  const problems: Array<{ step: string; message: string }> = [];
  for (const field of ['from', 'subtract'] as const) {
    const value = operand[field];
    if (value === undefined || value === null) {
      problems.push({
        step: `.${field}`,
        message: 'is missing, but a difference needs both from and subtract',
      });
    } else {
      operands.push({ field, value });
    }
  }

  for (const key of presentKeys(operand)) {
    if (key !== 'from' && key !== 'subtract') {
      problems.push({
        step: '',
        message: `has unknown field ${quoteName(key)} besides from and subtract`,
      });
    }
  }
  return { operands, problems };
}
