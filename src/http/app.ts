/**
 * The Fastify application: GraphQL at /graphql, the REST routes kept for
 * older clients, health endpoints, and JSON errors for everything Fastify
 * itself rejects (malformed bodies, unknown routes, oversized requests).
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';

import type { ApolloServer, ApolloServerPlugin } from '@apollo/server';
import { fastifyApolloDrainPlugin, fastifyApolloHandler } from '@as-integrations/fastify';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';

import type { Viewer } from '../auth/viewer.js';
import { invalidTokenError, type TokenService } from '../auth/tokens.js';
import { DomainError, internalErrorAfterStore, storedCountBefore } from '../domain/errors.js';
import { quoteText } from '../domain/storable.js';
import { createContext, type GraphQLContext } from '../graphql/context.js';
import { ReplyBudget } from '../graphql/reply-budget.js';
import { ReplyMemory } from '../graphql/reply-memory.js';
import { collectUnloggedErrors, httpStatusForCode, codeForKind, isUnstorableValue, markLogged, toDomainError, unavailableLogMessage, wasLogged } from '../graphql/errors.js';
import type { Services } from '../services/index.js';
import { acceptsToken } from '../services/users.js';
import { registerCors } from './cors.js';
import { GRAPHQL_RESPONSE_JSON, graphqlReplyType, prefersGraphQLResponseJson } from './graphql-media-type.js';
import { registerRestRoutes } from './rest.js';
import { bodyPath, keySegment, repeatedKeyPath } from './repeated-keys.js';
import { errorReplyBody, pathOf } from './error-body.js';
import { createClientErrorHandler } from './client-error.js';
import { answerRequestTimeouts, nodeServerTimeouts } from './request-timeout.js';
import { closeStalledReplies } from './send-timeout.js';
import { waitForUnflushedReplies } from './unflushed-replies.js';
import { measureBracketDepth } from '../graphql/document-depth.js';
import { runWithSecretScope } from '../graphql/secret-values.js';
import type { AppMetrics } from '../metrics/metrics.js';

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** Builds an error that the error handler returns with `status`, and with `code` as the reason. */
function bodyError(status: number, code: string, message: string): Error {
  return Object.assign(new Error(message), { statusCode: status, code });
}

const ANONYMOUS_BODY_REASON = 'ANONYMOUS_BODY_TOO_LARGE';
const CONTENT_ENCODING_REASON = 'UNSUPPORTED_CONTENT_ENCODING';

/** The reasons that clients see for Fastify's own error codes, which name Fastify internals. */
const FASTIFY_REASONS: Readonly<Record<string, string>> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_CONTENT_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'EMPTY_BODY',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_CONTENT_LENGTH',
};

/**
 * Decodes a JSON request body as UTF-8, the only encoding JSON allows between
 * systems (RFC 8259, section 8.1). The media type defines no `charset`
 * parameter (section 11), so one is ignored. Bytes that are not UTF-8 are
 * rejected rather than replaced with U+FFFD, which would store other text
 * than the client sent and make different passwords hash alike. A leading
 * byte order mark is dropped, which section 8.1 allows a parser to do,
 * because JSON.parse rejects it with no hint of the cause.
 */
export function decodeJsonBody(body: Buffer): string {
  if (!isUtf8(body)) {
    throw bodyError(400, 'INVALID_UTF8', 'The body is not valid UTF-8. Send JSON encoded as UTF-8.');
  }
  const text = body.toString('utf8');
  return text.startsWith('\uFEFF') ? text.slice(1) : text;
}

/**
 * Rejects a body sent with a content coding, such as gzip. The server does
 * not decompress bodies, so a compressed one would otherwise fail as
 * invalid UTF-8 or JSON, which hides the cause.
 */
export function rejectContentEncoding(header: string | undefined): void {
  const coding = header?.trim().toLowerCase() ?? '';
  if (coding !== '' && coding !== 'identity') {
    throw bodyError(
      415,
      CONTENT_ENCODING_REASON,
      `Content-Encoding ${quoteText(header ?? '', 100)} is not supported. Send the body uncompressed, without a Content-Encoding header.`,
    );
  }
}

