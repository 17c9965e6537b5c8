/**
 * Helpers for intake tests that compare what a server derived with a clean
 * replay: reading a user's whole timeline back over GraphQL, normalising it
 * so that two servers can be compared, replaying streams in a fresh server,
 * and generating seeded event streams.
 *
 * Event ids are random UUIDs chosen by the server, and segment and correction
 * ids are derived from them, so two servers never share ids. Normalising
 * replaces each id by a key built from client ids: a client event becomes
 * `client:<clientId>`, a correction `<rule>(<cause key>,<pairType>,<pairKey>)`
 * and a segment `segment:<start event key>`. Every event of a compared stream
 * therefore needs a client id.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { seededRandom } from './random.js';
import { ManualClock, startTestServer, type GraphQLResponse, type StartOptions, type TestServer } from './app.js';

/** One client event of a stream, in GraphQL input form. */
export interface StreamEvent {
  id: string;
  type: string;
  occurredAt: string;
  pairKey?: string;
  meta?: Record<string, unknown>;
}

export interface EventNode {
  id: string;
  clientId: string | null;
  type: string;
  role: 'START' | 'END' | 'POINT';
  pairType: string | null;
  pairKey: string | null;
  occurredAt: string;
  origin: 'CLIENT' | 'CORRECTION';
  rule: string | null;
  causeEventId: string | null;
  flags: string[];
}

export interface SegmentNode {
  id: string;
  pairType: string;
  pairKey: string;
  start: string;
  end: string | null;
  endReason: string | null;
  open: boolean;
  parentSegmentId: string | null;
  startEvent: { id: string };
  endEvent: { id: string } | null;
}

/** A user's events (client events and corrections) and segments, as the API returns them. */
export interface RawTimeline {
  events: EventNode[];
  segments: SegmentNode[];
}

export interface NormalisedSegment {
  key: string;
  pairType: string;
  pairKey: string;
  start: string;
  end: string | null;
  endReason: string | null;
  parent: string | null;
  endEvent: string | null;
}

export interface NormalisedCorrection {
  key: string;
  type: string;
  rule: string | null;
  occurredAt: string;
  cause: string | null;
}

export interface NormalisedTimeline {
  segments: NormalisedSegment[];
  corrections: NormalisedCorrection[];
  /** Client ids of the events flagged ORPHAN_END. */
  orphanEnds: string[];
}

export const EVENT_FIELDS = 'id clientId type role pairType pairKey occurredAt origin rule causeEventId flags';
export const SEGMENT_FIELDS =
  'id pairType pairKey start end endReason open parentSegmentId meta startEvent { id } endEvent { id }';

export const SEND_EVENTS = `mutation ($events: [EventInput!]!) {
  sendEvents(events: $events) {
    storedCount
    duplicateCount
    results {
      duplicate
      event { ${EVENT_FIELDS} }
      corrections { ${EVENT_FIELDS} }
      closedSegments { ${SEGMENT_FIELDS} }
    }
  }
}`;

const EVENTS_PAGE = `query ($filter: EventFilter, $first: Int, $after: String) {
  events(filter: $filter, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { ${EVENT_FIELDS} }
  }
}`;

const SEGMENTS_PAGE = `query ($filter: SegmentFilter, $first: Int, $after: String) {
  segments(filter: $filter, first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { ${SEGMENT_FIELDS} }
  }
}`;

const PAGE_SIZE = 500;

/** Throws with the GraphQL errors when a response has any, and returns its data otherwise. */
export function dataOf<T>(response: GraphQLResponse<T>, operation: string): T {
  if (response.errors !== undefined || response.data === undefined) {
    throw new Error(`${operation} failed with HTTP ${response.status}: ${JSON.stringify(response.errors)}`);
  }
  return response.data;
}

async function readPages<T>(
  server: TestServer,
  token: string,
  query: string,
  field: 'events' | 'segments',
  filter: Record<string, unknown>,
): Promise<T[]> {
  const nodes: T[] = [];
  let after: string | null = null;
  for (;;) {
    const response = await server.gql(query, { filter, first: PAGE_SIZE, after }, token);
    const page = dataOf(response, field)[field] as {
      nodes: T[];
      pageInfo: { hasNextPage: boolean; endCursor: string | null };
    };
    nodes.push(...page.nodes);
    if (!page.pageInfo.hasNextPage) {
      return nodes;
    }
    after = page.pageInfo.endCursor;
  }
}

