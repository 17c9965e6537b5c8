import { describe, expect, it } from 'vitest';

import { correctionIdFor, segmentIdFor } from '../../src/domain/pairing/index.js';

const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('segmentIdFor', () => {
  it('is a version 8 UUID', () => {
    expect(segmentIdFor('0f9c2d7e-1111-4222-8333-444455556666')).toMatch(UUID_V8);
  });

  it('is stable', () => {
    expect(segmentIdFor('e1')).toBe(segmentIdFor('e1'));
  });

  it('differs per event', () => {
    expect(segmentIdFor('e1')).not.toBe(segmentIdFor('e2'));
  });
});

describe('correctionIdFor', () => {
  const base: Parameters<typeof correctionIdFor> = ['e1', 'AUTO_CLOSE', 'session', ''];

  it('is a version 8 UUID', () => {
    expect(correctionIdFor(...base)).toMatch(UUID_V8);
  });

  it('is stable', () => {
    expect(correctionIdFor(...base)).toBe(correctionIdFor(...base));
  });

  it.each<{ name: string; args: Parameters<typeof correctionIdFor> }>([
    { name: 'cause', args: ['e2', 'AUTO_CLOSE', 'session', ''] },
    { name: 'rule', args: ['e1', 'DUPLICATE_START', 'session', ''] },
    { name: 'pair type', args: ['e1', 'AUTO_CLOSE', 'task', ''] },
    { name: 'pair key', args: ['e1', 'AUTO_CLOSE', 'session', 'a'] },
    { name: 'shifted separator', args: ['e1', 'AUTO_CLOSE', 'session\u0000', ''] },
  ])('changes with $name', ({ args }) => {
    expect(correctionIdFor(...args)).not.toBe(correctionIdFor(...base));
  });

  it('differs from segment id', () => {
    expect(correctionIdFor('e1', 'AUTO_CLOSE', 'session', '')).not.toBe(segmentIdFor('e1'));
  });
});