/**
 * Parses a JSON request body. A syntax error names its position when the
 * parser reports one, but never the text around it, which may hold a password.
 * A key repeated in one object is rejected with its path. A `__proto__` key, or a
 * `constructor` key holding a `prototype` key, is rejected with its path:
 * such keys can change object prototypes when code copies the object.
 * NOTE: Apollo Server parses the variables of a GET request itself, so they
 * get neither the repeated key check nor the prototype key check here.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) {
    throw bodyError(400, 'EMPTY_BODY', 'The body is empty, but the Content-Type is application/json.');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const position = /position (\d+)/.exec((error as Error).message)?.[1];
    const where = position === undefined ? '' : ` at character ${position}`;
    throw bodyError(400, 'INVALID_JSON', `The body is not valid JSON${where}.`);
  }
  const repeated = repeatedKeyPath(text);
  if (repeated !== null) {
    throw bodyError(
      400,
      'DUPLICATE_KEY',
      `The body has the key ${repeated} more than once in one object, and only one of its values would be used. Send each key once.`,
    );
  }
  // An escaped key, such as "\u005f_proto__", needs a backslash-u in the text.
  if (text.includes('__proto__') || text.includes('constructor') || text.includes('\\u')) {
    const path = prototypeKeyPath(value);
    if (path !== null) {
      throw bodyError(
        400,
        'PROTOTYPE_KEY',
        `The body has the key ${path}, which this server rejects because such keys can change JavaScript object prototypes. Rename the key.`,
      );
    }
  }
  return value;
}

/**
 * Passes `source` on until more than `max` bytes have come, and then fails
 * with `error`. Fastify reads the length it received from
 * `receivedEncodedLength`, which the returned stream keeps up to date.
 */
function limitBytes(source: Readable, max: number, error: Error): Readable {
  let received = 0;
  const limited = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      (limited as Transform & { receivedEncodedLength?: number }).receivedEncodedLength = received;
      done(received > max ? error : null, received > max ? undefined : chunk);
    },
  });
  source.on('error', (sourceError) => limited.destroy(sourceError));
  return source.pipe(limited);
}

/**
 * The methods of each route, for the Allow header of a 405. Fastify adds HEAD
 * to GET routes. The root is left out, because it serves browsers only and
 * is not found for other clients.
 */
const ALLOWED_METHODS: ReadonlyMap<string, string> = new Map([
  ['/graphql', 'GET, HEAD, POST, OPTIONS'],
  ['/auth/login', 'POST'],
  ['/api/events', 'POST'],
  ['/healthz', 'GET, HEAD'],
  ['/readyz', 'GET, HEAD'],
]);

/** The routes that a 404 reply lists, for clients that guessed a path. */
const ROUTES_HINT =
  'GraphQL is served at /graphql (POST, or GET in a browser for the Sandbox), REST at POST /auth/login and POST /api/events, health at GET /healthz and GET /readyz.';

/** Returns a view of a HEAD request that reports the method GET, so Apollo Server treats it as one. */
function asGetRequest<Request extends { method: string }>(request: Request): Request {
  return Object.create(request, { method: { value: 'GET' } }) as Request;
}

/**
 * The reply to a GET of /graphql with neither a query nor a persisted query
 * hash, such as `curl http://127.0.0.1:4000/graphql`. Apollo Server would
 * send its CSRF message, which does not say that the query is what is missing.
 */
const MISSING_QUERY_REPLY = {
  errors: [
    {
      message:
        'GET /graphql has no query parameter. Send a query as POST with Content-Type: application/json, ' +
        'as GET with ?query=... and the header apollo-require-preflight: true, or open this address in a browser for the Sandbox.',
      extensions: { code: 'BAD_REQUEST', reason: 'MISSING_QUERY' },
    },
  ],
};

/** Tells whether a GET of /graphql carries no operation at all and is not a browser's request for the Sandbox page. */
function isBareGraphQLGet(request: FastifyRequest): boolean {
  const params = request.query as { query?: unknown; extensions?: unknown } | undefined;
  return params?.query === undefined && params?.extensions === undefined && !acceptsHtml(request);
}

/** Tells whether the request accepts an HTML page, as a browser's navigation does. */
function acceptsHtml(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/html');
}

/** A value of a parsed JSON body with the path segment that leads to it from its parent. */
interface PathNode {
  readonly parent: PathNode | null;
  readonly segment: string;
}

/** Lists the path segments from the body to `node`. */
function segmentsOf(node: PathNode | null): string[] {
  const segments: string[] = [];
  for (let cursor = node; cursor !== null; cursor = cursor.parent) {
    segments.push(cursor.segment);
  }
  return segments.reverse();
}

