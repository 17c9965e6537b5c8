/**
 * Report expressions: conversion of a GraphQL-coerced `SetExpression` into a
 * typed tree, and the public entry point of the report domain.
 *
 * Flow: `measureExpression` checks raw variables before GraphQL coerces
 * them. `toExpression` checks the coerced value again, because inline
 * literals never pass through the first check, and builds an `Expr`.
 * `collectLeaves` lists the distinct leaves to load, and `evaluate` computes
 * the result set.
 */

import { assertNever } from '../errors.js';
import { IntervalSet, type Interval } from '../interval/interval-set.js';
import { foldTree } from './fold.js';
import { leafKey, normaliseLeaf } from './leaf.js';
import { scanExpression } from './measure.js';
import {
  childPath,
  describeValue,
  formatPath,
  isObject,
  itemStep,
  operandList,
  presentKeys,
  ProblemList,
  quoteName,
  readDifference,
  readNode,
  ROOT_PATH,
  type NodeReading,
  type Path,
} from './shape.js';
import { DEFAULT_EXPRESSION_LIMITS, type Expr, type ExpressionLimits } from './types.js';
import { formatInstant } from './window.js';

export { bindUser, canonicalJson, leafKey } from './leaf.js';
export { collectLeaves, evaluate, evaluateInSlices, userIndependentNodes, type SharedValues } from './evaluate.js';
export { measureExpression } from './measure.js';
export { validateWindow } from './window.js';
export {
  DEFAULT_EXPRESSION_LIMITS,
  type Expr,
  type ExpressionLimits,
  type ExpressionMeasurement,
  type ExpressionProblem,
  type LeafSpec,
} from './types.js';

interface BuildNode {
  readonly value: unknown;
  readonly path: Path;
  reading?: NodeReading;
}

function readBuildNode(node: BuildNode): NodeReading {
  node.reading ??= readNode(node.value);
  return node.reading;
}

function childrenOf(node: BuildNode): BuildNode[] {
  const reading = readBuildNode(node);
  if (!reading.ok) {
    return [];
  }

  const path = childPath(node.path, `.${reading.field}`);
  switch (reading.field) {
    case 'union':
    case 'intersect': {
      const { items, isList } = operandList(reading.operand);
      return items.map((item, index) => ({
        value: item,
        path: childPath(path, itemStep(index, isList)),
      }));
    }
    case 'difference':
      return readDifference(reading.operand).operands.map((operand) => ({
        value: operand.value,
        path: childPath(path, `.${operand.field}`),
      }));
    case 'complement':
      return [{ value: reading.operand, path }];
    default:
      return [];
  }
}

/**
 * Returns the first user id, in document order, that a `segments` leaf of a
 * coerced expression names and `matches` accepts, with its path, such as
 * `expression.union[1].segments.users[0]`, or null when there is none.
 * Call it only on an expression that `toExpression` accepted, because the
 * walk relies on the expression's depth and size limits.
 */
export function findLeafUser(coerced: unknown, matches: (userId: string) => boolean): { userId: string; path: string } | null {
  const stack: BuildNode[] = [{ value: coerced, path: ROOT_PATH }];
  for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
    const reading = readBuildNode(node);
    if (reading.ok && reading.field === 'segments' && isObject(reading.operand)) {
      const usersPath = childPath(childPath(node.path, '.segments'), '.users');
      const { items, isList } = operandList(reading.operand['users'] ?? []);
      for (const [index, userId] of items.entries()) {
        if (typeof userId === 'string' && matches(userId)) {
          return { userId, path: formatPath(childPath(usersPath, itemStep(index, isList))) };
        }
      }
    }
    // Pushed last to first, so that the first child is taken next.
    const children = childrenOf(node);
    for (let index = children.length - 1; index >= 0; index -= 1) {
      stack.push(children[index]!);
    }
  }
  return null;
}

