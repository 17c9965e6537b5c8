/**
 * Command-line options of `npm run bench`: defaults, subsets of phases and
 * intake batch sizes, and the errors that name the bad value.
 */
import { describe, expect, it } from 'vitest';

import { parseBenchArgs, UsageError } from '../../bench/lib/options.js';

describe('bench options', () => {
  it('runs every phase and batch size by default', () => {
    expect(parseBenchArgs([])).toMatchObject({
      quick: false,
      record: false,
      phases: ['reports', 'growth', 'intake', 'latency', 'casas'],
      batches: [1, 100, 1000],
    });
  });

  it('keeps the batch sizes named, in their usual order', () => {
    expect(parseBenchArgs(['--only', 'intake', '--batches', '1000, 100'])).toMatchObject({
      phases: ['intake'],
      batches: [100, 1000],
    });
  });

  it('names an unknown batch size and the sizes allowed', () => {
    expect(() => parseBenchArgs(['--batches', '100,50'])).toThrow(
      new UsageError('invalid --batches size "50": expected some of 1, 100, 1000'),
    );
  });

  it('rejects batch sizes without the intake phase', () => {
    expect(() => parseBenchArgs(['--only', 'reports', '--batches', '100'])).toThrow(/add intake to --only/);
  });

  it('rejects recording with chosen batch sizes', () => {
    expect(() => parseBenchArgs(['--record', '--batches', '100'])).toThrow(/--record needs a full run/);
  });

  it('names an unknown phase', () => {
    expect(() => parseBenchArgs(['--only', 'intake,speed'])).toThrow(/invalid --only phase "speed"/);
  });
});
