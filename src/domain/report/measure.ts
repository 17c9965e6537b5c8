/**
 * Size and structure checks of an untrusted `SetExpression` value, such as
 * GraphQL variables before coercion. The walk uses an explicit stack, so
 * depth 10,000 or a list of 100,000 operands cannot overflow the call stack,
 * and it stops at the first limit exceeded. Node and literal counts grow a
 * whole list at a time, before the list is walked. The value in a limit
 * error is the count when the walk stopped, which can be below the full
 * size of the input. Leaf entries are checked after the walk, so that
 * their error gives the total of the whole expression.
 */

import { assertNever, limitExceeded, limitExceededAtLeast } from '../errors.js';
import { countLeafEntries } from './leaf.js';
import {
  childPath,
  itemStep,
  operandList,
  ProblemList,
  readDifference,
  readNode,
  ROOT_PATH,
  type Path,
} from './shape.js';
import {
  DEFAULT_EXPRESSION_LIMITS,
  type ExpressionLimits,
  type ExpressionMeasurement,
} from './types.js';

interface ScanFrame {
  readonly value: unknown;
  readonly depth: number;
  readonly path: Path;
}

function checkLimits(limits: ExpressionLimits): void {
  for (const name of ['maxDepth', 'maxNodes', 'maxLiteralIntervals', 'maxLeafEntries'] as const) {
    const value = limits[name];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new TypeError(`Expression limit ${name} must be a non-negative integer, got ${value}.`);
    }
  }
}

/**
 * Walks an expression and checks the limits and the structure: the @oneOf
 * rule, non-empty `union` and `intersect` lists, and the `{ from, subtract }`
 * object of a difference. Inside `segments` leaves it only counts the leaf
 * entries. Throws `LIMIT_EXCEEDED` when a limit is exceeded, and returns
 * the structure problems for the caller to report.
 */
export function scanExpression(
  value: unknown,
  limits: ExpressionLimits,
): { measurement: ExpressionMeasurement; problems: ProblemList } {
  checkLimits(limits);

  const problems = new ProblemList();
  let depth = 1;
  let nodes = 1;
  let literalIntervals = 0;
  let leafEntries = 0;
  /** False once a leaf's count was capped, so that `leafEntries` is a lower bound. */
  let leafEntriesExact = true;
  if (depth > limits.maxDepth) {
    throw limitExceeded('REPORT_MAX_DEPTH', depth, limits.maxDepth, 'levels');
  }
  if (nodes > limits.maxNodes) {
    throw limitExceeded('REPORT_MAX_NODES', nodes, limits.maxNodes, 'nodes');
  }

  const stack: ScanFrame[] = [{ value, depth: 1, path: ROOT_PATH }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const reading = readNode(frame.value);
    if (!reading.ok) {
      problems.add(frame.path, reading.message);
      continue;
    }

    const path = childPath(frame.path, `.${reading.field}`);
    let children: Array<{ value: unknown; path: Path }> = [];
    switch (reading.field) {
      case 'segments': {
        const counted = countLeafEntries(reading.operand);
        leafEntries += counted.count;
        leafEntriesExact &&= counted.exact;
        break;
      }

      case 'intervals': {
        literalIntervals += operandList(reading.operand).items.length;
        if (literalIntervals > limits.maxLiteralIntervals) {
          throw limitExceeded(
            'REPORT_MAX_LITERAL_INTERVALS',
            literalIntervals,
            limits.maxLiteralIntervals,
            'intervals',
          );
        }
        break;
      }

      case 'union':
      case 'intersect': {
        const { items, isList } = operandList(reading.operand);
        if (items.length === 0) {
          problems.add(path, 'must list at least one operand');
          break;
        }

        // Count a long list before building frames for it.
        if (nodes + items.length > limits.maxNodes) {
          throw limitExceededAtLeast('REPORT_MAX_NODES', nodes + items.length, limits.maxNodes, 'nodes');
        }
        children = items.map((item, index) => ({
          value: item,
          path: childPath(path, itemStep(index, isList)),
        }));
        break;
      }

      case 'difference': {
        const difference = readDifference(reading.operand);
        for (const problem of difference.problems) {
          problems.add(childPath(path, problem.step), problem.message);
        }
        children = difference.operands.map((operand) => ({
          value: operand.value,
          path: childPath(path, `.${operand.field}`),
        }));
        break;
      }

      case 'complement':
        children = [{ value: reading.operand, path }];
        break;

      default:
        assertNever(reading.field);
    }

    if (children.length === 0) {
      continue;
    }
    const childDepth = frame.depth + 1;
    if (childDepth > limits.maxDepth) {
      throw limitExceededAtLeast('REPORT_MAX_DEPTH', childDepth, limits.maxDepth, 'levels');
    }
    nodes += children.length;
    if (nodes > limits.maxNodes) {
      throw limitExceededAtLeast('REPORT_MAX_NODES', nodes, limits.maxNodes, 'nodes');
    }
    depth = Math.max(depth, childDepth);

    // Push in reverse so that problems come out in document order.
    for (let i = children.length - 1; i >= 0; i -= 1) {
      stack.push({ value: children[i]!.value, depth: childDepth, path: children[i]!.path });
    }
  }

  if (leafEntries > limits.maxLeafEntries) {
    throw leafEntriesExact
      ? limitExceeded('REPORT_MAX_LEAF_ENTRIES', leafEntries, limits.maxLeafEntries, 'entries')
      : limitExceededAtLeast('REPORT_MAX_LEAF_ENTRIES', leafEntries, limits.maxLeafEntries, 'entries');
  }

  return { measurement: { depth, nodes, literalIntervals, leafEntries }, problems };
}

/**
 * Checks an untrusted `SetExpression` value, such as a GraphQL variable
 * before coercion, against the limits and the structure rules, and returns
 * its size. Throws only DomainError: `LIMIT_EXCEEDED` naming
 * REPORT_MAX_DEPTH, REPORT_MAX_NODES, REPORT_MAX_LITERAL_INTERVALS or
 * REPORT_MAX_LEAF_ENTRIES, or
 * `INVALID_EXPRESSION` listing the structure problems with their paths.
 */
export function measureExpression(
  raw: unknown,
  limits: ExpressionLimits = DEFAULT_EXPRESSION_LIMITS,
): ExpressionMeasurement {
  const { measurement, problems } = scanExpression(raw, limits);
  if (!problems.isEmpty) {
    throw problems.toError();
  }
  return measurement;
}
