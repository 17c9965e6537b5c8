/**
 * The intake table of the benchmark summary lists the ratio of every round
 * in the order the rounds ran, beside the figures of the median round.
 */
import { describe, expect, it } from 'vitest';

import type { IntakeRow } from '../../bench/intake/phase.js';
import type { ThroughputResult } from '../../bench/intake/throughput.js';
import { renderSummaryText, type BenchResults } from '../../bench/summary.js';

function throughput(eventsPerSecond: number): ThroughputResult {
  return {
    events: 1000,
    seconds: 1000 / eventsPerSecond,
    eventsPerSecond,
    batchP50Ms: 1,
    batchP95Ms: 2,
    batchP99Ms: 3,
    failedBatches: 0,
    firstError: null,
    stored: 1000,
    duplicates: 0,
  };
}

describe('intake table', () => {
  it('lists the ratio of every round in run order', () => {
    const row: IntakeRow = {
      batchSize: 100,
      users: 2,
      events: 1000,
      late: 0,
      duplicates: 0,
      service: throughput(500),
      baseline: throughput(1000),
      ratio: 0.5,
      serverCpuMsPer1000: 10,
      cpuPer1000: {
        service: { clientMs: 1, postgresMs: null, redisMs: null },
        baseline: { clientMs: 1, postgresMs: null, redisMs: null },
      },
      storedCheck: { expected: 3000, found: 3000 },
      roundRatios: [0.75, 0.5, 0.25],
    };
    const results: BenchResults = {
      info: {
        date: '2026-12-06',
        command: 'npm run bench',
        seed: 1,
        quick: false,
        machine: { cpus: 2, cpuModel: 'test', memoryGiB: 4, os: 'linux' },
        versions: { node: '22', postgres: '17', redis: '7' },
        defaulted: [],
        loadAverage: { start: [0, 0, 0], end: [0, 0, 0] },
      },
      intake: [row],
      latency: null,
      reports: null,
      casas: null,
      memory: [],
      profiles: [],
    };

    const text = renderSummaryText(results);

    expect(text).toContain('ratio by round');
    expect(text).toContain('0.75 0.50 0.25');
  });
});
