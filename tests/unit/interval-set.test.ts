import { describe, expect, it } from 'vitest';

import {
  complement,
  difference,
  intersect,
  IntervalSet,
  union,
  type Interval,
} from '../../src/domain/interval/interval-set.js';

const CELLS = 6;
const FULL = (1 << CELLS) - 1;

/** Builds the set whose unit cells [i, i + 1) are the 1 bits of `mask`. */
function fromMask(mask: number): IntervalSet {
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < CELLS; i += 1) {
    if ((mask >> i) & 1) {
      pairs.push([i, i + 1]);
    }
  }
  return IntervalSet.fromPairs(pairs);
}

/** Reads a set on the grid back into a mask; fails for boundaries off the grid. */
function toMask(set: IntervalSet): number {
  let mask = 0;
  for (const [start, end] of set) {
    for (let i = start; i < end; i += 1) {
      if (i < 0 || i >= CELLS || !Number.isInteger(i)) {
        throw new Error(`piece [${start}, ${end}) is off the grid`);
      }
      mask |= 1 << i;
    }
  }
  return mask;
}

function windowMask(window: Interval): number {
  let mask = 0;
  for (let i = Math.max(window.start, 0); i < Math.min(window.end, CELLS); i += 1) {
    mask |= 1 << i;
  }
  return mask;
}

function popcount(mask: number): number {
  let count = 0;
  for (let m = mask; m !== 0; m &= m - 1) {
    count += 1;
  }
  return count;
}

/** Number of maximal runs of 1 bits. */
function runs(mask: number): number {
  return popcount(mask & ~(mask << 1));
}

function isNormalised(set: IntervalSet): boolean {
  let previousEnd = -Infinity;
  for (const [start, end] of set) {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) {
      return false;
    }
    if (start >= end || start <= previousEnd) {
      return false;
    }
    previousEnd = end;
  }
  return true;
}

function expectNormalised(set: IntervalSet): void {
  let previousEnd = -Infinity;
  for (const [start, end] of set) {
    expect(Number.isSafeInteger(start)).toBe(true);
    expect(Number.isSafeInteger(end)).toBe(true);
    expect(start).toBeLessThan(end);
    expect(start).toBeGreaterThan(previousEnd);
    previousEnd = end;
  }
}

function expectSameSet(actual: IntervalSet, expected: IntervalSet): void {
  expect(actual.toString()).toBe(expected.toString());
  expect(actual.equals(expected)).toBe(true);
}

/**
 * Collects law violations in a loop and asserts once at the end, because one
 * `expect` per case makes the grid loops slow. Each failure names the law
 * and the operands.
 */
class LawCheck {
  readonly failures: string[] = [];

  same(law: string, operands: IntervalSet[], actual: IntervalSet, expected: IntervalSet): void {
    const holds = actual.equals(expected) && isNormalised(actual) && isNormalised(expected);
    if (!holds && this.failures.length < 20) {
      this.failures.push(
        `${law} for ${operands.map(String).join(' | ')}: got ${actual}, expected ${expected}`,
      );
    }
  }
}

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

const SPAN = 400;

/** A naive model over [0, SPAN): one boolean per millisecond. */
type Model = boolean[];

function randomPairs(random: () => number, maxPieces: number): Array<[number, number]> {
  const count = Math.floor(random() * (maxPieces + 1));
  const pairs: Array<[number, number]> = [];
  for (let i = 0; i < count; i += 1) {
    const start = Math.floor(random() * SPAN);
    const length = Math.floor(random() * 40) - 5;
    pairs.push([start, Math.min(start + length, SPAN)]);
  }
  return pairs;
}

function modelOfPairs(pairs: ReadonlyArray<readonly [number, number]>): Model {
  const model: Model = new Array<boolean>(SPAN).fill(false);
  for (const [start, end] of pairs) {
    for (let i = start; i < end; i += 1) {
      model[i] = true;
    }
  }
  return model;
}

function modelOfSet(set: IntervalSet): Model {
  return modelOfPairs([...set]);
}

function combineModels(models: Model[], combine: (cells: boolean[]) => boolean): Model {
  return Array.from({ length: SPAN }, (_, i) => combine(models.map((model) => model[i]!)));
}

