/**
 * `inJsonbKeyOrder` copies a JSON value with its keys in the order a read of
 * a jsonb column returns them, so a reply built from memory matches a read.
 */
import { describe, expect, it } from 'vitest';

import { inJsonbKeyOrder } from '../../src/storage/postgres/records.js';

describe('inJsonbKeyOrder', () => {
  it('puts shorter keys first, then by bytes', () => {
    const copy = inJsonbKeyOrder({ zone: 1, b: 2, a: { yy: 3, x: 4 }, ab: 5 });
    expect(JSON.stringify(copy)).toBe('{"a":{"x":4,"yy":3},"b":2,"ab":5,"zone":1}');
  });

  it('keeps a __proto__ key as a key', () => {
    // JSON.parse makes `__proto__` an own key, as jsonb stores it.
    const meta = JSON.parse('{"zone":"lab","__proto__":{"a":1}}') as Record<string, unknown>;
    const copy = inJsonbKeyOrder(meta) as Record<string, unknown>;
    expect(Object.keys(copy)).toEqual(['zone', '__proto__']);
    expect(JSON.stringify(copy)).toBe('{"zone":"lab","__proto__":{"a":1}}');
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype);
  });

  it('copies arrays and plain values', () => {
    expect(inJsonbKeyOrder([{ bb: 1, a: 2 }, 3, null, 'x'])).toEqual([{ a: 2, bb: 1 }, 3, null, 'x']);
  });
});
