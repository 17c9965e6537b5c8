/**
 * The reply memory of a process (REPLY_MEMORY_MAX_BYTES) as the reply
 * budgets of concurrent queries reserve and release it.
 */
import type { GraphQLResolveInfo } from 'graphql';
import { describe, expect, it } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { OBJECT_REPLY_BYTES, ReplyBudget } from '../../src/graphql/reply-budget.js';
import { ReplyMemory } from '../../src/graphql/reply-memory.js';

/** The part of a resolver's info that the budget reads: a query. */
const QUERY_INFO = { operation: { operation: 'query' } } as unknown as GraphQLResolveInfo;
const MUTATION_INFO = { operation: { operation: 'mutation' } } as unknown as GraphQLResolveInfo;

function caught(action: () => unknown): DomainError {
  try {
    action();
  } catch (error) {
    if (error instanceof DomainError) {
      return error;
    }
    throw error;
  }
  throw new Error('expected a DomainError');
}

describe('ReplyMemory', () => {
  it('refuses a reservation over the maximum', () => {
    const memory = new ReplyMemory(1000);
    expect(memory.tryReserve(600)).toBe(true);
    expect(memory.tryReserve(401)).toBe(false);
    expect(memory.reserved).toBe(600);
    expect(memory.tryReserve(400)).toBe(true);
    expect(memory.available).toBe(0);
  });

  it('takes back released bytes', () => {
    const memory = new ReplyMemory(1000);
    memory.tryReserve(700);
    memory.release(700);
    expect(memory.reserved).toBe(0);
    expect(memory.tryReserve(1000)).toBe(true);
  });
});

