/**
 * Who may report on whom: members only on themselves (a leaf naming another
 * user anywhere in the tree is FORBIDDEN), analysts and admins on anyone.
 * A request without a valid token gets UNAUTHENTICATED, and `groupBy: USER`
 * follows the same rules.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) {
    count
    totalSeconds
    intervals { start end }
  }
}`;

const REPORT_GROUPED = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window, groupBy: USER) {
    totalSeconds
    groups { user { id username } count totalSeconds intervals { start end } }
  }
}`;

const REPORT_CHOSEN_GROUPS = `query ($expression: SetExpression!, $window: WindowInput!, $groupUsers: [ID!]) {
  report(expression: $expression, window: $window, groupBy: USER, groupUsers: $groupUsers) {
    groups { user { id username } count totalSeconds intervals { start end } }
  }
}`;

const REPORT_CHOSEN_UNGROUPED = `query ($expression: SetExpression!, $window: WindowInput!, $groupUsers: [ID!]) {
  report(expression: $expression, window: $window, groupUsers: $groupUsers) { totalSeconds }
}`;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

const WINDOW = { start: '2026-03-09T00:00:00.000Z', end: '2026-03-10T00:00:00.000Z' };

interface Account {
  id: string;
  token: string;
}

interface Group {
  user: { id: string; username: string };
  count: number;
  totalSeconds: number;
  intervals: Array<{ start: string; end: string }>;
}

function leafOf(users?: string[]): Record<string, unknown> {
  return { segments: users === undefined ? { pairTypes: ['session'] } : { pairTypes: ['session'], users } };
}

/**
 * Hides `leaf` five levels deep, in the subtracted side of a difference:
 * from − (W − leaf) is the part of `from` inside the leaf.
 */
function deeplyNested(leaf: Record<string, unknown>): Record<string, unknown> {
  return {
    union: [
      leafOf(),
      {
        difference: {
          from: { intervals: [{ start: '2026-03-09T08:00:00Z', end: '2026-03-09T12:00:00Z' }] },
          subtract: { complement: { intersect: [leaf] } },
        },
      },
    ],
  };
}

