import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import type { DeliveryResult } from '../../src/importer/deliver.js';
import {
  estimateRemainingSeconds,
  formatDuration,
  formatProgressLine,
  ProgressReporter,
} from '../../src/importer/progress.js';
import {
  addDelivery,
  addIssue,
  createSummary,
  formatSummary,
  isClean,
  IssueReporter,
  MAX_LISTED_ISSUES,
  MAX_REPORTED_ISSUES_PER_KIND,
} from '../../src/importer/summary.js';

function delivery(overrides: Partial<DeliveryResult>): DeliveryResult {
  return {
    sent: 0,
    stored: 0,
    duplicates: 0,
    rejected: [],
    requests: 1,
    maxBatchSize: null,
    ...overrides,
  };
}

describe('addDelivery', () => {
  it('sums counters', () => {
    const summary = createSummary(2);
    addDelivery(
      summary,
      delivery({
        sent: 10,
        stored: 8,
        duplicates: 2,
      }),
    );
    addDelivery(
      summary,
      delivery({
        sent: 5,
        stored: 5,
        requests: 3,
        rejected: [
          {
            source: { file: 'a.ndjson', line: 7 },
            eventId: 'P002:7',
            reason: 'UNKNOWN_TYPE',
            message: 'no such type',
          },
        ],
      }),
    );

    expect(summary.eventsSent).toBe(15);
    expect(summary.stored).toBe(13);
    expect(summary.duplicates).toBe(2);
    expect(summary.rejected).toBe(1);
    expect(summary.requests).toBe(4);
  });
});

describe('addIssue', () => {
  it('caps the listed issues', () => {
    const summary = createSummary(1);
    for (let index = 0; index < MAX_LISTED_ISSUES + 5; index += 1) {
      addIssue(summary, { kind: 'badLine', file: 'a', line: index + 1, message: 'bad' });
    }
    expect(summary.issues).toHaveLength(MAX_LISTED_ISSUES);
    expect(summary.issuesOmitted).toBe(5);
  });
});

describe('IssueReporter', () => {
  it('reports a limited number per kind', () => {
    const summary = createSummary(1);
    const messages: string[] = [];
    const issues = new IssueReporter(summary, (message) => messages.push(message));
    const extra = 7;
    for (let index = 0; index < MAX_REPORTED_ISSUES_PER_KIND + extra; index += 1) {
      issues.add({ kind: 'badLine', file: 'a', line: index + 1, message: 'bad' });
    }
    issues.add({ kind: 'rejectedEvent', file: 'a', line: 99, message: 'rejected' });
    issues.reportUnreported();
    issues.reportUnreported();

    expect(summary.issues).toHaveLength(MAX_REPORTED_ISSUES_PER_KIND + extra + 1);
    expect(messages.filter((message) => message.endsWith(': bad'))).toHaveLength(MAX_REPORTED_ISSUES_PER_KIND);
    expect(messages).toContain('a:99: rejected');
    expect(messages.at(-1)).toBe(
      `${extra} more skipped lines not shown; the --json summary lists the first ${MAX_LISTED_ISSUES} issues with their lines`,
    );
    expect(messages).toHaveLength(MAX_REPORTED_ISSUES_PER_KIND + 2);
  });
});

describe('isClean', () => {
  it.each([
    ['nothing wrong', {}, true],
    ['a bad line', { badLines: 1 }, false],
    ['a rejected event', { rejected: 1 }, false],
    ['a pair type conflict', { pairTypeConflicts: ['sensor'] }, false],
    ['a rejected pair type', { pairTypesRejected: ['bad name'] }, false],
    ['an unsent event', { notSent: 1 }, false],
    ['duplicates only', { duplicates: 9 }, true],
  ])('%s -> %s', (_name, overrides, clean) => {
    expect(isClean({ ...createSummary(1), ...overrides })).toBe(clean);
  });
});

