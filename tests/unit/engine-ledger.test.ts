import { describe, expect, it } from 'vitest';

import {
  advanceTo,
  applyEvent,
  correctionIdFor,
  DerivedLedger,
  emptyState,
  ReferenceTimeline,
  restoreState,
  segmentIdFor,
  type AutoClosePolicy,
  type EngineEvent,
  type IncomingEvent,
  type LedgerSnapshot,
  type PairCatalog,
  type PairTypeDefinition,
  type SegmentStart,
} from '../../src/domain/pairing/index.js';
import { catalogOf } from '../support/engine.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const LIMITS = { clockSkewMs: 5 * MINUTE, latenessHorizonMs: 7 * DAY };
const BASE_DAY = Date.parse('2024-03-01T00:00:00Z');

function catalogWith(policy: AutoClosePolicy): PairCatalog {
  const definitions: PairTypeDefinition[] = [
    { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: policy },
    { name: 'task', startType: 'task_started', endType: 'task_ended', parent: 'session', autoClose: policy },
  ];
  return catalogOf(definitions);
}

const CATALOG = catalogWith({ timeoutSeconds: 12 * 3600, endAt: 'LAST_ACTIVITY' });

/** Returns `HH:MM` UTC on the base day plus `dayOffset` days. */
function at(clock: string, dayOffset = 0): number {
  const [hours, minutes] = clock.split(':').map(Number);
  return BASE_DAY + dayOffset * DAY + ((hours ?? 0) * 60 + (minutes ?? 0)) * MINUTE;
}

function incoming(
  id: string,
  role: 'START' | 'END' | 'POINT',
  pairType: string | null,
  occurredAt: number | null,
  pairKey = '',
): IncomingEvent {
  const type =
    pairType === null ? 'ping' : `${pairType}_${role === 'START' ? 'started' : 'ended'}`;
  return { id, type, role, pairType, pairKey, occurredAt };
}

type Bounds = [pairType: string, start: number, end: number | null, reason: string | null];

function segmentBounds(snapshot: LedgerSnapshot): Bounds[] {
  return snapshot.segments.map((segment) =>
    segment.status === 'open'
      ? [segment.pairType, segment.startAt, null, null]
      : [segment.pairType, segment.startAt, segment.endAt, segment.endReason],
  );
}

/** Folds stored events in position order into a fresh ledger, then advances to `now`. */
function replay(events: readonly EngineEvent[], catalog: PairCatalog, now: number): LedgerSnapshot {
  const ordered = [...events].sort((a, b) => a.occurredAt - b.occurredAt || a.seq - b.seq);
  const ledger = new DerivedLedger();
  let state = emptyState();
  for (const event of ordered) {
    const step = applyEvent(state, event, catalog);
    ledger.applyOutput(step.output);
    state = step.state;
  }
  ledger.applyOutput(advanceTo(state, now, catalog).output);
  return ledger.snapshot();
}

describe('end-to-end examples', () => {
  it('second end is orphan', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('e1', 'START', 'session', at('09:00')), at('09:00'));
    timeline.receive(incoming('e2', 'END', 'session', at('10:00')), at('10:00'));
    const third = timeline.receive(incoming('e3', 'END', 'session', at('10:30')), at('10:30'));

    expect(segmentBounds(timeline.ledger.snapshot())).toEqual([
      ['session', at('09:00'), at('10:00'), 'CLIENT'],
    ]);
    expect(third.output.flags.map((flag) => flag.eventId)).toEqual(['e3']);
    expect(timeline.ledger.snapshot().flags.map((flag) => flag.eventId)).toEqual(['e3']);
  });

  it('end arriving before start', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    const endFirst = timeline.receive(incoming('end', 'END', 'session', 1_000_000), 1_000_000);
    expect(endFirst.output.flags.map((flag) => flag.eventId)).toEqual(['end']);

    const start = timeline.receive(incoming('start', 'START', 'session', 900_000), 1_000_000);

    expect(start.arrivalFlags).toEqual(['LATE_EVENT']);
    expect(start.restoredFrom).toEqual({ at: 900_000, seq: 2 });
    const snapshot = timeline.ledger.snapshot();
    expect(segmentBounds(snapshot)).toEqual([['session', 900_000, 1_000_000, 'CLIENT']]);
    expect(snapshot.flags).toEqual([]);
    expect(snapshot.corrections).toEqual([]);
    expect(snapshot.segments[0]).toMatchObject({ startEventId: 'start', endEventId: 'end' });
  });

  it('task starts missing session', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    const result = timeline.receive(incoming('t1', 'START', 'task', at('09:00')), at('09:00'));

    const sessionStartId = correctionIdFor('t1', 'MISSING_PARENT_START', 'session', '');
    expect(result.output.corrections).toEqual([
      {
        id: sessionStartId,
        type: 'session_started',
        role: 'START',
        pairType: 'session',
        pairKey: '',
        occurredAt: at('09:00'),
        rule: 'MISSING_PARENT_START',
        causeEventId: 't1',
        position: { at: at('09:00'), seq: 1 },
        ordinal: 0,
      },
    ]);
    expect(segmentBounds(timeline.ledger.snapshot())).toEqual([
      ['session', at('09:00'), null, null],
      ['task', at('09:00'), null, null],
    ]);
  });
});

