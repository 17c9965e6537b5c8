/**
 * Calendar buckets through the API: local boundaries per date in IANA zones
 * with daylight-saving changes and non-hour offsets, intervals split at
 * boundaries, and bucket totals that add up to the report total. Expected
 * instants are written out by hand from the zones' published rules.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!, $bucket: BucketInput, $groupBy: GroupBy) {
  report(expression: $expression, window: $window, bucket: $bucket, groupBy: $groupBy) {
    count
    totalSeconds
    buckets { start end seconds }
    groups { user { username } totalSeconds buckets { start end seconds } }
  }
}`;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

type Unit = 'HOUR' | 'DAY' | 'WEEK' | 'MONTH';

interface Bucket {
  start: string;
  end: string;
  seconds: number;
}

interface Account {
  id: string;
  token: string;
}

/** A bucket as the API returns it, from UTC instants without milliseconds. */
function bucket(start: string, end: string, seconds: number): Bucket {
  return { start: start.replace('Z', '.000Z'), end: end.replace('Z', '.000Z'), seconds };
}

function sumOf(buckets: readonly Bucket[]): number {
  return buckets.reduce((sum, item) => sum + item.seconds, 0);
}

/** The whole window, as the complement of the empty set. */
const WHOLE_WINDOW = { complement: { intervals: [] } };

