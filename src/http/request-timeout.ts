/**
 * The limit on how long a client may take to send a whole request. Fastify
 * turns off Node's own limit (300 s in Node 20). Without this, a client that
 * sends its body a byte at a time keeps its connection for as long as it
 * likes, and enough such clients exhaust the process's sockets.
 */
import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';

import type { Logger } from 'pino';

import { errorReplyBody, pathOf } from './error-body.js';
import { graphqlReplyType } from './graphql-media-type.js';

/** Node's default interval between its checks for requests past their deadline. */
const NODE_CHECKING_INTERVAL_MS = 30_000;
/** Node's default time limit for the headers of a request. */
const NODE_HEADERS_TIMEOUT_MS = 60_000;

/**
 * Returns the options of Node's HTTP server that enforce REQUEST_TIMEOUT_MS.
 * Node fixes two things when it creates the server. One is the interval of
 * its checks for requests past their deadline, 30 s by default, so a shorter
 * limit set later, as Fastify's `requestTimeout` option sets it, fires up to
 * 30 s late. The other is the rule that the headers timeout must not exceed
 * the request timeout. So the values go into these options, and a short
 * limit is enforced within twice its value.
 */
export function nodeServerTimeouts(requestTimeoutMs: number): ServerOptions {
  if (requestTimeoutMs === 0) {
    // Node derives the headers timeout from a request timeout of 0 as 0, no limit at all.
    return { requestTimeout: 0, headersTimeout: NODE_HEADERS_TIMEOUT_MS };
  }
  return {
    requestTimeout: requestTimeoutMs,
    headersTimeout: Math.min(NODE_HEADERS_TIMEOUT_MS, requestTimeoutMs),
    connectionsCheckingInterval: Math.min(NODE_CHECKING_INTERVAL_MS, requestTimeoutMs),
  };
}

/**
 * Sends a request that Node ended for its time limits a 408 whose body names
 * the limit, in place of Fastify's "Client Timeout". The headers have a
 * limit of their own, Node's `headersTimeout`, which is 60 s below a longer
 * REQUEST_TIMEOUT_MS and also when it is 0. Other client errors are left to
 * the handler of client-error.ts, which skips a destroyed socket. After
 * `server.close()`, which stops Node's checks, bodies past REQUEST_TIMEOUT_MS
 * get the same 408.
 */
export function answerRequestTimeouts(server: Server, requestTimeoutMs: number, logger: Logger): void {
  // Node emits 'request' once a request's headers are in, so an unfinished
  // latest request means that its body timed out, and otherwise its headers did.
  const latestRequests = new WeakMap<Socket, IncomingMessage>();
  server.prependListener('request', (request: IncomingMessage) => {
    latestRequests.set(request.socket, request);
  });

  /** Sends the 408 and closes the connection, unless the connection is closed already. */
  const answer = (socket: Socket) => {
    if (socket.destroyed) {
      return;
    }
    const latest = latestRequests.get(socket);
    const headersReceived = latest !== undefined && !latest.complete;
    const headersTimeoutMs = server.headersTimeout;
    const timeoutError =
      headersReceived || headersTimeoutMs === requestTimeoutMs
        ? {
            message: `The request was not received in full within ${requestTimeoutMs} ms (REQUEST_TIMEOUT_MS). Send the whole request at once.`,
            limit: 'REQUEST_TIMEOUT_MS',
            max: requestTimeoutMs,
          }
        : {
            message: `The request headers were not received in full within ${headersTimeoutMs} ms, the server's limit for them. Send the whole request at once.`,
            max: headersTimeoutMs,
          };
    logger.info({ clientAddress: socket.remoteAddress, timeoutMs: timeoutError.max }, 'request timed out before it was received in full');
    // A body that timed out has a known URL, so a /graphql request gets GraphQL's `errors` shape.
    const url = headersReceived ? (latest.url ?? '') : '';
    const body = JSON.stringify(errorReplyBody(url, { code: 'BAD_REQUEST', reason: 'REQUEST_TIMEOUT', ...timeoutError }));
    const type = headersReceived && pathOf(url) === '/graphql' ? graphqlReplyType(latest.headers.accept) : 'application/json; charset=utf-8';
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };

  server.prependListener('clientError', (error: Error & { code?: string }, socket: Socket) => {
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      answer(socket);
    }
  });

  if (requestTimeoutMs > 0) {
    timeBodiesAfterClose(server, requestTimeoutMs, (request) => answer(request.socket));
  }
}

/**
 * Keeps REQUEST_TIMEOUT_MS in force for request bodies after `server.close()`,
 * which in Node 20 stops the checks that enforce it, so that a slow body does
 * not hold the drain open until SHUTDOWN_GRACE_MS. From close() on, each
 * request whose body has not come in full gets a timer for the rest of its
 * limit, counted from when its headers came, a little later than Node counts.
 * Headers that never end are left to SHUTDOWN_GRACE_MS.
 */
function timeBodiesAfterClose(server: Server, requestTimeoutMs: number, onTimeout: (request: IncomingMessage) => void): void {
  // The requests whose bodies are still coming, with the time their headers came.
  const receiving = new Map<IncomingMessage, number>();
  let closed = false;
  const startTimer = (request: IncomingMessage, headersAt: number) => {
    const timer = setTimeout(
      () => {
        if (!request.complete) {
          onTimeout(request);
        }
      },
      Math.max(0, headersAt + requestTimeoutMs - Date.now()),
    );
    timer.unref();
    request.once('close', () => clearTimeout(timer));
  };

  server.prependListener('request', (request: IncomingMessage) => {
    if (request.complete) {
      return;
    }
    if (closed) {
      startTimer(request, Date.now());
      return;
    }
    receiving.set(request, Date.now());
    request.once('close', () => receiving.delete(request));
  });

  const close = server.close.bind(server);
  server.close = ((callback?: (error?: Error) => void) => {
    if (!closed) {
      closed = true;
      for (const [request, headersAt] of receiving) {
        startTimer(request, headersAt);
      }
      receiving.clear();
    }
    return close(callback);
  }) as Server['close'];
}
