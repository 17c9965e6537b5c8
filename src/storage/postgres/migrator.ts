/**
 * Applies the SQL migrations in `prisma/migrations/<timestamp>_<name>/migration.sql`
 * in name order and records them in Prisma's `_prisma_migrations` table, so
 * that `prisma migrate deploy` (where Prisma's native schema engine is
 * available) finds the same history. Prisma's own migrate commands cannot run
 * here because their engine cannot be downloaded.
 *
 * A run holds a session-level advisory lock from before it reads the history
 * until its last migration is recorded: a second process starting at the
 * same time waits, then finds nothing pending. Consecutive pending migrations
 * run in one transaction, and each is recorded in it. Their statements wait
 * for other locks, such as a table lock that a long transaction holds, at
 * most `lockTimeoutMs`. While a statement such as ALTER TABLE waits for its
 * lock, every query on that table queues behind it, so an unbounded wait
 * would stop all traffic.
 *
 * A migration whose first line is `-- event-master:no-transaction`
 * (NO_TRANSACTION_MARKER) runs outside a
 * transaction, one statement at a time, for statements that cannot run in a
 * transaction block, such as CREATE INDEX CONCURRENTLY. A plain CREATE INDEX
 * blocks every write to its table until the build ends. The migrations before
 * it are committed first, and it is recorded only after its last statement
 * succeeds. A failure leaves its earlier statements applied, and the next run
 * starts it again from its first statement, so each statement must be safe
 * to run again. A failed concurrent build leaves an INVALID index of its
 * name behind, so write `DROP INDEX CONCURRENTLY IF EXISTS` before each
 * `CREATE INDEX CONCURRENTLY`. Its CONCURRENTLY statements wait for locks
 * without `lockTimeoutMs` (see execStatement). splitStatements describes how
 * the script is split. PGlite 0.5 runs these statements as PostgreSQL does.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { SqlClient, SqlPool } from './sql.js';

/** Advisory lock key Prisma's migrate engine also takes, so the two never interleave. */
const MIGRATION_LOCK_KEY = 72707369;

/** Pause in ms between two tries of a run that waits for another run's advisory lock. */
const LOCK_RETRY_INTERVAL_MS = 200;

/**
 * A statement that builds or drops an index without blocking writes, which
 * waits without lock_timeout. CONCURRENTLY must directly follow INDEX, or the
 * object kind of a REINDEX, as in PostgreSQL's grammar. The word in a comment
 * or in a REINDEX option list must not lift the timeout of a blocking REINDEX.
 */
const CONCURRENT_STATEMENT =
  /^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s*(?:\([^)]*\)\s*)?(?:INDEX|TABLE|SCHEMA|DATABASE))\s+CONCURRENTLY\b/i;

/**
 * A REINDEX whose option list turns CONCURRENTLY on, as `REINDEX (VERBOSE,
 * CONCURRENTLY) TABLE t` or `REINDEX (CONCURRENTLY true) INDEX i`. An option
 * without a value is on. `false`, `off`, `0` and `no` leave it off.
 */
const CONCURRENT_REINDEX_OPTION =
  /^\s*REINDEX\s*\((?:[^)]*,)?\s*CONCURRENTLY(?:\s+(?:TRUE|ON|1|YES))?\s*(?:,[^)]*)?\)\s*(?:INDEX|TABLE|SCHEMA|DATABASE)\b/i;

/** The first line of a migration.sql that runs outside a transaction, one statement at a time. */
export const NO_TRANSACTION_MARKER = '-- event-master:no-transaction';

export interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: string[];
  /**
   * Migrations recorded as applied that are not in the migrations folder,
   * in name order, such as ones that a newer version of the service applied.
   */
  unknown: string[];
}

export interface MigrateOptions {
  /** Maximum wait in ms of one statement for a lock, as PostgreSQL's lock_timeout; 0 waits without limit. */
  lockTimeoutMs: number;
}

/** Lock timeout of migrations when the caller gives none, the default of DB_MIGRATION_LOCK_TIMEOUT_MS. */
export const DEFAULT_MIGRATION_LOCK_TIMEOUT_MS = 5000;

/** SQLSTATE lock_not_available, which a statement fails with after lock_timeout. */
const LOCK_NOT_AVAILABLE = '55P03';