const GRID_SETS = Array.from({ length: FULL + 1 }, (_, mask) => fromMask(mask));

const GRID_WINDOWS: Interval[] = [];
for (let start = 0; start <= CELLS; start += 1) {
  for (let end = start + 1; end <= CELLS; end += 1) {
    GRID_WINDOWS.push({ start, end });
  }
}

describe('IntervalSet on the 6-cell grid', () => {
  it('round-trips every mask', () => {
    for (let mask = 0; mask <= FULL; mask += 1) {
      const set = GRID_SETS[mask]!;
      expectNormalised(set);
      expect(toMask(set)).toBe(mask);
      expect(set.count).toBe(runs(mask));
      expect(set.totalMs).toBe(popcount(mask));
      expect(set.isEmpty).toBe(mask === 0);
    }
  });

  it('builds every pair of pieces', () => {
    for (let a = 0; a <= CELLS; a += 1) {
      for (let b = 0; b <= CELLS; b += 1) {
        for (let c = 0; c <= CELLS; c += 1) {
          for (let d = 0; d <= CELLS; d += 1) {
            const set = IntervalSet.fromPairs([
              [a, b],
              [c, d],
            ]);
            const expected = windowMask({ start: a, end: b }) | windowMask({ start: c, end: d });
            expectNormalised(set);
            expect(toMask(set)).toBe(expected);
          }
        }
      }
    }
  });

  it('matches the model for binary operations', () => {
    const failures: string[] = [];
    for (let a = 0; a <= FULL; a += 1) {
      for (let b = 0; b <= FULL; b += 1) {
        const setA = GRID_SETS[a]!;
        const setB = GRID_SETS[b]!;
        const results: Array<[string, IntervalSet, number]> = [
          ['union', union(setA, setB), a | b],
          ['intersect', intersect(setA, setB), a & b],
          ['difference', difference(setA, setB), a & ~b],
        ];
        for (const [name, set, mask] of results) {
          const wrong =
            !isNormalised(set) || toMask(set) !== mask || set.totalMs !== popcount(mask);
          if (wrong) {
            failures.push(`${name} of ${setA} and ${setB} gave ${set}`);
          }
        }
      }
    }
    expect(failures).toEqual([]);
  });

  it('matches the model for clip and complement', () => {
    for (const window of GRID_WINDOWS) {
      const inside = windowMask(window);
      for (let a = 0; a <= FULL; a += 1) {
        const clipped = GRID_SETS[a]!.clip(window);
        const outside = complement(GRID_SETS[a]!, window);
        expectNormalised(clipped);
        expectNormalised(outside);
        expect(toMask(clipped)).toBe(a & inside);
        expect(toMask(outside)).toBe(~a & inside);
      }
    }
  });

  it('obeys the binary laws', () => {
    const check = new LawCheck();
    for (const a of GRID_SETS) {
      check.same('A − A = ∅', [a], difference(a, a), IntervalSet.empty());
      check.same('A ∪ A = A', [a], union(a, a), a);
      check.same('A ∩ A = A', [a], intersect(a, a), a);
      for (const b of GRID_SETS) {
        check.same('∪ commutes', [a, b], union(a, b), union(b, a));
        check.same('∩ commutes', [a, b], intersect(a, b), intersect(b, a));
        check.same('absorption', [a, b], union(a, intersect(a, b)), a);
        check.same('A − B = A − (A ∩ B)', [a, b], difference(a, b), difference(a, intersect(a, b)));
      }
    }
    expect(check.failures).toEqual([]);
  });

  it('obeys associativity and distributivity', () => {
    // The 32 masks with an even number of cells keep the triple loop at 32^3
    // cases while every cell still occurs.
    const sample = GRID_SETS.filter((_, mask) => popcount(mask) % 2 === 0);
    const check = new LawCheck();
    for (const a of sample) {
      for (const b of sample) {
        for (const c of sample) {
          const operands = [a, b, c];
          check.same('∪ associates', operands, union(a, union(b, c)), union(union(a, b), c));
          check.same(
            '∩ associates',
            operands,
            intersect(a, intersect(b, c)),
            intersect(intersect(a, b), c),
          );
          check.same(
            '∩ distributes over ∪',
            operands,
            intersect(a, union(b, c)),
            union(intersect(a, b), intersect(a, c)),
          );
          check.same(
            '∪ distributes over ∩',
            operands,
            union(a, intersect(b, c)),
            intersect(union(a, b), union(a, c)),
          );
          check.same(
            'A − (B ∪ C) = (A − B) − C',
            operands,
            difference(a, union(b, c)),
            difference(difference(a, b), c),
          );
          check.same('3-ary ∪', operands, union(a, b, c), union(union(a, b), c));
          check.same('3-ary ∩', operands, intersect(a, b, c), intersect(intersect(a, b), c));
        }
      }
    }
    expect(check.failures).toEqual([]);
  });

  it('obeys De Morgan within each window', () => {
    const check = new LawCheck();
    for (const window of GRID_WINDOWS) {
      for (const a of GRID_SETS) {
        const notA = complement(a, window);
        check.same('complement twice', [a], complement(notA, window), a.clip(window));
        for (const b of GRID_SETS) {
          const notB = complement(b, window);
          check.same(
            'W − (A ∪ B)',
            [a, b],
            complement(union(a, b), window),
            intersect(notA, notB),
          );
          check.same(
            'W − (A ∩ B)',
            [a, b],
            complement(intersect(a, b), window),
            union(notA, notB),
          );
          check.same(
            '(A − B) ∩ W',
            [a, b],
            difference(a, b).clip(window),
            intersect(a.clip(window), notB),
          );
        }
      }
    }
    expect(check.failures).toEqual([]);
  });
});

