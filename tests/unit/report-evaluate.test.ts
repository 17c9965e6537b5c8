import { describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { IntervalSet, type Interval } from '../../src/domain/interval/interval-set.js';
import {
  evaluate,
  evaluateInSlices,
  leafKey,
  toExpression,
  userIndependentNodes,
  validateWindow,
  type Expr,
  type SharedValues,
} from '../../src/domain/report/expression.js';

const DAY_MS = 86_400_000;

/** Seeded PRNG (mulberry32), so random cases are reproducible. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds a leaf that selects one pair key, so each named set has its own leaf key. */
function leaf(name: string): { segments: { pairKeys: string[] } } {
  return { segments: { pairKeys: [name] } };
}

function keyOf(name: string): string {
  return leafKey({ pairTypes: null, users: null, pairKeys: [name], meta: null, includeOpen: true });
}

function evaluateWith(
  expression: unknown,
  window: Interval,
  values: Record<string, IntervalSet>,
): IntervalSet {
  const byKey = new Map(Object.entries(values).map(([name, set]) => [keyOf(name), set]));
  return evaluate(toExpression(expression, window), window, (key) => {
    const set = byKey.get(key);
    if (set === undefined) {
      throw new Error(`no value for leaf ${key}`);
    }
    return set;
  });
}

describe('evaluate', () => {
  it('complements a segment outside the window', () => {
    const result = evaluateWith({ complement: leaf('a') }, { start: 10, end: 20 }, {
      a: IntervalSet.of(0, 5),
    });
    expect(result.toString()).toBe('[10, 20)');
  });

  it('unions nested segments', () => {
    const result = evaluateWith({ union: [leaf('a'), leaf('b')] }, { start: 0, end: DAY_MS }, {
      a: IntervalSet.of(0, 3_600_000),
      b: IntervalSet.of(1_000_000, 2_000_000),
    });
    expect(result.toString()).toBe('[0, 3600000)');
    expect(result.totalMs / 1000).toBe(3600);
  });

  it.each([
    ['segments', leaf('a'), '[10, 30) [50, 60)'],
    ['intervals', { intervals: [{ start: 0, end: 15 }] }, '[10, 15)'],
    ['union', { union: [leaf('a'), leaf('b')] }, '[10, 60)'],
    ['intersect', { intersect: [leaf('a'), leaf('b')] }, '[20, 30) [50, 60)'],
    ['difference', { difference: { from: leaf('a'), subtract: leaf('b') } }, '[10, 20)'],
    ['complement', { complement: leaf('a') }, '[30, 50)'],
    ['complement of nothing', { complement: { intervals: [] } }, '[10, 60)'],
  ])('evaluates %s inside the window', (_, expression, expected) => {
    const result = evaluateWith(expression, { start: 10, end: 60 }, {
      a: IntervalSet.fromPairs([
        [0, 30],
        [50, 70],
      ]),
      b: IntervalSet.of(20, 90),
    });
    expect(result.toString()).toBe(expected);
  });

  it('clips a literal built for a wider window', () => {
    const expr = toExpression({ intervals: [{ start: 0, end: 100 }] }, { start: 0, end: 100 });
    const result = evaluate(expr, { start: 10, end: 60 }, () => IntervalSet.empty());
    expect(result.toString()).toBe('[10, 60)');
  });

  it('loads each distinct leaf once', () => {
    const calls: string[] = [];
    const window = { start: 0, end: 100 };
    const expr = toExpression(
      { union: [leaf('a'), { complement: leaf('a') }, { intersect: [leaf('b'), leaf('a')] }] },
      window,
    );
    const result = evaluate(expr, window, (key) => {
      calls.push(key);
      return IntervalSet.of(0, 10);
    });
    expect(calls).toEqual([keyOf('a'), keyOf('b')]);
    expect(result.toString()).toBe('[0, 100)');
  });

  it('evaluates depth 10,000 without recursion', () => {
    let expression: unknown = leaf('a');
    for (let level = 1; level < 10_000; level += 1) {
      expression = { complement: expression };
    }
    const window = { start: 0, end: 100 };
    const limits = { maxDepth: 20_000, maxNodes: 20_000, maxLiteralIntervals: 0, maxLeafEntries: 10_000 };
    const expr = toExpression(expression, window, limits);
    // 9,999 complements: an odd count, so the result is the window minus the leaf.
    const result = evaluate(expr, window, () => IntervalSet.of(20, 30));
    expect(result.toString()).toBe('[0, 20) [30, 100)');
  });

  it('matches a naive model on random trees', () => {
    const random = prng(99);
    const span = 200;
    const window = { start: 20, end: 180 };
    const names = ['a', 'b', 'c', 'd'];

    for (let round = 0; round < 150; round += 1) {
      const cells: Record<string, boolean[]> = {};
      const values: Record<string, IntervalSet> = {};
      for (const name of names) {
        const model = Array.from({ length: span }, () => random() < 0.5);
        cells[name] = model;
        values[name] = IntervalSet.fromPairs(
          model.flatMap((on, i): Array<[number, number]> => (on ? [[i, i + 1]] : [])),
        );
      }

      // Builds a random expression and its model, one boolean per millisecond.
      const build = (depth: number): { expression: unknown; model: boolean[] } => {
        const choice = depth >= 4 ? 0 : Math.floor(random() * 5);
        if (choice === 0) {
          const name = names[Math.floor(random() * names.length)]!;
          return { expression: leaf(name), model: cells[name]! };
        }
        if (choice === 1 || choice === 2) {
          const operands = Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
            build(depth + 1),
          );
          const field = choice === 1 ? 'union' : 'intersect';
          const model = Array.from({ length: span }, (_, i) =>
            field === 'union'
              ? operands.some((operand) => operand.model[i])
              : operands.every((operand) => operand.model[i]),
          );
          return { expression: { [field]: operands.map((operand) => operand.expression) }, model };
        }
        if (choice === 3) {
          const from = build(depth + 1);
          const subtract = build(depth + 1);
          return {
            expression: { difference: { from: from.expression, subtract: subtract.expression } },
            model: from.model.map((on, i) => on && !subtract.model[i]),
          };
        }
        const operand = build(depth + 1);
        return {
          expression: { complement: operand.expression },
          model: operand.model.map((on) => !on),
        };
      };

      const { expression, model } = build(0);
      const result = evaluateWith(expression, window, values);
      const expected = model.map((on, i) => on && i >= window.start && i < window.end);
      const actual = Array.from({ length: span }, () => false);
      let previousEnd = -Infinity;
      for (const [start, end] of result) {
        expect(start).toBeGreaterThan(previousEnd);
        expect(start).toBeGreaterThanOrEqual(window.start);
        expect(end).toBeLessThanOrEqual(window.end);
        previousEnd = end;
        for (let i = start; i < end; i += 1) {
          actual[i] = true;
        }
      }
      expect(actual).toEqual(expected);
    }
  });

  it('keeps literal leaves apart from segment leaves', () => {
    const window = { start: 0, end: 10 };
    const expr: Expr = toExpression({ intervals: [{ start: 2, end: 4 }] }, window);
    const result = evaluate(expr, window, () => {
      throw new Error('a literal leaf must not be loaded');
    });
    expect(result.toString()).toBe('[2, 4)');
  });
});

