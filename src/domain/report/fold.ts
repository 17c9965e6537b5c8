/**
 * Post-order fold over a tree with an explicit stack, so walks over deep
 * trees cannot overflow the call stack.
 */

interface Frame<N, R> {
  readonly node: N;
  readonly children: readonly N[];
  readonly results: R[];
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
  }
}
