import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, describe, expect, it } from 'vitest';

import {
  IMPORT_EXIT,
  listenForStopSignals,
  parseImportArgs,
  readCredentials,
  REPEATED_SIGNAL_MS,
  runImportCommand,
} from '../../src/importer/import-command.js';
import {
  ImportFailedError,
  ImportInterruptedError,
  runImport,
  type RunImportOptions,
} from '../../src/importer/run-import.js';
import type { ImportSummary } from '../../src/importer/summary.js';

// An in-memory GraphQL server behind a fake `fetch`: enough of the schema's
// semantics (roles, pair types, idempotent ids, invalid items) to drive the
// importer without a network.

interface FakeUser {
  id: string;
  username: string;
  role: 'MEMBER' | 'ANALYST' | 'ADMIN';
  password: string;
}

interface FakeOptions {
  /** sendEvents requests that fail with SERVICE_UNAVAILABLE before the server recovers. */
  unavailableSends?: number;
  /** Tokens stop working after this many sendEvents requests (the importer must log in again). */
  expireTokenAfterSends?: number;
  maxBatchSize?: number;
  /** Milliseconds each sendEvents takes, so parallel requests overlap. */
  sendDelayMs?: number;
  /** Maximum `first` of an `events` page, as PAGE_SIZE_MAX sets it (default 1000). */
  maxPageSize?: number;
  /** Usernames that another client creates just before the importer's createUser for them. */
  createdElsewhere?: string[];
  /** Runs at the start of each sendEvents request, numbered from 1, and delays its reply until it resolves. */
  beforeSend?: (send: number) => Promise<void> | void;
}

type Reply = { status: number; body: unknown };

function ok(data: Record<string, unknown>): Reply {
  return { status: 200, body: { data } };
}

function fail(message: string, extensions: Record<string, unknown>, status = 200): Reply {
  return { status, body: { errors: [{ message, extensions }], data: null } };
}

const FORBIDDEN = fail('forbidden', { code: 'FORBIDDEN' });

function publicUser(user: FakeUser) {
  return { id: user.id, username: user.username, role: user.role };
}

