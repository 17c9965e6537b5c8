/**
 * A start whose DATABASE_URL names a PostgreSQL server that refuses the
 * connection exits with code 1 and logs one line that names the setting, with
 * the password masked and without a stack trace.
 */
import { describe, expect, it } from 'vitest';

import { runCli, unusedLoopbackPort, useTemporaryDirectory } from '../support/cli.js';

describe('start without PostgreSQL', () => {
  const password = 'pg-password-not-printed';
  const dataDir = useTemporaryDirectory('em-start-database-');

  it('unreachable PostgreSQL exits 1', async () => {
    const port = await unusedLoopbackPort();
    const result = await runCli(
      'src/main.ts',
      [],
      {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: '0',
        DATA_DIR: dataDir(),
        DATABASE_URL: `postgresql://postgres:${password}@127.0.0.1:${port}/missing`,
      },
      { timeoutMs: 60_000 },
    );
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain(
      `Event Master cannot start: connecting to PostgreSQL at postgresql://postgres:***@127.0.0.1:${port}/missing ` +
        `(DATABASE_URL) failed: connect ECONNREFUSED 127.0.0.1:${port}. Check that PostgreSQL is running`,
    );
    expect(output, 'stack trace').not.toMatch(/^\s+at /m);
    // The log is JSON under production, where a stack trace would be a "stack" field.
    expect(output, 'stack field').not.toContain('"stack"');
    expect(output, 'password').not.toContain(password);
  }, 60_000);
});