/** Returns the path of the first `__proto__` key or `constructor.prototype` pair in a parsed JSON value, or null. */
function prototypeKeyPath(root: unknown): string | null {
  const stack: Array<{ value: unknown; node: PathNode | null }> = [{ value: root, node: null }];
  while (stack.length > 0) {
    const { value, node } = stack.pop()!;
    if (value === null || typeof value !== 'object') {
      continue;
    }
    if (Array.isArray(value)) {
      value.forEach((item, index) => stack.push({ value: item, node: { parent: node, segment: `[${index}]` } }));
      continue;
    }
    for (const [key, item] of Object.entries(value)) {
      const keyNode: PathNode = { parent: node, segment: keySegment(key) };
      if (key === '__proto__') {
        return bodyPath(segmentsOf(keyNode));
      }
      if (key === 'constructor' && item !== null && typeof item === 'object' && Object.hasOwn(item, 'prototype')) {
        return bodyPath(segmentsOf({ parent: keyNode, segment: '.prototype' }));
      }
      stack.push({ value: item, node: keyNode });
    }
  }
  return null;
}

/** Copies the request fields that Fastify's log serializer reads, with the URL cut to its path. */
function withPathOnly(request: FastifyRequest): object {
  return { method: request.method, url: pathOf(request.url), headers: {}, host: request.host, ip: request.ip, socket: request.socket };
}

/**
 * Fastify's request log lines, with the path in place of the whole URL: a
 * query string can carry a GraphQL document with a password or a token in it.
 */
class PathOnlyLogController extends LogController {
  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) {
      return;
    }
    request.log.info({ req: withPathOnly(request) }, 'incoming request');
  }

  override routeNotFound(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) {
      return;
    }
    request.log.info(`Route ${request.method}:${pathOf(request.url)} not found`);
  }

  override defaultErrorLog(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) {
      return;
    }
    if (reply.statusCode >= 500) {
      reply.log.error({ req: withPathOnly(request), res: reply, err: error }, error?.message);
    } else {
      reply.log.info({ res: reply, err: error }, error?.message);
    }
  }

  override writeHeadError(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) {
      return;
    }
    reply.log.warn({ req: withPathOnly(request), res: reply, err: error }, error?.message);
  }
}

export interface HttpAppOptions {
  logger: Logger;
  services: Services;
  tokens: TokenService;
  /** Builds and starts the Apollo Server; receives the plugin that drains it with Fastify. */
  createApollo: (drainPlugin: ApolloServerPlugin<GraphQLContext>) => Promise<ApolloServer<GraphQLContext>>;
  maxBodyBytes: number;
  /** REQUEST_TIMEOUT_MS: time in ms a client has to send a whole request, or 0 for no limit beyond Node's 60 s for the headers. */
  requestTimeoutMs: number;
  /** SEND_TIMEOUT_MS: time in ms a reply may wait for the client to read more of it, or 0 for no limit. */
  sendTimeoutMs: number;
  /**
   * Largest body, in bytes, of a request without a valid token. A login needs
   * far less, and parsing a body of up to MAX_BODY_BYTES for a client with no
   * token would let anyone keep the event loop busy.
   */
  anonymousMaxBodyBytes: number;
  trustProxy: boolean;
  /** Origins whose pages may call the API from a browser: '*', a list, or none. */
  corsOrigins: '*' | readonly string[];
  /** Maximum bracket nesting of a GraphQL document, checked before parsing. */
  maxDocumentDepth: number;
  /** MAX_REPLY_BYTES: the reply bytes that the events and segments of one query may take. */
  maxReplyBytes: number;
  /** REPLY_MEMORY_MAX_BYTES: the reply bytes that all queries of the process may hold at once. */
  replyMemoryMaxBytes: number;
  /** Pings PostgreSQL and Redis, and returns each one's kind and the error of its ping, or null when it responded. */
  checkReadiness: () => Promise<Readiness>;
  /** The app's metrics, which count the replies by route, or null when METRICS_PORT is unset. */
  metrics?: AppMetrics | null;
}

/** Outcome of the readiness pings, per dependency. */
export interface Readiness {
  database: { kind: string; error: unknown };
  redis: { kind: string; error: unknown };
}

export interface Authentication {
  viewer: Viewer | null;
  authError: DomainError | null;
}

const authentications = new WeakMap<FastifyRequest, Promise<Authentication>>();

/**
 * Authenticates the bearer token of a request; a missing token yields a null
 * viewer. The result is kept per request, so the body size check and the
 * handler look the user up once.
 */
export function authenticate(request: FastifyRequest, tokens: TokenService, services: Services): Promise<Authentication> {
  let pending = authentications.get(request);
  if (pending === undefined) {
    pending = authenticateOnce(request, tokens, services);
    authentications.set(request, pending);
  }
  return pending;
}