/** Returns the id of the fake server's `n`th user, a UUID as the real server gives. */
function fakeUserId(n: number): string {
  return `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
}

function createFakeServer(options: FakeOptions = {}) {
  const users: FakeUser[] = [
    { id: fakeUserId(1), username: 'admin', role: 'ADMIN', password: 'admin-secret' },
    { id: fakeUserId(2), username: 'member', role: 'MEMBER', password: 'member-secret' },
  ];
  interface FakePairType {
    name: string;
    startType: string;
    endType: string;
    parent: string | null;
    autoClose: { timeoutSeconds: number; endAt: string };
  }
  const defaultPolicy = { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' };
  const pairTypes: FakePairType[] = [
    {
      name: 'session',
      startType: 'session_started',
      endType: 'session_ended',
      parent: null,
      autoClose: defaultPolicy,
    },
  ];
  const tokens = new Map<string, string>([
    ['admin-token', fakeUserId(1)],
    ['member-token', fakeUserId(2)],
  ]);
  /** Stored client ids per user id, in arrival order. */
  const stored = new Map<string, string[]>();
  /**
   * Rules of the corrections stored per user id. A `sensor_on` with pair key
   * AUTO adds an AUTO_CLOSE, and a `late_event` removes that user's, as a
   * late event reopens pairs that the server auto-closed.
   */
  const corrections = new Map<string, string[]>();
  /**
   * Client events stored with ORPHAN_END per user id: each `sensor_off`
   * with pair key ORPHAN, until a `late_event` of that user clears them, as
   * a late start gives such an end an instance to close.
   */
  const orphans = new Map<string, number>();
  const operations: string[] = [];
  const batches: { userId: string; ids: string[] }[] = [];
  let sends = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const inFlightUsers = new Set<string>();
  let overlappingUser = false;
  let unavailable = options.unavailableSends ?? 0;
  let tokensExpired = false;
  let tokenCounter = 0;

  function login(variables: Record<string, any>): Reply {
    const user = users.find((candidate) => candidate.username === variables.username);
    if (user === undefined || user.password !== variables.password) {
      return fail('invalid user name or password', { code: 'UNAUTHENTICATED' });
    }
    tokenCounter += 1;
    const token = `token-${user.id}-${tokenCounter}`;
    tokens.set(token, user.id);
    return ok({ login: { token, user: publicUser(user) } });
  }

  function createUser(input: Record<string, any>, viewer: FakeUser): Reply {
    if (viewer.role !== 'ADMIN') {
      return FORBIDDEN;
    }
    const { username, password, role } = input;
    if (username.includes(' ')) {
      const extensions = { code: 'BAD_USER_INPUT', reason: 'INVALID_USERNAME' };
      return fail(`invalid username "${username}"`, extensions);
    }
    if (options.createdElsewhere?.includes(username) === true && !users.some((user) => user.username === username)) {
      users.push({ id: fakeUserId(users.length + 1), username, password: 'elsewhere-secret', role: 'MEMBER' });
    }
    const existing = users.find((user) => user.username.toLowerCase() === username.toLowerCase());
    if (existing !== undefined) {
      const extensions = { code: 'BAD_USER_INPUT', reason: 'USERNAME_TAKEN' };
      return fail(`Username "${username}" is already taken as "${existing.username}"`, extensions);
    }
    const user: FakeUser = { id: fakeUserId(users.length + 1), username, password, role };
    users.push(user);
    return ok({ createUser: publicUser(user) });
  }

  function definePairType(input: Record<string, any>, viewer: FakeUser): Reply {
    if (viewer.role !== 'ADMIN') {
      return FORBIDDEN;
    }
    const parent = input.parent ?? null;
    if (parent !== null && !pairTypes.some((pairType) => pairType.name === parent)) {
      const extensions = { code: 'BAD_USER_INPUT', reason: 'UNKNOWN_PARENT' };
      return fail(`unknown parent "${parent}"`, extensions);
    }
    const pairType = {
      name: input.name,
      startType: input.startType,
      endType: input.endType,
      parent,
      autoClose: input.autoClose ?? defaultPolicy,
    };
    pairTypes.push(pairType);
    return ok({ definePairType: pairType });
  }

  async function handle(
    operation: string,
    variables: Record<string, any>,
    viewer: FakeUser | null,
  ): Promise<Reply> {
    if (operation === 'ImportLogin') {
      return login(variables);
    }
    if (viewer === null) {
      return fail('authentication required', { code: 'UNAUTHENTICATED' });
    }

    switch (operation) {
      case 'ImportMe':
        return ok({ me: publicUser(viewer) });
      case 'ImportUsers':
        return viewer.role === 'MEMBER' ? FORBIDDEN : ok({ users: users.map(publicUser) });
      case 'ImportCreateUser':
        return createUser(variables.input, viewer);
      case 'ImportPairTypes':
        return ok({ pairTypes });
      case 'ImportDefinePairType':
        return definePairType(variables.input, viewer);
      case 'ImportSendEvents':
        return sendEvents(variables.events, viewer);
      case 'ImportStoredEvents':
        return listStoredEvents(variables);
      default:
        return fail(`unknown operation ${operation}`, { code: 'GRAPHQL_VALIDATION_FAILED' }, 400);
    }
  }

  async function sendEvents(events: any[], viewer: FakeUser): Promise<Reply> {
    sends += 1;
    await options.beforeSend?.(sends);
    if (unavailable > 0) {
      unavailable -= 1;
      return fail('the database is unavailable', { code: 'SERVICE_UNAVAILABLE' }, 503);
    }

    const max = options.maxBatchSize ?? 1000;
    if (events.length > max) {
      return fail(`batch size is ${events.length}, above the maximum of ${max}`, {
        code: 'BAD_USER_INPUT',
        reason: 'LIMIT_EXCEEDED',
        limit: 'batch size',
        value: events.length,
        max,
      });
    }

    const namesOthers = events.some(
      (event) => event.userId !== undefined && event.userId !== viewer.id,
    );
    if (namesOthers && viewer.role !== 'ADMIN') {
      return FORBIDDEN;
    }

    const invalidItems = events.flatMap((event, index) =>
      event.type === 'bad'
        ? [{ index, reason: 'UNKNOWN_TYPE', message: 'type "bad" is not allowed' }]
        : [],
    );
    if (invalidItems.length > 0) {
      const extensions = { code: 'BAD_USER_INPUT', reason: 'INVALID_EVENTS', invalidItems };
      return fail('the batch has invalid events', extensions);
    }

    const userIds = new Set(events.map((event) => event.userId ?? viewer.id));
    for (const userId of userIds) {
      if (inFlightUsers.has(userId)) {
        overlappingUser = true;
      }
      inFlightUsers.add(userId);
    }
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((resolve) => setTimeout(resolve, options.sendDelayMs ?? 0));
    inFlight -= 1;
    for (const userId of userIds) {
      inFlightUsers.delete(userId);
    }

    let storedCount = 0;
    let duplicateCount = 0;
    const results = events.map((event) => {
      const userId = event.userId ?? viewer.id;
      const ids = stored.get(userId) ?? [];
      stored.set(userId, ids);
      const duplicate = event.id !== undefined && ids.includes(event.id);
      if (duplicate) {
        duplicateCount += 1;
      } else {
        storedCount += 1;
        ids.push(event.id ?? '(no id)');
      }
      if (!duplicate && event.type === 'sensor_on' && event.pairKey === 'AUTO') {
        corrections.set(userId, [...(corrections.get(userId) ?? []), 'AUTO_CLOSE']);
      }
      if (!duplicate && event.type === 'sensor_off' && event.pairKey === 'ORPHAN') {
        orphans.set(userId, (orphans.get(userId) ?? 0) + 1);
      }
      if (!duplicate && event.type === 'late_event') {
        corrections.delete(userId);
        orphans.delete(userId);
      }
      return { duplicate };
    });
    batches.push({ userId: [...userIds].join(','), ids: events.map((event) => event.id) });
    return ok({ sendEvents: { results, storedCount, duplicateCount } });
  }

  /**
   * Returns a page of `events(filter: { users, origins: [CORRECTION] })` or
   * `events(filter: { users, flags })`, with list offsets as cursors.
   */
  function listStoredEvents(variables: Record<string, any>): Reply {
    const max = options.maxPageSize ?? 1000;
    if (variables.first > max) {
      return fail(`first is ${variables.first}, above the maximum of ${max}`, {
        code: 'BAD_USER_INPUT',
        reason: 'LIMIT_EXCEEDED',
        limit: 'PAGE_SIZE_MAX',
        value: variables.first,
        max,
      });
    }
    const { users, origins, flags } = variables.filter as { users: string[]; origins?: string[]; flags?: string[] };
    const events = users.flatMap((userId): Array<{ rule: string | null; flags: string[] }> => {
      if (origins?.includes('CORRECTION') === true) {
        return (corrections.get(userId) ?? []).map((rule) => ({ rule, flags: [] }));
      }
      const orphanCount = flags?.includes('ORPHAN_END') === true ? (orphans.get(userId) ?? 0) : 0;
      return Array.from({ length: orphanCount }, () => ({ rule: null, flags: ['ORPHAN_END'] }));
    });
    const start = variables.after === null ? 0 : Number(variables.after);
    const end = Math.min(events.length, start + variables.first);
    const nodes = events.slice(start, end);
    const pageInfo = { hasNextPage: end < events.length, endCursor: String(end) };
    return ok({ events: { nodes, pageInfo } });
  }

  const fakeFetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    expect(String(url)).toBe('http://127.0.0.1:4000/graphql');
    const request = JSON.parse(String(init?.body)) as {
      operationName: string;
      variables: Record<string, any>;
    };
    operations.push(request.operationName);

    const expiry = options.expireTokenAfterSends;
    if (expiry !== undefined && sends >= expiry && !tokensExpired) {
      tokensExpired = true;
      tokens.clear();
    }
    const authorization = new Headers(init?.headers).get('authorization');
    const token = authorization?.replace(/^Bearer /, '') ?? null;
    const viewerId = token === null ? undefined : tokens.get(token);
    const viewer = users.find((user) => user.id === viewerId) ?? null;

    // As fetch does, an aborted request rejects with the signal's reason, whether or not the reply came.
    const signal = init?.signal ?? null;
    const aborted = new Promise<never>((_resolve, reject) => {
      signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true });
    });
    const { status, body } = await Promise.race([handle(request.operationName, request.variables, viewer), aborted]);
    const headers = { 'content-type': 'application/json' };
    return new Response(JSON.stringify(body), { status, headers });
  };

  return {
    fetch: fakeFetch as typeof fetch,
    users,
    pairTypes,
    stored,
    operations,
    batches,
    get maxInFlight() {
      return maxInFlight;
    },
    get overlappingUser() {
      return overlappingUser;
    },
    get sends() {
      return sends;
    },
  };
}

const folder = mkdtempSync(join(tmpdir(), 'import-run-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

let fileCounter = 0;
function writeNdjson(lines: readonly unknown[]): string {
  fileCounter += 1;
  const file = join(folder, `input-${fileCounter}.ndjson`);
  const texts = lines.map((line) => (typeof line === 'string' ? line : JSON.stringify(line)));
  writeFileSync(file, texts.join('\r\n') + '\n');
  return file;
}

const SENSOR = {
  kind: 'pairType',
  input: {
    name: 'sensor',
    startType: 'sensor_on',
    endType: 'sensor_off',
    autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
  },
};

function sensorEvents(username: string, count: number): unknown[] {
  return Array.from({ length: count }, (_, index) => ({
    kind: 'event',
    username,
    input: {
      id: `${username}:${index + 1}`,
      type: index % 2 === 0 ? 'sensor_on' : 'sensor_off',
      pairKey: 'M001',
      occurredAt: new Date(Date.UTC(2009, 2, 23, 10, 0, index)).toISOString(),
      meta: { sensor: 'M001' },
    },
  }));
}

function interleave(...lists: unknown[][]): unknown[] {
  const result: unknown[] = [];
  const longest = Math.max(...lists.map((list) => list.length));
  for (let index = 0; index < longest; index += 1) {
    for (const list of lists) {
      if (index < list.length) {
        result.push(list[index]);
      }
    }
  }
  return result;
}

type FakeServer = ReturnType<typeof createFakeServer>;

function baseOptions(server: FakeServer, files: string[]): RunImportOptions {
  return {
    url: 'http://127.0.0.1:4000',
    username: 'admin',
    password: 'admin-secret',
    files,
    fetch: server.fetch,
    retryDelaysMs: [1, 1, 1],
  };
}

/**
 * Wraps the fake server's fetch so that the `users` request aborts `stop`
 * with `reason` and gets a FORBIDDEN reply, as when the account lost its
 * ADMIN role while the import was being stopped.
 */
function forbidUsersAtStop(server: FakeServer, stop: AbortController, reason: string): typeof fetch {
  return (async (url: string | URL | Request, init?: RequestInit) => {
    const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
    if (operationName !== 'ImportUsers') {
      return server.fetch(url, init);
    }
    stop.abort(reason);
    const body = { errors: [{ message: 'forbidden', extensions: { code: 'FORBIDDEN' } }], data: null };
    return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
}

async function expectFailure(promise: Promise<ImportSummary>): Promise<ImportFailedError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ImportFailedError);
    return error as ImportFailedError;
  }
  throw new Error('expected the import to fail');
}

describe('runImport', () => {
  it('imports users, pair types and events', async () => {
    const server = createFakeServer();
    const events = interleave(sensorEvents('P002', 7), sensorEvents('P124', 5));
    const file = writeNdjson([SENSOR, ...events]);
    const messages: string[] = [];
    const progress: number[] = [];

    const summary = await runImport({
      ...baseOptions(server, [file]),
      batchSize: 3,
      onMessage: (message) => messages.push(message),
      onProgress: (update) => progress.push(update.done),
    });

    expect(summary.linesRead).toBe(13);
    expect(summary.eventsRead).toBe(12);
    expect(summary.eventsSent).toBe(12);
    expect(summary.stored).toBe(12);
    expect(summary.duplicates).toBe(0);
    expect(summary.pairTypesDefined).toEqual(['sensor']);
    expect(summary.usersCreated).toEqual(['P002', 'P124']);
    expect(summary.requests).toBe(5);

    const p002 = server.users.find((user) => user.username === 'P002');
    expect(p002?.role).toBe('MEMBER');
    expect(p002?.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const p002Ids = Array.from({ length: 7 }, (_, index) => `P002:${index + 1}`);
    expect(server.stored.get(p002?.id ?? '')).toEqual(p002Ids);
    expect(server.batches.every((batch) => batch.ids.length <= 3)).toBe(true);

    expect(progress.at(-1)).toBe(12);
    expect(messages).toContain(
      'created user "P002" with role MEMBER and a random password that was not saved',
    );
    expect(messages.join('\n')).not.toContain('admin-secret');
    expect(messages.join('\n')).not.toContain(p002?.password ?? '(none)');
  });

  it('stores nothing twice on a re-run', async () => {
    const server = createFakeServer();
    const file = writeNdjson([SENSOR, ...sensorEvents('P002', 4)]);
    await runImport(baseOptions(server, [file]));

    const again = await runImport(baseOptions(server, [file]));
    expect(again.stored).toBe(0);
    expect(again.duplicates).toBe(4);
    expect(again.eventsSent).toBe(4);
    expect(again.pairTypesDefined).toEqual([]);
    expect(again.pairTypesExisting).toEqual(['sensor']);
    expect(again.usersCreated).toEqual([]);
  });

  it('sends bare events as the caller', async () => {
    const server = createFakeServer();
    const file = writeNdjson([{ id: 'a', type: 'ping' }, { type: 'ping' }]);
    const messages: string[] = [];
    const summary = await runImport({
      ...baseOptions(server, [file]),
      username: null,
      password: null,
      token: 'member-token',
      onMessage: (message) => messages.push(message),
    });
    expect(summary.stored).toBe(2);
    expect(server.stored.get(fakeUserId(2))).toEqual(['a', '(no id)']);
    expect(server.operations).not.toContain('ImportUsers');
    expect(messages).toContain('1 event has no id, so a retry or a re-run may store it twice');
  });

  it('reports bad lines and rejected events', async () => {
    const server = createFakeServer();
    const events = sensorEvents('P002', 4) as { input: { type: string } }[];
    (events[2] as { input: { type: string } }).input.type = 'bad';
    const file = writeNdjson([SENSOR, 'not json', ...events, '', '{"kind":"event","input":{"type":3}}']);
    const messages: string[] = [];

    const onMessage = (message: string) => messages.push(message);
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage });

    expect(summary.linesRead).toBe(7);
    expect(summary.badLines).toBe(2);
    expect(summary.eventsRead).toBe(4);
    expect(summary.eventsSent).toBe(4);
    expect(summary.rejected).toBe(1);
    expect(summary.stored).toBe(3);
    expect(summary.issues.map((issue) => [issue.kind, issue.line])).toEqual([
      ['badLine', 2],
      ['badLine', 8],
      ['rejectedEvent', 5],
    ]);
    expect(messages).toContain(
      `${file}:5: event P002:3 rejected by the server (UNKNOWN_TYPE): type "bad" is not allowed`,
    );
    const badJson = messages.find((message) => message.startsWith(`${file}:2: skipped line:`));
    expect(badJson).toMatch(/: invalid JSON: /);
    expect(server.stored.get(fakeUserId(3))).toEqual(['P002:1', 'P002:2', 'P002:4']);
  });

  it('shows the first bad lines and a count', async () => {
    const server = createFakeServer();
    const badLines = Array.from({ length: 30 }, (_, index) => `not json ${index + 1}`);
    const file = writeNdjson([...badLines, ...sensorEvents('P002', 2)]);
    const messages: string[] = [];
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage: (message) => messages.push(message) });

    expect(summary.badLines).toBe(30);
    expect(summary.issues).toHaveLength(30);
    expect(summary.stored).toBe(2);
    const reported = messages.filter((message) => message.includes(': skipped line: '));
    expect(reported).toHaveLength(20);
    expect(reported.at(-1)).toMatch(new RegExp(`^${file}:20: skipped line: `));
    expect(messages).toContain(
      '10 more skipped lines not shown; the --json summary lists the first 1000 issues with their lines',
    );
  });

  it('stops when no line is a record', async () => {
    const server = createFakeServer();
    const casasLines = Array.from({ length: 30 }, (_, index) => `2009-03-23 10:16:${10 + index}.214629\tM045\tON`);
    const file = writeNdjson([...casasLines, '{"kind":"event","input":{"type":3}}']);
    const messages: string[] = [];
    const failure = await expectFailure(
      runImport({ ...baseOptions(server, [file]), onMessage: (message) => messages.push(message) }),
    );

    expect(failure.message).toMatch(/^all 31 lines read are invalid, so nothing was sent\. /);
    // Without -s, npm writes its own lines to standard output and so into events.ndjson.
    expect(failure.message).toContain('npm run -s convert:casas -- FILE > events.ndjson');
    expect(failure.summary.badLines).toBe(31);
    expect(server.operations).toEqual([]);
    expect(messages.filter((message) => message.includes(': skipped line: '))).toHaveLength(20);
  });

  it('reports a pair type conflict', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      { kind: 'pairType', input: { name: 'session', startType: 'login', endType: 'logout' } },
      { kind: 'pairType', input: { name: 'sensor', startType: 'sensor_on', endType: 'sensor_off' } },
      { kind: 'pairType', input: { name: 'sensor', startType: 'on', endType: 'off' } },
    ]);
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage });

    expect(summary.pairTypeConflicts).toEqual(['sensor', 'session']);
    expect(summary.pairTypesDefined).toEqual(['sensor']);
    const session = server.pairTypes.find((pairType) => pairType.name === 'session');
    expect(session?.startType).toBe('session_started');
    expect(messages).toContainEqual(
      expect.stringMatching(/:1: pair type "session" exists on the server with start/),
    );
    expect(messages).toContainEqual(
      expect.stringMatching(/:3: pair type "sensor" is defined again differently from .*:2;/),
    );
  });

  it('reports another policy as conflict', async () => {
    const server = createFakeServer();
    await runImport(baseOptions(server, [writeNdjson([SENSOR])]));
    const longer = {
      kind: 'pairType',
      input: { ...SENSOR.input, autoClose: { timeoutSeconds: 3600, endAt: 'DEADLINE' } },
    };
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);

    const summary = await runImport({ ...baseOptions(server, [writeNdjson([longer])]), onMessage });

    expect(summary.pairTypeConflicts).toEqual(['sensor']);
    expect(summary.pairTypesExisting).toEqual([]);
    expect(messages).toContainEqual(
      expect.stringMatching(
        /:1: pair type "sensor" differs from the server's: auto-close after 1800 s at LAST_ACTIVITY on the server, but auto-close after 3600 s at DEADLINE here; the server's definition is kept/,
      ),
    );
  });

  it('reports another parent as conflict', async () => {
    const server = createFakeServer();
    const child = {
      kind: 'pairType',
      input: { name: 'step', startType: 'step_on', endType: 'step_off', parent: 'session' },
    };
    await runImport(baseOptions(server, [writeNdjson([child])]));
    const topLevel = { kind: 'pairType', input: { ...child.input, parent: null } };

    const summary = await runImport(baseOptions(server, [writeNdjson([topLevel])]));

    expect(summary.pairTypeConflicts).toEqual(['step']);
    expect(summary.issues[0]?.message).toContain(
      'parent "session" on the server, but no parent here',
    );
  });

  it('accepts a line without policy', async () => {
    const server = createFakeServer();
    await runImport(baseOptions(server, [writeNdjson([SENSOR])]));
    const withoutPolicy = {
      kind: 'pairType',
      input: { name: 'sensor', startType: 'sensor_on', endType: 'sensor_off' },
    };

    const summary = await runImport(baseOptions(server, [writeNdjson([withoutPolicy])]));

    expect(summary.pairTypesExisting).toEqual(['sensor']);
    expect(summary.pairTypeConflicts).toEqual([]);
  });

  it('reports a policy given twice differently', async () => {
    const server = createFakeServer();
    const other = {
      kind: 'pairType',
      input: { ...SENSOR.input, autoClose: { timeoutSeconds: 60, endAt: 'LAST_ACTIVITY' } },
    };

    const summary = await runImport(baseOptions(server, [writeNdjson([SENSOR, other])]));

    expect(summary.pairTypeConflicts).toEqual(['sensor']);
    expect(summary.pairTypesDefined).toEqual(['sensor']);
  });

  it('reports a rejected pair type', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      {
        kind: 'pairType',
        input: { name: 'step', startType: 'step_on', endType: 'step_off', parent: 'nowhere' },
      },
    ]);
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage });

    expect(summary.pairTypesRejected).toEqual(['step']);
    expect(summary.pairTypeConflicts).toEqual([]);
    expect(summary.issues.map((issue) => issue.kind)).toEqual(['rejectedPairType']);
    expect(messages).toContain(
      `${file}:1: pair type "step" rejected by the server: unknown parent "nowhere"`,
    );
  });

  it('defines parents first', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      {
        kind: 'pairType',
        input: { name: 'step', startType: 'step_on', endType: 'step_off', parent: 'visit' },
      },
      { kind: 'pairType', input: { name: 'visit', startType: 'visit_on', endType: 'visit_off' } },
    ]);
    const summary = await runImport(baseOptions(server, [file]));
    expect(summary.pairTypesDefined).toEqual(['visit', 'step']);
    expect(summary.pairTypeConflicts).toEqual([]);
  });

  it('stops a member naming users', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toMatch(/needs the ADMIN role, but member has role MEMBER/);
    expect(server.sends).toBe(0);
  });

  it('lets a member name itself', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('Member', 2));
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const summary = await runImport(options);
    expect(summary.stored).toBe(2);
    expect(summary.usersCreated).toEqual([]);
    expect(server.stored.get(fakeUserId(2))).toEqual(['Member:1', 'Member:2']);
  });

  it('stops a member naming a user id', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      { id: 'own-1', type: 'ping' },
      { id: 'other-1', type: 'ping', userId: fakeUserId(1) },
      { id: 'own-2', type: 'ping', userId: fakeUserId(2) },
    ]);
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toBe(
      `${file}:2 gives userId "${fakeUserId(1)}", another user's id, and sending events for other users ` +
        'needs the ADMIN role, but member has role MEMBER',
    );
    expect(server.sends).toBe(0);
  });

  it('quotes the start of a long user id', async () => {
    const server = createFakeServer();
    const userId = 'x'.repeat(100_000);
    const file = writeNdjson([{ id: 'other-1', type: 'ping', userId }]);
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toContain(`${file}:1 gives userId "${'x'.repeat(64)}...", another user's id`);
    expect(failure.message.length).toBeLessThan(file.length + 300);
    expect(server.sends).toBe(0);
  });

  it('sends a member its own user id', async () => {
    const server = createFakeServer();
    const file = writeNdjson([{ id: 'own-1', type: 'ping', userId: fakeUserId(2) }]);
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const summary = await runImport(options);
    expect(summary.stored).toBe(1);
  });

  it('stops a member defining pair types', async () => {
    const server = createFakeServer();
    const file = writeNdjson([SENSOR]);
    const options = { ...baseOptions(server, [file]), token: 'member-token' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toContain(`${file}:1 defines pair type "sensor"`);
    expect(failure.message).toMatch(/needs the ADMIN role, but member has role MEMBER$/);
  });

  it('stops on a wrong password', async () => {
    const server = createFakeServer();
    const file = writeNdjson([{ type: 'ping' }]);
    const options = { ...baseOptions(server, [file]), password: 'wrong' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toBe('login as "admin" was not accepted: invalid user name or password');
    expect(failure.message).not.toContain('wrong');
  });

  it('names the URL of a 404 login reply', async () => {
    const notFound = (async () =>
      new Response('<html>Not Found</html>', { status: 404, statusText: 'Not Found', headers: { 'content-type': 'text/html' } })) as typeof fetch;
    const file = writeNdjson([{ type: 'ping' }]);
    const options = { ...baseOptions(createFakeServer(), [file]), url: 'http://127.0.0.1:4000/api', fetch: notFound };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toBe(
      'login as "admin" failed, because http://127.0.0.1:4000/api/graphql sent no GraphQL reply but ' +
        'HTTP status 404 Not Found. Check --url: it is the base URL of the server, and GraphQL is at URL/graphql',
    );
  });

  it('stops at once on https to plain HTTP', async () => {
    const plain = createHttpServer((_request, response) => response.end());
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = plain.address() as AddressInfo;
      const file = writeNdjson([{ type: 'ping' }]);
      const options = { ...baseOptions(createFakeServer(), [file]), url: `https://127.0.0.1:${port}`, fetch: undefined };
      const failure = await expectFailure(runImport(options));
      expect(failure.message).toBe(
        `the login request to https://127.0.0.1:${port}/graphql failed in the TLS handshake ` +
          '(ERR_SSL_WRONG_VERSION_NUMBER). Use http:// in --url for a server without TLS, ' +
          'or make Node trust its certificate, for example with NODE_EXTRA_CA_CERTS',
      );
      expect(failure.summary.retries).toBe(0);
    } finally {
      await new Promise<void>((resolve) => plain.close(() => resolve()));
    }
  });

  it('keeps the re-run advice after a TLS failure', async () => {
    const expired = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
    const tlsFailure = new TypeError('fetch failed', { cause: expired });
    const server = createFakeServer({
      beforeSend: (send) => {
        if (send === 2) {
          throw tlsFailure;
        }
      },
    });
    const file = writeNdjson(sensorEvents('P002', 3));
    const failure = await expectFailure(runImport({ ...baseOptions(server, [file]), batchSize: 1, concurrency: 1 }));

    expect(failure.message).toContain('failed in the TLS handshake (CERT_HAS_EXPIRED)');
    expect(failure.message).toMatch(/Events already stored stay stored; run the same command again once the TLS problem is fixed$/);
  });

  it('stops on an unknown token', async () => {
    const server = createFakeServer();
    const file = writeNdjson([{ type: 'ping' }]);
    const options = { ...baseOptions(server, [file]), token: 'bogus-token-123' };
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toBe('the token was not accepted: authentication required');
    expect(server.sends).toBe(0);
  });

  it('rejects a token with a line break', async () => {
    const server = createFakeServer();
    const file = writeNdjson([{ type: 'ping' }]);
    const options = { ...baseOptions(server, [file]), token: 'eyJhbGci\nTokS3cret' };
    const failure = runImport(options);
    await expect(failure).rejects.toThrow(TypeError);
    await expect(failure).rejects.toThrow('token is invalid: character 9 is a line break (U+000A)');
    await expect(failure).rejects.not.toThrow(/TokS3cret/);
    expect(server.operations).toEqual([]);
  });

  it('stops on a UTF-16 file before sending', async () => {
    const server = createFakeServer();
    const file = join(folder, 'utf16.ndjson');
    writeFileSync(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"type":"ping"}\r\n', 'utf16le')]));
    const failure = await expectFailure(runImport(baseOptions(server, [file])));
    expect(failure.message).toBe(
      `cannot read ${file}: the file is UTF-16LE text (it starts with a UTF-16 byte order mark), ` +
        'but it must be UTF-8. Convert it, for example with: iconv -f UTF-16LE -t UTF-8; nothing was sent',
    );
    expect(server.operations).toEqual([]);
  });

  it('stops on an unreadable file before sending', async () => {
    const server = createFakeServer();
    const options = baseOptions(server, [join(folder, 'missing.ndjson')]);
    const failure = await expectFailure(runImport(options));
    expect(failure.message).toMatch(/^cannot read .*missing\.ndjson: ENOENT.*; nothing was sent$/);
    expect(server.operations).toEqual([]);
  });

  it('retries an unavailable server', async () => {
    const server = createFakeServer({ unavailableSends: 2 });
    const file = writeNdjson(sensorEvents('P002', 3));
    const summary = await runImport(baseOptions(server, [file]));
    expect(summary.retries).toBe(2);
    expect(summary.stored).toBe(3);
  });

  it('gives up on a server that stays down', async () => {
    const server = createFakeServer({ unavailableSends: 100 });
    const file = writeNdjson(sensorEvents('P002', 3));
    const failure = await expectFailure(runImport(baseOptions(server, [file])));
    expect(failure.message).toMatch(
      /^the server stayed unavailable \(gave up after 4 attempts: .*SERVICE_UNAVAILABLE/,
    );
    expect(failure.message).toContain('the sendEvents request failed (SERVICE_UNAVAILABLE)');
    expect(failure.message).toMatch(/Events already stored stay stored; run the same command again/);
    expect(failure.summary.retries).toBe(3);
    expect(failure.summary.usersCreated).toEqual(['P002']);
    expect(failure.summary.stored).toBe(0);
  });

  it('gives up on a login that never connects', async () => {
    const file = writeNdjson(sensorEvents('P002', 3));
    const refuseConnection: typeof fetch = async () => {
      throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:4000') });
    };
    const failure = await expectFailure(runImport({ ...baseOptions(createFakeServer(), [file]), fetch: refuseConnection }));
    expect(failure.message).toMatch(
      /^the server stayed unavailable \(gave up after 4 attempts: the login request could not reach http:\/\/127\.0\.0\.1:4000\/graphql: /,
    );
    expect(failure.message).toMatch(/No event was sent; run the same command again when the server is up$/);
    expect(failure.message).not.toMatch(/already stored/);
    expect(failure.summary.eventsSent).toBe(0);
  });

  it('logs in again when the token expires', async () => {
    const server = createFakeServer({ expireTokenAfterSends: 1 });
    const file = writeNdjson(sensorEvents('P002', 4));
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);
    const summary = await runImport({ ...baseOptions(server, [file]), batchSize: 2, onMessage });
    expect(summary.stored).toBe(4);
    expect(server.operations.filter((operation) => operation === 'ImportLogin')).toHaveLength(2);
    expect(messages).toContain('the token expired; logging in again');
  });

  it('logs in no more once stopped', async () => {
    const stop = new AbortController();
    const server = createFakeServer({ expireTokenAfterSends: 1 });
    // The second batch is in flight when the import stops, and its token has expired.
    const stopOnSecondSend = (async (url: string | URL | Request, init?: RequestInit) => {
      const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
      if (operationName === 'ImportSendEvents' && server.sends === 1) {
        stop.abort('SIGINT');
      }
      return server.fetch(url, init);
    }) as typeof fetch;
    const file = writeNdjson(sensorEvents('P002', 4));
    const messages: string[] = [];
    const options = {
      ...baseOptions(server, [file]),
      batchSize: 2,
      fetch: stopOnSecondSend,
      signal: stop.signal,
      onMessage: (message: string) => messages.push(message),
    };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(server.operations.filter((operation) => operation === 'ImportLogin'), 'logins').toHaveLength(1);
    expect(server.sends).toBe(1);
    expect(failure.summary.stored).toBe(2);
    expect(failure.message).toContain(
      'stopped by SIGINT: 2 of 4 events were sent and have a reply, and 2 more were sent without a reply ',
    );
    expect(messages).not.toContain('the token expired; logging in again');
    const reported = messages.filter((message) => message.startsWith(`${file}:3-4: `));
    expect(reported).toHaveLength(1);
    expect(reported[0]).toContain('(UNAUTHENTICATED)');
    expect(reported[0]).toContain('after a stop the import does not log in again');
  });

  it('resends nothing after a login once stopped', async () => {
    const stop = new AbortController();
    const server = createFakeServer({ expireTokenAfterSends: 1 });
    // The import stops while it logs in again for the second batch.
    let logins = 0;
    const stopOnSecondLogin = (async (url: string | URL | Request, init?: RequestInit) => {
      const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
      if (operationName === 'ImportLogin') {
        logins += 1;
        if (logins === 2) {
          stop.abort('SIGINT');
        }
      }
      return server.fetch(url, init);
    }) as typeof fetch;
    const file = writeNdjson(sensorEvents('P002', 4));
    const options = { ...baseOptions(server, [file]), batchSize: 2, fetch: stopOnSecondLogin, signal: stop.signal };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(logins).toBe(2);
    expect(server.sends).toBe(1);
    expect(failure.summary.stored).toBe(2);
    expect(failure.message).toContain('and 2 more were sent without a reply ');
  });

  it('reports a rejected login once', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);
    const failure = await expectFailure(runImport({ ...baseOptions(server, [file]), password: 'wrong-secret', onMessage }));

    expect(failure.message).toContain('invalid user name or password');
    expect(messages).not.toContain('the token expired; logging in again');
    expect(server.operations.filter((operation) => operation === 'ImportLogin')).toHaveLength(1);
  });

  it('adopts the server batch limit', async () => {
    const server = createFakeServer({ maxBatchSize: 2 });
    const file = writeNdjson(sensorEvents('P002', 7));
    const messages: string[] = [];
    const onMessage = (message: string) => messages.push(message);
    const summary = await runImport({ ...baseOptions(server, [file]), batchSize: 5, onMessage });
    expect(summary.stored).toBe(7);
    expect(server.batches.map((batch) => batch.ids.length)).toEqual([2, 2, 1, 2]);
    expect(messages).toContain('the server limits batches to 2 events; sending smaller batches');
  });

  it('runs users in parallel, each in order', async () => {
    const server = createFakeServer({ sendDelayMs: 5 });
    const users = ['A', 'B', 'C', 'D', 'E'];
    const file = writeNdjson([SENSOR, ...interleave(...users.map((user) => sensorEvents(user, 6)))]);
    const summary = await runImport({ ...baseOptions(server, [file]), batchSize: 2, concurrency: 3 });

    expect(summary.stored).toBe(30);
    expect(server.maxInFlight).toBe(3);
    expect(server.overlappingUser).toBe(false);
    for (const user of users) {
      const id = server.users.find((candidate) => candidate.username === user)?.id ?? '';
      const ids = Array.from({ length: 6 }, (_, index) => `${user}:${index + 1}`);
      expect(server.stored.get(id)).toEqual(ids);
    }
  });

  it('counts corrections by rule', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      { id: '1', type: 'sensor_on', pairKey: 'AUTO' },
      { id: '2', type: 'sensor_on', pairKey: 'AUTO' },
      { id: '3', type: 'sensor_on', pairKey: 'M001' },
    ]);
    const options = { ...baseOptions(server, [file]), username: null, token: 'admin-token' };
    const summary = await runImport(options);
    expect(summary.correctionsByRule).toEqual({ AUTO_CLOSE: 2 });
  });

  it('counts only corrections and flags still stored', async () => {
    const server = createFakeServer();
    const line = (username: string, id: string, type: string, pairKey?: string) => ({
      kind: 'event',
      username,
      input: { id, type, ...(pairKey === undefined ? {} : { pairKey }) },
    });
    const file = writeNdjson([
      line('P002', 'a1', 'sensor_on', 'AUTO'),
      line('P002', 'a2', 'sensor_off', 'ORPHAN'),
      line('P002', 'a3', 'late_event'),
      line('P002', 'a4', 'sensor_on', 'AUTO'),
      line('P124', 'b1', 'sensor_on', 'AUTO'),
      line('P124', 'b2', 'sensor_off', 'ORPHAN'),
    ]);
    const summary = await runImport({ ...baseOptions(server, [file]), batchSize: 1 });

    // A later event of P002 undid its first correction and cleared its first flag.
    expect(summary.correctionsByRule, 'corrections').toEqual({ AUTO_CLOSE: 2 });
    expect(summary.flaggedByRule, 'flags').toEqual({ ORPHAN_END: 1 });
  });

  it('counts stored corrections and flags again on a re-run', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      { id: '1', type: 'sensor_on', pairKey: 'AUTO' },
      { id: '2', type: 'sensor_off', pairKey: 'ORPHAN' },
    ]);
    const options = { ...baseOptions(server, [file]), username: null, token: 'admin-token' };
    await runImport(options);
    const again = await runImport(options);

    expect(again.duplicates, 'duplicates').toBe(2);
    expect(again.correctionsByRule, 'corrections').toEqual({ AUTO_CLOSE: 1 });
    expect(again.flaggedByRule, 'flags').toEqual({ ORPHAN_END: 1 });
  });

  it('reads stored events in pages of the server maximum', async () => {
    const server = createFakeServer({ maxPageSize: 2 });
    const lines = Array.from({ length: 5 }, (_, index) => ({ id: `o${index}`, type: 'sensor_on', pairKey: 'AUTO' }));
    const options = { ...baseOptions(server, [writeNdjson(lines)]), username: null, token: 'admin-token' };
    const summary = await runImport(options);

    expect(summary.correctionsByRule, 'corrections').toEqual({ AUTO_CLOSE: 5 });
    // One rejected page of 1000, three pages of corrections, and one empty page of flags in the size learned.
    expect(server.operations.filter((operation) => operation === 'ImportStoredEvents'), 'requests').toHaveLength(5);
  });

  it('leaves corrections and flags uncounted when it stops', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const options = { ...baseOptions(server, [file]), username: 'member', password: 'member-secret' };
    const failure = await expectFailure(runImport(options));

    expect(failure.summary.correctionsByRule, 'corrections').toBeNull();
    expect(failure.summary.flaggedByRule, 'flags').toBeNull();
  });

  it('stops after the batch in flight', async () => {
    const stop = new AbortController();
    const server = createFakeServer({
      beforeSend: (send) => {
        if (send === 1) {
          stop.abort('SIGINT');
        }
      },
    });
    const file = writeNdjson(sensorEvents('P002', 7));
    const options = { ...baseOptions(server, [file]), batchSize: 2, concurrency: 1, signal: stop.signal };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect((failure as ImportInterruptedError).reason).toBe('SIGINT');
    expect(server.sends).toBe(1);
    expect(failure.summary.stored).toBe(2);
    expect(failure.summary.eventsSent).toBe(2);
    expect(failure.summary.correctionsByRule).toBeNull();
    expect(failure.message).toBe(
      'stopped by SIGINT: 2 of 7 events were sent and have a reply. Stored events stay stored. ' +
        'Run the same command again to continue: the server stores an event with an id only once ' +
        'and counts a repeat as a duplicate',
    );
  });

  it('stops waiting for a reply after the wait', async () => {
    const stop = new AbortController();
    const server = createFakeServer({
      // Both users' first batches are in flight when the import stops, and neither gets a reply.
      beforeSend: (send) => {
        if (send === 2) {
          stop.abort('SIGTERM');
        }
        return new Promise<void>(() => {});
      },
    });
    const file = writeNdjson([...sensorEvents('P002', 3), ...sensorEvents('P124', 3)]);
    const messages: string[] = [];
    const options = {
      ...baseOptions(server, [file]),
      batchSize: 2,
      signal: stop.signal,
      replyWaitMs: 1,
      onMessage: (message: string) => messages.push(message),
    };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(server.sends).toBe(2);
    expect(failure.summary.stored).toBe(0);
    expect(failure.message).toContain(
      'stopped by SIGTERM: 0 of 6 events were sent and have a reply, and 4 more were sent without a reply ' +
        'before the wait ended, so the server may have stored them. ',
    );
    // The requests that the end of the wait aborted are counted, not reported one by one.
    expect(messages.filter((message) => message.startsWith(file))).toEqual([]);
  });

  it('keeps counts of a split batch after the wait', async () => {
    const stop = new AbortController();
    const server = createFakeServer({
      maxBatchSize: 2,
      // The 1st send is rejected for size, the 2nd is stored, and the 3rd gets no reply.
      beforeSend: (send) => {
        if (send === 3) {
          stop.abort('SIGINT');
          return new Promise<void>(() => {});
        }
      },
    });
    const file = writeNdjson(sensorEvents('P002', 4));
    const options = { ...baseOptions(server, [file]), batchSize: 4, signal: stop.signal, replyWaitMs: 1 };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(server.sends).toBe(3);
    expect(failure.summary.stored).toBe(2);
    expect(failure.summary.eventsSent).toBe(2);
    expect(failure.summary.requests).toBe(3);
    expect(failure.message).toContain(
      'stopped by SIGINT: 2 of 4 events were sent and have a reply, and 2 more were sent without a reply ',
    );
  });

  it('keeps counts of a split batch that fails', async () => {
    const server = createFakeServer({
      maxBatchSize: 2,
      // The 1st send is rejected for size, the 2nd is stored, and the 3rd and its retries fail.
      beforeSend: (send) => {
        if (send >= 3) {
          throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:4000') });
        }
      },
    });
    const file = writeNdjson(sensorEvents('P002', 4));
    const failure = await expectFailure(runImport({ ...baseOptions(server, [file]), batchSize: 4 }));

    expect(failure.message).toMatch(/^the server stayed unavailable \(gave up after 4 attempts: /);
    expect(failure.summary.stored).toBe(2);
    expect(failure.summary.eventsSent).toBe(2);
  });

  it('reads no more stored events once stopped', async () => {
    const stop = new AbortController();
    const server = createFakeServer({ maxPageSize: 2 });
    const stopOnFirstRead = (async (url: string | URL | Request, init?: RequestInit) => {
      const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
      if (operationName === 'ImportStoredEvents') {
        stop.abort('SIGINT');
      }
      return server.fetch(url, init);
    }) as typeof fetch;
    const lines = Array.from({ length: 9 }, (_, index) => ({ id: `o${index}`, type: 'sensor_on', pairKey: 'AUTO' }));
    const options = {
      ...baseOptions(server, [writeNdjson(lines)]),
      username: null,
      token: 'admin-token',
      fetch: stopOnFirstRead,
      signal: stop.signal,
    };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(server.operations.filter((operation) => operation === 'ImportStoredEvents'), 'reads').toHaveLength(1);
    expect(failure.summary.stored).toBe(9);
    expect(failure.summary.correctionsByRule).toBeNull();
    expect(failure.message).toMatch(/^stopped by SIGINT: 9 of 9 events were sent and have a reply\. /);
  });

  it('reports a failure after the stop', async () => {
    const stop = new AbortController();
    const expired = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
    const server = createFakeServer({
      beforeSend: () => {
        stop.abort('SIGINT');
        throw new TypeError('fetch failed', { cause: expired });
      },
    });
    const file = writeNdjson(sensorEvents('P002', 3));
    const messages: string[] = [];
    const options = { ...baseOptions(server, [file]), signal: stop.signal, onMessage: (message: string) => messages.push(message) };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    const reported = messages.filter((message) => message.startsWith(`${file}:1-3: `));
    expect(reported).toHaveLength(1);
    expect(reported[0]).toContain('failed in the TLS handshake (CERT_HAS_EXPIRED)');
  });

  it('names an unreadable file at the stop', async () => {
    const stop = new AbortController();
    const server = createFakeServer();
    const file = join(folder, 'gone.ndjson');
    // The file cannot be read, and the signal comes as the read fails.
    const readLines = async function* (): AsyncGenerator<never> {
      stop.abort('SIGINT');
      throw new Error(`ENOENT: no such file or directory, open '${file}'`);
    };
    const options = { ...baseOptions(server, [file]), readLines, signal: stop.signal };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect((failure as ImportInterruptedError).reason).toBe('SIGINT');
    expect(failure.message).toBe(
      `cannot read ${file}: ENOENT: no such file or directory, open '${file}'; nothing was sent. ` +
        'SIGINT stopped the import at the same time',
    );
    expect(server.operations).toEqual([]);
  });

  it('names a FORBIDDEN setup error at the stop', async () => {
    const stop = new AbortController();
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const options = {
      ...baseOptions(server, [file]),
      fetch: forbidUsersAtStop(server, stop, 'SIGTERM'),
      signal: stop.signal,
    };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect((failure as ImportInterruptedError).reason).toBe('SIGTERM');
    expect(failure.message).toBe(
      'the import stopped: the users request failed (FORBIDDEN): forbidden. SIGTERM stopped the import at the same time',
    );
    expect(server.sends).toBe(0);
  });

  it('counts replies lost after a failure', async () => {
    const stop = new AbortController();
    // The batch of P002 gets no reply. The batch of P124 gets a FORBIDDEN
    // reply, which stops the import on its own, and the signal comes later.
    const server = createFakeServer({ beforeSend: () => new Promise<void>(() => {}) });
    let sends = 0;
    const forbidSecondSend = (async (url: string | URL | Request, init?: RequestInit) => {
      const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
      if (operationName !== 'ImportSendEvents') {
        return server.fetch(url, init);
      }
      sends += 1;
      if (sends === 1) {
        return server.fetch(url, init);
      }
      // The importer handles this reply in microtasks, so the timer fires after it recorded the failure.
      setTimeout(() => stop.abort('SIGINT'), 0);
      const body = { errors: [{ message: 'forbidden', extensions: { code: 'FORBIDDEN' } }], data: null };
      return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    const file = writeNdjson([...sensorEvents('P002', 2), ...sensorEvents('P124', 2)]);
    const options = {
      ...baseOptions(server, [file]),
      batchSize: 2,
      fetch: forbidSecondSend,
      signal: stop.signal,
      replyWaitMs: 1,
    };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(sends).toBe(2);
    expect(failure.message).toBe(
      'the import stopped: the sendEvents request failed (FORBIDDEN): forbidden. SIGINT stopped the import ' +
        'at the same time, and 2 events were sent without a reply before the wait ended, so the server may have stored them',
    );
  });

  it('shows the stop for a retry it skips', async () => {
    const stop = new AbortController();
    const server = createFakeServer();
    // The users request fails with a transient error, which the stop leaves without a retry.
    const unavailableAtStop = (async (url: string | URL | Request, init?: RequestInit) => {
      const { operationName } = JSON.parse(String(init?.body)) as { operationName: string };
      if (operationName !== 'ImportUsers') {
        return server.fetch(url, init);
      }
      stop.abort('SIGINT');
      const body = { errors: [{ message: 'down', extensions: { code: 'SERVICE_UNAVAILABLE' } }], data: null };
      return new Response(JSON.stringify(body), { status: 503, headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    const file = writeNdjson(sensorEvents('P002', 2));
    const options = { ...baseOptions(server, [file]), fetch: unavailableAtStop, signal: stop.signal };
    const failure = await expectFailure(runImport(options));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(failure.summary.retries).toBe(0);
    expect(failure.message).toBe(
      'stopped by SIGINT before any event was sent. Run the same command again to import the files',
    );
  });

  it('retries nothing once stopped', async () => {
    const stop = new AbortController();
    const server = createFakeServer({ unavailableSends: 100, beforeSend: () => stop.abort('SIGINT') });
    const file = writeNdjson(sensorEvents('P002', 2));
    const failure = await expectFailure(runImport({ ...baseOptions(server, [file]), signal: stop.signal }));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(server.sends).toBe(1);
    expect(failure.summary.retries).toBe(0);
  });

  it('stops before sending when stopped early', async () => {
    const stop = new AbortController();
    stop.abort('SIGINT');
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const failure = await expectFailure(runImport({ ...baseOptions(server, [file]), signal: stop.signal }));

    expect(failure).toBeInstanceOf(ImportInterruptedError);
    expect(failure.message).toBe(
      'stopped by SIGINT before any event was sent. Run the same command again to import the files',
    );
    expect(server.operations).toEqual([]);
  });

  it('skips events of a user it cannot create', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      ...sensorEvents('P002', 2),
      ...sensorEvents('bad name', 30),
      ...sensorEvents('other bad', 1),
    ]);
    const messages: string[] = [];
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage: (message) => messages.push(message) });

    expect(summary.notSent).toBe(31);
    expect(summary.rejected).toBe(0);
    expect(summary.eventsSent).toBe(2);
    expect(summary.stored).toBe(2);
    expect(summary.issues).toEqual([
      {
        kind: 'unsentEvent',
        file,
        line: 3,
        message: '30 events of user "bad name" not sent, because the user cannot be created: invalid username "bad name"',
      },
      {
        kind: 'unsentEvent',
        file,
        line: 33,
        message: '1 event of user "other bad" not sent, because the user cannot be created: invalid username "other bad"',
      },
    ]);
    const unsentMessages = messages.filter((message) => message.includes(' not sent'));
    expect(unsentMessages).toEqual([
      `${file}:3: 30 events of user "bad name" not sent, because the user cannot be created: invalid username "bad name"`,
      `${file}:33: 1 event of user "other bad" not sent, because the user cannot be created: invalid username "other bad"`,
    ]);
  });

  it('uses a user created meanwhile elsewhere', async () => {
    const server = createFakeServer({ createdElsewhere: ['P002'] });
    const file = writeNdjson(sensorEvents('P002', 3));
    const messages: string[] = [];
    const summary = await runImport({ ...baseOptions(server, [file]), onMessage: (message) => messages.push(message) });

    expect(summary.notSent).toBe(0);
    expect(summary.stored).toBe(3);
    expect(summary.usersCreated).toEqual([]);
    const p002 = server.users.find((user) => user.username === 'P002');
    expect(server.stored.get(p002?.id ?? '')).toEqual(['P002:1', 'P002:2', 'P002:3']);
    expect(messages).toContain('user "P002" was created by another client meanwhile; sending its events there');
  });

  it('matches usernames without regard to case', async () => {
    const server = createFakeServer();
    const file = writeNdjson([
      ...sensorEvents('Member', 2),
      ...sensorEvents('P002', 2),
      ...sensorEvents('p002', 2),
    ]);
    const summary = await runImport(baseOptions(server, [file]));

    expect(summary.notSent).toBe(0);
    expect(summary.stored).toBe(6);
    expect(summary.usersCreated).toEqual(['P002']);
    expect(server.stored.get(fakeUserId(2))).toEqual(['Member:1', 'Member:2']);
    const p002 = server.users.find((user) => user.username === 'P002');
    expect(server.stored.get(p002?.id ?? '')).toEqual(['P002:1', 'P002:2', 'p002:1', 'p002:2']);
  });

  it.each([
    ['batchSize 0', { batchSize: 0 }, RangeError],
    ['concurrency 65', { concurrency: 65 }, RangeError],
    ['no files', { files: [] }, TypeError],
    ['no credentials', { username: null }, TypeError],
    ['an ftp URL', { url: 'ftp://127.0.0.1' }, TypeError],
    ['a URL with credentials', { url: 'http://bob:UrlS3cret@127.0.0.1:4000' }, TypeError],
  ])('rejects %s', async (_name, overrides, errorType) => {
    const server = createFakeServer();
    const options = { ...baseOptions(server, ['x.ndjson']), ...overrides };
    await expect(runImport(options)).rejects.toThrow(errorType);
    await expect(runImport(options)).rejects.not.toThrow(/UrlS3cret/);
  });
});

