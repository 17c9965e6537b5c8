/**
 * Types of report expressions: the typed tree built from a GraphQL
 * `SetExpression`, its leaves and the limits on its size.
 *
 * Terminology:
 * - node: one `SetExpression` object. A leaf (`segments` or `intervals`) is
 *   one node, and so is each operator (`union`, `intersect`, `difference`,
 *   `complement`). The `{ from, subtract }` object of a difference and the
 *   literal intervals of an `intervals` leaf are not nodes.
 * - depth: the number of nodes on the longest path from the root to a leaf.
 *   A lone leaf has depth 1, and `complement(union([leaf]))` has depth 3.
 * - literal intervals: the entries of all `intervals` leaves together.
 * - leaf entries: the entries of the `pairTypes`, `users` and `pairKeys`
 *   lists and the keys and array items of the `meta` filters of all
 *   `segments` leaves together.
 */

import type { IntervalSet } from '../interval/interval-set.js';

export interface ExpressionLimits {
  /** Maximum depth (REPORT_MAX_DEPTH, default 32). */
  maxDepth: number;
  /** Maximum number of nodes (REPORT_MAX_NODES, default 256). */
  maxNodes: number;
  /** Maximum number of literal intervals (REPORT_MAX_LITERAL_INTERVALS, default 10,000). */
  maxLiteralIntervals: number;
  /**
   * Maximum number of leaf entries (REPORT_MAX_LEAF_ENTRIES, default 10,000).
   * Without it, a request of 20 MB with 255 leaves at the per-leaf maximums
   * took 7 to 8 s and held the event loop for up to 2.8 s at once. That was
   * one run of a vitest test server on a shared 2-core machine.
   */
  maxLeafEntries: number;
}

export const DEFAULT_EXPRESSION_LIMITS: Readonly<ExpressionLimits> = Object.freeze({
  maxDepth: 32,
  maxNodes: 256,
  maxLiteralIntervals: 10_000,
  maxLeafEntries: 10_000,
});

/** Size of an expression that passed the limits. */
export interface ExpressionMeasurement {
  depth: number;
  nodes: number;
  literalIntervals: number;
  /** Leaf entries, with a list or meta filter above its own maximum counted as one more than that maximum. */
  leafEntries: number;
}

/**
 * A normalised `segments` leaf. Lists are sorted and free of duplicates, or
 * null for "any". An empty list matches no segment.
 */
export interface LeafSpec {
  pairTypes: string[] | null;
  users: string[] | null;
  pairKeys: string[] | null;
  /**
   * JSON object that the start event's meta must contain, or null for no
   * condition. An empty object is stored as null because every meta contains it.
   */
  meta: Record<string, unknown> | null;
  /** Whether open segments count, running to min(now, window end). */
  includeOpen: boolean;
}

/** A set expression as a tagged union keyed by `kind`, named after the GraphQL fields. */
export type Expr =
  | { readonly kind: 'segments'; readonly spec: LeafSpec; readonly key: string }
  | { readonly kind: 'intervals'; readonly set: IntervalSet }
  | { readonly kind: 'union'; readonly operands: readonly Expr[] }
  | { readonly kind: 'intersect'; readonly operands: readonly Expr[] }
  | { readonly kind: 'difference'; readonly from: Expr; readonly subtract: Expr }
  | { readonly kind: 'complement'; readonly operand: Expr };

/** One problem found in an expression, at a path such as `expression.union[2].difference.from`. */
export interface ExpressionProblem {
  path: string;
  message: string;
}
