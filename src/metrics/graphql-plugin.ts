/**
 * Counts each root field of each GraphQL operation with its outcome in
 * `event_master_graphql_operations_total`.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import type { DocumentNode, FieldNode, GraphQLFormattedError, OperationDefinitionNode } from 'graphql';

import type { GraphQLContext } from '../graphql/context.js';
import { rootFieldsOf } from '../graphql/plugins.js';
import type { AppMetrics } from './metrics.js';

/** The label of the operation and field of a request that failed before validation ended, such as a syntax error. */
const NO_OPERATION = '(none)';

/** Returns the `extensions.code` of an error, or UNKNOWN when it has none. */
function codeOf(error: GraphQLFormattedError): string {
  const code = error.extensions?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/**
 * Returns the root fields that the counter counts by response key: those
 * other than `__typename`, or else the first `__typename` field, so that an
 * operation such as `{ __typename }` counts once.
 */
function countedFieldsOf(
  operation: OperationDefinitionNode,
  document: DocumentNode,
  variables: Record<string, unknown>,
): Array<[string, FieldNode]> {
  const fields = [...rootFieldsOf(operation, document, variables, { typename: true })];
  const named = fields.filter(([, field]) => field.name.value !== '__typename');
  return named.length > 0 ? named : fields.slice(0, 1);
}

/**
 * Builds the plugin. The outcome of a root field is `ok`, or the code of the
 * first error whose path starts at the field's response key, or else of the
 * first error without a path, such as a variable that failed coercion.
 * Apollo Server sets `operation` only on a document that passed validation,
 * so field names come from the schema, a bounded set, and a request that
 * failed earlier counts once with the field `(none)`.
 * NOTE: with incremental delivery (`@defer`), only the errors of the initial
 * payload count.
 */
export function createMetricsPlugin(metrics: AppMetrics): ApolloServerPlugin<GraphQLContext> {
  const counter = metrics.graphqlOperations;
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ operation, document, request, response }) {
          const body = response.body;
          const errors = (body.kind === 'single' ? body.singleResult.errors : body.initialResult.errors) ?? [];
          if (operation === undefined || document === undefined) {
            const outcome = errors[0] === undefined ? 'ok' : codeOf(errors[0]);
            counter.inc({ operation: NO_OPERATION, field: NO_OPERATION, outcome });
            return;
          }
          const requestError = errors.find((error) => error.path === undefined);
          for (const [responseKey, field] of countedFieldsOf(operation, document, request.variables ?? {})) {
            const error = errors.find((candidate) => candidate.path?.[0] === responseKey) ?? requestError;
            counter.inc({
              operation: operation.operation,
              field: field.name.value,
              outcome: error === undefined ? 'ok' : codeOf(error),
            });
          }
        },
      };
    },
  };
}
