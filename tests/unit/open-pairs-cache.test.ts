import { describe, expect, it } from 'vitest';

import { OpenPairsCache, type CachedOpenPairs } from '../../src/services/open-pairs-cache.js';

function entry(derivedVersion: number, count: number): CachedOpenPairs {
  return { derivedVersion, appliedSeq: derivedVersion * 10, open: {}, count };
}

describe('OpenPairsCache', () => {
  it('returns entry of same version', () => {
    const cache = new OpenPairsCache(100);
    const stored = entry(3, 10);
    cache.set('alice', stored);

    expect(cache.get('alice', 3, 30)).toBe(stored);
    expect(cache.get('bob', 3, 30)).toBeNull();
  });

  it('drops entry of other version', () => {
    const cache = new OpenPairsCache(100);
    cache.set('alice', entry(3, 10));

    expect(cache.get('alice', 4, 30)).toBeNull();
    expect(cache.size).toBe(0);
    // Dropped, so the matching version no longer finds it either.
    expect(cache.get('alice', 3, 30)).toBeNull();
  });

  it('drops entry of other applied seq', () => {
    const cache = new OpenPairsCache(100);
    cache.set('alice', entry(3, 10));

    expect(cache.get('alice', 3, 31)).toBeNull();
    expect(cache.size).toBe(0);
  });

  it('evicts least recently used', () => {
    const cache = new OpenPairsCache(100);
    cache.set('alice', entry(1, 40));
    cache.set('bob', entry(1, 40));
    cache.get('alice', 1, 10);
    cache.set('carol', entry(1, 40));

    expect(cache.get('bob', 1, 10)).toBeNull();
    expect(cache.get('alice', 1, 10)).not.toBeNull();
    expect(cache.get('carol', 1, 10)).not.toBeNull();
    expect(cache.size).toBe(80);
  });

  it('skips entry above bound', () => {
    const cache = new OpenPairsCache(100);
    cache.set('alice', entry(1, 40));
    cache.set('bob', entry(1, 101));

    expect(cache.get('bob', 1, 10)).toBeNull();
    expect(cache.get('alice', 1, 10)).not.toBeNull();
    expect(cache.size).toBe(40);
  });

  it('replaces entry of same user', () => {
    const cache = new OpenPairsCache(100);
    cache.set('alice', entry(1, 40));
    cache.set('alice', entry(2, 30));

    expect(cache.size).toBe(30);
    expect(cache.get('alice', 2, 20)?.count).toBe(30);
  });

  it('keeps nothing at size zero', () => {
    const cache = new OpenPairsCache(0);
    cache.set('alice', entry(1, 1));

    expect(cache.get('alice', 1, 10)).toBeNull();
    expect(cache.size).toBe(0);
  });
});
