/**
 * Reads what a query selects below a field, so that a resolver can leave out
 * columns that no selection requests.
 */
import { Kind, type GraphQLResolveInfo, type SelectionSetNode } from 'graphql';

/**
 * Returns whether a field named `name` appears anywhere below the resolved
 * field, through fragments and inline fragments. It ignores `@skip` and
 * `@include`, so it can return true for a field that will not be resolved,
 * never false for one that will.
 */
export function selectsFieldBelow(info: Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments'>, name: string): boolean {
  const pending: SelectionSetNode[] = [];
  for (const node of info.fieldNodes) {
    if (node.selectionSet !== undefined) {
      pending.push(node.selectionSet);
    }
  }
  // Each fragment is walked once, however often it is spread.
  const visitedFragments = new Set<string>();
  for (let set = pending.pop(); set !== undefined; set = pending.pop()) {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value === name) {
          return true;
        }
        if (selection.selectionSet !== undefined) {
          pending.push(selection.selectionSet);
        }
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        pending.push(selection.selectionSet);
      } else if (!visitedFragments.has(selection.name.value)) {
        visitedFragments.add(selection.name.value);
        const fragment = info.fragments[selection.name.value];
        if (fragment !== undefined) {
          pending.push(fragment.selectionSet);
        }
      }
    }
  }
  return false;
}