describe('IntervalSet on random sets', () => {
  const random = prng(20240229);
  const cases = Array.from({ length: 200 }, () => ({
    a: randomPairs(random, 12),
    b: randomPairs(random, 12),
    c: randomPairs(random, 12),
    window: { start: Math.floor(random() * 200), end: 200 + Math.floor(random() * 200) },
  }));

  it('builds sets that match the model', () => {
    for (const { a } of cases) {
      const set = IntervalSet.fromPairs(a);
      expectNormalised(set);
      expect(modelOfSet(set)).toEqual(modelOfPairs(a));
    }
  });

  it('matches the model for every operation', () => {
    for (const { a, b, window } of cases) {
      const setA = IntervalSet.fromPairs(a);
      const setB = IntervalSet.fromPairs(b);
      const modelA = modelOfPairs(a);
      const modelB = modelOfPairs(b);
      const inWindow = modelOfPairs([[window.start, window.end]]);
      const operations: Array<[IntervalSet, Model]> = [
        [union(setA, setB), combineModels([modelA, modelB], ([x, y]) => x! || y!)],
        [intersect(setA, setB), combineModels([modelA, modelB], ([x, y]) => x! && y!)],
        [difference(setA, setB), combineModels([modelA, modelB], ([x, y]) => x! && !y)],
        [complement(setA, window), combineModels([modelA, inWindow], ([x, w]) => !x && w!)],
        [setA.clip(window), combineModels([modelA, inWindow], ([x, w]) => x! && w!)],
      ];
      for (const [set, model] of operations) {
        expectNormalised(set);
        expect(modelOfSet(set)).toEqual(model);
        expect(set.totalMs).toBe(model.filter(Boolean).length);
      }
    }
  });

  it('obeys the laws', () => {
    for (const { a, b, c, window } of cases) {
      const setA = IntervalSet.fromPairs(a);
      const setB = IntervalSet.fromPairs(b);
      const setC = IntervalSet.fromPairs(c);
      expectSameSet(union(setA, setB), union(setB, setA));
      expectSameSet(intersect(setA, setB), intersect(setB, setA));
      expectSameSet(union(setA, union(setB, setC)), union(union(setA, setB), setC));
      expectSameSet(
        intersect(setA, intersect(setB, setC)),
        intersect(intersect(setA, setB), setC),
      );
      expectSameSet(
        intersect(setA, union(setB, setC)),
        union(intersect(setA, setB), intersect(setA, setC)),
      );
      expectSameSet(
        complement(union(setA, setB), window),
        intersect(complement(setA, window), complement(setB, window)),
      );
      expectSameSet(
        complement(intersect(setA, setB), window),
        union(complement(setA, window), complement(setB, window)),
      );
      expect(difference(setA, setA).isEmpty).toBe(true);
      expectSameSet(complement(complement(setA, window), window), setA.clip(window));
    }
  });

  it('matches the model for n-ary union and intersect', () => {
    for (const operandCount of [1, 2, 3, 7, 50]) {
      const operands = Array.from({ length: operandCount }, () => randomPairs(random, 30));
      const sets = operands.map((pairs) => IntervalSet.fromPairs(pairs));
      const models = operands.map(modelOfPairs);

      const unionAll = union(...sets);
      const intersectAll = intersect(...sets);
      expectNormalised(unionAll);
      expectNormalised(intersectAll);
      expect(modelOfSet(unionAll)).toEqual(combineModels(models, (cells) => cells.some(Boolean)));
      expect(modelOfSet(intersectAll)).toEqual(
        combineModels(models, (cells) => cells.every(Boolean)),
      );
      expectSameSet(IntervalSet.unionAll(sets), unionAll);
      expectSameSet(IntervalSet.intersectAll(sets), intersectAll);
    }
  });

  it('builds sorted input with fromSortedStarts', () => {
    for (const { a } of cases) {
      const sorted = [...a].sort((x, y) => x[0] - y[0]);
      const set = IntervalSet.fromSortedStarts(
        sorted.map(([start]) => start),
        Float64Array.from(sorted.map(([, end]) => end)),
      );
      expectNormalised(set);
      expectSameSet(set, IntervalSet.fromPairs(a));
    }
  });
});

