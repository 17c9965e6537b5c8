/**
 * `npm run user` as a child process against a temporary DATA_DIR (embedded
 * PGlite) and, with DATABASE_URL, a fresh PostgreSQL database. Accounts it
 * creates must be able to log in over HTTP afterwards.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';
import {
  killProcessGroup,
  REPO_ROOT,
  runCli,
  spawnChild,
  stopChildrenWhenTestsEnd,
  TSX,
  unusedLoopbackPort,
  useTemporaryDirectory,
  type CliResult,
} from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { describeWithPostgres, postgresUrl } from '../support/services.js';

const USER_CLI = 'src/cli/user.ts';
const CHILD_TIMEOUT_MS = 30_000;
/**
 * Timeout of a test that runs several CLI children one after another. Each
 * child starts tsx and opens its database, which took up to 10 s in
 * a full run on a loaded 2-core machine, so the suite's 30 s default is too
 * short for several in a row.
 */
const SEVERAL_CHILDREN_TIMEOUT_MS = 120_000;

const ADMIN_PASSWORD = 'Cli-Admin-Password-9137';
const CRLF_PASSWORD = 'cli crlf password 2';
const BOM_PASSWORD = 'cli bom password 3';
const TTY_PASSWORD = 'Cli-Tty-Password-5521';

/** Environment of a child: only what the CLI reads, so DATABASE_URL never leaks in by accident. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    NODE_ENV: 'test',
    PASSWORD_SCRYPT_LOG2_N: '14',
    // The lowest level (trace), so a leaked password would show in the output.
    LOG_LEVEL: 'trace',
    ...extra,
  };
}

function runUserCli(args: string[], env: Record<string, string>, input: string | Buffer | null = null): Promise<CliResult> {
  return runCli(USER_CLI, args, env, { input, timeoutMs: CHILD_TIMEOUT_MS });
}

/**
 * Runs the CLI on a pseudo-terminal through util-linux `script`, typing each
 * answer once its prompt has appeared.
 */
function runCliOnTerminal(args: string[], env: Record<string, string>, answers: Array<string | Buffer>): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const command = [TSX, USER_CLI, ...args].map((part) => `'${part}'`).join(' ');
    const { child, closed } = spawnChild('script', ['-qec', command, '/dev/null'], { cwd: REPO_ROOT, env });
    let output = '';
    let answered = 0;
    const prompts = ['Password: ', 'Repeat password: '];
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      // 'Repeat password: ' appears only after the first password is typed.
      const prompt = prompts[answered];
      const answer = answers[answered];
      if (prompt !== undefined && answer !== undefined && output.includes(prompt)) {
        answered += 1;
        child.stdin.write(Buffer.concat([Buffer.from(answer), Buffer.from('\r')]));
      }
    });
    const timer = setTimeout(() => void killProcessGroup(child, closed), CHILD_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout: output, stderr: '' });
    });
  });
}

const hasScript = spawnSync('script', ['--version']).status === 0;

// A test that fails or times out would otherwise leave its child running
// with the embedded database open, and the tests after it would fail too.
stopChildrenWhenTestsEnd();

