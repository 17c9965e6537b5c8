/**
 * Normalised sets of half-open time intervals.
 *
 * Conventions:
 * - An instant is an integer number of milliseconds since the Unix epoch, UTC.
 * - An interval `[start, end)` contains `start` and excludes `end`. An interval
 *   with `start >= end` is empty.
 * - A normalised set keeps its pieces sorted by start, disjoint, not touching
 *   (`[0, 5)` and `[5, 9)` are stored as `[0, 9)`) and never empty. Every
 *   constructor and operation here returns a normalised set, so two sets that
 *   contain the same instants have the same pieces.
 * - Boundaries are stored flat, `[s0, e0, s1, e1, ...]`, in one Float64Array,
 *   so a million pieces take one 16 MB array instead of a million objects.
 *
 * Boundaries must be safe integers. Anything else is a programmer error and
 * throws a TypeError. Sets are immutable.
 */

import {
  clipBounds,
  differenceBounds,
  emptyBounds,
  intersectBounds,
  reduceBalanced,
  unionBounds,
} from './merge.js';

/** A half-open interval `[start, end)` in epoch milliseconds. */
export interface Interval {
  readonly start: number;
  readonly end: number;
}

function checkBoundary(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new TypeError(
      `Interval ${name} must be a safe integer number of milliseconds, got ${String(value)}.`,
    );
  }
  return value;
}

function checkWindow(window: Interval): void {
  checkBoundary(window.start, 'window start');
  checkBoundary(window.end, 'window end');
}

export class IntervalSet implements Iterable<[number, number]> {
  /** Flat boundaries of the pieces, never mutated after construction. */
  readonly #bounds: Float64Array;
  #totalMs: number | undefined;

  private constructor(bounds: Float64Array) {
    this.#bounds = bounds;
  }

  static #empty = new IntervalSet(emptyBounds());

  /** Returns the set with no pieces. */
  static empty(): IntervalSet {
    return IntervalSet.#empty;
  }

  /** Builds the set of one interval, which is empty when `start >= end`. */
  static of(start: number, end: number): IntervalSet {
    checkBoundary(start, 'start');
    checkBoundary(end, 'end');
    if (start >= end) {
      return IntervalSet.#empty;
    }
    return new IntervalSet(Float64Array.of(start, end));
  }

  /**
   * Builds a set from pairs in any order. Pairs may overlap or touch, and
   * pairs with `start >= end` are skipped. Sorts and merges in O(n log n),
   * or O(n) when the pairs are already sorted by start.
   */
  static fromPairs(pairs: Iterable<readonly [number, number]>): IntervalSet {
    const starts: number[] = [];
    const ends: number[] = [];
    let sorted = true;

    for (const [start, end] of pairs) {
      checkBoundary(start, 'start');
      checkBoundary(end, 'end');
      if (start >= end) {
        continue;
      }
      if (starts.length > 0 && start < starts[starts.length - 1]!) {
        sorted = false;
      }
      starts.push(start);
      ends.push(end);
    }

    if (sorted) {
      return IntervalSet.#mergeSorted(starts, ends, null);
    }

    const order = new Uint32Array(starts.length);
    for (let i = 0; i < order.length; i += 1) {
      order[i] = i;
    }
    order.sort((x, y) => starts[x]! - starts[y]!);
    return IntervalSet.#mergeSorted(starts, ends, order);
  }

  /**
   * Builds a set from parallel arrays already sorted by start, in O(n), for
   * example rows read with `ORDER BY start`. Pieces may overlap or touch, and
   * pieces with `start >= end` are skipped. Throws a TypeError when the
   * arrays differ in length or the starts of non-empty pieces are not sorted.
   */
  static fromSortedStarts(starts: ArrayLike<number>, ends: ArrayLike<number>): IntervalSet {
    if (starts.length !== ends.length) {
      throw new TypeError(
        `starts and ends must have the same length, got ${starts.length} and ${ends.length}.`,
      );
    }

    let previousStart = -Infinity;
    for (let i = 0; i < starts.length; i += 1) {
      const start = checkBoundary(starts[i], 'start');
      const end = checkBoundary(ends[i], 'end');
      if (start >= end) {
        continue;
      }
      if (start < previousStart) {
        throw new TypeError(
          `starts must be sorted, but piece ${i} starts at ${start}, before ${previousStart}.`,
        );
      }
      previousStart = start;
    }

    return IntervalSet.#mergeSorted(starts, ends, null);
  }