describe('ReferenceTimeline', () => {
  it('late end replaces auto-close', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('e1', 'START', 'session', at('09:00')), at('09:00'));
    timeline.receive(incoming('e2', 'POINT', null, at('17:42')), at('17:42'));
    timeline.advanceTo(at('06:00', 1));
    expect(segmentBounds(timeline.ledger.snapshot())).toEqual([
      ['session', at('09:00'), at('17:42'), 'AUTO_CLOSE'],
    ]);

    const late = timeline.receive(incoming('e3', 'END', 'session', at('12:00')), at('06:10', 1));

    expect(late.arrivalFlags).toEqual(['LATE_EVENT']);
    const snapshot = timeline.ledger.snapshot();
    expect(segmentBounds(snapshot)).toEqual([['session', at('09:00'), at('12:00'), 'CLIENT']]);
    expect(snapshot.corrections).toEqual([]);
    expect(timeline.state.position).toEqual({ at: at('17:42'), seq: 2 });
  });

  it('end before deadline restores', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('e1', 'START', 'session', at('09:00')), at('09:00'));
    timeline.advanceTo(at('22:00'));

    // 18:00 is after every applied occurredAt, so it is not LATE_EVENT, but it
    // lies before the auto-close decision at 21:00.
    const end = timeline.receive(incoming('e2', 'END', 'session', at('18:00')), at('22:00'));

    expect(end.arrivalFlags).toEqual([]);
    expect(end.restoredFrom).toEqual({ at: at('18:00'), seq: 2 });
    expect(segmentBounds(timeline.ledger.snapshot())).toEqual([
      ['session', at('09:00'), at('18:00'), 'CLIENT'],
    ]);
  });

  it('late start splits segment', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('e1', 'START', 'session', at('09:00')), at('09:00'));
    timeline.receive(incoming('e2', 'END', 'session', at('12:00')), at('12:00'));
    timeline.receive(incoming('e3', 'START', 'session', at('10:00')), at('12:05'));

    const snapshot = timeline.ledger.snapshot();
    expect(segmentBounds(snapshot)).toEqual([
      ['session', at('09:00'), at('10:00'), 'DUPLICATE_START'],
      ['session', at('10:00'), at('12:00'), 'CLIENT'],
    ]);
    expect(snapshot.corrections.map((c) => [c.rule, c.causeEventId])).toEqual([
      ['DUPLICATE_START', 'e3'],
    ]);
  });

  it('late child before parent', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('s', 'START', 'session', at('09:30')), at('09:30'));
    timeline.receive(incoming('t', 'START', 'task', at('09:00')), at('09:31'));

    const snapshot = timeline.ledger.snapshot();
    expect(segmentBounds(snapshot)).toEqual([
      ['session', at('09:00'), at('09:30'), 'DUPLICATE_START'],
      ['task', at('09:00'), at('09:30'), 'PARENT_CLOSED'],
      ['session', at('09:30'), null, null],
    ]);
    expect(snapshot.corrections.map((c) => c.rule)).toEqual([
      'MISSING_PARENT_START',
      'CHILD_CLOSED_WITH_PARENT',
      'DUPLICATE_START',
    ]);
    expect(snapshot).toEqual(replay(timeline.events(), CATALOG, at('09:31')));
  });

  it('ignores event beyond horizon', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('e1', 'START', 'session', at('09:00', 10)), at('09:00', 10));
    const before = timeline.ledger.snapshot();
    const stateBefore = timeline.state;

    const old = timeline.receive(incoming('e2', 'END', 'session', at('08:00', 2)), at('09:01', 10));

    expect(old.arrivalFlags).toEqual(['LATE_BEYOND_HORIZON']);
    expect(old.event.ignored).toBe(true);
    expect(old.restoredFrom).toBeNull();
    expect(timeline.ledger.snapshot()).toEqual(before);
    expect(timeline.state).toEqual({ ...stateBefore, appliedSeq: 2 });
  });

  it('replaces future timestamp', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    const result = timeline.receive(incoming('e1', 'START', 'session', at('18:00')), at('09:00'));
    expect(result.arrivalFlags).toEqual(['FUTURE_TIMESTAMP']);
    expect(result.event.occurredAt).toBe(at('09:00'));
  });

  it('fills omitted time', () => {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    const result = timeline.receive(incoming('e1', 'START', 'session', null), at('09:00'));
    expect(result.event.occurredAt).toBe(at('09:00'));
    expect(result.arrivalFlags).toEqual([]);
  });
});

