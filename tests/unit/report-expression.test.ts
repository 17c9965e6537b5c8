import { describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import type { IntervalSet } from '../../src/domain/interval/interval-set.js';
import {
  bindUser,
  canonicalJson,
  collectLeaves,
  DEFAULT_EXPRESSION_LIMITS,
  leafKey,
  measureExpression,
  toExpression,
  type Expr,
  type ExpressionLimits,
  type LeafSpec,
} from '../../src/domain/report/expression.js';

const WINDOW = { start: 0, end: 100_000 };

function thrownBy(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

function domainErrorOf(call: () => unknown): DomainError {
  const error = thrownBy(call);
  expect(error).toBeInstanceOf(DomainError);
  return error as DomainError;
}

function expectLimit(call: () => unknown, limit: string): DomainError {
  const error = domainErrorOf(call);
  expect(error.reason).toBe('LIMIT_EXCEEDED');
  expect(error.details['limit']).toBe(limit);
  expect(error.message).toContain(limit);
  return error;
}

function problemPaths(error: DomainError): string[] {
  const problems = error.details['problems'] as Array<{ path: string }>;
  return problems.map((problem) => problem.path);
}

function expectInvalid(call: () => unknown, paths: string[]): DomainError {
  const error = domainErrorOf(call);
  expect(error.kind).toBe('BAD_USER_INPUT');
  expect(error.reason).toBe('INVALID_EXPRESSION');
  expect(problemPaths(error)).toEqual(paths);
  // The message names the first five problems; the details hold the rest.
  for (const path of paths.slice(0, 5)) {
    expect(error.message).toContain(path);
  }
  return error;
}

function nestedComplement(depth: number): unknown {
  let expression: unknown = { segments: {} };
  for (let level = 1; level < depth; level += 1) {
    expression = { complement: expression };
  }
  return expression;
}

function leaves(count: number): unknown[] {
  return Array.from({ length: count }, (_, index) => ({ segments: { pairKeys: [`k${index}`] } }));
}

const literal = (start: number, end: number) => ({ start: new Date(start), end: new Date(end) });

function literalSet(expr: Expr | undefined): IntervalSet {
  if (expr?.kind !== 'intervals') {
    throw new Error(`expected an intervals node, got ${expr?.kind}`);
  }
  return expr.set;
}

function leafSpec(expr: Expr | undefined): LeafSpec {
  if (expr?.kind !== 'segments') {
    throw new Error(`expected a segments node, got ${expr?.kind}`);
  }
  return expr.spec;
}

describe('measureExpression', () => {
  it.each([
    ['lone leaf', { segments: {} }, 1, 1],
    ['empty literal list', { intervals: [] }, 1, 1],
    ['complement of a union', { complement: { union: [{ segments: {} }] } }, 3, 3],
    [
      'difference of two leaves',
      { difference: { from: { segments: {} }, subtract: { intervals: [] } } },
      2,
      3,
    ],
    ['single operand without a list', { union: { segments: {} } }, 2, 2],
  ])('measures %s', (_, expression, depth, nodes) => {
    const measurement = measureExpression(expression);
    expect(measurement.depth).toBe(depth);
    expect(measurement.nodes).toBe(nodes);
  });

  it('counts literal intervals', () => {
    const expression = {
      union: [
        { intervals: [literal(0, 1), literal(2, 3)] },
        { complement: { intervals: literal(5, 6) } },
      ],
    };
    expect(measureExpression(expression).literalIntervals).toBe(3);
  });

  it('accepts each limit exactly', () => {
    const limits: ExpressionLimits = { maxDepth: 5, maxNodes: 6, maxLiteralIntervals: 4, maxLeafEntries: 10_000 };
    expect(measureExpression(nestedComplement(5), limits).depth).toBe(5);
    expect(measureExpression({ union: leaves(5) }, limits).nodes).toBe(6);
    const fourLiterals = { intervals: Array.from({ length: 4 }, () => literal(0, 1)) };
    expect(measureExpression(fourLiterals, limits).literalIntervals).toBe(4);
  });

  it('rejects depth 10,000', () => {
    const error = expectLimit(
      () => measureExpression(nestedComplement(10_000)),
      'REPORT_MAX_DEPTH',
    );
    expect(error.details).toEqual({ limit: 'REPORT_MAX_DEPTH', value: 33, max: 32 });
    expect(error.message).toBe('The expression depth is at least 33 levels, above the maximum of 32 levels (REPORT_MAX_DEPTH). Nest less deeply: `union` and `intersect` take any number of operands.');
  });

  it('walks depth 10,000 under a raised limit', () => {
    const limits = { maxDepth: 20_000, maxNodes: 20_000, maxLiteralIntervals: 0, maxLeafEntries: 10_000 };
    expect(measureExpression(nestedComplement(10_000), limits).depth).toBe(10_000);
  });

  it('rejects 100,000 literal intervals', () => {
    const intervals = Array.from({ length: 100_000 }, (_, index) => literal(index, index + 1));
    const error = expectLimit(
      () => measureExpression({ intervals }),
      'REPORT_MAX_LITERAL_INTERVALS',
    );
    expect(error.details['max']).toBe(DEFAULT_EXPRESSION_LIMITS.maxLiteralIntervals);
  });

  it('rejects literals spread over leaves', () => {
    const limits = { maxDepth: 32, maxNodes: 256, maxLiteralIntervals: 5, maxLeafEntries: 10_000 };
    const expression = {
      union: [
        { intervals: [literal(0, 1), literal(1, 2), literal(2, 3)] },
        { intervals: [literal(0, 1), literal(1, 2), literal(2, 3)] },
      ],
    };
    expectLimit(() => measureExpression(expression, limits), 'REPORT_MAX_LITERAL_INTERVALS');
  });

  it('rejects too many nodes', () => {
    expectLimit(() => measureExpression({ union: leaves(256) }), 'REPORT_MAX_NODES');
  });

  it('rejects nodes spread over branches', () => {
    const expression = {
      intersect: [{ union: leaves(100) }, { union: leaves(100) }, { union: leaves(100) }],
    };
    expectLimit(() => measureExpression(expression), 'REPORT_MAX_NODES');
  });

  it('stops early on a million operands', () => {
    const operand = { segments: {} };
    const operands = new Array<unknown>(1_000_000).fill(operand);
    expectLimit(() => measureExpression({ union: operands }), 'REPORT_MAX_NODES');
  });

  describe('leaf entries', () => {
    const limits: ExpressionLimits = { maxDepth: 32, maxNodes: 256, maxLiteralIntervals: 10, maxLeafEntries: 20 };
    const strings = (count: number, prefix: string) => Array.from({ length: count }, (_, index) => `${prefix}${index}`);

    it('counts lists and meta over leaves', () => {
      const expression = {
        difference: {
          from: { segments: { pairTypes: strings(3, 't'), users: strings(2, 'u'), pairKeys: strings(1, 'k') } },
          subtract: {
            union: [
              { segments: { meta: { room: 'a', tags: ['x', 'y'], nested: { depth: 1 } } } },
              { segments: { pairTypes: 'session', includeOpen: false } },
              { intervals: [literal(0, 1)] },
            ],
          },
        },
      };

      // 3 + 2 + 1 list entries; meta keys room, tags, nested, depth and 2 array items; one single value.
      expect(measureExpression(expression, limits).leafEntries).toBe(13);
    });

    it('accepts the limit exactly', () => {
      const expression = { union: [{ segments: { pairTypes: strings(10, 't') } }, { segments: { users: strings(10, 'u') } }] };

      expect(measureExpression(expression, limits).leafEntries).toBe(20);
    });

    it('names the total over the limit', () => {
      const expression = {
        union: [
          { segments: { pairTypes: strings(10, 't') } },
          { segments: { pairKeys: strings(10, 'k') } },
          { segments: { meta: Object.fromEntries(strings(5, 'm').map((key) => [key, 1])) } },
        ],
      };

      const error = expectLimit(() => measureExpression(expression, limits), 'REPORT_MAX_LEAF_ENTRIES');
      expect(error.details).toEqual({ limit: 'REPORT_MAX_LEAF_ENTRIES', value: 25, max: 20 });
      expect(error.message).toBe(
        'The number of leaf entries (entries of pairTypes, users and pairKeys, and keys and array items of meta, over all segments leaves) is 25 entries, above the maximum of 20 entries (REPORT_MAX_LEAF_ENTRIES). Name fewer entries, or split the report into several.',
      );
    });

    it('caps a list above its own maximum', () => {
      const expression = { union: [{ segments: { users: strings(5000, 'u') } }, { segments: { users: strings(5000, 'u') } }] };

      const error = expectLimit(() => measureExpression(expression, limits), 'REPORT_MAX_LEAF_ENTRIES');
      expect(error.details).toEqual({ limit: 'REPORT_MAX_LEAF_ENTRIES', value: 2002, max: 20 });
      expect(error.message).toContain('is at least 2002 entries');
    });

    it('leaves one oversized leaf to its own check', () => {
      const meta = Object.fromEntries(strings(400_000, 'm').map((key) => [key, 1]));

      const error = expectInvalid(() => toExpression({ segments: { meta } }, WINDOW), ['expression.segments.meta']);
      expect(error.message).toContain('more than 1000 keys and array items');
    });

    it('counts before checking leaves', () => {
      const expression = { union: [{ segments: { users: [42, null, 'not-a-uuid'] } }, { segments: { meta: 'x', pairTypes: strings(20, 't') } }] };

      expectLimit(() => measureExpression(expression, limits), 'REPORT_MAX_LEAF_ENTRIES');
    });

    it('toExpression checks it too', () => {
      const expression = { union: [{ segments: { pairTypes: strings(15, 't') } }, { segments: { pairKeys: strings(15, 'k') } }] };

      const error = expectLimit(() => toExpression(expression, WINDOW, limits), 'REPORT_MAX_LEAF_ENTRIES');
      expect(error.details['value']).toBe(30);
    });
  });

  it('reports a limit before shape problems', () => {
    const expression = { union: [null, ...leaves(300)] };
    expectLimit(() => measureExpression(expression), 'REPORT_MAX_NODES');
  });

  it.each([
    ['null', null, ['expression']],
    ['a string', 'union', ['expression']],
    ['a number', 42, ['expression']],
    ['a list', [{ segments: {} }], ['expression']],
    ['no field', {}, ['expression']],
    ['two fields', { segments: {}, intervals: [] }, ['expression']],
    ['an unknown field', { everything: true }, ['expression']],
    ['a null field', { complement: null }, ['expression']],
    ['an empty union', { union: [] }, ['expression.union']],
    ['an empty intersect', { intersect: [] }, ['expression.intersect']],
    ['a null operand', { union: [{ segments: {} }, null] }, ['expression.union[1]']],
    ['a list operand', { intersect: [[{ segments: {} }]] }, ['expression.intersect[0]']],
    ['a string complement', { complement: 'all' }, ['expression.complement']],
    ['a list difference', { difference: [] }, ['expression.difference']],
    [
      'a difference without subtract',
      { difference: { from: { segments: {} } } },
      ['expression.difference.subtract'],
    ],
    [
      'a difference with an extra field',
      { difference: { from: { segments: {} }, subtract: { segments: {} }, also: {} } },
      ['expression.difference'],
    ],
    [
      'a nested oneOf violation',
      {
        union: [
          { segments: {} },
          { segments: {} },
          { difference: { from: { segments: {}, union: [] }, subtract: { segments: {} } } },
        ],
      },
      ['expression.union[2].difference.from'],
    ],
    [
      'several problems',
      { union: [null, { complement: {} }, { intersect: [] }] },
      ['expression.union[0]', 'expression.union[1].complement', 'expression.union[2].intersect'],
    ],
  ])('rejects %s as INVALID_EXPRESSION', (_, expression, paths) => {
    expectInvalid(() => measureExpression(expression), paths);
  });

  it('caps the problems it lists', () => {
    const limits = { maxDepth: 32, maxNodes: 1000, maxLiteralIntervals: 0, maxLeafEntries: 10_000 };
    const error = expectInvalid(
      () => measureExpression({ union: new Array<unknown>(500).fill(null) }, limits),
      Array.from({ length: 50 }, (_, index) => `expression.union[${index}]`),
    );
    expect(error.details['problemCount']).toBe(500);
    expect(error.message).toContain('and 495 more');
  });

  it('cuts long field names in messages', () => {
    const error = domainErrorOf(() => measureExpression({ ['x'.repeat(10_000)]: 1 }));
    expect(error.message.length).toBeLessThan(300);
  });
});

describe('toExpression', () => {
  it('builds a typed tree', () => {
    const expr = toExpression(
      {
        difference: {
          from: {
            union: [{ segments: { pairTypes: ['task'] } }, { intervals: [literal(10, 20)] }],
          },
          subtract: { complement: { segments: { users: ['u1'], includeOpen: false } } },
        },
      },
      WINDOW,
    );
    expect(expr.kind).toBe('difference');
    if (expr.kind !== 'difference') {
      return;
    }
    expect(expr.from.kind).toBe('union');
    expect(expr.subtract.kind).toBe('complement');
    if (expr.from.kind !== 'union' || expr.subtract.kind !== 'complement') {
      return;
    }
    const [leaf, intervals] = expr.from.operands;
    expect(leaf).toMatchObject({
      kind: 'segments',
      spec: { pairTypes: ['task'], includeOpen: true },
    });
    expect(literalSet(intervals).toString()).toBe('[10, 20)');
    expect(expr.subtract.operand).toMatchObject({
      kind: 'segments',
      spec: { users: ['u1'], includeOpen: false },
    });
  });

  it('clips literals to the window', () => {
    const expr = toExpression(
      { intervals: [literal(-50, 10), literal(99_990, 200_000), literal(300_000, 400_000)] },
      WINDOW,
    );
    expect(literalSet(expr).toString()).toBe('[0, 10) [99990, 100000)');
  });

  it('accepts epoch milliseconds and a single literal', () => {
    const expr = toExpression({ intervals: { start: 5, end: 9 } }, WINDOW);
    expect(literalSet(expr).toString()).toBe('[5, 9)');
  });

  it('normalises leaves', () => {
    const expr = toExpression(
      {
        segments: {
          pairTypes: ['task', 'session', 'task'],
          users: null,
          pairKeys: 'k',
          meta: {},
          includeOpen: null,
        },
      },
      WINDOW,
    );
    expect(leafSpec(expr)).toEqual({
      pairTypes: ['session', 'task'],
      users: null,
      pairKeys: ['k'],
      meta: null,
      includeOpen: true,
    });
  });

  it('drops a zero-length literal interval', () => {
    const expr = toExpression({ intervals: [literal(0, 5), literal(7, 7), literal(5, 5)] }, WINDOW);
    expect(literalSet(expr).toString()).toBe('[0, 5)');
  });

  it('drops a lone zero-length literal', () => {
    const expr = toExpression({ intervals: literal(7, 7) }, WINDOW);
    expect(literalSet(expr).isEmpty, 'empty set').toBe(true);
  });

  it('rejects a reversed literal interval', () => {
    const error = expectInvalid(
      () => toExpression({ intervals: [literal(2000, 1000)] }, WINDOW),
      ['expression.intervals[0]'],
    );
    expect(error.message).toContain('start 1970-01-01T00:00:02.000Z');
    expect(error.message).toContain('end 1970-01-01T00:00:01.000Z');
  });

  it('reports every value problem at once', () => {
    expectInvalid(
      () =>
        toExpression(
          {
            intersect: [
              {
                intervals: [
                  { start: 'soon', end: new Date(5) },
                  { start: new Date(Number.NaN), end: 3 },
                ],
              },
              {
                segments: {
                  users: ['u', 7],
                  meta: { weight: Number.POSITIVE_INFINITY },
                  colour: 'red',
                },
              },
              { segments: { includeOpen: 'yes', meta: ['a'] } },
              { intervals: [null, { start: 0, end: 1, note: '' }] },
            ],
          },
          WINDOW,
        ),
      [
        'expression.intersect[0].intervals[0].start',
        'expression.intersect[0].intervals[1].start',
        'expression.intersect[1].segments',
        'expression.intersect[1].segments.users[1]',
        'expression.intersect[1].segments.meta.weight',
        'expression.intersect[2].segments.meta',
        'expression.intersect[2].segments.includeOpen',
        'expression.intersect[3].intervals[0]',
        'expression.intersect[3].intervals[1]',
      ],
    );
  });

  it('applies the oneOf rule with a path', () => {
    expectInvalid(
      () =>
        toExpression(
          {
            union: [
              { segments: {} },
              { segments: {} },
              { difference: { from: { segments: {}, intervals: [] }, subtract: { segments: {} } } },
            ],
          },
          WINDOW,
        ),
      ['expression.union[2].difference.from'],
    );
  });

  it('rejects an empty union', () => {
    expectInvalid(() => toExpression({ complement: { union: [] } }, WINDOW), [
      'expression.complement.union',
    ]);
  });

  it('enforces the limits on inline input', () => {
    expectLimit(() => toExpression(nestedComplement(40), WINDOW), 'REPORT_MAX_DEPTH');
    expectLimit(() => toExpression({ union: leaves(300) }, WINDOW), 'REPORT_MAX_NODES');
    const intervals = Array.from({ length: 11 }, () => literal(0, 1));
    const limits = { maxDepth: 32, maxNodes: 256, maxLiteralIntervals: 10, maxLeafEntries: 10_000 };
    expectLimit(() => toExpression({ intervals }, WINDOW, limits), 'REPORT_MAX_LITERAL_INTERVALS');
  });

  it('builds depth 10,000 under a raised limit', () => {
    const limits = { maxDepth: 20_000, maxNodes: 20_000, maxLiteralIntervals: 0, maxLeafEntries: 10_000 };
    let expr: Expr = toExpression(nestedComplement(10_000), WINDOW, limits);
    let depth = 1;
    while (expr.kind === 'complement') {
      expr = expr.operand;
      depth += 1;
    }
    expect(depth).toBe(10_000);
    expect(expr.kind).toBe('segments');
  });
});

describe('leaves', () => {
  const spec: LeafSpec = {
    pairTypes: ['task'],
    users: null,
    pairKeys: null,
    meta: { project: 'apollo', tags: ['a', 'b'] },
    includeOpen: true,
  };

  it('leafKey ignores field and key order', () => {
    const reordered: LeafSpec = {
      includeOpen: true,
      meta: { tags: ['a', 'b'], project: 'apollo' },
      pairKeys: null,
      users: null,
      pairTypes: ['task'],
    };
    expect(leafKey(reordered)).toBe(leafKey(spec));
  });

  it('leafKey sorts and deduplicates lists', () => {
    const a = { ...spec, users: ['u2', 'u1'] };
    const b = { ...spec, users: ['u1', 'u2', 'u1'] };
    expect(leafKey(a)).toBe(leafKey(b));
  });

  it.each([
    ['meta array order', { meta: { project: 'apollo', tags: ['b', 'a'] } }],
    ['includeOpen', { includeOpen: false }],
    ['users null or empty', { users: [] }],
    ['pair types', { pairTypes: ['session'] }],
  ])('leafKey tells apart %s', (_, change) => {
    expect(leafKey({ ...spec, ...change })).not.toBe(leafKey(spec));
  });

  it('collectLeaves returns each distinct leaf once', () => {
    const expr = toExpression(
      {
        union: [
          { segments: { pairTypes: ['task', 'session'], meta: { a: 1, b: 2 } } },
          { complement: { segments: { meta: { b: 2, a: 1 }, pairTypes: ['session', 'task'] } } },
          { intersect: [{ segments: { users: ['u1'] } }, { intervals: [literal(0, 1)] }] },
          { segments: { users: ['u1'], includeOpen: true } },
        ],
      },
      WINDOW,
    );
    const collected = collectLeaves(expr);
    expect(collected.size).toBe(2);
    expect([...collected.values()].map((leaf) => leaf.pairTypes)).toEqual([
      ['session', 'task'],
      null,
    ]);
    for (const [key, leaf] of collected) {
      expect(leafKey(leaf)).toBe(key);
    }
  });

  it('bindUser fills a leaf without users', () => {
    const bound = bindUser(spec, 'u9');
    expect(bound.users).toEqual(['u9']);
    expect(bound.pairTypes).toEqual(spec.pairTypes);
    expect(spec.users).toBeNull();
    expect(leafKey(bound)).not.toBe(leafKey(spec));
  });

  it('bindUser keeps named users', () => {
    const named = { ...spec, users: ['u1'] };
    expect(bindUser(named, 'u9')).toBe(named);
  });
});

describe('canonicalJson', () => {
  it('sorts object keys at every level', () => {
    expect(canonicalJson({ b: [{ y: 1, x: null }], a: 'é"' })).toBe(
      '{"a":"é\\"","b":[{"x":null,"y":1}]}',
    );
  });

  it('serialises 100,000 levels without recursion', () => {
    let value: unknown = 1;
    for (let level = 0; level < 100_000; level += 1) {
      value = { v: value };
    }
    const text = canonicalJson(value);
    expect(text.length).toBe(100_000 * 6 + 1);
  });

  it.each([
    ['NaN', { a: Number.NaN }],
    ['undefined', [undefined]],
    ['a date', { when: new Date(0) }],
    ['a bigint', { n: 1n }],
  ])('rejects %s', (_, value) => {
    expect(() => canonicalJson(value)).toThrow(TypeError);
  });

  it('rejects a circular reference', () => {
    const value: Record<string, unknown> = {};
    value['self'] = value;
    expect(() => canonicalJson(value)).toThrow(/circular/);
  });

  it('accepts a shared reference', () => {
    const shared = { x: 1 };
    expect(canonicalJson([shared, shared])).toBe('[{"x":1},{"x":1}]');
  });
});
