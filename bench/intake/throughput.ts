/**
 * Intake throughput: the same per-user event streams go through `sendEvents`
 * over HTTP, and into PostgreSQL as directly as it allows, with the same batch
 * size and concurrency. The direct path is one multi-row INSERT per batch
 * into `bench_events`, a copy of `events` with the same columns and indexes.
 */
import { randomUUID } from 'node:crypto';

import type pg from 'pg';

import type { GraphQLClient } from '../lib/http.js';
import { percentile } from '../lib/stats.js';
import type { BenchUser } from '../lib/users.js';
import { BUILT_IN_EVENT_TYPES, classify, type BenchEvent, type EventClass } from './workload.js';

export interface ThroughputResult {
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** Per-batch request times in ms. */
  batchP50Ms: number;
  batchP95Ms: number;
  batchP99Ms: number;
  /** Batches that failed, with the first error message. */
  failedBatches: number;
  firstError: string | null;
  /** Events reported stored and reported duplicate (service), or rows inserted (baseline). */
  stored: number;
  duplicates: number;
}

interface Batch {
  user: number;
  events: readonly BenchEvent[];
}

/** Splits each user's stream into batches of `size`, in stream order. */
export function toBatches(streams: readonly (readonly BenchEvent[])[], size: number): Batch[][] {
  return streams.map((stream, user) => {
    const batches: Batch[] = [];
    for (let start = 0; start < stream.length; start += size) {
      batches.push({ user, events: stream.slice(start, start + size) });
    }
    return batches;
  });
}

/**
 * Sends every user's batches in order, with at most `concurrency` batches in
 * flight and never two of one user at once. Users take turns, so the batches
 * in flight come from different users until few users have batches left.
 */
