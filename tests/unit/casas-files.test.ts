import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { convertCasasText, formatCasasNdjson } from '../../src/importer/casas.js';
import { casasDataDir } from '../support/casas-data.js';

const DATA_DIR = casasDataDir();
const dataPresent = existsSync(DATA_DIR);
if (!dataPresent) {
  console.warn(`casas-files: skipped, because the CASAS data folder ${DATA_DIR} is absent`);
}
const files = dataPresent ? readdirSync(DATA_DIR).filter((name) => name.endsWith('.txt')).sort() : [];

/**
 * Lines of the recordings whose value is cut off (`OF` where `OFF` belongs),
 * which the converter reports and skips.
 */
const CUT_OFF_LINES: Readonly<Record<string, readonly number[]>> = {
  'P170.txt': [930],
};

/**
 * Counts event kinds with plain regular expressions over the raw lines,
 * independent of the parser, leaving out the lines numbered in `skip`.
 */
function countRawLines(text: string, skip: readonly number[]): Record<string, number> {
  const counts: Record<string, number> = {
    sensor_on: 0,
    sensor_off: 0,
    instruction_started: 0,
    instruction_stopped: 0,
    sensor_reading: 0,
    activity_begin: 0,
    activity_end: 0,
  };
  const increment = (key: string): void => {
    counts[key] = (counts[key] ?? 0) + 1;
  };

  for (const [index, line] of text.split('\n').entries()) {
    if (line.trim() === '' || skip.includes(index + 1)) {
      continue;
    }
    if (/\s(ON|OPEN)(\s|$)/.test(line)) {
      increment('sensor_on');
    } else if (/\s(OFF|CLOSE)(\s|$)/.test(line)) {
      increment('sensor_off');
    } else if (/\sSTART_INSTRUCT(\s|$)/.test(line)) {
      increment('instruction_started');
    } else if (/\sSTOP_INSTRUCT(\s|$)/.test(line)) {
      increment('instruction_stopped');
    } else {
      increment('sensor_reading');
    }
    if (/-begin\s*$/.test(line)) {
      increment('activity_begin');
    }
    if (/-end\s*$/.test(line)) {
      increment('activity_end');
    }
  }
  return counts;
}

function convertFresh(name: string) {
  const text = readFileSync(join(DATA_DIR, name), 'utf8');
  const base = name.replace(/\.txt$/, '');
  const options = { fileBase: base, username: base, timeZone: 'UTC' };
  return { text, conversion: convertCasasText(text, options) };
}

const converted = new Map<string, ReturnType<typeof convertFresh>>();

/** Converts a file once and shares the result between the checks that only read it. */
function convert(name: string): ReturnType<typeof convertFresh> {
  let result = converted.get(name);
  if (result === undefined) {
    result = convertFresh(name);
    converted.set(name, result);
  }
  return result;
}

describe.skipIf(!dataPresent)('CASAS Kyoto files', () => {
  it('finds the 24 sessions', () => {
    expect(files).toHaveLength(24);
  });

  it.each(files)('%s: counts match raw lines', (name) => {
    const { text, conversion } = convert(name);
    const cutOff = CUT_OFF_LINES[name] ?? [];
    const expected = countRawLines(text, cutOff);

    expect(conversion.issues.map((issue) => issue.line)).toEqual(cutOff);
    for (const issue of conversion.issues) {
      expect(issue.reason).toMatch(/^truncated value /);
    }
    for (const [type, count] of Object.entries(expected)) {
      expect(conversion.eventCountByType.get(type) ?? 0, type).toBe(count);
    }
    const total = Object.values(expected).reduce((sum, count) => sum + count, 0);
    expect(conversion.records).toHaveLength(total);
  });

  it.each(files)('%s: ids unique and in file order', (name) => {
    const { conversion } = convert(name);
    const ids = conversion.records.map((record) => record.input.id ?? '');
    expect(new Set(ids).size).toBe(ids.length);

    const lineNumbers = ids.map((id) => Number(id.split(':')[1]));
    for (let index = 1; index < lineNumbers.length; index += 1) {
      expect(lineNumbers[index]).toBeGreaterThanOrEqual(lineNumbers[index - 1] ?? 0);
    }
  });

  it.each(files)('%s: instants are UTC', (name) => {
    const { conversion } = convert(name);
    for (const record of conversion.records) {
      const occurredAt = record.input.occurredAt ?? '';
      expect(occurredAt).toMatch(/^20(09|10|11)-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
  });

  it('converting twice is identical', () => {
    const first = formatCasasNdjson(files.map((name) => convert(name).conversion));
    const second = formatCasasNdjson(files.map((name) => convertFresh(name).conversion));
    expect(second).toEqual(first);
    expect(first.slice(0, 3).map((line) => (JSON.parse(line) as { kind: string }).kind)).toEqual([
      'pairType',
      'pairType',
      'pairType',
    ]);
  });

  it('keeps out-of-order lines in file order', () => {
    const outOfOrder = files.filter((name) => {
      const times = convert(name).conversion.records.map((record) => record.input.occurredAt ?? '');
      return times.some((time, index) => index > 0 && time < (times[index - 1] ?? ''));
    });
    expect(outOfOrder.length).toBeGreaterThan(0);
  });
});
