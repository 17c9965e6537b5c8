/**
 * A small seeded pseudo-random generator, so every benchmark run with the
 * same seed sends the same events and builds the same dataset. Not for
 * anything that needs unpredictability.
 */

/** Returns a generator of floats in [0, 1) from a 32-bit seed: a Weyl sequence mixed by the MurmurHash3 finaliser. */
export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4_294_967_296;
  };
  return {
    next,
    integer: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (probability) => next() < probability,
    pick: (items) => {
      if (items.length === 0) {
        throw new RangeError('Cannot pick from an empty list.');
      }
      return items[Math.floor(next() * items.length)]!;
    },
  };
}

export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max], both included. */
  integer(min: number, max: number): number;
  /** True with the given probability. */
  chance(probability: number): boolean;
  pick<T>(items: readonly T[]): T;
}

/** Derives an independent seed for a named part of the run, such as one user's stream. */
export function deriveSeed(seed: number, label: string): number {
  let hash = seed >>> 0;
  for (let index = 0; index < label.length; index += 1) {
    hash = Math.imul(hash ^ label.charCodeAt(index), 0x01000193) >>> 0;
  }
  return hash;
}