// The tests run in order on one DATA_DIR, and later ones read the accounts that earlier ones created.
describe('user CLI on PGlite', () => {
  let dataDir: string;
  let env: Record<string, string>;

  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'em-cli-user-'));
    env = childEnv({ DATA_DIR: dataDir });
  });

  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each([['--help'], ['-h']])('help %s exits 0', async (option) => {
    const result = await runUserCli([option], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('npm run user -- create NAME --role');
  });

  // Concurrent: these runs stop before opening the database.
  it.concurrent.each([
    [[], 'A command is missing'],
    [['create', 'cli-x'], 'create requires --role'],
    [['create', 'cli-x', '--role', 'ROOT'], '--role "ROOT" is invalid'],
    [['create', '--role', 'ADMIN'], 'create expects exactly one NAME'],
    [['delete', 'cli-x'], 'Unknown command "delete"'],
    [['list', '--bogus'], "Unknown option '--bogus'"],
  ])('usage error %j exits 2', async (args, message) => {
    const result = await runUserCli(args, env, 'unused-password\n');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it('create reads password from stdin', async () => {
    const result = await runUserCli(['create', 'cli-admin', '--role', 'ADMIN'], env, `${ADMIN_PASSWORD}\n`);
    expect(result.stderr).not.toContain('error');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Created user cli-admin with role ADMIN and id [0-9a-f-]{36}\.\n$/);
    expect(result.stderr).toContain('Applied pending migrations');
    expect(result.stdout + result.stderr).not.toContain(ADMIN_PASSWORD);
  });

  it('create lowercase role, CRLF line', async () => {
    const result = await runUserCli(['create', 'cli-crlf', '--role', 'member'], env, `${CRLF_PASSWORD}\r\nsecond line\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Created user cli-crlf with role MEMBER');
    expect(result.stdout + result.stderr).not.toContain(CRLF_PASSWORD);
  });

  it('create drops a byte order mark', async () => {
    const result = await runUserCli(['create', 'cli-bom', '--role', 'MEMBER'], env, `\uFEFF${BOM_PASSWORD}\r\n`);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Created user cli-bom with role MEMBER');
  });

  it('duplicate username exits 1', async () => {
    const result = await runUserCli(['create', 'cli-admin', '--role', 'MEMBER'], env, 'another-password-1\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Username "cli-admin" is already taken.');
    expect(result.stdout).toBe('');
  });

  it('invalid user exits 1', async () => {
    const result = await runUserCli(['create', 'bad name', '--role', 'MEMBER'], env, 'short\n');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('username "bad name" is invalid');
    expect(result.stderr).toContain('password has 5 characters; it must have at least 8');
    expect(result.stderr).not.toContain('short\n');
  });

  it('empty stdin exits 1', async () => {
    const result = await runUserCli(['create', 'cli-empty', '--role', 'MEMBER'], env, '');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('No password on standard input');
  });

  describe.skipIf(!hasScript)('on a terminal', () => {
    it('prompts twice without echo', async () => {
      const result = await runCliOnTerminal(['create', 'cli-tty', '--role', 'ANALYST'], env, [
        TTY_PASSWORD,
        TTY_PASSWORD,
      ]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Password: ');
      expect(result.stdout).toContain('Repeat password: ');
      expect(result.stdout).toContain('Created user cli-tty with role ANALYST');
      expect(result.stdout).not.toContain(TTY_PASSWORD);
    });

    it('different answers exit 1', async () => {
      const result = await runCliOnTerminal(['create', 'cli-tty-mismatch', '--role', 'MEMBER'], env, [
        TTY_PASSWORD,
        `${TTY_PASSWORD}-typo`,
      ]);
      expect(result.code).toBe(1);
      expect(result.stdout).toContain('The two passwords differ. Nothing was stored.');
      expect(result.stdout).not.toContain(TTY_PASSWORD);
    });

    it('typed bytes that are not UTF-8 exit 1', async () => {
      // "abcdefgh" and the Latin-1 byte 0xE9, an "é" typed on a Latin-1 terminal.
      const latin1 = Buffer.from([...Buffer.from('abcdefgh'), 0xe9]);
      const result = await runCliOnTerminal(['create', 'cli-tty-latin1', '--role', 'MEMBER'], env, [latin1, latin1]);

      expect(result.code).toBe(1);
      expect(result.stdout).toContain('not valid UTF-8');
    });

    it('backspace deletes a whole character', async () => {
      // "é" is two bytes in UTF-8, so one backspace must remove both.
      const corrected = Buffer.concat([Buffer.from('abcdefghé'), Buffer.from([0x7f]), Buffer.from('i')]);
      const result = await runCliOnTerminal(['create', 'cli-tty-backspace', '--role', 'MEMBER'], env, [corrected, 'abcdefghi']);

      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Created user cli-tty-backspace');
    });
  });

  it('list prints a table', async () => {
    const result = await runUserCli(['list'], env);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^USERNAME\s+ROLE\s+STATUS\s+ID\s+CREATED AT$/);
    expect(lines.slice(1).map((line) => line.split(/\s+/).slice(0, 2))).toEqual(
      expect.arrayContaining([
        ['cli-admin', 'ADMIN'],
        ['cli-crlf', 'MEMBER'],
      ]),
    );
  });

  it('list --json', async () => {
    const result = await runUserCli(['list', '--json'], env);
    expect(result.code).toBe(0);
    const users = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
    expect(users.map((user) => [user.username, user.role])).toEqual(
      expect.arrayContaining([
        ['cli-admin', 'ADMIN'],
        ['cli-crlf', 'MEMBER'],
      ]),
    );
    expect(users.map((user) => user.username)).not.toContain('cli-tty-mismatch');
    for (const user of users) {
      expect(Object.keys(user).sort()).toEqual(['createdAt', 'disabled', 'id', 'role', 'username']);
    }
  });

  it('set-role, set-password, disable and enable', async () => {
    expect((await runUserCli(['create', 'cli-ops', '--role', 'MEMBER'], env, 'first-password-1\n')).code).toBe(0);

    const role = await runUserCli(['set-role', 'CLI-OPS', '--role', 'analyst'], env);
    expect(role.code).toBe(0);
    expect(role.stdout).toBe('User cli-ops has the role ANALYST.\n');

    const password = await runUserCli(['set-password', 'cli-ops'], env, 'second-password-2\n');
    expect(password.code).toBe(0);
    expect(password.stdout).toBe('User cli-ops has a new password.\n');
    expect(password.stdout + password.stderr).not.toContain('second-password-2');

    expect((await runUserCli(['disable', 'cli-ops'], env)).stdout).toBe('User cli-ops is disabled.\n');
    const listed = JSON.parse((await runUserCli(['list', '--json'], env)).stdout) as Array<Record<string, unknown>>;
    expect(listed.find((user) => user.username === 'cli-ops')).toMatchObject({ role: 'ANALYST', disabled: true });

    expect((await runUserCli(['enable', 'cli-ops'], env)).stdout).toBe('User cli-ops is enabled.\n');
  }, SEVERAL_CHILDREN_TIMEOUT_MS);

  it('set-password rejects bytes that are not UTF-8', async () => {
    expect((await runUserCli(['create', 'cli-bytes', '--role', 'MEMBER'], env, 'first-password-1\n')).code).toBe(0);

    const result = await runUserCli(['set-password', 'cli-bytes'], env, Buffer.from([...Buffer.from('abcdefgh'), 0xff, 0xfe, 0x0a]));

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('not valid UTF-8');
  }, SEVERAL_CHILDREN_TIMEOUT_MS);

  it.each([
    { name: 'unknown user', args: ['disable', 'cli-nobody'], code: 1, message: 'User "cli-nobody" not found' },
    { name: 'set-role without --role', args: ['set-role', 'cli-ops'], code: 2, message: 'set-role requires --role' },
    { name: 'disable with --role', args: ['disable', 'cli-ops', '--role', 'ADMIN'], code: 2, message: 'disable takes no options' },
  ])('$name is rejected', async ({ args, code, message }) => {
    const result = await runUserCli(args, env);
    expect(result.code).toBe(code);
    expect(result.stderr).toContain(message);
  });

  it('created users log in over HTTP', async () => {
    // An empty DATABASE_URL keeps the server on the PGlite files in dataDir
    // even when the suite runs against PostgreSQL.
    const server = await startTestServer(import.meta.filename, { dataDir, sweeper: false, env: { DATABASE_URL: '' } });
    try {
      const token = await server.login('cli-admin', ADMIN_PASSWORD);
      const me = await server.gql('{ me { username role } }', {}, token);
      expect(me.data?.me).toEqual({ username: 'cli-admin', role: 'ADMIN' });

      // The CLI's admin is the first user, so ADMIN_USERNAME created no other.
      const users = await server.gql<{ users: Array<{ username: string }> }>('{ users { username } }', {}, token);
      expect(users.data?.users.map((user) => user.username)).not.toContain('admin');

      const crlfToken = await server.login('cli-crlf', CRLF_PASSWORD);
      expect(crlfToken).toBeTypeOf('string');
      const bomToken = await server.login('cli-bom', BOM_PASSWORD);
      expect(bomToken).toBeTypeOf('string');
      const opsToken = await server.login('cli-ops', 'second-password-2');
      const ops = await server.gql('{ me { role disabled } }', {}, opsToken);
      expect(ops.data?.me).toEqual({ role: 'ANALYST', disabled: false });
      if (hasScript) {
        expect(await server.login('cli-tty', TTY_PASSWORD)).toBeTypeOf('string');
      }
    } finally {
      await server.close();
    }
  });
});

describeWithPostgres('user CLI on PostgreSQL', () => {
  let databaseUrl: string;
  let database: TestDatabase | undefined;
  let server: TestServer | null = null;

  beforeAll(async () => {
    database = await createTestDatabase(postgresUrl() as string, { prefix: 'em_test_cli' });
    databaseUrl = database.url;
  });

  afterAll(async () => {
    await server?.close();
    await database?.drop();
  });

  it('created admin logs in over HTTP', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'em-cli-user-pg-'));
    try {
      const env = childEnv({ DATA_DIR: dataDir, DATABASE_URL: databaseUrl });
      const result = await runUserCli(['create', 'cli-pg-admin', '--role', 'ADMIN'], env, `${ADMIN_PASSWORD}\n`);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Created user cli-pg-admin with role ADMIN');
      expect(result.stdout + result.stderr).not.toContain(ADMIN_PASSWORD);

      const list = await runUserCli(['list', '--json'], env);
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ username: 'cli-pg-admin', role: 'ADMIN' })]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }

    server = await startTestServer(import.meta.filename, { databaseUrl, sweeper: false });
    const token = await server.login('cli-pg-admin', ADMIN_PASSWORD);
    const me = await server.gql('{ me { username role } }', {}, token);
    expect(me.data?.me).toEqual({ username: 'cli-pg-admin', role: 'ADMIN' });
  }, SEVERAL_CHILDREN_TIMEOUT_MS);
});

describe('user CLI without its database', () => {
  const password = 'pg-password-not-printed';
  const dataDir = useTemporaryDirectory('em-cli-user-down-');

  /** Checks the one-line message of a failed connection to `maskedUrl`. */
  function expectConnectionFailure(result: CliResult, maskedUrl: string, reason: string): void {
    expect(result.code, 'exit code').toBe(1);
    expect(result.stderr, 'message').toContain(`error: connecting to PostgreSQL at ${maskedUrl} (DATABASE_URL) failed: ${reason}`);
    expect(result.stderr, 'advice').toMatch(/\. (Check|Create|Correct) .*DATABASE_URL/);
    expect(result.stderr, 'stack trace').not.toMatch(/^\s+at /m);
    expect(result.stdout + result.stderr, 'password').not.toContain(password);
  }

  it('unreachable PostgreSQL exits 1', async () => {
    const port = await unusedLoopbackPort();
    const env = childEnv({ DATA_DIR: dataDir(), DATABASE_URL: `postgresql://postgres:${password}@127.0.0.1:${port}/missing` });
    const result = await runUserCli(['list'], env);
    expectConnectionFailure(result, `postgresql://postgres:***@127.0.0.1:${port}/missing`, `connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  describeWithPostgres('on PostgreSQL', () => {
    /** Builds the test server's DATABASE_URL with `password` and another user name or database. */
    function variantUrl(change: { username?: string; database?: string }): URL {
      const url = new URL(postgresUrl() as string);
      url.password = password;
      if (change.username !== undefined) {
        url.username = change.username;
      }
      if (change.database !== undefined) {
        url.pathname = `/${change.database}`;
      }
      return url;
    }

    it('missing database exits 1', async () => {
      const database = `em_test_cli_missing_${Date.now()}`;
      const url = variantUrl({ database });
      const result = await runUserCli(['list'], childEnv({ DATA_DIR: dataDir(), DATABASE_URL: url.href }));
      url.password = '***';
      expectConnectionFailure(result, url.href, `database "${database}" does not exist`);
    });

    it('unknown role exits 1', async () => {
      const role = `em_test_cli_nobody_${Date.now()}`;
      const url = variantUrl({ username: role });
      const result = await runUserCli(['list'], childEnv({ DATA_DIR: dataDir(), DATABASE_URL: url.href }));
      url.password = '***';
      // Trust authentication reports the unknown role, password authentication a failed password.
      expect(result.stderr).toMatch(new RegExp(`role "${role}" does not exist|password authentication failed`));
      expectConnectionFailure(result, url.href, '');
    });
  });
});