describe('report buckets over HTTP', () => {
  let server: TestServer;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(Date.parse('2026-04-01T00:00:00Z')),
      sweeper: false,
      // Long enough that no session here is auto-closed before its end event.
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    adminToken = await server.adminToken();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function bucketsOf(
    expression: Record<string, unknown>,
    window: { start: string; end: string },
    unit: Unit,
    timeZone: string,
  ): Promise<Bucket[]> {
    const result = await server.gql(REPORT, { expression, window, bucket: { unit, timeZone } }, adminToken);
    expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();

    const { buckets, totalSeconds } = result.data?.report as { buckets: Bucket[]; totalSeconds: number };
    expect(sumOf(buckets)).toBe(totalSeconds);
    return buckets;
  }

  /** Creates a member and stores one closed session per pair of instants. */
  async function memberWithSessions(username: string, sessions: Array<[string, string]>): Promise<Account> {
    const account = await server.createUser(username, 'MEMBER');
    const events = sessions.flatMap(([start, end]) => [
      { type: 'session_started', occurredAt: start },
      { type: 'session_ended', occurredAt: end },
    ]);
    const result = await server.gql(SEND, { events }, account.token);
    expect(result.errors).toBeUndefined();
    return account;
  }

  function sessionsOf(account: Account): Record<string, unknown> {
    return { segments: { users: [account.id], pairTypes: ['session'] } };
  }

  describe('DAY', () => {
    it.each([
      [
        'Europe/Prague, autumn change',
        'Europe/Prague',
        { start: '2021-10-30T00:00:00+02:00', end: '2021-11-02T00:00:00+01:00' },
        [
          bucket('2021-10-29T22:00:00Z', '2021-10-30T22:00:00Z', 86_400),
          bucket('2021-10-30T22:00:00Z', '2021-10-31T23:00:00Z', 90_000),
          bucket('2021-10-31T23:00:00Z', '2021-11-01T23:00:00Z', 86_400),
        ],
      ],
      [
        'Europe/Prague, spring change',
        'Europe/Prague',
        { start: '2021-03-27T00:00:00+01:00', end: '2021-03-29T00:00:00+02:00' },
        [
          bucket('2021-03-26T23:00:00Z', '2021-03-27T23:00:00Z', 86_400),
          bucket('2021-03-27T23:00:00Z', '2021-03-28T22:00:00Z', 82_800),
        ],
      ],
      [
        'Australia/Sydney, autumn change',
        'Australia/Sydney',
        { start: '2021-04-03T00:00:00+11:00', end: '2021-04-06T00:00:00+10:00' },
        [
          bucket('2021-04-02T13:00:00Z', '2021-04-03T13:00:00Z', 86_400),
          bucket('2021-04-03T13:00:00Z', '2021-04-04T14:00:00Z', 90_000),
          bucket('2021-04-04T14:00:00Z', '2021-04-05T14:00:00Z', 86_400),
        ],
      ],
      [
        'Australia/Sydney, spring change',
        'Australia/Sydney',
        { start: '2021-10-03T00:00:00+10:00', end: '2021-10-04T00:00:00+11:00' },
        [bucket('2021-10-02T14:00:00Z', '2021-10-03T13:00:00Z', 82_800)],
      ],
      [
        // Chile turns clocks back at local midnight, so the local 23:00 hour
        // of the Saturday happens twice.
        'America/Santiago, autumn change',
        'America/Santiago',
        { start: '2021-04-03T00:00:00-03:00', end: '2021-04-05T00:00:00-04:00' },
        [
          bucket('2021-04-03T03:00:00Z', '2021-04-04T04:00:00Z', 90_000),
          bucket('2021-04-04T04:00:00Z', '2021-04-05T04:00:00Z', 86_400),
        ],
      ],
      [
        // Local midnight of 5 September 2021 does not exist: the day starts at 01:00.
        'America/Santiago, skipped midnight',
        'America/Santiago',
        { start: '2021-09-04T00:00:00-04:00', end: '2021-09-06T00:00:00-03:00' },
        [
          bucket('2021-09-04T04:00:00Z', '2021-09-05T04:00:00Z', 86_400),
          bucket('2021-09-05T04:00:00Z', '2021-09-06T03:00:00Z', 82_800),
        ],
      ],
      [
        'Asia/Kolkata',
        'Asia/Kolkata',
        { start: '2026-03-09T00:00:00+05:30', end: '2026-03-11T00:00:00+05:30' },
        [
          bucket('2026-03-08T18:30:00Z', '2026-03-09T18:30:00Z', 86_400),
          bucket('2026-03-09T18:30:00Z', '2026-03-10T18:30:00Z', 86_400),
        ],
      ],
    ])('follows %s', async (_name, timeZone, window, expected) => {
      expect(await bucketsOf(WHOLE_WINDOW, window, 'DAY', timeZone)).toEqual(expected);
    });

    it('splits sessions at local midnight', async () => {
      const account = await memberWithSessions('prague-days', [
        ['2026-03-10T00:00:00+01:00', '2026-03-10T08:00:00+01:00'],
        ['2026-03-10T22:30:00+01:00', '2026-03-11T06:30:00+01:00'],
      ]);
      const window = { start: '2026-03-10T00:00:00+01:00', end: '2026-03-12T00:00:00+01:00' };

      expect(await bucketsOf(sessionsOf(account), window, 'DAY', 'Europe/Prague')).toEqual([
        bucket('2026-03-09T23:00:00Z', '2026-03-10T23:00:00Z', 9.5 * 3600),
        bucket('2026-03-10T23:00:00Z', '2026-03-11T23:00:00Z', 6.5 * 3600),
      ]);
    });

    it('splits sessions on the 25-hour day', async () => {
      // [00:00, 08:00) local on 31 October 2021 lasts 9 hours: 02:00-03:00 happens twice.
      const account = await memberWithSessions('prague-long-day', [
        ['2021-10-31T00:00:00+02:00', '2021-10-31T08:00:00+01:00'],
        ['2021-10-31T22:30:00+01:00', '2021-11-01T06:30:00+01:00'],
      ]);
      const window = { start: '2021-10-31T00:00:00+02:00', end: '2021-11-02T00:00:00+01:00' };

      expect(await bucketsOf(sessionsOf(account), window, 'DAY', 'Europe/Prague')).toEqual([
        bucket('2021-10-30T22:00:00Z', '2021-10-31T23:00:00Z', 10.5 * 3600),
        bucket('2021-10-31T23:00:00Z', '2021-11-01T23:00:00Z', 6.5 * 3600),
      ]);
    });

    it('lists empty buckets', async () => {
      const window = { start: '2026-03-10T00:00:00+01:00', end: '2026-03-12T00:00:00+01:00' };

      expect(await bucketsOf({ intervals: [] }, window, 'DAY', 'Europe/Prague')).toEqual([
        bucket('2026-03-09T23:00:00Z', '2026-03-10T23:00:00Z', 0),
        bucket('2026-03-10T23:00:00Z', '2026-03-11T23:00:00Z', 0),
      ]);
    });
  });

  describe('HOUR', () => {
    it.each([
      [
        'Europe/Prague',
        ['2026-03-09T09:30:00+01:00', '2026-03-09T11:15:00+01:00'],
        { start: '2026-03-09T09:00:00+01:00', end: '2026-03-09T12:00:00+01:00' },
        [
          bucket('2026-03-09T08:00:00Z', '2026-03-09T09:00:00Z', 1800),
          bucket('2026-03-09T09:00:00Z', '2026-03-09T10:00:00Z', 3600),
          bucket('2026-03-09T10:00:00Z', '2026-03-09T11:00:00Z', 900),
        ],
      ],
      [
        'Asia/Kolkata',
        ['2026-03-09T09:30:00+05:30', '2026-03-09T11:15:00+05:30'],
        { start: '2026-03-09T09:00:00+05:30', end: '2026-03-09T12:00:00+05:30' },
        [
          bucket('2026-03-09T03:30:00Z', '2026-03-09T04:30:00Z', 1800),
          bucket('2026-03-09T04:30:00Z', '2026-03-09T05:30:00Z', 3600),
          bucket('2026-03-09T05:30:00Z', '2026-03-09T06:30:00Z', 900),
        ],
      ],
    ])('splits [09:30, 11:15) in %s', async (timeZone, session, window, expected) => {
      const account = await memberWithSessions(`hours-${timeZone.split('/')[1]!.toLowerCase()}`, [
        session as [string, string],
      ]);

      expect(await bucketsOf(sessionsOf(account), window, 'HOUR', timeZone)).toEqual(expected);
    });

    it('gives a repeated local hour two buckets', async () => {
      // Europe/Prague, 31 October 2021: local 02:00-03:00 runs at +02:00, then again at +01:00.
      const window = { start: '2021-10-31T01:00:00+02:00', end: '2021-10-31T04:00:00+01:00' };

      expect(await bucketsOf(WHOLE_WINDOW, window, 'HOUR', 'Europe/Prague')).toEqual([
        bucket('2021-10-30T23:00:00Z', '2021-10-31T00:00:00Z', 3600),
        bucket('2021-10-31T00:00:00Z', '2021-10-31T01:00:00Z', 3600),
        bucket('2021-10-31T01:00:00Z', '2021-10-31T02:00:00Z', 3600),
        bucket('2021-10-31T02:00:00Z', '2021-10-31T03:00:00Z', 3600),
      ]);
    });

    it('starts hours at :15 in Asia/Kathmandu', async () => {
      const window = { start: '2026-03-09T00:00:00Z', end: '2026-03-09T02:00:00Z' };

      expect(await bucketsOf(WHOLE_WINDOW, window, 'HOUR', 'Asia/Kathmandu')).toEqual([
        bucket('2026-03-09T00:00:00Z', '2026-03-09T00:15:00Z', 900),
        bucket('2026-03-09T00:15:00Z', '2026-03-09T01:15:00Z', 3600),
        bucket('2026-03-09T01:15:00Z', '2026-03-09T02:00:00Z', 2700),
      ]);
    });
  });

  describe('WEEK and MONTH', () => {
    it('uses ISO weeks from Monday', async () => {
      // Monday 25 October 2021 to Monday 8 November 2021, Prague time.
      const window = { start: '2021-10-25T00:00:00+02:00', end: '2021-11-08T00:00:00+01:00' };

      expect(await bucketsOf(WHOLE_WINDOW, window, 'WEEK', 'Europe/Prague')).toEqual([
        bucket('2021-10-24T22:00:00Z', '2021-10-31T23:00:00Z', 7 * 86_400 + 3600),
        bucket('2021-10-31T23:00:00Z', '2021-11-07T23:00:00Z', 7 * 86_400),
      ]);
    });

    it('clips weeks to the window', async () => {
      const window = { start: '2021-10-27T12:00:00Z', end: '2021-11-03T12:00:00Z' };
      const expression = { intervals: [{ start: '2021-10-31T20:00:00Z', end: '2021-11-01T02:00:00Z' }] };

      expect(await bucketsOf(expression, window, 'WEEK', 'Europe/Prague')).toEqual([
        bucket('2021-10-27T12:00:00Z', '2021-10-31T23:00:00Z', 3 * 3600),
        bucket('2021-10-31T23:00:00Z', '2021-11-03T12:00:00Z', 3 * 3600),
      ]);
    });

    it('follows calendar months', async () => {
      const window = { start: '2021-10-01T00:00:00+02:00', end: '2021-12-01T00:00:00+01:00' };

      expect(await bucketsOf(WHOLE_WINDOW, window, 'MONTH', 'Europe/Prague')).toEqual([
        bucket('2021-09-30T22:00:00Z', '2021-10-31T23:00:00Z', 31 * 86_400 + 3600),
        bucket('2021-10-31T23:00:00Z', '2021-11-30T23:00:00Z', 30 * 86_400),
      ]);
    });

    it('gives February 2024 29 days', async () => {
      const window = { start: '2024-02-01T00:00:00Z', end: '2024-03-01T00:00:00Z' };

      expect(await bucketsOf(WHOLE_WINDOW, window, 'MONTH', 'UTC')).toEqual([
        bucket('2024-02-01T00:00:00Z', '2024-03-01T00:00:00Z', 29 * 86_400),
      ]);
    });
  });

  it('adds bucket milliseconds up to the total', async () => {
    const expression = {
      intervals: [
        { start: '2026-03-09T22:59:59.999Z', end: '2026-03-09T23:00:00.001Z' },
        { start: '2026-03-10T10:00:00.123Z', end: '2026-03-10T10:00:00.456Z' },
      ],
    };
    const window = { start: '2026-03-09T00:00:00Z', end: '2026-03-11T00:00:00Z' };
    const result = await server.gql(
      REPORT,
      { expression, window, bucket: { unit: 'DAY', timeZone: 'Europe/Prague' } },
      adminToken,
    );

    expect(result.errors).toBeUndefined();
    const buckets = result.data?.report.buckets as Bucket[];
    expect(buckets.map((item) => item.seconds)).toEqual([0.001, 0.334, 0]);
    expect(Math.round(sumOf(buckets) * 1000)).toBe(Math.round(result.data?.report.totalSeconds * 1000));
  });

  it('adds bucket totals per group', async () => {
    await memberWithSessions('grouped-one', [['2026-02-02T23:30:00+01:00', '2026-02-03T00:30:00+01:00']]);
    await memberWithSessions('grouped-two', [['2026-02-03T10:00:00+01:00', '2026-02-03T11:00:00+01:00']]);
    const window = { start: '2026-02-02T00:00:00+01:00', end: '2026-02-04T00:00:00+01:00' };
    const result = await server.gql(
      REPORT,
      {
        expression: { segments: { pairTypes: ['session'] } },
        window,
        bucket: { unit: 'DAY', timeZone: 'Europe/Prague' },
        groupBy: 'USER',
      },
      adminToken,
    );

    expect(result.errors).toBeUndefined();
    const groups = result.data?.report.groups as Array<{
      user: { username: string };
      totalSeconds: number;
      buckets: Bucket[];
    }>;
    const byName = new Map(groups.map((group) => [group.user.username, group]));
    expect(byName.get('grouped-one')!.buckets.map((item) => item.seconds)).toEqual([1800, 1800]);
    expect(byName.get('grouped-two')!.buckets.map((item) => item.seconds)).toEqual([0, 3600]);
    for (const group of groups) {
      expect(sumOf(group.buckets)).toBe(group.totalSeconds);
    }
    expect((result.data?.report.buckets as Bucket[]).map((item) => item.seconds)).toEqual([1800, 5400]);
  });

  it.each(['Mars/Olympus_Mons', 'Europe/Prag', '+01:00x', ''])('rejects time zone %j', async (timeZone) => {
    const window = { start: '2026-03-09T00:00:00Z', end: '2026-03-10T00:00:00Z' };
    const result = await server.gql(
      REPORT,
      { expression: WHOLE_WINDOW, window, bucket: { unit: 'DAY', timeZone } },
      adminToken,
    );

    expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_TIME_ZONE');
    expect(result.errors?.[0]?.message).toContain(JSON.stringify(timeZone));
  });

  it('suggests a close time zone', async () => {
    const window = { start: '2026-03-09T00:00:00Z', end: '2026-03-10T00:00:00Z' };
    const result = await server.gql(
      REPORT,
      { expression: WHOLE_WINDOW, window, bucket: { unit: 'DAY', timeZone: 'America/New York' } },
      adminToken,
    );

    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_TIME_ZONE');
    expect(result.errors?.[0]?.message).toContain('Did you mean America/New_York?');
  });
});
