/**
 * The service through a real Apollo Client 4 (`HttpLink` over the global
 * `fetch`, `InMemoryCache`), used as a client application would use it. The
 * cases log in, send a batch, and read a nested report grouped by user, with
 * DAY buckets in Europe/Prague across the switch to summer time.
 *
 * Europe/Prague moves from UTC+1 to UTC+2 at 2026-03-29T01:00Z, so its local
 * day 2026-03-29 lasts 23 hours: [2026-03-28T23:00Z, 2026-03-29T22:00Z). The
 * cases run in order, and each builds on the data of the ones before it.
 */
import { ApolloClient, CombinedGraphQLErrors, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { ApolloLink } from '@apollo/client/core';
import { SetContextLink } from '@apollo/client/link/context';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ADMIN, ManualClock, startTestServer, type TestServer } from '../support/app.js';

const LOGIN = gql`
  mutation Login($username: String!, $password: String!) {
    login(username: $username, password: $password) {
      token
      expiresAt
      user {
        id
        username
        role
      }
    }
  }
`;

const CREATE_USER = gql`
  mutation CreateUser($input: CreateUserInput!) {
    createUser(input: $input) {
      id
      username
      role
    }
  }
`;

const SEND_EVENTS = gql`
  mutation SendEvents($events: [EventInput!]!) {
    sendEvents(events: $events) {
      storedCount
      duplicateCount
      results {
        duplicate
        event {
          id
          type
          occurredAt
        }
        closedSegments {
          id
          pairType
          start
          end
          endReason
        }
      }
    }
  }
`;

const REPORT = gql`
  query NestedReport($expression: SetExpression!, $window: WindowInput!, $bucket: BucketInput) {
    report(expression: $expression, window: $window, groupBy: USER, bucket: $bucket) {
      count
      totalSeconds
      truncated
      intervals {
        start
        end
        seconds
      }
      buckets {
        start
        end
        seconds
      }
      groups {
        user {
          id
          username
        }
        count
        totalSeconds
        buckets {
          start
          end
          seconds
        }
      }
    }
  }
`;

interface LoginData {
  login: { token: string; expiresAt: string; user: { id: string; username: string; role: string } };
}

interface SendEventsData {
  sendEvents: {
    storedCount: number;
    duplicateCount: number;
    results: Array<{
      duplicate: boolean;
      event: { id: string; type: string; occurredAt: string };
      closedSegments: Array<{ id: string; pairType: string; start: string; end: string; endReason: string }>;
    }>;
  };
}

interface ReportBucket {
  start: string;
  end: string;
  seconds: number;
}

interface ReportData {
  report: {
    count: number;
    totalSeconds: number;
    truncated: boolean;
    intervals: Array<{ start: string; end: string; seconds: number }>;
    buckets: ReportBucket[];
    groups: Array<{
      user: { id: string; username: string };
      count: number;
      totalSeconds: number;
      buckets: ReportBucket[];
    }>;
  };
}

/** Local days 2026-03-28, 03-29 (23 h) and 03-30 in Europe/Prague. */
const WINDOW = { start: '2026-03-27T23:00:00Z', end: '2026-03-30T22:00:00Z' };
const DAY_STARTS = ['2026-03-27T23:00:00.000Z', '2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z'];
const DAY_ENDS = ['2026-03-28T23:00:00.000Z', '2026-03-29T22:00:00.000Z', '2026-03-30T22:00:00.000Z'];

/** A literal hour, 2026-03-29 14:00 to 15:00 local summer time. */
const LITERAL_HOUR = { start: '2026-03-29T12:00:00Z', end: '2026-03-29T13:00:00Z' };

/**
 * Session time not spent in a task, plus the literal hour wherever no
 * session runs: union(difference(session, task), intersect(complement(session), hour)).
 */
const EXPRESSION = {
  union: [
    {
      difference: {
        from: { segments: { pairTypes: ['session'] } },
        subtract: { segments: { pairTypes: ['task'] } },
      },
    },
    {
      intersect: [{ complement: { segments: { pairTypes: ['session'] } } }, { intervals: [LITERAL_HOUR] }],
    },
  ],
};

