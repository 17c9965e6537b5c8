/**
 * Apollo Server plugins: request limits checked before GraphQL coerces
 * variables, and logging of every error that is not a client mistake.
 */
import type { ApolloServerPlugin } from '@apollo/server';
import { ApolloServerErrorCode, unwrapResolverError } from '@apollo/server/errors';
import {
  GraphQLError,
  Kind,
  OperationTypeNode,
  print,
  visit,
  type ConstValueNode,
  type DirectiveNode,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type FormattedExecutionResult,
  type GraphQLFormattedError,
  type OperationDefinitionNode,
  type SelectionNode,
  type SelectionSetNode,
  type TypeNode,
} from 'graphql';

import { DomainError, STORED_EVENTS_ADVICE } from '../domain/errors.js';
import { measureExpression, type ExpressionLimits } from '../domain/report/expression.js';
import type { GraphQLContext } from './context.js';
import { checkReportTotals } from './report-totals.js';
import { namedType } from './type-node.js';
import { domainErrorExtensions, isExpectedError, isUnstorableValue, mapStackLines, markLogged, toDomainError, unavailableLogMessage } from './errors.js';

export interface RequestLimits {
  expression: ExpressionLimits;
  maxBatchSize: number;
  /** Maximum number of top-level fields in one operation, each alias counted. */
  maxRootFields: number;
}

/** Returns the fragment definitions of a document by name. */
function fragmentsOf(document: DocumentNode): Map<string, FragmentDefinitionNode> {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) {
      fragments.set(definition.name.value, definition);
    }
  }
  return fragments;
}

/** The variables of a request, and the definitions that give defaults to those it leaves out. */
interface RequestVariables {
  values: Record<string, unknown>;
  operation: OperationDefinitionNode;
}

/** Returns the default value of a variable from its definition, which GraphQL uses when the request leaves the variable out. */
function variableDefault(operation: OperationDefinitionNode, name: string): ConstValueNode | undefined {
  return operation.variableDefinitions?.find((definition) => definition.variable.name.value === name)?.defaultValue;
}

/**
 * Returns the value of a Boolean `if` argument as the request gives it, or
 * null when it is not a Boolean, which coercion then rejects.
 */
function booleanArgument(node: DirectiveNode, variables: RequestVariables): boolean | null {
  const value = node.arguments?.find((argument) => argument.name.value === 'if')?.value;
  if (value?.kind === Kind.BOOLEAN) {
    return value.value;
  }
  if (value?.kind === Kind.VARIABLE) {
    const name = value.name.value;
    if (Object.hasOwn(variables.values, name)) {
      const sent = variables.values[name];
      return typeof sent === 'boolean' ? sent : null;
    }
    const fallback = variableDefault(variables.operation, name);
    return fallback?.kind === Kind.BOOLEAN ? fallback.value : null;
  }
  return null;
}

/**
 * Returns whether a selection runs under its `@skip` and `@include`
 * directives, as GraphQL decides it. A condition that is not a Boolean
 * counts as included: coercion rejects the request later.
 */
function isIncluded(selection: SelectionNode, variables: RequestVariables | null): boolean {
  if (variables === null) {
    return true;
  }
  for (const directive of selection.directives ?? []) {
    const name = directive.name.value;
    if (name === 'skip' && booleanArgument(directive, variables) === true) {
      return false;
    }
    if (name === 'include' && booleanArgument(directive, variables) === false) {
      return false;
    }
  }
  return true;
}

/**
 * Collects the fields of selection sets that GraphQL merges into one, by
 * response key (alias or name), with the fields of inline fragments and of
 * each fragment spread once. Selections that `@skip` or `@include` leave
 * out are not collected, because they do not run.
 */
function fieldsByResponseKey(
  selectionSets: readonly SelectionSetNode[],
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  variables: RequestVariables | null,
): Map<string, FieldNode[]> {
  const fieldsByKey = new Map<string, FieldNode[]>();
  const spread = new Set<string>();
  const collect = (selectionSet: SelectionSetNode): void => {
    for (const selection of selectionSet.selections) {
      if (!isIncluded(selection, variables)) {
        continue;
      }
      if (selection.kind === Kind.FIELD) {
        const key = selection.alias?.value ?? selection.name.value;
        const fields = fieldsByKey.get(key);
        if (fields === undefined) {
          fieldsByKey.set(key, [selection]);
        } else {
          fields.push(selection);
        }
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        collect(selection.selectionSet);
      } else if (!spread.has(selection.name.value)) {
        spread.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment !== undefined) {
          collect(fragment.selectionSet);
        }
      }
    }
  };
  for (const selectionSet of selectionSets) {
    collect(selectionSet);
  }
  return fieldsByKey;
}

