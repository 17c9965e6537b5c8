/**
 * The passwords of a GraphQL request, kept for the HTTP request that carries
 * it, so that `formatError` can mask them wherever graphql-js quotes a value
 * that it rejects. graphql-js quotes the whole value of a password argument
 * that is not a string, such as `String cannot represent a non string value:
 * ["..."]`, which the key-based `withoutPasswords` of errors.ts cannot find.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

import type { ApolloServerPlugin } from '@apollo/server';
import {
  Kind,
  print,
  visit,
  type DocumentNode,
  type GraphQLSchema,
  type ValueNode,
} from 'graphql';

import type { GraphQLContext } from './context.js';
import { namedType } from './type-node.js';

/** Names of the arguments and input fields that contain passwords: `password`, `currentPassword`, `newPassword`. */
const PASSWORD_NAME = /password$/i;

const REDACTED = '[redacted]';

/**
 * Maximum number of password texts that a request's error messages are
 * masked for. Each text costs one pass over the message, so a request with
 * 300,000 password values (a list in one variable) held the event loop for
 * several seconds per error. A real request has a few: `login` and
 * `createUser` take one password, and each string literal counts twice.
 * Beyond the maximum, error messages are withheld instead of masked.
 */
const MAX_SECRET_VALUES = 32;

/**
 * Maximum number of values that the walk of a request's password-carrying
 * variables visits. Beyond it, error messages are withheld, as beyond
 * MAX_SECRET_VALUES.
 */
const MAX_VISITED_VALUES = 10_000;

/**
 * The GraphQL request of the running HTTP request, and the texts that its
 * error messages must not contain, as graphql-js prints them. The texts are
 * found only when an error is formatted, so requests without errors cost no
 * more than storing two references.
 */
interface SecretScope {
  request: {
    document: DocumentNode;
    variables: Record<string, unknown> | undefined;
    schema: GraphQLSchema | undefined;
  } | null;
  /** Sorted by length, longer first; null until an error needs them, or 'too many' when there are too many to mask. */
  secrets: string[] | 'too many' | null;
}

const secretScope = new AsyncLocalStorage<SecretScope>();

/** Runs `handle` with a scope in which the request's password values are recorded and masked. */
export function runWithSecretScope<T>(handle: () => Promise<T>): Promise<T> {
  return secretScope.run({ request: null, secrets: null }, handle);
}

/**
 * Adds the printed forms of every scalar in a literal, as validation messages
 * print them. The walk uses an explicit stack, so deep values cannot
 * overflow the call stack.
 */
function addLiteral(secrets: Set<string>, literal: ValueNode): void {
  const stack: ValueNode[] = [literal];
  for (let value = stack.pop(); value !== undefined && secrets.size <= MAX_SECRET_VALUES; value = stack.pop()) {
    switch (value.kind) {
      case Kind.LIST:
        stack.push(...value.values);
        break;
      case Kind.OBJECT:
        stack.push(...value.fields.map((field) => field.value));
        break;
      case Kind.STRING:
        secrets.add(print(value));
        secrets.add(JSON.stringify(value.value));
        break;
      case Kind.ENUM:
      case Kind.INT:
      case Kind.FLOAT:
        secrets.add(value.value);
        break;
      default:
        break;
    }
  }
}

/**
 * Adds the scalars of a variable's value that are passwords, as graphql-js's
 * `inspect` prints them: all of them when the variable is used where a
 * password goes, and else those under a key that names a password. The walk
 * uses an explicit stack, because a variable can nest thousands of levels
 * deep before the request limits reject it.
 */
function addVariable(secrets: Set<string>, variable: unknown, isPasswordVariable: boolean, budget: { visits: number }): void {
  const stack: Array<{ value: unknown; isPassword: boolean }> = [{ value: variable, isPassword: isPasswordVariable }];
  for (let entry = stack.pop(); entry !== undefined && secrets.size <= MAX_SECRET_VALUES; entry = stack.pop()) {
    budget.visits += 1;
    if (budget.visits > MAX_VISITED_VALUES) {
      return;
    }
    const { value, isPassword } = entry;
    if (Array.isArray(value)) {
      for (const item of value) {
        stack.push({ value: item, isPassword });
      }
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) {
        stack.push({ value: item, isPassword: isPassword || PASSWORD_NAME.test(key) });
      }
    } else if (isPassword && typeof value === 'string') {
      secrets.add(JSON.stringify(value));
    } else if (isPassword && typeof value === 'number') {
      secrets.add(String(value));
    }
  }
}

/**
 * Records the document and variables of a request in the scope of the
 * running HTTP request, for `withoutSecretValues`. It does nothing outside
 * `runWithSecretScope`.
 */
export function recordSecretValues(
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  schema: GraphQLSchema | undefined,
): void {
  const scope = secretScope.getStore();
  if (scope !== undefined && scope.request?.document !== document) {
    scope.request = { document, variables, schema };
    scope.secrets = null;
  }
}

const passwordTypesOfSchema = new WeakMap<GraphQLSchema, ReadonlySet<string>>();

