/**
 * Phase 2: latency of single `sendEvent` calls under autocannon, at 1, 16 and
 * 100 concurrent connections. Each connection runs whole sessions (start,
 * heartbeat, keyed task start, heartbeat, task end, end) for a user taken from
 * a pool, so requests in flight belong to different users, and every request
 * has a fresh client id. Two open-loop runs send at evenly spaced instants:
 * one at half the measured throughput, one at one event per second from
 * each of 100 clients. A last series sends everything as one user,
 * where the per-user lock serialises the requests. `occurredAt` is left to
 * the server, as a live client would. After each closed loop over many
 * users, the baseline runs as many callers that insert one row each straight
 * into PostgreSQL.
 */
import autocannon, { type AutocannonRequest } from 'autocannon';

import type { PhaseContext } from '../lib/context.js';
import { cpuBetween, sampleCpu } from '../lib/cpu.js';
import { settleDatabase } from '../lib/services.js';
import { GraphQLClient } from '../lib/http.js';
import type { RunningServer } from '../lib/server.js';
import { maximum, percentile } from '../lib/stats.js';
import { createBenchUsers, type BenchUser } from '../lib/users.js';
import { countLatencyBaselineRows, createLatencyBaselineTable, runLatencyBaseline } from './latency-baseline.js';

export const CONNECTION_COUNTS = [1, 16, 100] as const;
export const SINGLE_USER_CONNECTION_COUNTS = [16, 100] as const;
/** p99 at 100 connections that the benchmark aims for, in ms. */
export const P99_TARGET_MS = 20;
/** Clients in the open-loop run where each client sends one event per second. */
export const PACED_CLIENTS = 100;

export interface LatencyRow {
  /** `sendEvent` calls to the server, or the baseline's one-row INSERTs straight into PostgreSQL. */
  path: 'sendEvent' | 'insert';
  users: 'many' | 'one';
  connections: number;
  /** Requests per second sent at even intervals (open loop), or null for as fast as replies come (closed loop). */
  rateLimit: number | null;
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Server process CPU time per request (user and system), ms, or null for the baseline, which has no server. */
  serverCpuMsPerRequest: number | null;
  /** PostgreSQL CPU time per request, all its processes, or null when it runs elsewhere. */
  postgresCpuMsPerRequest: number | null;
  /** CPU time of the bench process, which runs the load generator, per request. */
  clientCpuMsPerRequest: number;
  /** Transport errors and timeouts, non-2xx replies, and 2xx replies that carry GraphQL errors. */
  errors: number;
  firstError: string | null;
}

/** Returns the count, rate and percentiles of the call times `times` (ms) of a run that lasted `seconds`. */
export function callTimes(
  times: readonly number[],
  seconds: number,
): Pick<LatencyRow, 'requests' | 'requestsPerSecond' | 'p50Ms' | 'p95Ms' | 'p99Ms' | 'maxMs'> {
  return {
    requests: times.length,
    requestsPerSecond: times.length / seconds,
    p50Ms: percentile(times, 50),
    p95Ms: percentile(times, 95),
    p99Ms: percentile(times, 99),
    maxMs: maximum(times),
  };
}

const SEND_EVENT = `mutation Send($event: EventInput!) {
  sendEvent(event: $event) { duplicate event { id } corrections { id rule } closedSegments { id } }
}`;

const TASK_KEYS = ['edit', 'review', 'build'];

interface Step {
  type: string;
  task: boolean;
}

const SESSION_STEPS: Step[] = [
  { type: 'session_started', task: false },
  { type: 'heartbeat', task: false },
  { type: 'task_started', task: true },
  { type: 'heartbeat', task: false },
  { type: 'task_ended', task: true },
  { type: 'session_ended', task: false },
];

/** One user for every task cycle: start and end of a uniquely keyed task, with a heartbeat between. */
const SINGLE_USER_STEPS: Step[] = [
  { type: 'task_started', task: true },
  { type: 'heartbeat', task: false },
  { type: 'task_ended', task: true },
];

/** Numbers client ids across all runs of this process, so no id is sent twice with other content. */
let clientIdCounter = 0;

interface RunState {
  free: BenchUser[];
  next: number;
  errors: number;
  firstError: string | null;
}

/** Returns the first GraphQL error message of a reply body, or the start of the body when it has none. */
function firstErrorMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { errors?: Array<{ message?: string }> };
    return parsed.errors?.[0]?.message ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