/**
 * Returns the top-level fields of an operation by response key (alias or
 * name), fragments included. Fields with the same response key are merged
 * by GraphQL and run once, so they count once. `__typename` is left out
 * unless `options.typename` is true, and `__schema` and `__type` count like
 * any other field. With `variables`, fields that `@skip` or `@include`
 * leave out are left out too; with null, every field counts.
 */
export function rootFieldsOf(
  operation: OperationDefinitionNode,
  document: DocumentNode,
  variables: Record<string, unknown> | null,
  options: { typename?: boolean } = {},
): Map<string, FieldNode> {
  const fields = new Map<string, FieldNode>();
  const requestVariables = variables === null ? null : { values: variables, operation };
  for (const [key, merged] of fieldsByResponseKey([operation.selectionSet], fragmentsOf(document), requestVariables)) {
    const first = merged[0]!;
    if (options.typename === true || first.name.value !== '__typename') {
      fields.set(key, first);
    }
  }
  return fields;
}

/** Counts the events that the sendEvent and sendEvents fields of an operation send. */
function eventsSent(fields: Iterable<FieldNode>, variables: Record<string, unknown>, operation: OperationDefinitionNode): number {
  let count = 0;
  for (const field of fields) {
    if (field.name.value === 'sendEvent') {
      count += 1;
    } else if (field.name.value === 'sendEvents') {
      const argument = field.arguments?.find((candidate) => candidate.name.value === 'events')?.value;
      if (argument?.kind === Kind.LIST) {
        count += argument.values.length;
      } else if (argument?.kind === Kind.VARIABLE) {
        const name = argument.name.value;
        if (Object.hasOwn(variables, name)) {
          const value = variables[name];
          count += Array.isArray(value) ? value.length : 1;
        } else {
          const fallback = variableDefault(operation, name);
          count += fallback?.kind === Kind.LIST ? fallback.values.length : 1;
        }
      }
    }
  }
  return count;
}

/**
 * Rejects operations whose top-level fields together exceed a limit that
 * bounds each field alone: aliases would otherwise multiply the work of one
 * request. Such limits are REQUEST_MAX_ROOT_FIELDS, MAX_BATCH_SIZE and the
 * size limits of report expressions.
 */
function checkRootFields(operation: OperationDefinitionNode, document: DocumentNode, variables: Record<string, unknown>, limits: RequestLimits): void {
  const fields = rootFieldsOf(operation, document, variables);
  if (fields.size > limits.maxRootFields) {
    throw new DomainError(
      'BAD_USER_INPUT',
      'LIMIT_EXCEEDED',
      `REQUEST_MAX_ROOT_FIELDS: the operation has ${fields.size} top-level fields (aliases counted), above the maximum of ${limits.maxRootFields}. Send the fields in separate requests.`,
      { limit: 'REQUEST_MAX_ROOT_FIELDS', value: fields.size, max: limits.maxRootFields },
    );
  }
  checkReportTotals(fields.values(), operation, variables, limits.expression);
  const events = eventsSent(fields.values(), variables, operation);
  if (events > limits.maxBatchSize) {
    throw new DomainError(
      'BAD_USER_INPUT',
      'LIMIT_EXCEEDED',
      `MAX_BATCH_SIZE: the operation sends ${events} events in all, above the maximum of ${limits.maxBatchSize}. Split them over several requests.`,
      { limit: 'MAX_BATCH_SIZE', value: events, max: limits.maxBatchSize },
    );
  }
}

/** Throws REPEATED_FIELD when one field has several response keys in one selection set. */
function rejectRepeats(fieldsByKey: ReadonlyMap<string, readonly FieldNode[]>, path: string): void {
  const keysByName = new Map<string, string[]>();
  for (const [key, fields] of fieldsByKey) {
    const name = fields[0]!.name.value;
    const keys = keysByName.get(name);
    if (keys === undefined) {
      keysByName.set(name, [key]);
    } else {
      keys.push(key);
    }
  }
  for (const [name, keys] of keysByName) {
    if (keys.length > 1) {
      const firstKeys = keys.slice(0, 5).join(', ') + (keys.length > 5 ? ', ...' : '');
      throw new DomainError(
        'BAD_USER_INPUT',
        'REPEATED_FIELD',
        `Field "${name}" is selected under ${keys.length} names (${firstKeys}) in ${path}. Select it once: each alias of the same field repeats its work and its value in the reply.`,
        { field: name, path, aliases: keys.length },
      );
    }
  }
}

