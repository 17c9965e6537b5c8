/**
 * Closing the app while a request runs: the request gets its reply with
 * Connection: close, so the client ends the keep-alive connection, and
 * close() finishes without waiting for the server's keep-alive timeout (72 s).
 */
import { afterAll, expect, it } from 'vitest';

import { startTestServer, type TestServer } from '../support/app.js';

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
