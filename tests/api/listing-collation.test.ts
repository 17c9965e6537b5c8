/**
 * The name order of `pairTypes` and `autoClosePreferences` on a database
 * whose default collation is not C, as with the official postgres image,
 * whose default locale is en_US.utf8. The order must not change with the
 * database's collation.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { dataOf } from '../support/replay.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

/** Names whose code point order differs from their order in English collation. */
const NAMES = ['Zeta', 'alpha', 'beta-1', 'beta.1', 'beta_1', 'Beta2', 'beta1'];

function compareCodeUnits(a: string, b: string): number {
  if (a < b) {
    return -1;
  }
  return a > b ? 1 : 0;
}

function codePointOrder(names: readonly string[]): string[] {
  return [...names].sort(compareCodeUnits);
}

describeWithPostgres('listing order on an ICU database', () => {
  let database: TestDatabase;
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl()!, { prefix: 'em_test_icu', icuLocale: 'en-US' });
    server = await startTestServer(import.meta.filename, { databaseUrl: database.url, sweeper: false, replays: false });
    token = await server.adminToken();
    for (const name of NAMES) {
      const defined = await server.gql(
        `mutation ($name: String!, $start: String!, $end: String!) {
          definePairType(input: { name: $name, startType: $start, endType: $end }) { name }
        }`,
        { name, start: `${name}_started`, end: `${name}_ended` },
        token,
      );
      dataOf(defined, 'definePairType');
      const preference = await server.gql(
        `mutation ($name: String!) {
          setAutoClosePreference(input: { pairType: $name, timeoutSeconds: 60, endAt: DEADLINE }) { id }
        }`,
        { name },
        token,
      );
      dataOf(preference, 'setAutoClosePreference');
    }
  });

  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });

  it('database collation is not code point order', async () => {
    const pg = (await import('pg')).default;
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const result = await client.query<{ name: string }>('SELECT name FROM unnest($1::text[]) AS t(name) ORDER BY name', [NAMES]);
      expect(result.rows.map((row) => row.name)).not.toEqual(codePointOrder(NAMES));
    } finally {
      await client.end();
    }
  });

  it('pairTypes come in code point order', async () => {
    const response = await server.gql(`{ pairTypes { name } }`, {}, token);
    const names = (dataOf(response, 'pairTypes').pairTypes as Array<{ name: string }>).map((type) => type.name);

    expect(names).toEqual(codePointOrder([...NAMES, 'session', 'task']));
  });

  it('preferences come in code point order', async () => {
    const response = await server.gql(`{ autoClosePreferences { pairType } }`, {}, token);
    const names = (dataOf(response, 'autoClosePreferences').autoClosePreferences as Array<{ pairType: string }>).map(
      (preference) => preference.pairType,
    );

    expect(names).toEqual(codePointOrder(NAMES));
  });
});