class Collector extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

async function runCommand(argv: string[], env: NodeJS.ProcessEnv, server: FakeServer, stopSignal?: AbortSignal) {
  const stdout = new Collector();
  const stderr = new Collector();
  const code = await runImportCommand(argv, {
    stdout,
    stderr,
    stderrIsTTY: false,
    env,
    stopSignal,
    overrides: { fetch: server.fetch, retryDelaysMs: [1] },
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const ADMIN_ENV = { EVENT_MASTER_USERNAME: 'admin', EVENT_MASTER_PASSWORD: 'admin-secret' };

describe('runImportCommand', () => {
  it('prints a summary', async () => {
    const server = createFakeServer();
    const file = writeNdjson([SENSOR, ...sensorEvents('P002', 3)]);
    const result = await runCommand([file], ADMIN_ENV, server);
    expect(result.code).toBe(IMPORT_EXIT.ok);
    expect(result.stdout).toContain('stored:              3\n');
    expect(result.stderr).toContain('events 3/3 (100%)');
    expect(result.stderr + result.stdout).not.toContain('admin-secret');
  });

  it('escapes control characters from the input', async () => {
    const server = createFakeServer();
    const pairType = { kind: 'pairType', input: { name: 'bad\u001b[2Jname', startType: 'a', endType: 'b' } };
    const file = writeNdjson(['x\u001b[31mred', pairType, ...sensorEvents('P002', 1)]);
    // The server has the pair type with other ends, so the summary lists the name as a conflict.
    const serverPolicy = { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' };
    server.pairTypes.push({ ...pairType.input, startType: 'other', parent: null, autoClose: serverPolicy });
    const result = await runCommand([file], ADMIN_ENV, server);
    expect(result.code).toBe(IMPORT_EXIT.ok);
    expect(result.stderr).toContain('"x\\u001b[31mred" is not valid JSON');
    expect(result.stdout).toContain('pair type conflicts: 1 (bad\\u001b[2Jname)');
    expect(result.stderr + result.stdout).not.toContain('\u001b');
  });

  it('prints JSON with --json', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const result = await runCommand(['--json', file], ADMIN_ENV, server);
    const summary = JSON.parse(result.stdout) as ImportSummary;
    expect(summary.stored).toBe(2);
    expect(summary.usersCreated).toEqual(['P002']);
  });

  it('fails --strict on a bad line', async () => {
    const server = createFakeServer();
    const file = writeNdjson(['{', ...sensorEvents('P002', 1)]);
    const lenient = await runCommand([file], ADMIN_ENV, server);
    expect(lenient.code).toBe(IMPORT_EXIT.ok);

    const strict = await runCommand(['--strict', file], ADMIN_ENV, server);
    expect(strict.code).toBe(IMPORT_EXIT.failed);
    expect(strict.stderr).toContain(
      '--strict: 1 bad lines, 0 rejected events, 0 events not sent, 0 pair type conflicts, ' +
        '0 pair types rejected',
    );
  });

  it('exits 1 when no line is a record', async () => {
    const server = createFakeServer();
    const file = writeNdjson(['2009-03-23 10:16:02.214629\tM045\tON', 'null']);
    const result = await runCommand([file], ADMIN_ENV, server);

    expect(result.code).toBe(IMPORT_EXIT.failed);
    expect(result.stderr).toContain('import: all 2 lines read are invalid, so nothing was sent. ');
    expect(result.stdout).toContain('bad lines:           2\n');
  });

  it('exits 1 when no event was stored', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('bad name', 3));
    const result = await runCommand([file], ADMIN_ENV, server);

    expect(result.code).toBe(IMPORT_EXIT.failed);
    expect(result.stderr).toContain(
      'import: none of the 3 events read was stored: 0 rejected by the server, 3 not sent because their user could not be created\n',
    );
  });

  it('exits 0 when some events were stored', async () => {
    const server = createFakeServer();
    const file = writeNdjson([...sensorEvents('P002', 1), ...sensorEvents('bad name', 3)]);
    const result = await runCommand([file], ADMIN_ENV, server);

    expect(result.code).toBe(IMPORT_EXIT.ok);
    expect(result.stderr).not.toContain('none of the');
  });

  it('reports a summary it cannot write', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 1));
    const stdout = new Writable({
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const stderr = new Collector();

    const code = await runImportCommand([file], {
      stdout,
      stderr,
      stderrIsTTY: false,
      env: ADMIN_ENV,
      overrides: { fetch: server.fetch, retryDelaysMs: [1] },
    });

    expect(code).toBe(IMPORT_EXIT.ok);
    expect(stderr.text).toContain('import: cannot write the summary: write EPIPE');
  });

  it('notes no stop while printing a failure', async () => {
    const stop = new AbortController();
    const server = createFakeServer({ unavailableSends: 100 });
    const file = writeNdjson(sensorEvents('P002', 1));
    // Ctrl-C while the summary of a failed import is written, once nothing is in flight.
    const stdout = new Writable({
      write(_chunk, _encoding, callback) {
        stop.abort('SIGINT');
        callback();
      },
    });
    const stderr = new Collector();
    const code = await runImportCommand([file], {
      stdout,
      stderr,
      stderrIsTTY: false,
      env: ADMIN_ENV,
      stopSignal: stop.signal,
      overrides: { fetch: server.fetch, retryDelaysMs: [1] },
    });

    expect(stop.signal.aborted).toBe(true);
    expect(code).toBe(IMPORT_EXIT.failed);
    expect(stderr.text).toContain('import: the server stayed unavailable');
    expect(stderr.text).not.toContain('SIGINT received');
  });

  it('exits 1 when the import stops', async () => {
    const server = createFakeServer({ unavailableSends: 100 });
    const file = writeNdjson(sensorEvents('P002', 1));
    const result = await runCommand([file], ADMIN_ENV, server);
    expect(result.code).toBe(IMPORT_EXIT.failed);
    expect(result.stderr).toContain('import: the server stayed unavailable');
    expect(result.stdout).toContain('users created:       1 (P002)');
  });

  it.each([
    ['SIGINT', 130, 'Press Ctrl-C again'],
    ['SIGTERM', 143, 'Send SIGINT or SIGTERM again'],
  ])('exits after %s with the summary', async (signal, exitCode, again) => {
    const stop = new AbortController();
    const server = createFakeServer({ beforeSend: () => stop.abort(signal) });
    const file = writeNdjson(sensorEvents('P002', 3));
    const result = await runCommand(['--batch-size', '2', file], ADMIN_ENV, server, stop.signal);

    expect(result.code).toBe(exitCode);
    expect(result.stderr).toContain(
      `import: ${signal} received: sending no new batches and waiting up to 10 s for the replies of batches in flight. `,
    );
    // A second signal sooner than REPEATED_SIGNAL_MS is ignored, so the advice names that wait.
    expect(result.stderr).toContain(`${again}, 1 s or more from now, to exit at once\n`);
    expect(result.stderr).toContain(`import: stopped by ${signal}: 2 of 3 events were sent and have a reply. `);
    expect(result.stdout).toContain('stored:              2\n');
  });

  it('exits 130 naming an error at SIGINT', async () => {
    const stop = new AbortController();
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 2));
    const stdout = new Collector();
    const stderr = new Collector();
    const code = await runImportCommand([file], {
      stdout,
      stderr,
      stderrIsTTY: false,
      env: ADMIN_ENV,
      stopSignal: stop.signal,
      overrides: { fetch: forbidUsersAtStop(server, stop, 'SIGINT'), retryDelaysMs: [1] },
    });

    expect(code).toBe(130);
    expect(stderr.text).toContain(
      'import: the import stopped: the users request failed (FORBIDDEN): forbidden. SIGINT stopped the import at the same time\n',
    );
    expect(stdout.text).toContain('events read:');
  });

  it('exits 2 for credentials in --url', async () => {
    // Real fetch against a port nothing listens on: without the check, the
    // import would retry and exit 1.
    const file = writeNdjson(sensorEvents('P002', 1));
    const stdout = new Collector();
    const stderr = new Collector();
    const code = await runImportCommand(['--url', 'http://bob:UrlS3cret@127.0.0.1:9', file], {
      stdout,
      stderr,
      stderrIsTTY: false,
      env: ADMIN_ENV,
      overrides: { retryDelaysMs: [1] },
    });

    expect(code).toBe(IMPORT_EXIT.usage);
    expect(stderr.text).toContain('import: invalid --url "http://bob:***@127.0.0.1:9/"');
    expect(stderr.text).toContain('set EVENT_MASTER_USERNAME and EVENT_MASTER_PASSWORD, or EVENT_MASTER_TOKEN');
    expect(stderr.text + stdout.text).not.toContain('UrlS3cret');
  });

  it('exits 2 for a token with a line break', async () => {
    const server = createFakeServer();
    const file = writeNdjson(sensorEvents('P002', 1));
    const result = await runCommand([file], { EVENT_MASTER_TOKEN: 'eyJhbGci\nTokS3cret' }, server);
    expect(result.code).toBe(IMPORT_EXIT.usage);
    expect(result.stderr).toContain('invalid EVENT_MASTER_TOKEN: character 9 is a line break (U+000A)');
    expect(result.stderr + result.stdout).not.toContain('TokS3cret');
    expect(server.operations).toEqual([]);
  });

  it('exits 2 without credentials', async () => {
    const server = createFakeServer();
    const result = await runCommand(['x.ndjson'], {}, server);
    expect(result.code).toBe(IMPORT_EXIT.usage);
    expect(result.stderr).toContain('missing credentials: set EVENT_MASTER_TOKEN');
    expect(server.operations).toEqual([]);
  });
});

