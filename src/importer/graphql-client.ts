/**
 * A small GraphQL client over `fetch` with the operations the importer needs.
 * Errors keep the server's `extensions` (code, reason, invalid items). The
 * token is sent only in the authorization header and is left out of every
 * error message, and a password in the server URL is masked as `***`.
 */

import { redactUrlPassword } from '../config/redact.js';
import type { AutoClosePolicyInput, DefinePairTypeInput, EventInput } from './types.js';

export type Role = 'MEMBER' | 'ANALYST' | 'ADMIN';

export interface UserSummary {
  id: string;
  username: string;
  role: Role;
}

export interface PairTypeSummary {
  name: string;
  startType: string;
  endType: string;
  parent: string | null;
  autoClose: AutoClosePolicyInput;
}

export interface SendEventsSummary {
  storedCount: number;
  duplicateCount: number;
}

/** The API field that each of the importer's operations calls, for error messages. */
const OPERATION_FIELDS: Readonly<Record<string, string>> = {
  ImportLogin: 'login',
  ImportMe: 'me',
  ImportUsers: 'users',
  ImportPairTypes: 'pairTypes',
  ImportDefinePairType: 'definePairType',
  ImportCreateUser: 'createUser',
  ImportSendEvents: 'sendEvents',
  ImportStoredEvents: 'events',
};

/** Names an operation in an error message by the API field it calls, such as "the login request". */
function describeOperation(operation: string): string {
  return `the ${OPERATION_FIELDS[operation] ?? operation} request`;
}

/** One entry of a GraphQL response's `errors` list. */
export interface GraphQLErrorEntry {
  message: string;
  path?: readonly (string | number)[];
  extensions?: Record<string, unknown>;
}

/** A GraphQL response that carried errors, or an HTTP failure without a GraphQL body. */
export class GraphQLRequestError extends Error {
  /** `extensions.code` of the first error, or `HTTP_<status>` when the body had no errors list. */
  readonly code: string;
  /** `extensions.reason` of the first error, when present. */
  readonly reason: string | null;
  readonly httpStatus: number;
  readonly errors: readonly GraphQLErrorEntry[];

  constructor(operation: string, httpStatus: number, errors: readonly GraphQLErrorEntry[]) {
    const first = errors[0];
    const firstCode = first?.extensions?.code;
    const resolvedCode = typeof firstCode === 'string' ? firstCode : `HTTP_${httpStatus}`;
    const detail = first?.message ?? `HTTP status ${httpStatus}`;
    super(`${describeOperation(operation)} failed (${resolvedCode}): ${detail}`);
    this.name = 'GraphQLRequestError';
    this.code = resolvedCode;
    const reason = first?.extensions?.reason;
    this.reason = typeof reason === 'string' ? reason : null;
    this.httpStatus = httpStatus;
    this.errors = errors;
  }

  /** Extensions of the first error, or an empty object. */
  get extensions(): Record<string, unknown> {
    return this.errors[0]?.extensions ?? {};
  }
}

/** The request never produced an HTTP response: refused, reset, timed out or aborted. */
export class NetworkError extends Error {
  constructor(operation: string, url: string, cause: unknown) {
    const detail = redactUrlIn(describeCause(cause), url);
    super(`${describeOperation(operation)} could not reach ${redactUrlPassword(url)}: ${detail}`, { cause });
    this.name = 'NetworkError';
  }
}

/**
 * Error codes of a TLS handshake that fails the same way on every attempt:
 * OpenSSL's, such as ERR_SSL_WRONG_VERSION_NUMBER for https:// to a plain
 * HTTP port, and Node's certificate checks, such as
 * DEPTH_ZERO_SELF_SIGNED_CERT or ERR_TLS_CERT_ALTNAME_INVALID.
 */
const TLS_FAILURE_CODE = /^ERR_SSL_|^ERR_TLS_CERT_ALTNAME_INVALID$|^CERT_|^UNABLE_TO_|SELF_SIGNED/;

/**
 * The TLS handshake failed, for example for https:// against a server
 * without TLS or for a certificate that Node does not trust. Sending again
 * fails the same way, so it is never retried.
 */