/** The progress of a run, for the message of a lock timeout. */
interface Progress {
  /** The migration being applied, or null while the run reads the history. */
  running: string | null;
  /** Whether `running` runs outside a transaction and some of its statements succeeded. */
  partial: boolean;
  /** The migrations this run applied and committed before `running`. */
  applied: string[];
}

/** The failure of a migration statement that waited longer than the lock timeout for a lock. */
export class MigrationLockTimeoutError extends Error {
  /**
   * @param migration The name of the migration whose statement timed out, or
   *   null for the statements on the `_prisma_migrations` table before it.
   * @param applied The migrations that the run applied and committed before it.
   * @param partial Whether statements of the migration, which runs outside a
   *   transaction, succeeded before the one that timed out.
   */
  constructor(
    readonly migration: string | null,
    readonly lockTimeoutMs: number,
    options: { cause: unknown; applied?: readonly string[]; partial?: boolean },
  ) {
    const subject = migration === null ? 'Reading the migration history (_prisma_migrations)' : `Migration ${migration}`;
    const applied = options.applied ?? [];
    const outcome =
      applied.length === 0
        ? 'so no pending migration was applied.'
        : `so it was not applied. The ${applied.length === 1 ? 'pending migration' : `${applied.length} pending migrations`} ` +
          `before it ${applied.length === 1 ? 'was' : 'were'} applied, up to ${applied[applied.length - 1]}.`;
    const partial =
      options.partial === true
        ? ' Its earlier statements stay applied because it runs outside a transaction, and the next run starts it again.'
        : '';
    super(
      `${subject} failed: it waited more than ${lockTimeoutMs} ms (DB_MIGRATION_LOCK_TIMEOUT_MS) for a lock ` +
        `that another session holds, ${outcome}${partial} Find the blocking session in pg_locks and ` +
        'pg_stat_activity, such as a long or idle transaction, and let it finish or end it with pg_terminate_backend. ' +
        'Then try again, or raise DB_MIGRATION_LOCK_TIMEOUT_MS.',
      { cause: options.cause },
    );
    this.name = 'MigrationLockTimeoutError';
  }
}

