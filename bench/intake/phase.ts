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

export interface IntakeRow {
  batchSize: number;
  users: number;
  events: number;
  late: number;
  duplicates: number;
  service: ThroughputResult;
  baseline: ThroughputResult;
  /** Service rate divided by baseline rate. */
  ratio: number;
  /** Server process CPU time per 1,000 events (user and system), ms. */
  serverCpuMsPer1000: number;
  /** CPU time per 1,000 events of the other processes, ms, during each run. */
  cpuPer1000: { service: CpuSample; baseline: CpuSample };
  /** Client events found in PostgreSQL for the run's users, against the number expected. */
  storedCheck: { expected: number; found: number };
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

export async function runIntakePhase(
  context: PhaseContext,
  sizes: IntakeSizes,
  batchSizes: readonly BatchSize[],
): Promise<IntakeRow[]> {
  await createBaselineTable(context.pool);
  context.log('intake: warming up');
  await warmUp(context);

  const rows: IntakeRow[] = [];
  for (const batchSize of batchSizes) {
    const perUser = sizes.eventsPerUser[batchSize];
    const usernames = Array.from({ length: sizes.users }, (_, index) => `in-b${batchSize}-u${String(index).padStart(3, '0')}`);
    const users = await createBenchUsers(context.pool, context.client, usernames, context.passwordHash);
    const streams = users.map((_, index) => generateUserStream(context.seed, index, 'e', perUser));
    const kinds = countKinds(streams);
    const events = kinds.new + kinds.late + kinds.duplicate;

    context.log(`intake: batch ${batchSize}, ${events} events of ${users.length} users: PostgreSQL baseline`);
    const baselineUsers = users.map(() => randomUUID());
    await settle(context);
    const beforeBaseline = sampleCpu();
    const baseline = await runBaselineIntake(
      context.pool,
      baselineUsers,
      streams,
      batchSize,
      INTAKE_CONCURRENCY,
      baseInstant(streams),
    );

    const afterBaseline = sampleCpu();

    await settle(context);
    context.log(`intake: batch ${batchSize}: service`);
    const serviceStart = sampleCpu();
    const cpuBefore = context.server.cpuTimeMs();
    const service = await runServiceIntake(
      context.client,
      users,
      streams,
      batchSize,
      INTAKE_CONCURRENCY,
      baseInstant(streams),
    );

    const serverCpuMs = context.server.cpuTimeMs() - cpuBefore;
    const afterService = sampleCpu();

    const found = await context.pool.query<{ count: string }>(
      `SELECT count(*) FROM events WHERE user_id = ANY($1::uuid[]) AND origin = 'CLIENT'`,
      [users.map((user) => user.id)],
    );
    rows.push({
      batchSize,
      users: users.length,
      events,
      late: kinds.late,
      duplicates: kinds.duplicate,
      service,
      baseline,
      ratio: service.eventsPerSecond / baseline.eventsPerSecond,
      serverCpuMsPer1000: (serverCpuMs * 1000) / events,
      cpuPer1000: {
        service: perThousand(cpuBetween(serviceStart, afterService), events),
        baseline: perThousand(cpuBetween(beforeBaseline, afterBaseline), events),
      },
      storedCheck: { expected: kinds.new + kinds.late, found: Number(found.rows[0]?.count ?? 0) },
    });
  }
  return rows;
}