/** An Authorization header with one bearer token, which is the first group. */
const BEARER_HEADER = /^Bearer[ ]+(\S+)\s*$/i;

/**
 * Counts the Authorization lines of a request. Node keeps only the first one
 * in `request.headers`, so a request with two would otherwise act on one of
 * its tokens silently, while a proxy in front may have checked the other.
 */
function countAuthorizationHeaders(request: FastifyRequest): number {
  const raw = request.raw.rawHeaders;
  let count = 0;
  for (let index = 0; index < raw.length; index += 2) {
    if (raw[index]!.toLowerCase() === 'authorization') {
      count += 1;
    }
  }
  return count;
}

/**
 * Builds the `WWW-Authenticate` value of a 401 (RFC 6750 section 3) from the
 * reason that authentication of the request gave. A rejected bearer token
 * gets `invalid_token`, and a Bearer header without exactly one token, or
 * more than one Authorization header, gets `invalid_request`. Any other 401
 * gets the bare scheme, because under RFC 6750 section 3.1 a request with
 * another scheme, such as Basic, should get no error code. A wrong password
 * at login is no fault of the token that the request may carry.
 */
async function bearerChallenge(request: FastifyRequest): Promise<string> {
  const pending = authentications.get(request);
  // A failed authentication has already failed the request, so it only leaves the error code out here.
  const authentication = await pending?.catch(() => null);
  const reason = authentication?.authError?.reason;
  if (reason === 'INVALID_TOKEN') {
    return 'Bearer error="invalid_token"';
  }
  if (
    reason === 'MALFORMED_AUTHORIZATION' &&
    (/^Bearer(\s|$)/i.test(request.headers.authorization ?? '') || countAuthorizationHeaders(request) > 1)
  ) {
    return 'Bearer error="invalid_request"';
  }
  return 'Bearer';
}

async function authenticateOnce(request: FastifyRequest, tokens: TokenService, services: Services): Promise<Authentication> {
  // Counted first, because an empty first header would pass as none while a later one carries a token.
  const headerCount = countAuthorizationHeaders(request);
  if (headerCount > 1) {
    // RFC 6750 section 3.1 makes a request with more than one token an invalid_request.
    return {
      viewer: null,
      authError: new DomainError(
        'UNAUTHENTICATED',
        'MALFORMED_AUTHORIZATION',
        `The request has ${headerCount} Authorization headers. Send one, "Bearer " followed by one token from login.`,
      ),
    };
  }
  const header = request.headers.authorization;
  if (header === undefined || header === '') {
    return { viewer: null, authError: null };
  }
  const match = BEARER_HEADER.exec(header);
  if (match === null || match[1] === undefined) {
    // The header's form is no secret, so its error names the problem, unlike a token's.
    return {
      viewer: null,
      authError: new DomainError(
        'UNAUTHENTICATED',
        'MALFORMED_AUTHORIZATION',
        'The Authorization header must be "Bearer " followed by one token from login.',
      ),
    };
  }
  try {
    const claims = await tokens.verify(match[1]);
    // The role in the token may be out of date: authorise with the stored one.
    const user = await services.users.findById(claims.userId);
    // A disabled account's tokens stop working at once, and so do tokens
    // issued before the last password change or disabling.
    if (!acceptsToken(user, claims.tokenVersion)) {
      return {
        viewer: null,
        authError: invalidTokenError(),
      };
    }
    return {
      viewer: { userId: user.id, role: user.role, authTime: claims.authTime, tokenVersion: claims.tokenVersion },
      authError: null,
    };
  } catch (error) {
    // A database outage while loading the user becomes SERVICE_UNAVAILABLE
    // for the operations that need a viewer, instead of a failed context.
    // The GraphQL error plugin receives only the converted error, not its
    // cause, so the cause is logged here, once per request.
    const domain = toDomainError(error);
    if (domain?.kind === 'SERVICE_UNAVAILABLE') {
      request.log.warn({ err: error }, unavailableLogMessage('token check failed', domain));
      markLogged(domain);
    }
    if (domain !== null) {
      return { viewer: null, authError: domain };
    }
    throw error;
  }
}

/** The `route` label of a request that matched no route, such as a 404 or a 405. */
const UNMATCHED_ROUTE = '(unmatched)';

/**
 * Methods that keep their own `method` label. Node's parser accepts the 35
 * methods of `http.METHODS` (Node 20), WebDAV's among them, and each would
 * multiply the histogram's series, so the rest share the label `other`.
 */
const LABELED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);

