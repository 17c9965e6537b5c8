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

import { GraphQLScalarType, Kind, parse, type GraphQLScalarTypeConfig } from 'graphql';

import type { GraphQLContext } from './context.js';
import type { Resolvers } from './generated/types.js';
import { createFormatError } from './errors.js';
import {
  createErrorLoggingPlugin,
  createInputStatusPlugin,
  createAnonymousAccessPlugin,
  createLimitsPlugin,
  createNoStorePlugin,
  createValidationMessagePlugin,
  type RequestLimits,
} from './plugins.js';
import { createReplyBudgetPlugin } from './reply-budget.js';
import { resolvers } from './resolvers/index.js';
import { createSecretValuesPlugin } from './secret-values.js';

export const SCHEMA_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../schema.graphql');

/**
 * Maximum number of tokens in one GraphQL document. It bounds inline
 * literals and nesting before the recursive parser reads them, so large inputs
 * belong in variables.
 */
export const MAX_DOCUMENT_TOKENS = 20_000;

/** Validation errors that one document gets at most; validation stops after them. */
export const MAX_VALIDATION_ERRORS = 100;

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

/**
 * Returns the resolvers with each custom scalar described as in the schema
 * file. The scalars come from graphql-scalars with descriptions of their
 * own, and a scalar passed among the resolvers replaces the description
 * that the schema file gives, so introspection would show the library's text.
 */
function withScalarDescriptions(map: Resolvers, typeDefs: string): Resolvers {
  const described: Record<string, unknown> = { ...map };
  for (const definition of parse(typeDefs).definitions) {
    if (definition.kind !== Kind.SCALAR_TYPE_DEFINITION || definition.description === undefined) {
      continue;
    }
    // Duck-typed: a second copy of graphql, such as its ESM build, fails instanceof.
    const scalar = described[definition.name.value] as { toConfig?: () => GraphQLScalarTypeConfig<unknown, unknown> } | undefined;
    if (typeof scalar?.toConfig === 'function') {
      described[definition.name.value] = new GraphQLScalarType({ ...scalar.toConfig(), description: definition.description.value });
    }
  }
  return described as Resolvers;
}

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
    resolvers: withScalarDescriptions(resolvers, typeDefs) as never,
    csrfPrevention: true,
    introspection: options.introspection,
    // The process's own signal handlers drain HTTP and then stop Apollo.
    // Apollo's handler would stop it too and then raise the signal again,
    // which the process would take as a second signal and exit with 1.
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: options.development,
    parseOptions: { maxTokens: MAX_DOCUMENT_TOKENS },
    validationOptions: { maxErrors: MAX_VALIDATION_ERRORS },
    formatError: createFormatError(options.development),
    plugins: [
      // First, so that the request is recorded before a hook of another
      // plugin raises an error.
      createSecretValuesPlugin(),
      createAnonymousAccessPlugin(),
      createLimitsPlugin(options.limits),
      createErrorLoggingPlugin(),
      createValidationMessagePlugin(MAX_VALIDATION_ERRORS),
      // Listed before the status plugin, so that the status plugin's
      // willSendResponse receives the reply without data.
      createReplyBudgetPlugin(),
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
