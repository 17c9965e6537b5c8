/**
 * The normalised cache of a dashboard built with Apollo Client 4 and the
 * `InMemoryCache` set-up that docs/api.md gives. Reports that differ in one
 * argument stay apart, and a refetch after `sendEvents` updates a watched
 * query. `events` pages merge through `fetchMore` in both directions.
 *
 * Europe/Prague moves from UTC+1 to UTC+2 at 2026-03-29T01:00Z, and
 * America/New_York moved from UTC-5 to UTC-4 on 2026-03-08, so the window
 * below covers local days of 24 and 23 hours in Prague and days of 24 hours
 * in New York.
 */
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { ApolloLink } from '@apollo/client/core';
import { SetContextLink } from '@apollo/client/link/context';
import { relayStylePagination } from '@apollo/client/utilities';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

/** Local days 2026-03-28, 03-29 (23 h) and 03-30 in Europe/Prague. */
const WINDOW = { start: '2026-03-27T23:00:00Z', end: '2026-03-30T22:00:00Z' };
/** The same window, one day later. */
const LATER_WINDOW = { start: '2026-03-28T23:00:00Z', end: '2026-03-31T22:00:00Z' };

const DASHBOARD = gql`
  fragment Totals on Report {
    id
    count
    totalSeconds
    window {
      start
    }
    buckets {
      start
      end
      seconds
    }
    groups {
      id
      user {
        id
        username
      }
      totalSeconds
    }
  }

  query Dashboard($window: WindowInput!, $laterWindow: WindowInput!, $expression: SetExpression!) {
    prague: report(window: $window, expression: $expression, groupBy: USER, bucket: { unit: DAY, timeZone: "Europe/Prague" }) {
      ...Totals
    }
    newYork: report(window: $window, expression: $expression, groupBy: USER, bucket: { unit: DAY, timeZone: "America/New_York" }) {
      ...Totals
    }
    later: report(window: $laterWindow, expression: $expression, groupBy: USER, bucket: { unit: DAY, timeZone: "Europe/Prague" }) {
      ...Totals
    }
  }
`;

const WINDOW_END = gql`
  query WindowEnd($window: WindowInput!, $expression: SetExpression!) {
    prague: report(window: $window, expression: $expression, groupBy: USER, bucket: { unit: DAY, timeZone: "Europe/Prague" }) {
      id
      window {
        end
      }
    }
  }
`;

const EVENTS = gql`
  query Events($filter: EventFilter, $first: Int, $after: String, $last: Int, $before: String) {
    events(filter: $filter, first: $first, after: $after, last: $last, before: $before) {
      edges {
        cursor
        node {
          id
          type
          occurredAt
        }
      }
      pageInfo {
        hasNextPage
        hasPreviousPage
        startCursor
        endCursor
      }
    }
  }
`;

interface ReportTotals {
  id: string;
  count: number;
  totalSeconds: number;
  window: { start: string };
  buckets: Array<{ start: string; end: string; seconds: number }>;
  groups: Array<{ id: string; user: { id: string; username: string }; totalSeconds: number }>;
}

interface DashboardData {
  prague: ReportTotals;
  newYork: ReportTotals;
  later: ReportTotals;
}

interface EventsData {
  events: {
    edges: Array<{ cursor: string; node: { id: string; type: string; occurredAt: string } }>;
    pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
  };
}

/** Creates the cache that docs/api.md sets up. */
function createCache(): InMemoryCache {
  return new InMemoryCache({
    typePolicies: {
      Query: {
        fields: {
          events: relayStylePagination(['filter', 'window']),
          segments: relayStylePagination(['filter', 'window']),
        },
      },
      Window: { merge: true },
      AutoClosePolicy: { merge: true },
    },
  });
}

function createClient(url: string, token: string): ApolloClient {
  const auth = new SetContextLink((previous) => ({ headers: { ...previous.headers, authorization: `Bearer ${token}` } }));
  return new ApolloClient({ link: ApolloLink.from([auth, new HttpLink({ uri: `${url}/graphql`, fetch })]), cache: createCache() });
}

/** Heartbeats one minute apart, the first `first` minutes after 2026-03-30T00:00Z. */
function heartbeats(first: number, count: number): Array<{ type: string; occurredAt: string }> {
  return Array.from({ length: count }, (_, index) => ({
    type: 'heartbeat',
    occurredAt: new Date(Date.parse('2026-03-30T00:00:00Z') + (first + index) * 60_000).toISOString(),
  }));
}

