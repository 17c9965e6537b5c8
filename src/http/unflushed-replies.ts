/**
 * Keeps the drain at shutdown from cutting off replies that are still being
 * written. Node 20's `server.close()` calls `closeIdleConnections()`, which
 * counts a response as done once `end()` ran. It destroyed the connection of
 * a reply whose bytes were still queued for a slow client, so the client got
 * part of the reply while the drain reported no request left.
 */
import type { Server, ServerResponse } from 'node:http';

/**
 * Makes `server.closeIdleConnections()` leave alone the connections of
 * responses that have ended but are still being written out, and close them
 * once they are idle after their reply. Other idle connections close at once,
 * because one kept open takes its client's next request, and Fastify replies
 * to that with a 503 while it closes. A reply that its client stops reading
 * still ends through SEND_TIMEOUT_MS or SHUTDOWN_GRACE_MS.
 */
export function waitForUnflushedReplies(server: Server): void {
  const responses = new Set<ServerResponse>();
  server.on('request', (_request, response: ServerResponse) => {
    responses.add(response);
    response.once('close', () => responses.delete(response));
  });

  const closeIdleConnections = server.closeIdleConnections.bind(server);
  server.closeIdleConnections = function closeIdleConnectionsAfterFlush(this: Server): void {
    const unflushed = [...responses].filter((response) => response.writableEnded && !response.writableFinished);
    // Node 20.20 skips an idle connection whose current response has
    // `finished` false, and sets `finished` in end(), before the reply is
    // written out. It reads the flag only within this synchronous call.
    // NOTE: this relies on that internal check; the shutdown-drain tests fail if a Node upgrade changes it.
    for (const response of unflushed) {
      response.finished = false;
    }
    try {
      closeIdleConnections();
    } finally {
      for (const response of unflushed) {
        response.finished = true;
      }
    }
    if (unflushed.length === 0) {
      return;
    }
    let left = unflushed.length;
    for (const response of unflushed) {
      // Node emits 'close' after 'finish', once the connection has moved on,
      // or when the connection closes first.
      response.once('close', () => {
        left -= 1;
        if (left === 0) {
          server.closeIdleConnections();
        }
      });
    }
  };
}
