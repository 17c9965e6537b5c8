import { parse, type FieldNode, type FragmentDefinitionNode, type OperationDefinitionNode } from 'graphql';
import { describe, expect, it } from 'vitest';

import { selectsPath } from '../../src/graphql/selection.js';

/** Builds the parts of a resolver's info for the first root field of `query`. */
function infoOf(query: string, variableValues: Record<string, unknown> = {}) {
  const document = parse(query);
  const operation = document.definitions.find((definition) => definition.kind === 'OperationDefinition') as OperationDefinitionNode;
  const fragments = Object.fromEntries(
    document.definitions
      .filter((definition): definition is FragmentDefinitionNode => definition.kind === 'FragmentDefinition')
      .map((fragment) => [fragment.name.value, fragment]),
  );
  return { fieldNodes: [operation.selectionSet.selections[0] as FieldNode], fragments, variableValues };
}

describe('selectsPath', () => {
  it.each([
    ['a direct field', '{ segments { nodes { id meta } } }', true],
    ['no such field', '{ segments { nodes { id start end } } }', false],
    ['an inline fragment', '{ segments { nodes { ... on Segment { meta } } } }', true],
    ['a named fragment', '{ segments { nodes { ...S } } } fragment S on Segment { id meta }', true],
    ['a nested fragment', '{ segments { ...C } } fragment C on SegmentConnection { nodes { ...S } } fragment S on Segment { meta }', true],
    ['a fragment without it', '{ segments { nodes { ...S } } } fragment S on Segment { id }', false],
    ['an aliased field', '{ segments { n: nodes { m: meta } } }', true],
    ['a field deeper down', '{ segments { nodes { startEvent { meta } } } }', false],
    ['a field of the wrong parent', '{ segments { edges { node { id } } nodes { startEvent { meta } } } }', false],
    ['a skipped field', '{ segments { nodes { meta @skip(if: true) } } }', false],
    ['a skipped parent', '{ segments { nodes @skip(if: true) { meta } } }', false],
    ['a field not included', '{ segments { nodes { meta @include(if: false) } } }', false],
    ['an included field', '{ segments { nodes { meta @include(if: true) @skip(if: false) } } }', true],
    ['a skipped inline fragment', '{ segments { nodes { ... @skip(if: true) { meta } } } }', false],
    ['a skipped fragment spread', '{ segments { nodes { ...S @skip(if: true) } } } fragment S on Segment { meta }', false],
    ['a field skipped once of two', '{ segments { nodes { meta @skip(if: true) ...S } } } fragment S on Segment { meta }', true],
    ['another root field', '{ segments { nodes { id } } other: events { nodes { meta } } }', false],
  ])('%s', (_case, query, expected) => {
    expect(selectsPath(infoOf(query), ['nodes', 'meta'])).toBe(expected);
  });

  it('follows edges to their nodes', () => {
    const info = infoOf('{ segments { edges { node { meta } } } }');

    expect(selectsPath(info, ['edges', 'node', 'meta'])).toBe(true);
    expect(selectsPath(info, ['nodes', 'meta'])).toBe(false);
  });

  it.each([
    [true, false],
    [false, true],
  ])('reads @skip(if: %s) from a variable', (skip, expected) => {
    const info = infoOf('query ($skip: Boolean!) { segments { nodes { meta @skip(if: $skip) } } }', { skip });

    expect(selectsPath(info, ['nodes', 'meta'])).toBe(expected);
  });

  it('walks a field once for all its objects', () => {
    // graphql-js passes one `fieldNodes` array for a field of every object in
    // a list, so the walk of its fragments must happen once, not per object.
    const info = infoOf('{ segments { nodes { ...S } } } fragment S on Segment { meta }');
    let fragmentReads = 0;
    const fragments = new Proxy(info.fragments, {
      get(target, name, receiver) {
        fragmentReads += 1;
        return Reflect.get(target, name, receiver) as unknown;
      },
    });
    const counted = { ...info, fragments };

    for (let object = 0; object < 1000; object += 1) {
      expect(selectsPath(counted, ['nodes', 'meta'])).toBe(true);
    }
    expect(fragmentReads, 'fragment reads').toBe(1);
    expect(selectsPath(counted, ['edges', 'node', 'meta']), 'another path').toBe(false);
  });

  it('walks again for other variables', () => {
    const info = infoOf('query ($skip: Boolean!) { segments { nodes { meta @skip(if: $skip) } } }', { skip: true });

    expect(selectsPath(info, ['nodes', 'meta']), 'skipped').toBe(false);
    expect(selectsPath({ ...info, variableValues: { skip: false } }, ['nodes', 'meta']), 'not skipped').toBe(true);
  });

  it('finds nothing for an empty path', () => {
    expect(selectsPath(infoOf('{ segments { nodes { meta } } }'), [])).toBe(false);
  });
});