/**
 * Counts each reply that Fastify sends, and its duration, by the pattern of
 * the route it matched rather than the raw URL, so that the label values stay
 * few. NOTE: Fastify runs no onResponse hook for some replies, so these are
 * not counted: a 408 that Node sends for a request too slow to arrive, a 400
 * from Node's parser for an unknown method or a malformed request, and a 400
 * that Fastify writes for a path with invalid percent-encoding. A request
 * whose client closed the connection before the reply is not counted either.
 */
function countReplies(fastify: FastifyInstance, metrics: AppMetrics): void {
  const { httpRequests, httpRequestDuration } = metrics;
  fastify.addHook('onResponse', (request, reply, done) => {
    const labels = {
      route: request.routeOptions.url ?? UNMATCHED_ROUTE,
      method: LABELED_METHODS.has(request.method) ? request.method : 'other',
      status: String(reply.statusCode),
    };
    httpRequests.inc(labels);
    httpRequestDuration.observe(labels, reply.elapsedTime / 1000);
    done();
  });
}

export interface HttpApp {
  fastify: FastifyInstance;
  apollo: ApolloServer<GraphQLContext>;
  /** Makes `/readyz` return 503 "shutting down" from now on, while every other route serves as before. */
  announceShutdown: () => void;
  /** Makes replies ask clients to close their connections, so that keep-alive connections do not hold the drain open. */
  beginDrain: () => void;
  /** Returns the number of HTTP requests whose response has not finished or been aborted yet. */
  countRequestsInFlight: () => number;
}

