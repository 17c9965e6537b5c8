/**
 * Drivers for work written as a generator that yields between steps, so that
 * the same walk can run at once or let other work run between its steps.
 */

/** Runs `steps` to the end and returns their result. */
export function runSteps<R>(steps: Generator<void, R, void>): R {
  for (;;) {
    const step = steps.next();
    if (step.done === true) {
      return step.value;
    }
  }
}

/**
 * Runs `steps` to the end, calling `pause` after each step. When `pause`
 * returns a promise, the next step waits for it, so a caller can hand the
 * thread to other work between steps.
 */
export async function runStepsInSlices<R>(
  steps: Generator<void, R, void>,
  pause: () => Promise<void> | undefined,
): Promise<R> {
  for (;;) {
    const step = steps.next();
    if (step.done === true) {
      return step.value;
    }
    const waiting = pause();
    if (waiting !== undefined) {
      await waiting;
    }
  }
}
