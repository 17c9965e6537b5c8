import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { ManualClock, startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';
import { captureLogs } from '../support/logs.js';
import { postgresUrl, redisUrl } from '../support/services.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL_PAIR = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/**
 * Parses Prometheus text exposition format 0.0.4 strictly: every line is
 * empty, which the format allows, a HELP or TYPE comment or a sample, and
 * every sample belongs to a family declared by a TYPE line before it. Throws
 * on the first line that breaks the format.
 */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  expect(text.endsWith('\n'), 'text ends with a newline').toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') {
      continue;
    }
    if (line.startsWith('# HELP ')) {
      expect(line.split(' ')[2], line).toMatch(METRIC_NAME);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type, ...rest] = line.split(' ');
      expect(name, line).toMatch(METRIC_NAME);
      expect(TYPES.has(type ?? ''), line).toBe(true);
      expect(rest, line).toEqual([]);
      types.set(name!, type!);
      continue;
    }
    const match = SAMPLE_LINE.exec(line);
    if (match === null) {
      throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    }
    const [, name, labelText, valueText] = match as unknown as [string, string, string | undefined, string];
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    expect(types.has(family), `TYPE line before ${name}`).toBe(true);
    const labels: Record<string, string> = {};
    let rest = labelText ?? '';
    while (rest !== '') {
      const pair = LABEL_PAIR.exec(rest);
      if (pair === null) {
        throw new Error(`invalid labels in ${JSON.stringify(line)}`);
      }
      labels[pair[1]!] = pair[2]!;
      rest = rest.slice(pair[0].length);
    }
    // Prometheus parses values with Go's strconv.ParseFloat, which reads NaN
    // and Inf in any case, and prom-client 15 writes NaN as "Nan".
    if (!/^(nan|[+-]?inf|-?\d+(\.\d+)?(e[+-]?\d+)?)$/i.test(valueText)) {
      throw new Error(`invalid value in ${JSON.stringify(line)}`);
    }
    const value = /^nan$/i.test(valueText) ? Number.NaN : Number(valueText.replace(/inf$/i, 'Infinity'));
    samples.push({ name, labels, value });
  }
  return samples;
}

/** Returns the value of the one sample with `name` whose labels include `labels`, or undefined. */
function valueOf(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const matching = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  expect(matching.length, `samples of ${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);
  return matching[0]?.value;
}

async function scrape(server: TestServer): Promise<{ status: number; contentType: string | null; samples: Sample[] }> {
  const url = server.app.metricsUrl();
  expect(url).not.toBeNull();
  const response = await fetch(`${url}/metrics`);
  const text = await response.text();
  return { status: response.status, contentType: response.headers.get('content-type'), samples: parseExposition(text) };
}

const SEND_EVENTS = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount duplicateCount } }`;

describe('metrics off by default', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, WITHOUT_WORKERS);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('starts no metrics listener', async () => {
    expect(server.app.metrics).toBeNull();
    expect(server.app.metricsUrl()).toBeNull();
  });

  it('serves no metrics on the API port', async () => {
    const response = await fetch(`${server.url}/metrics`);

    expect(response.status).toBe(404);
  });
});

