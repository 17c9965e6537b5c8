/**
 * The message of an INVALID_EVENTS error, which GraphQL sendEvents and REST
 * POST /api/events share: the count of invalid events, then the first five
 * problems with their event index, and "..." when invalidItems has more.
 */
import { describe, expect, it } from 'vitest';

import { invalidEventsMessage, type InvalidItem } from '../../src/services/intake.js';

function items(count: number): InvalidItem[] {
  return Array.from({ length: count }, (_, index) => ({ index, reason: 'UNKNOWN_TYPE', message: `problem ${index}` }));
}

describe('invalidEventsMessage', () => {
  it('lists five problems without an ellipsis', () => {
    expect(invalidEventsMessage(5, 8, items(5))).toBe(
      '5 of 8 events are invalid; nothing was stored. #0: problem 0; #1: problem 1; #2: problem 2; #3: problem 3; #4: problem 4',
    );
  });

  it('lists the first five of six problems', () => {
    expect(invalidEventsMessage(6, 6, items(6))).toBe(
      '6 of 6 events are invalid; nothing was stored. #0: problem 0; #1: problem 1; #2: problem 2; #3: problem 3; #4: problem 4; ...',
    );
  });

  it('counts events, not problems', () => {
    const twoOnOne: InvalidItem[] = [
      { index: 2, reason: 'UNKNOWN_TYPE', message: 'first' },
      { index: 2, reason: 'INVALID_META', message: 'second' },
    ];
    expect(invalidEventsMessage(1, 3, twoOnOne)).toBe('1 of 3 events are invalid; nothing was stored. #2: first; #2: second');
  });
});
