/**
 * Phase 1: intake throughput for sendEvents batches of 1, 100 and 1000, or
 * those that `--batches` selects, against the direct-INSERT baseline.
 */
import { randomUUID } from 'node:crypto';

import type { PhaseContext } from '../lib/context.js';
import type { BatchSize } from '../lib/options.js';
import { cpuBetween, sampleCpu, type CpuSample } from '../lib/cpu.js';
import { settleDatabase } from '../lib/services.js';
import { createBenchUsers } from '../lib/users.js';
import { createBaselineTable, runBaselineIntake, runServiceIntake, type ThroughputResult } from './throughput.js';
import { countKinds, generateUserStream, type BenchEvent } from './workload.js';

export const INTAKE_CONCURRENCY = 8;
/** Service rate over baseline rate that the benchmark aims for. */
export const INTAKE_RATIO_TARGET = 0.5;

export interface IntakeSizes {
  users: number;
  /** Events per user for each batch size. */
  eventsPerUser: Record<BatchSize, number>;
}

export const QUICK_INTAKE: IntakeSizes = { users: 16, eventsPerUser: { 1: 40, 100: 400, 1000: 1000 } };
export const FULL_INTAKE: IntakeSizes = { users: 50, eventsPerUser: { 1: 100, 100: 1000, 1000: 4000 } };

/** The figures of one round: one batch size through the baseline and the service, on users of its own. */
export interface IntakeRound {
  service: ThroughputResult;
  baseline: ThroughputResult;
  /** Service rate divided by baseline rate. */
  ratio: number;
  /** Server process CPU time per 1,000 events (user and system), ms. */
  serverCpuMsPer1000: number;
  /** CPU time per 1,000 events of the other processes, ms, during each run. */
  cpuPer1000: { service: CpuSample; baseline: CpuSample };
  /** Client events found in PostgreSQL for the round's users, against the number expected. */
  storedCheck: { expected: number; found: number };
}

/**
 * One batch size: the figures of the round with the median ratio, and the
 * ratios of all rounds in the order they ran.
 */
export interface IntakeRow extends IntakeRound {
  batchSize: number;
  users: number;
  events: number;
  late: number;
  duplicates: number;
  roundRatios: number[];
}

/**
 * Returns the round whose ratio is the median, the lower middle one for an
 * even count, so that every figure shown comes from one round.
 */
