/**
 * Intake across two operating-system processes: the test's own server and a
 * server started as a child process with `tsx src/main.ts`, both on one
 * database and one Redis key prefix and both on the real clock. Interleaved
 * events for the same users must end with the segments of one serial replay.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';
import {
  generateStream,
  replayInFreshServer,
  sendWithRetry,
  settleAndReadTimelines,
  type StreamEvent,
} from '../support/replay.js';
import { seededRandom } from '../support/random.js';
import { describeWithPostgres, describeWithRedis } from '../support/services.js';

const TEST_JWT_SECRET = 'test-secret-that-is-at-least-32-bytes-long';
const ENV = { USER_LOCK_WAIT_MS: '3000' };

/** Starts `tsx src/main.ts` on the data of `first` and resolves with its base URL. */
async function startChild(first: TestServer, dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(join('node_modules', '.bin', 'tsx'), ['src/main.ts'], {
    env: {
      ...process.env,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: first.databaseUrl ?? '',
      REDIS_URL: first.app.config.redis.url ?? '',
      REDIS_KEY_PREFIX: first.app.config.redis.keyPrefix,
      JWT_SECRET: TEST_JWT_SECRET,
      PASSWORD_SCRYPT_LOG2_N: '14',
      ...ENV,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the child server did not start within 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`the child server exited with code ${code}`)));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const match = /serving GraphQL at (http:\/\/[^\s"]+)\/graphql/.exec(line);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return { child, url };
}

/** Returns a client of the child server with the `gql` shape that the replay helpers use. */
function clientOf(url: string): TestServer {
  return {
    async gql(query: string, variables?: Record<string, unknown>, token?: string) {
      const response = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        },
        body: JSON.stringify({ query, variables }),
      });
      return { status: response.status, ...((await response.json()) as object) } as GraphQLResponse;
    },
  } as TestServer;
}

/** Moves a stream so that its last event lies `gapMs` before the real now. */
function endBeforeNow(stream: StreamEvent[], gapMs: number): StreamEvent[] {
  const last = Math.max(...stream.map((event) => Date.parse(event.occurredAt)));
  const shift = Date.now() - gapMs - last;
  return stream.map((event) => ({
    ...event,
    occurredAt: new Date(Date.parse(event.occurredAt) + shift).toISOString(),
  }));
}

describeWithRedis('two operating-system processes', () => {
  describeWithPostgres('interleaved intake', () => {
    let first: TestServer;
    let child: ChildProcess | null = null;
    let second: TestServer;
    // Made when the tests run, so that skipped ones leave no folder behind.
    let dataDir = '';

    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'em-child-'));
      first = await startTestServer(import.meta.filename, { env: ENV });
      const started = await startChild(first, dataDir);
      child = started.child;
      second = clientOf(started.url);
    }, 60_000);

    afterAll(async () => {
      if (child !== null && child.exitCode === null) {
        const exited = new Promise((resolve) => child?.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await first?.close();
      if (dataDir !== '') {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    it('equals one serial replay', async () => {
      const userCount = 3;
      // The streams end 10 minutes before now, so no open instance reaches its
      // 30-minute deadline during the test on either server or in the replay.
      const streams = Array.from({ length: userCount }, (_, index) =>
        endBeforeNow(
          generateStream({ idPrefix: `p${index}`, seed: 500 + index, count: 60, startAt: 0, maxGapSeconds: 1200 }),
          10 * 60_000,
        ),
      );
      const users: Array<{ id: string; token: string }> = [];
      for (let index = 0; index < userCount; index += 1) {
        users.push(await first.createUser(`process-${index}`));
      }

      // Deal each stream in chunks of 1 to 3 events to two lanes, one per
      // process. The lanes run at the same time, so events of one user reach
      // the two processes out of time order.
      const random = seededRandom(11);
      const lanes: Array<Promise<number>> = [];
      let childBatches = 0;
      streams.forEach((stream, index) => {
        const user = users[index] as { id: string; token: string };
        const perTarget: Record<'first' | 'second', StreamEvent[][]> = { first: [], second: [] };
        for (let cursor = 0; cursor < stream.length; ) {
          const size = 1 + Math.floor(random() * 3);
          perTarget[random() < 0.5 ? 'first' : 'second'].push(stream.slice(cursor, cursor + size));
          cursor += size;
        }
        childBatches += perTarget.second.length;
        for (const [target, server] of [
          ['first', first],
          ['second', second],
        ] as const) {
          lanes.push(
            (async () => {
              let stored = 0;
              for (const batch of perTarget[target]) {
                stored += (await sendWithRetry(server, user.token, batch)).storedCount;
              }
              return stored;
            })(),
          );
        }
      });
      const stored = await Promise.all(lanes);
      expect(childBatches).toBeGreaterThan(10);
      expect(stored.reduce((sum, count) => sum + count, 0)).toBe(userCount * 60);

      const { timelines: actual, lateCount } = await settleAndReadTimelines(first, users);
      // The two lanes must really have delivered events out of time order.
      expect(lateCount).toBeGreaterThan(0);
      const expected = await replayInFreshServer(import.meta.filename, streams, { now: Date.now(), env: ENV });

      expect(actual).toHaveLength(expected.length);
      actual.forEach((timeline, index) => {
        expect(timeline.segments.length).toBeGreaterThan(3);
        expect(timeline).toEqual(expected[index]);
      });
    }, 90_000);
  });
});
