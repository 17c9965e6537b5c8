/**
 * Command-line options of `npm run bench`: defaults, subsets of phases and
 * intake batch sizes, and the errors that name the bad value.
 */
import { describe, expect, it } from 'vitest';

import { medianRound } from '../../bench/intake/phase.js';
import { parseBenchArgs, UsageError } from '../../bench/lib/options.js';

describe('bench options', () => {
  it('runs every phase and batch size by default', () => {
    expect(parseBenchArgs([])).toMatchObject({
      quick: false,
      record: false,
      phases: ['reports', 'growth', 'intake', 'latency', 'casas'],
      batches: [1, 100, 1000],
      rounds: 3,
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

  it('runs one intake round in a quick run', () => {
    expect(parseBenchArgs(['--quick'])).toMatchObject({ rounds: 1 });
    expect(parseBenchArgs(['--quick', '--rounds', '5'])).toMatchObject({ rounds: 5 });
    expect(parseBenchArgs(['--rounds', '1'])).toMatchObject({ rounds: 1 });
    expect(parseBenchArgs(['--rounds', '9'])).toMatchObject({ rounds: 9 });
  });

  it.each(['0', '10', '2.5', 'x'])('names invalid rounds %s and the range', (text) => {
    expect(() => parseBenchArgs(['--rounds', text])).toThrow(
      new UsageError(`invalid --rounds "${text}": expected an integer from 1 to 9`),
    );
  });

  it('rejects rounds without the intake phase', () => {
    expect(() => parseBenchArgs(['--only', 'reports', '--rounds', '2'])).toThrow(/add intake to --only/);
  });

  it('rejects recording with chosen rounds', () => {
    expect(() => parseBenchArgs(['--record', '--rounds', '1'])).toThrow(/--record needs a full run/);
  });
});

describe('medianRound', () => {
  it('takes the middle ratio of an odd count', () => {
    const rounds = [{ ratio: 0.41, id: 'a' }, { ratio: 0.33, id: 'b' }, { ratio: 0.38, id: 'c' }];
    expect(medianRound(rounds).id).toBe('c');
  });

  it('takes the lower middle ratio of an even count', () => {
    const rounds = [{ ratio: 0.5, id: 'a' }, { ratio: 0.2, id: 'b' }, { ratio: 0.4, id: 'c' }, { ratio: 0.3, id: 'd' }];
    expect(medianRound(rounds).id).toBe('d');
  });

  it('rejects no rounds', () => {
    expect(() => medianRound([])).toThrow(RangeError);
  });
});
