import { describe, expect, it } from 'vitest';

import { measureBracketDepth } from '../../src/graphql/document-depth.js';

describe('measureBracketDepth', () => {
  it.each([
    ['{ me { id } }', 2],
    ['query ($a: [Int!]) { f(x: [[1]]) { g } }', 4],
    ['{ f(s: "{{{{[[[") }', 2],
    ['{ f(s: """ {{{{ \\""" [[[ """) }', 2],
    ['# {{{{{\n{ a }', 1],
    ['{ f(s: "escaped \\" {{{") }', 2],
    ['', 0],
  ])('measures %j', (source, expected) => {
    expect(measureBracketDepth(source, 100)).toBe(expected);
  });

  it('stops early above the limit', () => {
    const deep = '{'.repeat(1_000_000);
    expect(measureBracketDepth(deep, 50)).toBe(51);
  });
});
