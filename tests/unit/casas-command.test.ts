import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import {
  CONVERT_EXIT,
  fileBaseName,
  parseConvertArgs,
  runConvertCommand,
  UsageError,
} from '../../src/importer/convert-command.js';

class Collector extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

const FILES: Record<string, string> = {
  'data/P002.txt': '2009-03-23 10:16:02.214629\tM045\tON\n2009-03-23 10:16:03\tM045\tOFF\tbad\n',
  'other/P124.txt': '2010-02-19 14:34:11.08892\tP001\t5766\r\n',
  'data/P135.txt': '2010-04-21 12:55:21\tM001\tON\t6-begin\n2010-04-21 12:55:22\tM001\tOFF\n',
  'data/P003.txt': '2009-03-24 10:00:00\tM046\tON\tworse\n',
};

async function run(argv: string[]) {
  const stdout = new Collector();
  const stderr = new Collector();
  const readBytes = async (file: string): Promise<Buffer> => {
    const text = FILES[file];
    if (text === undefined) {
      throw new Error(`ENOENT: no such file or directory, open '${file}'`);
    }
    return Buffer.from(text);
  };
  const code = await runConvertCommand(argv, { stdout, stderr, readBytes });
  const lines = stdout.text.split('\n').filter((line) => line.startsWith('{'));
  const records = lines.map((line) => JSON.parse(line) as Record<string, any>);
  return { code, stdout: stdout.text, stderr: stderr.text, records };
}

describe('parseConvertArgs', () => {
  it('defaults to UTC and no user', () => {
    expect(parseConvertArgs(['a.txt'])).toEqual({ timeZone: 'UTC', user: null, files: ['a.txt'] });
  });

  it.each([
    ['no files', [], /missing FILE/],
    ['an unknown zone', ['--time-zone', 'Mars/Olympus', 'a.txt'], /invalid --time-zone "Mars\/Olympus"/],
    ['--user with two files', ['--user', 'x', 'a.txt', 'b.txt'], /only valid with one file/],
    ['an empty user', ['--user', ' ', 'a.txt'], /user name is empty/],
    ['an unknown option', ['--zone', 'UTC', 'a.txt'], /Unknown option '--zone'/],
    ['two files with one base name', ['x/P002.txt', 'y/P002.csv'], /same base name "P002"/],
    ['a user the server rejects', ['--user', 'bad user', 'a.txt'], /invalid --user: username "bad user" is invalid/],
    ['a file name the server rejects', ['data/bad name.txt'], /"data\/bad name.txt" would go to the user named like the file, but that username "bad name" is invalid/],
  ])('rejects %s', (_name, argv, message) => {
    expect(() => parseConvertArgs(argv)).toThrow(UsageError);
    expect(() => parseConvertArgs(argv)).toThrow(message);
  });
});

describe('parseConvertArgs user names', () => {
  it('accepts a bad file name with --user', () => {
    expect(parseConvertArgs(['--user', 'alice', 'data/bad name.txt'])).toMatchObject({ user: 'alice' });
  });
});

describe('fileBaseName', () => {
  it.each([
    ['data/P002.txt', 'P002'],
    ['P002', 'P002'],
    ['/a/b/P002.tar.gz', 'P002.tar'],
  ])('%s -> %s', (file, base) => {
    expect(fileBaseName(file)).toBe(base);
  });
});

