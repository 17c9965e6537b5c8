import { describe, expect, it } from 'vitest';

import { characterCount, isBlank } from '../../src/domain/storable.js';

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