export class TlsError extends Error {
  constructor(operation: string, url: string, code: string, cause: unknown) {
    super(
      `${describeOperation(operation)} to ${redactUrlPassword(url)} failed in the TLS handshake (${code}). ` +
        'Use http:// in --url for a server without TLS, or make Node trust its certificate, ' +
        'for example with NODE_EXTRA_CA_CERTS',
      { cause },
    );
    this.name = 'TlsError';
  }
}

/** Returns the code of a `fetch` failure's TLS handshake error, or null for other failures. */
function tlsFailureCode(error: unknown): string | null {
  const code = (error as { cause?: { code?: unknown } } | null)?.cause?.code;
  return typeof code === 'string' && TLS_FAILURE_CODE.test(code) ? code : null;
}

/**
 * `fetch` rejected the request before sending it, for example because its URL
 * contains credentials. Sending it again fails the same way, so it is never
 * retried.
 */
export class InvalidRequestError extends Error {
  constructor(operation: string, url: string, cause: unknown) {
    const detail = redactUrlIn(cause instanceof Error ? cause.message : String(cause), url);
    super(`${describeOperation(operation)} cannot be sent to ${redactUrlPassword(url)}: ${detail}`, { cause });
    this.name = 'InvalidRequestError';
  }
}

/**
 * Masks the password of each copy of `url` in `text`, such as the one in a
 * fetch error's message, as given or in the normalised form that `URL` prints.
 */
function redactUrlIn(text: string, url: string): string {
  let normalised = url;
  try {
    normalised = new URL(url).href;
  } catch {
    // Not a URL, so only the text as given is masked.
  }
  let result = text;
  for (const copy of new Set([url, normalised])) {
    result = result.split(copy).join(redactUrlPassword(copy));
  }
  return result;
}

function describeCause(cause: unknown): string {
  if (!(cause instanceof Error)) {
    return String(cause);
  }
  // Node 20's fetch reports "fetch failed" and keeps the socket error in `cause`.
  const inner = (cause as Error & { cause?: unknown }).cause;
  if (inner instanceof Error && inner.message !== '') {
    return `${cause.message} (${inner.message})`;
  }
  return cause.message;
}

/**
 * Describes why `token` cannot be sent as a bearer token, or returns null when
 * it can. A token is one or more visible ASCII characters, as JWTs are. The
 * description names the first other character by position and code point,
 * never the token itself, because fetch's own error for an invalid header
 * value quotes the whole header.
 */
export function describeInvalidToken(token: string): string | null {
  if (token === '') {
    return 'it is empty';
  }
  for (let index = 0; index < token.length; index += 1) {
    const code = token.codePointAt(index) ?? 0;
    if (code < 0x21 || code > 0x7e) {
      const hex = code.toString(16).toUpperCase().padStart(4, '0');
      return `character ${index + 1} is ${describeCharacterKind(code)} (U+${hex}), but a token contains only visible ASCII characters`;
    }
  }
  return null;
}

function describeCharacterKind(code: number): string {
  if (code === 0x0a || code === 0x0d) {
    return 'a line break';
  }
  if (code === 0x20) {
    return 'a space';
  }
  return 'a character';
}

/** HTTP statuses that mean "try again later" rather than "this request is wrong". */
const TRANSIENT_HTTP_STATUSES = new Set([429, 502, 503, 504]);

/**
 * Returns true for failures worth retrying: network errors, the code
 * `SERVICE_UNAVAILABLE`, and HTTP 429 and 502 to 504.
 */
export function isTransientError(error: unknown): boolean {
  if (error instanceof NetworkError) {
    return true;
  }
  if (error instanceof GraphQLRequestError) {
    return error.code === 'SERVICE_UNAVAILABLE' || TRANSIENT_HTTP_STATUSES.has(error.httpStatus);
  }
  return false;
}

export interface GraphQLClientOptions {
  /** GraphQL endpoint, for example `http://127.0.0.1:4000/graphql`. */
  endpoint: string;
  token?: string | null;
  /** Time limit of one HTTP request, in milliseconds (default 60000). */
  requestTimeoutMs?: number;
  fetch?: typeof fetch;
  /** Aborts the requests in flight and every later one. */
  signal?: AbortSignal;
}

