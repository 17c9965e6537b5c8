/**
 * The raw CASAS model that the end-to-end test trusts as its reference, on
 * small hand-written files.
 */
import { describe, expect, it } from 'vitest';

import {
  intersectIntervals,
  modelSegments,
  parseRawCasas,
  parseStamp,
  totalLength,
  unionIntervals,
} from './casas-model.js';

const TIMEOUT_MS = 1800 * 1000;
const BASE = Date.UTC(2009, 2, 23, 10, 0, 0);

/** Formats a CASAS line at `seconds` after 10:00:00 UTC on 2009-03-23. */
function line(seconds: number, sensor: string, value: string, annotation = ''): string {
  const stamp = new Date(BASE + seconds * 1000).toISOString().replace('T', ' ').replace('Z', '');
  return [stamp, sensor, value, annotation].join('\t').trimEnd();
}

function segmentsOf(lines: string[]) {
  return modelSegments(parseRawCasas(lines.join('\n')), TIMEOUT_MS).map((segment) => ({
    ...segment,
    start: (segment.start - BASE) / 1000,
    end: (segment.end - BASE) / 1000,
  }));
}

describe('parseStamp', () => {
  it.each([
    ['2009-03-23 10:16:49.428669', Date.UTC(2009, 2, 23, 10, 16, 49, 428)],
    ['2009-03-23\t10:16:49.4', Date.UTC(2009, 2, 23, 10, 16, 49, 400)],
    ['2009-03-23 10:16:49', Date.UTC(2009, 2, 23, 10, 16, 49, 0)],
  ])('reads %j as UTC', (text, expected) => {
    expect(parseStamp(text)).toBe(expected);
  });

  it('rejects a time stamp with a zone', () => {
    expect(() => parseStamp('2009-03-23T10:16:49Z')).toThrow(/invalid CASAS time stamp/);
  });
});

describe('parseRawCasas', () => {
  it('maps values and annotations', () => {
    const events = parseRawCasas(
      [
        line(0, 'M051', 'ON', '1-begin'),
        line(1, 'D01', 'OPEN'),
        line(2, 'E002', 'START_INSTRUCT'),
        line(3, 'P001', '5766'),
        line(4, 'D01', 'CLOSE'),
      ].join('\r\n') + '\r\n\r\n',
    );
    expect(events.map(({ line: number, pairType, key, role }) => [number, pairType, key, role])).toEqual([
      [1, 'sensor', 'M051', 'begin'],
      [1, 'activity', '1', 'begin'],
      [2, 'sensor', 'D01', 'begin'],
      [3, 'instruction', 'E002', 'begin'],
      [4, null, 'P001', 'point'],
      [5, 'sensor', 'D01', 'end'],
    ]);
  });

  it('skips a cut-off value', () => {
    const cutOff: number[] = [];
    const events = parseRawCasas('2009-03-23 10:00:00 M001 ON\n2009-03-23 10:00:01 M001 OF\n', cutOff);
    expect(events.map((event) => event.line)).toEqual([1]);
    expect(cutOff).toEqual([2]);
  });

  it('rejects a short line', () => {
    expect(() => parseRawCasas('2009-03-23 10:00:00 M001')).toThrow(/line 1: expected 4 or 5 fields/);
  });
});

describe('modelSegments', () => {
  it('pairs begin with end', () => {
    expect(segmentsOf([line(0, 'M001', 'ON'), line(5, 'M001', 'OFF')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 5, endReason: 'CLIENT' },
    ]);
  });

  it('ends the open pair at a second begin', () => {
    expect(segmentsOf([line(0, 'M001', 'ON'), line(5, 'M001', 'ON'), line(9, 'M001', 'OFF')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 5, endReason: 'DUPLICATE_START' },
      { pairType: 'sensor', key: 'M001', start: 5, end: 9, endReason: 'CLIENT' },
    ]);
  });

  it('ignores an end with nothing open', () => {
    expect(segmentsOf([line(0, 'M001', 'OFF'), line(2, 'M001', 'ON'), line(4, 'M001', 'OFF'), line(6, 'M001', 'OFF')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 2, end: 4, endReason: 'CLIENT' },
    ]);
  });

  it('applies out-of-order lines in time order', () => {
    expect(segmentsOf([line(0, 'M001', 'ON'), line(9, 'M001', 'OFF'), line(5, 'M001', 'ON')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 5, endReason: 'DUPLICATE_START' },
      { pairType: 'sensor', key: 'M001', start: 5, end: 9, endReason: 'CLIENT' },
    ]);
  });

  it('closes at the last event of the file', () => {
    expect(segmentsOf([line(0, 'M051', 'ON', '1-begin'), line(7, 'P001', '12')])).toEqual([
      { pairType: 'sensor', key: 'M051', start: 0, end: 7, endReason: 'AUTO_CLOSE' },
      { pairType: 'activity', key: '1', start: 0, end: 7, endReason: 'AUTO_CLOSE' },
    ]);
  });

  it('closes before 30 minutes of silence', () => {
    expect(segmentsOf([line(0, 'M001', 'ON'), line(10, 'P001', '1'), line(1811, 'M001', 'OFF')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 10, endReason: 'AUTO_CLOSE' },
    ]);
  });

  it('keeps a pair open across a pause at the timeout', () => {
    expect(segmentsOf([line(0, 'M001', 'ON'), line(1800, 'M001', 'OFF')])).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 1800, endReason: 'CLIENT' },
    ]);
  });

  it('keeps keys apart', () => {
    const segments = segmentsOf([line(0, 'M001', 'ON'), line(1, 'M002', 'ON'), line(2, 'M001', 'OFF'), line(3, 'M002', 'OFF')]);
    expect(segments).toEqual([
      { pairType: 'sensor', key: 'M001', start: 0, end: 2, endReason: 'CLIENT' },
      { pairType: 'sensor', key: 'M002', start: 1, end: 3, endReason: 'CLIENT' },
    ]);
  });
});

describe('unionIntervals', () => {
  it('merges overlapping and touching pieces', () => {
    const union = unionIntervals([
      { start: 5, end: 8 },
      { start: 0, end: 2 },
      { start: 2, end: 3 },
      { start: 6, end: 7 },
      { start: 9, end: 9 },
    ]);
    expect(union).toEqual([
      { start: 0, end: 3 },
      { start: 5, end: 8 },
    ]);
    expect(totalLength(union)).toBe(6);
  });
});

describe('intersectIntervals', () => {
  it('keeps only shared time', () => {
    const left = [
      { start: 0, end: 4 },
      { start: 6, end: 10 },
    ];
    const right = [
      { start: 2, end: 7 },
      { start: 8, end: 9 },
      { start: 10, end: 12 },
    ];
    expect(intersectIntervals(left, right)).toEqual([
      { start: 2, end: 4 },
      { start: 6, end: 7 },
      { start: 8, end: 9 },
    ]);
  });
});