/**
 * Returns the names of the input object types that have a password field,
 * directly or in a nested input type. It reads the schema's SDL definitions
 * rather than using graphql-js's type predicates, which throw for a schema
 * built by another copy of the graphql module.
 */
function passwordInputTypes(schema: GraphQLSchema): ReadonlySet<string> {
  const cached = passwordTypesOfSchema.get(schema);
  if (cached !== undefined) {
    return cached;
  }
  const inputTypes: Array<{ name: string; fields: Array<{ name: string; type: string }> }> = [];
  for (const type of Object.values(schema.getTypeMap())) {
    const node = type.astNode;
    if (node?.kind === Kind.INPUT_OBJECT_TYPE_DEFINITION) {
      const fields = (node.fields ?? []).map((field) => ({ name: field.name.value, type: namedType(field.type).name }));
      inputTypes.push({ name: node.name.value, fields });
    }
  }
  const found = new Set<string>();
  // Repeated until no type is added, so that a type nesting another one that has a password field is found too.
  for (let added = true; added; ) {
    added = false;
    for (const type of inputTypes) {
      if (!found.has(type.name) && type.fields.some((field) => PASSWORD_NAME.test(field.name) || found.has(field.type))) {
        found.add(type.name);
        added = true;
      }
    }
  }
  passwordTypesOfSchema.set(schema, found);
  return found;
}

/**
 * Returns the password values of a request, from literals and from the
 * variables that are used where a password goes or whose input type has a
 * password field. Other variables, such as a large report expression, are
 * not walked. Returns 'too many' for more than MAX_SECRET_VALUES values, or
 * for variables of more than MAX_VISITED_VALUES values to walk.
 */
function findSecretValues(
  document: DocumentNode,
  variables: Record<string, unknown> | undefined,
  schema: GraphQLSchema | undefined,
): Set<string> | 'too many' {
  const secrets = new Set<string>();
  const passwordVariables = new Set<string>();
  const variableTypes = new Map<string, string>();
  const addPasswordValue = (value: ValueNode): void => {
    visit(value, {
      Variable(node) {
        passwordVariables.add(node.name.value);
      },
    });
    addLiteral(secrets, value);
  };
  visit(document, {
    VariableDefinition(node) {
      variableTypes.set(node.variable.name.value, namedType(node.type).name);
    },
    Argument(node) {
      if (PASSWORD_NAME.test(node.name.value)) {
        addPasswordValue(node.value);
      }
    },
    ObjectField(node) {
      if (PASSWORD_NAME.test(node.name.value)) {
        addPasswordValue(node.value);
      }
    },
  });
  const passwordTypes = schema === undefined ? new Set<string>() : passwordInputTypes(schema);
  const budget = { visits: 0 };
  for (const [name, value] of Object.entries(variables ?? {})) {
    const type = variableTypes.get(name);
    if (passwordVariables.has(name) || (type !== undefined && passwordTypes.has(type))) {
      addVariable(secrets, value, passwordVariables.has(name), budget);
    }
  }
  return secrets.size > MAX_SECRET_VALUES || budget.visits > MAX_VISITED_VALUES ? 'too many' : secrets;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces the recorded password values in `message` with `[redacted]`.
 * A quoted string is replaced wherever it occurs, and an unquoted enum or
 * number only as a whole word, so that a short one does not cut up other words.
 * For a request with too many of them to mask (see `findSecretValues`), it
 * returns a fixed message instead.
 */
export function withoutSecretValues(message: string): string {
  const scope = secretScope.getStore();
  if (scope?.request === null || scope?.request === undefined) {
    return message;
  }
  if (scope.secrets === null) {
    const { document, variables, schema } = scope.request;
    const found = findSecretValues(document, variables, schema);
    // Longer texts first, so that a secret inside another one does not leave the rest of it.
    scope.secrets = found === 'too many' ? found : [...found].sort((a, b) => b.length - a.length);
  }
  const ordered = scope.secrets;
  if (ordered === 'too many') {
    return 'The message of this error is withheld, because the request has too many password values to mask in it.';
  }
  let masked = message;
  for (const secret of ordered) {
    if (secret.startsWith('"')) {
      masked = masked.replaceAll(secret, `"${REDACTED}"`);
    } else if (secret !== '') {
      masked = masked.replace(new RegExp(`(?<![\\w.-])${escapeRegExp(secret)}(?![\\w.-])`, 'g'), REDACTED);
    }
  }
  return masked;
}

/**
 * Records the document and variables of each request for
 * `withoutSecretValues`: once validation starts, and again once the
 * operation is resolved, for a document that came from Apollo's document
 * cache and skipped validation. Variable values are coerced only after that,
 * during execution.
 */
export function createSecretValuesPlugin(): ApolloServerPlugin<GraphQLContext> {
  return {
    async requestDidStart() {
      return {
        async validationDidStart({ document, request, schema }) {
          recordSecretValues(document, request.variables, schema);
        },
        async didResolveOperation({ document, request, schema }) {
          recordSecretValues(document, request.variables, schema);
        },
      };
    },
  };
}
