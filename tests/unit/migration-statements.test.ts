import { describe, expect, it } from 'vitest';

import { isConcurrentStatement, NO_TRANSACTION_MARKER, nonTransactionalStatements, splitStatements } from '../../src/storage/postgres/migrator.js';

describe('splitStatements', () => {
  const accepted: Array<{ name: string; sql: string; statements: string[] }> = [
    { name: 'one per line', sql: 'SELECT 1;\nSELECT 2;\n', statements: ['SELECT 1', 'SELECT 2'] },
    {
      name: 'statement over several lines',
      sql: 'CREATE INDEX i ON t (a)\n  WHERE b;\n',
      statements: ['CREATE INDEX i ON t (a)\n  WHERE b'],
    },
    {
      name: 'comments before and after',
      sql: '-- first; not a statement\nSELECT 1; -- trailing; comment\n-- last\n',
      statements: ['SELECT 1'],
    },
    { name: 'semicolon in a string', sql: "SELECT 'a;\nb';\n", statements: ["SELECT 'a;\nb'"] },
    { name: 'doubled quotes', sql: `SELECT 'it''s;', "a"";";\n`, statements: [`SELECT 'it''s;', "a"";"`] },
    { name: 'dollar sign in a name', sql: 'SELECT a$b$ FROM t;\n', statements: ['SELECT a$b$ FROM t'] },
    { name: 'dollar sign after a non-ASCII letter', sql: 'SELECT é$b$ FROM t;\n', statements: ['SELECT é$b$ FROM t'] },
    { name: 'no final newline', sql: 'SELECT 1;', statements: ['SELECT 1'] },
    {
      name: 'words like begin and atomic',
      sql: 'SELECT begin_atomic, begin AS atomic_x FROM t;\n',
      statements: ['SELECT begin_atomic, begin AS atomic_x FROM t'],
    },
    { name: 'only comments', sql: '-- nothing\n\n', statements: [] },
  ];

  it.each(accepted)('splits $name', ({ sql, statements }) => {
    expect(splitStatements('m', sql)).toEqual(statements);
  });

  const rejected: Array<{ name: string; sql: string; message: string }> = [
    { name: 'two statements on a line', sql: 'SELECT 1; SELECT 2;\n', message: 'line 1 has a semicolon with more code after it' },
    { name: 'dollar quote', sql: 'SELECT 1;\nDO $$ BEGIN END $$;\n', message: 'line 2 has a dollar quote' },
    { name: 'tagged dollar quote', sql: 'SELECT $fn$x$fn$;\n', message: 'line 1 has a dollar quote' },
    // PostgreSQL allows non-ASCII letters in a tag, and a tag of any length.
    { name: 'non-ASCII dollar tag', sql: 'DO $é$ BEGIN\n  CREATE TABLE x (id int);\nEND $é$;\n', message: 'line 1 has a dollar quote' },
    {
      name: 'dollar tag over 63 characters',
      sql: `DO $${'a'.repeat(64)}$ BEGIN\n  CREATE TABLE x (id int);\nEND $${'a'.repeat(64)}$;\n`,
      message: 'line 1 has a dollar quote',
    },
    { name: 'block comment', sql: '/* c; */\nSELECT 1;\n', message: 'line 1 has a block comment' },
    { name: 'escape string', sql: "SELECT E'a\\';';\n", message: 'line 1 has an escape string' },
    {
      name: 'BEGIN ATOMIC body',
      sql: 'SELECT 1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql\nbegin -- body\n  atomic\n  SELECT 1;\nEND;\n',
      message: 'line 3 has a BEGIN ATOMIC function body',
    },
    { name: 'unterminated string', sql: "SELECT 1;\nSELECT 'a;\n", message: 'line 2 has an unterminated string' },
    { name: 'unterminated identifier', sql: 'SELECT "a;\n', message: 'line 1 has an unterminated quoted identifier' },
    { name: 'missing semicolon', sql: 'SELECT 1;\nSELECT 2\n', message: 'line 2 has a statement without a semicolon at its end' },
  ];

  it.each(rejected)('rejects $name', ({ sql, message }) => {
    expect(() => splitStatements('m', sql)).toThrow(`Migration m runs outside a transaction, but ${message}`);
  });
});

describe('nonTransactionalStatements', () => {
  it('returns null without the marker', () => {
    expect(nonTransactionalStatements({ name: 'm', sql: 'SELECT 1; SELECT 2;', checksum: '' })).toBeNull();
  });

  it('splits with the marker first', () => {
    const sql = `${NO_TRANSACTION_MARKER}\r\nSELECT 1;\r\nSELECT 2;\r\n`;
    expect(nonTransactionalStatements({ name: 'm', sql, checksum: '' })).toEqual(['SELECT 1', 'SELECT 2']);
  });

  it('rejects the marker on a later line', () => {
    const sql = `-- comment\n${NO_TRANSACTION_MARKER}\nSELECT 1;\n`;
    expect(() => nonTransactionalStatements({ name: 'm', sql, checksum: '' })).toThrow(
      `Migration m has "${NO_TRANSACTION_MARKER}" on line 2, but the marker counts only on the first line.`,
    );
  });
});

describe('isConcurrentStatement', () => {
  it.each([
    'CREATE INDEX CONCURRENTLY i ON t (a)',
    'create unique index concurrently if not exists i on t (a)',
    'DROP INDEX CONCURRENTLY IF EXISTS i',
    'REINDEX INDEX CONCURRENTLY i',
    'REINDEX TABLE CONCURRENTLY t',
    'REINDEX (VERBOSE) TABLE CONCURRENTLY t',
    'REINDEX SCHEMA\n  CONCURRENTLY s',
    'REINDEX (CONCURRENTLY) TABLE t',
    'reindex (verbose, concurrently true) index i',
    'REINDEX (CONCURRENTLY on, VERBOSE) SCHEMA s',
  ])('accepts %s', (statement) => {
    expect(isConcurrentStatement(statement)).toBe(true);
  });

  // These block reads or writes, so they must keep the lock timeout.
  it.each([
    'CREATE INDEX i ON t (a)',
    'REINDEX TABLE t -- not CONCURRENTLY, to save space',
    'REINDEX (VERBOSE, CONCURRENTLY false) TABLE t',
    'REINDEX (CONCURRENTLY off) TABLE t',
    'REINDEX (CONCURRENTLY 0, VERBOSE) INDEX i',
    'REINDEX (CONCURRENTLY) SYSTEM d',
    'REINDEX TABLE t\n-- run CONCURRENTLY next time',
    'ALTER TABLE t ADD COLUMN c integer -- before the index is built CONCURRENTLY',
  ])('rejects %s', (statement) => {
    expect(isConcurrentStatement(statement)).toBe(false);
  });
});
