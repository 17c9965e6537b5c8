/**
 * Applies the pending SQL migrations from prisma/migrations and prints their
 * names. Usage: npm run migrate [-- --help]
 *
 * The server applies pending migrations at start-up too. This command lets a
 * deployment apply them as a separate step, before the new version starts.
 * Several copies may run at once: the migrator serialises them with an
 * advisory lock, so each migration is applied once.
 */
import { loadDotEnvFile } from '../config/dotenv.js';
import { parseArgs } from 'node:util';

import pino from 'pino';

import { ConfigError, loadConfig, type Config } from '../config/index.js';
import { describeConnectionFailure, describeDatabase } from '../storage/connection-failure.js';
import { openDatabase, type Database } from '../storage/postgres/database.js';

const USAGE = `Usage: npm run migrate [-- --help]

Applies the pending migrations from prisma/migrations, in name order and in
one transaction, and prints the name of each one it applied. A migration whose
first line is "-- event-master:no-transaction" runs outside a transaction, one
statement at a time, after the ones before it are committed. Migrations that
the database records but this version lacks, such as ones a newer version
applied, are listed in a warning on standard error.

The database is DATABASE_URL, or the embedded PGlite database under DATA_DIR
when DATABASE_URL is unset. Embedded PGlite allows one process at a time, so
stop the server before running this command against the same DATA_DIR.

Exit status: 0 when the database is up to date, 1 when the database cannot be
reached, a migration failed or an applied migration was changed on disk
(nothing is applied then), 2 for invalid arguments or configuration.
`;

const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** Describes migrations that the database has and this version lacks. */
function describeUnknownMigrations(names: readonly string[]): string {
  return (
    `the database has ${plural(names.length, 'applied migration')} that this version does not contain: ${names.join(', ')}. ` +
    'Such migrations come from a newer version of the service, so this version may not work with the schema. Run the newer version.'
  );
}

async function applyMigrations(config: Config): Promise<void> {
  // Logs go to standard error, so standard output carries only the result.
  const level = process.env.LOG_LEVEL === undefined || process.env.LOG_LEVEL === '' ? 'warn' : config.logLevel;
  const logger = pino({ level }, pino.destination({ fd: 2, sync: true }));

  process.stdout.write(`Database: ${describeDatabase(config)}\n`);
  const db: Database = await openDatabase({
    databaseUrl: config.database.url ?? undefined,
    dataDir: config.dataDir,
    poolSize: 1,
    statementTimeoutMs: config.database.statementTimeoutMs,
    migrationLockTimeoutMs: config.database.migrationLockTimeoutMs,
    logger,
  });
  try {
    const result = await db.migrate();
    if (result.unknown.length > 0) {
      process.stderr.write(`warning: ${describeUnknownMigrations(result.unknown)}\n`);
    }
    for (const name of result.applied) {
      process.stdout.write(`Applied ${name}\n`);
    }
    if (result.applied.length === 0) {
      process.stdout.write(
        `No pending migrations; ${plural(result.alreadyApplied.length, 'migration')} already applied.\n`,
      );
    } else {
      process.stdout.write(
        `Applied ${plural(result.applied.length, 'migration')}; ${result.alreadyApplied.length} already applied before.\n`,
      );
    }
  } finally {
    await db.close();
  }
}

async function main(argv: readonly string[]): Promise<number> {
  let config: Config;
  try {
    const { values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: { help: { type: 'boolean', short: 'h', default: false } },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return EXIT.ok;
    }
    loadDotEnvFile();
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`error: ${(error as Error).message}\nRun npm run migrate -- --help for usage.\n`);
    return EXIT.usage;
  }

  try {
    await applyMigrations(config);
    return EXIT.ok;
  } catch (error) {
    // An unusable DATA_DIR is found only when the database opens.
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return EXIT.usage;
    }
    const failure =
      describeConnectionFailure(error, config) ??
      `migrating ${describeDatabase(config)} failed: ${error instanceof Error ? error.message : String(error)}`;
    process.stderr.write(`error: ${failure}\n`);
    return EXIT.failed;
  }
}

process.exitCode = await main(process.argv.slice(2));
