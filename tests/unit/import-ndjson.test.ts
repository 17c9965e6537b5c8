import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  parseNdjsonLine,
  readNdjson,
  readNdjsonFile,
  splitByteLines,
  type NdjsonLine,
} from '../../src/importer/ndjson.js';
import { checkImportRecord, isRfc3339WithOffset } from '../../src/importer/records.js';

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) {
    items.push(item);
  }
  return items;
}

/** Encodes text chunks as UTF-8 bytes, as a file stream delivers them. */
const bytes = (chunks: string[]): Buffer[] => chunks.map((chunk) => Buffer.from(chunk));

describe('splitByteLines', () => {
  it('numbers LF and CRLF lines', async () => {
    const lines = await collect(splitByteLines(bytes(['a\r\nb\nc\r\n'])));
    expect(lines).toEqual([
      { line: 1, text: 'a' },
      { line: 2, text: 'b' },
      { line: 3, text: 'c' },
    ]);
  });

  it('joins lines split across chunks', async () => {
    const lines = await collect(splitByteLines(bytes(['{"a"', ':1}\r', '\n{"b":2}\n', '', 'x'])));
    expect(lines).toEqual([
      { line: 1, text: '{"a":1}' },
      { line: 2, text: '{"b":2}' },
      { line: 3, text: 'x' },
    ]);
  });

  it('keeps blank lines numbered', async () => {
    const lines = await collect(splitByteLines(bytes(['a\n\n\r\nb'])));
    expect(lines.map((line) => line.line)).toEqual([1, 2, 3, 4]);
    expect(lines.map((line) => line.text)).toEqual(['a', '', '', 'b']);
  });

  it('drops a byte order mark', async () => {
    const lines = await collect(splitByteLines(bytes(['\uFEFF{"x":1}\n'])));
    expect(lines).toEqual([{ line: 1, text: '{"x":1}' }]);
  });

  it('marks a line over the maximum', async () => {
    const lines = await collect(splitByteLines(bytes(['ab', 'cdef\n', 'gh\nijklmn'])));
    expect(lines).toEqual([
      { line: 1, text: 'abcdef' },
      { line: 2, text: 'gh' },
      { line: 3, text: 'ijklmn' },
    ]);

    const limited = await collect(splitByteLines(bytes(['ab', 'cdef\n', 'gh\nijklmn']), 5));
    expect(limited).toEqual([
      { line: 1, text: null, byteLength: 6 },
      { line: 2, text: 'gh' },
      { line: 3, text: null, byteLength: 6 },
    ]);
  });

  it('yields nothing for empty input', async () => {
    expect(await collect(splitByteLines([]))).toEqual([]);
    expect(await collect(splitByteLines(bytes([''])))).toEqual([]);
  });
});

describe('parseNdjsonLine', () => {
  it('skips a blank line', () => {
    expect(parseNdjsonLine('  \t', 4)).toBeNull();
  });

  it('reports invalid JSON', () => {
    const parsed = parseNdjsonLine('{"type":', 7);
    expect(parsed?.kind).toBe('invalid');
    expect(parsed?.line).toBe(7);
    expect(parsed?.kind === 'invalid' ? parsed.reason : '').toMatch(/^invalid JSON: /);
  });

  it.each([
    ['top-level key', '{"id":"a-1","type":"heartbeat","type":"session_started"}', 'line.type'],
    [
      'key of an event input',
      '{"kind":"event","username":"P002","input":{"type":"a","meta":{"k":1,"k":2}}}',
      'line.input.meta.k',
    ],
  ])('reports a repeated %s', (_name, text, path) => {
    const parsed = parseNdjsonLine(text, 3);
    expect(parsed?.kind).toBe('invalid');
    expect(parsed?.line).toBe(3);
    expect(parsed?.kind === 'invalid' ? parsed.reason : '').toBe(
      `the key ${path} appears more than once in one object, which the server rejects. Write each key once.`,
    );
  });
});

describe('readNdjson', () => {
  it('reports bad lines by number', async () => {
    const text = [
      '{"kind":"pairType","input":{"name":"a","startType":"a_on","endType":"a_off"}}',
      '',
      'not json',
      '{"type":"ping"}',
      '[1,2]',
      '{"kind":"event","username":"P002","input":{"id":"P002:1","type":"x"}}',
    ].join('\r\n');
    const lines = await collect(readNdjson(bytes([text])));

    expect(lines.map((line) => [line.line, line.kind])).toEqual([
      [1, 'record'],
      [3, 'invalid'],
      [4, 'record'],
      [5, 'invalid'],
      [6, 'record'],
    ]);
    const invalid = lines.filter(
      (line): line is Extract<NdjsonLine, { kind: 'invalid' }> => line.kind === 'invalid',
    );
    expect(invalid[0]?.reason).toMatch(/invalid JSON/);
    expect(invalid[1]?.reason).toBe('expected a JSON object, found an array');
  });
});

