/**
 * A statement that runs into DB_STATEMENT_TIMEOUT_MS means the database did
 * not respond in time, also when Prisma ran it. The client gets
 * SERVICE_UNAVAILABLE, which it may retry, and not an internal error.
 */
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';
import { describeWithPostgres } from '../support/services.js';

describeWithPostgres('statement timeouts', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, { sweeper: false, env: { DB_STATEMENT_TIMEOUT_MS: '500' } });
  });

  afterAll(async () => {
    await server?.close();
  });

  it('Prisma timeout is unavailable', async () => {
    const member = await server.createUser('timeout-member');
    // Another transaction locks the user's row, so the password change's
    // UPDATE waits for it until the statement timeout cancels it.
    const holder = new pg.Client({ connectionString: server.databaseUrl! });
    await holder.connect();
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [member.id]);

    let reply: Awaited<ReturnType<TestServer['gql']>>;
    try {
      reply = await server.gql(
        'mutation { changePassword(currentPassword: "timeout-member-password", newPassword: "timeout-member-next-1") }',
        {},
        member.token,
      );
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }

    expect(reply.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect(reply.errors?.[0]?.extensions?.reason).toBe('DEPENDENCY_UNAVAILABLE');
    // Nothing changed: the old password still logs in.
    expect(await server.login('timeout-member', 'timeout-member-password')).toEqual(expect.any(String));
  });
});
