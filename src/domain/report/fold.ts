/**
 * Post-order fold over a tree with an explicit stack, so walks over deep
 * trees cannot overflow the call stack.
 */

import { runSteps, runStepsInSlices } from '../steps.js';

interface Frame<N, R> {
  readonly node: N;
  readonly children: readonly N[];
  readonly results: R[];
}

/** The fold as steps: it yields after each node other than the root is combined, and returns the root's result. */
function* foldSteps<N, R>(
  root: N,
  childrenOf: (node: N) => readonly N[],
  combine: (node: N, childResults: R[]) => R,
): Generator<void, R, void> {
  const stack: Array<Frame<N, R>> = [{ node: root, children: childrenOf(root), results: [] }];

  for (;;) {
    const top = stack[stack.length - 1]!;
    if (top.results.length < top.children.length) {
      const child = top.children[top.results.length]!;
      stack.push({ node: child, children: childrenOf(child), results: [] });
      continue;
    }

    stack.pop();
    const result = combine(top.node, top.results);
    const parent = stack[stack.length - 1];
    if (parent === undefined) {
      return result;
    }
    parent.results.push(result);
    yield;
  }
}

/**
 * Folds the tree under `root`: `combine` receives each node with the results
 * of its children, in order, and the result of the root is returned.
 */
export function foldTree<N, R>(
  root: N,
  childrenOf: (node: N) => readonly N[],
  combine: (node: N, childResults: R[]) => R,
): R {
  return runSteps(foldSteps(root, childrenOf, combine));
}

/**
 * Folds like `foldTree`, and calls `pause` after each node it combines. When
 * `pause` returns a promise, the fold waits for it before the next node, so
 * a caller can hand the thread to other work between nodes.
 */
export function foldTreeInSlices<N, R>(
  root: N,
  childrenOf: (node: N) => readonly N[],
  combine: (node: N, childResults: R[]) => R,
  pause: () => Promise<void> | undefined,
): Promise<R> {
  return runStepsInSlices(foldSteps(root, childrenOf, combine), pause);
}