/**
 * Reads an instant given as a Date, as GraphQL DateTime scalars coerce it, or
 * as epoch milliseconds.
 */
function readInstant(value: unknown, path: Path, problems: ProblemList): number | null {
  if (value instanceof Date) {
    const ms = value.getTime();
    if (Number.isSafeInteger(ms)) {
      return ms;
    }
    problems.add(path, 'is an invalid date');
    return null;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) {
    return value;
  }
  problems.add(path, `must be a date-time, got ${describeValue(value)}`);
  return null;
}

/** Reads the literal intervals of an `intervals` leaf, clipped to the window. */
function readLiterals(
  operand: unknown,
  path: Path,
  window: Interval,
  problems: ProblemList,
): IntervalSet | null {
  const { items, isList } = operandList(operand);
  const pairs: Array<[number, number]> = [];
  const before = problems.count;

  items.forEach((item, index) => {
    const itemPath = childPath(path, itemStep(index, isList));
    if (!isObject(item)) {
      problems.add(itemPath, `must be an object with start and end, got ${describeValue(item)}`);
      return;
    }
    for (const key of presentKeys(item)) {
      if (key !== 'start' && key !== 'end') {
        problems.add(itemPath, `has unknown field ${quoteName(key)} besides start and end`);
      }
    }

    const start = readInstant(item['start'], childPath(itemPath, '.start'), problems);
    const end = readInstant(item['end'], childPath(itemPath, '.end'), problems);
    if (start === null || end === null) {
      return;
    }
    if (start > end) {
      problems.add(itemPath, `has start ${formatInstant(start)}, which is after its end ${formatInstant(end)}`);
      return;
    }
    // An interval of length zero is empty: it adds nothing to the set.
    if (start < end) {
      pairs.push([start, end]);
    }
  });

  if (problems.count !== before) {
    return null;
  }
  return IntervalSet.fromPairs(pairs).clip(window);
}

/**
 * Converts a GraphQL-coerced `SetExpression` into an `Expr`. Instants in
 * literal intervals are Date objects (or epoch milliseconds), and literal
 * sets are clipped to `window`.
 *
 * Throws `LIMIT_EXCEEDED` as `measureExpression` does, and `INVALID_EXPRESSION`
 * listing every problem with its path: the @oneOf rule, an empty `union` or
 * `intersect`, a literal interval whose start is after its end, and
 * malformed leaf fields. Structure problems are reported before value
 * problems, because values are read only from a well-formed tree.
 */
export function toExpression(
  coerced: unknown,
  window: Interval,
  limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS,
): Expr {
  const structure = scanExpression(coerced, limits).problems;
  if (!structure.isEmpty) {
    throw structure.toError();
  }

  const problems = new ProblemList();
  const expr = foldTree<BuildNode, Expr | null>(
    { value: coerced, path: ROOT_PATH },
    childrenOf,
    (node, operands) => {
      const reading = readBuildNode(node);
      if (!reading.ok || operands.some((operand) => operand === null)) {
        return null;
      }
      const path = childPath(node.path, `.${reading.field}`);
      const built = operands as Expr[];

      switch (reading.field) {
        case 'segments': {
          const spec = normaliseLeaf(reading.operand, path, problems);
          return spec === null ? null : { kind: 'segments', spec, key: leafKey(spec) };
        }
        case 'intervals': {
          const set = readLiterals(reading.operand, path, window, problems);
          return set === null ? null : { kind: 'intervals', set };
        }
        case 'union':
        case 'intersect':
          return { kind: reading.field, operands: built };
        case 'difference':
          return { kind: 'difference', from: built[0]!, subtract: built[1]! };
        case 'complement':
          return { kind: 'complement', operand: built[0]! };
        default:
          return assertNever(reading.field);
      }
    },
  );

  if (!problems.isEmpty) {
    throw problems.toError();
  }
  if (expr === null) {
    throw new Error('toExpression built no tree although it found no problem.');
  }
  return expr;
}
