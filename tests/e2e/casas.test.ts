/**
 * End to end on the 24 real WSU CASAS Kyoto recordings: every file is
 * converted with the `convert:casas` command and imported over HTTP with the
 * import command's library, twice. The segments and reports the server
 * derives are then checked against a model computed from the raw files by
 * `casas-model.ts`, which shares no code with the importer or the server.
 *
 * The files are read from `../shared/data/casas-kyoto` next to the
 * repository, or from CASAS_DATA_DIR; without them the end-to-end suite is
 * skipped with a printed reason.
 */
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runConvertCommand } from '../../src/importer/convert-command.js';
import { runImport } from '../../src/importer/run-import.js';
import type { ImportSummary } from '../../src/importer/summary.js';
import { startTestServer, type GraphQLResponse, type TestServer } from '../support/app.js';
import { casasDataDir } from '../support/casas-data.js';
import {
  intersectIntervals,
  modelSegments,
  parseRawCasas,
  totalLength,
  unionIntervals,
  type CasasPairType,
  type ModelSegment,
  type RawEvent,
} from './casas-model.js';

const DATA_DIR = casasDataDir();

/** Auto-close timeout of the pair types the converter defines (LAST_ACTIVITY policy). */
const TIMEOUT_MS = 1800 * 1000;

/** Page size of the segment listing, set as the server's PAGE_SIZE_MAX so each page is a full one. */
const PAGE_SIZE = 1000;

const PAIR_TYPES: readonly CasasPairType[] = ['activity', 'sensor', 'instruction'];

/** Maximum wait for the pairs still open after the import to be closed. */
const SETTLE_TIMEOUT_MS = 20_000;

const SEGMENTS = `query ($filter: SegmentFilter, $first: Int, $after: String) {
  segments(filter: $filter, first: $first, after: $after) {
    nodes { id pairType pairKey start end open endReason parentSegmentId }
    pageInfo { hasNextPage endCursor }
  }
}`;

const REPORT = `query ($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) { count totalSeconds truncated }
}`;

interface ServerSegment {
  id: string;
  pairType: string;
  pairKey: string;
  start: string;
  end: string | null;
  open: boolean;
  endReason: string | null;
  parentSegmentId: string | null;
}

