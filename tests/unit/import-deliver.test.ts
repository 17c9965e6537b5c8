import { describe, expect, it } from 'vitest';

import { chunk, groupBy, type PendingEvent } from '../../src/importer/batching.js';
import { BatchDeliveryError, deliverBatch, readInvalidItems } from '../../src/importer/deliver.js';
import {
  GraphQLClient,
  GraphQLRequestError,
  InvalidRequestError,
  NetworkError,
  isTransientError,
  type SendEventsSummary,
} from '../../src/importer/graphql-client.js';
import { RetriesExhaustedError, withRetry } from '../../src/importer/retry.js';
import type { EventInput } from '../../src/importer/types.js';

function pending(count: number, type = 'ping', firstLine = 1): PendingEvent[] {
  return Array.from({ length: count }, (_, index) => ({
    input: { id: `e${firstLine + index}`, type },
    source: { file: 'in.ndjson', line: firstLine + index },
  }));
}

function invalidBatch(extensions: Record<string, unknown>): GraphQLRequestError {
  return new GraphQLRequestError('ImportSendEvents', 200, [
    { message: 'the batch is invalid', extensions: { code: 'BAD_USER_INPUT', ...extensions } },
  ]);
}

interface FakeServerOptions {
  /** Largest batch accepted; larger ones fail with LIMIT_EXCEEDED. */
  maxBatch?: number;
  /** Whether the LIMIT_EXCEEDED rejection states `max`. */
  statesMax?: boolean;
}

/**
 * Creates an in-memory `sendEvents`: type `bad` is listed in `invalidItems`, type
 * `broken` fails the whole batch without a list (as input coercion does),
 * type `child_started` yields one MISSING_PARENT_START correction, and a
 * repeated id counts as a duplicate.
 */
function fakeServer(options: FakeServerOptions = {}) {
  const storedIds: string[] = [];
  const calls: string[][] = [];

  const send = async (events: readonly EventInput[]): Promise<SendEventsSummary> => {
    calls.push(events.map((event) => event.id ?? ''));

    if (options.maxBatch !== undefined && events.length > options.maxBatch) {
      throw invalidBatch({
        reason: 'LIMIT_EXCEEDED',
        ...(options.statesMax === false ? {} : { max: options.maxBatch }),
      });
    }

    const invalidItems = events.flatMap((event, index) =>
      event.type === 'bad' ? [{ index, reason: 'UNKNOWN_TYPE', message: `type "bad" is unknown` }] : [],
    );
    if (invalidItems.length > 0) {
      throw invalidBatch({ reason: 'INVALID_EVENTS', invalidItems });
    }
    if (events.some((event) => event.type === 'broken')) {
      throw invalidBatch({ reason: 'INVALID_INPUT' });
    }

    let storedCount = 0;
    let duplicateCount = 0;
    for (const event of events) {
      if (storedIds.includes(event.id ?? '')) {
        duplicateCount += 1;
      } else {
        storedCount += 1;
        storedIds.push(event.id ?? '');
      }
    }
    return { storedCount, duplicateCount };
  };

  return { send, storedIds, calls };
}

describe('groupBy', () => {
  it('keeps order within groups', () => {
    const items = ['a1', 'b1', 'a2', 'c1', 'b2', 'a3'];
    const groups = groupBy(items, (item) => item.slice(0, 1));
    expect([...groups.keys()]).toEqual(['a', 'b', 'c']);
    expect(groups.get('a')).toEqual(['a1', 'a2', 'a3']);
    expect(groups.get('b')).toEqual(['b1', 'b2']);
    expect(groups.get('c')).toEqual(['c1']);
  });
});