describe('runConvertCommand', () => {
  it('writes pair types, then events', async () => {
    const result = await run(['data/P002.txt', 'other/P124.txt']);
    expect(result.code).toBe(CONVERT_EXIT.ok);
    expect(result.records.map((record) => record.kind)).toEqual(['pairType', 'event', 'event']);
    expect(result.records[0]?.input.name).toBe('sensor');
    expect(result.records[1]?.username).toBe('P002');
    expect(result.records[1]?.input.id).toBe('P002:1');
    expect(result.records[2]?.username).toBe('P124');
    expect(result.records[2]?.input.id).toBe('P124:1');
  });

  it('reports skipped lines with file and line', async () => {
    const result = await run(['data/P002.txt']);
    expect(result.code).toBe(CONVERT_EXIT.ok);
    expect(result.stderr).toContain('data/P002.txt:2: skipped line: invalid annotation "bad"');
    expect(result.stderr).toContain('data/P002.txt: 2 lines, 1 events (sensor_on 1), 1 skipped');
    expect(result.stderr).toContain('skipped 1 line in 1 of 1 file; every other line was converted');
  });

  it('counts skipped lines over several files', async () => {
    const result = await run(['data/P002.txt', 'other/P124.txt', 'data/P003.txt']);
    expect(result.stderr).toContain('skipped 2 lines in 2 of 3 files; every other line was converted');
  });

  it('warns of an activity without end', async () => {
    const result = await run(['data/P135.txt']);
    expect(result.code).toBe(CONVERT_EXIT.ok);
    expect(result.stderr).toContain(
      'data/P135.txt:1: warning: activity "6" begins here and never ends, ' +
        "so its segment will run to the participant's last event (auto-close)",
    );
    expect(result.records.filter((record) => record.kind === 'event')).toHaveLength(3);
  });

  it('prints no total without skipped lines', async () => {
    const result = await run(['other/P124.txt']);
    expect(result.code).toBe(CONVERT_EXIT.ok);
    expect(result.stderr).not.toContain('every other line was converted');
  });

  it('prints the time zone used', async () => {
    const utc = await run(['data/P002.txt']);
    expect(utc.stderr).toContain('local time in UTC');

    const tokyo = await run(['--time-zone', 'Asia/Tokyo', 'data/P002.txt']);
    expect(tokyo.stderr).toContain('local time in Asia/Tokyo');
    expect(tokyo.records[1]?.input.occurredAt).toBe('2009-03-23T01:16:02.214Z');
  });

  it('sends to --user', async () => {
    const result = await run(['--user', 'alice', 'data/P002.txt']);
    expect(result.records[1]?.username).toBe('alice');
    expect(result.records[1]?.input.id).toBe('P002:1');
  });

  it('is identical on a second run', async () => {
    const first = await run(['data/P002.txt', 'other/P124.txt']);
    const second = await run(['data/P002.txt', 'other/P124.txt']);
    expect(second.stdout).toBe(first.stdout);
  });

  it('fails on an unreadable file without output', async () => {
    const result = await run(['data/P002.txt', 'missing.txt']);
    expect(result.code).toBe(CONVERT_EXIT.unreadableFile);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('cannot read missing.txt: ENOENT');
  });

  it('skips lines that are not UTF-8', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'casas-latin1-'));
    try {
      const file = join(folder, 'P003.txt');
      writeFileSync(
        file,
        Buffer.concat([
          Buffer.from('2009-03-23 10:16:01\tM045\tON\n'),
          Buffer.from('2009-03-23 10:16:02\tM045\tOFF\tcaf'),
          Buffer.from([0xe9]),
          Buffer.from('\n2009-03-23 10:16:03\tM046\tON\n'),
        ]),
      );
      const stdout = new Collector();
      const stderr = new Collector();

      const code = await runConvertCommand([file], { stdout, stderr });

      expect(code).toBe(CONVERT_EXIT.ok);
      const ids = stdout.text
        .split('\n')
        .filter((line) => line.includes('"kind":"event"'))
        .map((line) => (JSON.parse(line) as { input: { id: string } }).input.id);
      expect(ids).toEqual(['P003:1', 'P003:3']);
      expect(stderr.text).toContain(`${file}:2: skipped line: the line is not valid UTF-8`);
      expect(stderr.text).toContain(`${file}: 3 lines, 2 events (sensor_on 2), 1 skipped`);
      expect(stderr.text).toContain('skipped 1 line in 1 of 1 file');
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('reports a closed output pipe', async () => {
    const stdout = new Writable({
      write(_chunk, _encoding, callback) {
        callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const stderr = new Collector();
    const readBytes = async (file: string): Promise<Buffer> => Buffer.from(FILES[file] ?? '');

    const code = await runConvertCommand(['data/P002.txt'], { stdout, stderr, readBytes });

    expect(code).toBe(CONVERT_EXIT.unwritableOutput);
    expect(stderr.text).toContain('cannot write the output: write EPIPE; the output is incomplete');
  });

  it('escapes control characters in reports', async () => {
    const stdout = new Collector();
    const stderr = new Collector();
    const readBytes = async (): Promise<Buffer> => Buffer.from('2009\u001b[2J-03-23 10:16:02\tM045\tON\n');

    const code = await runConvertCommand(['data/P002.txt'], { stdout, stderr, readBytes });

    expect(code).toBe(CONVERT_EXIT.ok);
    expect(stderr.text).toContain('data/P002.txt:1: skipped line: invalid date "2009\\u001b[2J-03-23"');
    expect(stderr.text).not.toContain('\u001b');
  });

  it('fails on a UTF-16 file', async () => {
    const stdout = new Collector();
    const stderr = new Collector();
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(FILES['data/P002.txt'] ?? '', 'utf16le')]);
    const readBytes = async (): Promise<Buffer> => utf16;

    const code = await runConvertCommand(['data/P002.txt'], { stdout, stderr, readBytes });

    expect(code).toBe(CONVERT_EXIT.unreadableFile);
    expect(stderr.text).toContain(
      'convert:casas: cannot read data/P002.txt: the file is UTF-16LE text (it starts with a UTF-16 byte order mark)',
    );
    expect(stdout.text).toBe('');
  });

  it('fails on a bad option with usage', async () => {
    const result = await run(['--time-zone', 'Nowhere', 'data/P002.txt']);
    expect(result.code).toBe(CONVERT_EXIT.usage);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Usage: npm run -s convert:casas');
  });

  it.each([['--help'], ['-h']])('prints help for %s', async (option) => {
    const result = await run([option]);
    expect(result.code).toBe(CONVERT_EXIT.ok);
    expect(result.stdout).toContain('--time-zone ZONE');
    expect(result.stdout).toContain('Usage: npm run -s convert:casas --');
  });
});
