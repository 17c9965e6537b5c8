/** Masking of password values in error messages, and its cost on large variables. */
import { buildSchema, parse } from 'graphql';
import { describe, expect, it } from 'vitest';

import { recordSecretValues, runWithSecretScope, withoutSecretValues } from '../../src/graphql/secret-values.js';

const SCHEMA = buildSchema(`
  input Filter { tags: [String!] }
  input Credentials { username: String!, password: String! }
  input Signup { credentials: Credentials! }
  type Query { find(filter: Filter): Int, signup(input: Signup!): Int }
`);

/** Returns `message` as `withoutSecretValues` masks it for one request. */
function maskFor(query: string, variables: Record<string, unknown>, message: string): Promise<string> {
  return runWithSecretScope(async () => {
    recordSecretValues(parse(query), variables, SCHEMA);
    return withoutSecretValues(message);
  });
}

describe('withoutSecretValues', () => {
  it('masks a password in a nested input type', async () => {
    const query = 'query ($input: Signup!) { signup(input: $input) }';
    const variables = { input: { credentials: { username: 'ann', password: ['Nested-Secret-1'] } } };
    const masked = await maskFor(query, variables, 'got invalid value ["Nested-Secret-1"]');

    expect(masked).toBe('got invalid value ["[redacted]"]');
  });

  it('skips a large variable without passwords', async () => {
    const query = 'query ($filter: Filter) { find(filter: $filter) }';
    const keys: Record<string, number> = {};
    for (let index = 0; index < 1_000; index += 1) {
      keys[`key${index}`] = index;
    }
    // Counts every read of the variable's keys or values, so the test shows
    // that the walk leaves it alone without timing it.
    let reads = 0;
    const filter = new Proxy(keys, {
      ownKeys(target) {
        reads += 1;
        return Reflect.ownKeys(target);
      },
      get(target, key, receiver) {
        reads += 1;
        return Reflect.get(target, key, receiver);
      },
    });
    const masked = await maskFor(query, { filter }, 'filter has too many keys');

    expect(masked, 'message').toBe('filter has too many keys');
    expect(reads, 'reads of the filter').toBe(0);
  });

  it('withholds the message past the walk budget', async () => {
    const query = 'query ($input: Signup!) { signup(input: $input) }';
    const extra = Array.from({ length: 20_000 }, (_, index) => index);
    const variables = { input: { credentials: { username: 'ann', password: 'Budget-Secret-2' }, extra } };
    const masked = await maskFor(query, variables, 'got "Budget-Secret-2"');

    expect(masked).toContain('withheld');
  });
});