/** Reads every event and segment of one user. `token` must be allowed to read that user. */
export async function readTimeline(server: TestServer, token: string, userId: string): Promise<RawTimeline> {
  const filter = { users: [userId] };
  const events = await readPages<EventNode>(server, token, EVENTS_PAGE, 'events', filter);
  const segments = await readPages<SegmentNode>(server, token, SEGMENTS_PAGE, 'segments', filter);
  return { events, segments };
}

/**
 * Settles each user on `server` (folding anything pending), then reads and
 * normalises their timelines and counts the events flagged LATE_EVENT.
 */
export async function settleAndReadTimelines(
  server: TestServer,
  users: ReadonlyArray<{ id: string }>,
): Promise<{ timelines: NormalisedTimeline[]; lateCount: number }> {
  for (const user of users) {
    await server.app.services.intake.settle(user.id);
  }
  const adminToken = await server.adminToken();
  const timelines: NormalisedTimeline[] = [];
  let lateCount = 0;
  for (const user of users) {
    const raw = await readTimeline(server, adminToken, user.id);
    lateCount += raw.events.filter((event) => event.flags.includes('LATE_EVENT')).length;
    timelines.push(normaliseTimeline(raw));
  }
  return { timelines, lateCount };
}

/** Replaces server-chosen ids by keys built from client ids (see the file header). */
export function normaliseTimeline(raw: RawTimeline): NormalisedTimeline {
  const byId = new Map(raw.events.map((event) => [event.id, event]));
  const keys = new Map<string, string>();

  const eventKey = (id: string, depth = 0): string => {
    const known = keys.get(id);
    if (known !== undefined) {
      return known;
    }
    const event = byId.get(id);
    if (event === undefined || depth > 64) {
      return `missing:${id}`;
    }
    let key: string;
    if (event.origin === 'CLIENT') {
      if (event.clientId === null) {
        throw new Error(`Client event ${id} has no client id, so it cannot be compared across servers.`);
      }
      key = `client:${event.clientId}`;
    } else {
      const cause = event.causeEventId === null ? 'none' : eventKey(event.causeEventId, depth + 1);
      key = `${event.rule}(${cause},${event.pairType},${event.pairKey})`;
    }
    keys.set(id, key);
    return key;
  };

  const segmentKeys = new Map(raw.segments.map((segment) => [segment.id, `segment:${eventKey(segment.startEvent.id)}`]));

  const segments = raw.segments
    .map((segment) => ({
      key: segmentKeys.get(segment.id) as string,
      pairType: segment.pairType,
      pairKey: segment.pairKey,
      start: segment.start,
      end: segment.end,
      endReason: segment.endReason,
      parent:
        segment.parentSegmentId === null
          ? null
          : (segmentKeys.get(segment.parentSegmentId) ?? `missing:${segment.parentSegmentId}`),
      endEvent: segment.endEvent === null ? null : eventKey(segment.endEvent.id),
    }))
    .sort((a, b) => compareText(a.start, b.start) || compareText(a.key, b.key));

  const corrections = raw.events
    .filter((event) => event.origin === 'CORRECTION')
    .map((event) => ({
      key: eventKey(event.id),
      type: event.type,
      rule: event.rule,
      occurredAt: event.occurredAt,
      cause: event.causeEventId === null ? null : eventKey(event.causeEventId),
    }))
    .sort((a, b) => compareText(a.occurredAt, b.occurredAt) || compareText(a.key, b.key));

  const orphanEnds = raw.events
    .filter((event) => event.origin === 'CLIENT' && event.flags.includes('ORPHAN_END'))
    .map((event) => event.clientId ?? event.id)
    .sort(compareText);

  return { segments, corrections, orphanEnds };
}

function compareText(a: string, b: string): number {
  if (a === b) {
    return 0;
  }
  return a < b ? -1 : 1;
}

/** Returns the events sorted by `occurredAt`; events at the same instant keep their order. */
export function inTimeOrder(events: readonly StreamEvent[]): StreamEvent[] {
  return events
    .map((event, index) => ({ event, index, at: Date.parse(event.occurredAt) }))
    .sort((a, b) => a.at - b.at || a.index - b.index)
    .map((entry) => entry.event);
}

