import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import { ConcurrencyLimit } from '../../src/services/users.js';

describe('ConcurrencyLimit', () => {
  it('runs at most the limit at once', async () => {
    const limit = new ConcurrencyLimit(2);
    let running = 0;
    let highest = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, index) =>
        limit.run(async () => {
          running += 1;
          highest = Math.max(highest, running);
          await sleep(5);
          order.push(index);
          running -= 1;
        }),
      ),
    );
    expect(highest).toBe(2);
    expect(order).toHaveLength(8);
  });

  it('frees its slot when a task throws', async () => {
    const limit = new ConcurrencyLimit(1);
    await expect(limit.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(limit.run(async () => 'next')).resolves.toBe('next');
  });
});