/**
 * Rejects an operation that selects one field under several response keys
 * in one selection set below the top level, such as `a: nodes { id }
 * b: nodes { id }`. Each alias runs the field and builds its value again, so
 * a few kilobytes of aliases inside a page of 1,000 nodes would multiply the
 * work and the reply a thousandfold. Below the top level only introspection
 * fields take an argument (`includeDeprecated`), so fields are compared by
 * name, whatever their arguments. Fields that `@skip` or `@include` leave
 * out do not count, as they do not run. REQUEST_MAX_ROOT_FIELDS
 * bounds the aliases of top-level fields instead.
 *
 * Fields with one response key merge as GraphQL merges them, so their
 * selections are checked together. The walk ends at the first repeat, and
 * until then it follows only distinct fields. The application's types form
 * no cycle, and graphql-js 16 validation bounds how deep introspection
 * types, which do, may nest.
 */
export function checkRepeatedFields(operation: OperationDefinitionNode, document: DocumentNode, variables: Record<string, unknown>): void {
  const fragments = fragmentsOf(document);
  const requestVariables = { values: variables, operation };
  const walk = (selectionSets: readonly SelectionSetNode[], path: string, top: boolean): void => {
    const fieldsByKey = fieldsByResponseKey(selectionSets, fragments, requestVariables);
    if (!top) {
      rejectRepeats(fieldsByKey, path);
    }
    for (const [key, fields] of fieldsByKey) {
      const children = fields.flatMap((field) => (field.selectionSet === undefined ? [] : [field.selectionSet]));
      if (children.length > 0) {
        walk(children, `${path}.${key}`, false);
      }
    }
  };
  walk([operation.selectionSet], operation.operation, true);
}


function rejectBeforeCoercion(error: DomainError): never {
  throw new GraphQLError(error.message, {
    extensions: { ...domainErrorExtensions(error), http: { status: 400 } },
  });
}

/**
 * Rejects a mutation that sends null for a variable with a default value
 * that a `@skip` or `@include` condition uses, such as `$s: Boolean = true`
 * in `@skip(if: $s)`. Validation accepts the variable because of its
 * default, and graphql-js fails only when it reaches the directive. In the
 * selection of a mutation field that is after the field ran, so the reply
 * would be an error that hides the events it stored. Fields below the root
 * take no arguments in this schema, so directives are the only such use.
 */
function checkNullConditions(operation: OperationDefinitionNode, document: DocumentNode, variables: Record<string, unknown>): void {
  const sentNull = new Set(
    (operation.variableDefinitions ?? [])
      .filter((definition) => definition.defaultValue !== undefined && variables[definition.variable.name.value] === null)
      .map((definition) => definition.variable.name.value),
  );
  if (sentNull.size === 0) {
    return;
  }
  const fragments = fragmentsOf(document);
  const visited = new Set<string>();
  const pending: Array<OperationDefinitionNode | FragmentDefinitionNode> = [operation];
  for (let node = pending.pop(); node !== undefined; node = pending.pop()) {
    visit(node, {
      FragmentSpread(spread) {
        const fragment = fragments.get(spread.name.value);
        if (fragment !== undefined && !visited.has(spread.name.value)) {
          visited.add(spread.name.value);
          pending.push(fragment);
        }
      },
      Directive(directive) {
        for (const argument of directive.arguments ?? []) {
          if (argument.value.kind === Kind.VARIABLE && sentNull.has(argument.value.name.value)) {
            throw new DomainError(
              'BAD_USER_INPUT',
              'INVALID_VARIABLE',
              `Variable "$${argument.value.name.value}" is null, but @${directive.name.value}(${argument.name.value}:) ` +
                'requires true or false. Send a Boolean, or leave the variable out to use its default. Nothing was stored.',
            );
          }
        }
      },
    });
  }
}

