import { describe, expect, it } from 'vitest';

import {
  casasTimeToUtc,
  convertCasasText,
  formatCasasNdjson,
  parseCasasLine,
  parseReadingValue,
  splitLines,
  type CasasEvent,
} from '../../src/importer/casas.js';

function eventsOf(line: string, timeZone = 'UTC'): CasasEvent[] {
  const result = parseCasasLine(line, timeZone);
  if (result.kind !== 'events') {
    throw new Error(`expected events for ${JSON.stringify(line)}, got ${JSON.stringify(result)}`);
  }
  return result.events;
}

describe('parseCasasLine', () => {
  it.each([
    ['tabs', '2009-03-23 10:16:02.214629\tM045\tON', '2009-03-23T10:16:02.214Z'],
    ['tab between date and time', '2011-04-08\t14:02:02.261128\tM013\tON', '2011-04-08T14:02:02.261Z'],
    ['spaces only', '2009-03-23 10:16:02.214629 M045 ON', '2009-03-23T10:16:02.214Z'],
    ['mixed runs of blanks', '2009-03-23  10:16:02.5 \t M045\t\tON', '2009-03-23T10:16:02.500Z'],
    ['trailing tabs', '2010-04-22 14:04:38.78833\tM008\tON\t\t', '2010-04-22T14:04:38.788Z'],
    ['trailing CR', '2009-03-23 10:16:02.214629\tM045\tON\r', '2009-03-23T10:16:02.214Z'],
    ['five fraction digits', '2009-03-23 10:16:03.17084\tM045\tON', '2009-03-23T10:16:03.170Z'],
    ['two fraction digits', '2009-03-23 10:16:03.17\tM045\tON', '2009-03-23T10:16:03.170Z'],
    ['one fraction digit', '2009-03-23 10:16:03.1\tM045\tON', '2009-03-23T10:16:03.100Z'],
    ['no fraction', '2009-03-23 10:16:03\tM045\tON', '2009-03-23T10:16:03.000Z'],
  ])('reads %s', (_name, line, occurredAt) => {
    const events = eventsOf(line);
    expect(events).toHaveLength(1);
    expect(events[0]?.occurredAt).toBe(occurredAt);
    expect(events[0]?.type).toBe('sensor_on');
  });

  it.each([
    ['ON', 'M045', 'sensor_on', 'sensor'],
    ['OFF', 'M045', 'sensor_off', 'sensor'],
    ['OPEN', 'D007', 'sensor_on', 'sensor'],
    ['CLOSE', 'D007', 'sensor_off', 'sensor'],
    ['START_INSTRUCT', 'E002', 'instruction_started', 'instruction'],
    ['STOP_INSTRUCT', 'E002', 'instruction_stopped', 'instruction'],
  ])('maps %s to a paired event', (value, sensor, type, pairType) => {
    const [event] = eventsOf(`2009-03-23 10:16:02.2\t${sensor}\t${value}`);
    expect(event?.type).toBe(type);
    expect(event?.pairType).toBe(pairType);
    expect(event?.pairKey).toBe(sensor);
    expect(event?.meta).toEqual({ sensor, value });
    expect(event?.idSuffix).toBe('');
  });

  it.each([
    ['power', 'P001', '5766', 5766],
    ['temperature', 'T002', '22.5', 22.5],
    ['analog', 'A002', '0.25723', 0.25723],
    ['item', 'I006', 'ABSENT', 'ABSENT'],
    ['shake sensor', 'SS002', 'STILL', 'STILL'],
    ['system message', 'system', 'ERROR:', 'ERROR:'],
    ['lower-case on', 'M045', 'on', 'on'],
    ['audio cue', 'LivingRoom', '<do>idle</do>', '<do>idle</do>'],
  ])('maps a %s value to a reading', (_name, sensor, raw, value) => {
    const events = eventsOf(`2009-03-23 10:16:18.849699\t${sensor}\t${raw}`);
    expect(events).toHaveLength(1);
    expect(events[0]?.type).toBe('sensor_reading');
    expect(events[0]?.pairType).toBeNull();
    expect(events[0]?.pairKey).toBeNull();
    expect(events[0]?.meta).toEqual({ sensor, value });
  });

  it('adds an activity event for a begin annotation', () => {
    const events = eventsOf('2009-03-23 10:16:49.428669\tM051\tON\t1-begin');
    expect(events).toHaveLength(2);
    expect(events[0]?.type).toBe('sensor_on');
    expect(events[1]).toEqual({
      idSuffix: ':activity',
      type: 'activity_begin',
      pairType: 'activity',
      pairKey: '1',
      occurredAt: '2009-03-23T10:16:49.428Z',
      meta: { annotation: '1-begin', sensor: 'M051', value: 'ON' },
    });
  });

  it('adds an activity event for an end annotation', () => {
    const events = eventsOf('2009-03-23 10:19:18.157259\tM051\tOFF\t12-end');
    expect(events[1]?.type).toBe('activity_end');
    expect(events[1]?.pairKey).toBe('12');
  });

  it('keeps the reading of an annotated reading line', () => {
    const events = eventsOf('2009-03-23 10:19:18.1\tSS002\tSTILL\t3-end');
    expect(events.map((event) => event.type)).toEqual(['sensor_reading', 'activity_end']);
    expect(events[0]?.meta).toEqual({ sensor: 'SS002', value: 'STILL' });
  });

  it('accepts a named task', () => {
    const events = eventsOf('2009-03-23 10:19:18.1\tM001\tON\tMeal_Preparation-begin');
    expect(events[1]?.pairKey).toBe('Meal_Preparation');
  });

  it.each([
    ['an empty line', ''],
    ['blanks only', ' \t '],
    ['a lone CR', '\r'],
  ])('skips %s as blank', (_name, line) => {
    expect(parseCasasLine(line, 'UTC')).toEqual({ kind: 'blank' });
  });

  it.each([
    ['garbage', 'hello world', /expected 4 or 5 fields.*found 2/],
    ['a missing value', '2009-03-23 10:16:02.2\tM045', /found 3/],
    ['extra fields', '2009-03-23 10:16:02.2\tM045\tON\t1-begin\tx', /found 6/],
    ['a bad annotation', '2009-03-23 10:16:02.2\tM045\tON\tbegin', /invalid annotation "begin"/],
    ['a slash date', '2009/03/23 10:16:02.2\tM045\tON', /invalid date "2009\/03\/23"/],
    ['a short time', '2009-03-23 10:16\tM045\tON', /invalid time "10:16"/],
    ['a dot without digits', '2009-03-23 10:16:02.\tM045\tON', /invalid time/],
    ['month 13', '2009-13-23 10:16:02.2\tM045\tON', /invalid time stamp/],
    ['February 30', '2009-02-30 10:16:02.2\tM045\tON', /invalid time stamp/],
    ['hour 24', '2009-03-23 24:00:00\tM045\tON', /invalid time "24:00:00"/],
    ['second 60', '2009-03-23 10:16:60\tM045\tON', /invalid time "10:16:60"/],
    ['an ISO time stamp', '2009-03-23T10:16:02Z\tM045\tON', /found 3/],
    ['a value cut to O', '2009-03-23 10:16:02.2\tM045\tO', /truncated value "O": it is the start of ON or OPEN or OFF,/],
    ['a value cut to OF', '2009-03-23 10:16:02.2\tM045\tOF', /truncated value "OF": it is the start of OFF,/],
    ['a value cut to CLOS', '2009-03-23 10:16:02.2\tD007\tCLOS', /truncated value "CLOS"/],
    ['a value cut to START_INS', '2009-03-23 10:16:02.2\tE002\tSTART_INS', /truncated value "START_INS"/],
    ['a cut value with an annotation', '2009-03-23 10:16:02.2\tM045\tOF\t1-end', /truncated value "OF"/],
    ['an annotation as value', '2009-03-23 10:16:02.2\tM045\t1-begin', /missing value: the last field "1-begin" is an annotation/],
    ['an annotation cut to 1-', '2009-03-23 10:16:02.2\tM045\tON\t1-', /invalid annotation "1-"/],
    ['an annotation cut to 1-beg', '2009-03-23 10:16:02.2\tM045\tON\t1-beg', /invalid annotation "1-beg"/],
  ])('rejects %s', (_name, line, reason) => {
    const result = parseCasasLine(line, 'UTC');
    expect(result.kind).toBe('invalid');
    expect(result.kind === 'invalid' ? result.reason : '').toMatch(reason);
  });
});