async function schedule(
  perUser: readonly Batch[][],
  concurrency: number,
  send: (batch: Batch) => Promise<void>,
): Promise<void> {
  const next = perUser.map(() => 0);
  const ready: number[] = perUser.map((_, user) => user).filter((user) => perUser[user]!.length > 0);
  const worker = async (): Promise<void> => {
    for (;;) {
      const user = ready.shift();
      if (user === undefined) {
        return;
      }
      const batch = perUser[user]![next[user]!]!;
      next[user]! += 1;
      await send(batch);
      if (next[user]! < perUser[user]!.length) {
        ready.push(user);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
}

const SEND_EVENTS = `mutation Send($events: [EventInput!]!) {
  sendEvents(events: $events) {
    storedCount
    duplicateCount
    results { duplicate event { id } corrections { id rule } closedSegments { id } }
  }
}`;

function toEventInput(event: BenchEvent, baseMs: number): Record<string, unknown> {
  const input: Record<string, unknown> = {
    id: event.id,
    type: event.type,
    occurredAt: new Date(baseMs + event.offsetMs).toISOString(),
  };
  if (event.pairKey !== null) {
    input.pairKey = event.pairKey;
  }
  if (event.meta !== null) {
    input.meta = event.meta;
  }
  return input;
}

/** Sends the streams through the service. `baseMs` is the instant of offset 0. */
export async function runServiceIntake(
  client: GraphQLClient,
  users: readonly BenchUser[],
  streams: readonly (readonly BenchEvent[])[],
  batchSize: number,
  concurrency: number,
  baseMs: number,
): Promise<ThroughputResult> {
  const perUser = toBatches(streams, batchSize);
  const bodies = perUser.map((batches) => batches.map((batch) => batch.events.map((event) => toEventInput(event, baseMs))));
  const times: number[] = [];
  let failedBatches = 0;
  let firstError: string | null = null;
  let stored = 0;
  let duplicates = 0;
  const sentIndex = perUser.map(() => 0);

  const started = performance.now();
  await schedule(perUser, concurrency, async (batch) => {
    const events = bodies[batch.user]![sentIndex[batch.user]!]!;
    sentIndex[batch.user]! += 1;
    const reply = await client.send<{ sendEvents: { storedCount: number; duplicateCount: number } }>(
      SEND_EVENTS,
      { events },
      users[batch.user]!.token,
    );
    times.push(reply.ms);
    if (reply.errors.length > 0 || reply.data === null) {
      failedBatches += 1;
      firstError ??= `HTTP ${reply.status}: ${reply.errors[0]?.message ?? 'no data'}`;
      return;
    }
    stored += reply.data.sendEvents.storedCount;
    duplicates += reply.data.sendEvents.duplicateCount;
  });
  const seconds = (performance.now() - started) / 1000;
  return summarise(streams, seconds, times, failedBatches, firstError, stored, duplicates);
}

const INSERT_COLUMNS =
  'id, user_id, seq, client_id, type, role, pair_type, pair_key, occurred_at, received_at, meta, origin, pos_at, pos_seq';
const PARAMS_PER_ROW = 11;

/** Builds `INSERT INTO bench_events ... VALUES (...), ...` for `rows` rows. */
function insertStatement(rows: number): string {
  const values: string[] = [];
  for (let row = 0; row < rows; row += 1) {
    const p = (column: number) => `$${row * PARAMS_PER_ROW + column}`;
    values.push(
      `(${p(1)}::uuid, ${p(2)}::uuid, ${p(3)}::int, ${p(4)}, ${p(5)}, ${p(6)}::"EventRole", ${p(7)}, ${p(8)}, ` +
        `${p(9)}::timestamptz, ${p(10)}::timestamptz, ${p(11)}::jsonb, 'CLIENT', ${p(9)}::timestamptz, ${p(3)}::int)`,
    );
  }
  return `INSERT INTO bench_events (${INSERT_COLUMNS}) VALUES ${values.join(', ')} ON CONFLICT DO NOTHING`;
}

/** Creates the baseline table: the columns, defaults and indexes of `events`, without foreign keys. */
export async function createBaselineTable(pool: pg.Pool): Promise<void> {
  await pool.query('DROP TABLE IF EXISTS bench_events');
  await pool.query('CREATE TABLE bench_events (LIKE events INCLUDING ALL)');
}

/** Inserts the same rows as directly as possible: one multi-row INSERT per batch, in autocommit. */
export async function runBaselineIntake(
  pool: pg.Pool,
  userIds: readonly string[],
  streams: readonly (readonly BenchEvent[])[],
  batchSize: number,
  concurrency: number,
  baseMs: number,
  eventTypes: ReadonlyMap<string, EventClass> = BUILT_IN_EVENT_TYPES,
): Promise<ThroughputResult> {
  const perUser = toBatches(streams, batchSize);
  const statements = new Map<number, string>();
  const seq = userIds.map(() => 0);
  const times: number[] = [];
  let failedBatches = 0;
  let firstError: string | null = null;
  let stored = 0;

  const started = performance.now();
  await schedule(perUser, concurrency, async (batch) => {
    const receivedAt = new Date();
    const params: unknown[] = [];
    for (const event of batch.events) {
      seq[batch.user]! += 1;
      const { role, pairType } = classify(event.type, eventTypes);
      params.push(
        randomUUID(),
        userIds[batch.user],
        seq[batch.user],
        event.id,
        event.type,
        role,
        pairType,
        pairType === null ? null : (event.pairKey ?? ''),
        new Date(baseMs + event.offsetMs),
        receivedAt,
        event.meta === null ? null : JSON.stringify(event.meta),
      );
    }
    let text = statements.get(batch.events.length);
    if (text === undefined) {
      text = insertStatement(batch.events.length);
      statements.set(batch.events.length, text);
    }
    const sent = performance.now();
    try {
      const result = await pool.query(text, params);
      stored += result.rowCount ?? 0;
    } catch (error) {
      failedBatches += 1;
      firstError ??= (error as Error).message;
    }
    times.push(performance.now() - sent);
  });
  const seconds = (performance.now() - started) / 1000;
  const events = streams.reduce((sum, stream) => sum + stream.length, 0);
  // Rows skipped by ON CONFLICT are the re-sent events (or rows of failed batches, counted apart).
  return summarise(streams, seconds, times, failedBatches, firstError, stored, events - stored);
}

function summarise(
  streams: readonly (readonly BenchEvent[])[],
  seconds: number,
  times: readonly number[],
  failedBatches: number,
  firstError: string | null,
  stored: number,
  duplicates: number,
): ThroughputResult {
  const events = streams.reduce((sum, stream) => sum + stream.length, 0);
  return {
    events,
    seconds,
    eventsPerSecond: events / seconds,
    batchP50Ms: percentile(times, 50),
    batchP95Ms: percentile(times, 95),
    batchP99Ms: percentile(times, 99),
    failedBatches,
    firstError,
    stored,
    duplicates,
  };
}