/** Rejects oversized or deeply nested set expressions, and oversized event lists, sent as variables. */
function checkVariables(operation: OperationDefinitionNode, variables: Record<string, unknown>, limits: RequestLimits): void {
  for (const definition of operation.variableDefinitions ?? []) {
    const value = variables[definition.variable.name.value];
    if (value === undefined || value === null) {
      continue;
    }
    const type = namedType(definition.type);
    if (type.name === 'SetExpression' || type.name === 'DifferenceInput') {
      // DifferenceInput is the other recursive input type: measure it
      // as the difference node it becomes.
      const values = type.list && Array.isArray(value) ? value : [value];
      for (const item of values) {
        measureExpression(type.name === 'SetExpression' ? item : { difference: item }, limits.expression);
      }
    } else if (type.name === 'EventInput' && type.list && Array.isArray(value) && value.length > limits.maxBatchSize) {
      throw new DomainError(
        'BAD_USER_INPUT',
        'LIMIT_EXCEEDED',
        `MAX_BATCH_SIZE: the batch has ${value.length} events, above the maximum of ${limits.maxBatchSize}. Split it into smaller batches.`,
        { limit: 'MAX_BATCH_SIZE', value: value.length, max: limits.maxBatchSize },
      );
    }
  }
}

/**
 * Rejects a subscription operation, which graphql-js validates against a
 * schema without a Subscription type and then fails to run as an internal
 * error. Without a token it gets 401, as every field but `login` does.
 */
function rejectSubscription(context: GraphQLContext): never {
  if (context.viewer === null) {
    const authError = authenticationError(context);
    throw new GraphQLError(authError.message, {
      extensions: { ...domainErrorExtensions(authError), http: { status: authenticationStatus(authError) } },
    });
  }
  rejectBeforeCoercion(
    new DomainError(
      'BAD_USER_INPUT',
      'SUBSCRIPTIONS_NOT_SUPPORTED',
      'This service has no subscriptions. Send queries and mutations, and poll `events` or `segments` for changes.',
    ),
  );
}

/**
 * Rejects oversized or deeply nested set expressions and oversized event
 * batches sent as variables, before GraphQL's coercion walks them
 * recursively. Inline literals are bounded by the parser's token limit and
 * checked again when the expression is built.
 */
export function createLimitsPlugin(limits: RequestLimits): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didResolveOperation({ request, operation, document, contextValue }) {
          if (operation === undefined) {
            return;
          }
          if (operation.operation === OperationTypeNode.SUBSCRIPTION) {
            rejectSubscription(contextValue);
          }
          const variables = request.variables ?? {};
          try {
            if (operation.operation === OperationTypeNode.MUTATION) {
              checkNullConditions(operation, document, variables);
            }
            checkVariables(operation, variables, limits);
            checkRootFields(operation, document, variables, limits);
            checkRepeatedFields(operation, document, variables);
          } catch (error) {
            if (error instanceof DomainError) {
              rejectBeforeCoercion(error);
            }
            throw error;
          }
        },
      };
    },
  };
}

/** Logs unexpected errors whole, and dependency failures, with the request id. */
export function createErrorLoggingPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors, contextValue, operationName }) {
          for (const error of errors) {
            const original = unwrapResolverError(error);
            const domain = toDomainError(original);
            if (domain?.kind === 'SERVICE_UNAVAILABLE') {
              contextValue.logger.warn(
                { err: original, operationName, path: error.path },
                unavailableLogMessage('request failed', domain),
              );
            } else if (isUnstorableValue(original)) {
              contextValue.logger.warn(
                { err: original, operationName, path: error.path },
                'the database rejected a request value that input validation let through',
              );
            } else if (!isExpectedError(error)) {
              contextValue.logger.error(
                { err: original, operationName, path: error.path },
                'unexpected error in a GraphQL request',
              );
              markLogged(original);
            }
          }
        },
      };
    },
  };
}

/** Reasons of input errors that reject the whole request, like a malformed request would be. */
const REQUEST_LEVEL_REASONS = new Set([
  'LIMIT_EXCEEDED',
  'INVALID_VARIABLE',
  'INVALID_WINDOW',
  'INVALID_EXPRESSION',
  'INVALID_TIME_ZONE',
  'INVALID_USER_ID',
  'INVALID_GROUP_USERS',
  'INVALID_FILTER',
  'INVALID_PAGE_SIZE',
  'INVALID_PAGINATION',
  'INVALID_CURSOR',
]);