const LOGIN = `mutation ImportLogin($username: String!, $password: String!) {
  login(username: $username, password: $password) { token user { id username role } }
}`;
const ME = `query ImportMe { me { id username role } }`;
const USERS = `query ImportUsers { users { id username role } }`;
const PAIR_TYPE_FIELDS = 'name startType endType parent autoClose { timeoutSeconds endAt }';
const PAIR_TYPES = `query ImportPairTypes { pairTypes { ${PAIR_TYPE_FIELDS} } }`;
const DEFINE_PAIR_TYPE = `mutation ImportDefinePairType($input: DefinePairTypeInput!) {
  definePairType(input: $input) { ${PAIR_TYPE_FIELDS} }
}`;
const CREATE_USER = `mutation ImportCreateUser($input: CreateUserInput!) {
  createUser(input: $input) { id username role }
}`;
const SEND_EVENTS = `mutation ImportSendEvents($events: [EventInput!]!) {
  sendEvents(events: $events) {
    storedCount
    duplicateCount
  }
}`;
const STORED_EVENTS = `query ImportStoredEvents($filter: EventFilter!, $first: Int!, $after: String) {
  events(filter: $filter, first: $first, after: $after) {
    nodes { rule flags }
    pageInfo { hasNextPage endCursor }
  }
}`;

/** The filter of a read of stored events: the users, and corrections only or client events with any of the flags. */
export interface StoredEventFilter {
  users: readonly string[];
  origins?: readonly ['CORRECTION'];
  flags?: readonly string[];
}

/** One page of stored events: the rule and flags of each, and the cursor of the next page, or null after the last. */
export interface StoredEventPage {
  events: { rule: string | null; flags: string[] }[];
  nextCursor: string | null;
}

/**
 * Returns the GraphQL endpoint of a server: `<url>/graphql`, unless the URL
 * already ends there. Throws a TypeError for a URL that is not http:// or
 * https://, or that contains credentials, which `fetch` cannot send to.
 */
export function graphqlEndpoint(serverUrl: string): string {
  const maskedUrl = redactUrlPassword(serverUrl);
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new TypeError(`invalid server URL "${maskedUrl}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`invalid server URL "${maskedUrl}": expected http:// or https://`);
  }
  if (url.username !== '' || url.password !== '') {
    throw new TypeError(`invalid server URL "${maskedUrl}": it contains a user name or password`);
  }
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = path.endsWith('/graphql') ? path : `${path}/graphql`;
  return url.toString();
}

export class GraphQLClient {
  private readonly endpoint: string;
  private readonly requestTimeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly signal: AbortSignal | undefined;
  private token: string | null;

  constructor(options: GraphQLClientOptions) {
    this.endpoint = options.endpoint;
    this.token = options.token ?? null;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.fetchImpl = options.fetch ?? fetch;
    this.signal = options.signal;
  }

