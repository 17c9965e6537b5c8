/**
 * Linear merge kernels over flat boundary arrays `[s0, e0, s1, e1, ...]`.
 *
 * Every input must be normalised (sorted, disjoint, not touching, no empty
 * pieces) and every output is normalised too. The kernels never mutate their
 * inputs, but they may return an input array unchanged, so callers must treat
 * all arrays as immutable.
 */

const EMPTY = new Float64Array(0);

/** Returns the shared empty boundary array. */
export function emptyBounds(): Float64Array {
  return EMPTY;
}

function trim(out: Float64Array, length: number): Float64Array {
  if (length === 0) {
    return EMPTY;
  }
  return length === out.length ? out : out.slice(0, length);
}

/** Merges two normalised sets into their union in O(n + m). */
export function unionBounds(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length === 0) {
    return b;
  }
  if (b.length === 0) {
    return a;
  }

  const out = new Float64Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;

  while (i < a.length || j < b.length) {
    let start: number;
    let end: number;
    if (j >= b.length || (i < a.length && a[i]! <= b[j]!)) {
      start = a[i]!;
      end = a[i + 1]!;
      i += 2;
    } else {
      start = b[j]!;
      end = b[j + 1]!;
      j += 2;
    }

    // A piece that starts at or before the last end overlaps or touches it.
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

  return trim(out, n);
}

/**
 * Intersects two normalised sets in O(n + m). The result cannot contain
 * touching pieces: each output piece lies inside one piece of each input, and
 * pieces of one input are separated by gaps of positive length.
 */
export function intersectBounds(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length === 0 || b.length === 0) {
    return EMPTY;
  }

  const out = new Float64Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;

  while (i < a.length && j < b.length) {
    const aEnd = a[i + 1]!;
    const bEnd = b[j + 1]!;
    const start = Math.max(a[i]!, b[j]!);
    const end = Math.min(aEnd, bEnd);
    if (start < end) {
      out[n] = start;
      out[n + 1] = end;
      n += 2;
    }

    // The piece that ends first cannot overlap anything further in the other set.
    if (aEnd < bEnd) {
      i += 2;
    } else {
      j += 2;
    }
  }

  return trim(out, n);
}

/** Subtracts `b` from `a` in O(n + m). */
export function differenceBounds(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length === 0 || b.length === 0) {
    return a;
  }

  const out = new Float64Array(a.length + b.length);
  let n = 0;
  let j = 0;

  for (let i = 0; i < a.length; i += 2) {
    const end = a[i + 1]!;
    let cursor = a[i]!;

    // Pieces of b that end at or before this piece starts cannot affect it or any later piece.
    while (j < b.length && b[j + 1]! <= cursor) {
      j += 2;
    }

    while (j < b.length && b[j]! < end) {
      const cutStart = b[j]!;
      const cutEnd = b[j + 1]!;
      if (cutStart > cursor) {
        out[n] = cursor;
        out[n + 1] = cutStart;
        n += 2;
      }
      if (cutEnd > cursor) {
        cursor = cutEnd;
      }

      // A cut that reaches past this piece may also cut the next piece of a, so keep it.
      if (cursor >= end) {
        break;
      }
      j += 2;
    }

    if (cursor < end) {
      out[n] = cursor;
      out[n + 1] = end;
      n += 2;
    }
  }

  return trim(out, n);
}

/**
 * Returns the index of the first piece whose end is after `instant`, or the
 * piece count when there is none. Binary search, O(log n).
 */
export function firstPieceEndingAfter(bounds: Float64Array, instant: number): number {
  let low = 0;
  let high = bounds.length / 2;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (bounds[middle * 2 + 1]! <= instant) {
      low = middle + 1;
    } else {
      high = middle;
    }
  }
  return low;
}

/** Keeps the parts of a normalised set inside `[start, end)`, in O(log n + output). */
export function clipBounds(bounds: Float64Array, start: number, end: number): Float64Array {
  const count = bounds.length / 2;
  if (count === 0 || start >= end) {
    return EMPTY;
  }
  if (bounds[0]! >= start && bounds[bounds.length - 1]! <= end) {
    return bounds;
  }

  const first = firstPieceEndingAfter(bounds, start);
  let last = first;
  while (last < count && bounds[last * 2]! < end) {
    last += 1;
  }
  if (last === first) {
    return EMPTY;
  }

  const out = bounds.slice(first * 2, last * 2);
  if (out[0]! < start) {
    out[0] = start;
  }
  if (out[out.length - 1]! > end) {
    out[out.length - 1] = end;
  }
  return out;
}

/**
 * Combines operands with a balanced tree of pairwise merges, so k operands
 * holding N pieces in total cost O(N log k). A left fold would cost O(N k).
 */
export function reduceBalanced(
  operands: readonly Float64Array[],
  merge: (a: Float64Array, b: Float64Array) => Float64Array,
): Float64Array {
  if (operands.length === 0) {
    return EMPTY;
  }

  let level: Float64Array[] = [...operands];
  while (level.length > 1) {
    const next: Float64Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) {
      next.push(merge(level[i]!, level[i + 1]!));
    }
    if (level.length % 2 === 1) {
      next.push(level[level.length - 1]!);
    }
    level = next;
  }
  return level[0]!;
}
