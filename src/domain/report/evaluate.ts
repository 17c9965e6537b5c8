/**
 * Evaluation of an expression tree over a window, and collection of its
 * distinct leaves so that each is loaded once.
 */

import { assertNever } from '../errors.js';
import { IntervalSet, type Interval } from '../interval/interval-set.js';
import { foldTree, foldTreeInSlices } from './fold.js';
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
 * Returns the nodes of `expr` whose value does not depend on the user of a
 * `groupBy: USER` group: literals, leaves that name their users, and
 * operators over such nodes only. A leaf without users stands for the
 * group's user.
 */
export function userIndependentNodes(expr: Expr): Set<Expr> {
  const independent = new Set<Expr>();
  foldTree<Expr, boolean>(expr, operandsOf, (node, operands) => {
    const isIndependent = node.kind === 'segments' ? node.spec.users !== null : operands.every((operand) => operand);
    if (isIndependent) {
      independent.add(node);
    }
    return isIndependent;
  });
  return independent;
}

/** Values of nodes that several evaluations share, such as the user-independent nodes of the groups of one report. */
export interface SharedValues {
  /** The nodes whose values may be kept and reused, by identity. */
  nodes: ReadonlySet<Expr>;
  /** The values computed so far. */
  values: Map<Expr, IntervalSet>;
}

/** Function that returns the set of a leaf by its key, called once per distinct key. */
export type LeafValue = (key: string) => IntervalSet;

/**
 * Evaluates `expr` over `window`. `leafValue` returns the set of a leaf by
 * its key and is called once per distinct key. Leaves and literals are
 * clipped to the window, and `complement` is the window minus its operand,
 * so every result lies inside the window. The walk uses an explicit stack,
 * so it does not depend on the depth limit for its safety. A node in
 * `shared.nodes` is computed once for all evaluations that pass the same
 * `shared`, and its subtree is not walked again.
 */
export function evaluate(expr: Expr, window: Interval, leafValue: LeafValue, shared?: SharedValues): IntervalSet {
  const { childrenOf, combine } = evaluation(window, leafValue, shared);
  return foldTree(expr, childrenOf, combine);
}

/**
 * Evaluates like `evaluate`, and calls `pause` after each node. When `pause`
 * returns a promise, the evaluation waits for it before the next node, so
 * that a long evaluation can let other work run.
 */
export function evaluateInSlices(
  expr: Expr,
  window: Interval,
  leafValue: LeafValue,
  pause: () => Promise<void> | undefined,
  shared?: SharedValues,
): Promise<IntervalSet> {
  const { childrenOf, combine } = evaluation(window, leafValue, shared);
  return foldTreeInSlices(expr, childrenOf, combine, pause);
}

/** Builds the walk and the step of one evaluation. */
function evaluation(window: Interval, leafValue: LeafValue, shared: SharedValues | undefined) {
  const leafCache = new Map<string, IntervalSet>();
  const childrenOf = (node: Expr): readonly Expr[] => (shared?.values.has(node) === true ? [] : operandsOf(node));
  const combine = (node: Expr, operands: IntervalSet[]): IntervalSet => {
    const known = shared?.values.get(node);
    if (known !== undefined) {
      return known;
    }
    const value = evaluateNode(node, operands, window, leafCache, leafValue);
    if (shared?.nodes.has(node) === true) {
      shared.values.set(node, value);
    }
    return value;
  };
  return { childrenOf, combine };
}

function evaluateNode(
  node: Expr,
  operands: IntervalSet[],
  window: Interval,
  leafCache: Map<string, IntervalSet>,
  leafValue: LeafValue,
): IntervalSet {
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
}
