/**
 * Keeps the drain at shutdown from cutting off replies that are still being
 * written. Node 20's `server.close()` calls `closeIdleConnections()`, which
 * counts a response as done once `end()` ran. It destroyed the connection of
 * a reply whose bytes were still queued for a slow client, so the client got
 * part of the reply while the drain reported no request left.
 */
import type { Server, ServerResponse } from 'node:http';

/**
 * Makes `server.closeIdleConnections()` wait until every response that has
 * ended has also been written out or closed, and then close the connections
 * that are idle by then. A reply that its client stops reading still ends
 * through SEND_TIMEOUT_MS or SHUTDOWN_GRACE_MS.
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
    if (unflushed.length === 0) {
      closeIdleConnections();
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