  /**
   * Builds the union of the pieces `[starts[i], ends[i])`, given in any order.
   * Pieces may overlap or touch, and pieces with `start >= end` are skipped.
   * It sorts copies of the starts and of the ends apart, with the native
   * numeric sort of typed arrays, and sweeps both. That is correct because
   * how many pieces contain an instant depends only on how many starts and
   * how many ends lie at or before it, not on which start belongs to which
   * end. For a million pieces this is about 3 times faster than `fromPairs`,
   * which sorts pairs with a comparator. The arguments are not modified.
   */
  static fromUnsortedBounds(starts: Float64Array, ends: Float64Array): IntervalSet {
    if (starts.length !== ends.length) {
      throw new TypeError(
        `starts and ends must have the same length, got ${starts.length} and ${ends.length}.`,
      );
    }

    const sortedStarts = new Float64Array(starts.length);
    const sortedEnds = new Float64Array(ends.length);
    let count = 0;
    for (let i = 0; i < starts.length; i += 1) {
      const start = checkBoundary(starts[i], 'start');
      const end = checkBoundary(ends[i], 'end');
      if (start < end) {
        sortedStarts[count] = start;
        sortedEnds[count] = end;
        count += 1;
      }
    }
    if (count === 0) {
      return IntervalSet.#empty;
    }
    const s = sortedStarts.subarray(0, count).sort();
    const e = sortedEnds.subarray(0, count).sort();

    // The k-th smallest end lies after the k-th smallest start, so the depth
    // never drops below 0. An end equal to the next start does not close the
    // piece, which merges touching pieces.
    const out = new Float64Array(count * 2);
    let n = 0;
    let depth = 0;
    let j = 0;
    for (let i = 0; i < count; i += 1) {
      const start = s[i]!;
      while (j < count && e[j]! < start) {
        depth -= 1;
        if (depth === 0) {
          out[n + 1] = e[j]!;
          n += 2;
        }
        j += 1;
      }
      if (depth === 0) {
        out[n] = start;
      }
      depth += 1;
    }
    // After the last start the depth returns to 0 only at the largest end.
    out[n + 1] = e[count - 1]!;
    n += 2;

    return new IntervalSet(n === out.length ? out : out.slice(0, n));
  }

