import { describe, expect, it } from 'vitest';

import { characterCount, exceedsCharacters, isBlank, jsonProblem, quoteText } from '../../src/domain/storable.js';

describe('characterCount', () => {
  it.each([
    ['', 0],
    ['heartbeat', 9],
    ['café', 4],
    ['😀', 1],
    ['a😀b😀', 4],
    ['👩‍💻', 3],
  ])('counts %j as %i', (text, expected) => {
    expect(characterCount(text)).toBe(expected);
  });

  it('counts like PostgreSQL char_length', () => {
    // char_length counts code points, so 65 emoji are 65 characters, not the 130 UTF-16 units of `length`.
    const text = '😀'.repeat(65);

    expect(text.length).toBe(130);
    expect(characterCount(text)).toBe(65);
  });
});

describe('isBlank', () => {
  it.each([
    ['', true],
    [' \t\n', true],
    ['\u200b', true],
    ['\u200f\u200e', true],
    ['\ufeff \u00a0', true],
    ['\u3164', true],
    ['\u115f\u034f', true],
    ['\ufe0f\u180b', true],
    ['\u06dd', false],
    ['a\u200b', false],
    ['😀', false],
    ['heartbeat', false],
  ])('%j is blank: %s', (text, expected) => {
    expect(isBlank(text)).toBe(expected);
  });
});

describe('exceedsCharacters', () => {
  it.each([
    ['abc', 3, false],
    ['abcd', 3, true],
    // Two emoji are four UTF-16 units but two characters.
    ['😀😀', 2, false],
    ['😀😀😀', 2, true],
  ])('%j above %i: %s', (text, max, expected) => {
    expect(exceedsCharacters(text, max)).toBe(expected);
  });
});

describe('quoteText', () => {
  it.each([
    ['', '""'],
    ['abc', '"abc"'],
    ['abcd', '"abcd"'],
    ['abcde', '"abcd…"'],
    ['😀😀😀😀', '"😀😀😀😀"'],
    ['😀😀😀😀😀', '"😀😀😀😀…"'],
    ['a"\u0000bc', '"a\\"\\u0000b…"'],
  ])('quotes %j cut to 4 characters', (text, expected) => {
    expect(quoteText(text, 4)).toBe(expected);
  });

  it('keeps a long text out of the message', () => {
    expect(quoteText('x'.repeat(100_000), 64)).toHaveLength(64 + 3);
  });
});

describe('jsonProblem', () => {
  /** Builds an object nested `levels` deep: `{ a: { a: ... {} } }`. */
  function nested(levels: number): unknown {
    let value: unknown = {};
    for (let level = 1; level < levels; level += 1) {
      value = { a: value };
    }
    return value;
  }

  it('accepts nesting at the maximum', () => {
    expect(jsonProblem(nested(3), 3)).toBeNull();
  });

  it('rejects nesting above the maximum', () => {
    expect(jsonProblem(nested(4), 3)?.message).toBe('nests deeper than the maximum of 3 levels of objects and arrays');
  });

  it('rejects a constructor key holding prototype', () => {
    const value = JSON.parse('{"constructor":{"prototype":{}}}') as unknown;
    expect(jsonProblem(value, 10)?.path).toBe('.constructor');
  });

  it('accepts a constructor key without prototype', () => {
    expect(jsonProblem({ constructor: 'x' }, 10)).toBeNull();
  });

  it('rejects an undefined value', () => {
    expect(jsonProblem({ tags: ['a', undefined] }, 10)?.path).toBe('.tags[1]');
  });
});