  /** Sends one operation and returns its `data`, or throws when the response has any error. */
  async request<T>(
    operation: string,
    query: string,
    variables: Record<string, unknown> = {},
  ): Promise<T> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
    };
    if (this.token !== null) {
      headers.authorization = `Bearer ${this.token}`;
    }

    const init: RequestInit = {
      method: 'POST',
      headers,
      body: JSON.stringify({ query, variables, operationName: operation }),
      signal: this.requestSignal(),
    };
    // fetch rejects both a request it cannot build and a failed connection
    // with a TypeError. Building the Request first separates the two, so only
    // a failed connection becomes a retryable NetworkError.
    try {
      new Request(this.endpoint, init);
    } catch (error) {
      throw new InvalidRequestError(operation, this.endpoint, error);
    }

    let response: Response;
    let bodyText: string;
    try {
      response = await this.fetchImpl(this.endpoint, init);
      bodyText = await response.text();
    } catch (error) {
      const tlsCode = tlsFailureCode(error);
      if (tlsCode !== null) {
        throw new TlsError(operation, this.endpoint, tlsCode, error);
      }
      throw new NetworkError(operation, this.endpoint, error);
    }

    let body: unknown = null;
    try {
      body = JSON.parse(bodyText);
    } catch {
      // Not JSON, for example a proxy's error page, so the status is reported below.
    }

    const errors = readErrors(body);
    if (errors.length > 0) {
      throw new GraphQLRequestError(operation, response.status, errors);
    }
    if (!response.ok) {
      throw new GraphQLRequestError(operation, response.status, [
        { message: `HTTP status ${response.status} ${response.statusText}`.trim() },
      ]);
    }

    const data = (body as { data?: unknown } | null)?.data;
    if (data === undefined || data === null) {
      throw new GraphQLRequestError(operation, response.status, [
        { message: 'the response has neither data nor errors' },
      ]);
    }
    return data as T;
  }

  /** Returns the signal of one request: its time limit, and the client's signal when there is one. */
  private requestSignal(): AbortSignal {
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    return this.signal === undefined ? timeout : AbortSignal.any([timeout, this.signal]);
  }

  /** Tells whether a token is held, from the options or from a login. */
  get hasToken(): boolean {
    return this.token !== null;
  }

  /** Logs in and keeps the token for later requests. */
  async login(username: string, password: string): Promise<UserSummary> {
    const data = await this.request<{ login: { token: string; user: UserSummary } }>(
      'ImportLogin',
      LOGIN,
      { username, password },
    );
    this.token = data.login.token;
    return data.login.user;
  }

  async me(): Promise<UserSummary> {
    return (await this.request<{ me: UserSummary }>('ImportMe', ME)).me;
  }

  async users(): Promise<UserSummary[]> {
    return (await this.request<{ users: UserSummary[] }>('ImportUsers', USERS)).users;
  }

  async pairTypes(): Promise<PairTypeSummary[]> {
    return (await this.request<{ pairTypes: PairTypeSummary[] }>('ImportPairTypes', PAIR_TYPES))
      .pairTypes;
  }

  async definePairType(input: DefinePairTypeInput): Promise<PairTypeSummary> {
    const data = await this.request<{ definePairType: PairTypeSummary }>(
      'ImportDefinePairType',
      DEFINE_PAIR_TYPE,
      { input },
    );
    return data.definePairType;
  }

  async createUser(username: string, password: string, role: Role): Promise<UserSummary> {
    const data = await this.request<{ createUser: UserSummary }>('ImportCreateUser', CREATE_USER, {
      input: { username, password, role },
    });
    return data.createUser;
  }

  async sendEvents(events: readonly EventInput[]): Promise<SendEventsSummary> {
    const data = await this.request<{ sendEvents: SendEventsSummary }>(
      'ImportSendEvents',
      SEND_EVENTS,
      { events },
    );
    return data.sendEvents;
  }

  /** Reads one page of at most `first` stored events that match `filter`, after the cursor `after`. */
  async storedEvents(filter: StoredEventFilter, first: number, after: string | null): Promise<StoredEventPage> {
    const data = await this.request<{
      events: { nodes: StoredEventPage['events']; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
    }>('ImportStoredEvents', STORED_EVENTS, { filter, first, after });
    const { nodes, pageInfo } = data.events;
    return { events: nodes, nextCursor: pageInfo.hasNextPage ? pageInfo.endCursor : null };
  }

}

function readErrors(body: unknown): GraphQLErrorEntry[] {
  if (typeof body !== 'object' || body === null) {
    return [];
  }
  const errors = (body as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) {
    return [];
  }
  return errors.map((entry): GraphQLErrorEntry => {
    if (typeof entry !== 'object' || entry === null) {
      return { message: String(entry) };
    }
    const { message, path, extensions } = entry as Record<string, unknown>;
    const result: GraphQLErrorEntry = {
      message: typeof message === 'string' ? message : 'unknown error',
    };
    if (Array.isArray(path)) {
      result.path = path as (string | number)[];
    }
    if (typeof extensions === 'object' && extensions !== null) {
      result.extensions = extensions as Record<string, unknown>;
    }
    return result;
  });
}
