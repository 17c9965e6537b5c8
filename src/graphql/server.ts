/**
 * Builds the Apollo Server from `schema.graphql` (the single source of the
 * schema) and the typed resolvers.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginCacheControlDisabled } from '@apollo/server/plugin/disabled';
import { ApolloServerPluginLandingPageLocalDefault } from '@apollo/server/plugin/landingPage/default';

import type { GraphQLContext } from './context.js';
import { createFormatError } from './errors.js';
import {
  createErrorLoggingPlugin,
  createInputStatusPlugin,
  createAnonymousAccessPlugin,
  createLimitsPlugin,
  createNoStorePlugin,
  type RequestLimits,
} from './plugins.js';
import { resolvers } from './resolvers/index.js';

export const SCHEMA_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../schema.graphql');

/**
 * Maximum number of tokens in one GraphQL document. It bounds inline
 * literals and nesting before the recursive parser reads them, so large inputs
 * belong in variables.
 */
export const MAX_DOCUMENT_TOKENS = 20_000;

/** The operation that the Sandbox page opens with: a login whose token the other operations need. */
const SANDBOX_DOCUMENT = `# Log in, then copy the token into the Authorization header in the
# connection settings as: Bearer <token>. Introspection and every other
# operation need it.
mutation Login($username: String!, $password: String!) {
  login(username: $username, password: $password) {
    token
    expiresAt
    user { id username role }
  }
}
`;

export interface GraphQLServerOptions {
  limits: RequestLimits;
  development: boolean;
  /**
   * Whether clients with a valid token may introspect the schema. Apollo
   * Server 5 turns introspection off under NODE_ENV=production unless the
   * option is set.
   */
  introspection: boolean;
  extraPlugins?: ApolloServerPlugin<GraphQLContext>[];
}

export function createGraphQLServer(options: GraphQLServerOptions): ApolloServer<GraphQLContext> {
  const typeDefs = readFileSync(SCHEMA_PATH, 'utf8');
  return new ApolloServer<GraphQLContext>({
    typeDefs,
    resolvers: resolvers as never,
    csrfPrevention: true,
    introspection: options.introspection,
    // The process's own signal handlers drain HTTP and then stop Apollo.
    // Apollo's handler would stop it too and then raise the signal again,
    // which the process would take as a second signal and exit with 1.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: options.development,
    parseOptions: { maxTokens: MAX_DOCUMENT_TOKENS },
    formatError: createFormatError(options.development),
    plugins: [
      createAnonymousAccessPlugin(),
      createLimitsPlugin(options.limits),
      createErrorLoggingPlugin(),
      createInputStatusPlugin(),
      // Apollo's default cache-control plugin wraps every field resolver to
      // compute a cache policy that no type sets. The no-store plugin sets
      // the only header it would set.
      ApolloServerPluginCacheControlDisabled(),
      createNoStorePlugin(),
      // The embedded Apollo Sandbox page, served at GET /graphql to browsers.
      // Tokens travel in the Authorization header, never in cookies, and the
      // page sends no usage data to Apollo. It opens on a login mutation,
      // because introspection and every other field need a token.
      ApolloServerPluginLandingPageLocalDefault({
        embed: { runTelemetry: false, endpointIsEditable: false },
        footer: false,
        includeCookies: false,
        document: SANDBOX_DOCUMENT,
      }),
      ...(options.extraPlugins ?? []),
    ],
  });
}
