/**
 * Times batches of task starts while one member's open pairs grow. Each
 * batch contains `--batch` task_started events with distinct pair keys in one
 * auto-opened session, so every event adds an open pair. Prints, per batch,
 * the open pairs before it, the wall time of the request, and the longest
 * time a GET /healthz waited during it, which shows how long the server's
 * event loop was blocked. Then it times one heartbeat, a request of one
 * event, at the final size. Run with `npx tsx bench/open-pairs.ts
 * [--open 20000] [--batch 1000]`.
 *
 * The server runs as a child process on a fresh database and Redis key
 * prefix (DATABASE_URL and REDIS_URL, or the defaults of `npm run bench`),
 * which are removed at the end. It only prints: nothing is asserted.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { GraphQLClient } from './lib/http.js';
import { startServer } from './lib/server.js';
import { createDatabase, deleteRedisKeys, dropDatabase, resolveServiceUrls } from './lib/services.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ADMIN = { username: 'bench-admin', password: 'bench-admin-password-1' };
const MEMBER = { username: 'open-pairs', password: 'open-pairs-password-1' };
/** Pause between two /healthz requests of the probe, in ms. */
const PROBE_INTERVAL_MS = 20;

const SEND = `mutation ($events: [EventInput!]!) { sendEvents(events: $events) { storedCount } }`;

function readOption(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) {
    return fallback;
  }
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`--${name} must be a whole number of 1 or more, but is ${JSON.stringify(process.argv[index + 1])}.`);
  }
  return value;
}

/** Polls /healthz and keeps the longest wait since the last `takeMax`. */
class HealthProbe {
  private maxMs = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(url: string) {
    this.loop = (async () => {
      while (this.running) {
        const started = performance.now();
        await fetch(`${url}/healthz`);
        this.maxMs = Math.max(this.maxMs, performance.now() - started);
        await new Promise((done) => setTimeout(done, PROBE_INTERVAL_MS));
      }
    })();
  }

  takeMax(): number {
    const max = this.maxMs;
    this.maxMs = 0;
    return max;
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

async function main(): Promise<void> {
  const targetOpen = readOption('open', 20_000);
  const batchSize = readOption('batch', 1000);
  const urls = resolveServiceUrls(process.env);
  const stamp = `${Date.now()}_${randomBytes(3).toString('hex')}`;
  const databaseName = `em_bench_open_${stamp}`;
  const redisKeyPrefix = `bench:open:${stamp}:`;
  const databaseUrl = await createDatabase(urls.baseDatabaseUrl, databaseName);
  const server = await startServer({
    repoRoot: REPO_ROOT,
    databaseUrl,
    redisUrl: urls.redisUrl,
    redisKeyPrefix,
    jwtSecret: randomBytes(32).toString('base64'),
    admin: ADMIN,
    logFile: join(tmpdir(), `em-bench-open-pairs-${stamp}.log`),
    cpuProfileDir: null,
    extraEnv: { MAX_BATCH_SIZE: String(Math.max(1000, batchSize)) },
  });
  const client = new GraphQLClient(server.url, 2);
  let probe: HealthProbe | null = null;
  try {
    const adminToken = await client.login(ADMIN.username, ADMIN.password);
    await client.require(
      'mutation ($input: CreateUserInput!) { createUser(input: $input) { id } }',
      { input: { ...MEMBER, role: 'MEMBER' } },
      adminToken,
    );
    const token = await client.login(MEMBER.username, MEMBER.password);

    probe = new HealthProbe(server.url);
    console.log('open pairs before  batch ms  healthz max ms');
    const base = Date.now() - 60_000;
    // Every batch adds batchSize tasks; the first also opens the session.
    for (let first = 0; first < targetOpen; first += batchSize) {
      const events = Array.from({ length: batchSize }, (_, index) => ({
        type: 'task_started',
        pairKey: `k${first + index}`,
        occurredAt: new Date(base + (first + index) / 100).toISOString(),
      }));
      probe.takeMax();
      const reply = await client.require(SEND, { events }, token);
      const openBefore = first === 0 ? 0 : first + 1;
      console.log(`${String(openBefore).padStart(17)}  ${reply.ms.toFixed(0).padStart(8)}  ${probe.takeMax().toFixed(0).padStart(14)}`);
    }

    probe.takeMax();
    const heartbeat = await client.require(SEND, { events: [{ type: 'heartbeat' }] }, token);
    console.log(`one heartbeat at ${targetOpen + 1} open pairs: ${heartbeat.ms.toFixed(0)} ms, healthz max ${probe.takeMax().toFixed(0)} ms`);
  } finally {
    await probe?.stop();
    client.close();
    await server.stop();
    await dropDatabase(urls.baseDatabaseUrl, databaseName);
    await deleteRedisKeys(urls.redisUrl, redisKeyPrefix);
  }
}

await main();