describe('chunk', () => {
  it('cuts in order', () => {
    expect(chunk([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunk([1, 2], 5)).toEqual([[1, 2]]);
    expect(chunk([], 3)).toEqual([]);
  });

  it.each([0, -1, 1.5])('rejects size %s', (size) => {
    expect(() => chunk([1], size)).toThrow(RangeError);
  });
});

describe('readInvalidItems', () => {
  it('keeps valid indexes once', () => {
    const error = invalidBatch({
      invalidItems: [
        { index: 2, reason: 'A', message: 'first' },
        { index: 2, reason: 'B', message: 'again' },
        { index: 0 },
        { index: 9, reason: 'C', message: 'outside' },
        { index: -1 },
        { index: 1.5 },
        'junk',
      ],
    });
    expect(readInvalidItems(error, 3)).toEqual([
      { index: 0, reason: 'INVALID', message: 'rejected by the server' },
      { index: 2, reason: 'A', message: 'first' },
    ]);
  });
});

describe('deliverBatch', () => {
  it('sends a valid batch once', async () => {
    const server = fakeServer();
    const result = await deliverBatch(pending(3), server.send);
    expect(server.calls).toEqual([['e1', 'e2', 'e3']]);
    expect(result.sent).toBe(3);
    expect(result.stored).toBe(3);
    expect(result.duplicates).toBe(0);
    expect(result.rejected).toEqual([]);
    expect(result.requests).toBe(1);
  });

  it('resends without listed items', async () => {
    const server = fakeServer();
    const batch = [
      ...pending(2),
      ...pending(1, 'bad', 3),
      ...pending(2, 'ping', 4),
      ...pending(1, 'bad', 6),
    ];
    const result = await deliverBatch(batch, server.send);

    expect(server.calls).toEqual([
      ['e1', 'e2', 'e3', 'e4', 'e5', 'e6'],
      ['e1', 'e2', 'e4', 'e5'],
    ]);
    expect(server.storedIds).toEqual(['e1', 'e2', 'e4', 'e5']);
    expect(result.sent).toBe(6);
    expect(result.stored).toBe(4);
    const message = 'type "bad" is unknown';
    expect(result.rejected).toEqual([
      { source: { file: 'in.ndjson', line: 3 }, eventId: 'e3', reason: 'UNKNOWN_TYPE', message },
      { source: { file: 'in.ndjson', line: 6 }, eventId: 'e6', reason: 'UNKNOWN_TYPE', message },
    ]);
    expect(result.requests).toBe(2);
  });

  it('sends nothing when all are invalid', async () => {
    const server = fakeServer();
    const result = await deliverBatch(pending(2, 'bad'), server.send);
    expect(server.calls).toHaveLength(1);
    expect(result.rejected).toHaveLength(2);
    expect(result.sent).toBe(2);
    expect(result.stored).toBe(0);
  });

  it('isolates an unlisted invalid event by halving', async () => {
    const server = fakeServer();
    const batch = [...pending(5), ...pending(1, 'broken', 6), ...pending(2, 'ping', 7)];
    const result = await deliverBatch(batch, server.send);

    expect(server.storedIds).toEqual(['e1', 'e2', 'e3', 'e4', 'e5', 'e7', 'e8']);
    expect(result.rejected).toEqual([
      {
        source: { file: 'in.ndjson', line: 6 },
        eventId: 'e6',
        reason: 'INVALID_INPUT',
        message: 'the batch is invalid',
      },
    ]);
    expect(result.sent).toBe(8);
    expect(result.requests).toBe(server.calls.length);
  });

  it('cuts to the stated maximum', async () => {
    const server = fakeServer({ maxBatch: 2 });
    const result = await deliverBatch(pending(5), server.send);
    expect(server.calls).toEqual([['e1', 'e2', 'e3', 'e4', 'e5'], ['e1', 'e2'], ['e3', 'e4'], ['e5']]);
    expect(result.maxBatchSize).toBe(2);
    expect(result.stored).toBe(5);
  });

  it('reads the maximum from details', async () => {
    const calls: number[] = [];
    const send = async (events: readonly EventInput[]): Promise<SendEventsSummary> => {
      calls.push(events.length);
      if (events.length > 3) {
        throw invalidBatch({ reason: 'LIMIT_EXCEEDED', details: { limit: 'batch size', max: 3 } });
      }
      return { storedCount: events.length, duplicateCount: 0 };
    };
    const result = await deliverBatch(pending(7), send);
    expect(calls).toEqual([7, 3, 3, 1]);
    expect(result.maxBatchSize).toBe(3);
    expect(result.stored).toBe(7);
  });

  it('halves when no maximum is stated', async () => {
    const server = fakeServer({ maxBatch: 2, statesMax: false });
    const result = await deliverBatch(pending(5), server.send);
    expect(server.storedIds).toEqual(['e1', 'e2', 'e3', 'e4', 'e5']);
    expect(result.maxBatchSize).toBe(2);
    expect(result.rejected).toEqual([]);
  });

  it('counts duplicates', async () => {
    const server = fakeServer();
    await deliverBatch(pending(2), server.send);
    const result = await deliverBatch([...pending(3), ...pending(2, 'child_started', 10)], server.send);
    expect(result.stored).toBe(3);
    expect(result.duplicates).toBe(2);
  });

  it('passes other errors on', async () => {
    const unavailable = new GraphQLRequestError('ImportSendEvents', 503, [
      { message: 'down', extensions: { code: 'SERVICE_UNAVAILABLE' } },
    ]);
    const send = async (): Promise<SendEventsSummary> => {
      throw unavailable;
    };
    const failure = await deliverBatch(pending(2), send).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(BatchDeliveryError);
    expect((failure as BatchDeliveryError).cause).toBe(unavailable);
    expect((failure as BatchDeliveryError).eventsWithoutReply).toBe(2);
    expect((failure as BatchDeliveryError).delivery.sent).toBe(0);
  });

  it('keeps split parts counted on failure', async () => {
    const unavailable = new GraphQLRequestError('ImportSendEvents', 503, [
      { message: 'down', extensions: { code: 'SERVICE_UNAVAILABLE' } },
    ]);
    const calls: number[] = [];
    // The rejection lists no item, so the batch of 6 is halved. The first
    // half is stored, the second is rejected and halved again, and the
    // request for its first part fails.
    const send = async (events: readonly EventInput[]): Promise<SendEventsSummary> => {
      calls.push(events.length);
      if (calls.length === 4) {
        throw unavailable;
      }
      if (events.some((event) => event.type === 'bad')) {
        throw invalidBatch({});
      }
      return { storedCount: events.length - 1, duplicateCount: 1 };
    };
    const batch = [...pending(3), ...pending(1, 'bad', 4), ...pending(2, 'ping', 5)];
    const failure = await deliverBatch(batch, send).catch((error: unknown) => error);

    expect(calls).toEqual([6, 3, 3, 2]);
    expect(failure).toBeInstanceOf(BatchDeliveryError);
    const { delivery, eventsWithoutReply, cause } = failure as BatchDeliveryError;
    expect(cause).toBe(unavailable);
    expect(eventsWithoutReply).toBe(2);
    expect(delivery.sent).toBe(3);
    expect(delivery.stored).toBe(2);
    expect(delivery.duplicates).toBe(1);
    expect(delivery.rejected).toEqual([]);
    expect(delivery.requests).toBe(4);
  });

  it('sends nothing for an empty batch', async () => {
    const server = fakeServer();
    const result = await deliverBatch([], server.send);
    expect(server.calls).toEqual([]);
    expect(result.requests).toBe(0);
  });
});

describe('withRetry', () => {
  const unavailable = () =>
    new GraphQLRequestError('Op', 200, [
      { message: 'busy', extensions: { code: 'SERVICE_UNAVAILABLE' } },
    ]);

  it('retries transient failures with backoff', async () => {
    const waits: number[] = [];
    let attempts = 0;
    const value = await withRetry(
      async () => {
        attempts += 1;
        if (attempts === 1) {
          throw new NetworkError('Op', 'http://127.0.0.1:9/graphql', new Error('ECONNREFUSED'));
        }
        if (attempts === 2) {
          throw unavailable();
        }
        return 'ok';
      },
      { delaysMs: [100, 200, 400], sleep: async (ms) => void waits.push(ms), random: () => 0.5 },
    );
    expect(value).toBe('ok');
    expect(attempts).toBe(3);
    expect(waits).toEqual([100, 200]);
  });

  it('gives up after the last delay', async () => {
    let attempts = 0;
    const promise = withRetry(
      async () => {
        attempts += 1;
        throw unavailable();
      },
      { delaysMs: [1, 1], sleep: async () => {}, random: () => 0 },
    );
    await expect(promise).rejects.toThrow(RetriesExhaustedError);
    await expect(promise).rejects.toThrow(
      /gave up after 3 attempts: the Op request failed \(SERVICE_UNAVAILABLE\): busy/,
    );
    expect(attempts).toBe(3);
  });

  it('does not retry invalid input', async () => {
    let attempts = 0;
    const invalid = invalidBatch({});
    await expect(
      withRetry(
        async () => {
          attempts += 1;
          throw invalid;
        },
        { delaysMs: [1], sleep: async () => {} },
      ),
    ).rejects.toBe(invalid);
    expect(attempts).toBe(1);
  });

  it.each([
    [429, true],
    [502, true],
    [503, true],
    [504, true],
    [500, false],
    [400, false],
  ])('treats HTTP %s as transient: %s', async (status, transient) => {
    let attempts = 0;
    await expect(
      withRetry(
        async () => {
          attempts += 1;
          throw new GraphQLRequestError('Op', status, [{ message: 'status' }]);
        },
        { delaysMs: [1], sleep: async () => {} },
      ),
    ).rejects.toThrow();
    expect(attempts).toBe(transient ? 2 : 1);
  });
});

describe('GraphQLClient', () => {
  const endpoint = 'http://bob:UrlS3cret@127.0.0.1:9/graphql';

  it('does not retry a request fetch cannot build', async () => {
    let fetchCalls = 0;
    const client = new GraphQLClient({
      endpoint,
      fetch: (async () => {
        fetchCalls += 1;
        throw new TypeError('fetch failed');
      }) as typeof fetch,
    });
    let attempts = 0;
    const promise = withRetry(
      () => {
        attempts += 1;
        return client.me();
      },
      { delaysMs: [1, 1], sleep: async () => {} },
    );

    await expect(promise).rejects.toThrow(InvalidRequestError);
    await expect(promise).rejects.toThrow(/^the me request cannot be sent to http:\/\/bob:\*\*\*@127\.0\.0\.1:9\/graphql: /);
    await expect(promise).rejects.not.toThrow(/UrlS3cret/);
    expect(attempts).toBe(1);
    expect(fetchCalls).toBe(0);
  });

  it('masks the URL password of a network error', () => {
    const cause = new TypeError(`fetch failed for ${endpoint}`);
    const error = new NetworkError('ImportMe', endpoint, cause);
    expect(error.message).toBe(
      'the me request could not reach http://bob:***@127.0.0.1:9/graphql: fetch failed for http://bob:***@127.0.0.1:9/graphql',
    );
    expect(isTransientError(error)).toBe(true);
  });
});
