import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { DomainError } from '../../src/domain/errors.js';
import { UserTurns } from '../../src/services/user-turns.js';

const ALICE = '00000000-0000-4000-8000-00000000000a';
const BOB = '00000000-0000-4000-8000-00000000000b';

describe('UserTurns', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('grants a free turn at once', async () => {
    const turns = new UserTurns(30_000);

    const turn = await turns.take(ALICE, 0);

    expect(turns.busyUsers).toBe(1);
    turn.release();
    expect(turns.busyUsers).toBe(0);
  });

  it('keeps users apart', async () => {
    const turns = new UserTurns(30_000);

    await turns.take(ALICE, 0);
    const bob = await turns.take(BOB, 0);

    expect(turns.busyUsers).toBe(2);
    bob.release();
    expect(turns.busyUsers).toBe(1);
  });

  it('grants waiters in arrival order', async () => {
    const turns = new UserTurns(30_000);
    const first = await turns.take(ALICE, 1000);
    const order: number[] = [];
    const waiting = [1, 2, 3, 4].map((label) =>
      turns.take(ALICE, 1000).then((turn) => {
        order.push(label);
        turn.release();
      }),
    );

    first.release();
    await Promise.all(waiting);

    expect(order).toEqual([1, 2, 3, 4]);
    expect(turns.busyUsers).toBe(0);
  });

  it('rejects at once without wait', async () => {
    const turns = new UserTurns(30_000);
    await turns.take(ALICE, 0);

    const error = await turns.take(ALICE, 0).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).reason).toBe('USER_BUSY');
  });

  it('rejects after the wait', async () => {
    const turns = new UserTurns(30_000);
    await turns.take(ALICE, 0);

    const waiting = turns.take(ALICE, 250).catch((caught: unknown) => caught);
    await vi.advanceTimersByTimeAsync(250);
    const error = await waiting;

    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).reason).toBe('USER_BUSY');
    expect((error as DomainError).message).toContain(ALICE);
    expect((error as DomainError).message).toContain('250 ms');
  });

  it('skips a waiter that gave up', async () => {
    const turns = new UserTurns(30_000);
    const first = await turns.take(ALICE, 0);
    const quitter = turns.take(ALICE, 100).catch((caught: unknown) => caught);
    const patient = turns.take(ALICE, 1000);

    await vi.advanceTimersByTimeAsync(100);
    expect(await quitter).toBeInstanceOf(DomainError);
    first.release();
    const turn = await patient;

    expect(turns.busyUsers).toBe(1);
    turn.release();
    expect(turns.busyUsers).toBe(0);
  });

  it('passes on an expired turn', async () => {
    const turns = new UserTurns(500);
    const stuck = await turns.take(ALICE, 0);
    let granted = false;
    const next = turns.take(ALICE, 2000).then((turn) => {
      granted = true;
      return turn;
    });

    await vi.advanceTimersByTimeAsync(499);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    const turn = await next;
    expect(granted).toBe(true);

    // The expired holder's late release must not end the new holder's turn.
    stuck.release();
    expect(turns.busyUsers).toBe(1);
    turn.release();
    expect(turns.busyUsers).toBe(0);
  });

  it('restarts the lifetime on extend', async () => {
    const turns = new UserTurns(500);
    const holder = await turns.take(ALICE, 0);
    let granted = false;
    const next = turns.take(ALICE, 5000).then((turn) => {
      granted = true;
      return turn;
    });

    await vi.advanceTimersByTimeAsync(400);
    holder.extend();
    await vi.advanceTimersByTimeAsync(400);
    expect(granted).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    expect(granted).toBe(true);
    (await next).release();
  });

  it('ignores a second release', async () => {
    const turns = new UserTurns(30_000);
    const first = await turns.take(ALICE, 0);
    const second = turns.take(ALICE, 1000);

    first.release();
    await second;
    first.release();

    expect(turns.busyUsers).toBe(1);
  });
});