/** Returns whether a reply carries no data: no `data` at all, or null in every root field. */
function carriesNoData(data: Record<string, unknown> | null | undefined): boolean {
  return data === null || data === undefined || Object.values(data).every((value) => value === null);
}

/** Returns the HTTP status of a reply without data whose errors are all of one kind, or null for 200. */
export function statusOfFailure(
  errors: ReadonlyArray<{ extensions?: Record<string, unknown>; path?: ReadonlyArray<string | number> }>,
  mutation = false,
): number | null {
  const all = (test: (code: unknown, reason: unknown) => boolean) =>
    errors.every((error) => test(error.extensions?.code, error.extensions?.reason));
  if (all((code, reason) => code === 'BAD_USER_INPUT' && REQUEST_LEVEL_REASONS.has(String(reason)))) {
    return 400;
  }
  if (all((_code, reason) => reason === 'RATE_LIMITED')) {
    return 429;
  }
  if (all((code) => code === 'UNAUTHENTICATED')) {
    return 401;
  }
  if (all((code) => code === 'FORBIDDEN')) {
    return 403;
  }
  // A busy or moved user lock is no outage, and a retry after stored events
  // would store them again, so those keep 200. So does an error below a
  // mutation's root field, because the mutation did its work before it.
  if (
    errors.every(
      (error) =>
        error.extensions?.code === 'SERVICE_UNAVAILABLE' &&
        OUTAGE_REASONS.has(String(error.extensions.reason)) &&
        error.extensions.eventsStored !== true &&
        (!mutation || error.path === undefined || error.path.length <= 1),
    )
  ) {
    return 503;
  }
  return null;
}

/** Root fields whose resolver stores events before it returns. */
const INTAKE_ROOT_FIELDS = new Set(['sendEvent', 'sendEvents']);

/**
 * Marks with `eventsStored` the errors that come after a `sendEvent` or
 * `sendEvents` resolver returned. In a mutation these are the errors of
 * every root field that runs after it, because graphql-js runs the fields
 * in document order and stops at the first that fails. Below such a field,
 * only SERVICE_UNAVAILABLE errors raised while its reply is read are marked.
 */
function markErrorsAfterIntake(
  errors: readonly GraphQLFormattedError[],
  rootFields: ReadonlyMap<string, FieldNode>,
  mutation: boolean,
): GraphQLFormattedError[] {
  const keys = [...rootFields.keys()];
  const firstIntake = keys.findIndex((key) => INTAKE_ROOT_FIELDS.has(rootFields.get(key)!.name.value));
  return errors.map((error) => {
    const key = error.path?.[0];
    const field = typeof key === 'string' ? rootFields.get(key) : undefined;
    const belowIntake =
      error.path !== undefined && error.path.length > 1 && field !== undefined && INTAKE_ROOT_FIELDS.has(field.name.value);
    // Mutation fields run one after another, in document order.
    const afterIntake = mutation && firstIntake >= 0 && typeof key === 'string' && keys.indexOf(key) > firstIntake;
    if (error.extensions?.eventsStored === true) {
      return error;
    }
    if (afterIntake && error.extensions?.code !== 'SERVICE_UNAVAILABLE') {
      // A rejected batch, for example, reports that nothing was stored. That
      // is true of its own field only, and the reply has no data.
      return {
        ...error,
        message: `${error.message} The earlier sendEvent or sendEvents fields of this request ran before this error, so their events are stored. ${STORED_EVENTS_ADVICE}`,
        extensions: { ...error.extensions, eventsStored: true },
      };
    }
    if (!(belowIntake || afterIntake) || error.extensions?.code !== 'SERVICE_UNAVAILABLE') {
      return error;
    }
    return {
      ...error,
      message: `${error.message} Events of this request may have been stored before the failure. ${STORED_EVENTS_ADVICE}`,
      extensions: { ...error.extensions, eventsStored: true },
    };
  });
}

/** Reasons of SERVICE_UNAVAILABLE that mean PostgreSQL or Redis did not respond, or the server is stopping. */
const OUTAGE_REASONS = new Set(['REDIS_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE', 'STORE_CLOSED']);