describe('metrics on METRICS_PORT', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { METRICS_PORT: '0' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('serves the exposition format on its own port', async () => {
    const metricsUrl = server.app.metricsUrl();
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(metricsUrl).not.toBe(server.url);

    const { status, contentType, samples } = await scrape(server);

    expect(status).toBe(200);
    expect(contentType?.startsWith('text/plain; version=0.0.4')).toBe(true);
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.every((sample) => sample.name.startsWith('event_master_'))).toBe(true);
    expect(valueOf(samples, 'event_master_process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
  });

  it('rejects other paths and methods', async () => {
    const metricsUrl = server.app.metricsUrl();

    const other = await fetch(`${metricsUrl}/graphql`);
    expect(other.status).toBe(404);
    await other.text();
    const post = await fetch(`${metricsUrl}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
  });

  it('counts stored events, duplicates and corrections', async () => {
    const { token } = await server.createUser('metrics-member');
    // Recent instants, so that the session's auto-close deadline has not
    // passed and the second start closes it with DUPLICATE_START.
    const firstAt = new Date(Date.now() - 120_000).toISOString();
    const secondAt = new Date(Date.now() - 60_000).toISOString();
    const first = await server.gql(
      SEND_EVENTS,
      {
        events: [
          { id: 'first-start', type: 'session_started', occurredAt: firstAt },
          { id: 'second-start', type: 'session_started', occurredAt: secondAt },
        ],
      },
      token,
    );
    expect(first.errors).toBeUndefined();
    const again = await server.gql(SEND_EVENTS, { events: [{ id: 'first-start', type: 'session_started', occurredAt: firstAt }] }, token);
    expect(again.data?.sendEvents).toEqual({ storedCount: 0, duplicateCount: 1 });

    const { samples } = await scrape(server);

    expect(valueOf(samples, 'event_master_events_stored_total')).toBe(2);
    expect(valueOf(samples, 'event_master_events_duplicate_total')).toBe(1);
    expect(valueOf(samples, 'event_master_corrections_written_total', { rule: 'DUPLICATE_START' })).toBe(1);
    expect(valueOf(samples, 'event_master_corrections_written_total', { rule: 'AUTO_CLOSE' })).toBeUndefined();
    expect(
      valueOf(samples, 'event_master_graphql_operations_total', { operation: 'mutation', field: 'sendEvents', outcome: 'ok' }),
    ).toBe(2);
    expect(
      valueOf(samples, 'event_master_http_requests_total', { route: '/graphql', method: 'POST', status: '200' }),
    ).toBeGreaterThanOrEqual(2);
    expect(
      valueOf(samples, 'event_master_http_request_duration_seconds_count', { route: '/graphql', method: 'POST', status: '200' }),
    ).toBeGreaterThanOrEqual(2);
  });

  it('counts a rejected batch by reason', async () => {
    const { token } = await server.createUser('metrics-rejected');
    const rejected = await server.gql(
      SEND_EVENTS,
      { events: [{ type: 'session_started', occurredAt: '2026-01-05T09:00:00Z', pairType: 'task' }] },
      token,
    );
    expect(rejected.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');

    const { samples } = await scrape(server);

    expect(
      valueOf(samples, 'event_master_intake_batches_rejected_total', { code: 'BAD_USER_INPUT', reason: 'INVALID_EVENTS' }),
    ).toBe(1);
    expect(
      valueOf(samples, 'event_master_graphql_operations_total', { operation: 'mutation', field: 'sendEvents', outcome: 'BAD_USER_INPUT' }),
    ).toBe(1);
  });

  it('labels 4xx replies by route pattern and status', async () => {
    const graphql400 = { route: '/graphql', method: 'POST', status: '400' };
    const before = await scrape(server);
    const invalidJson = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"query": ',
    });
    expect(invalidJson.status).toBe(400);
    await invalidJson.text();
    const unknownPath = await fetch(`${server.url}/no-such-path/with-an-id-1234`);
    expect(unknownPath.status).toBe(404);
    await unknownPath.text();
    const syntaxError = await server.gql('{ me ');
    expect(syntaxError.status).toBe(400);

    const { samples } = await scrape(server);

    const counted400 = (valueOf(samples, 'event_master_http_requests_total', graphql400) ?? 0) - (valueOf(before.samples, 'event_master_http_requests_total', graphql400) ?? 0);
    expect(counted400).toBe(2);
    expect(valueOf(samples, 'event_master_http_requests_total', { route: '(unmatched)', method: 'GET', status: '404' })).toBe(1);
    expect(samples.some((sample) => Object.values(sample.labels).some((value) => value.includes('no-such-path')))).toBe(false);
    expect(
      valueOf(samples, 'event_master_graphql_operations_total', { operation: '(none)', field: '(none)', outcome: 'GRAPHQL_PARSE_FAILED' }),
    ).toBe(1);
  });

  it('counts a __typename-only operation once', async () => {
    const typenameOk = { operation: 'query', field: '__typename', outcome: 'ok' };
    const before = await scrape(server);
    const plain = await server.gql('{ __typename }');
    expect(plain.data).toEqual({ __typename: 'Query' });
    const aliased = await server.gql('query { first: __typename second: __typename }');
    expect(aliased.data).toEqual({ first: 'Query', second: 'Query' });

    const { samples } = await scrape(server);

    const counted =
      (valueOf(samples, 'event_master_graphql_operations_total', typenameOk) ?? 0) -
      (valueOf(before.samples, 'event_master_graphql_operations_total', typenameOk) ?? 0);
    expect(counted).toBe(2);
  });

  it('ignores __typename beside other fields', async () => {
    const { token } = await server.createUser('metrics-typename');
    const meOk = { operation: 'query', field: 'me', outcome: 'ok' };
    const typenameOk = { operation: 'query', field: '__typename', outcome: 'ok' };
    const before = await scrape(server);
    const response = await server.gql('{ __typename me { id } }', undefined, token);
    expect(response.errors).toBeUndefined();

    const { samples } = await scrape(server);

    const countedMe =
      (valueOf(samples, 'event_master_graphql_operations_total', meOk) ?? 0) -
      (valueOf(before.samples, 'event_master_graphql_operations_total', meOk) ?? 0);
    const countedTypename =
      (valueOf(samples, 'event_master_graphql_operations_total', typenameOk) ?? 0) -
      (valueOf(before.samples, 'event_master_graphql_operations_total', typenameOk) ?? 0);
    expect(countedMe).toBe(1);
    expect(countedTypename).toBe(0);
  });

  it('counts nothing when every root field is skipped', async () => {
    const { token } = await server.createUser('metrics-skipped');
    const sumOperations = (samples: readonly Sample[]) =>
      samples
        .filter((sample) => sample.name === 'event_master_graphql_operations_total')
        .reduce((sum, sample) => sum + sample.value, 0);
    const before = await scrape(server);
    const response = await server.gql('query ($skip: Boolean!) { me @skip(if: $skip) { id } }', { skip: true }, token);
    expect(response.errors).toBeUndefined();
    expect(response.data).toEqual({});

    const { samples } = await scrape(server);

    expect(sumOperations(samples) - sumOperations(before.samples)).toBe(0);
  });

  it('labels uncommon methods as other', async () => {
    for (const method of ['PROPFIND', 'MKCALENDAR', 'SOURCE']) {
      const response = await fetch(`${server.url}/no-such-path`, { method });
      expect(response.status, method).toBe(404);
      await response.text();
    }

    const { samples } = await scrape(server);

    const methods = new Set(samples.filter((sample) => sample.name === 'event_master_http_requests_total').map((sample) => sample.labels.method));
    expect(methods.has('PROPFIND')).toBe(false);
    expect(methods.has('MKCALENDAR')).toBe(false);
    expect(valueOf(samples, 'event_master_http_requests_total', { route: '(unmatched)', method: 'other', status: '404' })).toBe(3);
  });

  it('counts a lock wait that ended in USER_BUSY', async () => {
    const { id } = await server.createUser('metrics-busy');
    const lock = await server.app.store.acquireUserLock(id, { ttlMs: 30_000, waitMs: 0 });
    try {
      await expect(server.app.services.intake.settle(id, 0)).rejects.toMatchObject({ reason: 'USER_BUSY' });
    } finally {
      await server.app.store.releaseUserLock(lock);
    }

    const { samples } = await scrape(server);

    expect(valueOf(samples, 'event_master_user_lock_busy_total')).toBe(1);
  });

  it('reads storage gauges at scrape time', async () => {
    const { samples } = await scrape(server);

    expect(valueOf(samples, 'event_master_rollup_stale_chunks')).toBeGreaterThanOrEqual(0);
    expect(valueOf(samples, 'event_master_sweeper_overdue_deadlines')).toBeGreaterThanOrEqual(0);
    if (postgresUrl() === undefined) {
      expect(valueOf(samples, 'event_master_pg_pool_connections')).toBeUndefined();
    } else {
      expect(valueOf(samples, 'event_master_pg_pool_connections')).toBeGreaterThanOrEqual(1);
      expect(valueOf(samples, 'event_master_pg_pool_idle_connections')).toBeGreaterThanOrEqual(0);
      expect(valueOf(samples, 'event_master_pg_pool_waiting_requests')).toBe(0);
    }
    if (redisUrl() === undefined) {
      expect(valueOf(samples, 'event_master_redis_connection_status', { status: 'ready' })).toBeUndefined();
    } else {
      expect(valueOf(samples, 'event_master_redis_connection_status', { status: 'ready' })).toBe(1);
      expect(valueOf(samples, 'event_master_redis_connection_status', { status: 'reconnecting' })).toBe(0);
    }
  });
});

describe('sweeper metrics', () => {
  const start = Date.parse('2026-03-02T09:00:00Z');
  const clock = new ManualClock(start);
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, clock, env: { METRICS_PORT: '0' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('counts overdue deadlines, settled users and auto-closes', async () => {
    const { token } = await server.createUser('metrics-sweeper');
    const sent = await server.gql(SEND_EVENTS, { events: [{ type: 'session_started', occurredAt: new Date(start).toISOString() }] }, token);
    expect(sent.errors).toBeUndefined();
    // Past the 1800 s DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS of the built-in session pair type.
    clock.advance(3_600_000);

    const before = await scrape(server);
    expect(valueOf(before.samples, 'event_master_sweeper_overdue_deadlines')).toBe(1);

    expect(await server.app.sweeper.sweepOnce()).toBe(1);
    const after = await scrape(server);

    expect(valueOf(after.samples, 'event_master_sweeper_overdue_deadlines')).toBe(0);
    expect(valueOf(after.samples, 'event_master_sweeper_users_settled_total')).toBe(1);
    expect(valueOf(after.samples, 'event_master_sweeper_auto_closes_total')).toBe(1);
    expect(valueOf(after.samples, 'event_master_corrections_written_total', { rule: 'AUTO_CLOSE' })).toBe(1);
  });
});

describe('metrics listener at shutdown', () => {
  it('closes with the app', async () => {
    const server = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { METRICS_PORT: '0' } });
    const metricsUrl = server.app.metricsUrl();
    const open = await fetch(`${metricsUrl}/metrics`, { headers: { connection: 'keep-alive' } });
    expect(open.status).toBe(200);
    await open.text();

    await server.close();

    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow(TypeError);
  });

  it('closes after a failed stop step', async () => {
    const logs = captureLogs('error');
    const server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      logger: logs.logger,
      env: { METRICS_PORT: '0' },
    });
    const metricsUrl = server.app.metricsUrl();
    const fault = new Error('injected sweeper stop failure');
    vi.spyOn(server.app.sweeper, 'stop').mockRejectedValue(fault);
    const rollupsStop = vi.spyOn(server.app.rollups, 'stop');
    const replaysStop = vi.spyOn(server.app.replays, 'stop');
    const storeClose = vi.spyOn(server.app.store, 'close');
    const databaseClose = vi.spyOn(server.app.db, 'close');

    await expect(server.close()).rejects.toBe(fault);

    expect(rollupsStop).toHaveBeenCalledOnce();
    expect(replaysStop).toHaveBeenCalledOnce();
    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow(TypeError);
    expect(storeClose).toHaveBeenCalledOnce();
    expect(databaseClose).toHaveBeenCalledOnce();
    const failures = logs.entries().filter((entry) => entry.msg.startsWith('shutdown step failed'));
    expect(failures.map((entry) => entry.msg)).toEqual(['shutdown step failed: stop the sweeper']);
    expect(failures[0]?.err?.message).toBe('injected sweeper stop failure');
  });

  it('rejects with first of several failures', async () => {
    const logs = captureLogs('error');
    const server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      logger: logs.logger,
      env: { METRICS_PORT: '0' },
    });
    const metricsUrl = server.app.metricsUrl();
    const first = new Error('injected rollup builder stop failure');
    vi.spyOn(server.app.rollups, 'stop').mockRejectedValue(first);
    // The store's close fails after closing, so that the test leaves no connection open.
    const store = server.app.store;
    const closeStore = store.close.bind(store);
    vi.spyOn(store, 'close').mockImplementation(async () => {
      await closeStore();
      throw new Error('injected store close failure');
    });
    const databaseClose = vi.spyOn(server.app.db, 'close');

    await expect(server.close()).rejects.toBe(first);

    await expect(fetch(`${metricsUrl}/metrics`)).rejects.toThrow(TypeError);
    expect(databaseClose).toHaveBeenCalledOnce();
    const failures = logs.entries().filter((entry) => entry.msg.startsWith('shutdown step failed'));
    expect(failures.map((entry) => entry.msg)).toEqual([
      'shutdown step failed: stop the rollup builder',
      'shutdown step failed: close the coordination store',
    ]);
    expect(failures.map((entry) => entry.err?.message)).toEqual([
      'injected rollup builder stop failure',
      'injected store close failure',
    ]);
  });
});

describe('intake counts on every path', () => {
  const storedThenFailing = new Set<string>();
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: { METRICS_PORT: '0' },
      fault: (step, userId) => {
        if (step === 'events-stored' && storedThenFailing.has(userId)) {
          throw new Error('injected fault: stop between storing and applying');
        }
      },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  const postEvents = (token: string, body: unknown) =>
    fetch(`${server.url}/api/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });

  const rejectedCount = async (reason: string): Promise<number> =>
    valueOf((await scrape(server)).samples, 'event_master_intake_batches_rejected_total', { code: 'BAD_USER_INPUT', reason }) ?? 0;

  it('counts REST rejections once', async () => {
    const { token } = await server.createUser('metrics-rest-unparsable');
    const before = await rejectedCount('INVALID_EVENTS');

    // The second item parses and passes the intake's checks.
    const partly = await postEvents(token, [{ type: 'heartbeat', occurred_at: 'not an instant' }, { type: 'heartbeat' }]);
    expect(partly.status).toBe(400);
    await partly.text();
    expect(await rejectedCount('INVALID_EVENTS')).toBe(before + 1);

    // Here the second item fails the intake's checks too.
    const both = await postEvents(token, [{ type: 'heartbeat', occurred_at: 'not an instant' }, { type: '' }]);
    expect(both.status).toBe(400);
    await both.text();
    expect(await rejectedCount('INVALID_EVENTS')).toBe(before + 2);

    const none = await postEvents(token, [42]);
    expect(none.status).toBe(400);
    await none.text();
    expect(await rejectedCount('INVALID_EVENTS')).toBe(before + 3);
  });

  it('counts reused client id conflicts', async () => {
    const { token } = await server.createUser('metrics-id-conflict');
    const first = await server.gql(SEND_EVENTS, { events: [{ id: 'reused', type: 'heartbeat' }] }, token);
    expect(first.errors).toBeUndefined();
    const before = await rejectedCount('INVALID_EVENTS');

    const conflict = await server.gql(SEND_EVENTS, { events: [{ id: 'reused', type: 'page_viewed' }] }, token);
    expect(conflict.errors?.[0]?.extensions?.reason).toBe('INVALID_EVENTS');

    expect(await rejectedCount('INVALID_EVENTS')).toBe(before + 1);
  });

  it('counts events stored before failed fold', async () => {
    const { id, token } = await server.createUser('metrics-stored-then-failed');
    const before = valueOf((await scrape(server)).samples, 'event_master_events_stored_total') ?? 0;
    storedThenFailing.add(id);
    try {
      const failed = await server.gql(SEND_EVENTS, { events: [{ type: 'heartbeat' }, { type: 'heartbeat' }] }, token);
      expect(failed.errors?.[0]?.extensions?.eventsStored).toBe(true);
    } finally {
      storedThenFailing.delete(id);
    }

    const after = valueOf((await scrape(server)).samples, 'event_master_events_stored_total') ?? 0;
    expect(after - before).toBe(2);
  });

  it('counts USER_BUSY of a taken turn', async () => {
    const { id } = await server.createUser('metrics-busy-turn');
    const before = valueOf((await scrape(server)).samples, 'event_master_user_lock_busy_total') ?? 0;
    // A request of this process that holds the user's lock holds its turn
    // too, so a second settle waits for the turn, not for the Redis lock.
    let release!: () => void;
    const holding = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = server.app.services.intake.replay(id, () => holding);
    try {
      await expect(server.app.services.intake.settle(id, 0)).rejects.toMatchObject({ reason: 'USER_BUSY' });
    } finally {
      release();
      await first;
    }

    const after = valueOf((await scrape(server)).samples, 'event_master_user_lock_busy_total') ?? 0;
    expect(after - before).toBe(1);
  });
});

describe('metrics with a busy pool', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      // A statement timeout above the test's own, so that only the scrape's
      // limit on its reads can end a wait for the one connection.
      env: { METRICS_PORT: '0', DB_POOL_SIZE: '1', DB_STATEMENT_TIMEOUT_MS: '120000' },
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('scrapes while no connection is free', async () => {
    let release!: () => void;
    const holding = new Promise<void>((resolve) => {
      release = resolve;
    });
    let markTaken!: () => void;
    const connectionTaken = new Promise<void>((resolve) => {
      markTaken = resolve;
    });
    const transaction = server.app.db.sql.transaction(async () => {
      markTaken();
      await holding;
    });
    await connectionTaken;
    try {
      const { status, samples } = await scrape(server);

      expect(status).toBe(200);
      expect(valueOf(samples, 'event_master_rollup_stale_chunks')).toBeNaN();
      expect(valueOf(samples, 'event_master_process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0);
    } finally {
      release();
      await transaction;
    }
  });
});
