/**
 * Errors in GraphQL literals of the DateTime and JSONObject scalars, checked
 * on `src/main.ts` as a real process. There graphql-js is one module
 * instance, so validation reports the scalars' own errors as they are and
 * takes the location from them. Under vitest, Apollo Server loads another
 * instance of graphql-js, which wraps those errors and adds the location
 * itself, so the API tests cannot show a missing one.
 */
import { createInterface } from 'node:readline';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { REPO_ROOT, TSX, killProcessGroup, spawnChild, useTemporaryDirectory } from '../support/cli.js';

const ADMIN = { username: 'admin', password: 'admin-password-1' };

describe('literal errors of a real process', () => {
  const dataDir = useTemporaryDirectory('em-literal-errors-');
  let server: ReturnType<typeof spawnChild> | undefined;
  let url = '';
  let token = '';

  beforeAll(async () => {
    server = spawnChild(TSX, ['src/main.ts'], {
      cwd: REPO_ROOT,
      env: {
        ...(process.env as Record<string, string>),
        DATABASE_URL: '',
        REDIS_URL: '',
        NODE_ENV: 'test',
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: dataDir(),
        ADMIN_USERNAME: ADMIN.username,
        ADMIN_PASSWORD: ADMIN.password,
        PASSWORD_SCRYPT_LOG2_N: '14',
      },
    });
    const { child } = server;
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not start within 60 s')), 60_000);
      createInterface({ input: child.stdout }).on('line', (line) => {
        const match = /serving GraphQL at (http:\/\/[^\s"]+\/graphql)/.exec(line);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
    });
    const login = await gql(`mutation { login(username: "${ADMIN.username}", password: "${ADMIN.password}") { token } }`);
    token = login.data.login.token;
  });

  afterAll(async () => {
    if (server !== undefined) {
      await killProcessGroup(server.child, server.closed);
    }
  });

  async function gql(query: string): Promise<Record<string, any>> {
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(token === '' ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify({ query }),
    });
    return (await response.json()) as Record<string, any>;
  }

  it.each([
    { name: 'an invalid occurredAt', value: '"yesterday"', field: 'occurredAt', reason: 'INVALID_DATE_TIME' },
    { name: 'an occurredAt out of range', value: '"0001-01-01T00:00:00Z"', field: 'occurredAt', reason: 'INSTANT_OUT_OF_RANGE' },
    { name: 'a meta string', value: '"project"', field: 'meta', reason: 'INVALID_JSON_OBJECT' },
  ])('error locates $name', async ({ value, field, reason }) => {
    const document = `mutation {\n  sendEvent(event: { type: "heartbeat", ${field}: ${value} }) { event { id } }\n}`;
    const column = document.split('\n')[1]!.indexOf(value) + 1;
    const response = await gql(document);

    expect(response.errors, 'errors').toHaveLength(1);
    expect(response.errors?.[0]?.extensions?.reason, 'reason').toBe(reason);
    expect(response.errors?.[0]?.locations, 'locations').toEqual([{ line: 2, column }]);
  });
});