/**
 * Sets the HTTP status of a reply that carries no data when all its errors
 * are of one kind. A limit or an invalid query argument gets 400, the status of
 * a limit found before execution. A missing or invalid token gets 401, an
 * operation the role does not allow 403, a rate-limited password check 429 with
 * Retry-After, and PostgreSQL or Redis not responding 503 with Retry-After,
 * unless a mutation did its work before. A reply with any data, or with
 * mixed errors, keeps GraphQL's usual 200.
 */
export function createInputStatusPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ request, response, operation, document }) {
          if (response.body.kind !== 'single') {
            return;
          }
          if (operation !== undefined && operation !== null && document !== undefined && response.body.singleResult.errors !== undefined) {
            response.body.singleResult.errors = markErrorsAfterIntake(
              response.body.singleResult.errors,
              rootFieldsOf(operation, document, request.variables ?? {}),
              operation.operation === 'mutation',
            );
          }
          const { data, errors } = response.body.singleResult;
          if (errors === undefined || errors.length === 0 || !carriesNoData(data)) {
            return;
          }
          // Mutation fields are non-null and run in turn, so a reply without
          // data may follow fields that stored something. Its status stays 200
          // unless the operation had only one field.
          if (operation?.operation === 'mutation' && document !== undefined && rootFieldsOf(operation, document, request.variables ?? {}).size > 1) {
            return;
          }
          const status = statusOfFailure(errors, operation?.operation === 'mutation');
          if (status === null) {
            return;
          }
          response.http.status = status;
          if (status === 503) {
            response.http.headers.set('retry-after', '1');
          }
          if (status === 429) {
            const waits = errors.map((error) => Number(error.extensions?.retryAfterSeconds ?? 0));
            response.http.headers.set('retry-after', String(Math.max(1, Math.ceil(Math.max(...waits)))));
          }
        },
      };
    },
  };
}

/** Returns whether a document selects `__schema` or `__type`, in any operation or fragment. */
function asksForSchema(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    Field(node) {
      if (node.name.value === '__schema' || node.name.value === '__type') {
        found = true;
      }
    },
  });
  return found;
}

/** The message with which graphql-js 16 ends the errors of a document that reached `maxErrors`. */
const VALIDATION_ABORTED_MESSAGE = 'Too many validation errors, error limit reached. Validation aborted.';

/**
 * The message of the error with which graphql-js 16.15 stops validating a
 * document whose checks would take too long. Its budgets are 500,000 steps
 * of comparing fields that share a response name, summed over the whole
 * document, and 50,000 steps of following fragment spreads. graphql-js
 * throws one shared error object for it.
 */
const VALIDATION_BUDGET_MESSAGE = 'Validation aborted.';

/** The validation message of graphql-js 16 for `@defer` and `@stream`, which this schema does not declare. */
const INCREMENTAL_DIRECTIVE_MESSAGE = /^Unknown directive "@(defer|stream)"\.$/;

/** The `validationErrorCode` of Apollo Server 5's error for `__schema` or `__type` while introspection is off. */
const INTROSPECTION_DISABLED_CODE = 'INTROSPECTION_DISABLED';

/**
 * Rewrites four validation messages of graphql-js 16 and Apollo Server 5 that
 * leave the client guessing. The last error of a document whose validation
 * stopped at `maxErrors` names that limit. So does the bare "Validation
 * aborted." of a document that needs too much work to check, such as one that
 * selects `id` 2,000 times in one selection set. An error for `@defer` or
 * `@stream` states that incremental delivery is not supported: graphql-js 16
 * has none, so Apollo Server 5 cannot send a `multipart/mixed` reply, and the
 * directives are unknown. Apollo's error for introspection while it is off
 * tells the reader to pass an option to ApolloServer, so it names the
 * setting GRAPHQL_INTROSPECTION instead.
 */
