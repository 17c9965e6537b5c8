/**
 * Reads what a query selects below a field, so that a resolver can leave out
 * columns that no selection requests.
 */
import {
  getDirectiveValues,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  type FieldNode,
  type FragmentSpreadNode,
  type GraphQLResolveInfo,
  type InlineFragmentNode,
  type SelectionSetNode,
} from 'graphql';

type SelectionInfo = Pick<GraphQLResolveInfo, 'fieldNodes' | 'fragments' | 'variableValues'>;

/** Results of `selectsPath` for one array of field nodes, by path joined with dots. */
interface PathResults {
  fragments: SelectionInfo['fragments'];
  variableValues: SelectionInfo['variableValues'];
  byPath: Map<string, boolean>;
}

/**
 * Results of `selectsPath` by the `fieldNodes` array of the resolved field.
 * graphql-js 16 memoizes `collectSubfields`, so it passes the same array to
 * a field's resolver for every object of a list in one execution, and the
 * selections are walked once per list. A walk per object would let a few
 * thousand skipped fields below `startEvent`, which graphql-js collects once,
 * cost that walk for every segment of a page.
 */
const resultsByFieldNodes = new WeakMap<readonly FieldNode[], PathResults>();

/**
 * Returns whether the query selects the field at `path` below the resolved
 * field, such as `['nodes', 'meta']`, through fragments and inline fragments.
 * Path entries are field names, not aliases. A field, fragment or inline
 * fragment that `@skip` or `@include` leaves out does not count.
 */
export function selectsPath(info: SelectionInfo, path: readonly string[]): boolean {
  let results = resultsByFieldNodes.get(info.fieldNodes);
  if (results === undefined || results.fragments !== info.fragments || results.variableValues !== info.variableValues) {
    results = { fragments: info.fragments, variableValues: info.variableValues, byPath: new Map() };
    resultsByFieldNodes.set(info.fieldNodes, results);
  }
  const key = path.join('.');
  let selected = results.byPath.get(key);
  if (selected === undefined) {
    selected = walkPath(info, path);
    results.byPath.set(key, selected);
  }
  return selected;
}

/** Walks the selections below the resolved field along `path`, as `selectsPath` describes. */
function walkPath(info: SelectionInfo, path: readonly string[]): boolean {
  let sets = new Set<SelectionSetNode>();
  for (const node of info.fieldNodes) {
    if (node.selectionSet !== undefined) {
      sets.add(node.selectionSet);
    }
  }
  for (const name of path) {
    const fields = fieldsNamed(info, sets, name);
    if (fields.length === 0) {
      return false;
    }
    sets = new Set();
    for (const field of fields) {
      if (field.selectionSet !== undefined) {
        sets.add(field.selectionSet);
      }
    }
  }
  return path.length > 0;
}

/** Returns the included fields named `name` in `sets` and in the fragments they spread. */
function fieldsNamed(info: SelectionInfo, sets: ReadonlySet<SelectionSetNode>, name: string): FieldNode[] {
  const found: FieldNode[] = [];
  const pending = [...sets];
  // Each fragment is walked once, however often it is spread.
  const visitedFragments = new Set<string>();
  for (let set = pending.pop(); set !== undefined; set = pending.pop()) {
    for (const selection of set.selections) {
      if (!isIncluded(selection, info.variableValues)) {
        continue;
      }
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value === name) {
          found.push(selection);
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
  return found;
}

/** Returns whether `@skip` and `@include` keep a selection, by the rule that graphql-js applies when it executes. */
function isIncluded(node: FieldNode | FragmentSpreadNode | InlineFragmentNode, variables: SelectionInfo['variableValues']): boolean {
  if (getDirectiveValues(GraphQLSkipDirective, node, variables)?.if === true) {
    return false;
  }
  return getDirectiveValues(GraphQLIncludeDirective, node, variables)?.if !== false;
}
