/**
 * `npm run rebuild [-- --full]`: rebuilds every user's engine state in Redis
 * and its auto-close deadline from PostgreSQL. With `--full` it also
 * recomputes all segments and corrections from the event log, which also
 * completes the replays that pair type changes queued, and then the report
 * rollups of the changed chunks. Safe while servers run: each user is rebuilt under that
 * user's lock, and rollup rebuilds skip chunks another process is rebuilding.
 */
import { parseArgs } from 'node:util';

import { loadDotEnvFile } from '../config/dotenv.js';
import { createApp, createLogger } from '../app.js';
import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { markDeadlinesSeeded } from '../services/sweeper.js';
import { CHANGE_DELAY_MS } from '../services/replays.js';
import { RollupBuilder } from '../services/rollups.js';
import { describeConnectionFailure } from '../storage/connection-failure.js';
import { DataDirectoryInUseError } from '../storage/postgres/database.js';
import { MigrationLockTimeoutError } from '../storage/postgres/migrator.js';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const usage = [
    'Usage: npm run rebuild [-- --full]',
    '  --full      also recompute segments and corrections from the event log',
    '  --help, -h  print this help',
    '',
    'Exit status: 0 when the rebuild finished, 1 when it failed or PostgreSQL or',
    'Redis could not be reached, 2 for invalid arguments or configuration.',
  ].join('\n');
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        full: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    console.error(`error: ${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const full = values.full;

  loadDotEnvFile();
  const config = loadConfig();
  if (config.redis.url === null && !full) {
    console.log(
      'REDIS_URL is not set, so the engine state lives in the server process, which rebuilds it from the database at start-up. Nothing to do; --full still recomputes derived data.',
    );
    process.exit(0);
  }
  try {
    await rebuild(config, full);
  } catch (error) {
    const failure =
      describeConnectionFailure(error, config) ??
      (error instanceof MigrationLockTimeoutError || error instanceof DataDirectoryInUseError ? error.message : null);
    if (failure === null) {
      throw error;
    }
    console.error(`error: ${failure}`);
    process.exit(1);
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

async function rebuild(config: Config, full: boolean): Promise<void> {
  // Unless LOG_LEVEL is set, only errors are logged: the command prints what
  // it did, and a connection failure ends in one line of its own instead of
  // the retry warnings of the Redis client.
  const quiet = process.env.LOG_LEVEL === undefined || process.env.LOG_LEVEL === '';
  const logger = createLogger(quiet ? { ...config, logLevel: 'error' } : config);
  const app = await createApp(config, { logger, sweeper: false, rollups: false, replays: false, tokens: false, requireStore: true });
  try {
    if (app.changedBuiltInPairTypes.length > 0) {
      // The quiet logger hides the server's log line, and a value that differs
      // from the servers' makes every user with such segments replay twice.
      console.log(
        `The built-in pair types ${app.changedBuiltInPairTypes.join(' and ')} now auto-close after ${config.intake.defaultAutoCloseTimeoutSeconds} s (DEFAULT_AUTO_CLOSE_TIMEOUT_SECONDS), so the servers' replay workers recompute their users. A server that starts with another value changes it back.`,
      );
    }
    // The rebuild reads the pair types as they are now, so it applies every
    // change old enough that no server can fold with its old definition. The
    // changes are deleted only after every user is rebuilt, so a rebuild that
    // stops part-way leaves them to the servers' replay workers.
    const applied = full
      ? await app.db.sql.query<{ id: string }>(
          `SELECT id::text FROM pair_type_changes WHERE changed_at <= clock_timestamp() - $1::int * interval '1 millisecond'`,
          [CHANGE_DELAY_MS],
        )
      : [];
    // Taken before the first user's deadline is written, so that a Redis
    // restart during the rebuild leaves the deadline set unmarked.
    const seed = await app.store.startDeadlineSeed();
    const rows = await app.db.sql.query<{ id: string; username: string }>(`SELECT id, username FROM users ORDER BY lower(username) COLLATE "C"`);
    let done = 0;
    for (const row of rows) {
      await app.services.intake.rebuild(row.id, full);
      done += 1;
      if (done % 100 === 0 || done === rows.length) {
        process.stderr.write(`rebuilt ${done} of ${plural(rows.length, 'user')}\n`);
      }
    }
    if (applied.length > 0) {
      await app.db.sql.query(`DELETE FROM pair_type_changes WHERE id = ANY($1::bigint[])`, [applied.map((row) => row.id)]);
      console.log(`The rebuild applied ${plural(applied.length, 'pair type change')} that the servers' replay workers had not queued yet.`);
    }
    if (!(await markDeadlinesSeeded(app.store, seed))) {
      console.log(`Redis restarted during the rebuild, so the servers' next sweep schedules every user with open pairs again.`);
    }
    console.log(`Rebuilt ${full ? 'derived data and ' : ''}engine state for ${plural(rows.length, 'user')}.`);
    if (full) {
      // The new segments marked their chunks stale. Rebuild them now rather
      // than leave it to the servers' builders, so reports are fast at once.
      const builder = new RollupBuilder({
        sql: app.db.sql,
        logger,
        intervalMs: config.rollups.intervalMs,
        batchSize: config.rollups.batchSize,
        delayMs: 0,
      });
      console.log(`Rebuilt ${plural(await builder.buildOnce(), 'report rollup chunk')}.`);
    }
  } finally {
    await app.close();
  }
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(2);
  }
  console.error('rebuild failed:', error);
  process.exit(1);
});