describe('readNdjsonFile', () => {
  const folder = mkdtempSync(join(tmpdir(), 'import-ndjson-'));
  afterAll(() => rmSync(folder, { recursive: true, force: true }));

  it('reads a file', async () => {
    const file = join(folder, 'events.ndjson');
    writeFileSync(file, '{"type":"a"}\r\n\r\n{"type":"b"}');
    const lines = await collect(readNdjsonFile(file));
    expect(lines.map((line) => line.line)).toEqual([1, 3]);
  });

  it('marks a line that is not UTF-8', async () => {
    const file = join(folder, 'latin1.ndjson');
    // Line 2 has "café" with é as the Latin-1 byte 0xE9.
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('\uFEFF{"type":"a"}\n{"type":"caf'), Buffer.from([0xe9]), Buffer.from('"}\r\n{"type":"é"}\n')]),
    );

    const lines = await collect(readNdjsonFile(file));

    expect(lines).toEqual([
      { line: 1, kind: 'record', record: expect.objectContaining({ input: { type: 'a' } }) },
      { line: 2, kind: 'invalid', reason: 'not valid UTF-8: save the file as UTF-8' },
      { line: 3, kind: 'record', record: expect.objectContaining({ input: { type: 'é' } }) },
    ]);
  });

  it('reports a line over the maximum', async () => {
    const long = `{"type":"${'a'.repeat(100)}"}`;
    const lines = await collect(readNdjson(bytes([`${long}\n{"type":"b"}\n${long}`]), 50));

    expect(lines).toEqual([
      { line: 1, kind: 'invalid', reason: 'line is 111 bytes long, above the maximum of 50 bytes for one record' },
      { line: 2, kind: 'record', record: expect.objectContaining({ input: { type: 'b' } }) },
      { line: 3, kind: 'invalid', reason: 'line is 111 bytes long, above the maximum of 50 bytes for one record' },
    ]);
  });

  it('joins a character split across chunks', async () => {
    const bytes = Buffer.from('{"type":"é"}\n');
    const split = bytes.indexOf(0xc3) + 1;

    const lines = await collect(splitByteLines((async function* () {
      yield bytes.subarray(0, split);
      yield bytes.subarray(split);
    })()));

    expect(lines).toEqual([{ line: 1, text: '{"type":"é"}' }]);
  });

  it('rejects a missing file', async () => {
    await expect(collect(readNdjsonFile(join(folder, 'missing.ndjson')))).rejects.toThrow(/ENOENT/);
  });

  it.each([
    ['UTF-16LE', 'utf16le', [0xff, 0xfe]],
    ['UTF-16BE', 'utf16le', [0xfe, 0xff]],
  ] as const)('rejects a %s file', async (encoding, nodeEncoding, mark) => {
    const file = join(folder, `${encoding}.ndjson`);
    const text = Buffer.from('{"type":"a"}\r\n{"type":"b"}\r\n', nodeEncoding);
    writeFileSync(file, Buffer.concat([Buffer.from(mark), encoding === 'UTF-16BE' ? text.swap16() : text]));

    await expect(collect(readNdjsonFile(file))).rejects.toThrow(
      `the file is ${encoding} text (it starts with a UTF-16 byte order mark), but it must be UTF-8. ` +
        `Convert it, for example with: iconv -f ${encoding} -t UTF-8`,
    );
  });

  it('rejects a UTF-16 mark split across chunks', async () => {
    const chunks = [Buffer.from([0xff]), Buffer.from([0xfe]), Buffer.from('x\n', 'utf16le')];
    await expect(collect(splitByteLines(chunks, 1))).rejects.toThrow(/UTF-16LE/);
  });
});