describe('casasTimeToUtc', () => {
  it.each([
    ['UTC', '2009-03-23T10:16:02.214Z'],
    ['Asia/Tokyo', '2009-03-23T01:16:02.214Z'],
    ['America/New_York', '2009-03-23T14:16:02.214Z'],
    ['Europe/Prague', '2009-03-23T09:16:02.214Z'],
  ])('reads local time in %s', (zone, instant) => {
    expect(casasTimeToUtc('2009-03-23', '10:16:02.214629', zone)).toEqual({ ok: true, instant });
  });

  it('follows daylight saving time', () => {
    expect(casasTimeToUtc('2009-07-01', '12:00:00', 'Europe/Prague')).toEqual({
      ok: true,
      instant: '2009-07-01T10:00:00.000Z',
    });
  });

  it('resolves a repeated autumn hour', () => {
    const result = casasTimeToUtc('2021-10-31', '02:30:00', 'Europe/Prague');
    expect(result.ok).toBe(true);
    expect(['2021-10-31T00:30:00.000Z', '2021-10-31T01:30:00.000Z']).toContain(
      result.ok ? result.instant : '',
    );
  });

  it.each([
    ['0000-01-01', '00:00:00', 'UTC'],
    ['0099-12-31', '23:59:59.999', 'UTC'],
    ['9999-12-31', '23:00:00', 'America/New_York'],
  ])('rejects %s %s in %s as out of range', (date, time, zone) => {
    const result = casasTimeToUtc(date, time, zone);
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.reason).toBe(
      `time stamp "${date} ${time}" in ${zone} is outside the supported range ` +
        'from 0100-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z',
    );
  });

  it('accepts the ends of the supported range', () => {
    expect(casasTimeToUtc('0100-01-01', '00:00:00', 'UTC')).toEqual({ ok: true, instant: '0100-01-01T00:00:00.000Z' });
    expect(casasTimeToUtc('9999-12-31', '23:59:59.999', 'UTC')).toEqual({ ok: true, instant: '9999-12-31T23:59:59.999Z' });
  });

  it('rejects a time in the spring gap', () => {
    const result = casasTimeToUtc('2021-03-28', '02:30:00', 'Europe/Prague');
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.reason).toMatch(/does not exist in time zone Europe\/Prague/);
  });
});