describe('DerivedLedger', () => {
  /** Builds the ledger of session 09:00, task 09:10, task end 09:40, orphan end 09:50 and an auto-close at 21:50. */
  function sampleLedger(): DerivedLedger {
    const timeline = new ReferenceTimeline(CATALOG, LIMITS);
    timeline.receive(incoming('s', 'START', 'session', at('09:00')), at('09:00'));
    timeline.receive(incoming('t', 'START', 'task', at('09:10')), at('09:10'));
    timeline.receive(incoming('te', 'END', 'task', at('09:40')), at('09:40'));
    timeline.receive(incoming('x', 'END', 'task', at('09:50')), at('09:50'));
    timeline.advanceTo(at('23:00'));
    return timeline.ledger;
  }

  it('sample is as expected', () => {
    const snapshot = sampleLedger().snapshot();
    expect(segmentBounds(snapshot)).toEqual([
      ['session', at('09:00'), at('09:50'), 'AUTO_CLOSE'],
      ['task', at('09:10'), at('09:40'), 'CLIENT'],
    ]);
    expect(snapshot.flags.map((flag) => flag.eventId)).toEqual(['x']);
    expect(snapshot.corrections.map((c) => c.rule)).toEqual(['AUTO_CLOSE']);
  });

  it.each([
    {
      name: 'after everything',
      from: { at: at('23:00'), seq: 1 },
      segments: [
        ['session', at('09:00'), at('09:50'), 'AUTO_CLOSE'],
        ['task', at('09:10'), at('09:40'), 'CLIENT'],
      ] as Bounds[],
      flags: ['x'],
      corrections: 1,
    },
    {
      name: 'at the auto-close',
      from: { at: at('21:50'), seq: -1 },
      segments: [
        ['session', at('09:00'), null, null],
        ['task', at('09:10'), at('09:40'), 'CLIENT'],
      ] as Bounds[],
      flags: ['x'],
      corrections: 0,
    },
    {
      name: 'at the orphan end',
      from: { at: at('09:50'), seq: 4 },
      segments: [
        ['session', at('09:00'), null, null],
        ['task', at('09:10'), at('09:40'), 'CLIENT'],
      ] as Bounds[],
      flags: [],
      corrections: 0,
    },
    {
      name: 'inside the task',
      from: { at: at('09:20'), seq: 5 },
      segments: [
        ['session', at('09:00'), null, null],
        ['task', at('09:10'), null, null],
      ] as Bounds[],
      flags: [],
      corrections: 0,
    },
    {
      name: 'at the task start',
      from: { at: at('09:10'), seq: 2 },
      segments: [['session', at('09:00'), null, null]] as Bounds[],
      flags: [],
      corrections: 0,
    },
    {
      name: 'before everything',
      from: { at: at('08:00'), seq: 5 },
      segments: [] as Bounds[],
      flags: [],
      corrections: 0,
    },
  ])('truncateFrom $name', ({ from, segments, flags, corrections }) => {
    const ledger = sampleLedger();
    const openBefore = ledger.openSegmentsAt(from);

    ledger.truncateFrom(from);

    const snapshot = ledger.snapshot();
    expect(segmentBounds(snapshot)).toEqual(segments);
    expect(snapshot.flags.map((flag) => flag.eventId)).toEqual(flags);
    expect(snapshot.corrections).toHaveLength(corrections);
    expect(ledger.openSegmentsAt(from)).toEqual(openBefore);
    expect(openBefore.map((segment) => segment.pairType)).toEqual(
      segments.filter((row) => row[2] === null).map((row) => row[0]),
    );
  });

  it('rejects output twice', () => {
    const step = applyEvent(
      emptyState(),
      { id: 'e1', seq: 1, type: 'task_started', occurredAt: 0, role: 'START', pairType: 'task', pairKey: '', ignored: false },
      CATALOG,
    );
    const ledger = new DerivedLedger();
    ledger.applyOutput(step.output);
    expect(() => ledger.applyOutput(step.output)).toThrow(/already stored/);
  });

  it('rejects close of unknown segment', () => {
    const ledger = new DerivedLedger();
    const close = {
      kind: 'closed' as const,
      segmentId: 'missing',
      pairType: 'task',
      startAt: 0,
      endAt: 0,
      endEventId: 'e',
      endReason: 'CLIENT' as const,
      decidedAt: { at: 0, seq: 1 },
    };
    expect(() => ledger.applyOutput({ corrections: [], segments: [close], flags: [] })).toThrow(
      /not stored as open/,
    );
  });
});

