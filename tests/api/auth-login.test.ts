/**
 * Login over GraphQL and REST, what the logs contain about it, and the role
 * checks on the admin operations.
 */
import { Writable } from 'node:stream';

import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';

import { hashPassword, verifyPassword } from '../../src/auth/password.js';
import { addressKey } from '../../src/auth/rate-limit.js';
import { ADMIN, startTestServer, type TestServer } from '../support/app.js';

interface RestReply {
  status: number;
  contentType: string | null;
  body: Record<string, any>;
}

const LOGIN = `mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token expiresAt user { id username role } } }`;

describe('login and roles over HTTP', () => {
  let server: TestServer;
  const logLines: string[] = [];

  beforeAll(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(chunk.toString('utf8'));
        callback();
      },
    });
    server = await startTestServer(import.meta.filename, {
      sweeper: false,
      logger: pino({ level: 'trace' }, stream),
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  // All requests come from 127.0.0.1, so failed logins of one test would
  // count against the address budget of the next.
  beforeEach(async () => {
    await server.app.store.resetCounter(addressKey('127.0.0.1'));
  });

  async function restLogin(body: unknown, headers: Record<string, string> = {}): Promise<RestReply> {
    const response = await fetch(`${server.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      contentType: response.headers.get('content-type'),
      body: (await response.json()) as Record<string, any>,
    };
  }

  it.skipIf(process.env.DATABASE_URL === undefined)('second start logs ignored admin variables', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        lines.push(chunk.toString('utf8'));
        callback();
      },
    });
    // The same database, which has users: ADMIN_* from the test setup no longer apply.
    const second = await startTestServer(import.meta.filename, {
      sweeper: false,
      databaseUrl: server.databaseUrl!,
      logger: pino({ level: 'info' }, stream),
    });
    await second.close();

    const ignored = lines.map((line) => JSON.parse(line) as { msg?: string; username?: string }).filter((entry) => entry.msg?.includes('are ignored'));
    expect(ignored).toHaveLength(1);
    expect(ignored[0]?.username).toBe(ADMIN.username);
    expect(lines.join('')).not.toContain(ADMIN.password);
  });

  it('login rehashes an older scrypt cost', async () => {
    const { id } = await server.createUser('login-rehash');
    const password = 'login-rehash-password';
    // The test server hashes with ln=14; this hash has the cost of an earlier setting.
    const older = await hashPassword(password, { log2N: 15 });
    await server.app.db.prisma.user.update({ where: { id }, data: { passwordHash: older } });

    const first = await server.gql(LOGIN, { u: 'login-rehash', p: password });
    expect(first.errors).toBeUndefined();
    const stored = await server.app.db.prisma.user.findUniqueOrThrow({ where: { id } });
    expect(stored.passwordHash).toMatch(/^scrypt\$ln=14,/);
    expect(await verifyPassword(password, stored.passwordHash)).toBe(true);

    const second = await server.gql(LOGIN, { u: 'login-rehash', p: password });
    expect(second.errors).toBeUndefined();
  });

  it('wrong password keeps older hash', async () => {
    const { id } = await server.createUser('login-keep-hash');
    const older = await hashPassword('login-keep-hash-password', { log2N: 15 });
    await server.app.db.prisma.user.update({ where: { id }, data: { passwordHash: older } });

    const failed = await server.gql(LOGIN, { u: 'login-keep-hash', p: 'not-the-password' });
    expect(failed.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    const stored = await server.app.db.prisma.user.findUniqueOrThrow({ where: { id } });
    expect(stored.passwordHash).toBe(older);
  });

  it('wrong password and unknown user alike', async () => {
    await server.createUser('login-alike');

    const wrong = await server.gql(LOGIN, { u: 'login-alike', p: 'not-the-password' });
    const unknown = await server.gql(LOGIN, { u: 'login-nobody', p: 'not-the-password' });

    expect(wrong.data).toBeNull();
    expect(unknown.data).toBeNull();
    expect(wrong.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(unknown.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(wrong.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    expect(unknown.errors?.[0]?.extensions).toEqual(wrong.errors?.[0]?.extensions);
    expect(unknown.errors?.[0]?.message).toBe(wrong.errors?.[0]?.message);

    const restWrong = await restLogin({ username: 'login-alike', password: 'not-the-password' });
    const restUnknown = await restLogin({ username: 'login-nobody', password: 'not-the-password' });
    expect(restWrong.status).toBe(401);
    expect(restUnknown.status).toBe(401);
    expect(restUnknown.body).toEqual(restWrong.body);
    expect(restWrong.body.error?.message).toBe(wrong.errors?.[0]?.message);
  });

  it('oversized credentials rejected alike', async () => {
    const longName = await server.gql(LOGIN, { u: 'x'.repeat(5000), p: 'not-the-password' });
    const longPassword = await server.gql(LOGIN, { u: ADMIN.username, p: 'p'.repeat(5000) });

    expect(longName.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
    expect(longPassword.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
  });

  it('GraphQL login returns token', async () => {
    const created = await server.createUser('login-graphql');

    const result = await server.gql(LOGIN, { u: 'login-graphql', p: 'login-graphql-password' });
    expect(result.errors).toBeUndefined();
    const login = result.data?.login;
    expect(login.user).toEqual({ id: created.id, username: 'login-graphql', role: 'MEMBER' });
    expect(Date.parse(login.expiresAt)).toBeGreaterThan(Date.now());

    const me = await server.gql('{ me { id } }', {}, login.token);
    expect(me.data?.me.id).toBe(created.id);
  });

  it('REST login returns token', async () => {
    const created = await server.createUser('login-rest');

    const reply = await restLogin({ username: 'login-rest', password: 'login-rest-password' });
    expect(reply.status).toBe(200);
    expect(reply.contentType).toMatch(/^application\/json/);
    expect(reply.body.user).toEqual({ id: created.id, username: 'login-rest', role: 'MEMBER' });
    expect(Date.parse(reply.body.expires_at)).toBeGreaterThan(Date.now());
    expect(typeof reply.body.token).toBe('string');

    const me = await server.gql('{ me { id } }', {}, reply.body.token);
    expect(me.data?.me.id).toBe(created.id);
  });

  it('REST login wrong password 401', async () => {
    const reply = await restLogin({ username: ADMIN.username, password: 'not-the-admin-password' });
    expect(reply.status).toBe(401);
    expect(reply.contentType).toMatch(/^application\/json/);
    expect(reply.body.error?.code).toBe('UNAUTHENTICATED');
    expect(reply.body.error?.reason).toBe('INVALID_CREDENTIALS');
    expect(reply.body.token).toBeUndefined();
  });

  it.each([
    ['password missing', { username: ADMIN.username }],
    ['password not a string', { username: ADMIN.username, password: 12345678 }],
    ['array body', [ADMIN.username, ADMIN.password]],
  ])('REST login %s 400', async (_name, body) => {
    const reply = await restLogin(body);
    expect(reply.status).toBe(400);
    expect(reply.body.error?.code).toBe('BAD_USER_INPUT');
    expect(reply.body.token).toBeUndefined();
  });

  it.each([
    ['misspelled field', { user: ADMIN.username, password: 'secret-value-1' }, '"username" is missing'],
    ['password a number', { username: ADMIN.username, password: 12345678 }, '"password" is a number'],
    ['array body', [ADMIN.username, 'secret-value-1'], 'it is an array'],
  ])('REST login names the bad field: %s', async (_name, body, detail) => {
    const reply = await restLogin(body);
    const message = reply.body.error?.message as string;

    expect(reply.body.error?.reason, 'reason').toBe('INVALID_LOGIN_BODY');
    expect(message, 'detail').toContain(detail);
    expect(message, 'password value').not.toContain('secret-value-1');
    expect(message, 'number value').not.toContain('12345678');
  });

  it('X-Forwarded-For ignored without TRUST_PROXY', async () => {
    const max = server.app.config.auth.loginRateLimitMaxAttempts;
    for (let attempt = 0; attempt < max; attempt += 1) {
      const reply = await restLogin(
        { username: `login-spoof-${attempt}`, password: 'not-the-password' },
        { 'x-forwarded-for': `203.0.113.${attempt + 1}` },
      );
      expect(reply.status).toBe(401);
      expect(reply.body.error?.reason).toBe('INVALID_CREDENTIALS');
    }

    // The address budget of 127.0.0.1 is spent, whatever the header claims.
    const blocked = await restLogin(ADMIN, { 'x-forwarded-for': '203.0.113.200' });
    expect(blocked.status).toBe(429);
    expect(blocked.body.error?.reason).toBe('RATE_LIMITED');
    expect(blocked.body.token).toBeUndefined();
  });

  it('password absent from logs', async () => {
    const wrongPassword = 'Wrong-Password-In-Logs-4711';
    await server.createUser('login-logged');
    await server.gql(LOGIN, { u: 'login-logged', p: wrongPassword });
    await restLogin({ username: 'login-logged', password: wrongPassword });
    const good = await restLogin({ username: 'login-logged', password: 'login-logged-password' });
    expect(good.status).toBe(200);

    const log = logLines.join('');
    // The capture works: the failed logins are there, with the username.
    const failures = logLines.filter((line) => line.includes('"login failed"') && line.includes('login-logged'));
    expect(failures.length).toBeGreaterThanOrEqual(2);

    expect(log).not.toContain(wrongPassword);
    expect(log).not.toContain('login-logged-password');
    expect(log).not.toContain(ADMIN.password);
    expect(log).not.toContain(good.body.token);
  });

  describe('new passwords', () => {
    const CREATE = `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`;

    it.each([
      ['an unpaired surrogate', 'abcdefg\ud800h', 'unpaired UTF-16 surrogate'],
      ['7 characters', 'abcdefg', 'password has 7 characters; it must have at least 8'],
      ['1 character', 'q', 'password has 1 character; it must have at least 8'],
      ['8 emoji as 32 bytes', '😀'.repeat(8), null],
      ['513 two-byte characters', 'é'.repeat(513), 'password is 1026 bytes long in UTF-8; it must be at most 1024 bytes'],
    ])('checks %s', async (_name, password, problem) => {
      const username = `pw-${Math.random().toString(36).slice(2, 10)}`;
      const result = await server.gql<{ createUser: { id: string } }>(
        CREATE,
        { input: { username, password, role: 'MEMBER' } },
        await server.adminToken(),
      );

      if (problem === null) {
        expect(result.errors).toBeUndefined();
        expect(result.data?.createUser.id).toBeDefined();
      } else {
        expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_USER');
        expect(result.errors?.[0]?.message).toContain(problem);
      }
    });
  });

  it('password absent from input errors', async () => {
    const secret = 'Echoed-Password-4711';
    const viaVariables = await server.gql(
      `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
      { input: { username: 'echo-check', password: secret, role: 'MEMBER', nickname: 'echo' } },
      await server.adminToken(),
    );
    const inline = await server.gql(
      `mutation { createUser(input: { username: "echo-check", password: "${secret}", role: "BOSS" }) { id } }`,
      {},
      await server.adminToken(),
    );

    expect(viaVariables.errors?.[0]?.message).toContain('password: "[redacted]"');
    expect(JSON.stringify(viaVariables.errors)).not.toContain(secret);
    expect(inline.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(JSON.stringify(inline.errors)).not.toContain(secret);

    // An update's input quotes the new password the same way.
    const update = await server.gql(
      `mutation ($input: UpdateUserInput!) { updateUser(input: $input) { id } }`,
      { input: { id: '00000000-0000-4000-8000-000000000000', password: secret, nickname: 'echo' } },
      await server.adminToken(),
    );
    expect(update.errors?.[0]?.message).toContain('"[redacted]"');
    expect(JSON.stringify(update.errors)).not.toContain(secret);
  });

  it('password of another type absent from errors', async () => {
    const secret = 'Typed-Password-4711';
    const token = await server.adminToken();
    const replies = {
      'login variable as object': await server.gql(LOGIN, { u: 'admin', p: { value: secret } }),
      'login literal as list': await server.gql(`mutation { login(username: "admin", password: ["${secret}"]) { token } }`),
      'login literal as enum': await server.gql(`mutation { login(username: "admin", password: Typed_Password_4711) { token } }`),
      'login literal as number': await server.gql(`mutation { login(username: "admin", password: 47114711) { token } }`),
      'changePassword variable as list': await server.gql(
        `mutation ($current: String!, $new: String!) { changePassword(currentPassword: $current, newPassword: $new) }`,
        { current: secret, new: [secret] },
        token,
      ),
      'input field as list': await server.gql(
        `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
        { input: { username: 'typed-check', password: [secret], role: 'MEMBER' } },
        token,
      ),
      'input field variable as object': await server.gql(
        `mutation ($p: String!) { createUser(input: { username: "typed-check", password: $p, role: MEMBER }) { id } }`,
        { p: { value: secret } },
        token,
      ),
    };

    for (const [name, reply] of Object.entries(replies)) {
      expect(reply.errors?.[0]?.message, `${name}: message`).toContain('[redacted]');
      expect(JSON.stringify(reply.errors), `${name}: errors`).not.toContain(secret);
      expect(JSON.stringify(reply.errors), `${name}: errors`).not.toContain('Typed_Password_4711');
      expect(JSON.stringify(reply.errors), `${name}: errors`).not.toContain('47114711');
    }
  });

  it('many password values withhold the message', async () => {
    const token = await server.adminToken();
    // Each number is a password value that the error message must not show.
    const passwords = Array.from({ length: 300_000 }, (_, index) => 4_700_000 + index);
    const reply = await server.gql(
      `mutation ($current: String!, $new: String!) { changePassword(currentPassword: $current, newPassword: $new) }`,
      { current: 'not-checked', new: passwords },
      token,
    );

    expect(reply.errors?.[0]?.extensions?.['code'], 'code').toBe('BAD_USER_INPUT');
    expect(reply.errors?.[0]?.message, 'message').toContain('withheld');
    expect(JSON.stringify(reply.errors), 'errors').not.toContain('4700000');
  });

  it('other values stay in errors', async () => {
    const reply = await server.gql(LOGIN, { u: ['admin'], p: 'not-the-username' });

    expect(reply.errors?.[0]?.message).toBe('Variable "$u" got invalid value ["admin"]; String cannot represent a non string value: ["admin"]');
  });

  it('username taken in another case', async () => {
    await server.createUser('Case-Taken');
    const result = await server.gql(
      `mutation { createUser(input: { username: "case-TAKEN", password: "case-taken-password", role: MEMBER }) { id } }`,
      {},
      await server.adminToken(),
    );

    expect(result.errors?.[0]?.extensions?.reason).toBe('USERNAME_TAKEN');
    expect(result.errors?.[0]?.message).toContain('already taken as "Case-Taken"');
  });

  it('login in another case', async () => {
    const created = await server.createUser('Login-Case');
    const login = await server.gql(
      'mutation ($password: String!) { login(username: "LOGIN-case", password: $password) { user { id username } } }',
      { password: 'Login-Case-password' },
    );

    expect(login.errors, 'login errors').toBeUndefined();
    expect(login.data?.login?.user, 'user of the token').toEqual({ id: created.id, username: 'Login-Case' });
  });

  it('query string absent from logs', async () => {
    const inUrl = 'Password-In-Url-4711';
    const query = `mutation { login(username: "login-logged", password: "${inUrl}") { token } }`;
    const graphqlGet = await fetch(`${server.url}/graphql?query=${encodeURIComponent(query)}`, {
      headers: { 'apollo-require-preflight': 'true' },
    });
    const restPost = await fetch(`${server.url}/auth/login?password=${inUrl}`, { method: 'POST' });

    expect(graphqlGet.status).toBe(405);
    expect(restPost.status).toBeGreaterThanOrEqual(400);
    const lines = logLines.filter((line) => line.includes('"incoming request"'));
    // The capture works: both requests are logged, by path.
    expect(lines.some((line) => line.includes('"url":"/graphql"'))).toBe(true);
    expect(lines.some((line) => line.includes('"url":"/auth/login"'))).toBe(true);
    expect(logLines.join('')).not.toContain(inUrl);
  });

  it('unknown username absent from logs', async () => {
    const typedAsUsername = 'Password-As-Username-4711';
    await server.gql(LOGIN, { u: typedAsUsername, p: 'anything-at-all' });

    const failures = logLines.filter((line) => line.includes('"login failed"') && line.includes('unknown user'));
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures.at(-1)).toContain('usernameDigest');
    expect(logLines.join('')).not.toContain(typedAsUsername);
  });

  describe('account management', () => {
    const UPDATE = `mutation ($input: UpdateUserInput!) { updateUser(input: $input) { id role disabled } }`;
    const CHANGE = `mutation ($current: String!, $next: String!) { changePassword(currentPassword: $current, newPassword: $next) }`;

    async function loginReason(username: string, password: string): Promise<unknown> {
      const result = await server.gql(LOGIN, { u: username, p: password });
      return result.errors?.[0]?.extensions?.reason ?? 'OK';
    }

    it('disabling stops tokens and logins', async () => {
      const member = await server.createUser('account-disabled');
      const admin = await server.adminToken();

      const disabled = await server.gql(UPDATE, { input: { id: member.id, disabled: true } }, admin);
      expect(disabled.data?.updateUser).toEqual({ id: member.id, role: 'MEMBER', disabled: true });

      const me = await server.gql('{ me { id } }', {}, member.token);
      expect(me.status).toBe(401);
      expect(me.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
      expect(await loginReason('account-disabled', 'account-disabled-password')).toBe('INVALID_CREDENTIALS');

      await server.gql(UPDATE, { input: { id: member.id, disabled: false } }, admin);
      // Tokens issued before the account was disabled stay revoked.
      const old = await server.gql('{ me { id } }', {}, member.token);
      expect(old.status).toBe(401);
      expect(old.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
      expect(await loginReason('account-disabled', 'account-disabled-password')).toBe('OK');
      const fresh = await server.login('account-disabled', 'account-disabled-password');
      expect((await server.gql('{ me { id } }', {}, fresh)).data?.me?.id).toBe(member.id);
    });

    it('new password revokes earlier tokens', async () => {
      const member = await server.createUser('account-revoked');
      const admin = await server.adminToken();
      const second = await server.login('account-revoked', 'account-revoked-password');

      const changed = await server.gql(CHANGE, { current: 'account-revoked-password', next: 'my-next-password-2' }, member.token);
      expect(changed.data?.changePassword).toBe(true);
      for (const token of [member.token, second]) {
        const reply = await server.gql('{ me { id } }', {}, token);
        expect(reply.status).toBe(401);
        expect(reply.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
      }
      const renewed = await server.gql('mutation { renewToken { token } }', {}, second);
      expect(renewed.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');

      const afterChange = await server.login('account-revoked', 'my-next-password-2');
      expect((await server.gql('{ me { id } }', {}, afterChange)).data?.me?.id).toBe(member.id);
      const reset = await server.gql(UPDATE, { input: { id: member.id, password: 'admin-set-password-3' } }, admin);
      expect(reset.errors).toBeUndefined();
      expect((await server.gql('{ me { id } }', {}, afterChange)).status).toBe(401);
    });

    it('renewal racing a password change stays revoked', async () => {
      const member = await server.createUser('account-renew-race');
      const users = server.app.services.users;
      const renew = users.renew.bind(users);
      let changed!: () => void;
      const passwordChanged = new Promise<void>((resolve) => {
        changed = resolve;
      });
      // Holds the renewal between its authentication and its read of the
      // account, where the password change lands.
      users.renew = async (viewer) => {
        await passwordChanged;
        return renew(viewer);
      };
      try {
        const renewal = server.gql<{ renewToken: { token: string } }>('mutation { renewToken { token } }', {}, member.token);
        await new Promise((resolve) => setTimeout(resolve, 100));
        const change = await server.gql(CHANGE, { current: 'account-renew-race-password', next: 'a-new-password-4' }, member.token);
        expect(change.data?.changePassword).toBe(true);
        changed();

        const renewed = await renewal;
        expect(renewed.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
        expect(renewed.data?.renewToken ?? null).toBeNull();
      } finally {
        users.renew = renew;
      }
    });

    it('role change keeps tokens', async () => {
      const member = await server.createUser('account-promoted');
      const admin = await server.adminToken();

      await server.gql(UPDATE, { input: { id: member.id, role: 'ANALYST' } }, admin);

      expect((await server.gql('{ me { role } }', {}, member.token)).data?.me?.role).toBe('ANALYST');
    });

    it('admin changes role and password', async () => {
      const member = await server.createUser('account-changed');
      const admin = await server.adminToken();

      const updated = await server.gql(UPDATE, { input: { id: member.id, role: 'ANALYST', password: 'a-new-password-123' } }, admin);
      expect(updated.data?.updateUser.role).toBe('ANALYST');

      expect(await loginReason('account-changed', 'account-changed-password')).toBe('INVALID_CREDENTIALS');
      expect(await loginReason('account-changed', 'a-new-password-123')).toBe('OK');
      const token = await server.login('account-changed', 'a-new-password-123');
      expect((await server.gql('{ users { id } }', {}, token)).errors).toBeUndefined();
    });

    it.each([
      { name: 'disable itself', input: { disabled: true } },
      { name: 'demote itself', input: { role: 'MEMBER' } },
    ])('admin may not $name', async ({ input }) => {
      const admin = await server.adminToken();
      const me = await server.gql<{ me: { id: string } }>('{ me { id } }', {}, admin);
      const result = await server.gql(UPDATE, { input: { id: me.data!.me.id, ...input } }, admin);

      expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_USER');
      expect(result.errors?.[0]?.message).toContain('may not disable itself or change its own role');
    });

    it('admins demoting each other keep one', async () => {
      const admin = await server.adminToken();
      for (let attempt = 0; attempt < 10; attempt += 1) {
        const first = await server.createUser(`account-race-a${attempt}`, 'ADMIN');
        const second = await server.createUser(`account-race-b${attempt}`, 'ADMIN');

        const [one, two] = await Promise.all([
          server.gql(UPDATE, { input: { id: second.id, role: 'MEMBER' } }, first.token),
          server.gql(UPDATE, { input: { id: first.id, disabled: true } }, second.token),
        ]);

        const succeeded = [one, two].filter((result) => result.errors === undefined);
        expect(succeeded, `attempt ${attempt}`).toHaveLength(1);
        const failed = [one, two].find((result) => result.errors !== undefined);
        // The loser was demoted (ROLE_REQUIRED), or disabled before its
        // request was authenticated, so its token no longer held (INVALID_TOKEN).
        expect(['ROLE_REQUIRED', 'INVALID_TOKEN'], `attempt ${attempt} reason`).toContain(failed?.errors?.[0]?.extensions?.reason);
        const users = await server.gql<{ users: Array<{ id: string; role: string; disabled: boolean }> }>('{ users { id role disabled } }', {}, admin);
        const pair = users.data!.users.filter((user) => user.id === first.id || user.id === second.id);
        expect(pair.filter((user) => user.role === 'ADMIN' && !user.disabled), `attempt ${attempt}`).toHaveLength(1);
      }
    });

    it('member may not update users', async () => {
      const member = await server.createUser('account-member');
      const result = await server.gql(UPDATE, { input: { id: member.id, role: 'ADMIN' } }, member.token);

      expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    });

    it('unknown user is named', async () => {
      const result = await server.gql(UPDATE, { input: { id: '00000000-0000-4000-8000-000000000000', role: 'ANALYST' } }, await server.adminToken());

      expect(result.errors?.[0]?.extensions?.reason).toBe('USER_NOT_FOUND');
      expect(result.errors?.[0]?.message, 'no username hint for a UUID').not.toContain("Pass the user's id");
    });

    it('username in place of id names the fix', async () => {
      const result = await server.gql(UPDATE, { input: { id: 'admin', role: 'ANALYST' } }, await server.adminToken());

      expect(result.errors?.[0]?.extensions?.reason, 'reason').toBe('USER_NOT_FOUND');
      expect(result.errors?.[0]?.message, 'value').toContain('"admin"');
      expect(result.errors?.[0]?.message, 'next step').toContain("Pass the user's id");
    });

    it('changePassword checks the current one', async () => {
      const member = await server.createUser('account-own');

      const wrong = await server.gql(CHANGE, { current: 'not-it', next: 'my-next-password-1' }, member.token);
      expect(wrong.errors?.[0]?.extensions?.reason).toBe('INVALID_CREDENTIALS');
      // The token stays valid, so the reply must not tell the client to drop it.
      expect(wrong.status).toBe(200);
      expect(wrong.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
      expect((await server.gql('{ me { id } }', {}, member.token)).data?.me?.id).toBe(member.id);

      const changed = await server.gql(CHANGE, { current: 'account-own-password', next: 'my-next-password-1' }, member.token);
      expect(changed.data?.changePassword).toBe(true);
      expect(await loginReason('account-own', 'account-own-password')).toBe('INVALID_CREDENTIALS');
      expect(await loginReason('account-own', 'my-next-password-1')).toBe('OK');
    });

    it('rejects a password of white space', async () => {
      const created = await server.gql(
        `mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }`,
        { input: { username: 'account-blank', password: ' '.repeat(12), role: 'MEMBER' } },
        await server.adminToken(),
      );
      const member = await server.createUser('account-blank-change');
      const changed = await server.gql(CHANGE, { current: 'account-blank-change-password', next: '\t'.repeat(10) }, member.token);

      expect(created.errors?.[0]?.message, 'createUser').toContain('password has only white space');
      expect(changed.errors?.[0]?.extensions?.reason, 'changePassword').toBe('INVALID_PASSWORD');
      expect(await loginReason('account-blank-change', 'account-blank-change-password'), 'old password').toBe('OK');
    });

    it('changePassword rejects a weak one', async () => {
      const member = await server.createUser('account-weak');
      const result = await server.gql(CHANGE, { current: 'account-weak-password', next: 'short' }, member.token);

      expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_PASSWORD');
      expect(await loginReason('account-weak', 'account-weak-password')).toBe('OK');
    });
  });

  describe('roles', () => {
    let member: { id: string; token: string };
    let analyst: { id: string; token: string };

    beforeAll(async () => {
      member = await server.createUser('role-member', 'MEMBER');
      analyst = await server.createUser('role-analyst', 'ANALYST');
    });

    const createUser = `mutation { createUser(input: { username: "role-made", password: "role-made-password", role: ADMIN }) { id } }`;
    const users = `{ users { username role } }`;
    const definePairType = `mutation { definePairType(input: { name: "role_pair", startType: "role_pair_started", endType: "role_pair_ended" }) { name } }`;

    it.each([
      ['createUser', createUser],
      ['users', users],
      ['definePairType', definePairType],
    ])('member denied %s', async (name, query) => {
      const result = await server.gql(query, {}, member.token);
      expect(result.data?.[name] ?? null).toBeNull();
      expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
      expect(result.status).toBe(403);
    });

    it.each([
      ['createUser', createUser],
      ['definePairType', definePairType],
      ['updateUser', `mutation { updateUser(input: { id: "00000000-0000-4000-8000-000000000000", role: ADMIN }) { id } }`],
    ])('analyst denied %s', async (_name, query) => {
      const result = await server.gql(query, {}, analyst.token);
      expect(result.data).toBeNull();
      expect(result.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    });

    it('nothing created by denied calls', async () => {
      const pairTypes = await server.gql<{ pairTypes: Array<{ name: string }> }>(
        '{ pairTypes { name } }',
        {},
        member.token,
      );
      expect(pairTypes.data?.pairTypes.map((pairType) => pairType.name)).not.toContain('role_pair');
      const madeUser = await server.app.db.prisma.user.findUnique({ where: { username: 'role-made' } });
      expect(madeUser).toBeNull();
    });

    it.each([
      ['member', () => member],
      ['analyst', () => analyst],
    ])('%s cannot set another user preference', async (_role, caller) => {
      const target = await server.createUser(`pref-target-${_role}`, 'MEMBER');
      const result = await server.gql(
        `mutation ($input: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $input) { timeoutSeconds } }`,
        { input: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId: target.id } },
        caller().token,
      );

      expect(result.status, 'status').toBe(403);
      expect(result.errors?.[0]?.extensions?.code, 'code').toBe('FORBIDDEN');
      expect(result.errors?.[0]?.extensions?.reason, 'reason').toBe('OTHER_USER');
      const stored = await server.gql<{ autoClosePreferences: unknown[] }>(`{ autoClosePreferences { pairType } }`, {}, target.token);
      expect(stored.data?.autoClosePreferences, 'preferences of the target').toEqual([]);
    });

    // Each operation gets another user's id and an id of no user, and must
    // reply alike, so that a caller who may not name other users there
    // cannot tell which ids belong to users.
    type NamedRequest = (userId: string) => { query: string; variables: Record<string, unknown> };
    const setPreference: NamedRequest = (userId) => ({
      query: 'mutation ($i: SetAutoClosePreferenceInput!) { setAutoClosePreference(input: $i) { id } }',
      variables: { i: { pairType: 'session', timeoutSeconds: 60, endAt: 'DEADLINE', userId } },
    });
    const sendEvents: NamedRequest = (userId) => ({
      query: 'mutation ($e: [EventInput!]!) { sendEvents(events: $e) { storedCount } }',
      variables: { e: [{ type: 'heartbeat', occurredAt: '2026-01-01T09:00:00Z', userId }] },
    });
    const namingUser: Array<[string, 'member' | 'analyst', NamedRequest]> = [
      ['events', 'member', (userId) => ({ query: 'query ($f: EventFilter) { events(filter: $f) { nodes { id } } }', variables: { f: { users: [userId] } } })],
      ['segments', 'member', (userId) => ({ query: 'query ($f: SegmentFilter) { segments(filter: $f) { nodes { id } } }', variables: { f: { users: [userId] } } })],
      [
        'report leaf',
        'member',
        (userId) => ({
          query: `query ($e: SetExpression!) { report(expression: $e, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }) { count } }`,
          variables: { e: { complement: { segments: { users: [userId] } } } },
        }),
      ],
      [
        'report groupUsers',
        'member',
        (userId) => ({
          query: `query ($g: [ID!]) { report(expression: { segments: {} }, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }, groupBy: USER, groupUsers: $g) { count } }`,
          variables: { g: [userId] },
        }),
      ],
      ['autoClosePreferences', 'member', (userId) => ({ query: 'query ($u: ID) { autoClosePreferences(userId: $u) { id } }', variables: { u: userId } })],
      ['setAutoClosePreference', 'member', setPreference],
      ['setAutoClosePreference', 'analyst', setPreference],
      ['sendEvents', 'member', sendEvents],
      ['sendEvents', 'analyst', sendEvents],
    ];

    it.each(namingUser)('%s by %s hides which users exist', async (name, role, build) => {
      const caller = role === 'member' ? member : analyst;
      const target = await server.createUser(`named-${name.replace(/ /g, '-')}-${role}`, 'MEMBER');
      const known = build(target.id);
      const unknown = build('00000000-0000-4000-8000-000000000000');

      const knownReply = await server.gql(known.query, known.variables, caller.token);
      const unknownReply = await server.gql(unknown.query, unknown.variables, caller.token);

      expect(knownReply.status, 'status for a user').toBe(403);
      expect(knownReply.errors?.[0]?.extensions?.reason, 'reason for a user').toBe('OTHER_USER');
      expect(unknownReply.status, 'status for no user').toBe(403);
      expect(unknownReply.errors?.[0]?.extensions?.reason, 'reason for no user').toBe('OTHER_USER');
      expect(unknownReply.errors?.[0]?.message.replace('00000000-0000-4000-8000-000000000000', target.id), 'message').toBe(
        knownReply.errors?.[0]?.message,
      );
    });

    it('member cannot read another user preferences', async () => {
      const result = await server.gql(`query ($userId: ID) { autoClosePreferences(userId: $userId) { pairType } }`, { userId: analyst.id }, member.token);

      expect(result.status, 'status').toBe(403);
      expect(result.errors?.[0]?.extensions?.code, 'code').toBe('FORBIDDEN');
      expect(result.errors?.[0]?.extensions?.reason, 'reason').toBe('OTHER_USER');
    });

    it('users listed without regard to case', async () => {
      const ids: string[] = [];
      for (const username of ['Order-B', 'order-c', 'order-A']) {
        ids.push((await server.createUser(username, 'MEMBER')).id);
      }
      const result = await server.gql<{ users: Array<{ username: string }> }>(users, {}, analyst.token);
      const listed = result.data!.users.map((user) => user.username).filter((username) => username.toLowerCase().startsWith('order-'));
      const report = await server.gql<{ report: { groups: Array<{ user: { username: string } }> } }>(
        `query ($users: [ID!]) {
          report(expression: { intervals: [] }, window: { start: "2026-01-01T00:00:00Z", end: "2026-01-02T00:00:00Z" }, groupBy: USER, groupUsers: $users) {
            groups { user { username } }
          }
        }`,
        { users: ids },
        analyst.token,
      );

      expect(listed, 'users').toEqual(['order-A', 'Order-B', 'order-c']);
      expect(report.data?.report.groups.map((group) => group.user.username), 'report groups').toEqual(['order-A', 'Order-B', 'order-c']);
    });

    it('analyst reads users', async () => {
      const result = await server.gql<{ users: Array<{ username: string; role: string }> }>(users, {}, analyst.token);
      expect(result.errors).toBeUndefined();
      expect(result.data?.users).toContainEqual({ username: ADMIN.username, role: 'ADMIN' });
      expect(result.data?.users).toContainEqual({ username: 'role-member', role: 'MEMBER' });
    });

    it('demotion applies to issued tokens', async () => {
      const demoted = await server.createUser('role-demoted', 'ANALYST');
      const before = await server.gql(users, {}, demoted.token);
      expect(before.errors).toBeUndefined();

      // The token still claims ANALYST, but the stored role decides.
      await server.app.db.prisma.user.update({ where: { id: demoted.id }, data: { role: 'MEMBER' } });
      const after = await server.gql(users, {}, demoted.token);
      expect(after.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    });
  });
});

describe('introspection access', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename);
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each([
    ['__schema', '{ __schema { queryType { name } } }'],
    ['__type', '{ __type(name: "Query") { name } }'],
    ['fragment', 'query { ...F } fragment F on Query { __schema { queryType { name } } }'],
  ])('%s rejected without token', async (_name, query) => {
    const result = await server.gql(query);
    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.data ?? null).toBeNull();
  });

  it('__schema served with token', async () => {
    const result = await server.gql('{ __schema { queryType { name } } }', {}, await server.adminToken());
    expect(result.errors).toBeUndefined();
    expect(result.data?.__schema.queryType.name).toBe('Query');
  });

  it('scalars keep schema descriptions', async () => {
    const result = await server.gql<{ dateTime: { description: string }; json: { description: string } }>(
      '{ dateTime: __type(name: "DateTime") { description } json: __type(name: "JSONObject") { description } }',
      {},
      await server.adminToken(),
    );
    expect(result.data?.dateTime.description).toContain('explicit offset');
    expect(result.data?.json.description).toContain('__proto__');
  });

  it('__typename served without token', async () => {
    const result = await server.gql('{ __typename }');
    expect(result.status).toBe(200);
    expect(result.data?.__typename).toBe('Query');
  });

  it.each([
    ['misspelled field', '{ use { id } }'],
    ['incomplete mutation input', 'mutation { createUser(input: {}) { id } }'],
    ['valid field beside an invalid one', 'query { me { id } } mutation { login { token } }'],
    ['variable type', 'query ($x: EventInpt) { __typename }'],
    ['unused fragment', '{ __typename } fragment Unused on Query { usrs { id } }'],
    ['unused fragment of real fields', '{ __typename } fragment Unused on Query { users { id } }'],
    ['inline fragment', '{ ... on Qury { __typename } }'],
    ['unknown directive', '{ __typename @secret }'],
  ])('%s without token hides the schema', async (_name, query) => {
    const result = await server.gql(query);
    expect(result.status).toBe(401);
    expect(result.errors).toHaveLength(1);
    expect(result.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(result.errors?.[0]?.message).not.toMatch(/Did you mean|CreateUserInput|String!/);
  });

  it.each([
    ['root field', '{ __typename users { id username role } }', '{ __typename users { passwordHash } }'],
    [
      'field beside login',
      'mutation { login(username: "a", password: "b") { token } definePairType(input: { name: "x", startType: "x1", endType: "x2" }) { name } }',
      'mutation { login(username: "a", password: "b") { token } definePairTyp(input: { name: "x", startType: "x1", endType: "x2" }) { name } }',
    ],
  ])('%s without token: valid and invalid alike', async (_name, valid, invalid) => {
    const validReply = await server.gql(valid);
    const invalidReply = await server.gql(invalid);

    expect(validReply.status, 'status of the valid document').toBe(401);
    expect(invalidReply.status, 'status of the invalid document').toBe(401);
    expect(validReply.errors, 'errors of the valid document').toEqual(invalidReply.errors);
    expect(validReply.data ?? null, 'data of the valid document').toBeNull();
  });

  it.each([
    ['a named fragment', 'mutation { login(username: "admin", password: "admin-password-1") { ...T } } fragment T on LoginResult { token }'],
    ['a type condition', 'mutation { login(username: "admin", password: "admin-password-1") { user { ... on User { username } } token } }'],
  ])('login with %s works without token', async (_name, query) => {
    const result = await server.gql(query);

    expect(result.status, 'status').toBe(200);
    expect(result.errors, 'errors').toBeUndefined();
    expect(result.data?.login.token, 'token').toEqual(expect.any(String));
  });

  it.each([
    ['a valid', 'query Me { me { id } }'],
    ['an invalid', 'query Me { me { idd } }'],
  ])('login beside %s signed-in operation gets 401', async (_name, other) => {
    const document = `mutation Login { login(username: "admin", password: "admin-password-1") { token } } ${other}`;
    const login = await server.gql(document, undefined, undefined, 'Login');

    // Validation covers the whole document, so running the login would tell that the other operation is valid.
    expect(login.status, 'status').toBe(401);
    expect(login.errors, 'errors').toEqual([
      { message: expect.stringContaining('Authentication required'), extensions: { code: 'UNAUTHENTICATED', reason: 'MISSING_TOKEN' } },
    ]);
  });

  it.each([
    ['login result field', 'mutation { login(username: "a", password: "b") { tokn } }'],
    ['login variable', 'mutation ($name: String) { login(username: $name, password: "b") { token } }'],
  ])('%s without token gets no suggestions', async (_name, query) => {
    const result = await server.gql(query);

    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    for (const error of result.errors ?? []) {
      expect(error.message).not.toContain('Did you mean');
    }
  });

  it('invalid token keeps its reason on invalid documents', async () => {
    const result = await server.gql('{ use { id } }', {}, 'not.a.token');

    expect(result.status).toBe(401);
    expect(result.errors?.[0]?.extensions?.reason).toBe('INVALID_TOKEN');
  });

  it('invalid login without token keeps its errors', async () => {
    const result = await server.gql('mutation { login(username: "someone") { token } }');
    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(result.errors?.[0]?.message).toContain('password');
  });

  it('misspelled field with token gets suggestions', async () => {
    const result = await server.gql('{ use { id } }', {}, await server.adminToken());
    expect(result.status).toBe(400);
    expect(result.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expect(result.errors?.[0]?.message).toContain('Did you mean');
  });
});

describe('introspection under NODE_ENV=production', () => {
  // Apollo reads NODE_ENV from the process when it is built, and turns
  // introspection off under production unless the server sets it.
  async function startProduction(env: Record<string, string> = {}): Promise<TestServer> {
    vi.stubEnv('NODE_ENV', 'production');
    try {
      return await startTestServer(import.meta.filename, { env: { NODE_ENV: 'production', ...env } });
    } finally {
      vi.unstubAllEnvs();
    }
  }

  it('__schema served with token', async () => {
    const server = await startProduction();
    try {
      const result = await server.gql('{ __schema { queryType { name } } }', {}, await server.adminToken());
      expect(result.errors).toBeUndefined();
      expect(result.data?.__schema.queryType.name).toBe('Query');
    } finally {
      await server.close();
    }
  });

  it('GRAPHQL_INTROSPECTION=false rejects it with token', async () => {
    const server = await startProduction({ GRAPHQL_INTROSPECTION: 'false' });
    try {
      const token = await server.adminToken();
      for (const query of [
        '{ __schema { queryType { name } } }',
        '{ __type(name: "Query") { name } }',
        'query { ...Types } fragment Types on Query { __type(name: "Event") { name } }',
      ]) {
        const result = await server.gql(query, {}, token);
        expect(result.status, query).toBe(400);
        expect(result.errors?.[0]?.message, query).toMatch(/introspection/i);
        expect(result.errors?.[0]?.message, query).toBe(
          'Introspection (__schema and __type) is turned off on this server, because GRAPHQL_INTROSPECTION is false. ' +
            'Remove those fields, or load the schema from the file schema.graphql of the Event Master repository.',
        );
        expect(result.errors?.[0]?.extensions?.code, query).toBe('GRAPHQL_VALIDATION_FAILED');
        expect(result.errors?.[0]?.extensions?.reason, query).toBe('INTROSPECTION_DISABLED');
        expect(result.data ?? null, query).toBeNull();
      }
    } finally {
      await server.close();
    }
  });
});
