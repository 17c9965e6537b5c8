/**
 * Messages of `parseRestEvent` for a POST /api/events item whose fields have
 * the wrong JSON type: each names the field, the type expected, and what the
 * client sent.
 */
import { describe, expect, it } from 'vitest';

import { parseRestEvent } from '../../src/http/rest.js';

describe('parseRestEvent wrong types', () => {
  it.each([
    { name: 'missing type', event: {}, problem: 'type is missing: send the event type as a string, such as "session_started"' },
    { name: 'numeric type', event: { type: 5 }, problem: 'type must be a string, got the number 5' },
    { name: 'null type', event: { type: null }, problem: 'type must be a string, got null' },
    { name: 'string is_pair', event: { type: 'x', is_pair: 'yes' }, problem: 'is_pair must be true or false, got the string "yes"' },
    { name: 'list meta', event: { type: 'x', meta: [1] }, problem: 'meta must be a JSON object, got a list' },
    { name: 'string meta', event: { type: 'x', meta: 'tag' }, problem: 'meta must be a JSON object, got the string "tag"' },
    { name: 'numeric id', event: { type: 'x', id: 42 }, problem: 'id must be a string, got the number 42' },
    { name: 'boolean pair_key', event: { type: 'x', pair_key: false }, problem: 'pair_key must be a string, got the boolean false' },
    { name: 'object user_id', event: { type: 'x', user_id: { id: 'u' } }, problem: 'user_id must be a string, got an object' },
  ])('$name', ({ event, problem }) => {
    const parsed = parseRestEvent(event);

    expect(parsed.input, 'input').toBeNull();
    expect(parsed.problems, 'problems').toEqual([problem]);
  });

  it.each([
    { name: 'list', item: [{ type: 'x' }], problem: 'the event must be a JSON object, got a list' },
    { name: 'number', item: 5, problem: 'the event must be a JSON object, got the number 5' },
    { name: 'null', item: null, problem: 'the event must be a JSON object, got null' },
  ])('item that is a $name', ({ item, problem }) => {
    expect(parseRestEvent(item).problems).toEqual([problem]);
  });

  it('cuts a long string value', () => {
    const parsed = parseRestEvent({ type: 'x', is_pair: 'y'.repeat(10_000) });

    expect(parsed.problems).toEqual([`is_pair must be true or false, got the string "${'y'.repeat(64)}…"`]);
  });
});
