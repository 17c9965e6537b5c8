/**
 * The metrics listener: a plain node:http server on METRICS_HOST and
 * METRICS_PORT that serves `GET /metrics` and nothing else. It listens on a
 * port of its own, so that a public API port never exposes the metrics.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from 'pino';

import type { AppMetrics } from './metrics.js';

export interface MetricsServer {
  /** Listens on `host` and `port` (0 picks a free port) and returns the base URL. */
  listen(host: string, port: number): Promise<string>;
  /** Stops accepting connections and closes the open ones, a scrape in progress included. */
  close(): Promise<void>;
}

export function createMetricsServer(metrics: AppMetrics, logger: Logger): MetricsServer {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found. Metrics are served at GET /metrics.\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end(`${request.method} is not allowed on /metrics; use GET.\n`);
      return;
    }
    metrics.render().then(
      (text) => {
        response.writeHead(200, { 'content-type': metrics.contentType });
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'rendering the metrics failed');
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Rendering the metrics failed; see the server log.\n');
      },
    );
  });
  let listening = false;

  return {
    async listen(host, port) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
      listening = true;
      server.on('error', (error) => logger.error({ err: error }, 'metrics listener failed'));
      const { port: boundPort } = server.address() as AddressInfo;
      const urlHost = host.includes(':') ? `[${host}]` : host;
      return `http://${urlHost}:${boundPort}`;
    },
    async close() {
      if (!listening) {
        return;
      }
      listening = false;
      const closed = new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
      });
      // A scraper's keep-alive connection would otherwise hold close() open.
      server.closeAllConnections();
      await closed;
    },
  };
}