/** Expected seconds per local day, in the order of `DAY_STARTS`. */
function days(first: number, second: number, third: number): ReportBucket[] {
  return [first, second, third].map((seconds, index) => ({
    start: DAY_STARTS[index]!,
    end: DAY_ENDS[index]!,
    seconds,
  }));
}

/** Drops the `__typename` that Apollo Client adds to every object it returns. */
function spans(list: readonly ReportBucket[]): ReportBucket[] {
  return list.map(({ start, end, seconds }) => ({ start, end, seconds }));
}

/** A client whose requests carry the bearer token that `token()` returns at request time. */
function createClient(url: string, token: () => string | null): ApolloClient {
  const auth = new SetContextLink((previous) => {
    const value = token();
    if (value === null) {
      return {};
    }
    return { headers: { ...previous.headers, authorization: `Bearer ${value}` } };
  });
  const http = new HttpLink({ uri: `${url}/graphql`, fetch });
  return new ApolloClient({ link: ApolloLink.from([auth, http]), cache: new InMemoryCache() });
}

describe('Apollo Client against the server', () => {
  let server: TestServer;
  let adminToken: string | null = null;
  let admin: ApolloClient;
  const members = new Map<string, { id: string; token: string | null; client: ApolloClient }>();

  async function logIn(client: ApolloClient, username: string, password: string): Promise<LoginData['login']> {
    const result = await client.mutate<LoginData>({ mutation: LOGIN, variables: { username, password } });
    return result.data!.login;
  }

  async function send(username: string, events: unknown[]): Promise<SendEventsData['sendEvents']> {
    const member = members.get(username)!;
    const result = await member.client.mutate<SendEventsData>({ mutation: SEND_EVENTS, variables: { events } });
    return result.data!.sendEvents;
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(Date.parse('2026-04-01T00:00:00Z')),
      sweeper: false,
      // Longer than any pause below, so every pair ends at its end event.
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    admin = createClient(server.url, () => adminToken);
  });

  afterAll(async () => {
    admin?.stop();
    for (const member of members.values()) {
      member.client.stop();
    }
    await server?.close();
  });

  it('login returns a token', async () => {
    const login = await logIn(admin, ADMIN.username, ADMIN.password);
    adminToken = login.token;
    expect(login.token.split('.')).toHaveLength(3);
    expect(login.user).toMatchObject({ username: ADMIN.username, role: 'ADMIN' });
    expect(Number.isNaN(Date.parse(login.expiresAt))).toBe(false);
  });

  it('login rejects a wrong password', async () => {
    const anonymous = createClient(server.url, () => null);
    const attempt = logIn(anonymous, ADMIN.username, 'not-the-password');
    await expect(attempt).rejects.toBeInstanceOf(CombinedGraphQLErrors);
    const error = (await attempt.catch((caught: unknown) => caught)) as CombinedGraphQLErrors;
    expect(error.errors[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    anonymous.stop();
  });

  it('createUser and login of members', async () => {
    for (const username of ['ana', 'bob']) {
      const password = `${username}-password-1`;
      const created = await admin.mutate<{ createUser: { id: string; username: string; role: string } }>({
        mutation: CREATE_USER,
        variables: { input: { username, password, role: 'MEMBER' } },
      });
      expect(created.data?.createUser).toMatchObject({ username, role: 'MEMBER' });

      const member = { id: created.data!.createUser.id, token: null as string | null, client: admin };
      member.client = createClient(server.url, () => member.token);
      members.set(username, member);
      const login = await logIn(member.client, username, password);
      member.token = login.token;
      expect(login.user.id).toBe(member.id);
    }
  });

  it('sendEvents stores a batch', async () => {
    // ana: session 23:00 CET on 03-28 to 04:00 CEST on 03-29, task inside it.
    const ana = await send('ana', [
      { id: 'ana-1', type: 'session_started', occurredAt: '2026-03-28T22:00:00Z' },
      { id: 'ana-2', type: 'task_started', occurredAt: '2026-03-29T00:00:00+00:00' },
      { id: 'ana-3', type: 'task_ended', occurredAt: '2026-03-29T03:30:00+02:00' },
      { id: 'ana-4', type: 'session_ended', occurredAt: '2026-03-29T02:00:00Z' },
    ]);
    expect(ana.storedCount).toBe(4);
    expect(ana.duplicateCount).toBe(0);
    expect(ana.results.map((result) => result.event.occurredAt)).toEqual([
      '2026-03-28T22:00:00.000Z',
      '2026-03-29T00:00:00.000Z',
      '2026-03-29T01:30:00.000Z',
      '2026-03-29T02:00:00.000Z',
    ]);
    expect(ana.results[2]?.closedSegments).toEqual([
      expect.objectContaining({ pairType: 'task', start: '2026-03-29T00:00:00.000Z', end: '2026-03-29T01:30:00.000Z', endReason: 'CLIENT' }),
    ]);
    expect(ana.results[3]?.closedSegments).toEqual([
      expect.objectContaining({ pairType: 'session', start: '2026-03-28T22:00:00.000Z', end: '2026-03-29T02:00:00.000Z', endReason: 'CLIENT' }),
    ]);

    // bob: session 22:00 CEST on 03-29 to 01:00 CEST on 03-30, task inside it.
    const bob = await send('bob', [
      { id: 'bob-1', type: 'session_started', occurredAt: '2026-03-29T20:00:00Z' },
      { id: 'bob-2', type: 'task_started', occurredAt: '2026-03-29T21:00:00Z' },
      { id: 'bob-3', type: 'task_ended', occurredAt: '2026-03-29T22:30:00Z' },
      { id: 'bob-4', type: 'session_ended', occurredAt: '2026-03-29T23:00:00Z' },
    ]);
    expect(bob.storedCount).toBe(4);

    const again = await send('bob', [{ id: 'bob-4', type: 'session_ended', occurredAt: '2026-03-29T23:00:00Z' }]);
    expect(again.storedCount).toBe(0);
    expect(again.duplicateCount).toBe(1);
    expect(again.results[0]?.duplicate).toBe(true);
  });

  it('nested report with DST buckets', async () => {
    const result = await admin.query<ReportData>({
      query: REPORT,
      variables: { expression: EXPRESSION, window: WINDOW, bucket: { unit: 'DAY', timeZone: 'Europe/Prague' } },
      fetchPolicy: 'network-only',
    });
    const report = result.data!.report;

    // All users together: ana's idle session time [22:00, 00:00) and
    // [01:30, 02:00), bob's [20:00, 21:00) and [22:30, 23:00), and the
    // literal hour, which no session covers.
    expect(report.truncated).toBe(false);
    expect(spans(report.intervals)).toEqual([
      { start: '2026-03-28T22:00:00.000Z', end: '2026-03-29T00:00:00.000Z', seconds: 7200 },
      { start: '2026-03-29T01:30:00.000Z', end: '2026-03-29T02:00:00.000Z', seconds: 1800 },
      { start: '2026-03-29T12:00:00.000Z', end: '2026-03-29T13:00:00.000Z', seconds: 3600 },
      { start: '2026-03-29T20:00:00.000Z', end: '2026-03-29T21:00:00.000Z', seconds: 3600 },
      { start: '2026-03-29T22:30:00.000Z', end: '2026-03-29T23:00:00.000Z', seconds: 1800 },
    ]);
    expect(report.count).toBe(5);
    expect(report.totalSeconds).toBe(18_000);
    expect(spans(report.buckets)).toEqual(days(3600, 12_600, 1800));

    // Groups come in username order. The admin has no sessions, so only the
    // literal hour remains for it.
    expect(report.groups.map((group) => group.user.username)).toEqual(['admin', 'ana', 'bob']);
    const [adminGroup, anaGroup, bobGroup] = report.groups;

    expect(adminGroup?.totalSeconds).toBe(3600);
    expect(spans(adminGroup!.buckets)).toEqual(days(0, 3600, 0));

    expect(anaGroup?.user.id).toBe(members.get('ana')!.id);
    expect(anaGroup?.count).toBe(3);
    expect(anaGroup?.totalSeconds).toBe(12_600);
    expect(spans(anaGroup!.buckets)).toEqual(days(3600, 9000, 0));

    expect(bobGroup?.user.id).toBe(members.get('bob')!.id);
    expect(bobGroup?.count).toBe(3);
    expect(bobGroup?.totalSeconds).toBe(9000);
    expect(spans(bobGroup!.buckets)).toEqual(days(0, 7200, 1800));

    for (const group of report.groups) {
      const bucketSum = group.buckets.reduce((sum, bucket) => sum + bucket.seconds, 0);
      expect(bucketSum, `bucket sum of ${group.user.username}`).toBe(group.totalSeconds);
    }
  });

  it('cache merges fields of one report', async () => {
    const variables = { expression: EXPRESSION, window: WINDOW };
    const COUNT = gql`
      query ReportCount($expression: SetExpression!, $window: WindowInput!) {
        report(expression: $expression, window: $window) { id count }
      }
    `;
    const TOTAL = gql`
      query ReportTotal($expression: SetExpression!, $window: WindowInput!) {
        report(expression: $expression, window: $window) { id totalSeconds }
      }
    `;
    const first = await admin.query<{ report: { id: string; count: number } }>({ query: COUNT, variables, fetchPolicy: 'network-only' });
    const second = await admin.query<{ report: { id: string; totalSeconds: number } }>({ query: TOTAL, variables, fetchPolicy: 'network-only' });

    expect(second.data?.report.id).toBe(first.data?.report.id);
    // Without an id the second reply replaced the first one's object, and its count was gone from the cache.
    const cached = admin.readQuery<{ report: { count: number } }>({ query: COUNT, variables });
    expect(cached?.report.count).toBe(first.data?.report.count);
    expect(admin.cache.identify({ __typename: 'Report', id: first.data!.report.id })).toBe(`Report:${first.data!.report.id}`);
  });

  it('pair types and preferences have ids', async () => {
    const PAIR_TYPES = gql`
      query PairTypesAndPreferences($userId: ID) {
        pairTypes { id name }
        autoClosePreferences(userId: $userId) { id userId pairType timeoutSeconds }
      }
    `;
    const ana = members.get('ana')!;
    await admin.mutate({
      mutation: gql`
        mutation Prefer($input: SetAutoClosePreferenceInput!) {
          setAutoClosePreference(input: $input) { id userId pairType timeoutSeconds }
        }
      `,
      variables: { input: { userId: ana.id, pairType: 'task', timeoutSeconds: 7 * 86_400, endAt: 'DEADLINE' } },
    });
    const result = await admin.query<{
      pairTypes: Array<{ id: string; name: string }>;
      autoClosePreferences: Array<{ id: string; userId: string; pairType: string }>;
    }>({ query: PAIR_TYPES, variables: { userId: ana.id }, fetchPolicy: 'network-only' });

    expect(result.data?.pairTypes.map((type) => type.id)).toEqual(result.data?.pairTypes.map((type) => type.name));
    expect(result.data?.autoClosePreferences).toEqual([
      expect.objectContaining({ id: `${ana.id}:task`, userId: ana.id, pairType: 'task' }),
    ]);
    const normalised = admin.cache.extract() as Record<string, unknown>;
    expect(normalised[`AutoClosePreference:${ana.id}:task`]).toBeDefined();
  });

  it('member cannot read other preferences', async () => {
    const ana = members.get('ana')!;
    const bob = members.get('bob')!;
    const result = await ana.client
      .query({ query: gql`query Others($userId: ID) { autoClosePreferences(userId: $userId) { id } }`, variables: { userId: bob.id } })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(CombinedGraphQLErrors.is(result)).toBe(true);
    expect((result as CombinedGraphQLErrors).errors[0]?.extensions?.code).toBe('FORBIDDEN');
  });

  it('member report covers only itself', async () => {
    const ana = members.get('ana')!;
    const result = await ana.client.query<ReportData>({
      query: REPORT,
      variables: { expression: EXPRESSION, window: WINDOW, bucket: { unit: 'DAY', timeZone: 'Europe/Prague' } },
      fetchPolicy: 'network-only',
    });
    const report = result.data!.report;
    expect(report.groups.map((group) => group.user.username)).toEqual(['ana']);
    expect(report.totalSeconds).toBe(12_600);
    expect(spans(report.buckets)).toEqual(days(3600, 9000, 0));
  });
});