describe('shared values', () => {
  const window = { start: 0, end: 100 };
  const user = '00000000-0000-4000-8000-000000000001';
  // A leaf that names its user does not depend on the group; one without users does.
  const expression = toExpression(
    {
      union: [
        { complement: { segments: { users: [user], pairKeys: ['a'] } } },
        { intersect: [{ segments: { pairKeys: ['b'] } }, { intervals: [{ start: 10, end: 50 }] }] },
      ],
    },
    window,
  );

  it('marks user-independent nodes', () => {
    const nodes = userIndependentNodes(expression);
    const union = expression as Extract<Expr, { kind: 'union' }>;
    const intersect = union.operands[1] as Extract<Expr, { kind: 'intersect' }>;

    expect(nodes.has(union.operands[0]!), 'complement of a leaf naming its user').toBe(true);
    expect(nodes.has(intersect.operands[1]!), 'literal').toBe(true);
    expect(nodes.has(intersect.operands[0]!), 'leaf without users').toBe(false);
    expect(nodes.has(intersect), 'operator over a leaf without users').toBe(false);
    expect(nodes.has(union), 'root').toBe(false);
  });

  it('computes shared nodes once', () => {
    const shared: SharedValues = { nodes: userIndependentNodes(expression), values: new Map() };
    const loads: string[] = [];
    const leafValue = (key: string) => {
      loads.push(key);
      return key.includes(user) ? IntervalSet.of(0, 20) : IntervalSet.of(40, 60);
    };

    const first = evaluate(expression, window, leafValue, shared);
    const second = evaluate(expression, window, leafValue, shared);

    expect(first.toString(), 'first result').toBe('[20, 100)');
    expect(second.toString(), 'second result').toBe('[20, 100)');
    expect(loads.filter((key) => key.includes(user)), 'loads of the leaf naming its user').toHaveLength(1);
    expect(loads.filter((key) => !key.includes(user)), 'loads of the leaf without users').toHaveLength(2);
  });
});

