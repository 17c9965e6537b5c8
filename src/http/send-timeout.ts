/**
 * The limit on how long a reply may wait for its client to read more of it.
 * Node keeps the unsent part of a reply in memory for as long as the client
 * does not read it, and no other limit ends such a connection. So a client
 * that requests large pages and stops reading keeps their memory in use
 * until the process runs out of it.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

/**
 * Closes the connection of a reply of which the client read nothing more
 * for SEND_TIMEOUT_MS (0 turns the limit off). The socket's inactivity timeout
 * counts from the reply on. After a whole reply, Node replaces it with the
 * keep-alive timeout, and clears it when the next request comes, so the time
 * a request takes to run does not count.
 */
export function closeStalledReplies(fastify: FastifyInstance, sendTimeoutMs: number, logger: Logger): void {
  if (sendTimeoutMs === 0) {
    return;
  }
  fastify.addHook('onSend', async (request, reply, payload) => {
    const response = reply.raw;
    const socket = response.socket;
    if (socket === null) {
      return payload;
    }
    socket.setTimeout(sendTimeoutMs);
    // When the socket times out, Node emits 'timeout' on the response it is
    // writing, and destroys the socket itself only without a listener.
    response.once('timeout', () => {
      logger.info(
        { requestId: request.id, clientAddress: socket.remoteAddress, sendTimeoutMs, unsentBytes: socket.writableLength },
        'reply closed because the client read no more of it within SEND_TIMEOUT_MS',
      );
      socket.destroy();
    });
    return payload;
  });
}