describe('parseReadingValue', () => {
  it.each([
    ['5766', 5766],
    ['-3.5', -3.5],
    ['.5', 0.5],
    ['22.', 22],
    ['1e5', '1e5'],
    ['0x10', '0x10'],
    ['ON', 'ON'],
    ['', ''],
  ])('parses %j', (raw, value) => {
    expect(parseReadingValue(raw)).toBe(value);
  });
});

describe('splitLines', () => {
  it('handles LF, CRLF and no final break', () => {
    expect(splitLines('a\r\nb\nc\r\n')).toEqual(['a', 'b', 'c']);
    expect(splitLines('a\nb')).toEqual(['a', 'b']);
    expect(splitLines('')).toEqual([]);
    expect(splitLines('a\n\nb\n')).toEqual(['a', '', 'b']);
  });
});

const SAMPLE = [
  '2009-03-23 10:15:59.444509\tE002\tSTART_INSTRUCT',
  '2009-03-23 10:16:02.214629\tM045\tON',
  'not a casas line',
  '',
  '2009-03-23 10:16:49.428669\tM051\tON\t1-begin',
  '2009-03-23 10:16:18.849699 P001 5766',
].join('\r\n');

describe('convertCasasText', () => {
  it('lists activities without an end', () => {
    const text = [
      '2009-03-23 10:00:00\tM001\tON\t1-begin',
      '2009-03-23 10:00:01\tM001\tOFF\t1-end',
      '2009-03-23 10:00:02\tM002\tON\t2-begin',
      '2009-03-23 10:00:03\tM003\tON\t3-begin',
      '2009-03-23 10:00:04\tM003\tOFF\t3-end',
      '2009-03-23 10:00:05\tM003\tON\t3-begin',
    ].join('\n');
    const conversion = convertCasasText(text, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    expect(conversion.unendedActivities).toEqual([
      { key: '2', line: 3 },
      { key: '3', line: 6 },
    ]);
  });

  it('numbers ids by line', () => {
    const conversion = convertCasasText(SAMPLE, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    expect(conversion.records.map((record) => record.input.id)).toEqual([
      'P002:1',
      'P002:2',
      'P002:5',
      'P002:5:activity',
      'P002:6',
    ]);
  });

  it('reports bad lines', () => {
    const conversion = convertCasasText(SAMPLE, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    expect(conversion.issues).toHaveLength(1);
    expect(conversion.issues[0]?.line).toBe(3);
    expect(conversion.issues[0]?.reason).toMatch(/invalid date "not"/);
    expect(conversion.lineCount).toBe(6);
    expect(conversion.blankLineCount).toBe(1);
  });

  it('keeps file order', () => {
    const conversion = convertCasasText(SAMPLE, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    const times = conversion.records.map((record) => record.input.occurredAt);
    // Line 6 is earlier in time than line 5 and still comes last.
    expect(times.at(-1)).toBe('2009-03-23T10:16:18.849Z');
    expect(times.at(-2)).toBe('2009-03-23T10:16:49.428Z');
  });

  it('counts events by type', () => {
    const conversion = convertCasasText(SAMPLE, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    expect(Object.fromEntries(conversion.eventCountByType)).toEqual({
      instruction_started: 1,
      sensor_on: 2,
      activity_begin: 1,
      sensor_reading: 1,
    });
    expect([...conversion.pairTypesUsed].sort()).toEqual(['activity', 'instruction', 'sensor']);
  });

  it('uses the given user', () => {
    const options = { fileBase: 'P002', username: 'alice', timeZone: 'UTC' };
    const conversion = convertCasasText(SAMPLE, options);
    expect(new Set(conversion.records.map((record) => record.username))).toEqual(new Set(['alice']));
    expect(conversion.records[0]?.input.id).toBe('P002:1');
  });

  it('shifts times by time zone', () => {
    const utc = convertCasasText(SAMPLE, { fileBase: 'P002', username: 'P002', timeZone: 'UTC' });
    const options = { fileBase: 'P002', username: 'P002', timeZone: 'Asia/Tokyo' };
    const tokyo = convertCasasText(SAMPLE, options);
    expect(tokyo.records).toHaveLength(utc.records.length);
    utc.records.forEach((record, index) => {
      const utcInstant = Date.parse(record.input.occurredAt ?? '');
      const tokyoInstant = Date.parse(tokyo.records[index]?.input.occurredAt ?? '');
      expect(utcInstant - tokyoInstant).toBe(9 * 3600 * 1000);
      expect(tokyo.records[index]?.input.id).toBe(record.input.id);
    });
  });

  it('drops a byte order mark', () => {
    const conversion = convertCasasText('\uFEFF2009-03-23 10:16:02.2\tM045\tON\n', {
      fileBase: 'P002',
      username: 'P002',
      timeZone: 'UTC',
    });
    expect(conversion.issues).toEqual([]);
    expect(conversion.records).toHaveLength(1);
  });
});

describe('formatCasasNdjson', () => {
  it('writes used pair types first', () => {
    const text = '2009-03-23 10:16:02.2\tM045\tON\n2009-03-23 10:16:03\tP001\t5\n';
    const options = { fileBase: 'P002', username: 'P002', timeZone: 'UTC' };
    const onlySensors = convertCasasText(text, options);
    const lines = formatCasasNdjson([onlySensors]).map((line) => JSON.parse(line) as unknown);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toEqual({
      kind: 'pairType',
      input: {
        name: 'sensor',
        startType: 'sensor_on',
        endType: 'sensor_off',
        autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' },
      },
    });
    expect(lines[1]).toEqual({
      kind: 'event',
      username: 'P002',
      input: {
        id: 'P002:1',
        type: 'sensor_on',
        pairKey: 'M045',
        occurredAt: '2009-03-23T10:16:02.200Z',
        meta: { sensor: 'M045', value: 'ON' },
      },
    });
    expect(lines[2]).toEqual({
      kind: 'event',
      username: 'P002',
      input: {
        id: 'P002:2',
        type: 'sensor_reading',
        occurredAt: '2009-03-23T10:16:03.000Z',
        meta: { sensor: 'P001', value: 5 },
      },
    });
  });

  it('writes no pair type without events', () => {
    expect(formatCasasNdjson([])).toEqual([]);
  });
});
