/**
 * Hostile input to reads, reports, preferences, pair types and login: forged
 * cursors, filters and report leaves that PostgreSQL cannot compare, windows
 * outside the supported instant range, unknown users, and hostile GraphQL
 * requests. None may return HTTP 500 or leak a stack trace.
 */
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ManualClock, startTestServer, type TestServer } from '../support/app.js';

const NOW = Date.parse('2026-01-25T00:00:00Z');
const WINDOW = { start: '2026-01-01T00:00:00Z', end: '2026-01-25T00:00:00Z' };
const MAX_INTERVALS = 50;
/** Below a year of HOUR buckets (8,760) times the result and two users. */
const MAX_BUCKET_ROWS = 20_000;

const REPORT = `query ($x: SetExpression!, $w: WindowInput!, $g: GroupBy) {
  report(expression: $x, window: $w, groupBy: $g) { count truncated intervals { start } groups { count truncated intervals { start } } }
}`;

function forgeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

describe('hostile queries', () => {
  let server: TestServer;
  let adminToken: string;
  let member: { id: string; token: string };

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      clock: new ManualClock(NOW),
      env: {
        REPORT_MAX_INTERVALS: String(MAX_INTERVALS),
        REPORT_MAX_BUCKET_ROWS: String(MAX_BUCKET_ROWS),
        LOGIN_RATE_LIMIT_MAX_ATTEMPTS: '1000',
      },
    });
    adminToken = await server.adminToken();
    member = await server.createUser('hostile-queries-member');
    const sent = await server.gql(
      `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`,
      {
        events: [
          { type: 'session_started', occurredAt: '2026-01-10T09:00:00Z' },
          { type: 'session_ended', occurredAt: '2026-01-10T09:20:00Z' },
        ],
      },
      member.token,
    );
    expect(sent.errors).toBeUndefined();
  });

  afterAll(async () => {
    await server?.close();
  });

  async function postJson(path: string, token: string | null, body: unknown) {
    const response = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, text, json: JSON.parse(text) as { data?: any; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> } };
  }

  describe('cursors', () => {
    const uuid = '00000000-0000-4000-8000-000000000000';

    it.each([
      ['an id that is not a UUID', forgeCursor([0, 'nope'])],
      ['a time beyond Date range', forgeCursor([1e300, uuid])],
      ['the earliest Date', forgeCursor([-8.64e15, uuid])],
      ['a time before year 100', forgeCursor([Date.parse('0050-01-01T00:00:00Z'), uuid])],
      ['a fractional time', forgeCursor([0.5, uuid])],
      ['a missing id', forgeCursor([0])],
      ['text that is not base64', '!!!'],
      ['a truncated cursor', forgeCursor([0, uuid]).slice(0, 10)],
    ])('rejects %s', async (_name, cursor) => {
      for (const field of ['events', 'segments']) {
        const response = await server.gql(
          `query ($after: String) { ${field}(after: $after) { nodes { id } } }`,
          { after: cursor },
          member.token,
        );

        expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
        expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_CURSOR');
      }
    });

    it('accepts a cursor from a previous page', async () => {
      const first = await server.gql(`{ events(first: 1) { pageInfo { endCursor hasNextPage } } }`, {}, member.token);
      const after = first.data?.events.pageInfo.endCursor as string;
      const second = await server.gql(
        `query ($after: String) { events(first: 1, after: $after) { nodes { type } } }`,
        { after },
        member.token,
      );

      expect(first.data?.events.pageInfo.hasNextPage).toBe(true);
      expect(second.data?.events.nodes).toEqual([{ type: 'session_ended' }]);
    });
  });

  describe('filters', () => {
    it.each([
      ['events', 'types', '{ events(filter: { types: ["a\\u0000"] }) { nodes { id } } }'],
      ['events', 'pairTypes', '{ events(filter: { pairTypes: ["session", "a\\u0000"] }) { nodes { id } } }'],
      ['segments', 'pairTypes', '{ segments(filter: { pairTypes: ["a\\u0000"] }) { nodes { id } } }'],
      ['segments', 'pairKeys', '{ segments(filter: { pairKeys: ["k\\u0000"] }) { nodes { id } } }'],
    ])('rejects NUL in %s %s', async (_operation, field, query) => {
      const response = await server.gql(query, {}, member.token);

      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_FILTER');
      expect(response.errors?.[0]?.message).toContain(`filter.${field}[`);
    });

    it.each([
      ['events', '{ events(window: { start: "0000-01-01T00:00:00Z", end: "0000-02-01T00:00:00Z" }) { nodes { id } } }'],
      ['segments', '{ segments(window: { start: "9999-12-31T00:00:00Z", end: "9999-12-31T23:59:59-10:00" }) { nodes { id } } }'],
    ])('rejects an out-of-range %s window', async (_operation, query) => {
      const response = await server.gql(query, {}, member.token);

      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.message).toContain('outside the supported range');
    });
  });

  describe('report leaves', () => {
    it.each([
      ['NUL in pairKeys', { segments: { pairKeys: ['k\u0000'] } }, 'expression.segments.pairKeys[0]'],
      ['NUL in pairTypes', { segments: { pairTypes: ['session\u0000'] } }, 'expression.segments.pairTypes[0]'],
      ['NUL in meta', { union: [{ segments: { meta: { tag: { deep: 'a\u0000' } } } }] }, 'expression.union[0].segments.meta.tag.deep'],
      ['an unpaired surrogate in meta', { segments: { meta: { tag: '\ud800' } } }, 'expression.segments.meta.tag'],
    ])('rejects %s', async (_name, expression, path) => {
      const response = await server.gql(REPORT, { x: expression, w: WINDOW }, member.token);

      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_EXPRESSION');
      expect(response.errors?.[0]?.extensions?.problems).toEqual([expect.objectContaining({ path })]);
    });

    it('rejects meta nested 3,000 levels', async () => {
      const meta = `${'{"a":'.repeat(2999)}{"b":1}${'}'.repeat(2999)}`;
      const body = `{"query":${JSON.stringify(REPORT)},"variables":{"w":${JSON.stringify(WINDOW)},"x":{"segments":{"meta":${meta}}}}}`;
      const reply = await postJson('/graphql', member.token, body);

      expect(reply.status).toBe(400);
      expect(reply.text).toContain('maximum of 100 levels');
    });

    it('matches odd but valid meta filters', async () => {
      const response = await server.gql(
        REPORT,
        { x: { segments: { meta: { list: [1, null, { nested: {} }], empty: null } } }, w: WINDOW },
        member.token,
      );

      expect(response.errors).toBeUndefined();
      expect(response.data?.report.count).toBe(0);
    });

    it.each([
      ['year 0', { start: '0000-01-01T00:00:00Z', end: '0000-12-01T00:00:00Z' }],
      ['year 10000 by offset', { start: '9999-12-31T00:00:00Z', end: '9999-12-31T23:59:59-10:00' }],
    ])('rejects a window in %s', async (_name, window) => {
      const response = await server.gql(REPORT, { x: { segments: {} }, w: window }, member.token);

      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.message).toContain('outside the supported range');
    });

    it('reports a window ending at the last instant', async () => {
      const response = await server.gql(
        REPORT,
        { x: { complement: { segments: {} } }, w: { start: '9999-12-01T00:00:00Z', end: '9999-12-31T23:59:59.999Z' } },
        member.token,
      );

      expect(response.errors).toBeUndefined();
      expect(response.data?.report.count).toBe(1);
    });

    it('caps intervals across groups', async () => {
      for (const name of ['hostile-group-1', 'hostile-group-2', 'hostile-group-3']) {
        await server.createUser(name);
      }
      const intervals = Array.from({ length: 40 }, (_, index) => ({
        start: new Date(Date.parse(WINDOW.start) + index * 3_600_000).toISOString(),
        end: new Date(Date.parse(WINDOW.start) + index * 3_600_000 + 60_000).toISOString(),
      }));
      const response = await server.gql(REPORT, { x: { intervals }, w: WINDOW, g: 'USER' }, adminToken);
      const groups = response.data?.report.groups as Array<{ intervals: unknown[] }>;
      const returned = groups.reduce((sum, group) => sum + group.intervals.length, 0);

      expect(groups.length).toBeGreaterThanOrEqual(5);
      expect(returned).toBeLessThanOrEqual(MAX_INTERVALS);
      expect(groups.some((group) => (group as { truncated?: boolean }).truncated === true)).toBe(true);
    });

    it('rejects too many bucket rows', async () => {
      const year = { start: '2025-01-01T00:00:00Z', end: '2026-01-01T00:00:00Z' };
      const response = await server.gql(
        `query ($x: SetExpression!, $w: WindowInput!) {
          report(expression: $x, window: $w, groupBy: USER, bucket: { unit: HOUR, timeZone: "Asia/Kolkata" }) { count }
        }`,
        { x: { intervals: [] }, w: year },
        adminToken,
      );

      expect(response.status).toBe(400);
      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.limit).toBe('REPORT_MAX_BUCKET_ROWS');
    });
  });

  describe('preferences and pair types', () => {
    const SET_PREFERENCE = `mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { timeoutSeconds } }`;

    it.each([
      ['an unknown user', '00000000-0000-4000-8000-000000000000'],
      ['an id that is not a UUID', 'nope'],
    ])('rejects a preference for %s', async (_name, userId) => {
      const response = await server.gql(
        SET_PREFERENCE,
        { input: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId } },
        adminToken,
      );

      expect(response.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect(response.errors?.[0]?.extensions?.reason).toBe('USER_NOT_FOUND');
    });

    it('rejects a preference for a pair type with NUL', async () => {
      const response = await server.gql(
        SET_PREFERENCE,
        { input: { pairType: 'session\u0000', timeoutSeconds: 60, endAt: 'DEADLINE' } },
        member.token,
      );

      expect(response.errors?.[0]?.extensions?.reason).toBe('PAIR_TYPE_NOT_FOUND');
    });

    it('unknown pair type message names the fix', async () => {
      const response = await server.gql(
        SET_PREFERENCE,
        { input: { pairType: 'sesion', timeoutSeconds: 60, endAt: 'DEADLINE' } },
        member.token,
      );
      const message = response.errors?.[0]?.message;

      expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('PAIR_TYPE_NOT_FOUND');
      expect(message, 'value').toContain('"sesion"');
      expect(message, 'listing').toContain('pairTypes query');
      expect(message, 'definition').toContain('definePairType');
    });

    it('unknown user message names the fix', async () => {
      const response = await server.gql(
        SET_PREFERENCE,
        { input: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId: 'nope' } },
        adminToken,
      );

      expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe('USER_NOT_FOUND');
      expect(response.errors?.[0]?.message, 'message').toContain('users query');
      expect(response.errors?.[0]?.message, 'what the value is not').toContain('"nope" is not a user id (a UUID)');
      expect(response.errors?.[0]?.message, 'what to send').toContain('not the username');
    });

    it('rejects a pair type with NUL in an event type', async () => {
      const response = await server.gql(
        `mutation ($input: DefinePairTypeInput!) { definePairType(input: $input) { name } }`,
        { input: { name: 'nul-type', startType: 'nul\u0000started', endType: 'nul_ended' } },
        adminToken,
      );

      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_PAIR_TYPE');
      expect(response.errors?.[0]?.message).toContain('startType "nul\\u0000started" contains the NUL character');
    });
  });

  describe('login', () => {
    it('rejects a username with NUL over GraphQL', async () => {
      const response = await server.gql(
        `mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
        { u: 'ad\u0000min', p: 'admin-password-1' },
      );

      expect(response.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
      expect(response.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    });

    it('rejects a username with NUL over REST', async () => {
      const reply = await postJson('/auth/login', null, { username: 'ad\u0000min', password: 'admin-password-1' });

      expect(reply.status).toBe(401);
      expect(JSON.parse(reply.text).error.reason).toBe('INVALID_CREDENTIALS');
    });

    it('rejects 1 MB credentials', async () => {
      const reply = await postJson('/auth/login', null, { username: 'u'.repeat(1 << 20), password: 'p'.repeat(1 << 20) });

      // A body above 64 KiB without a token is rejected before it is parsed.
      expect(reply.status).toBe(413);
      expect(JSON.parse(reply.text).error.reason).toBe('ANONYMOUS_BODY_TOO_LARGE');
      expect(reply.text.length).toBeLessThan(500);
    });

    it('rejects 16 KB credentials', async () => {
      const reply = await postJson('/auth/login', null, { username: 'u'.repeat(1 << 14), password: 'p'.repeat(1 << 14) });

      expect(reply.status).toBe(401);
      expect(reply.text.length).toBeLessThan(500);
    });
  });

  describe('hostile GraphQL requests', () => {
    const aliases = (count: number) =>
      `{ ${Array.from({ length: count }, (_, index) => `a${index}: __typename`).join(' ')} }`;

    it.each([
      ['a batch as a JSON array', [{ query: '{ __typename }' }, { query: '{ __typename }' }], 400],
      ['an empty JSON body', '', 400],
      ['JSON null', 'null', 400],
      ['a query that is a number', { query: 42 }, 400],
      ['variables as a string', { query: '{ __typename }', variables: 'x' }, 400],
      ['10,000 aliases', { query: aliases(10_000) }, 400],
      ['a fragment cycle', { query: '{ me { ...A } } fragment A on User { ...B } fragment B on User { ...A }' }, 400],
      ['5,000 nested selections', { query: `{ me ${'{ id '.repeat(5000)}${'}'.repeat(5001)}` }, 400],
      ['Int above 32 bits', { query: '{ events(first: 2147483648) { nodes { id } } }' }, 400],
      ['Infinity as Int', '{"query":"query ($f: Int) { events(first: $f) { nodes { id } } }","variables":{"f":1e400}}', 400],
      ['__proto__ in variables', '{"query":"query ($f: Int) { events(first: $f) { nodes { id } } }","variables":{"__proto__":{"f":1}}}', 400],
    ])('answers %s without a server error', async (_name, body, status) => {
      const reply = await postJson('/graphql', member.token, body);

      expect(reply.status).toBe(status);
      expect(reply.text).not.toContain('INTERNAL_SERVER_ERROR');
      expect(reply.text).not.toContain('    at ');
    });

    it('names the limit when validation stops', async () => {
      const unknownFields = `{ ${Array.from({ length: 150 }, (_, index) => `x${index}`).join(' ')} }`;
      const reply = await server.gql(unknownFields, {}, member.token);

      expect(reply.status).toBe(400);
      expect(reply.errors).toHaveLength(101);
      expect(reply.errors?.[99]?.message).toBe('Cannot query field "x99" on type "Query".');
      expect(reply.errors?.[100]?.message).toBe(
        'Validation stopped after 100 errors, the most that one document gets. Correct the errors listed and send the document again.',
      );
      expect(reply.errors?.[100]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    });

    it('names the limit when validation aborts', async () => {
      const repeatedFields = `{ me { ${'id '.repeat(2000)}} }`;
      const first = await server.gql(repeatedFields, {}, member.token);
      const second = await server.gql(repeatedFields, {}, member.token);

      for (const reply of [first, second]) {
        expect(reply.status).toBe(400);
        expect(reply.errors).toHaveLength(1);
        expect(reply.errors?.[0]?.message).toContain('Validation stopped because the document takes too much work to check');
        expect(reply.errors?.[0]?.message).toContain('500,000');
        expect(reply.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
        expect(reply.errors?.[0]?.extensions?.reason).toBe('VALIDATION_BUDGET_EXCEEDED');
      }
    });

    it('names document-wide validation budget', async () => {
      // Each selection set fits the budget alone, and six do not.
      const selectionSets = Array.from({ length: 6 }, (_, index) => `m${index}: me { ${'id '.repeat(400)}}`).join(' ');
      const reply = await server.gql(`{ ${selectionSets} }`, {}, member.token);

      expect(reply.status).toBe(400);
      expect(reply.errors?.[0]?.extensions?.reason).toBe('VALIDATION_BUDGET_EXCEEDED');
      expect(reply.errors?.[0]?.message).toContain('allows one document 500,000 steps');
      expect(reply.errors?.[0]?.message).not.toContain('in one selection set');
    });

    it('rejects a mutation over GET', async () => {
      const query = encodeURIComponent('mutation { login(username: "admin", password: "admin-password-1") { token } }');
      const response = await fetch(`${server.url}/graphql?query=${query}`, { headers: { 'apollo-require-preflight': 'true' } });

      expect(response.status).toBe(405);
      expect(await response.text()).not.toContain('token"');
    });

    it.each([
      ['aliases of a connection field', '{ events(first: 1000) { a: nodes { id } b: nodes { id } } }', 'nodes', 'query.events'],
      ['aliases of a scalar', '{ events(first: 1000) { nodes { a: id b: id } } }', 'id', 'query.events.nodes'],
      ['aliases of __typename', '{ me { a: __typename b: __typename } }', '__typename', 'query.me'],
      ['aliases merged by key', '{ events(first: 5) { nodes { a: id } nodes { b: id } } }', 'id', 'query.events.nodes'],
      [
        'aliases from two fragments',
        '{ events(first: 5) { ...A ...B } } fragment A on EventConnection { a: nodes { id } } fragment B on EventConnection { b: nodes { id } }',
        'nodes',
        'query.events',
      ],
    ])('rejects %s', async (_name, query, field, path) => {
      const reply = await postJson('/graphql', member.token, { query });
      const error = reply.json.errors?.[0];

      expect(reply.status).toBe(400);
      expect(error?.extensions?.reason).toBe('REPEATED_FIELD');
      expect(error?.message).toContain(`Field "${field}"`);
      expect(error?.message).toContain(` in ${path}.`);
    });

    it.each([
      ['a variable', 'query ($x: Boolean!) { events(first: 5) { a: nodes @include(if: $x) { id } b: nodes @skip(if: $x) { id } } }', { x: true }],
      ['a default', 'query ($x: Boolean = false) { events(first: 5) { a: nodes @include(if: $x) { id } nodes { id } } }', {}],
      ['literals', '{ events(first: 5) { a: nodes @skip(if: true) { id } b: nodes { id } } }', {}],
    ])('accepts aliases that directives keep apart, by %s', async (_name, query, variables) => {
      const reply = await postJson('/graphql', member.token, { query, variables });

      expect(reply.status).toBe(200);
      expect(reply.json.errors).toBeUndefined();
      expect(Object.keys(reply.json.data.events)).toHaveLength(1);
    });

    it('rejects aliases that directives both keep', async () => {
      const query = 'query ($x: Boolean!) { events(first: 5) { a: nodes @include(if: $x) { id } b: nodes @skip(if: false) { id } } }';

      const reply = await postJson('/graphql', member.token, { query, variables: { x: true } });

      expect(reply.status).toBe(400);
      expect(reply.json.errors?.[0]?.extensions?.reason).toBe('REPEATED_FIELD');
    });

    it('counts only top-level fields that run', async () => {
      // REQUEST_MAX_ROOT_FIELDS defaults to 20.
      const fields = (count: number, skipped: number) =>
        Array.from({ length: count }, (_, index) => `a${index}: me ${index < skipped ? '@skip(if: $s) ' : ''}{ id }`).join(' ');

      const fits = await postJson('/graphql', member.token, { query: `query ($s: Boolean!) { ${fields(22, 2)} }`, variables: { s: true } });
      const over = await postJson('/graphql', member.token, { query: `query ($s: Boolean!) { ${fields(22, 2)} }`, variables: { s: false } });

      expect(fits.status).toBe(200);
      expect(Object.keys(fits.json.data)).toHaveLength(20);
      expect(over.status).toBe(400);
      expect(over.json.errors?.[0]?.extensions?.limit).toBe('REQUEST_MAX_ROOT_FIELDS');
    });

    it('rejects introspection aliases with other arguments', async () => {
      // Each alias differs only in its variable, and each would list every field of every type again.
      const count = 50;
      const definitions = Array.from({ length: count }, (_, index) => `$v${index}: Boolean`).join(' ');
      const aliases = Array.from({ length: count }, (_, index) => `a${index}: fields(includeDeprecated: $v${index}) { name }`).join(' ');
      const variables = Object.fromEntries(Array.from({ length: count }, (_, index) => [`v${index}`, false]));
      const query = `query (${definitions}) { __schema { types { ${aliases} } } }`;

      const reply = await postJson('/graphql', member.token, { query, variables });

      expect(reply.status).toBe(400);
      expect(reply.json.errors?.[0]?.extensions?.reason).toBe('REPEATED_FIELD');
      expect(reply.json.errors?.[0]?.message).toContain('Field "fields" is selected under 50 names');
    });

    it('counts __schema aliases as top-level fields', async () => {
      // REQUEST_MAX_ROOT_FIELDS defaults to 20.
      const aliases = Array.from({ length: 21 }, (_, index) => `a${index}: __schema { queryType { name } }`).join(' ');

      const reply = await postJson('/graphql', member.token, { query: `{ ${aliases} }` });

      expect(reply.status).toBe(400);
      expect(reply.json.errors?.[0]?.extensions?.limit).toBe('REQUEST_MAX_ROOT_FIELDS');
    });

    it('serves the standard introspection query', async () => {
      const reply = await postJson('/graphql', member.token, { query: getIntrospectionQuery({ descriptions: true, inputValueDeprecation: true }) });

      expect(reply.status).toBe(200);
      expect(reply.json.errors).toBeUndefined();
      expect(reply.json.data.__schema.queryType.name).toBe('Query');
    });

    it('keeps aliases with other arguments', async () => {
      const query = `{ first: events(first: 1) { nodes { id } } second: events(last: 1) { nodes { id } } }`;
      const reply = await postJson('/graphql', member.token, { query });

      expect(reply.status).toBe(200);
      expect(reply.json.errors).toBeUndefined();
      expect(reply.json.data.first.nodes).toHaveLength(1);
      expect(reply.json.data.second.nodes).toHaveLength(1);
    });

    it('keeps a fragment spread twice', async () => {
      const query = `{ events(first: 5) { ...Ids nodes { __typename ...Ids2 } } }
        fragment Ids on EventConnection { nodes { id } }
        fragment Ids2 on Event { id __typename }`;
      const reply = await postJson('/graphql', member.token, { query });

      expect(reply.status).toBe(200);
      expect(reply.json.errors).toBeUndefined();
      expect(reply.json.data.events.nodes).toHaveLength(2);
    });

    it('rejects a subscription', async () => {
      const reply = await postJson('/graphql', member.token, { query: 'subscription { me { id } }' });

      expect(reply.status).toBe(400);
      expect(reply.json.errors?.[0]?.extensions?.reason).toBe('SUBSCRIPTIONS_NOT_SUPPORTED');
    });

    it('rejects an anonymous subscription', async () => {
      const reply = await postJson('/graphql', null, { query: 'subscription { me { id } }' });

      expect(reply.status).toBe(401);
      expect(reply.json.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    });

    it('keeps serving', async () => {
      const response = await server.gql(`{ me { id } }`, {}, member.token);

      expect(response.data?.me.id).toBe(member.id);
    });
  });
});