describe('Apollo Client cache', () => {
  let server: TestServer;
  let ana: { id: string; token: string };
  let admin: ApolloClient;

  async function send(token: string, events: unknown[]): Promise<void> {
    const reply = await server.gql('mutation Send($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }', { events }, token);
    expect(reply.errors).toBeUndefined();
  }

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(Date.parse('2026-04-01T00:00:00Z')),
      sweeper: false,
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    ana = await server.createUser('ana');
    admin = createClient(server.url, await server.adminToken());
    // A session from 23:00 Prague time on 03-28 to 04:00 summer time on 03-29.
    await send(ana.token, [
      { type: 'session_started', occurredAt: '2026-03-28T22:00:00Z' },
      { type: 'session_ended', occurredAt: '2026-03-29T02:00:00Z' },
    ]);
  });

  afterAll(async () => {
    admin?.stop();
    await server?.close();
  });

  const variables = { window: WINDOW, laterWindow: LATER_WINDOW, expression: { segments: { pairTypes: ['session'] } } };

  it('aliased reports stay apart', async () => {
    const result = await admin.query<DashboardData>({ query: DASHBOARD, variables, fetchPolicy: 'network-only' });
    const { prague, newYork, later } = result.data!;

    expect(new Set([prague.id, newYork.id, later.id]).size).toBe(3);
    expect(prague.buckets.map((bucket) => bucket.seconds)).toEqual([3600, 10_800, 0]);
    expect(prague.buckets[1]?.end).toBe('2026-03-29T22:00:00.000Z');
    expect(newYork.buckets.map((bucket) => bucket.seconds)).toEqual([0, 14_400, 0, 0]);
    expect(later.window.start).toBe('2026-03-28T23:00:00.000Z');
    expect(later.totalSeconds).toBe(10_800);

    const anaGroups = [prague, newYork, later].map((report) => report.groups.find((group) => group.user.username === 'ana')!);
    expect(new Set(anaGroups.map((group) => group.id)).size).toBe(3);
    expect(anaGroups.map((group) => group.totalSeconds)).toEqual([14_400, 14_400, 10_800]);
  });

  it('window fields merge', async () => {
    await admin.query({ query: WINDOW_END, variables: { window: WINDOW, expression: variables.expression }, fetchPolicy: 'network-only' });
    const cached = admin.readQuery<DashboardData>({ query: DASHBOARD, variables });

    expect(cached?.prague.window.start).toBe('2026-03-27T23:00:00.000Z');
  });

  it('refetch after sendEvents updates watch', async () => {
    const watched = admin.watchQuery<DashboardData>({ query: DASHBOARD, variables });
    const totals: number[] = [];
    const subscription = watched.subscribe((result) => {
      const total = result.data?.prague?.totalSeconds;
      if (total !== undefined) {
        totals.push(total);
      }
    });
    await watched.refetch();

    // A second session on 03-30, 10:00 to 11:00 Prague time.
    await send(ana.token, [
      { type: 'session_started', occurredAt: '2026-03-30T08:00:00Z' },
      { type: 'session_ended', occurredAt: '2026-03-30T09:00:00Z' },
    ]);
    await admin.refetchQueries({ include: [DASHBOARD] });
    subscription.unsubscribe();

    expect(totals.at(0)).toBe(14_400);
    expect(totals.at(-1)).toBe(18_000);
  });

  it('fetchMore pages events forward', async () => {
    await send(ana.token, heartbeats(0, 7));
    const filter = { users: [ana.id], types: ['heartbeat'] };
    const query = { query: EVENTS, variables: { filter, first: 3 } };
    const watched = admin.watchQuery<EventsData>(query);
    const subscription = watched.subscribe(() => {});
    let page = (await watched.refetch()).data!.events;

    await watched.fetchMore({ variables: { after: page.pageInfo.endCursor } });
    page = admin.readQuery<EventsData>(query)!.events;
    // Stored between two pages: one after the cursor, one before it.
    await send(ana.token, [...heartbeats(10, 1), ...heartbeats(-1, 1)]);
    await watched.fetchMore({ variables: { after: page.pageInfo.endCursor } });
    page = admin.readQuery<EventsData>(query)!.events;
    subscription.unsubscribe();

    const minutes = page.edges.map((edge) => new Date(edge.node.occurredAt).getUTCMinutes());
    expect(minutes).toEqual([0, 1, 2, 3, 4, 5, 6, 10]);
    expect(new Set(page.edges.map((edge) => edge.node.id)).size).toBe(8);
    expect(page.pageInfo.hasNextPage).toBe(false);
  });

  it('fetchMore pages events backward', async () => {
    const filter = { users: [ana.id], types: ['heartbeat'] };
    const query = { query: EVENTS, variables: { filter, last: 4 } };
    const watched = admin.watchQuery<EventsData>(query);
    const subscription = watched.subscribe(() => {});
    let page = (await watched.refetch()).data!.events;

    // Nine heartbeats in pages of four take three pages.
    for (let fetched = 1; fetched < 3; fetched += 1) {
      await watched.fetchMore({ variables: { before: page.pageInfo.startCursor } });
      page = admin.readQuery<EventsData>(query)!.events;
    }
    subscription.unsubscribe();

    const times = page.edges.map((edge) => edge.node.occurredAt);
    expect(times).toEqual([...times].sort());
    expect(times).toHaveLength(9);
    expect(times[0]).toBe('2026-03-29T23:59:00.000Z');
    expect(page.pageInfo.hasPreviousPage).toBe(false);
  });
});
