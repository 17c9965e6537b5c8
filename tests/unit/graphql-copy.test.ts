/**
 * Vitest must give the source the graphql-js copy that Node gives Apollo
 * Server, its CommonJS build. With two copies, validation wraps the
 * scalars' own GraphQLErrors and adds locations, so API tests would see
 * replies that `npm start` does not send.
 */
import { createRequire } from 'node:module';

import { GraphQLError } from 'graphql';
import { expect, it } from 'vitest';

it('source and Apollo Server share graphql-js', () => {
  const apolloRequire = createRequire(createRequire(import.meta.url).resolve('@apollo/server'));
  const apolloGraphql = apolloRequire('graphql') as { GraphQLError: unknown };

  expect(GraphQLError).toBe(apolloGraphql.GraphQLError);
});