describe('restoreState', () => {
  const session: SegmentStart = {
    segmentId: segmentIdFor('s'),
    pairType: 'session',
    pairKey: '',
    startAt: at('09:00'),
    startSeq: 1,
    startEventId: 's',
    parentSegmentId: null,
  };
  const task: SegmentStart = {
    segmentId: segmentIdFor('t'),
    pairType: 'task',
    pairKey: 'a',
    startAt: at('09:10'),
    startSeq: 2,
    startEventId: 't',
    parentSegmentId: segmentIdFor('s'),
  };
  const input = {
    openSegments: [task, session],
    lastActivityAt: at('09:30'),
    position: { at: at('09:30'), seq: 3 },
    appliedSeq: 4,
  };

  it('restores parent keys', () => {
    const state = restoreState(input);
    expect(state.open['task\u0000a']).toEqual({
      segmentId: task.segmentId,
      pairType: 'task',
      pairKey: 'a',
      startAt: at('09:10'),
      startSeq: 2,
      startEventId: 't',
      parentKey: 'session\u0000',
      parentSegmentId: session.segmentId,
    });
    expect(state.open['session\u0000']?.parentKey).toBeNull();
    expect(state.lastActivityAt).toBe(at('09:30'));
    expect(state.position).toEqual({ at: at('09:30'), seq: 3 });
    expect(state.appliedSeq).toBe(4);
  });

  it('continues like the original', () => {
    const restored = restoreState(input);
    const end = {
      id: 'se',
      seq: 5,
      type: 'session_ended',
      occurredAt: at('10:00'),
      role: 'END' as const,
      pairType: 'session',
      pairKey: '',
      ignored: false,
    };
    const step = applyEvent(restored, end, CATALOG);
    expect(step.output.segments.map((change) => [change.segmentId, change.kind])).toEqual([
      [task.segmentId, 'closed'],
      [session.segmentId, 'closed'],
    ]);
  });

  it.each([
    { name: 'missing parent', segments: [task], message: /not open/ },
    { name: 'duplicate key', segments: [session, { ...session, segmentId: 'other' }], message: /both open/ },
    {
      name: 'start after position',
      segments: [{ ...session, startAt: at('10:00') }],
      message: /after the restored position/,
    },
  ])('rejects $name', ({ segments, message }) => {
    expect(() => restoreState({ ...input, openSegments: segments })).toThrow(message);
  });
});