function buildRequests(steps: readonly Step[], users: readonly BenchUser[], state: RunState, singleUser: boolean): AutocannonRequest[] {
  let sequence = 0;
  return steps.map((step, index) => ({
    method: 'POST',
    path: '/graphql',
    setupRequest: (request, context) => {
      if (index === 0) {
        // Take a user that no other connection is using, or any user when all are taken.
        const user = singleUser ? users[0]! : (state.free.shift() ?? users[state.next++ % users.length]!);
        context.user = user;
        context.key = singleUser ? `c${sequence}` : TASK_KEYS[sequence % TASK_KEYS.length];
      }
      sequence += 1;
      clientIdCounter += 1;
      const user = context.user as BenchUser;
      const event: Record<string, unknown> = { id: `lat-${clientIdCounter}`, type: step.type };
      if (step.task) {
        event.pairKey = context.key;
      }
      return {
        ...request,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` },
        body: JSON.stringify({ query: SEND_EVENT, variables: { event } }),
      };
    },
    onResponse: (status, body, context) => {
      if (status !== 200 || body.includes('"errors"')) {
        state.errors += 1;
        state.firstError ??= `HTTP ${status}: ${firstErrorMessage(body)}`;
      }
      if (index === steps.length - 1 && !singleUser) {
        state.free.push(context.user as BenchUser);
      }
    },
  }));
}

async function runCase(
  server: RunningServer,
  users: readonly BenchUser[],
  connections: number,
  seconds: number,
  singleUser: boolean,
): Promise<LatencyRow> {
  const state: RunState = { free: [...users], next: 0, errors: 0, firstError: null };
  const times: number[] = [];
  const cpuBefore = server.cpuTimeMs();
  const othersBefore = sampleCpu();
  const instance = autocannon({
    url: `${server.url}/graphql`,
    connections,
    duration: seconds,
    timeout: 10,
    requests: buildRequests(singleUser ? SINGLE_USER_STEPS : SESSION_STEPS, users, state, singleUser),
  });
  instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
    times.push(responseTime);
  });
  const result = await instance;
  const cpuMs = server.cpuTimeMs() - cpuBefore;
  const others = cpuBetween(othersBefore, sampleCpu());
  return {
    path: 'sendEvent',
    users: singleUser ? 'one' : 'many',
    connections,
    rateLimit: null,
    ...callTimes(times, result.duration),
    serverCpuMsPerRequest: cpuMs / Math.max(1, times.length),
    postgresCpuMsPerRequest: others.postgresMs === null ? null : others.postgresMs / Math.max(1, times.length),
    clientCpuMsPerRequest: others.clientMs / Math.max(1, times.length),
    errors: state.errors + result.errors,
    firstError: state.firstError ?? (result.errors > 0 ? `${result.errors} transport errors, ${result.timeouts} timeouts` : null),
  };
}

/**
 * Sends `rate` requests per second at evenly spaced instants, whether or not
 * earlier replies arrived (an open loop). The users take turns, and each plays
 * the session steps in order over a connection of its own.
 */
async function runOpenLoop(
  server: RunningServer,
  users: readonly BenchUser[],
  rate: number,
  seconds: number,
): Promise<LatencyRow> {
  const client = new GraphQLClient(server.url, users.length);
  const stepOf = users.map(() => 0);
  const times: number[] = [];
  const pending: Array<Promise<void>> = [];
  let errors = 0;
  let firstError: string | null = null;
  const total = Math.round(rate * seconds);
  const intervalMs = 1000 / rate;
  const cpuBefore = server.cpuTimeMs();
  const othersBefore = sampleCpu();
  const started = performance.now();

  for (let index = 0; index < total; index += 1) {
    const due = started + index * intervalMs;
    const wait = due - performance.now();
    if (wait > 0) {
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const userIndex = index % users.length;
    const step = SESSION_STEPS[stepOf[userIndex]! % SESSION_STEPS.length]!;
    stepOf[userIndex]! += 1;
    clientIdCounter += 1;
    const event: Record<string, unknown> = { id: `lat-${clientIdCounter}`, type: step.type };
    if (step.task) {
      event.pairKey = TASK_KEYS[Math.floor(stepOf[userIndex]! / SESSION_STEPS.length) % TASK_KEYS.length];
    }
    pending.push(
      client.send(SEND_EVENT, { event }, users[userIndex]!.token).then(
        (reply) => {
          times.push(reply.ms);
          if (reply.status !== 200 || reply.errors.length > 0) {
            errors += 1;
            firstError ??= `HTTP ${reply.status}: ${reply.errors[0]?.message ?? 'no data'}`;
          }
        },
        (error: unknown) => {
          errors += 1;
          firstError ??= (error as Error).message;
        },
      ),
    );
  }
  await Promise.all(pending);
  const elapsedSeconds = (performance.now() - started) / 1000;
  const cpuMs = server.cpuTimeMs() - cpuBefore;
  const others = cpuBetween(othersBefore, sampleCpu());
  client.close();
  return {
    path: 'sendEvent',
    users: 'many',
    connections: users.length,
    rateLimit: rate,
    ...callTimes(times, elapsedSeconds),
    serverCpuMsPerRequest: cpuMs / Math.max(1, times.length),
    postgresCpuMsPerRequest: others.postgresMs === null ? null : others.postgresMs / Math.max(1, times.length),
    clientCpuMsPerRequest: others.clientMs / Math.max(1, times.length),
    errors,
    firstError,
  };
}

/**
 * Waits until the server's CPU time grows by less than 10 % of a core over
 * 200 ms, at most 10 s. A closed-loop run stops sending when its time is up,
 * but the server still works off the requests in flight. At 100 connections
 * that takes a few hundred ms, and the next row must not measure it.
 */
/** Settles the database, then waits up to 10 s until the server spends less than a tenth of a core. */
async function waitForIdle(context: PhaseContext): Promise<void> {
  if (!(await settleDatabase(context.pool))) {
    context.log('latency: autovacuum still running after 30 s; timing anyway');
  }
  const { server } = context;
  const deadline = performance.now() + 10_000;
  while (performance.now() < deadline) {
    const before = server.cpuTimeMs();
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (server.cpuTimeMs() - before < 20) {
      return;
    }
  }
}

export async function runLatencyPhase(context: PhaseContext): Promise<LatencyRow[]> {
  const seconds = context.quick ? 3 : 10;
  const manyCount = Math.max(...CONNECTION_COUNTS) + 4;
  context.log(`latency: logging in ${manyCount + 1} users`);
  const names = Array.from({ length: manyCount }, (_, index) => `lat-u${String(index).padStart(3, '0')}`);
  const users = await createBenchUsers(context.pool, context.client, [...names, 'lat-one'], context.passwordHash);
  const many = users.slice(0, manyCount);
  const one = users.slice(manyCount);

  // A short run first warms the server's code paths; it is not reported.
  await runCase(context.server, many, 4, 1, false);

  await createLatencyBaselineTable(context.pool);
  const rows: LatencyRow[] = [];
  const baselineRows: LatencyRow[] = [];
  const baselineSeqs = new Map<string, number>();
  for (const connections of CONNECTION_COUNTS) {
    await waitForIdle(context);
    context.log(`latency: ${connections} connections, many users, ${seconds} s`);
    rows.push(await runCase(context.server, many, connections, seconds, false));
    await waitForIdle(context);
    context.log(`latency: baseline, ${connections} callers inserting one row each, ${seconds} s`);
    baselineRows.push(await runLatencyBaseline(context.pool, many.map((user) => user.id), baselineSeqs, connections, seconds));
  }
  const written = await countLatencyBaselineRows(context.pool);
  const expected = baselineRows.reduce((sum, row) => sum + row.requests - row.errors, 0);
  if (written !== expected) {
    context.log(`latency: the baseline wrote ${written} rows, but ${expected} calls succeeded`);
  }
  // Closed-loop clients wait for each reply before sending again, so at 100
  // connections the latency is 100 / throughput. Requests sent at evenly
  // spaced instants, at half the throughput measured with 16 connections,
  // show the latency of a load the server keeps up with.
  const sixteen = rows.find((row) => row.connections === 16);
  const rate = Math.max(10, Math.round((sixteen?.requestsPerSecond ?? 20) / 2));
  await waitForIdle(context);
  context.log(`latency: ${rate} requests/s at even intervals over 100 users, ${seconds} s`);
  rows.push(await runOpenLoop(context.server, many.slice(0, 100), rate, seconds));
  // 100 clients that each send one event per second, such as 100 apps
  // reporting activity, make a load well below the server's throughput.
  await waitForIdle(context);
  context.log(`latency: ${PACED_CLIENTS} clients sending one event per second each, ${seconds} s`);
  rows.push(await runOpenLoop(context.server, many.slice(0, PACED_CLIENTS), PACED_CLIENTS, seconds));

  for (const connections of SINGLE_USER_CONNECTION_COUNTS) {
    await waitForIdle(context);
    context.log(`latency: ${connections} connections, one user, ${seconds} s`);
    rows.push(await runCase(context.server, one, connections, seconds, true));
  }
  return [...rows, ...baselineRows];
}
