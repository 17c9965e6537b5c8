/**
 * REPLY_MEMORY_MAX_BYTES over HTTP: a query whose reply does not fit beside
 * the replies that other requests hold gets 503 with Retry-After, and the
 * memory of a reply comes back once its connection closes.
 */
import { connect, type Socket } from 'node:net';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';

/** About 30 MB of meta in all, far more than loopback socket buffers take in. */
const EVENTS = 500;
const META = { pad: 'm'.repeat(60_000) };
const MAX_REPLY_BYTES = 40_000_000;
const REPLY_MEMORY_MAX_BYTES = 40_000_000;
const LARGE_QUERY = `{ events(first: ${EVENTS}, filter: { types: ["large_reply"] }) { nodes { meta } } }`;
/** About 6 MB, which fits beside one large reply. */
const SMALL_QUERY = '{ events(first: 100, filter: { types: ["large_reply"] }) { nodes { meta } } }';

/**
 * Sends `query` on a raw connection that stops reading once the first bytes
 * of the reply arrive, so the rest of the reply stays unsent in the server.
 */
async function stallReply(server: TestServer, token: string, query: string): Promise<{ socket: Socket; head: string }> {
  const body = JSON.stringify({ query });
  const { port } = new URL(server.url);
  const socket = connect(Number(port), '127.0.0.1');
  const head = await new Promise<string>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('data', (chunk: Buffer) => {
      socket.pause();
      resolve(chunk.subarray(0, 200).toString('latin1'));
    });
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
  return { socket, head };
}

describe('REPLY_MEMORY_MAX_BYTES', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer(import.meta.filename, {
      ...WITHOUT_WORKERS,
      env: {
        MAX_META_BYTES: '65536',
        MAX_REPLY_BYTES: String(MAX_REPLY_BYTES),
        REPLY_MEMORY_MAX_BYTES: String(REPLY_MEMORY_MAX_BYTES),
      },
    });
    token = await server.adminToken();
    const events = Array.from({ length: EVENTS }, () => ({ type: 'large_reply', meta: META }));
    const stored = await server.gql('mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }', { events }, token);
    expect(stored.data?.sendEvents?.storedCount).toBe(EVENTS);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('refuses a reply beside a held one', { timeout: 60_000 }, async () => {
    const held = await stallReply(server, token, LARGE_QUERY);
    try {
      expect(held.head, 'status line of the held reply').toMatch(/^HTTP\/1\.1 200 /);

      const refused = await fetch(`${server.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ query: LARGE_QUERY }),
      });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      const body = (await refused.json()) as { data?: unknown; errors?: Array<{ message: string; extensions?: Record<string, unknown> }> };
      expect(body).not.toHaveProperty('data');
      expect(body.errors).toHaveLength(1);
      const error = body.errors![0]!;
      expect(error.extensions?.code).toBe('SERVICE_UNAVAILABLE');
      expect(error.extensions?.reason).toBe('REPLY_MEMORY_FULL');
      expect(error.extensions?.limit).toBe('REPLY_MEMORY_MAX_BYTES');
      expect(error.extensions?.max).toBe(REPLY_MEMORY_MAX_BYTES);
      expect(error.message).toContain(`maximum of ${REPLY_MEMORY_MAX_BYTES} bytes (REPLY_MEMORY_MAX_BYTES)`);

      const small = await server.gql(SMALL_QUERY, {}, token);
      expect(small.status, 'a reply that fits beside the held one').toBe(200);
      expect(small.data?.events?.nodes).toHaveLength(100);
    } finally {
      held.socket.destroy();
    }

    // The server handles the close a moment after the client closes.
    let after = await server.gql(LARGE_QUERY, {}, token);
    for (let attempt = 0; attempt < 50 && after.status === 503; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await server.gql(LARGE_QUERY, {}, token);
    }
    expect(after.status, 'once the held reply closed').toBe(200);
    expect(after.data?.events?.nodes).toHaveLength(EVENTS);
  });

  it('returns the memory of replies read in full', async () => {
    // Each reply takes most of the memory, so these pass only if each
    // reservation came back when its reply had been sent.
    for (let round = 0; round < 3; round += 1) {
      const reply = await server.gql(LARGE_QUERY, {}, token);
      expect(reply.status, `round ${round}`).toBe(200);
    }
  });
});
