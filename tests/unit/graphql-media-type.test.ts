import { describe, expect, it } from 'vitest';

import { prefersGraphQLResponseJson } from '../../src/http/graphql-media-type.js';

describe('prefersGraphQLResponseJson', () => {
  const cases: Array<[string | undefined, boolean]> = [
    [undefined, false],
    ['', false],
    ['*/*', false],
    ['application/json', false],
    // Apollo Client 4's HttpLink.
    ['application/graphql-response+json,application/json;q=0.9', true],
    ['application/graphql-response+json, application/json', true],
    ['application/json, application/graphql-response+json', false],
    ['application/graphql-response+json', true],
    ['application/graphql-response+json, */*', true],
    ['application/json;q=0.5, */*', true],
    ['application/*, application/json', false],
    ['application/graphql-response+json;q=0, */*', false],
    ['Application/GraphQL-Response+JSON; Q=1, application/json; q=0.1', true],
  ];

  for (const [accept, expected] of cases) {
    it(`${JSON.stringify(accept)} gives ${expected}`, () => {
      expect(prefersGraphQLResponseJson(accept)).toBe(expected);
    });
  }
});