export function createValidationMessagePlugin(maxErrors: number): ApolloServerPlugin<GraphQLContext> {
  const rewrite = (error: { message: string }): void => {
    if (error.message === VALIDATION_ABORTED_MESSAGE) {
      error.message = `Validation stopped after ${maxErrors} errors, the most that one document gets. Correct the errors listed and send the document again.`;
      return;
    }
    // No `instanceof GraphQLError`, which is false when Apollo Server's graphql-js is another module instance.
    const { extensions } = error as { extensions?: Record<string, unknown> };
    if (extensions?.validationErrorCode === INTROSPECTION_DISABLED_CODE) {
      error.message =
        'Introspection (__schema and __type) is turned off on this server, because GRAPHQL_INTROSPECTION is false. ' +
        'Remove those fields, or load the schema from the file schema.graphql of the Event Master repository.';
      extensions.reason = INTROSPECTION_DISABLED_CODE;
      return;
    }
    if (INCREMENTAL_DIRECTIVE_MESSAGE.test(error.message)) {
      error.message = `${error.message} This server does not support incremental delivery (@defer and @stream). Remove the directive to get every field in one reply.`;
      if (extensions !== undefined) {
        extensions.reason = 'INCREMENTAL_DELIVERY_NOT_SUPPORTED';
      }
    }
  };
  return {
    async requestDidStart() {
      return {
        async validationDidStart() {
          return async (errors) => {
            if (errors === undefined) {
              return;
            }
            // Apollo Server 5 builds its reply from this array after the hook.
            const editable = errors as GraphQLError[];
            editable.forEach((error, index) => {
              if (error.message === VALIDATION_BUDGET_MESSAGE) {
                // Replaced, not changed, because graphql-js shares this error object between documents.
                editable[index] = new GraphQLError(
                  'Validation stopped because the document takes too much work to check: graphql-js allows one document ' +
                    '500,000 steps of comparing fields that share a response name (alias or name) and the fragments that ' +
                    'hold them, over all its selection sets, and 50,000 steps of following fragment spreads. Select each ' +
                    'field once, and spread fewer fragments.',
                  { extensions: { reason: 'VALIDATION_BUDGET_EXCEEDED' } },
                );
                return;
              }
              rewrite(error);
            });
          };
        },
      };
    },
  };
}

/**
 * Marks every GraphQL reply `Cache-Control: no-store`: replies carry one
 * user's data. Apollo's cache-control plugin, which would set the same
 * header, is disabled because it wraps every field resolver.
 */
export function createNoStorePlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async willSendResponse({ response }) {
          response.http.headers.set('cache-control', 'no-store');
        },
      };
    },
  };
}

/** Root fields that a request without a token may select. */
const ANONYMOUS_ROOT_FIELDS = new Set(['login', '__typename']);

/** Returns whether every operation of a document selects only fields open to requests without a token. */
function selectsOnlyAnonymousFields(document: DocumentNode): boolean {
  return document.definitions.every(
    (definition) =>
      definition.kind !== Kind.OPERATION_DEFINITION ||
      // Every field counts, whatever its directives, so that no condition lets a field run without a token.
      [...rootFieldsOf(definition, document, null).values()].every((field) => ANONYMOUS_ROOT_FIELDS.has(field.name.value)),
  );
}

/** Variable types and directives that a `login` or `{ __typename }` request can need. */
const ANONYMOUS_TYPE_NAMES = new Set(['String', 'Boolean']);
const ANONYMOUS_DIRECTIVES = new Set(['skip', 'include']);

/**
 * Returns whether a document names types or directives beyond those a
 * request without a token needs: a fragment (its type condition), an inline
 * fragment with a type condition, a variable of another type, or another
 * directive. Validation errors about such names would tell whether they exist.
 */
function namesOtherSchemaParts(document: DocumentNode): boolean {
  let found = false;
  visit(document, {
    FragmentDefinition() {
      found = true;
    },
    InlineFragment(node) {
      if (node.typeCondition !== undefined) {
        found = true;
      }
    },
    VariableDefinition(node) {
      let type: TypeNode = node.type;
      while (type.kind !== Kind.NAMED_TYPE) {
        type = type.type;
      }
      if (!ANONYMOUS_TYPE_NAMES.has(type.name.value)) {
        found = true;
      }
    },
    Directive(node) {
      if (!ANONYMOUS_DIRECTIVES.has(node.name.value)) {
        found = true;
      }
    },
  });
  return found;
}

/** Removes the `Did you mean ...?` suggestions that graphql-js appends to validation messages. */
function withoutSuggestions(message: string): string {
  return message.replace(/ Did you mean [^?]*\?$/, '');
}

const AUTHENTICATION_REQUIRED = 'Authentication required: send a bearer token from `login` in the Authorization header.';

/**
 * Returns why a request has no viewer. A token that failed verification
 * keeps its own error, such as INVALID_TOKEN or a database outage, and a
 * request without one gets MISSING_TOKEN.
 */