describe('checkImportRecord', () => {
  it('reads a bare EventInput as the caller', () => {
    const input = { type: 'ping', occurredAt: '2009-03-23T10:16:02Z' };
    expect(checkImportRecord(input)).toEqual({
      ok: true,
      value: { kind: 'event', username: null, input },
    });
  });

  it('reads an event record', () => {
    const input = {
      id: 'P002:1',
      type: 'sensor_on',
      isPair: true,
      pairType: 'sensor',
      pairKey: 'M045',
      occurredAt: '2009-03-23T10:16:02.214+09:00',
      meta: { sensor: 'M045' },
    };
    expect(checkImportRecord({ kind: 'event', username: 'P002', input })).toEqual({
      ok: true,
      value: { kind: 'event', username: 'P002', input },
    });
  });

  it('reads a pair type record', () => {
    const input = {
      name: 'sensor',
      startType: 'sensor_on',
      endType: 'sensor_off',
      parent: null,
      autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
    };
    expect(checkImportRecord({ kind: 'pairType', input })).toEqual({
      ok: true,
      value: { kind: 'pairType', input },
    });
  });

  it('accepts null optional fields', () => {
    const checked = checkImportRecord({ type: 'x', id: null, meta: null, isPair: null, userId: null });
    expect(checked.ok).toBe(true);
  });

  const pairType = (autoClose: unknown) => ({
    kind: 'pairType',
    input: { name: 'a', startType: 'b', endType: 'c', autoClose },
  });
  const event = (fields: Record<string, unknown>) => ({ kind: 'event', ...fields });

  it.each([
    ['a string', 'hello', /expected a JSON object, found a string/],
    ['null', null, /found null/],
    ['no type', { id: 'a' }, /EventInput.type is missing/],
    ['a numeric type', { type: 3 }, /EventInput.type must be a string, found a number/],
    ['an unknown field', { type: 'x', occured_at: 'x' }, /unknown field "occured_at" in EventInput/],
    ['an array meta', { type: 'x', meta: [] }, /EventInput.meta must be a JSON object, found an array/],
    ['a string isPair', { type: 'x', isPair: 'yes' }, /isPair must be a boolean/],
    [
      'a zoneless time',
      { type: 'x', occurredAt: '2009-03-23 10:16:02' },
      /not an RFC 3339 instant with an offset/,
    ],
    [
      'a space before the time',
      { type: 'x', occurredAt: '2009-03-23 10:16:02Z' },
      /not an RFC 3339 instant with an offset/,
    ],
    [
      'an impossible date',
      { type: 'x', occurredAt: '2009-02-30T10:16:02Z' },
      /not an RFC 3339 instant/,
    ],
    [
      'a leap second',
      { type: 'x', occurredAt: '2016-12-31T23:59:60Z' },
      /EventInput\.occurredAt "2016-12-31T23:59:60Z" is a leap second, which JavaScript dates cannot hold/,
    ],
    [
      'second 60 in month 13',
      { type: 'x', occurredAt: '2016-13-31T23:59:60Z' },
      /"2016-13-31T23:59:60Z" is not an RFC 3339 instant/,
    ],
    [
      'second 60 on 30 February',
      { type: 'x', occurredAt: '2016-02-30T23:59:60Z' },
      /"2016-02-30T23:59:60Z" is not an RFC 3339 instant/,
    ],
    [
      'second 60 before year 0100',
      { type: 'x', occurredAt: '0099-12-31T23:59:60Z' },
      /"0099-12-31T23:59:60Z" is not an RFC 3339 instant/,
    ],
    [
      'a year before 0100',
      { type: 'x', occurredAt: '0099-12-31T23:59:59Z' },
      /"0099-12-31T23:59:59Z" is outside the supported range from 0100-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z/,
    ],
    [
      'an offset past year 9999',
      { type: 'x', occurredAt: '9999-12-31T23:30:00-01:00' },
      /is outside the supported range/,
    ],
    ['an unknown kind', { kind: 'user', input: {} }, /unknown kind "user"/],
    ['an event without input', event({ username: 'a' }), /EventInput must be a JSON object, found nothing/],
    ['an empty username', event({ username: '', input: { type: 'x' } }), /username is empty/],
    ['a numeric username', event({ username: 7, input: { type: 'x' } }), /username must be a string/],
    [
      'username and userId',
      event({ username: 'a', input: { type: 'x', userId: '1' } }),
      /both username and input.userId/,
    ],
    [
      'an extra event field',
      event({ user: 'a', input: { type: 'x' } }),
      /unknown field "user" in an event record/,
    ],
    [
      'a pair type without end',
      { kind: 'pairType', input: { name: 'a', startType: 'b' } },
      /DefinePairTypeInput.endType is missing/,
    ],
    [
      'a fractional timeout',
      pairType({ timeoutSeconds: 1.5, endAt: 'DEADLINE' }),
      /timeoutSeconds must be a 32-bit integer, found 1.5/,
    ],
    [
      'an unknown endAt',
      pairType({ timeoutSeconds: 5, endAt: 'NOW' }),
      /endAt must be one of LAST_ACTIVITY, DEADLINE, found "NOW"/,
    ],
  ])('rejects %s', (_name, value, reason) => {
    const checked = checkImportRecord(value);
    expect(checked.ok).toBe(false);
    expect(checked.ok ? '' : checked.reason).toMatch(reason);
  });

  it.each(['0100-01-01T00:00:00Z', '9999-12-31T23:59:59.9999Z', '0100-01-01t01:00:00+01:00'])('accepts the range end %s', (occurredAt) => {
    expect(checkImportRecord({ type: 'x', occurredAt }).ok).toBe(true);
  });
});

describe('isRfc3339WithOffset', () => {
  it.each([
    ['2009-03-23T10:16:02Z', true],
    ['2009-03-23T10:16:02.214629Z', true],
    ['2009-03-23t10:16:02z', true],
    ['2009-03-23T10:16:02+09:00', true],
    ['2009-03-23 10:16:02-05:30', false],
    ['2009-03-23T10:16:02', false],
    ['2009-03-23', false],
    ['2009-03-23T10:16:02+0900', false],
    ['2009-13-23T10:16:02Z', false],
    ['2009-02-29T10:16:02Z', false],
    ['2008-02-29T10:16:02Z', true],
    ['2009-03-23T24:00:00Z', false],
    ['2009-03-23T10:60:00Z', false],
    ['2009-03-23T10:16:02+24:00', false],
  ])('%s -> %s', (text, valid) => {
    expect(isRfc3339WithOffset(text)).toBe(valid);
  });
});
