/**
 * Child process of the database module test. It makes any import of PGlite
 * or its Prisma adapter fail, then opens the database that DATABASE_URL names
 * (the embedded one when it is unset), runs one statement and prints "opened".
 */
import { register } from 'node:module';

const BLOCKED = ['@electric-sql/pglite', 'pglite-prisma-adapter'];
const hooks = `
const blocked = ${JSON.stringify(BLOCKED)};
export async function resolve(specifier, context, nextResolve) {
  if (blocked.some((name) => specifier === name || specifier.startsWith(name + '/'))) {
    throw new Error('blocked import of ' + specifier);
  }
  return nextResolve(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

const { pino } = await import('pino');
const { openDatabase } = await import('../../src/storage/postgres/database.js');
const database = await openDatabase({
  databaseUrl: process.env.DATABASE_URL,
  dataDir: process.argv[2] ?? '.',
  poolSize: 1,
  statementTimeoutMs: 10_000,
  logger: pino({ level: 'silent' }),
});
try {
  await database.ping();
  process.stdout.write('opened\n');
} finally {
  await database.close();
}
