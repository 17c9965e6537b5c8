/**
 * Development mode sends each error's stack trace, whose first line can
 * repeat the error message. What the message leaves out for clients (field
 * suggestions without a token, quoted passwords) must stay out of the stack
 * trace too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

describe('errors in development mode', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false, env: { NODE_ENV: 'development' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('hides suggestions from anonymous stacks', async () => {
    const reply = await server.gql('mutation { login(username: "a", password: "b") { tokn } }');
    const error = reply.errors?.[0];

    expect(error?.extensions?.code, 'error code').toBe('GRAPHQL_VALIDATION_FAILED');
    expect(error?.extensions?.stacktrace, 'stack trace sent').toBeInstanceOf(Array);
    expect(error?.message, 'message').toBe('Cannot query field "tokn" on type "LoginResult".');
    expect(JSON.stringify(reply.errors), 'whole error').not.toContain('Did you mean');
  });

  it('keeps suggestions for signed-in stacks', async () => {
    const reply = await server.gql('{ me { usernam } }', {}, await server.adminToken());

    expect(reply.errors?.[0]?.message, 'message').toContain('Did you mean "username"?');
  });

  it('masks passwords in stacks', async () => {
    const secret = 'Stacked-Password-4711';
    const reply = await server.gql(
      'mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }',
      { input: { username: 'stack-check', password: secret, nickname: 'echo' } },
      await server.adminToken(),
    );
    const error = reply.errors?.[0];

    expect(error?.extensions?.stacktrace, 'stack trace sent').toBeInstanceOf(Array);
    expect(error?.message, 'message').toContain('password: "[redacted]"');
    expect(JSON.stringify(reply.errors), 'whole error').not.toContain(secret);
  });

  it('masks passwords of another type in stacks', async () => {
    const secret = 'Stacked-Password-4712';
    const reply = await server.gql(
      'mutation ($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
      { u: 'admin', p: [secret] },
    );
    const error = reply.errors?.[0];

    expect(error?.extensions?.stacktrace, 'stack trace sent').toBeInstanceOf(Array);
    expect(error?.message, 'message').toContain('["[redacted]"]');
    expect(JSON.stringify(reply.errors), 'whole error').not.toContain(secret);
  });
});
