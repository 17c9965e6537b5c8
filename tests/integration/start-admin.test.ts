/**
 * The first admin comes from ADMIN_USERNAME and ADMIN_PASSWORD, which only
 * start-up can check against the account rules. A start with values that
 * break them exits with code 2 and names the variable, like any other
 * invalid setting, without a stack trace and without the password.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { runCli } from '../support/cli.js';

const dataDirs: string[] = [];

/** Starts `src/main.ts` on the embedded defaults in a fresh data folder with the given first admin. */
function start(username: string, password: string) {
  const dataDir = mkdtempSync(join(tmpdir(), 'em-start-admin-'));
  dataDirs.push(dataDir);
  return runCli(
    'src/main.ts',
    [],
    {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      ADMIN_USERNAME: username,
      ADMIN_PASSWORD: password,
    },
    { timeoutMs: 60_000 },
  );
}

describe('first admin from the environment', () => {
  afterAll(() => {
    for (const dataDir of dataDirs) {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('names a short ADMIN_PASSWORD', async () => {
    const result = await start('admin', 'tiny-pw');

    expect(result.code, 'exit code').toBe(2);
    expect(result.stderr, 'message').toContain('ADMIN_PASSWORD: password has 7 characters; it must have at least 8.');
    expect(result.stderr + result.stdout, 'output').not.toContain('tiny-pw');
    expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
  }, 60_000);

  it('names an invalid ADMIN_USERNAME', async () => {
    const result = await start('Zoë', 'long-enough-password');

    expect(result.code, 'exit code').toBe(2);
    expect(result.stderr, 'message').toContain('ADMIN_USERNAME: username "Zoë" is invalid: use 1 to 64 ASCII letters');
    expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
  }, 60_000);
});
