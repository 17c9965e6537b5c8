/**
 * Process entry: reads the configuration, starts the service, and stops it
 * cleanly on SIGINT or SIGTERM. `/readyz` returns 503 at once, requests are
 * still served for SHUTDOWN_DELAY_MS, and then the server drains them and
 * closes Redis and the database. A second signal exits at once, and so do
 * requests still running SHUTDOWN_GRACE_MS after the drain began, and a close
 * that takes longer than SHUTDOWN_CLOSE_TIMEOUT_MS after the drain.
 */
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

import { loadDotEnvFile } from './config/dotenv.js';
import { ConfigError, loadConfig, type Config } from './config/index.js';
import { createApp, createLogger, MetricsListenError, type App } from './app.js';
import { describeConnectionFailure } from './storage/connection-failure.js';
import { DataDirectoryInUseError } from './storage/postgres/database.js';
import { MigrationLockTimeoutError } from './storage/postgres/migrator.js';

/**
 * Returns the reason of a failed listen, with the setting to change where the
 * operator can fix it: HOST and PORT, or METRICS_HOST and METRICS_PORT for
 * the metrics listener.
 */
function describeListenFailure(error: unknown, config: Config): string {
  const metrics = error instanceof MetricsListenError;
  const cause = metrics ? error.cause : error;
  const host = metrics ? config.metrics.host : config.server.host;
  const port = metrics ? config.metrics.port : config.server.port;
  const hostVariable = metrics ? 'METRICS_HOST' : 'HOST';
  const portVariable = metrics ? 'METRICS_PORT' : 'PORT';
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') {
    return `port ${port} on ${host} is already in use; stop the other process or set ${portVariable}`;
  }
  if (code === 'EADDRNOTAVAIL') {
    return `address ${host} is not available on this machine; check ${hostVariable}`;
  }
  // The resolver takes `[::1]`, the form of an IPv6 address in a URL, for a host name.
  if (code === 'ENOTFOUND' && host.startsWith('[') && host.endsWith(']') && isIP(host.slice(1, -1)) === 6) {
    return `${hostVariable} ${host} is an IPv6 address in brackets, which only URLs use; set ${hostVariable} to ${host.slice(1, -1)}`;
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `host ${host} could not be resolved (${code}); check ${hostVariable}, or give an IP address such as 127.0.0.1`;
  }
  return (cause as Error).message;
}

async function main(): Promise<void> {
  let config;
  try {
    loadDotEnvFile();
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config);
  let app: App;
  try {
    app = await createApp(config, { logger });
  } catch (error) {
    const failure =
      describeConnectionFailure(error, config) ??
      (error instanceof MigrationLockTimeoutError || error instanceof DataDirectoryInUseError ? error.message : null);
    if (failure === null) {
      throw error;
    }
    logger.error(`Event Master cannot start: ${failure}`);
    logger.flush?.();
    process.exit(1);
  }
  let url: string;
  try {
    url = await app.listen();
  } catch (error) {
    logger.error(`Event Master cannot listen: ${describeListenFailure(error, config)}.`);
    await app.close();
    process.exit(1);
  }
  const metricsUrl = app.metricsUrl();
  logger.info(
    {
      database: config.database.url === null ? `embedded PGlite in ${config.dataDir}` : 'PostgreSQL',
      redis: config.redis.url === null ? 'in-process store' : 'Redis',
      metrics: metricsUrl === null ? 'off (METRICS_PORT is unset)' : `${metricsUrl}/metrics`,
    },
    metricsUrl === null
      ? `Event Master is serving GraphQL at ${url}/graphql`
      : `Event Master is serving GraphQL at ${url}/graphql and metrics at ${metricsUrl}/metrics`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second stop signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    app.announceShutdown();
    const { shutdownDelayMs, shutdownGraceMs, shutdownCloseTimeoutMs } = config.server;
    if (shutdownDelayMs > 0) {
      // Load balancers take the instance out once /readyz fails, and until
      // then they may still send it requests, which it serves.
      logger.info({ signal, delayMs: shutdownDelayMs }, 'stopping: /readyz returns 503 for SHUTDOWN_DELAY_MS before the drain');
      await sleep(shutdownDelayMs);
    }
    logger.info({ signal }, 'stopping: draining requests');
    // The grace limits only the requests, so an idle server exits with 0
    // even when the grace is 0. Stopping the background jobs and closing
    // Redis and the database then get SHUTDOWN_CLOSE_TIMEOUT_MS.
    const graceTimer = setTimeout(() => {
      const requests = app.countRequestsInFlight();
      if (requests === 0) {
        // A connection that has sent part of a request head counts no
        // request, yet keeps the drain open, and Node stops enforcing
        // headersTimeout once the server closes. No request runs on any
        // connection now, so closing them all cuts no reply off.
        logger.info(
          { graceMs: shutdownGraceMs },
          'SHUTDOWN_GRACE_MS ended with no request in flight: closing the remaining connections',
        );
        app.closeConnections();
        return;
      }
      logger.error({ graceMs: shutdownGraceMs, requests }, 'drain took longer than SHUTDOWN_GRACE_MS: exiting');
      process.exit(1);
    }, shutdownGraceMs);
    graceTimer.unref();
    const onDrained = () => {
      clearTimeout(graceTimer);
      logger.info({ closeTimeoutMs: shutdownCloseTimeoutMs }, 'stopping: requests drained, closing background jobs and connections');
      // Closing takes network round trips, so a limit of 0 would fail every
      // stop. It means no limit, as for DB_MIGRATION_LOCK_TIMEOUT_MS.
      if (shutdownCloseTimeoutMs === 0) {
        return;
      }
      const closeTimer = setTimeout(() => {
        logger.error(
          { closeTimeoutMs: shutdownCloseTimeoutMs },
          'closing background jobs and connections took longer than SHUTDOWN_CLOSE_TIMEOUT_MS: exiting',
        );
        process.exit(1);
      }, shutdownCloseTimeoutMs);
      closeTimer.unref();
    };
    app.close({ onDrained }).then(
      () => {
        logger.info('stopped');
        logger.flush?.();
        process.exit(0);
      },
      () => {
        // close() has logged each failed step with its error already.
        logger.error('stopping failed in the steps logged above; exiting with status 1');
        logger.flush?.();
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  // Some settings can be checked only during start-up, such as ADMIN_PASSWORD against the password rules.
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(2);
  }
  console.error('Event Master failed to start:', error);
  process.exit(1);
});
