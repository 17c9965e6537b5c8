import { createRequire } from 'node:module';

import type { ASTNode, GraphQLError as GraphQLErrorType } from 'graphql';
import { describe, expect, it } from 'vitest';

import { createFormatError } from '../../src/graphql/errors.js';

// Apollo Server unwraps errors with the CommonJS build of graphql, and
// Vitest would load the ES module build, whose GraphQLError is another class.
const { GraphQLError, Kind, locatedError, parse, visit } = createRequire(import.meta.url)('graphql') as typeof import('graphql');

const DOCUMENT = parse('query ($x: SetExpression) { report(expression: { complement: $x }) { count } }');

/** Returns the first node of `kind` in DOCUMENT. */
function firstNode(kind: ASTNode['kind']): ASTNode {
  let found: ASTNode | undefined;
  visit(DOCUMENT, {
    enter(node) {
      if (found === undefined && node.kind === kind) {
        found = node;
      }
    },
  });
  return found!;
}

/** Formats `inner` as Apollo does for an error thrown while running the field `report`. */
function formatExecutionError(inner: GraphQLErrorType) {
  const raw = locatedError(inner, [firstNode(Kind.FIELD)], ['report']);
  return createFormatError(false)({ message: raw.message, path: ['report'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }, raw);
}

describe('createFormatError', () => {
  it('reports argument coercion as input', () => {
    const inner = new GraphQLError('Argument "expression" has invalid value {complement: $x}.', {
      nodes: firstNode(Kind.OBJECT),
    });
    const formatted = formatExecutionError(inner);

    expect(formatted.extensions?.code).toBe('BAD_USER_INPUT');
    expect(formatted.extensions?.reason).toBe('INVALID_VARIABLE');
    expect(formatted.message).toContain('{complement: $x}');
    expect(formatted.path).toEqual(['report']);
  });

  it('masks an error located at a field', () => {
    const inner = new GraphQLError('Abstract type "Node" must resolve to an Object type at runtime.', {
      nodes: firstNode(Kind.FIELD),
    });
    const formatted = formatExecutionError(inner);

    expect(formatted.extensions?.code).toBe('INTERNAL_SERVER_ERROR');
    expect(formatted.message).toBe('Internal server error.');
  });
});
