/**
 * Retries with exponential backoff for failures that may pass on their own
 * (network errors, an overloaded or restarting server).
 */

import { setTimeout as sleepMs } from 'node:timers/promises';

import { isTransientError } from './graphql-client.js';

/** Default waits before the 1st to 5th retry, in milliseconds: about 15 seconds in all. */
export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [500, 1000, 2000, 4000, 8000];

export interface RetryOptions {
  /** Wait before each retry, in milliseconds. The list's length is the number of retries. */
  delaysMs?: readonly number[];
  /** Decides whether a failure is retried (default: `isTransientError`). */
  isRetryable?: (error: unknown) => boolean;
  /** Called before each wait. `attempt` counts from 1 for the first retry. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Waits `ms` milliseconds, and rejects early when `signal` aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /**
   * Stops the retries: once it is aborted, a failure is thrown as it is and
   * a wait before a retry ends early with the failure before it.
   */
  signal?: AbortSignal;
  /**
   * Random numbers in [0, 1) that scale each wait by 0.8 to 1.2, so parallel
   * workers spread out (default `Math.random`).
   */
  random?: () => number;
}

/** The last failure of an operation after every retry was used. */
export class RetriesExhaustedError extends Error {
  readonly attempts: number;

  constructor(attempts: number, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(`gave up after ${attempts} attempts: ${detail}`, { cause });
    this.name = 'RetriesExhaustedError';
    this.attempts = attempts;
  }
}

/**
 * Runs `operation`, retrying retryable failures after each delay in turn.
 * Throws a non-retryable failure, or any failure once `signal` is aborted, at
 * once, and `RetriesExhaustedError` when the delays run out.
 */
export async function withRetry<T>(
  operation: () => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const delaysMs = options.delaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  const isRetryable = options.isRetryable ?? isTransientError;
  const sleep = options.sleep ?? ((ms: number, signal?: AbortSignal) => sleepMs(ms, undefined, { signal }));
  const { signal } = options;
  const isStopped = (): boolean => signal?.aborted === true;
  const random = options.random ?? Math.random;

  for (let attempt = 0; ; attempt += 1) {
    try {
      return await operation();
    } catch (error) {
      if (!isRetryable(error) || isStopped()) {
        throw error;
      }
      const baseDelay = delaysMs[attempt];
      if (baseDelay === undefined) {
        throw new RetriesExhaustedError(attempt + 1, error);
      }
      const delay = Math.round(baseDelay * (0.8 + 0.4 * random()));
      options.onRetry?.(error, attempt + 1, delay);
      try {
        await sleep(delay, signal);
      } catch (sleepError) {
        if (isStopped()) {
          throw error;
        }
        throw sleepError;
      }
    }
  }
}
