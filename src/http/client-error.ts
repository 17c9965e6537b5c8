/**
 * Replies to requests that Node's HTTP parser rejects before any route runs.
 * One example is a GET of /graphql whose `variables` contain a large
 * expression, so that the request line and headers exceed Node's limit
 * (`http.maxHeaderSize`, 16 KB by default). Fastify's own handler sends a
 * body of its own shape. This one sends the shapes of the other errors of
 * the HTTP layer: GraphQL's `errors` on /graphql and `{ error }` elsewhere.
 */
import { maxHeaderSize, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import type { FastifyBaseLogger } from 'fastify';

import { errorReplyBody, pathOf } from './error-body.js';
import { graphqlReplyType } from './graphql-media-type.js';

/**
 * A parser error as Node emits it in 'clientError'. Its `rawPacket` is a
 * Buffer of the bytes that Node could not parse, although Fastify's types
 * describe it as the object that Buffer's `toJSON` returns.
 */
interface ClientError extends Error {
  code?: string;
  rawPacket?: unknown;
}

/** The parts of the rejected request that its reply depends on, as far as the packet contains them. */
interface RequestStart {
  url: string;
  accept: string | undefined;
}

/**
 * Reads the URL and the Accept header from the start of a request. Only
 * whole lines count. Without a whole Accept line the reply is
 * `application/json`, and a request line cut before its path ends gives the
 * REST shape.
 *
 * NOTE: `rawPacket` is only the read in which the parser failed. When the
 * request arrived in several reads, as a long URL over a real network
 * usually does, the request line is in an earlier one, so a GET of /graphql
 * gets the REST shape. In a read that contains pipelined requests, the line
 * read here is the first request's, not the failed one's.
 */
function readRequestStart(rawPacket: unknown): RequestStart {
  if (!Buffer.isBuffer(rawPacket)) {
    return { url: '', accept: undefined };
  }
  const lines = rawPacket.toString('latin1').split('\r\n');
  const requestLine = /^[A-Z]+ (\S+)/.exec(lines[0] ?? '');
  let accept: string | undefined;
  // The last element is a line that the packet may have cut.
  for (const line of lines.slice(1, -1)) {
    if (line === '') {
      break;
    }
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'accept') {
      accept = line.slice(colon + 1).trim();
    }
  }
  return { url: requestLine?.[1] ?? '', accept };
}

/**
 * Calls `send` once no reply of an earlier request on `socket` is in flight.
 * Node parses pipelined requests ahead of their replies, so a later request
 * can fail to parse while the replies of earlier ones are still due, and a
 * client matches replies to its requests by their order. `_httpMessage` is
 * the reply that Node is writing on the socket, the field that Node's own
 * fallback for 'clientError' checks. When that reply finishes, Node moves
 * the next queued one there before this listener runs.
 *
 * A reply in flight that has not started and whose request is incomplete
 * belongs to the request whose body failed to parse, such as a body cut off
 * because the client closed the connection. That body never completes, so
 * the reply never finishes, and `send` runs at once. Waiting for it would
 * keep the connection and its request open until REQUEST_TIMEOUT_MS.
 */
function afterRepliesInFlight(socket: Socket, send: () => void): void {
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight === null || inFlight === undefined || (!inFlight.req.complete && !inFlight.headersSent)) {
    send();
    return;
  }
  inFlight.once('finish', () => afterRepliesInFlight(socket, send));
}

/**
 * Returns a Fastify `clientErrorHandler` that sends 431 for a request line
 * and headers above Node's limit and 400 for other requests that are not
 * valid HTTP, then closes the connection. A request that timed out gets its
 * 408 from `answerRequestTimeouts` first, which destroys the socket. The
 * reply waits for the replies of earlier pipelined requests on the socket.
 */
export function createClientErrorHandler(logger: FastifyBaseLogger): (error: ClientError, socket: Socket) => void {
  // Node's parser reports its error again for data that arrives while the reply waits.
  const answered = new WeakSet<Socket>();
  return (error, socket) => {
    if (error.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) {
      return;
    }
    answered.add(socket);
    const { url, accept } = readRequestStart(error.rawPacket);
    const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
    const status = tooLarge ? 431 : 400;
    const fields = tooLarge
      ? {
          code: 'BAD_REQUEST',
          reason: 'HEADERS_TOO_LARGE',
          message: `The request line and headers are above the server's limit of ${maxHeaderSize} bytes. Send a large query or large variables in the body of a POST.`,
          max: maxHeaderSize,
        }
      : {
          code: 'BAD_REQUEST',
          reason: 'INVALID_HTTP_REQUEST',
          message: 'The request is not valid HTTP/1.1, so the server could not read it.',
        };
    // The path only, because the rest of the URL can carry a GraphQL document with a password.
    logger.info(
      { clientAddress: socket.remoteAddress, code: error.code, path: pathOf(url), status },
      'request rejected before it was parsed',
    );
    const body = JSON.stringify(errorReplyBody(url, fields));
    const type = pathOf(url) === '/graphql' ? graphqlReplyType(accept) : 'application/json; charset=utf-8';
    // NOTE: the reply carries no CORS headers, because the CORS hook runs only
    // for parsed requests, so a page of another origin cannot read it.
    afterRepliesInFlight(socket, () => {
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      }
      socket.destroy();
    });
  };
}
