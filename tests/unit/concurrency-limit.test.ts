import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import { ConcurrencyLimit } from '../../src/services/concurrency.js';

/** Returns a task that runs until the test finishes or fails it. */
function pendingTask() {
  let finish!: () => void;
  let fail!: (error: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return { run: () => done, finish, fail };
}

/** Lets every queued promise callback run. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 5; turn += 1) {
    await Promise.resolve();
  }
}

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

  it('hands a finished turn to the next task', async () => {
    const limit = new ConcurrencyLimit(2);
    const tasks = [pendingTask(), pendingTask(), pendingTask()];
    const started: number[] = [];
    const runs = tasks.map((task, index) =>
      limit.run(() => {
        started.push(index);
        return task.run();
      }),
    );
    await settle();

    expect(started, 'started').toEqual([0, 1]);
    expect(limit.running, 'running').toBe(2);
    expect(limit.queued, 'queued').toBe(1);

    tasks[1]!.finish();
    await settle();
    expect(started, 'started after one finished').toEqual([0, 1, 2]);
    expect(limit.running, 'running after one finished').toBe(2);

    tasks[0]!.finish();
    tasks[2]!.finish();
    await Promise.all(runs);
    expect(limit.running, 'running at the end').toBe(0);
  });

  it('starts waiting tasks in call order', async () => {
    const limit = new ConcurrencyLimit(1);
    const first = pendingTask();
    const order: string[] = [];
    const runs = [
      limit.run(() => first.run()),
      limit.run(async () => {
        order.push('second');
      }),
      limit.run(async () => {
        order.push('third');
      }),
    ];
    await settle();
    expect(order, 'before the first finished').toEqual([]);

    first.finish();
    await Promise.all(runs);
    expect(order, 'after').toEqual(['second', 'third']);
  });

  it('frees the turn of a failed task', async () => {
    const limit = new ConcurrencyLimit(1);
    const failing = pendingTask();
    const failed = limit.run(() => failing.run());
    const next = limit.run(async () => 'next ran');
    failing.fail(new Error('load failed'));

    await expect(failed).rejects.toThrow('load failed');
    await expect(next).resolves.toBe('next ran');
    expect(limit.running, 'running').toBe(0);
  });

  it.each([0, -1, 1.5, Number.NaN])('rejects max %s', (max) => {
    expect(() => new ConcurrencyLimit(max)).toThrow(RangeError);
  });
});
