/**
 * Start-up failures on the embedded PGlite database that the operator must
 * fix: a data directory that another live process holds, for the server and
 * for `npm run rebuild`, and a HOST that does not resolve. Each exits with
 * code 1 and prints one line that names the cause, without a stack trace.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { runCli, useTemporaryDirectory } from '../support/cli.js';

describe('start on embedded PGlite', () => {
  const dataDir = useTemporaryDirectory('em-start-embedded-');

  function environment(overrides: Record<string, string>): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir(),
      ...overrides,
    };
  }

  it('data directory in use exits 1', async () => {
    // The test runner is a live process other than the server, so its pid
    // in the lock file marks the embedded database as in use.
    const directory = join(dataDir(), 'in-use');
    mkdirSync(directory, { recursive: true });
    writeFileSync(join(directory, 'event-master.pid'), `${process.pid}\n`);

    const result = await runCli('src/main.ts', [], environment({ DATA_DIR: directory }), { timeoutMs: 60_000 });
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain(
      `Event Master cannot start: The embedded database in ${directory} is in use by process ${process.pid}.`,
    );
    // The process can also be another program that reuses the id of a server that crashed.
    expect(output, 'stale lock file').toContain(`delete ${join(directory, 'event-master.pid')}`);
    expect(output, 'stack trace').not.toMatch(/^\s+at /m);
    expect(output, 'stack field').not.toContain('"stack"');
  }, 60_000);

  it('rebuild on data in use exits 1', async () => {
    const directory = join(dataDir(), 'rebuild-in-use');
    mkdirSync(directory, { recursive: true });
    writeFileSync(join(directory, 'event-master.pid'), `${process.pid}\n`);

    const result = await runCli('src/cli/rebuild.ts', ['--full'], environment({ DATA_DIR: directory }), { timeoutMs: 60_000 });
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain(
      `error: The embedded database in ${directory} is in use by process ${process.pid}.`,
    );
    expect(output, 'stack trace').not.toMatch(/^\s+at /m);
  }, 60_000);

  it('unresolvable HOST exits 1', async () => {
    // RFC 6761 reserves .invalid, so no resolver returns an address for it.
    const host = 'event-master-test.invalid';
    const result = await runCli('src/main.ts', [], environment({ HOST: host, DATA_DIR: join(dataDir(), 'host') }), { timeoutMs: 60_000 });
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain(`Event Master cannot listen: host ${host} could not be resolved`);
    expect(output, 'setting').toContain('check HOST');
    expect(output, 'stack trace').not.toMatch(/^\s+at /m);
  }, 60_000);

  it('bracketed IPv6 HOST exits 1', async () => {
    // Brackets belong to URLs. The resolver looks the text up as a host name.
    const result = await runCli('src/main.ts', [], environment({ HOST: '[::1]', DATA_DIR: join(dataDir(), 'bracketed-host') }), { timeoutMs: 60_000 });
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain('Event Master cannot listen: HOST [::1] is an IPv6 address in brackets');
    expect(output, 'fix').toContain('set HOST to ::1');
    expect(output, 'IPv4 hint').not.toContain('such as 127.0.0.1');
  }, 60_000);

  it('bracketed host name HOST exits 1', async () => {
    const result = await runCli('src/main.ts', [], environment({ HOST: '[no-such-host.invalid]', DATA_DIR: join(dataDir(), 'bracketed-name') }), {
      timeoutMs: 60_000,
    });
    const output = result.stdout + result.stderr;

    expect(result.code, 'exit code').toBe(1);
    expect(output, 'message').toContain('host [no-such-host.invalid] could not be resolved');
    expect(output, 'IPv6 claim').not.toContain('is an IPv6 address');
  }, 60_000);
});
