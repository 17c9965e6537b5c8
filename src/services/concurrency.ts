/**
 * A first-come, first-served limit on how many tasks run at once. Tasks
 * beyond the limit wait in the order `run` was called.
 */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) {
      throw new RangeError(`A concurrency limit must be a positive integer, got ${max}.`);
    }
  }

  /** Tasks running now. */
  get running(): number {
    return this.active;
  }

  /** Tasks waiting for a turn. */
  get queued(): number {
    return this.waiting.length;
  }

  /** Runs `task` once fewer than `max` tasks run, and returns its result. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active < this.max) {
      this.active += 1;
    } else {
      // The finishing task hands its turn over, so `active` stays counted.
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next === undefined) {
        this.active -= 1;
      } else {
        next();
      }
    }
  }
}
