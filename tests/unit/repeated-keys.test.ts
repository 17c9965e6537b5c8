import { describe, expect, it } from 'vitest';

import { repeatedKeyPath } from '../../src/http/repeated-keys.js';

describe('repeatedKeyPath', () => {
  it.each([
    ['top-level key', '{"a":1,"a":2}', 'body.a'],
    ['key in a nested object', '{"a":{"b":1},"b":2,"c":{"d":[1,{"e":1,"e":2}]}}', 'body.c.d[1].e'],
    ['key after a string with a quote', '{"a":"\\"","a":1}', 'body.a'],
    ['key after a string that ends in a backslash', '{"s":"\\\\","s":1}', 'body.s'],
    ['key written with an escape', '{"a\\u0062":1,"ab":2}', 'body.ab'],
    ['key after brackets in strings', '{"x":[[1,2],{"y":"}","y":"]"}]}', 'body.x[1].y'],
    ['key inside a top-level array', '[{"a":1},{"b":1,"b":1}]', 'body[1].b'],
    ['long key', `{"${'k'.repeat(100)}":1,"${'k'.repeat(100)}":2}`, `body.${'k'.repeat(40)}`],
  ])('finds a repeated %s', (_name, text, path) => {
    JSON.parse(text);
    expect(repeatedKeyPath(text)).toBe(path);
  });

  it.each([
    ['one key', '{"a":1}'],
    ['the same key in sibling objects', '[{"a":1},{"a":1}]'],
    ['the same key at two levels', '{"a":{"a":{"a":1}}}'],
    ['a comma and quote inside a string', '{"k":"a,\\"b","t":1}'],
    ['keys that differ only in case', '{"a":1,"A":2}'],
    ['a scalar body', '"text"'],
    ['an empty object', '{}'],
  ])('accepts %s', (_name, text) => {
    JSON.parse(text);
    expect(repeatedKeyPath(text)).toBeNull();
  });

  it('shortens the path of a deeply nested key', () => {
    const depth = 30_000;
    const text = `${'['.repeat(depth)}{"a":1,"a":2}${']'.repeat(depth)}`;
    JSON.parse(text);
    const path = repeatedKeyPath(text);
    expect(path, 'path').toBe(`body${'[0]'.repeat(8)}…${'[0]'.repeat(7)}.a`);
  });

  it('keeps a path of 16 segments whole', () => {
    const text = `${'['.repeat(15)}{"a":1,"a":2}${']'.repeat(15)}`;
    expect(repeatedKeyPath(text)).toBe(`body${'[0]'.repeat(15)}.a`);
  });

  it('cuts a long key between characters', () => {
    const key = `${'k'.repeat(39)}${'😀'.repeat(5)}`;
    const text = `{"${key}":1,"${key}":2}`;

    expect(repeatedKeyPath(text)).toBe(`body.${'k'.repeat(39)}😀`);
  });
});
