/**
 * The passwords of a GraphQL request, kept for the HTTP request that carries
 * it, so that `formatError` can mask them wherever graphql-js quotes a value
 * that it rejects. graphql-js quotes the whole value of a password argument
 * that is not a string, such as `String cannot represent a non string value:
 * ["..."]`, which the key-based `withoutPasswords` of errors.ts cannot find.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, print, visit, type DocumentNode, type ValueNode } from 'graphql';

import type { GraphQLContext } from './context.js';

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
export const MAX_SECRET_VALUES = 32;

/**
 * The GraphQL request of the running HTTP request, and the texts that its
 * error messages must not contain, as graphql-js prints them. The texts are
 * found only when an error is formatted, so requests without errors cost no
 * more than storing two references.
 */
interface SecretScope {
  request: { document: DocumentNode; variables: Record<string, unknown> | undefined } | null;
  /** Longest first, or null before the first error needs them. */
  secrets: string[] | null;
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
function addVariable(secrets: Set<string>, variable: unknown, isPasswordVariable: boolean): void {
  const stack: Array<{ value: unknown; isPassword: boolean }> = [{ value: variable, isPassword: isPasswordVariable }];
  for (let entry = stack.pop(); entry !== undefined && secrets.size <= MAX_SECRET_VALUES; entry = stack.pop()) {
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
export function recordSecretValues(document: DocumentNode, variables: Record<string, unknown> | undefined): void {
  const scope = secretScope.getStore();
  if (scope !== undefined && scope.request?.document !== document) {
    scope.request = { document, variables };
    scope.secrets = null;
  }
}

/**
 * Returns the password values of a request, from literals and from
 * variables. It stops once it has found more than MAX_SECRET_VALUES.
 */
function findSecretValues(document: DocumentNode, variables: Record<string, unknown> | undefined): Set<string> {
  const secrets = new Set<string>();
  const passwordVariables = new Set<string>();
  const addPasswordValue = (value: ValueNode): void => {
    visit(value, {
      Variable(node) {
        passwordVariables.add(node.name.value);
      },
    });
    addLiteral(secrets, value);
  };
  visit(document, {
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
  for (const [name, value] of Object.entries(variables ?? {})) {
    addVariable(secrets, value, passwordVariables.has(name));
  }
  return secrets;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replaces the recorded password values in `message` with `[redacted]`.
 * A quoted string is replaced wherever it occurs, and an unquoted enum or
 * number only as a whole word, so that a short one does not cut up other words.
 * For a request with more than MAX_SECRET_VALUES of them, it returns a
 * fixed message instead.
 */
export function withoutSecretValues(message: string): string {
  const scope = secretScope.getStore();
  if (scope?.request === null || scope?.request === undefined) {
    return message;
  }
  // Longest first, so that a secret inside another one does not leave the rest of it.
  scope.secrets ??= [...findSecretValues(scope.request.document, scope.request.variables)].sort((a, b) => b.length - a.length);
  const ordered = scope.secrets;
  if (ordered.length > MAX_SECRET_VALUES) {
    return `The message of this error is withheld, because the request has more than ${MAX_SECRET_VALUES} password values to mask in it.`;
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
        async validationDidStart({ document, request }) {
          recordSecretValues(document, request.variables);
        },
        async didResolveOperation({ document, request }) {
          recordSecretValues(document, request.variables);
        },
      };
    },
  };
}