describe('IntervalSet cases', () => {
  const HOUR_MS = 3_600_000;

  it.each([
    ['touching pieces merge', [[0, 5], [5, 9]], '[0, 9)'],
    ['overlapping pieces merge', [[4, 8], [0, 5]], '[0, 8)'],
    ['contained piece vanishes', [[0, 10], [2, 3]], '[0, 10)'],
    ['empty pieces are dropped', [[3, 3], [5, 4], [6, 7]], '[6, 7)'],
    ['gaps are kept', [[7, 9], [0, 2], [3, 4]], '[0, 2) [3, 4) [7, 9)'],
    ['negative instants work', [[-10, -5], [-5, 0]], '[-10, 0)'],
    ['no pieces give the empty set', [], '∅'],
  ] as Array<[string, Array<[number, number]>, string]>)('fromPairs: %s', (_, pairs, expected) => {
    expect(IntervalSet.fromPairs(pairs).toString()).toBe(expected);
  });

  it('complement of a set outside the window is the window', () => {
    const segment = IntervalSet.of(0, 5);
    expect(complement(segment, { start: 10, end: 20 }).toString()).toBe('[10, 20)');
  });

  it('union of nested hours is the outer hour', () => {
    const a = IntervalSet.of(0, 3600_000);
    const b = IntervalSet.of(1000_000, 2000_000);
    const result = union(a, b);
    expect(result.toString()).toBe('[0, 3600000)');
    expect(result.totalMs / 1000).toBe(3600);
  });

  it('complement of an empty window is empty', () => {
    expect(complement(IntervalSet.empty(), { start: 5, end: 5 }).isEmpty).toBe(true);
    expect(IntervalSet.of(0, 10).clip({ start: 7, end: 3 }).isEmpty).toBe(true);
  });

  it('clip cuts pieces at both edges', () => {
    const set = IntervalSet.fromPairs([
      [0, 10],
      [20, 30],
      [40, 50],
    ]);
    expect(set.clip({ start: 5, end: 45 }).toString()).toBe('[5, 10) [20, 30) [40, 45)');
    expect(set.clip({ start: 10, end: 20 }).isEmpty).toBe(true);
    expect(set.clip({ start: -5, end: 60 }).equals(set)).toBe(true);
  });

  it('slice pages through pieces', () => {
    const set = IntervalSet.fromPairs([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    expect(set.slice(1, 2).toString()).toBe('[2, 3) [4, 5)');
    expect(set.slice(3, 10).toString()).toBe('[6, 7)');
    expect(set.slice(4, 10).isEmpty).toBe(true);
    expect(set.slice(0, 0).isEmpty).toBe(true);
    expect(set.slice(0, 4).equals(set)).toBe(true);
  });

  it('reads pieces by index', () => {
    const set = IntervalSet.fromPairs([
      [0, 1],
      [2, HOUR_MS],
    ]);
    expect(set.startAt(1)).toBe(2);
    expect(set.endAt(1)).toBe(HOUR_MS);
    expect(set.startAt(2)).toBeUndefined();
    expect(set.endAt(-1)).toBeUndefined();
    expect([...set.toBoundaries()]).toEqual([0, 1, 2, HOUR_MS]);
  });

  it('equals compares contents', () => {
    expect(IntervalSet.of(0, 5).equals(IntervalSet.fromPairs([[0, 2], [2, 5]]))).toBe(true);
    expect(IntervalSet.of(0, 5).equals(IntervalSet.of(0, 6))).toBe(false);
    expect(IntervalSet.of(0, 5).equals(IntervalSet.of(1, 5))).toBe(false);
    expect(IntervalSet.empty().equals(IntervalSet.of(3, 3))).toBe(true);
  });

  it('union of no operands is empty', () => {
    expect(union().isEmpty).toBe(true);
  });

  it.each([
    ['fractional start', () => IntervalSet.of(0.5, 3)],
    ['NaN end', () => IntervalSet.of(0, Number.NaN)],
    ['infinite end', () => IntervalSet.fromPairs([[0, Number.POSITIVE_INFINITY]])],
    ['unsafe integer', () => IntervalSet.of(0, 2 ** 60)],
    ['string boundary', () => IntervalSet.of('1' as unknown as number, 2)],
    ['unsorted starts', () => IntervalSet.fromSortedStarts([5, 1], [6, 2])],
    ['unequal lengths', () => IntervalSet.fromSortedStarts([1, 2], [3])],
    ['fractional window', () => IntervalSet.of(0, 5).clip({ start: 0.1, end: 4 })],
    ['negative offset', () => IntervalSet.of(0, 5).slice(-1, 2)],
    ['intersect of nothing', () => intersect()],
  ])('rejects %s with TypeError', (_, call) => {
    expect(call).toThrow(TypeError);
  });

  it('fromSortedStarts ignores the order of empty pieces', () => {
    const set = IntervalSet.fromSortedStarts([0, 50, 10], [5, 50, 20]);
    expect(set.toString()).toBe('[0, 5) [10, 20)');
  });

  it('unions 1,000 operands of 1,000 pieces', () => {
    // Operand j contains [2000k + j, 2000k + j + 2) for k = 0..999, so neighbours
    // overlap and each k merges into [2000k, 2000k + 1001).
    const operands = Array.from({ length: 1000 }, (_, j) => {
      const starts = new Float64Array(1000);
      const ends = new Float64Array(1000);
      for (let k = 0; k < 1000; k += 1) {
        starts[k] = 2000 * k + j;
        ends[k] = 2000 * k + j + 2;
      }
      return IntervalSet.fromSortedStarts(starts, ends);
    });

    const result = union(...operands);
    expect(result.count).toBe(1000);
    expect(result.totalMs).toBe(1001 * 1000);
    expect(result.startAt(999)).toBe(2000 * 999);
    expect(result.endAt(999)).toBe(2000 * 999 + 1001);
  });
});

describe('fromUnsortedBounds', () => {
  it('matches fromPairs on random inputs', () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let round = 0; round < 500; round += 1) {
      const count = Math.floor(random() * 40);
      const starts = new Float64Array(count);
      const ends = new Float64Array(count);
      const pairs: Array<[number, number]> = [];
      for (let index = 0; index < count; index += 1) {
        const start = Math.floor(random() * 100);
        const end = start + Math.floor(random() * 20) - 3;
        starts[index] = start;
        ends[index] = end;
        pairs.push([start, end]);
      }
      const fast = IntervalSet.fromUnsortedBounds(starts, ends);
      expect(fast.equals(IntervalSet.fromPairs(pairs))).toBe(true);
    }
  });
});