export async function readMigrations(directory: string): Promise<Migration[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    const sql = await readFile(join(directory, name, 'migration.sql'), 'utf8');
    migrations.push({ name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

/**
 * Returns the statements of a migration that runs outside a transaction, or
 * null for a migration that runs in one.
 *
 * @throws Error when the marker is not on the first line, or when the script cannot be split.
 */
export function nonTransactionalStatements(migration: Migration): string[] | null {
  const lines = migration.sql.split('\n').map((line) => line.trimEnd());
  const markerLine = lines.indexOf(NO_TRANSACTION_MARKER);
  if (markerLine === -1) {
    return null;
  }
  if (markerLine !== 0) {
    throw new Error(
      `Migration ${migration.name} has "${NO_TRANSACTION_MARKER}" on line ${markerLine + 1}, but the marker counts only on the first line. Move it to the first line.`,
    );
  }
  return splitStatements(migration.name, migration.sql);
}

/**
 * Splits a migration script into its statements. Each statement ends with a
 * semicolon that is the last thing on its line, apart from spaces and a `--`
 * comment. The scan skips `--` comments, quoted strings and quoted
 * identifiers. It rejects what it cannot split safely: a semicolon with more
 * code after it on its line, dollar quoting ($$ or $tag$), block comments,
 * escape strings (E'...'), `BEGIN ATOMIC` function bodies, an unterminated
 * quote, and code after the last semicolon.
 *
 * @throws Error naming the migration and the line when the script breaks a rule.
 */
export function splitStatements(name: string, sql: string): string[] {
  const statements: string[] = [];
  const reject = (index: number, problem: string): never => {
    const line = sql.slice(0, index).split('\n').length;
    throw new Error(
      `Migration ${name} runs outside a transaction, but line ${line} has ${problem}, which its statement splitter does not handle. ` +
        'End each statement with a semicolon at the end of a line, and avoid dollar quotes, block comments, E\'...\' strings and BEGIN ATOMIC bodies.',
    );
  };

  let start = 0;
  let hasCode = false;
  let i = 0;
  while (i < sql.length) {
    const char = sql[i] as string;
    const next = sql[i + 1];
    if (char === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end + 1;
      if (!hasCode) {
        // A statement's text starts at its code, without the comments before it.
        start = i;
      }
    } else if (char === '/' && next === '*') {
      reject(i, 'a block comment');
    } else if (char === '$' && !isIdentifierChar(sql[i - 1]) && startsDollarQuote(sql, i)) {
      reject(i, 'a dollar quote');
    } else if ((char === 'E' || char === 'e') && next === "'" && !isIdentifierChar(sql[i - 1])) {
      reject(i, 'an escape string');
    } else if ((char === 'B' || char === 'b') && !isIdentifierChar(sql[i - 1]) && startsBeginAtomic(sql, i)) {
      // The body of a SQL-standard function ends each of its statements with a semicolon.
      reject(i, 'a BEGIN ATOMIC function body');
    } else if (char === "'" || char === '"') {
      hasCode = true;
      const end = endOfQuoted(sql, i);
      if (end === -1) {
        reject(i, `an unterminated ${char === "'" ? 'string' : 'quoted identifier'}`);
      }
      i = end;
    } else if (char === ';') {
      const lineEnd = sql.indexOf('\n', i);
      const rest = sql.slice(i + 1, lineEnd === -1 ? sql.length : lineEnd).trim();
      if (rest !== '' && !rest.startsWith('--')) {
        reject(i, 'a semicolon with more code after it on the same line');
      }
      if (hasCode) {
        statements.push(sql.slice(start, i).trim());
      }
      start = i + 1;
      hasCode = false;
      i += 1;
    } else {
      if (!/\s/.test(char)) {
        hasCode = true;
      } else if (!hasCode) {
        start = i + 1;
      }
      i += 1;
    }
  }
  if (hasCode) {
    reject(start, 'a statement without a semicolon at its end');
  }
  return statements;
}

/**
 * A dollar quote's opening tag, as PostgreSQL's lexer reads it: letters, digits
 * and underscores, not a digit first, of any length. PostgreSQL counts every
 * non-ASCII character as a letter of a tag or an identifier.
 */
const DOLLAR_QUOTE_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

function startsDollarQuote(sql: string, index: number): boolean {
  DOLLAR_QUOTE_TAG.lastIndex = index;
  return DOLLAR_QUOTE_TAG.test(sql);
}

/** `BEGIN ATOMIC` as a keyword pair, with any spaces, line breaks and `--` comments between them. */
const BEGIN_ATOMIC = /begin(?:\s|--[^\n]*\n)+atomic(?![A-Za-z0-9_$\u0080-\uffff])/iy;

function startsBeginAtomic(sql: string, index: number): boolean {
  BEGIN_ATOMIC.lastIndex = index;
  return BEGIN_ATOMIC.test(sql);
}

function isIdentifierChar(char: string | undefined): boolean {
  return char !== undefined && /[A-Za-z0-9_$\u0080-\uffff]/.test(char);
}

/** Returns the index after the quote that closes the one at `open`, where a doubled quote is part of the text, or -1. */
function endOfQuoted(sql: string, open: number): number {
  const quote = sql[open];
  let i = open + 1;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] !== quote) {
        return i + 1;
      }
      i += 2;
    } else {
      i += 1;
    }
  }
  return -1;
}

/**
 * Applies the pending migrations.
 *
 * @throws Error when an applied migration changed on disk, or when a pending
 *   one that runs outside a transaction cannot be split into statements.
 * @throws MigrationLockTimeoutError when a statement waited longer than `lockTimeoutMs` for a lock.
 */
export async function migrate(
  db: SqlPool,
  migrations: Migration[],
  options: MigrateOptions = { lockTimeoutMs: DEFAULT_MIGRATION_LOCK_TIMEOUT_MS },
): Promise<MigrationResult> {
  const progress: Progress = { running: null, partial: false, applied: [] };
  try {
    return await db.session((session) => migrateInSession(session, migrations, options, progress));
  } catch (error) {
    if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) {
      throw new MigrationLockTimeoutError(progress.running, options.lockTimeoutMs, {
        cause: error,
        applied: progress.applied,
        partial: progress.partial,
      });
    }
    throw error;
  }
}

