import { parse, type FieldNode, type FragmentDefinitionNode, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';

import { selectsFieldBelow } from '../../src/graphql/selection.js';

/** Builds the parts of a resolver's info for the first root field of `query`. */
function infoOf(query: string) {
  const document = parse(query);
  const operation = document.definitions.find((definition) => definition.kind === 'OperationDefinition') as OperationDefinitionNode;
  const fragments = Object.fromEntries(
    document.definitions
      .filter((definition): definition is FragmentDefinitionNode => definition.kind === 'FragmentDefinition')
      .map((fragment) => [fragment.name.value, fragment]),
  );
  return { fieldNodes: [operation.selectionSet.selections[0] as FieldNode], fragments };
}

describe('selectsFieldBelow', () => {
  it.each([
    ['a direct field', '{ segments { nodes { id meta } } }', true],
    ['no such field', '{ segments { nodes { id start end } } }', false],
    ['a field of an edge node', '{ segments { edges { node { meta } } } }', true],
    ['an inline fragment', '{ segments { nodes { ... on Segment { meta } } } }', true],
    ['a named fragment', '{ segments { nodes { ...S } } } fragment S on Segment { id meta }', true],
    ['a nested fragment', '{ segments { ...C } } fragment C on SegmentConnection { nodes { ...S } } fragment S on Segment { meta }', true],
    ['a fragment without it', '{ segments { nodes { ...S } } } fragment S on Segment { id }', false],
    ['a skipped field', '{ segments { nodes { meta @skip(if: true) } } }', true],
    ['another root field', '{ segments { nodes { id } } other: events { nodes { meta } } }', false],
  ])('%s', (_case, query, expected) => {
    expect(selectsFieldBelow(infoOf(query), 'meta')).toBe(expected);
  });
});
