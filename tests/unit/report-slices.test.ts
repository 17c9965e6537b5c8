/**
 * The pause of a report's evaluation: nothing until a slice of time has
 * passed since the last pause, then a promise that lets the callbacks
 * already queued on the event loop run first.
 */
import { describe, expect, it } from 'vitest';

import { eventLoopSlices } from '../../src/services/reports.js';

/** Keeps the thread busy for `ms` milliseconds, as an evaluation step does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Spins.
  }
}

describe('eventLoopSlices', () => {
  it('goes on within the slice', () => {
    const pause = eventLoopSlices(60_000);

    expect(pause()).toBeUndefined();
    expect(pause()).toBeUndefined();
  });

  it('pauses once the slice has passed', async () => {
    const pause = eventLoopSlices(1);
    busy(5);
    const order: string[] = [];
    setImmediate(() => order.push('queued callback'));

    const waiting = pause();
    expect(waiting, 'pause after the slice').toBeInstanceOf(Promise);
    await waiting;
    order.push('evaluation');

    expect(order).toEqual(['queued callback', 'evaluation']);
  });
});
