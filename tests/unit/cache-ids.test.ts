import { describe, expect, it } from 'vitest';

import { reportId } from '../../src/graphql/cache-ids.js';

const VIEWER = '00000000-0000-4000-8000-00000000000a';
const WINDOW = { start: new Date('2026-01-01T00:00:00Z'), end: new Date('2026-02-01T00:00:00Z') };

function leafWithMeta(meta: Record<string, unknown>): Record<string, unknown> {
  return { expression: { leaf: { pairType: 'task', meta } }, window: WINDOW, groupBy: null, bucket: null };
}

describe('reportId', () => {
  it('ignores meta key order', () => {
    const first = reportId(VIEWER, leafWithMeta({ project: 'alpha', team: { name: 'x', size: 3 } }));
    const second = reportId(VIEWER, leafWithMeta({ team: { size: 3, name: 'x' }, project: 'alpha' }));

    expect(second).toBe(first);
  });

  it('tells meta values apart', () => {
    const alpha = reportId(VIEWER, leafWithMeta({ project: 'alpha' }));
    const beta = reportId(VIEWER, leafWithMeta({ project: 'beta' }));

    expect(beta).not.toBe(alpha);
  });

  it('tells windows apart', () => {
    const january = reportId(VIEWER, leafWithMeta({}));
    const february = reportId(VIEWER, {
      ...leafWithMeta({}),
      window: { start: new Date('2026-02-01T00:00:00Z'), end: new Date('2026-03-01T00:00:00Z') },
    });

    expect(february).not.toBe(january);
  });

  it('tells viewers apart', () => {
    const other = '00000000-0000-4000-8000-00000000000b';

    expect(reportId(other, leafWithMeta({}))).not.toBe(reportId(VIEWER, leafWithMeta({})));
  });

  it('keeps a __proto__ key', () => {
    const plain = reportId(VIEWER, leafWithMeta({}));
    const withKey = reportId(VIEWER, leafWithMeta(JSON.parse('{"__proto__": 1}') as Record<string, unknown>));

    expect(withKey).not.toBe(plain);
  });
});