function authenticationError(context: GraphQLContext): DomainError {
  return context.authError ?? new DomainError('UNAUTHENTICATED', 'MISSING_TOKEN', AUTHENTICATION_REQUIRED);
}

/** Returns the HTTP status of an authentication error: 401, or 503 when the token could not be checked. */
function authenticationStatus(error: DomainError): number {
  return error.kind === 'UNAUTHENTICATED' ? 401 : 503;
}

/** Returns `result` with the stack traces of its PERSISTED_QUERY_NOT_FOUND errors removed. */
function withoutPersistedQueryStacktraces(result: FormattedExecutionResult): FormattedExecutionResult {
  if (result.errors?.some((error) => error.extensions?.code === ApolloServerErrorCode.PERSISTED_QUERY_NOT_FOUND) !== true) {
    return result;
  }
  const errors = result.errors.map((error) => {
    if (error.extensions?.code !== ApolloServerErrorCode.PERSISTED_QUERY_NOT_FOUND) {
      return error;
    }
    const { stacktrace: _stacktrace, ...extensions } = error.extensions;
    return { ...error, extensions };
  });
  return { ...result, errors };
}

/**
 * Hides the schema from requests without a token, which may use only `login`
 * and `{ __typename }`. Introspection requires a valid token, and Apollo
 * Sandbox loads the schema once an Authorization header is set in its
 * connection settings. A document with an operation that selects other
 * root fields gets UNAUTHENTICATED before it runs, with the same reply that
 * an invalid document selecting them gets, so the reply does not tell which
 * root fields exist. Validation errors of a `login` document lose the similar names that
 * GraphQL suggests, and one that names other types or directives gets
 * UNAUTHENTICATED too. Such a document sent as a persisted-query hash alone
 * gets PERSISTED_QUERY_NOT_FOUND instead.
 */
export function createAnonymousAccessPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      let stopped = false;
      return {
        async didResolveOperation({ contextValue, document, operation }) {
          if (contextValue.viewer !== null) {
            return;
          }
          // Every operation of the document counts, not only the one that
          // runs, because validation covers them all: a valid operation for
          // signed-in use beside a `login` would tell that its fields exist.
          if (operation !== undefined && selectsOnlyAnonymousFields(document) && !asksForSchema(document)) {
            return;
          }
          stopped = true;
          // This stops the execution, and willSendResponse replaces the reply.
          throw new GraphQLError(AUTHENTICATION_REQUIRED, {
            extensions: { code: 'UNAUTHENTICATED', reason: 'MISSING_TOKEN', http: { status: 401 } },
          });
        },
        async willSendResponse({ contextValue, document, request, response }) {
          if (contextValue.viewer !== null || response.body.kind !== 'single') {
            return;
          }
          if (document === undefined) {
            // Apollo's error for an unknown hash carries a stack trace under
            // NODE_ENV=development, and the one below for a registered hash does not.
            response.body.singleResult = withoutPersistedQueryStacktraces(response.body.singleResult);
            return;
          }
          if (stopped && request.query === undefined) {
            // The document came from the persisted-query cache by its hash
            // alone. A 401 would tell that someone has run it, so the reply
            // is the one for an unknown hash, and a client then sends the
            // text and gets the 401.
            response.body.singleResult = {
              errors: [{ message: 'PersistedQueryNotFound', extensions: { code: ApolloServerErrorCode.PERSISTED_QUERY_NOT_FOUND } }],
            };
            response.http.status = 200;
            return;
          }
          const errors = response.body.singleResult.errors;
          const failedValidation =
            errors?.some((error) => error.extensions?.code === ApolloServerErrorCode.GRAPHQL_VALIDATION_FAILED) === true;
          if (!stopped && !failedValidation) {
            return;
          }
          if (failedValidation && selectsOnlyAnonymousFields(document) && !namesOtherSchemaParts(document)) {
            // The selection can still misspell a field of the login result,
            // and GraphQL would suggest the names it has.
            response.body.singleResult = {
              ...response.body.singleResult,
              errors: (errors ?? []).map((error) =>
                mapStackLines({ ...error, message: withoutSuggestions(error.message) }, withoutSuggestions),
              ),
            };
            return;
          }
          const authError = authenticationError(contextValue);
          response.body.singleResult = {
            errors: [{ message: authError.message, extensions: domainErrorExtensions(authError) }],
          };
          response.http.status = authenticationStatus(authError);
        },
      };
    },
  };
}