describe('ReplyBudget with a reply memory', () => {
  it('reserves the objects it charges', () => {
    const memory = new ReplyMemory(10 * OBJECT_REPLY_BYTES);
    const budget = new ReplyBudget(100 * OBJECT_REPLY_BYTES, memory);
    expect(budget.chargeObjects(QUERY_INFO, 4)).toBe(true);
    expect(memory.reserved).toBe(4 * OBJECT_REPLY_BYTES);
    expect(budget.chargeMeta(QUERY_INFO, { note: 'x' })).toBe(true);
    expect(memory.reserved).toBe(4 * OBJECT_REPLY_BYTES + '{"note":"x"}'.length);
  });

  it('leaves mutation replies out of the memory', () => {
    const memory = new ReplyMemory(OBJECT_REPLY_BYTES);
    const budget = new ReplyBudget(100 * OBJECT_REPLY_BYTES, memory);
    expect(budget.chargeObjects(MUTATION_INFO, 50)).toBe(true);
    expect(memory.reserved).toBe(0);
  });

  it('refuses a charge that the memory cannot hold', () => {
    const memory = new ReplyMemory(10 * OBJECT_REPLY_BYTES);
    const first = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    const second = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    first.chargeObjects(QUERY_INFO, 7);

    const error = caught(() => second.chargeObjects(QUERY_INFO, 4));
    expect(error.kind).toBe('SERVICE_UNAVAILABLE');
    expect(error.reason).toBe('REPLY_MEMORY_FULL');
    expect(error.details).toMatchObject({ limit: 'REPLY_MEMORY_MAX_BYTES', value: 4 * OBJECT_REPLY_BYTES, max: 10 * OBJECT_REPLY_BYTES });
    expect(error.message).toContain(`an estimated ${7 * OBJECT_REPLY_BYTES} bytes`);
    expect(error.message).toContain('REPLY_MEMORY_MAX_BYTES');
    expect(second.exceeded).toBe(error);
    expect(second.chargeObjects(QUERY_INFO, 1), 'charges after the refusal').toBe(false);
    expect(memory.reserved, 'the refused charge reserves nothing').toBe(7 * OBJECT_REPLY_BYTES);
  });

  it('names only other requests in a refusal', () => {
    const memory = new ReplyMemory(10 * OBJECT_REPLY_BYTES);
    const other = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    const budget = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    other.chargeObjects(QUERY_INFO, 5);
    budget.chargeObjects(QUERY_INFO, 3);

    const error = caught(() => budget.chargeObjects(QUERY_INFO, 3));
    expect(error.reason).toBe('REPLY_MEMORY_FULL');
    expect(error.message, 'bytes of the other request').toContain(`hold an estimated ${5 * OBJECT_REPLY_BYTES} bytes`);
    expect(error.message, "this reply's bytes").toContain(`this reply's estimated ${6 * OBJECT_REPLY_BYTES} bytes`);
    expect(error.details.value).toBe(6 * OBJECT_REPLY_BYTES);
  });

  it('gives its reservation back once', () => {
    const memory = new ReplyMemory(10 * OBJECT_REPLY_BYTES);
    const first = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    const second = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    first.chargeObjects(QUERY_INFO, 6);
    second.chargeObjects(QUERY_INFO, 3);

    first.releaseMemory();
    first.releaseMemory();
    expect(memory.reserved).toBe(3 * OBJECT_REPLY_BYTES);
    const third = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    expect(third.chargeObjects(QUERY_INFO, 7)).toBe(true);
  });

  it('reserves nothing after its release', async () => {
    const memory = new ReplyMemory(10 * OBJECT_REPLY_BYTES);
    const budget = new ReplyBudget(10 * OBJECT_REPLY_BYTES, memory);
    budget.chargeObjects(QUERY_INFO, 2);
    // The response closed while resolvers and a read of the query still run.
    budget.releaseMemory();

    expect(budget.chargeObjects(QUERY_INFO, 3)).toBe(true);
    await budget.read(async () => ({ value: null, bytes: 8 * OBJECT_REPLY_BYTES }));
    expect(memory.reserved).toBe(0);
  });

  it('counts reads and reply charges of one request once', async () => {
    const memory = new ReplyMemory(10_000);
    const budget = new ReplyBudget(10_000, memory);
    await budget.read(async () => ({ value: null, bytes: 3000 }));
    expect(memory.reserved).toBe(3000);
    // The reply of the rows read does not add to them until it outgrows them.
    budget.chargeObjects(QUERY_INFO, 10);
    expect(memory.reserved).toBe(3000);
    budget.chargeObjects(QUERY_INFO, 10);
    expect(memory.reserved).toBe(20 * OBJECT_REPLY_BYTES);
  });

  it('limits a read to the room left in the memory', async () => {
    const memory = new ReplyMemory(10_000);
    memory.tryReserve(8000);
    const budget = new ReplyBudget(10_000, memory);
    let limit = 0;
    await budget.read(async (remainingBytes) => {
      limit = remainingBytes;
      return { value: null, bytes: 1500 };
    });
    expect(limit).toBe(2000);

    const error = await budget
      .read(async (remainingBytes) => {
        limit = remainingBytes;
        return { value: null, bytes: 600 };
      })
      .then(
        () => null,
        (reason: unknown) => reason,
      );
    expect(limit, 'the second read gets what the first left').toBe(500);
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).reason).toBe('REPLY_MEMORY_FULL');
    expect((error as DomainError).details.value).toBe(2100);
  });

  it('lets a read use the room its charges hold', async () => {
    const memory = new ReplyMemory(10_000);
    memory.tryReserve(2000);
    const budget = new ReplyBudget(20_000, memory);
    budget.chargeObjects(QUERY_INFO, 16);
    expect(memory.reserved).toBe(2000 + 16 * OBJECT_REPLY_BYTES);
    let limit = 0;
    await budget.read(async (remainingBytes) => {
      limit = remainingBytes;
      return { value: null, bytes: 0 };
    });
    // The reply's own 4,096 bytes stay reserved for the rows the read returns,
    // so the read may take them besides the 3,904 bytes still free.
    expect(limit).toBe(8000);
  });

  it('reports MAX_REPLY_BYTES before the memory', async () => {
    const memory = new ReplyMemory(1000);
    memory.tryReserve(1000);
    const budget = new ReplyBudget(500, memory);
    const error = await budget.read(async () => ({ value: null, bytes: 900 })).then(
      () => null,
      (reason: unknown) => reason,
    );
    expect((error as DomainError).reason).toBe('LIMIT_EXCEEDED');
    expect((error as DomainError).details.limit).toBe('MAX_REPLY_BYTES');
  });
});