export function medianRound<T extends { ratio: number }>(rounds: readonly T[]): T {
  if (rounds.length === 0) {
    throw new RangeError('medianRound needs at least one round');
  }
  const sorted = [...rounds].sort((a, b) => a.ratio - b.ratio);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** Returns the instant of offset 0 that puts the last event of the streams one minute before now. */
function baseInstant(streams: readonly (readonly BenchEvent[])[]): number {
  let last = 0;
  for (const stream of streams) {
    for (const event of stream) {
      last = Math.max(last, event.offsetMs);
    }
  }
  return Date.now() - last - 60_000;
}

async function warmUp(context: PhaseContext): Promise<void> {
  const [user] = await createBenchUsers(context.pool, context.client, ['in-warm-up'], context.passwordHash);
  const stream = generateUserStream(context.seed ^ 0x5a5a, 0, 'w', 400);
  const streams = [stream];
  await runServiceIntake(context.client, [user!], streams, 50, 1, baseInstant(streams));
  await runBaselineIntake(context.pool, [randomUUID()], streams, 50, 1, baseInstant(streams));
}

/** Settles the database before a timed run, and logs a warning when autovacuum kept running. */
async function settle(context: PhaseContext): Promise<void> {
  if (!(await settleDatabase(context.pool))) {
    context.log('intake: autovacuum still running after 30 s; timing anyway');
  }
}

function perThousand(sample: CpuSample, events: number): CpuSample {
  const scale = (ms: number | null) => (ms === null ? null : (ms * 1000) / events);
  return { clientMs: (sample.clientMs * 1000) / events, postgresMs: scale(sample.postgresMs), redisMs: scale(sample.redisMs) };
}

/**
 * Runs one round of a batch size on new users: the baseline and the service
 * with the same event streams. The service goes first when `serviceFirst` is
 * true, so that across rounds a drift in the machine's speed falls on both.
 */
async function runRound(
  context: PhaseContext,
  batchSize: BatchSize,
  usernames: readonly string[],
  streams: readonly (readonly BenchEvent[])[],
  events: number,
  expectedStored: number,
  serviceFirst: boolean,
): Promise<IntakeRound> {
  const users = await createBenchUsers(context.pool, context.client, [...usernames], context.passwordHash);
  const baselineUsers = users.map(() => randomUUID());

  const timeBaseline = async () => {
    context.log(`intake: batch ${batchSize}, ${events} events of ${users.length} users: PostgreSQL baseline`);
    await settle(context);
    const before = sampleCpu();
    const result = await runBaselineIntake(context.pool, baselineUsers, streams, batchSize, INTAKE_CONCURRENCY, baseInstant(streams));
    return { result, cpu: cpuBetween(before, sampleCpu()) };
  };
  const timeService = async () => {
    context.log(`intake: batch ${batchSize}, ${events} events of ${users.length} users: service`);
    await settle(context);
    const before = sampleCpu();
    const serverBefore = context.server.cpuTimeMs();
    const result = await runServiceIntake(context.client, users, streams, batchSize, INTAKE_CONCURRENCY, baseInstant(streams));
    const serverCpuMs = context.server.cpuTimeMs() - serverBefore;
    return { result, cpu: cpuBetween(before, sampleCpu()), serverCpuMs };
  };

  let baseline: Awaited<ReturnType<typeof timeBaseline>>;
  let service: Awaited<ReturnType<typeof timeService>>;
  if (serviceFirst) {
    service = await timeService();
    baseline = await timeBaseline();
  } else {
    baseline = await timeBaseline();
    service = await timeService();
  }

  const found = await context.pool.query<{ count: string }>(
    `SELECT count(*) FROM events WHERE user_id = ANY($1::uuid[]) AND origin = 'CLIENT'`,
    [users.map((user) => user.id)],
  );
  return {
    service: service.result,
    baseline: baseline.result,
    ratio: service.result.eventsPerSecond / baseline.result.eventsPerSecond,
    serverCpuMsPer1000: (service.serverCpuMs * 1000) / events,
    cpuPer1000: {
      service: perThousand(service.cpu, events),
      baseline: perThousand(baseline.cpu, events),
    },
    storedCheck: { expected: expectedStored, found: Number(found.rows[0]?.count ?? 0) },
  };
}

export async function runIntakePhase(
  context: PhaseContext,
  sizes: IntakeSizes,
  batchSizes: readonly BatchSize[],
  rounds: number,
): Promise<IntakeRow[]> {
  await createBaselineTable(context.pool);
  context.log('intake: warming up');
  await warmUp(context);

  const rows: IntakeRow[] = [];
  for (const batchSize of batchSizes) {
    const perUser = sizes.eventsPerUser[batchSize];
    // Every round sends the same streams, so the rounds differ only in their users and the time they ran.
    const streams = Array.from({ length: sizes.users }, (_, index) => generateUserStream(context.seed, index, 'e', perUser));
    const kinds = countKinds(streams);
    const events = kinds.new + kinds.late + kinds.duplicate;

    const results: IntakeRound[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const usernames = Array.from(
        { length: sizes.users },
        (_, index) => `in-b${batchSize}-r${round}-u${String(index).padStart(3, '0')}`,
      );
      if (rounds > 1) {
        context.log(`intake: batch ${batchSize}, round ${round + 1} of ${rounds}`);
      }
      results.push(await runRound(context, batchSize, usernames, streams, events, kinds.new + kinds.late, round % 2 === 1));
    }

    const median = medianRound(results);
    rows.push({
      ...median,
      batchSize,
      users: sizes.users,
      events,
      late: kinds.late,
      duplicates: kinds.duplicate,
      roundRatios: results.map((result) => result.ratio),
      // Every round must store every event, so the check covers all of them.
      storedCheck: {
        expected: results.reduce((sum, result) => sum + result.storedCheck.expected, 0),
        found: results.reduce((sum, result) => sum + result.storedCheck.found, 0),
      },
    });
  }
  return rows;
}