  /**
   * Merges checked pieces visited in start order: `order` lists the indexes
   * to visit, or null for 0..n-1. Skips empty pieces.
   */
  static #mergeSorted(
    starts: ArrayLike<number>,
    ends: ArrayLike<number>,
    order: Uint32Array | null,
  ): IntervalSet {
    const length = order === null ? starts.length : order.length;
    const out = new Float64Array(length * 2);
    let n = 0;

    for (let k = 0; k < length; k += 1) {
      const i = order === null ? k : order[k]!;
      const start = starts[i]!;
      const end = ends[i]!;
      if (start >= end) {
        continue;
      }
      if (n > 0 && start <= out[n - 1]!) {
        if (end > out[n - 1]!) {
          out[n - 1] = end;
        }
      } else {
        out[n] = start;
        out[n + 1] = end;
        n += 2;
      }
    }

    if (n === 0) {
      return IntervalSet.#empty;
    }
    return new IntervalSet(n === out.length ? out : out.slice(0, n));
  }

  static #wrap(bounds: Float64Array): IntervalSet {
    return bounds.length === 0 ? IntervalSet.#empty : new IntervalSet(bounds);
  }

  /** Returns the union of any number of sets. No operands give the empty set. */
  static union(...sets: IntervalSet[]): IntervalSet {
    return IntervalSet.unionAll(sets);
  }

  /**
   * Returns the union of an array of sets in O(N log k) for k sets of N
   * pieces in total. Takes an array, so callers with very many operands need
   * no spread call.
   */
  static unionAll(sets: readonly IntervalSet[]): IntervalSet {
    if (sets.length === 1) {
      return sets[0]!;
    }
    return IntervalSet.#wrap(reduceBalanced(sets.map((set) => set.#bounds), unionBounds));
  }

  /**
   * Returns the intersection of one or more sets. Throws a TypeError for no
   * operands, because the intersection of nothing is the unbounded time line.
   */
  static intersect(...sets: IntervalSet[]): IntervalSet {
    return IntervalSet.intersectAll(sets);
  }

  /** Returns the intersection of an array of one or more sets, in O(N log k). */
  static intersectAll(sets: readonly IntervalSet[]): IntervalSet {
    if (sets.length === 0) {
      throw new TypeError('intersect needs at least one operand.');
    }
    if (sets.some((set) => set.isEmpty)) {
      return IntervalSet.#empty;
    }
    return IntervalSet.#wrap(reduceBalanced(sets.map((set) => set.#bounds), intersectBounds));
  }

  /** Returns the instants of `from` that are not in `subtract`. */
  static difference(from: IntervalSet, subtract: IntervalSet): IntervalSet {
    return IntervalSet.#wrap(differenceBounds(from.#bounds, subtract.#bounds));
  }

  /** Returns the instants of `window` that are not in `set`. */
  static complement(set: IntervalSet, window: Interval): IntervalSet {
    checkWindow(window);
    if (window.start >= window.end) {
      return IntervalSet.#empty;
    }
    const windowBounds = Float64Array.of(window.start, window.end);
    const inside = clipBounds(set.#bounds, window.start, window.end);
    return IntervalSet.#wrap(differenceBounds(windowBounds, inside));
  }

  /** Number of pieces. */
  get count(): number {
    return this.#bounds.length / 2;
  }

  /** Sum of the piece lengths in milliseconds. */
  get totalMs(): number {
    if (this.#totalMs === undefined) {
      let total = 0;
      for (let i = 0; i < this.#bounds.length; i += 2) {
        total += this.#bounds[i + 1]! - this.#bounds[i]!;
      }
      this.#totalMs = total;
    }
    return this.#totalMs;
  }

  get isEmpty(): boolean {
    return this.#bounds.length === 0;
  }

  /** Returns the start of piece `index` (0-based), or undefined when out of range. */
  startAt(index: number): number | undefined {
    return index >= 0 && index < this.count ? this.#bounds[index * 2] : undefined;
  }

  /** Returns the end of piece `index` (0-based), or undefined when out of range. */
  endAt(index: number): number | undefined {
    return index >= 0 && index < this.count ? this.#bounds[index * 2 + 1] : undefined;
  }

  /** Returns true when both sets contain the same instants. */
  equals(other: IntervalSet): boolean {
    const a = this.#bounds;
    const b = other.#bounds;
    if (a === b) {
      return true;
    }
    if (a.length !== b.length) {
      return false;
    }
    for (let i = 0; i < a.length; i += 1) {
      if (a[i] !== b[i]) {
        return false;
      }
    }
    return true;
  }

  /** Keeps the parts inside `window`, in O(log n + output). */
  clip(window: Interval): IntervalSet {
    checkWindow(window);
    return IntervalSet.#wrap(clipBounds(this.#bounds, window.start, window.end));
  }

  /** Returns the pieces `offset .. offset + limit - 1`, for paging results. */
  slice(offset: number, limit: number): IntervalSet {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new TypeError(`offset must be a non-negative integer, got ${offset}.`);
    }
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new TypeError(`limit must be a non-negative integer, got ${limit}.`);
    }
    const from = Math.min(offset, this.count) * 2;
    const to = Math.min(offset + limit, this.count) * 2;
    if (from === 0 && to === this.#bounds.length) {
      return this;
    }
    return IntervalSet.#wrap(this.#bounds.slice(from, to));
  }

  /** Yields each piece as a fresh `[start, end]` pair. */
  *pairs(): Generator<[number, number], void, undefined> {
    const bounds = this.#bounds;
    for (let i = 0; i < bounds.length; i += 2) {
      yield [bounds[i]!, bounds[i + 1]!];
    }
  }

  [Symbol.iterator](): Iterator<[number, number]> {
    return this.pairs();
  }

  /** Returns a copy of the flat boundaries `[s0, e0, s1, e1, ...]`. */
  toBoundaries(): Float64Array {
    return this.#bounds.slice();
  }

  /** Formats the pieces as `[s, e) [s, e)`, or `∅`, for test output and debugging. */
  toString(): string {
    if (this.isEmpty) {
      return '∅';
    }
    const parts: string[] = [];
    for (const [start, end] of this.pairs()) {
      parts.push(`[${start}, ${end})`);
    }
    return parts.join(' ');
  }
}

/** Returns the union of any number of sets. See {@link IntervalSet.union}. */
export function union(...sets: IntervalSet[]): IntervalSet {
  return IntervalSet.union(...sets);
}

/** Returns the intersection of one or more sets. See {@link IntervalSet.intersect}. */
export function intersect(...sets: IntervalSet[]): IntervalSet {
  return IntervalSet.intersect(...sets);
}

/** Returns the instants of `from` that are not in `subtract`. */
export function difference(from: IntervalSet, subtract: IntervalSet): IntervalSet {
  return IntervalSet.difference(from, subtract);
}

/** Returns the instants of `window` that are not in `set`. */
export function complement(set: IntervalSet, window: Interval): IntervalSet {
  return IntervalSet.complement(set, window);
}