describe('report access', () => {
  let server: TestServer;
  let alice: Account;
  let bob: Account;
  let carol: Account;
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(Date.parse('2026-03-10T12:00:00Z')),
      sweeper: false,
      // Long enough that no session here is auto-closed before its end event.
      env: { DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS: String(7 * 86_400) },
    });
    adminToken = await server.adminToken();
    alice = await server.createUser('alice', 'MEMBER');
    bob = await server.createUser('bob', 'MEMBER');
    carol = await server.createUser('carol', 'ANALYST');

    const sessions: Array<[Account, string, string]> = [
      [alice, '2026-03-09T09:00:00Z', '2026-03-09T10:00:00Z'],
      [bob, '2026-03-09T09:30:00Z', '2026-03-09T11:00:00Z'],
    ];
    for (const [account, start, end] of sessions) {
      const sent = await server.gql(
        SEND,
        {
          events: [
            { type: 'session_started', occurredAt: start },
            { type: 'session_ended', occurredAt: end },
          ],
        },
        account.token,
      );
      expect(sent.errors).toBeUndefined();
    }
  });

  afterAll(async () => {
    await server?.close();
  });

  async function report(expression: Record<string, unknown>, token?: string): Promise<GraphQLResponse<Record<string, any>>> {
    return server.gql(REPORT, { expression, window: WINDOW }, token);
  }

  function expectCode(result: GraphQLResponse, code: string): void {
    expect(result.errors, JSON.stringify(result.data)).toBeDefined();
    expect(result.errors![0]!.extensions?.code).toBe(code);
    expect(result.data?.report ?? null).toBeNull();
  }

  describe('member', () => {
    it('reads own segments through an unnamed leaf', async () => {
      const result = await report(leafOf(), alice.token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.intervals).toEqual([
        { start: '2026-03-09T09:00:00.000Z', end: '2026-03-09T10:00:00.000Z' },
      ]);
    });

    it('may name itself', async () => {
      const result = await report(deeplyNested(leafOf([alice.id])), alice.token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.totalSeconds).toBe(3600);
    });

    it('gets FORBIDDEN naming another user at the root', async () => {
      const result = await report(leafOf([bob.id]), alice.token);

      expectCode(result, 'FORBIDDEN');
      expect(result.errors![0]!.message).toContain(bob.id);
    });

    it('gets FORBIDDEN naming another user deep inside', async () => {
      const result = await report(deeplyNested(leafOf([bob.id])), alice.token);

      expectCode(result, 'FORBIDDEN');
    });

    it('gets FORBIDDEN naming itself and another user', async () => {
      const result = await report(deeplyNested(leafOf([alice.id, bob.id])), alice.token);

      expectCode(result, 'FORBIDDEN');
      const path = 'expression.union[1].difference.subtract.complement.intersect[0].segments.users[1]';
      expect(result.errors![0]!.message, 'message').toContain(`${path} names user "${bob.id}"`);
      expect(result.errors![0]!.extensions?.path, 'path').toBe(path);
    });

    it('gets FORBIDDEN naming an excluded open-segment leaf', async () => {
      const leaf = { segments: { users: [bob.id], includeOpen: false } };
      const result = await report({ difference: { from: leafOf(), subtract: leaf } }, alice.token);

      expectCode(result, 'FORBIDDEN');
    });

    it('gets FORBIDDEN naming an unknown user', async () => {
      const result = await report(leafOf(['00000000-0000-4000-8000-000000000000']), alice.token);

      expectCode(result, 'FORBIDDEN');
    });

    it('sees only its own group', async () => {
      const result = await server.gql(REPORT_GROUPED, { expression: leafOf(), window: WINDOW }, bob.token);

      expect(result.errors).toBeUndefined();
      const groups = result.data?.report.groups as Group[];
      expect(groups.map((group) => group.user.username)).toEqual(['bob']);
      expect(groups[0]!.totalSeconds).toBe(5400);
      expect(result.data?.report.totalSeconds).toBe(5400);
    });

    it('gets FORBIDDEN naming another user when grouped', async () => {
      const expression = { difference: { from: leafOf(), subtract: leafOf([alice.id]) } };
      const result = await server.gql(REPORT_GROUPED, { expression, window: WINDOW }, bob.token);

      expectCode(result, 'FORBIDDEN');
    });

    it('may choose its own group', async () => {
      const result = await server.gql(REPORT_CHOSEN_GROUPS, { expression: leafOf(), window: WINDOW, groupUsers: [bob.id] }, bob.token);

      expect(result.errors).toBeUndefined();
      expect((result.data?.report.groups as Group[]).map((group) => group.user.username)).toEqual(['bob']);
    });

    it('gets FORBIDDEN choosing another group', async () => {
      const result = await server.gql(
        REPORT_CHOSEN_GROUPS,
        { expression: leafOf(), window: WINDOW, groupUsers: [bob.id, alice.id] },
        bob.token,
      );

      expectCode(result, 'FORBIDDEN');
      expect(result.errors?.[0]?.message).toContain('groupUsers');
    });
  });

  describe('chosen groups', () => {
    it('groups only the chosen users', async () => {
      const unknown = '00000000-0000-4000-8000-000000000000';
      const result = await server.gql(
        REPORT_CHOSEN_GROUPS,
        { expression: leafOf(), window: WINDOW, groupUsers: [bob.id, unknown, alice.id.toUpperCase()] },
        carol.token,
      );

      expect(result.errors).toBeUndefined();
      const groups = result.data?.report.groups as Group[];
      // Username order; the id of no user gets no group.
      expect(groups.map((group) => group.user.username)).toEqual(['alice', 'bob']);
      expect(groups.map((group) => group.totalSeconds)).toEqual([3600, 5400]);
    });

    it.each([
      { name: 'without groupBy', variables: { groupUsers: [] as string[] }, query: 'ungrouped', reason: 'INVALID_GROUP_USERS' },
      { name: 'with a non-UUID', variables: { groupUsers: ['bob'] }, query: 'grouped', reason: 'INVALID_USER_ID' },
    ])('rejects groupUsers $name', async ({ variables, query, reason }) => {
      const text = query === 'grouped' ? REPORT_CHOSEN_GROUPS : REPORT_CHOSEN_UNGROUPED;
      const result = await server.gql(text, { expression: leafOf(), window: WINDOW, ...variables }, carol.token);

      expect(result.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(result.errors?.[0]?.extensions?.reason).toBe(reason);
      expect(result.status).toBe(400);
    });
  });

  describe('analyst and admin', () => {
    it('reads every user through an unnamed leaf', async () => {
      const result = await report(leafOf(), carol.token);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.intervals).toEqual([
        { start: '2026-03-09T09:00:00.000Z', end: '2026-03-09T11:00:00.000Z' },
      ]);
    });

    it.each([
      ['analyst', () => carol.token],
      ['admin', () => adminToken],
    ])('%s may name any user deep inside', async (_role, token) => {
      const result = await report(deeplyNested(leafOf([bob.id])), token());

      expect(result.errors).toBeUndefined();
      // The union of everyone's sessions [09:00, 11:00) and the part of
      // [08:00, 12:00) inside bob's session, [09:30, 11:00).
      expect(result.data?.report.totalSeconds).toBe(7200);
    });

    it('reads another user alone', async () => {
      const result = await report(leafOf([alice.id]), adminToken);

      expect(result.errors).toBeUndefined();
      expect(result.data?.report.totalSeconds).toBe(3600);
    });

    it('gets a group per user', async () => {
      // Each group's sessions, minus bob's sessions whatever the group.
      const expression = { difference: { from: leafOf(), subtract: leafOf([bob.id]) } };
      const result = await server.gql(REPORT_GROUPED, { expression, window: WINDOW }, carol.token);

      expect(result.errors).toBeUndefined();
      const groups = result.data?.report.groups as Group[];
      expect(groups.map((group) => group.user.username)).toEqual(['admin', 'alice', 'bob', 'carol']);
      const byName = new Map(groups.map((group) => [group.user.username, group]));
      expect(byName.get('alice')!.user.id).toBe(alice.id);
      expect(byName.get('alice')!.intervals).toEqual([
        { start: '2026-03-09T09:00:00.000Z', end: '2026-03-09T09:30:00.000Z' },
      ]);
      expect(byName.get('bob')!.count).toBe(0);
      expect(byName.get('carol')!.count).toBe(0);
      expect(byName.get('admin')!.count).toBe(0);

      // Ungrouped, the unnamed leaf covers everyone: [09:00, 11:00) minus bob.
      expect(result.data?.report.totalSeconds).toBe(1800);
    });
  });

  describe('malformed filters', () => {
    it('rejects a user name as user id', async () => {
      const result = await report(leafOf(['alice']), carol.token);

      expectCode(result, 'BAD_USER_INPUT');
      expect(result.errors![0]!.message).toContain('"alice", which is not a user id');
    });

    it('gives path of malformed user id', async () => {
      const nested = {
        union: [
          leafOf([alice.id]),
          { difference: { from: leafOf(), subtract: leafOf([bob.id, 'alice']) } },
        ],
      };

      const result = await report(nested, carol.token);

      const path = 'expression.union[1].difference.subtract.segments.users[1]';
      expect(result.errors![0]!.extensions?.reason).toBe('INVALID_USER_ID');
      expect(result.errors![0]!.extensions?.path).toBe(path);
      expect(result.errors![0]!.extensions?.userId).toBe('alice');
      expect(result.errors![0]!.message).toBe(
        `Invalid report expression: ${path} is "alice", which is not a user id (a UUID). Pass the user's id, which the users query and me return, not the username.`,
      );
    });

    it('cuts a long user id between characters', async () => {
      // The 64th character is an emoji, two UTF-16 units, which a cut after 64 units would split.
      const name = `${'x'.repeat(63)}\u{1F600}tail`;
      const result = await report(leafOf([name]), carol.token);

      expect(result.errors![0]!.extensions?.reason).toBe('INVALID_USER_ID');
      expect(result.errors![0]!.extensions?.userId).toBe(`${'x'.repeat(63)}\u{1F600}`);
      expect(result.errors![0]!.message).toContain(`is "${'x'.repeat(63)}\u{1F600}", which is not a user id`);
    });

    it('rejects a user name in events', async () => {
      const result = await server.gql(`{ events(filter: { users: ["zzz"] }, first: 5) { nodes { id } } }`, {}, carol.token);

      expect(result.errors![0]!.extensions?.reason).toBe('INVALID_USER_ID');
      expect(result.errors![0]!.message).toContain('filter.users[0] is "zzz"');
      expect(result.errors![0]!.message, 'next step').toContain("Pass the user's id");
    });

    it('names the fix for a username in groupUsers', async () => {
      const variables = { expression: leafOf(), window: WINDOW, groupUsers: ['bob'] };
      const result = await server.gql(REPORT_CHOSEN_GROUPS, variables, carol.token);

      expect(result.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_USER_ID');
      expect(result.errors?.[0]?.message, 'value').toContain('"bob"');
      expect(result.errors?.[0]?.message, 'next step').toContain("Pass the user's id");
    });

    it('names the fix for a username in preferences', async () => {
      const result = await server.gql(`{ autoClosePreferences(userId: "bob") { id } }`, {}, carol.token);

      expect(result.errors?.[0]?.extensions?.reason, 'reason').toBe('INVALID_USER_ID');
      expect(result.errors?.[0]?.message, 'value').toContain('"bob"');
      expect(result.errors?.[0]?.message, 'next step').toContain("Pass the user's id");
    });

    it('keeps the case of a username in preferences', async () => {
      const read = await server.gql(`{ autoClosePreferences(userId: "Bob") { id } }`, {}, carol.token);
      const written = await server.gql(
        `mutation { setAutoClosePreference(input: { pairType: "session", timeoutSeconds: 60, endAt: DEADLINE, userId: "Bob" }) { id } }`,
        {},
        await server.adminToken(),
      );

      expect(read.errors?.[0]?.message, 'query').toContain('"Bob"');
      expect(written.errors?.[0]?.message, 'mutation').toContain('"Bob"');
    });

    it('rejects an overlong pair type', async () => {
      const result = await report({ segments: { pairTypes: ['x'.repeat(300)] } }, carol.token);

      expectCode(result, 'BAD_USER_INPUT');
      expect(result.errors![0]!.message).toContain('300 characters long, above the maximum of 256');
    });

    it('rejects 1,001 pair keys in segments', async () => {
      const pairKeys = Array.from({ length: 1001 }, (_, index) => `key-${index}`);
      const result = await server.gql(`query ($k: [String!]) { segments(filter: { pairKeys: $k }, first: 5) { nodes { id } } }`, { k: pairKeys }, carol.token);

      expect(result.errors![0]!.extensions?.reason).toBe('LIMIT_EXCEEDED');
      expect(result.errors![0]!.message).toContain('filter.pairKeys has 1001 entries, above the maximum of 1000');
    });

    it('rejects 1,001 pair keys', async () => {
      const pairKeys = Array.from({ length: 1001 }, (_, index) => `key-${index}`);
      const result = await report({ segments: { pairTypes: ['task'], pairKeys } }, carol.token);

      expectCode(result, 'BAD_USER_INPUT');
      expect(result.errors![0]!.message).toContain('has 1001 entries, above the maximum of 1000');
    });
  });

  describe('without a valid token', () => {
    it('gets UNAUTHENTICATED without a token', async () => {
      const result = await report(leafOf());

      expectCode(result, 'UNAUTHENTICATED');
    });

    it('gets UNAUTHENTICATED with a forged token', async () => {
      const [header, payload] = alice.token.split('.');
      const result = await report(leafOf(), `${header}.${payload}.${'A'.repeat(43)}`);

      expectCode(result, 'UNAUTHENTICATED');
    });

    it('gets UNAUTHENTICATED with a malformed token', async () => {
      const result = await report(leafOf(), 'not-a-token');

      expectCode(result, 'UNAUTHENTICATED');
    });
  });
});