describe('listenForStopSignals', () => {
  it('aborts first, then exits', () => {
    const target = new EventEmitter();
    const exitCodes: number[] = [];
    const stderr = new Collector();
    let clock = 5000;
    const signal = listenForStopSignals(
      { on: (event, listener) => target.on(event, listener), exit: (code) => exitCodes.push(code) },
      stderr,
      () => clock,
    );

    target.emit('SIGTERM', 'SIGTERM');
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('SIGTERM');
    expect(exitCodes).toEqual([]);

    // The same Ctrl-C, forwarded by npm or relayed by tsx.
    clock += REPEATED_SIGNAL_MS - 1;
    target.emit('SIGINT', 'SIGINT');
    expect(exitCodes).toEqual([]);
    expect(stderr.text).toBe('');

    clock += 1;
    target.emit('SIGINT', 'SIGINT');
    expect(exitCodes).toEqual([130]);
    expect(stderr.text).toBe(
      'import: SIGINT received again; exiting without waiting for replies. Run the same command again to continue the import\n',
    );
  });
});

describe('parseImportArgs', () => {
  it.each([['--help'], ['-h']])('returns help for %s', (option) => {
    expect(parseImportArgs([option])).toBe('help');
  });

  it('applies defaults', () => {
    expect(parseImportArgs(['a.ndjson'])).toEqual({
      url: 'http://127.0.0.1:4000',
      batchSize: 500,
      concurrency: 4,
      json: false,
      strict: false,
      files: ['a.ndjson'],
    });
  });

  it.each([
    ['no files', [], /missing FILE/],
    ['a zero batch size', ['--batch-size', '0', 'a'], /invalid --batch-size "0": .* 1 to 10000/],
    ['a fractional concurrency', ['--concurrency', '1.5', 'a'], /invalid --concurrency "1.5"/],
    ['a bad URL', ['--url', 'localhost:4000', 'a'], /invalid --url "localhost:4000"/],
    ['a user name in --url', ['--url', 'http://bob@127.0.0.1:4000', 'a'], /contains a user name or password/],
    [
      'an unparsable URL with a password',
      ['--url', 'http://bob:UrlS3cret@127.0.0.1:99999', 'a'],
      /^invalid --url "http:\/\/bob:\*\*\*@127\.0\.0\.1:99999": expected a URL/,
    ],
    ['an unknown option', ['--dry-run', 'a'], /Unknown option '--dry-run'/],
  ])('rejects %s', (_name, argv, message) => {
    expect(() => parseImportArgs(argv)).toThrow(message);
  });
});

