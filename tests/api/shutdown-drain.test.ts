/**
 * Closing the app while a request runs: the request gets its reply with
 * Connection: close, so the client ends the keep-alive connection, and
 * close() finishes without waiting for the server's keep-alive timeout (72 s).
 * A reply still being written to a slow client when close() begins reaches
 * the client whole.
 */
import { connect } from 'node:net';

import { afterAll, expect, it } from 'vitest';

import { startTestServer, WITHOUT_WORKERS, type TestServer } from '../support/app.js';

let server: TestServer | undefined;
let closed: Promise<void> | null = null;

afterAll(async () => {
  await server?.close();
});

it('drains a request on a kept-alive connection', async () => {
  server = await startTestServer(import.meta.filename, {
    // Starts closing the app from inside the request, once its events are stored.
    fault: (step) => {
      if (step === 'events-stored' && closed === null) {
        closed = (server as TestServer).app.close();
      }
    },
  });
  const token = await server.adminToken();

  // fetch keeps the connection alive, as browsers and Apollo Client do.
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({
      query: `mutation { sendEvent(event: { type: "session_started" }) { event { id } } }`,
    }),
  });
  const body = (await response.json()) as { data?: { sendEvent: { event: { id: string } } } };

  expect(closed).not.toBeNull();
  expect(response.status).toBe(200);
  expect(body.data?.sendEvent.event.id).toBeTypeOf('string');
  expect(response.headers.get('connection')).toBe('close');

  const timedOut = new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 10_000).unref());
  expect(await Promise.race([(closed as unknown as Promise<void>).then(() => 'closed'), timedOut])).toBe('closed');
}, 30_000);

/**
 * Starts a server and stores 500 events with 60 KB of meta each, about 30 MB
 * in one page, far more than loopback socket buffers take in. Returns the
 * server and an admin token.
 */
async function startWithLargePage(): Promise<{ slow: TestServer; token: string }> {
  const slow = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { MAX_META_BYTES: '65536' } });
  try {
    const token = await slow.adminToken();
    const meta = { pad: 'm'.repeat(60_000) };
    const events = Array.from({ length: 500 }, () => ({ type: 'slow_reader', meta }));
    const stored = await slow.gql('mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }', { events }, token);
    expect(stored.data?.sendEvents?.storedCount, 'events stored').toBe(500);
    return { slow, token };
  } catch (error) {
    await slow.close();
    throw error;
  }
}

// Node 20's server.close() closes every connection whose response has ended,
// also one whose reply is still being written to a slow client.
it('delivers a reply still being written', async () => {
  const { slow, token } = await startWithLargePage();
  let slowClosed: Promise<void> | null = null;
  try {
    const body = JSON.stringify({ query: '{ events(first: 500, filter: { types: ["slow_reader"] }) { nodes { meta } } }' });
    const socket = connect(Number(new URL(slow.url).port), '127.0.0.1');
    socket.on('error', () => {});
    const received: Buffer[] = [];
    const firstChunk = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const socketClosed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // Fastify writes the whole reply with end(), so the first bytes mean
    // that the response has ended, while most of it is still queued.
    await firstChunk;
    socket.pause();

    slowClosed = slow.app.close();
    socket.resume();
    await socketClosed;

    const reply = Buffer.concat(received);
    const headerEnd = reply.indexOf('\r\n\r\n');
    const declared = Number(/content-length: (\d+)/i.exec(reply.subarray(0, headerEnd).toString('latin1'))?.[1]);
    expect(reply.subarray(0, 16).toString('latin1'), 'status line').toMatch(/^HTTP\/1\.1 200 /);
    expect(declared, 'declared length').toBeGreaterThan(30_000_000);
    expect(reply.length - headerEnd - 4, 'body bytes received').toBe(declared);
    await slowClosed;
  } finally {
    // The app closes once, so this also waits for the close begun above.
    await slow.close();
  }
}, 60_000);

// While a reply is still being written, close() must still close the other
// connections at once. Kept open, an idle keep-alive connection takes the
// client's next request, and Fastify replies to it with a 503 while it closes.
it('closes idle connections during a slow reply', async () => {
  const { slow, token } = await startWithLargePage();
  try {
    const port = Number(new URL(slow.url).port);

    // An idle keep-alive connection, with one reply received and no request after it.
    const idle = connect(port, '127.0.0.1');
    idle.on('error', () => {});
    const idleReceived: Buffer[] = [];
    const firstReply = new Promise<void>((resolve) => idle.once('data', () => resolve()));
    idle.on('data', (chunk: Buffer) => idleReceived.push(chunk));
    const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()));
    idle.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await firstReply;

    const body = JSON.stringify({ query: '{ events(first: 500, filter: { types: ["slow_reader"] }) { nodes { meta } } }' });
    const reader = connect(port, '127.0.0.1');
    reader.on('error', () => {});
    const readerFirstChunk = new Promise<void>((resolve) => reader.once('data', () => resolve()));
    const readerClosed = new Promise<void>((resolve) => reader.once('close', () => resolve()));
    reader.on('data', () => {});
    reader.write(
      `POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await readerFirstChunk;
    reader.pause();

    const closing = slow.app.close();
    // server.close() closes the idle connections before it stops listening.
    while (slow.app.fastify.server.listening) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    const repliesBefore = idleReceived.length;
    idle.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await idleClosed;
    // The slow reply goes on before the check, so that a failure does not leave close() waiting for it.
    reader.resume();
    await readerClosed;
    await closing;

    const afterClose = Buffer.concat(idleReceived.slice(repliesBefore)).toString('latin1');
    expect(afterClose.split('\r\n')[0], 'reply on the idle connection after close()').toBe('');
  } finally {
    await slow.close();
  }
}, 60_000);