async function migrateInSession(
  session: SqlClient,
  migrations: Migration[],
  options: MigrateOptions,
  progress: Progress,
): Promise<MigrationResult> {
  let failed = false;
  try {
    // A migration that fills or indexes a large table can take longer than
    // DB_STATEMENT_TIMEOUT_MS, which limits the pool's statements.
    await session.query(`SELECT set_config('statement_timeout', '0', false)`);
    await acquireMigrationLock(session);
    // Set after the advisory lock, so that lock_timeout does not also limit
    // the wait for another process's migrations.
    await session.query(`SELECT set_config('lock_timeout', $1, false)`, [`${options.lockTimeoutMs}ms`]);
    return await applyPending(session, migrations, progress);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    await endSession(session).catch((error: unknown) => {
      // After a failure, the original error is the one to report. On
      // PostgreSQL the session's connection is then closed, which releases
      // the lock and the settings with it.
      if (!failed) {
        throw error;
      }
    });
  }
}

/**
 * Takes the migration lock, trying again every LOCK_RETRY_INTERVAL_MS while
 * another run holds it. A run does not wait in pg_advisory_lock because
 * CREATE INDEX CONCURRENTLY waits for every transaction of its database that
 * has an older snapshot, and a statement waiting for the lock has one: the
 * build and the wait would then deadlock.
 *
 * NOTE: Prisma's migrate engine waits in pg_advisory_lock on the same key,
 * and releases before the one that added this loop wait in
 * pg_advisory_xact_lock. Either one started during a concurrent build can
 * still deadlock with it, and PostgreSQL then fails one of the two. Tried
 * once by hand on PostgreSQL 15, it failed the build, whose INVALID index
 * the next run drops and builds again.
 */
async function acquireMigrationLock(session: SqlClient): Promise<void> {
  for (;;) {
    const [row] = await session.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [MIGRATION_LOCK_KEY]);
    if (row?.locked === true) {
      return;
    }
    await sleep(LOCK_RETRY_INTERVAL_MS);
  }
}

async function endSession(session: SqlClient): Promise<void> {
  await session.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
  await session.exec('RESET lock_timeout; RESET statement_timeout');
}

async function applyPending(session: SqlClient, migrations: Migration[], progress: Progress): Promise<MigrationResult> {
  await session.exec(`
    CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
      "id" VARCHAR(36) PRIMARY KEY NOT NULL,
      "checksum" VARCHAR(64) NOT NULL,
      "finished_at" TIMESTAMPTZ,
      "migration_name" VARCHAR(255) NOT NULL,
      "logs" TEXT,
      "rolled_back_at" TIMESTAMPTZ,
      "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
      "applied_steps_count" INTEGER NOT NULL DEFAULT 0
    )`);

  // The advisory lock keeps other runs from recording migrations until this
  // run ends, so the history stays as read here.
  const rows = await session.query<{ migration_name: string; checksum: string }>(
    `SELECT migration_name, checksum FROM "_prisma_migrations"
     WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`,
  );
  const done = new Map(rows.map((row) => [row.migration_name, row.checksum]));

  const known = new Set(migrations.map((migration) => migration.name));
  const unknown = [...done.keys()].filter((name) => !known.has(name)).sort();
  const result: MigrationResult = { applied: [], alreadyApplied: [], unknown };
  const pending: Array<{ migration: Migration; statements: string[] | null }> = [];
  for (const migration of migrations) {
    const checksum = done.get(migration.name);
    if (checksum === undefined) {
      // Split before anything is applied, so that a script the splitter
      // rejects stops the run with nothing applied.
      pending.push({ migration, statements: nonTransactionalStatements(migration) });
      continue;
    }
    if (checksum !== migration.checksum) {
      throw new Error(
        `Migration ${migration.name} was changed after it was applied (checksum ${migration.checksum}, recorded ${checksum}). Restore the original file and add a new migration instead.`,
      );
    }
    result.alreadyApplied.push(migration.name);
  }
  const marked = pending.find((entry) => entry.statements !== null);
  if (marked !== undefined) {
    await requireStandardStrings(session, marked.migration.name);
  }

  let batch: Migration[] = [];
  for (const { migration, statements } of pending) {
    if (statements === null) {
      batch.push(migration);
      continue;
    }
    await applyInTransaction(session, batch, progress);
    batch = [];
    await applyOutsideTransaction(session, migration, statements, progress);
  }
  await applyInTransaction(session, batch, progress);

  result.applied = [...progress.applied];
  return result;
}