describe('formatSummary', () => {
  it('lists counters and names', () => {
    const summary = {
      ...createSummary(1),
      linesRead: 12,
      stored: 9,
      correctionsByRule: { ORPHAN_END: 1, AUTO_CLOSE: 2 },
      flaggedByRule: { LATE_EVENT: 4, LATE_BEYOND_HORIZON: 7 },
      pairTypesDefined: ['sensor', 'activity'],
      usersCreated: ['P002'],
      elapsedSeconds: 1.25,
    };
    const text = formatSummary(summary);
    expect(text).toContain('lines read:          12\n');
    expect(text).toContain('stored:              9\n');
    expect(text).toContain('corrections stored:  AUTO_CLOSE 2, ORPHAN_END 1\n');
    expect(text).toContain('flags stored:        LATE_BEYOND_HORIZON 7, LATE_EVENT 4\n');
    expect(text).toContain('pair types defined:  2 (sensor, activity)\n');
    expect(text).toContain('users created:       1 (P002)\n');
    expect(text).toContain('pair type conflicts: 0\n');
    expect(text).toContain('pair types rejected: 0\n');
    expect(text).toContain('not sent:            0\n');
    expect(text).toContain('elapsed:             1.3 s\n');
  });

  it('marks corrections and flags not counted', () => {
    const text = formatSummary(createSummary(1));
    expect(text).toContain('corrections stored:  not counted, because the import stopped\n');
    expect(text).toContain('flags stored:        not counted, because the import stopped\n');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [42.4, '42s'],
    [59.6, '1m00s'],
    [185, '3m05s'],
    [3599, '59m59s'],
    [3600, '1h00m'],
    [7620, '2h07m'],
    [null, '?'],
    [Number.POSITIVE_INFINITY, '?'],
    [-1, '?'],
  ])('%s -> %s', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });
});

describe('estimateRemainingSeconds', () => {
  it('uses the average rate', () => {
    expect(estimateRemainingSeconds(100, 400, 10_000)).toBe(30);
  });

  it('is unknown before progress', () => {
    expect(estimateRemainingSeconds(0, 400, 10_000)).toBeNull();
    expect(estimateRemainingSeconds(10, 400, 0)).toBeNull();
  });

  it('is zero when done', () => {
    expect(estimateRemainingSeconds(400, 400, 10_000)).toBe(0);
    expect(estimateRemainingSeconds(0, 0, 0)).toBe(0);
  });
});

describe('formatProgressLine', () => {
  it('shows count, rate and ETA', () => {
    expect(formatProgressLine({ done: 1200, total: 60_000 }, 2000)).toBe(
      'events 1200/60000 (2%), 600 events/s, ETA 1m38s',
    );
  });

  it('shows an unknown ETA at the start', () => {
    expect(formatProgressLine({ done: 0, total: 10 }, 0)).toBe('events 0/10 (0%), 0 events/s, ETA ?');
  });
});

class Collector extends Writable {
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

describe('ProgressReporter', () => {
  it('writes plain lines at the interval', () => {
    let clock = 0;
    const stream = new Collector();
    const now = () => clock;
    const reporter = new ProgressReporter({ stream, isTTY: false, plainIntervalMs: 5000, now });

    clock = 1000;
    reporter.update({ done: 10, total: 100 });
    clock = 3000;
    reporter.update({ done: 30, total: 100 });
    clock = 6000;
    reporter.update({ done: 60, total: 100 });
    clock = 7000;
    reporter.update({ done: 100, total: 100 });
    reporter.finish();

    expect(stream.text.split('\n').filter((line) => line !== '')).toEqual([
      'events 10/100 (10%), 0 events/s, ETA ?',
      'events 60/100 (60%), 12 events/s, ETA 3s',
      'events 100/100 (100%), 17 events/s, ETA 0s',
    ]);
  });

  it('rewrites one line on a terminal', () => {
    let clock = 0;
    const stream = new Collector();
    const reporter = new ProgressReporter({ stream, isTTY: true, ttyIntervalMs: 0, now: () => clock });

    clock = 1000;
    reporter.update({ done: 1, total: 2 });
    reporter.note('import: something happened');
    clock = 2000;
    reporter.update({ done: 2, total: 2 });
    reporter.finish();

    expect(stream.text).toBe(
      '\r\x1b[Kevents 1/2 (50%), 0 events/s, ETA ?' +
        '\r\x1b[Kimport: something happened\n' +
        '\r\x1b[Kevents 1/2 (50%), 0 events/s, ETA ?' +
        '\r\x1b[Kevents 2/2 (100%), 2 events/s, ETA 0s' +
        '\n',
    );
  });

  it('writes notes as lines without progress', () => {
    const stream = new Collector();
    const reporter = new ProgressReporter({ stream, isTTY: true, now: () => 0 });
    reporter.note('hello');
    reporter.finish();
    expect(stream.text).toBe('hello\n');
  });
});