describe('readCredentials', () => {
  it('prefers the token', () => {
    const credentials = readCredentials({ EVENT_MASTER_TOKEN: 't', ...ADMIN_ENV });
    expect(credentials).toEqual({ token: 't', username: null, password: null });
  });

  it('reads a username and password', () => {
    const credentials = readCredentials(ADMIN_ENV);
    expect(credentials).toEqual({ token: null, username: 'admin', password: 'admin-secret' });
  });

  it('trims white space around the token', () => {
    const credentials = readCredentials({ EVENT_MASTER_TOKEN: ' t.o-k_en\r\n' });
    expect(credentials.token).toBe('t.o-k_en');
  });

  it.each([
    ['a space', 'abc def', /character 4 is a space \(U\+0020\)/],
    ['a non-ASCII letter', 'tök', /character 2 is a character \(U\+00F6\)/],
  ])('rejects a token with %s', (_name, token, message) => {
    expect(() => readCredentials({ EVENT_MASTER_TOKEN: token })).toThrow(message);
    expect(() => readCredentials({ EVENT_MASTER_TOKEN: token })).not.toThrow(token);
  });

  it('rejects a username alone', () => {
    expect(() => readCredentials({ EVENT_MASTER_USERNAME: 'admin' })).toThrow(/missing credentials/);
  });
});