/** Applies `batch` and records each migration of it in one transaction. */
async function applyInTransaction(session: SqlClient, batch: Migration[], progress: Progress): Promise<void> {
  if (batch.length === 0) {
    return;
  }
  await session.transaction(async (tx) => {
    for (const migration of batch) {
      progress.running = migration.name;
      await tx.exec(migration.sql);
      await recordApplied(tx, migration);
    }
  });
  progress.applied.push(...batch.map((migration) => migration.name));
}

/**
 * Checks that the session reads a backslash in '...' as a plain character,
 * as splitStatements does. With standard_conforming_strings off, PostgreSQL
 * reads `'a\';'` as one string, but the splitter would end that string after
 * the backslash and split the statement at the semicolon.
 */
async function requireStandardStrings(session: SqlClient, name: string): Promise<void> {
  const rows = await session.query<{ value: string }>(`SELECT current_setting('standard_conforming_strings') AS value`);
  const value = rows[0]?.value ?? 'unknown';
  if (value !== 'on') {
    throw new Error(
      `Migration ${name} runs outside a transaction, and its statement splitter requires standard_conforming_strings = on, ` +
        `but the migration session has "${value}". Nothing was applied. Set it to on for the database or role (the default since PostgreSQL 9.1).`,
    );
  }
}

/** Runs the statements of `migration` one at a time, each in its own implicit transaction, then records it. */
async function applyOutsideTransaction(
  session: SqlClient,
  migration: Migration,
  statements: string[],
  progress: Progress,
): Promise<void> {
  progress.running = migration.name;
  progress.partial = false;
  for (const [index, statement] of statements.entries()) {
    try {
      await execStatement(session, statement);
    } catch (error) {
      if ((error as { code?: unknown }).code === LOCK_NOT_AVAILABLE) {
        throw error;
      }
      const earlier =
        index === 0
          ? ''
          : index === 1
            ? ' Its earlier statement stays applied because it runs outside a transaction.'
            : ` Its ${index} earlier statements stay applied because it runs outside a transaction.`;
      throw new Error(
        `Migration ${migration.name} failed at statement ${index + 1} of ${statements.length}: ${(error as Error).message}.` +
          `${earlier} It was not recorded, so the next run starts it again from its first statement.`,
        { cause: error },
      );
    }
    progress.partial = true;
  }
  await recordApplied(session, migration);
  progress.partial = false;
  progress.applied.push(migration.name);
}

/**
 * Runs one statement of a migration outside a transaction. A CONCURRENTLY
 * statement runs without lock_timeout, because its waits block no reads or
 * writes: it waits for the transactions older than its build, and its lock
 * on the table conflicts only with schema changes, VACUUM and other builds.
 * On a busy database some transaction is nearly always older than a few
 * seconds, so a build limited by DB_MIGRATION_LOCK_TIMEOUT_MS could fail on
 * every start.
 */
async function execStatement(session: SqlClient, statement: string): Promise<void> {
  if (!isConcurrentStatement(statement)) {
    await session.exec(statement);
    return;
  }
  const [setting] = await session.query<{ value: string }>(`SELECT current_setting('lock_timeout') AS value`);
  await session.query(`SELECT set_config('lock_timeout', '0', false)`);
  const restore = () => session.query(`SELECT set_config('lock_timeout', $1, false)`, [setting?.value ?? '0']);
  try {
    await session.exec(statement);
  } catch (error) {
    // After a lost connection the restore fails too. The run then ends and
    // its connection is discarded, so the statement's error is the one to report.
    await restore().catch(() => undefined);
    throw error;
  }
  await restore();
}

/** Tells whether `statement` is a CREATE INDEX, DROP INDEX or REINDEX with CONCURRENTLY. */
export function isConcurrentStatement(statement: string): boolean {
  return CONCURRENT_STATEMENT.test(statement) || CONCURRENT_REINDEX_OPTION.test(statement);
}

async function recordApplied(db: SqlClient, migration: Migration): Promise<void> {
  await db.query(
    `INSERT INTO "_prisma_migrations"
       (id, checksum, finished_at, migration_name, started_at, applied_steps_count)
     VALUES ($1, $2, now(), $3, now(), 1)`,
    [randomUUID(), migration.checksum, migration.name],
  );
}
