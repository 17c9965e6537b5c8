/**
 * The limit on how long a reply may wait for its client to read more of it.
 * Node keeps the unsent part of a reply in memory for as long as the client
 * does not read it, and no other limit ends such a connection. So a client
 * that requests large pages and stops reading keeps their memory in use
 * until the process runs out of it.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/**
 * Closes the connection of a reply of which the client read nothing more
 * for SEND_TIMEOUT_MS (0 turns the limit off). The socket's inactivity timeout
 * counts from the reply on. After a whole reply, Node replaces it with the
 * keep-alive timeout, and clears it when the next request comes, so the time
 * a request takes to run does not count. A pipelined request, one the client
 * sent before the reply to the one ahead of it, is already running then, so
 * Node leaves the timeout in place, and it is cleared here instead.
 */
export function closeStalledReplies(fastify: FastifyInstance, sendTimeoutMs: number, logger: Logger): void {
  if (sendTimeoutMs === 0) {
    return;
  }
  // Replies that reached onSend, so that the timeout counts for them.
  const sending = new WeakSet<ServerResponse>();
  // The unfinished responses of each connection, in the order of their requests, which is the order Node sends them in.
  const unfinished = new WeakMap<Socket, ServerResponse[]>();

  // Ahead of Fastify's handler, so that the listeners below are in place before any reply.
  fastify.server.prependListener('request', (request, response) => {
    const socket = request.socket;
    const queue = unfinished.get(socket) ?? [];
    unfinished.set(socket, queue);
    queue.push(response);
    const remove = () => {
      const index = queue.indexOf(response);
      if (index >= 0) {
        queue.splice(index, 1);
      }
    };
    // Node's own 'finish' listener, added before the 'request' event, has
    // moved the connection on to the next response when this one runs.
    response.once('finish', () => {
      remove();
      const next = queue[0];
      if (next !== undefined && !sending.has(next) && !socket.destroyed) {
        // The server's own socket timeout, which Node sets when a request comes.
        socket.setTimeout(fastify.server.timeout);
      }
    });
    response.once('close', remove);
  });

  fastify.addHook('onSend', async (request, reply, payload) => {
    const response = reply.raw;
    const socket = request.raw.socket;
    sending.add(response);
    // A pipelined reply has no socket until the replies ahead of it are
    // sent, and the timeout that the last of them set still runs then.
    if (response.socket !== null) {
      socket.setTimeout(sendTimeoutMs);
    }
    // When the socket times out, Node emits 'timeout' on the response it is
    // writing, and destroys the socket itself only without a listener.
    response.once('timeout', () => {
      // writableLength counts each write until all of it has gone to the
      // kernel, so part of a large write may have reached the client already.
      logger.info(
        { requestId: request.id, clientAddress: socket.remoteAddress, sendTimeoutMs, pendingWriteBytes: socket.writableLength },
        'reply closed because the client read no more of it within SEND_TIMEOUT_MS',
      );
      socket.destroy();
    });
    return payload;
  });
}
