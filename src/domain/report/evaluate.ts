/**
 * Evaluation of an expression tree over a window, and collection of its
 * distinct leaves so that each is loaded once.
 */

import { assertNever } from '../errors.js';
import { IntervalSet, type Interval } from '../interval/interval-set.js';
import { foldTree } from './fold.js';
import type { Expr, LeafSpec } from './types.js';

function operandsOf(expr: Expr): readonly Expr[] {
  switch (expr.kind) {
    case 'segments':
    case 'intervals':
      return [];
    case 'union':
    case 'intersect':
      return expr.operands;
    case 'difference':
      return [expr.from, expr.subtract];
    case 'complement':
      return [expr.operand];
    default:
      return assertNever(expr);
  }
}

/** Returns each distinct `segments` leaf once, by its canonical key, in document order. */
export function collectLeaves(expr: Expr): Map<string, LeafSpec> {
  const leaves = new Map<string, LeafSpec>();
  const stack: Expr[] = [expr];
  while (stack.length > 0) {
    const current = stack.pop()!;
    if (current.kind === 'segments') {
      if (!leaves.has(current.key)) {
        leaves.set(current.key, current.spec);
      }
      continue;
    }
    const operands = operandsOf(current);
    for (let i = operands.length - 1; i >= 0; i -= 1) {
      stack.push(operands[i]!);
    }
  }
  return leaves;
}

/**
 * Evaluates `expr` over `window`. `leafValue` returns the set of a leaf by
 * its key and is called once per distinct key. Leaves and literals are
 * clipped to the window, and `complement` is the window minus its operand,
 * so every result lies inside the window. The walk uses an explicit stack,
 * so it does not depend on the depth limit for its safety.
 */
export function evaluate(
  expr: Expr,
  window: Interval,
  leafValue: (key: string) => IntervalSet,
): IntervalSet {
  const leafCache = new Map<string, IntervalSet>();

  return foldTree<Expr, IntervalSet>(expr, operandsOf, (node, operands) => {
    switch (node.kind) {
      case 'segments': {
        let value = leafCache.get(node.key);
        if (value === undefined) {
          value = leafValue(node.key).clip(window);
          leafCache.set(node.key, value);
        }
        return value;
      }
      case 'intervals':
        return node.set.clip(window);
      case 'union':
        return IntervalSet.unionAll(operands);
      case 'intersect':
        return IntervalSet.intersectAll(operands);
      case 'difference':
        return IntervalSet.difference(operands[0]!, operands[1]!);
      case 'complement':
        return IntervalSet.complement(operands[0]!, window);
      default:
        return assertNever(node);
    }
  });
}