export async function buildHttpApp(options: HttpAppOptions): Promise<HttpApp> {
  const { logger, services, tokens } = options;
  const fastify = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: options.maxBodyBytes,
    requestTimeout: options.requestTimeoutMs,
    http: nodeServerTimeouts(options.requestTimeoutMs),
    // Only the peer, the proxy in front of the server, is trusted, so the
    // client address is the last X-Forwarded-For entry, the one that proxy
    // added. With `true`, Fastify would take the first entry, which the client
    // writes itself, so a client could pick a new address for each login and
    // pass the per-address limit.
    trustProxy: options.trustProxy ? (_address: string, hop: number) => hop === 0 : false,
    // A client's x-request-id is kept when it is short and plain, so logs of
    // both sides can be joined; anything else gets a fresh id.
    requestIdHeader: false,
    genReqId: (request) => {
      const sent = request.headers['x-request-id'];
      return typeof sent === 'string' && REQUEST_ID_PATTERN.test(sent) ? sent : randomUUID();
    },
    // JSON with `__proto__` or `constructor.prototype` keys is rejected with a
    // 400 rather than silently trimmed, so no part of an accepted body is lost.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    logController: new PathOnlyLogController(),
    clientErrorHandler: createClientErrorHandler(logger as FastifyBaseLogger),
  });

  // Requests still running when the app starts closing get their replies, but
  // their keep-alive connections would then hold server.close() open until
  // the client drops them (Fastify's keepAliveTimeout, 72 s), longer than the
  // shutdown grace. Asking the client to close after the reply ends the drain.
  // The flag is set by beginDrain, because Fastify's own preClose hook runs
  // only after Apollo's drain has waited for those requests.
  let closing = false;
  // Set from the stop signal on, also during SHUTDOWN_DELAY_MS, when the
  // server still serves requests but load balancers should stop sending them.
  let shuttingDown = false;

  // Counted on Node's server rather than with Fastify hooks, because 'close'
  // fires for every response, also one whose client went away.
  let requestsInFlight = 0;
  fastify.server.on('request', (_request, response) => {
    requestsInFlight += 1;
    response.once('close', () => {
      requestsInFlight -= 1;
    });
  });

  if (options.metrics) {
    countReplies(fastify, options.metrics);
  }

  answerRequestTimeouts(fastify.server, options.requestTimeoutMs, logger);
  closeStalledReplies(fastify, options.sendTimeoutMs, logger);
  waitForUnflushedReplies(fastify.server);
  registerCors(fastify, options.corsOrigins);

  // Fastify's own JSON parser reports every failure as "Body is not valid
  // JSON", also for valid JSON that it rejects for a prototype key.
  fastify.removeContentTypeParser('application/json');
  /**
   * Returns the error for a body above `anonymousMaxBodyBytes`, or null when
   * the request carries a valid token and may send up to MAX_BODY_BYTES. A
   * request with an invalid token gets 401, so that its client logs in again,
   * and one without a token gets 413.
   */
  const largeBodyError = async (request: FastifyRequest, size: string): Promise<Error | null> => {
    const { viewer, authError } = await authenticate(request, tokens, services);
    if (viewer !== null) {
      return null;
    }
    if (authError !== null) {
      // A token that could not be checked, as in a database outage, gets its own error later.
      return authError.kind === 'UNAUTHENTICATED'
        ? new DomainError(authError.kind, authError.reason, authError.message, authError.details)
        : null;
    }
    return bodyError(
      413,
      ANONYMOUS_BODY_REASON,
      `The body has ${size}, above the maximum of ${options.anonymousMaxBodyBytes} bytes (ANONYMOUS_MAX_BODY_BYTES) for requests without a token. Log in and send the token in the Authorization header.`,
    );
  };

  // A declared length is checked before the body is read. A body sent in
  // chunks, without one, is counted while it is read, whatever its type.
  fastify.addHook('onRequest', async (request) => {
    const declared = Number(request.headers['content-length']);
    if (Number.isSafeInteger(declared) && declared > options.anonymousMaxBodyBytes) {
      const error = await largeBodyError(request, `${declared} bytes`);
      if (error !== null) {
        throw error;
      }
    }
  });

  fastify.addHook('preParsing', async (request, _reply, payload) => {
    if (request.headers['transfer-encoding'] === undefined) {
      return payload;
    }
    const error = await largeBodyError(request, `more than ${options.anonymousMaxBodyBytes} bytes`);
    return error === null ? payload : limitBytes(payload, options.anonymousMaxBodyBytes, error);
  });

  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    try {
      rejectContentEncoding(request.headers['content-encoding']);
      done(null, parseJsonBody(decodeJsonBody(body as Buffer)));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  fastify.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // RFC 9110 section 11.6.1: a 401 names the scheme that would be accepted.
    if (reply.statusCode === 401 && !reply.hasHeader('www-authenticate')) {
      reply.header('www-authenticate', await bearerChallenge(request));
    }
    if (closing) {
      reply.header('connection', 'close');
    }
  });

  fastify.setErrorHandler((error, request, reply) => {
    const errorBody = (fields: { code: string; message: string } & Record<string, unknown>) => errorReplyBody(request.url, fields);
    if (pathOf(request.url) === '/graphql' && prefersGraphQLResponseJson(request.headers.accept)) {
      // As Apollo Server does, so that Apollo Client reads these errors, such
      // as a 401 for an expired token on a large body, as GraphQL errors.
      reply.type(GRAPHQL_RESPONSE_JSON);
    }
    if (!request.raw.complete) {
      // A reply before the body was read, such as a 401 for an expired token
      // on a large body, leaves the request unfinished, and its connection
      // then held close() open until the keep-alive timeout (72 s). Closing
      // the connection with the reply ends the request.
      reply.header('connection', 'close');
    }
    const statusCode = (error as { statusCode?: number }).statusCode;
    // Fastify's own rejections carry a 4xx status and never come from
    // storage, so their codes are not read as a dependency failure. A body
    // cut off because the connection closed, by the client or after a parse
    // error of the body, fails with ECONNRESET.
    const rejectedByFastify = !(error instanceof DomainError) && statusCode !== undefined && statusCode >= 400 && statusCode < 500;
    const domain = rejectedByFastify ? null : toDomainError(error);
    if (isUnstorableValue(error)) {
      request.log.warn({ err: error }, 'the database rejected a request value that input validation let through');
    }
    // As the GraphQL error plugin does. A failed token check was logged with its cause already.
    if (domain?.kind === 'SERVICE_UNAVAILABLE' && !wasLogged(error)) {
      request.log.warn({ err: error }, unavailableLogMessage('request failed', domain));
    }
    if (domain !== null) {
      const code = codeForKind(domain.kind);
      if (domain.reason === 'RATE_LIMITED') {
        const retryAfter = Number(domain.details.retryAfterSeconds ?? 60);
        reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfter))));
        return reply
          .status(429)
          .send(errorBody({ code, reason: domain.reason, message: domain.message, ...domain.details }));
      }
      // A failure after the events were stored is no reason to send them again.
      const status = domain.details.eventsStored === true ? 500 : httpStatusForCode(code);
      if (status === 503) {
        reply.header('retry-after', '1');
      }
      return reply.status(status).send(errorBody({ code, reason: domain.reason, message: domain.message, ...domain.details }));
    }
    if (rejectedByFastify) {
      // Fastify's own rejections: malformed JSON, unsupported media type, body too large.
      const errorCode = (error as { code?: string }).code ?? 'BAD_REQUEST';
      if (request.raw.destroyed && !request.raw.complete) {
        request.log.info({ err: error }, 'the connection closed before the whole request body arrived');
      }
      const reason = FASTIFY_REASONS[errorCode] ?? errorCode;
      if (statusCode === 413 && reason === ANONYMOUS_BODY_REASON) {
        return reply.status(413).send(
          errorBody({
            code: 'BAD_USER_INPUT',
            reason: reason,
            message: (error as Error).message,
            limit: 'ANONYMOUS_MAX_BODY_BYTES',
            max: options.anonymousMaxBodyBytes,
          }),
        );
      }
      if (statusCode === 413) {
        const declared = Number(request.headers['content-length']);
        const size = Number.isSafeInteger(declared) && declared > 0 ? `${declared} bytes, above` : 'above';
        return reply.status(413).send(
          errorBody({
            code: 'BAD_USER_INPUT',
            reason: reason,
            message: `The request body is ${size} the maximum of ${options.maxBodyBytes} bytes (MAX_BODY_BYTES). Send the events in smaller batches.`,
            limit: 'MAX_BODY_BYTES',
            max: options.maxBodyBytes,
          }),
        );
      }
      if (errorCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        // Fastify's message, "Unsupported Media Type", names neither the type sent nor the one accepted.
        const sent = request.headers['content-type'];
        const contentType = sent === undefined ? null : String(sent).slice(0, 100);
        return reply.status(statusCode).send(
          errorBody({
            code: 'BAD_USER_INPUT',
            reason: reason,
            message: `The body must be JSON sent with Content-Type: application/json, but the Content-Type is ${contentType === null ? 'missing' : JSON.stringify(contentType)}.`,
            contentType,
          }),
        );
      }
      if (reason === CONTENT_ENCODING_REASON) {
        // RFC 7694 recommends that a 415 for a content coding list the codings accepted.
        reply.header('accept-encoding', 'identity');
      }
      return reply
        .status(statusCode)
        .send(errorBody({ code: 'BAD_USER_INPUT', reason: reason, message: (error as Error).message }));
    }
    request.log.error({ err: error }, 'unexpected error in an HTTP request');
    const stored = storedCountBefore(error);
    return reply.status(500).send(
      errorBody({
        code: 'INTERNAL_SERVER_ERROR',
        message: stored === null ? 'Internal server error.' : internalErrorAfterStore(stored),
        requestId: request.id,
        ...(stored === null ? {} : { eventsStored: true }),
      }),
    );
  });

  fastify.setNotFoundHandler((request, reply) => {
    const allowed = ALLOWED_METHODS.get(pathOf(request.url));
    if (allowed !== undefined && !allowed.split(', ').includes(request.method)) {
      // On /graphql the body has GraphQL's `errors` form and media type, as the other errors of the HTTP layer.
      if (pathOf(request.url) === '/graphql') {
        reply.type(graphqlReplyType(request.headers.accept));
      }
      return reply
        .status(405)
        .header('allow', allowed)
        .send(
          errorReplyBody(request.url, {
            code: 'METHOD_NOT_ALLOWED',
            message: `${request.method} is not allowed on ${pathOf(request.url)}; use ${allowed}.`,
          }),
        );
    }
    return reply.status(404).send({
      error: {
        code: 'NOT_FOUND',
        message: `No route for ${request.method} ${request.url.split('?')[0]}. ${ROUTES_HINT}`,
      },
    });
  });

  // A browser opening the server's address lands on the Sandbox page.
  fastify.get('/', async (request, reply) => {
    if (acceptsHtml(request)) {
      return reply.redirect('/graphql', 302);
    }
    return reply.callNotFound();
  });

  fastify.get('/healthz', async () => ({ status: 'ok' }));

  fastify.get('/readyz', async (request, reply) => {
    if (shuttingDown) {
      return reply.status(503).send({
        status: 'shutting down',
        message: 'The server is shutting down. Send requests to another instance.',
      });
    }
    const { database, redis } = await options.checkReadiness();
    const kinds = { database: database.kind, redis: redis.kind };
    const unreachable = [
      ...(database.error !== null ? ['database'] : []),
      ...(redis.error !== null ? ['redis'] : []),
    ];
    if (unreachable.length === 0) {
      return { status: 'ok', ...kinds };
    }
    // The causes stay in the log: connection errors name hosts and users.
    for (const [name, check] of [['database', database], ['redis', redis]] as const) {
      if (check.error !== null) {
        request.log.warn({ err: check.error, dependency: name }, 'readiness check failed');
      }
    }
    const names = unreachable.map((name) => (name === 'database' ? 'The database' : 'Redis'));
    return reply.status(503).send({
      status: 'unavailable',
      ...kinds,
      unreachable,
      message: `${names.join(' and ')} ${names.length > 1 ? 'are' : 'is'} not reachable.`,
    });
  });

  registerRestRoutes(fastify, { services, tokens });

  const apollo = await options.createApollo(
    fastifyApolloDrainPlugin(fastify) as ApolloServerPlugin<GraphQLContext>,
  );
  const replyMemory = new ReplyMemory(options.replyMemoryMaxBytes);
  const apolloHandler = fastifyApolloHandler<GraphQLContext>(apollo, {
    context: async (request, reply) => {
      const auth = await authenticate(request, tokens, services);
      const replyBudget = new ReplyBudget(options.maxReplyBytes, replyMemory);
      // 'close' follows the last byte written to the socket, or a connection
      // that ended first, so the reservation covers the reply's whole send.
      // A client that closed during authentication fired it already.
      if (reply.raw.closed) {
        replyBudget.releaseMemory();
      } else {
        reply.raw.once('close', () => replyBudget.releaseMemory());
      }
      return createContext({
        ...auth,
        requestId: request.id,
        clientAddress: request.ip,
        logger: request.log,
        services,
        replyBudget,
      });
    },
  });
  // Apollo masks an error that no plugin hook saw, such as a reply too long
  // to serialise, as an internal error and sends HTTP 500 without logging it.
  const handler: typeof apolloHandler = async function (request, reply) {
    // Fastify runs this handler for HEAD and drops the body. Apollo Server
    // serves GET alone and would send HEAD a 405 that allows only GET and POST.
    const apolloRequest = request.method === 'HEAD' ? asGetRequest(request) : request;
    const { result, unlogged } = await runWithSecretScope(() =>
      collectUnloggedErrors(async () => apolloHandler.call(this, apolloRequest, reply)),
    );
    for (const error of unlogged) {
      request.log.error({ err: error, statusCode: reply.statusCode }, 'unexpected error in a GraphQL request, masked as an internal error');
    }
    return result;
  };
  fastify.route({
    url: '/graphql',
    method: ['GET', 'POST', 'OPTIONS'],
    // The CORS hook replies to the preflights of allowed origins before this
    // hook runs. Any other OPTIONS request gets the route's methods in Allow
    // (RFC 9110, section 9.3.7). Apollo Server would reject it with a CSRF
    // error, or with a 405 that allows only GET and POST.
    onRequest: async (request, reply) => {
      if (request.method !== 'OPTIONS') {
        return;
      }
      if (!request.raw.complete) {
        // The body stays unread, so the connection closes with the reply, as in the error handler.
        reply.header('connection', 'close');
      }
      return reply.status(204).header('allow', ALLOWED_METHODS.get('/graphql')).send('');
    },
    // The GraphQL parser recurses into nested literals; reject absurd nesting
    // before it runs, with the same error shape as any GraphQL input error.
    preHandler: async (request, reply) => {
      const body = request.body as { query?: unknown } | null | undefined;
      const inUrl = request.method === 'GET' || request.method === 'HEAD';
      const query = (inUrl ? (request.query as { query?: unknown }).query : body?.query) ?? null;
      if (inUrl && isBareGraphQLGet(request)) {
        return reply.status(400).type(graphqlReplyType(request.headers.accept)).send(JSON.stringify(MISSING_QUERY_REPLY));
      }
      if (typeof query !== 'string') {
        return;
      }
      const depth = measureBracketDepth(query, options.maxDocumentDepth);
      if (depth > options.maxDocumentDepth) {
        request.log.info({ limit: options.maxDocumentDepth }, 'GraphQL document nested too deeply; rejected before parsing');
        const payload = {
          errors: [
            {
              message: `MAX_DOCUMENT_DEPTH: the query text nests brackets more than ${options.maxDocumentDepth} levels deep. Send large or deep set expressions as variables.`,
              extensions: {
                code: 'BAD_USER_INPUT',
                reason: 'LIMIT_EXCEEDED',
                limit: 'MAX_DOCUMENT_DEPTH',
                value: depth,
                max: options.maxDocumentDepth,
              },
            },
          ],
        };
        return reply.status(400).type(graphqlReplyType(request.headers.accept)).send(JSON.stringify(payload));
      }
    },
    handler,
  });

  return {
    fastify,
    apollo,
    announceShutdown: () => {
      shuttingDown = true;
    },
    beginDrain: () => {
      shuttingDown = true;
      closing = true;
    },
    countRequestsInFlight: () => requestsInFlight,
  };
}
