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

// Node 20's server.close() closes every connection whose response has ended,
// also one whose reply is still being written to a slow client.
it('delivers a reply still being written', async () => {
  const slow = await startTestServer(import.meta.filename, { ...WITHOUT_WORKERS, env: { MAX_META_BYTES: '65536' } });
  let slowClosed: Promise<void> | null = null;
  try {
    const token = await slow.adminToken();
    // About 30 MB of meta, far more than loopback socket buffers take in.
    const meta = { pad: 'm'.repeat(60_000) };
    const events = Array.from({ length: 500 }, () => ({ type: 'slow_reader', meta }));
    const stored = await slow.gql('mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }', { events }, token);
    expect(stored.data?.sendEvents?.storedCount, 'events stored').toBe(500);

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