describe('evaluateInSlices', () => {
  const window = { start: 0, end: 100 };
  const expression = toExpression(
    { difference: { from: { complement: leaf('a') }, subtract: { union: [leaf('b'), { intervals: [{ start: 90, end: 95 }] }] } } },
    window,
  );
  const values = new Map([
    [keyOf('a'), IntervalSet.of(10, 20)],
    [keyOf('b'), IntervalSet.of(30, 40)],
  ]);
  const leafValue = (key: string) => values.get(key) ?? IntervalSet.empty();

  it('matches evaluate, pausing per node', async () => {
    let pauses = 0;
    const result = await evaluateInSlices(expression, window, leafValue, () => {
      pauses += 1;
      return undefined;
    });

    expect(result.toString()).toBe(evaluate(expression, window, leafValue).toString());
    expect(result.toString()).toBe('[0, 10) [20, 30) [40, 90) [95, 100)');
    // Six nodes: the difference at the root, the complement, leaf a, the union, leaf b and the literal.
    expect(pauses).toBe(5);
  });

  it('waits for a pause to end', async () => {
    const order: string[] = [];
    let release: () => void = () => {};
    const evaluation = evaluateInSlices(
      expression,
      window,
      (key) => {
        order.push(`load ${key === keyOf('a') ? 'a' : 'b'}`);
        return leafValue(key);
      },
      () => {
        if (order.length === 1) {
          order.push('pause');
          return new Promise<void>((resolve) => {
            release = resolve;
          });
        }
        return undefined;
      },
    );
    await Promise.resolve();
    expect(order, 'before the pause ends').toEqual(['load a', 'pause']);
    release();
    await evaluation;
    expect(order, 'after the pause').toEqual(['load a', 'pause', 'load b']);
  });
});

describe('validateWindow', () => {
  const start = Date.parse('2024-01-01T00:00:00Z');

  it('returns a valid window', () => {
    expect(validateWindow(start, start + DAY_MS, 366)).toEqual({ start, end: start + DAY_MS });
  });

  it('accepts the maximum length', () => {
    expect(validateWindow(start, start + 366 * DAY_MS, 366).end).toBe(start + 366 * DAY_MS);
  });

  it.each([
    ['equal', start],
    ['reversed', start - 1],
  ])('rejects %s bounds', (_, end) => {
    let caught: unknown;
    try {
      validateWindow(start, end, 366);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DomainError);
    const error = caught as DomainError;
    expect(error.reason).toBe('INVALID_WINDOW');
    expect(error.message).toContain('2024-01-01T00:00:00.000Z');
    expect(error.details['start']).toBe('2024-01-01T00:00:00.000Z');
  });

  it('explains equal bounds by milliseconds', () => {
    expect(() => validateWindow(start, start, 366)).toThrow('a window must last at least 1 ms');
  });

  it('leaves reversed bounds without that hint', () => {
    expect(() => validateWindow(start, start - 1, 366)).toThrow(expect.objectContaining({ message: expect.not.stringContaining('1 ms') }));
  });

  it('rejects a window 1 ms too long', () => {
    expect(() => validateWindow(start, start + 366 * DAY_MS + 1, 366)).toThrow(
      expect.objectContaining({
        reason: 'LIMIT_EXCEEDED',
        message: 'The report window is 366.01 days, above the maximum of 366 days (REPORT_MAX_WINDOW_DAYS). Split the window into shorter reports.',
        details: { limit: 'REPORT_MAX_WINDOW_DAYS', value: 366.01, max: 366 },
      }),
    );
  });

  it('accepts a local year across a DST change', () => {
    // Europe/Berlin, local midnight at +02:00 to local midnight at +01:00.
    const localStart = Date.parse('2023-03-27T00:00:00+02:00');
    const localEnd = Date.parse('2024-03-27T00:00:00+01:00');

    expect(validateWindow(localStart, localEnd, 366, 'Europe/Berlin')).toEqual({ start: localStart, end: localEnd });
  });

  it('rejects a repeated day within calendar days', () => {
    // Alaska moved across the date line in 1867: 1867-01-01 to 1868-01-01
    // local is 365 calendar days in America/Sitka but lasted 366 days.
    const localStart = Date.parse('1866-12-31T09:01:13Z');
    const localEnd = Date.parse('1868-01-01T09:01:13Z');

    expect(() => validateWindow(localStart, localEnd, 365, 'America/Sitka')).toThrow(
      expect.objectContaining({
        reason: 'LIMIT_EXCEEDED',
        message:
          'The report window is 365 calendar days or fewer in America/Sitka but lasts 366 days of 24 hours, ' +
          'above the maximum of 365 days and 12 hours for changes of UTC offset (REPORT_MAX_WINDOW_DAYS). Shorten the window.',
        details: { limit: 'REPORT_MAX_WINDOW_DAYS', value: 366, max: 365, timeZone: 'America/Sitka' },
      }),
    );
    expect(validateWindow(localStart, localEnd, 366, 'America/Sitka').end).toBe(localEnd);
  });

  it('rejects fractional instants as a programmer error', () => {
    expect(() => validateWindow(start + 0.5, start + DAY_MS, 366)).toThrow(TypeError);
  });
});