/** Splits a list into consecutive chunks of at most `size` items. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let index = 0; index < items.length; index += size) {
    chunks.push(items.slice(index, index + size));
  }
  return chunks;
}

/**
 * Sends one batch, retrying it with the same client ids while the server
 * returns SERVICE_UNAVAILABLE (a busy user or a lock that moved to another
 * process). Returns the `sendEvents` result.
 */
export async function sendWithRetry(
  server: TestServer,
  token: string,
  events: readonly (StreamEvent & { userId?: string })[],
  maxAttempts = 20,
): Promise<{ storedCount: number; duplicateCount: number }> {
  for (let attempt = 1; ; attempt += 1) {
    const response = await server.gql(SEND_EVENTS, { events }, token);
    const unavailable = response.errors?.some((error) => error.extensions?.code === 'SERVICE_UNAVAILABLE') ?? false;
    if (!unavailable || attempt >= maxAttempts) {
      return dataOf(response, 'sendEvents').sendEvents;
    }
    await sleep(10 + Math.random() * 40);
  }
}

export interface ReplayOptions extends Omit<StartOptions, 'clock' | 'sweeper'> {
  /** "Now" of the replay server, in ms since the epoch. */
  now: number;
  /** Runs once after the server starts, for example to define pair types. */
  prepareServer?: (server: TestServer) => Promise<void>;
  /** Runs for each user before its events are sent, for example to set preferences. */
  prepareUser?: (server: TestServer, user: { id: string; token: string }, index: number) => Promise<void>;
  batchSize?: number;
}

/**
 * Starts a fresh server whose clock is set to `options.now`, sends each
 * stream as one new user's events in time order, and returns each user's
 * normalised timeline, in the order of `streams`.
 */
export async function replayInFreshServer(
  testFile: string,
  streams: ReadonlyArray<readonly StreamEvent[]>,
  options: ReplayOptions,
): Promise<NormalisedTimeline[]> {
  const { now, prepareServer, prepareUser, batchSize = 200, ...startOptions } = options;
  const server = await startTestServer(testFile, { ...startOptions, clock: new ManualClock(now), sweeper: false });
  try {
    await prepareServer?.(server);
    const adminToken = await server.adminToken();
    const timelines: NormalisedTimeline[] = [];
    for (const [index, stream] of streams.entries()) {
      const user = await server.createUser(`replay-${index}`);
      await prepareUser?.(server, user, index);
      for (const batch of chunk(inTimeOrder(stream), batchSize)) {
        dataOf(await server.gql(SEND_EVENTS, { events: batch }, user.token), 'sendEvents');
      }
      timelines.push(normaliseTimeline(await readTimeline(server, adminToken, user.id)));
    }
    return timelines;
  } finally {
    await server.close();
  }
}

export interface StreamOptions {
  /** Prefix of the client ids, unique per user within a test. */
  idPrefix: string;
  seed: number;
  count: number;
  /** Instant of the first event, in ms since the epoch. */
  startAt: number;
  /** Largest gap between two consecutive events, in seconds (at least 1). */
  maxGapSeconds?: number;
}

/**
 * Generates a stream of session and task events, with heartbeats, at strictly
 * increasing instants. It follows no protocol on purpose, so it contains
 * orphan ends, duplicate starts and tasks without a session.
 */
export function generateStream(options: StreamOptions): StreamEvent[] {
  const random = seededRandom(options.seed);
  const maxGapSeconds = options.maxGapSeconds ?? 1200;
  const kinds: Array<{ type: string; keyed: boolean }> = [
    { type: 'session_started', keyed: false },
    { type: 'session_ended', keyed: false },
    { type: 'task_started', keyed: true },
    { type: 'task_started', keyed: true },
    { type: 'task_ended', keyed: true },
    { type: 'task_ended', keyed: true },
    { type: 'heartbeat', keyed: false },
  ];
  const pairKeys = ['', 'a', 'b'];

  const events: StreamEvent[] = [];
  let at = options.startAt;
  for (let index = 0; index < options.count; index += 1) {
    const kind = kinds[Math.floor(random() * kinds.length)] ?? { type: 'heartbeat', keyed: false };
    const event: StreamEvent = {
      id: `${options.idPrefix}-${index}`,
      type: kind.type,
      occurredAt: new Date(at).toISOString(),
    };
    if (kind.keyed) {
      event.pairKey = pairKeys[Math.floor(random() * pairKeys.length)] ?? '';
    }
    events.push(event);
    at += (1 + Math.floor(random() * maxGapSeconds)) * 1000;
  }
  return events;
}
