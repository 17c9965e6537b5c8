/**
 * A server on PostgreSQL does not load PGlite, which would add tens of MB to
 * its resident memory. The child process makes any import of PGlite fail, and
 * the embedded database, which needs it, shows that the block works.
 */
import { describe, expect, it } from 'vitest';

import { runCli, useTemporaryDirectory } from '../support/cli.js';

const CHILD = 'tests/support/open-database-child.ts';

describe('database modules', () => {
  const dataDir = useTemporaryDirectory('em-database-modules-');
  const baseEnv = { PATH: process.env.PATH ?? '' };

  it.skipIf(process.env.DATABASE_URL === undefined)('PostgreSQL opens without PGlite', async () => {
    const result = await runCli(CHILD, [dataDir()], { ...baseEnv, DATABASE_URL: process.env.DATABASE_URL! }, { timeoutMs: 60_000 });

    expect(result.stderr, 'stderr').not.toContain('blocked import');
    expect(result.stdout, 'stdout').toContain('opened');
    expect(result.code, 'exit code').toBe(0);
  }, 60_000);

  it('embedded database needs PGlite', async () => {
    const result = await runCli(CHILD, [dataDir()], baseEnv, { timeoutMs: 60_000 });

    expect(result.stderr, 'stderr').toContain('blocked import of @electric-sql/pglite');
    expect(result.code, 'exit code').not.toBe(0);
  }, 60_000);
});