interface SegmentPage {
  nodes: ServerSegment[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

interface Recording {
  username: string;
  file: string;
  events: RawEvent[];
  /** Lines whose value is cut off, such as `OF`, which the converter reports and skips. */
  cutOffLines: number[];
  segments: ModelSegment[];
  /** Window of whole UTC days that covers every event of the file. */
  window: { start: string; end: string };
}

/** Files present at collection time; empty when the data folder is absent. */
function listRecordings(): string[] {
  if (!existsSync(DATA_DIR)) {
    return [];
  }
  return readdirSync(DATA_DIR)
    .filter((name) => name.endsWith('.txt'))
    .sort();
}

function loadRecording(name: string): Recording {
  const file = join(DATA_DIR, name);
  const cutOffLines: number[] = [];
  const events = parseRawCasas(readFileSync(file, 'utf8'), cutOffLines);
  const times = events.map((event) => event.at);
  const day = 86_400_000;
  const first = Math.floor(Math.min(...times) / day) * day;
  const last = Math.floor(Math.max(...times) / day) * day + day;
  return {
    username: name.replace(/\.txt$/, ''),
    file,
    events,
    cutOffLines,
    segments: modelSegments(events, TIMEOUT_MS),
    window: { start: new Date(first).toISOString(), end: new Date(last).toISOString() },
  };
}

/** Runs the converter in process and writes its NDJSON output to `target`. */
async function convert(files: readonly string[], target: string): Promise<{ exitCode: number; log: string }> {
  const stdout = createWriteStream(target);
  let log = '';
  const stderr = new Writable({
    write(chunk, _encoding, callback) {
      log += String(chunk);
      callback();
    },
  });
  const exitCode = await runConvertCommand(files, { stdout, stderr });
  stdout.end();
  await finished(stdout);
  return { exitCode, log };
}

function key(pairType: string, pairKey: string): string {
  return `${pairType}/${pairKey}`;
}

/** Formats a segment as `pairType/key start..end reason`, the form both sides are compared in. */
function describeSegment(pairType: string, pairKey: string, start: number, end: number, reason: string | null): string {
  return `${key(pairType, pairKey)} ${new Date(start).toISOString()}..${new Date(end).toISOString()} ${reason}`;
}

const recordingNames = listRecordings();
if (recordingNames.length === 0) {
  console.warn(`Skipping the CASAS end-to-end suite: ${DATA_DIR} does not exist or holds no .txt files.`);
}
const describeWithData = recordingNames.length > 0 ? describe : describe.skip;
const usernames = recordingNames.map((name) => name.replace(/\.txt$/, ''));

describeWithData('CASAS Kyoto import end to end', () => {
  const recordings = recordingNames.map(loadRecording);
  const totalEvents = recordings.reduce((sum, recording) => sum + recording.events.length, 0);

  let server: TestServer;
  let token: string;
  let workDir: string;
  let conversion: { exitCode: number; log: string };
  let firstRun: ImportSummary;
  let secondRun: ImportSummary;
  const userIds = new Map<string, string>();
  const segmentsByUser = new Map<string, ServerSegment[]>();
  let pairTypeParents: Map<string, string | null>;

  async function listSegments(userId: string): Promise<ServerSegment[]> {
    const segments: ServerSegment[] = [];
    let after: string | null = null;
    for (;;) {
      const page: GraphQLResponse<{ segments: SegmentPage }> = await server.gql(
        SEGMENTS,
        { filter: { users: [userId] }, first: PAGE_SIZE, after },
        token,
      );
      expect(page.errors).toBeUndefined();
      const connection = page.data!.segments;
      segments.push(...connection.nodes);
      if (!connection.pageInfo.hasNextPage) {
        return segments;
      }
      expect(connection.nodes).toHaveLength(PAGE_SIZE);
      after = connection.pageInfo.endCursor;
    }
  }

  async function countOpenSegments(): Promise<number> {
    const page = await server.gql<{ segments: { nodes: ServerSegment[] } }>(
      SEGMENTS,
      { filter: { open: true }, first: PAGE_SIZE },
      token,
    );
    expect(page.errors).toBeUndefined();
    return page.data!.segments.nodes.length;
  }

  async function reportTotal(expression: unknown, window: { start: string; end: string }) {
    const result = await server.gql<{ report: { count: number; totalSeconds: number; truncated: boolean } }>(
      REPORT,
      { expression, window },
      token,
    );
    expect(result.errors).toBeUndefined();
    return result.data!.report;
  }

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'em-casas-'));
    const ndjson = join(workDir, 'events.ndjson');
    conversion = await convert(
      recordings.map((recording) => recording.file),
      ndjson,
    );

    server = await startTestServer(import.meta.filename, { env: { PAGE_SIZE_MAX: String(PAGE_SIZE) } });
    token = await server.adminToken();
    const importOptions = { url: server.url, token, files: [ndjson] };
    firstRun = await runImport(importOptions);
    secondRun = await runImport(importOptions);

    const users = await server.gql<{ users: { id: string; username: string }[] }>(`{ users { id username } }`, {}, token);
    for (const user of users.data?.users ?? []) {
      userIds.set(user.username, user.id);
    }
    const pairTypes = await server.gql<{ pairTypes: { name: string; parent: string | null }[] }>(
      `{ pairTypes { name parent } }`,
      {},
      token,
    );
    pairTypeParents = new Map((pairTypes.data?.pairTypes ?? []).map((type) => [type.name, type.parent]));

    // The server's clock is years past the recordings, so every deadline has
    // passed. Each request already closes what is due, and the wait only
    // covers closes that are left to the sweeper.
    const settleBy = Date.now() + SETTLE_TIMEOUT_MS;
    while ((await countOpenSegments()) > 0 && Date.now() < settleBy) {
      await new Promise((done) => setTimeout(done, 250));
    }

    for (const recording of recordings) {
      const id = userIds.get(recording.username);
      if (id !== undefined) {
        segmentsByUser.set(recording.username, await listSegments(id));
      }
    }
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    if (workDir !== undefined) {
      rmSync(workDir, { recursive: true, force: true });
    }
  });

  it('converter skips only cut-off lines', () => {
    expect(conversion.exitCode).toBe(0);
    const skipped = conversion.log.split('\n').filter((text) => text.includes(': skipped line: '));
    const expected = recordings.flatMap((recording) =>
      recording.cutOffLines.map((line) => `convert:casas: ${recording.file}:${line}: skipped line: truncated value`),
    );
    expect(skipped).toHaveLength(expected.length);
    for (const [index, prefix] of expected.entries()) {
      expect(skipped[index]?.slice(0, prefix.length)).toBe(prefix);
    }
    for (const recording of recordings) {
      const line = conversion.log.split('\n').find((text) => text.startsWith(`convert:casas: ${recording.file}: `));
      expect(line, `converter report of ${recording.file}`).toBeDefined();
      expect(line).toMatch(new RegExp(`, ${recording.events.length} events \\(`));
      expect(line).toMatch(new RegExp(`, ${recording.cutOffLines.length} skipped$`));
    }
  });

  it('first import stores every event', () => {
    expect(firstRun.badLines).toBe(0);
    expect(firstRun.eventsRead).toBe(totalEvents);
    expect(firstRun.eventsSent).toBe(totalEvents);
    expect(firstRun.stored).toBe(totalEvents);
    expect(firstRun.duplicates).toBe(0);
    expect(firstRun.rejected).toBe(0);
    expect(firstRun.retries).toBe(0);
    expect(firstRun.issues).toEqual([]);
    expect([...firstRun.pairTypesDefined].sort()).toEqual([...PAIR_TYPES].sort());
    expect(firstRun.pairTypeConflicts).toEqual([]);
    expect([...firstRun.usersCreated].sort()).toEqual(recordings.map((recording) => recording.username));
  });

  it('imports count stored flags', async () => {
    const rows = await server.app.db.sql.query<{ flag: string; count: number }>(
      `SELECT flag::text AS flag, count(*)::int AS count FROM events, unnest(intake_flags) AS flag
       WHERE origin = 'CLIENT' GROUP BY flag
       UNION ALL
       SELECT 'ORPHAN_END', count(*)::int FROM events WHERE origin = 'CLIENT' AND orphan HAVING count(*) > 0`,
    );
    const stored = Object.fromEntries(rows.map((row) => [row.flag, row.count]));
    expect(Object.keys(stored).length, 'flags in the database').toBeGreaterThan(0);
    expect(firstRun.flaggedByRule, 'first run').toEqual(stored);
    // The second run stores nothing, and counts what the first stored.
    expect(secondRun.flaggedByRule, 'second run').toEqual(stored);
  });

  it('second import stores only duplicates', () => {
    expect(secondRun.eventsRead).toBe(totalEvents);
    expect(secondRun.eventsSent).toBe(totalEvents);
    expect(secondRun.stored).toBe(0);
    expect(secondRun.duplicates).toBe(totalEvents);
    expect(secondRun.rejected).toBe(0);
    expect(secondRun.usersCreated).toEqual([]);
    expect(secondRun.pairTypesDefined).toEqual([]);
    expect([...secondRun.pairTypesExisting].sort()).toEqual([...PAIR_TYPES].sort());
  });

  it('no segment stays open', async () => {
    expect(await countOpenSegments()).toBe(0);
    for (const [username, segments] of segmentsByUser) {
      const open = segments.filter((segment) => segment.open || segment.end === null);
      expect(open, `open segments of ${username}`).toEqual([]);
    }
  });

  it.each(usernames)('%s: listing pages are complete', (username) => {
    const segments = segmentsByUser.get(username);
    expect(segments, `segments of ${username}`).toBeDefined();
    const ids = new Set(segments!.map((segment) => segment.id));
    expect(ids.size).toBe(segments!.length);
  });

  it.each(usernames)('%s: same-key segments never overlap', (username) => {
    const byKey = new Map<string, ServerSegment[]>();
    for (const segment of segmentsByUser.get(username) ?? []) {
      const list = byKey.get(key(segment.pairType, segment.pairKey)) ?? [];
      list.push(segment);
      byKey.set(key(segment.pairType, segment.pairKey), list);
    }
    expect(byKey.size).toBeGreaterThan(0);

    const overlaps: string[] = [];
    for (const [pair, list] of byKey) {
      list.sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
      for (let i = 1; i < list.length; i += 1) {
        const previousEnd = Date.parse(list[i - 1]!.end ?? '9999-12-31T00:00:00Z');
        if (Date.parse(list[i]!.start) < previousEnd) {
          overlaps.push(`${pair}: ${list[i - 1]!.start}..${list[i - 1]!.end} and ${list[i]!.start}..${list[i]!.end}`);
        }
      }
    }
    expect(overlaps).toEqual([]);
  });

  it.each(usernames)('%s: children lie inside parents', (username) => {
    const segments = segmentsByUser.get(username) ?? [];
    const byId = new Map(segments.map((segment) => [segment.id, segment]));
    const problems: string[] = [];
    for (const segment of segments) {
      const parentType = pairTypeParents.get(segment.pairType) ?? null;
      if (parentType === null) {
        // The CASAS pair types have no parent, so this is the branch the data takes.
        if (segment.parentSegmentId !== null) {
          problems.push(`${segment.id} of parentless ${segment.pairType} names parent ${segment.parentSegmentId}`);
        }
        continue;
      }
      const parent = segment.parentSegmentId === null ? undefined : byId.get(segment.parentSegmentId);
      if (parent === undefined || parent.pairType !== parentType) {
        problems.push(`${segment.id} (${segment.pairType}) has no ${parentType} parent`);
        continue;
      }
      const inside =
        Date.parse(parent.start) <= Date.parse(segment.start) &&
        (parent.end === null || (segment.end !== null && Date.parse(segment.end) <= Date.parse(parent.end)));
      if (!inside) {
        problems.push(`${segment.id} ${segment.start}..${segment.end} outside ${parent.start}..${parent.end}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it.each(usernames)('%s: segments match the raw model', (username) => {
    const recording = recordings.find((candidate) => candidate.username === username)!;

    // Empty segments (a begin that is the user's last event, or two begins in
    // the same millisecond) are left out, because they add no time to any report.
    const expected = recording.segments
      .filter((segment) => segment.end > segment.start)
      .map((segment) => describeSegment(segment.pairType, segment.key, segment.start, segment.end, segment.endReason))
      .sort();
    const actual = (segmentsByUser.get(username) ?? [])
      .filter((segment) => segment.end !== null && Date.parse(segment.end) > Date.parse(segment.start))
      .map((segment) =>
        describeSegment(segment.pairType, segment.pairKey, Date.parse(segment.start), Date.parse(segment.end!), segment.endReason),
      )
      .sort();

    const expectedSet = new Set(expected);
    const actualSet = new Set(actual);
    const missing = expected.filter((line) => !actualSet.has(line));
    const unexpected = actual.filter((line) => !expectedSet.has(line));
    expect(missing, 'segments in the model but not on the server').toEqual([]);
    expect(unexpected, 'segments on the server but not in the model').toEqual([]);
    expect(actual).toHaveLength(expected.length);
  });

  it.each(usernames)('%s: report totals match the raw model', async (username) => {
    const recording = recordings.find((candidate) => candidate.username === username)!;
    const userId = userIds.get(username)!;
    const windowMs = Date.parse(recording.window.end) - Date.parse(recording.window.start);
    const leafOf = (pairType: CasasPairType) => ({ segments: { pairTypes: [pairType], users: [userId] } });
    const unionOf = (pairType: CasasPairType) =>
      unionIntervals(recording.segments.filter((segment) => segment.pairType === pairType));

    const expectReport = async (label: string, expression: unknown, expected: { start: number; end: number }[]) => {
      const report = await reportTotal(expression, recording.window);
      expect(report.totalSeconds, `${label} seconds of ${username}`).toBeCloseTo(totalLength(expected) / 1000, 3);
      expect(report.count, `${label} intervals of ${username}`).toBe(expected.length);
      expect(report.truncated, `${label} truncated for ${username}`).toBe(false);
    };

    for (const pairType of PAIR_TYPES) {
      await expectReport(`${pairType} union`, leafOf(pairType), unionOf(pairType));
    }

    const activity = unionOf('activity');
    const sensor = unionOf('sensor');
    const shared = intersectIntervals(activity, sensor);
    await expectReport('activity and sensor', { intersect: [leafOf('activity'), leafOf('sensor')] }, shared);

    // Activity time with no sensor on: each activity piece minus the shared
    // pieces, which all lie inside it.
    const quiet = await reportTotal(
      { difference: { from: leafOf('activity'), subtract: leafOf('sensor') } },
      recording.window,
    );
    expect(quiet.totalSeconds, `activity without sensor of ${username}`).toBeCloseTo(
      (totalLength(activity) - totalLength(shared)) / 1000,
      3,
    );

    const outside = await reportTotal({ complement: leafOf('activity') }, recording.window);
    expect(outside.totalSeconds, `complement of activity of ${username}`).toBeCloseTo(
      (windowMs - totalLength(activity)) / 1000,
      3,
    );
  });
});
