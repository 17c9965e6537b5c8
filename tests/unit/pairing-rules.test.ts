import { describe, expect, it } from 'vitest';

import {
  advanceTo,
  applyEvent,
  correctionIdFor,
  DerivedLedger,
  emptyState,
  nextDeadline,
  segmentIdFor,
  type AutoClosePolicy,
  type EngineEvent,
  type EngineState,
  type LedgerSnapshot,
  type PairCatalog,
  type PairTypeDefinition,
} from '../../src/domain/pairing/index.js';
import { catalogOf } from '../support/engine.js';

// Pair types: session > task > subtask, and a top-level call.
const TWELVE_HOURS: AutoClosePolicy = { timeoutSeconds: 12 * 3600, endAt: 'LAST_ACTIVITY' };

function catalogWith(policies: Record<string, AutoClosePolicy> = {}): PairCatalog {
  const definitions: PairTypeDefinition[] = [
    { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: TWELVE_HOURS },
    { name: 'task', startType: 'task_started', endType: 'task_ended', parent: 'session', autoClose: TWELVE_HOURS },
    { name: 'subtask', startType: 'subtask_started', endType: 'subtask_ended', parent: 'task', autoClose: TWELVE_HOURS },
    { name: 'call', startType: 'call_started', endType: 'call_ended', parent: null, autoClose: TWELVE_HOURS },
  ];
  return catalogOf(definitions, new Map(Object.entries(policies)));
}

const BASE_DAY = Date.parse('2024-03-01T00:00:00Z');
const DAY_MS = 24 * 3600 * 1000;

/** Returns the instant of `HH:MM` UTC on the base day plus `dayOffset` days. */
function at(clock: string, dayOffset = 0): number {
  const [hours, minutes] = clock.split(':').map(Number);
  return BASE_DAY + dayOffset * DAY_MS + ((hours ?? 0) * 60 + (minutes ?? 0)) * 60_000;
}

function formatInstant(instant: number): string {
  const day = Math.floor((instant - BASE_DAY) / DAY_MS);
  const clock = new Date(instant).toISOString().slice(11, 16);
  return day === 0 ? clock : `+${day}d ${clock}`;
}

/** An event in a table: role, pair type (or "point"), `HH:MM` or `[HH:MM, days]`, pair key. */
type EventRow =
  | ['start' | 'end', string, string | [string, number], string?]
  | ['point', string | [string, number]];

function toInstant(time: string | [string, number]): number {
  return typeof time === 'string' ? at(time) : at(time[0], time[1]);
}

/** Builds client events with ids e1, e2, ... and seqs 1, 2, ... in row order. */
function eventsOf(rows: readonly EventRow[]): EngineEvent[] {
  return rows.map((row, index) => {
    const id = `e${index + 1}`;
    const seq = index + 1;
    if (row[0] === 'point') {
      return { id, seq, type: 'ping', occurredAt: toInstant(row[1]), role: 'POINT', pairType: null, pairKey: '', ignored: false };
    }
    const [role, pairType, time, pairKey = ''] = row;
    const suffix = role === 'start' ? 'started' : 'ended';
    return {
      id,
      seq,
      type: `${pairType}_${suffix}`,
      occurredAt: toInstant(time),
      role: role === 'start' ? 'START' : 'END',
      pairType,
      pairKey,
      ignored: false,
    };
  });
}

/** Folds events in the given order, then advances to `now` when given. */
function fold(
  events: readonly EngineEvent[],
  catalog: PairCatalog,
  now?: number,
): { state: EngineState; snapshot: LedgerSnapshot } {
  let state = emptyState();
  const ledger = new DerivedLedger();
  for (const event of events) {
    const step = applyEvent(state, event, catalog);
    ledger.applyOutput(step.output);
    state = step.state;
  }
  if (now !== undefined) {
    const step = advanceTo(state, now, catalog);
    ledger.applyOutput(step.output);
    state = step.state;
  }
  return { state, snapshot: ledger.snapshot() };
}

function label(pairType: string, pairKey: string): string {
  return pairKey === '' ? pairType : `${pairType}#${pairKey}`;
}

/** Segments as `type#key [start, end) REASON`, in start order. */
function segmentLines(snapshot: LedgerSnapshot): string[] {
  return snapshot.segments.map((segment) => {
    const start = formatInstant(segment.startAt);
    const name = label(segment.pairType, segment.pairKey);
    if (segment.status === 'open') {
      return `${name} [${start}, open)`;
    }
    return `${name} [${start}, ${formatInstant(segment.endAt)}) ${segment.endReason}`;
  });
}

/** Corrections as `RULE event_type type#key at time <- cause`, in position and ordinal order. */
function correctionLines(snapshot: LedgerSnapshot): string[] {
  return snapshot.corrections.map(
    (correction) =>
      `${correction.rule} ${correction.type} ${label(correction.pairType, correction.pairKey)} at ${formatInstant(correction.occurredAt)} <- ${correction.causeEventId}`,
  );
}

function flaggedIds(snapshot: LedgerSnapshot): string[] {
  return snapshot.flags.map((flag) => `${flag.eventId} ${flag.rule}`);
}

interface RuleCase {
  name: string;
  rows: EventRow[];
  segments: string[];
  corrections: string[];
  flags?: string[];
}

describe('MISSING_PARENT_START', () => {
  const cases: RuleCase[] = [
    {
      name: 'task without session',
      rows: [['start', 'task', '09:00']],
      segments: ['session [09:00, open)', 'task [09:00, open)'],
      corrections: ['MISSING_PARENT_START session_started session at 09:00 <- e1'],
    },
    {
      name: 'three-level chain, root first',
      rows: [['start', 'subtask', '09:00']],
      segments: ['session [09:00, open)', 'task [09:00, open)', 'subtask [09:00, open)'],
      corrections: [
        'MISSING_PARENT_START session_started session at 09:00 <- e1',
        'MISSING_PARENT_START task_started task at 09:00 <- e1',
      ],
    },
    {
      name: 'middle level missing',
      rows: [
        ['start', 'session', '08:00'],
        ['start', 'subtask', '09:00', 'x'],
      ],
      segments: ['session [08:00, open)', 'task [09:00, open)', 'subtask#x [09:00, open)'],
      corrections: ['MISSING_PARENT_START task_started task at 09:00 <- e2'],
    },
    {
      name: 'parent already open',
      rows: [
        ['start', 'session', '08:00'],
        ['start', 'task', '09:00'],
      ],
      segments: ['session [08:00, open)', 'task [09:00, open)'],
      corrections: [],
    },
    {
      name: 'parent closed before child starts',
      rows: [
        ['start', 'session', '08:00'],
        ['end', 'session', '08:30'],
        ['start', 'task', '09:00', 'a'],
      ],
      segments: ['session [08:00, 08:30) CLIENT', 'session [09:00, open)', 'task#a [09:00, open)'],
      corrections: ['MISSING_PARENT_START session_started session at 09:00 <- e3'],
    },
  ];

  it.each(cases)('$name', ({ rows, segments, corrections }) => {
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(segmentLines(snapshot)).toEqual(segments);
    expect(correctionLines(snapshot)).toEqual(corrections);
    expect(flaggedIds(snapshot)).toEqual([]);
  });

  it('links synthesised chain', () => {
    const [event] = eventsOf([['start', 'subtask', '09:00']]);
    const step = applyEvent(emptyState(), event!, catalogWith());
    const sessionStartId = correctionIdFor('e1', 'MISSING_PARENT_START', 'session', '');
    const taskStartId = correctionIdFor('e1', 'MISSING_PARENT_START', 'task', '');

    expect(step.output.corrections.map((c) => c.id)).toEqual([sessionStartId, taskStartId]);
    expect(step.output.corrections.map((c) => c.ordinal)).toEqual([0, 1]);
    expect(step.output.corrections.map((c) => c.position)).toEqual([
      { at: at('09:00'), seq: 1 },
      { at: at('09:00'), seq: 1 },
    ]);
    expect(step.output.segments).toEqual([
      {
        kind: 'opened',
        segmentId: segmentIdFor(sessionStartId),
        pairType: 'session',
        pairKey: '',
        startAt: at('09:00'),
        startSeq: 1,
        startEventId: sessionStartId,
        parentSegmentId: null,
        depth: 0,
      },
      {
        kind: 'opened',
        segmentId: segmentIdFor(taskStartId),
        pairType: 'task',
        pairKey: '',
        startAt: at('09:00'),
        startSeq: 1,
        startEventId: taskStartId,
        parentSegmentId: segmentIdFor(sessionStartId),
        depth: 1,
      },
      {
        kind: 'opened',
        segmentId: segmentIdFor('e1'),
        pairType: 'subtask',
        pairKey: '',
        startAt: at('09:00'),
        startSeq: 1,
        startEventId: 'e1',
        parentSegmentId: segmentIdFor(taskStartId),
        depth: 2,
      },
    ]);
    expect(step.state.open['task\u0000']?.parentKey).toBe('session\u0000');
    expect(step.state.open['subtask\u0000']?.parentKey).toBe('task\u0000');
  });

  it.each([
    { name: 'same key wins', taskKey: 'a', parentKey: 'session\u0000a' },
    { name: 'else latest start', taskKey: 'c', parentKey: 'session\u0000b' },
  ])('parent choice: $name', ({ taskKey, parentKey }) => {
    const rows: EventRow[] = [
      ['start', 'session', '08:00', 'a'],
      ['start', 'session', '08:30', 'b'],
      ['start', 'task', '09:00', taskKey],
    ];
    const { state, snapshot } = fold(eventsOf(rows), catalogWith());
    expect(state.open[`task\u0000${taskKey}`]?.parentKey).toBe(parentKey);
    expect(correctionLines(snapshot)).toEqual([]);
  });
});

describe('CHILD_CLOSED_WITH_PARENT', () => {
  const cases: RuleCase[] = [
    {
      name: 'session end closes task',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['end', 'session', '10:00'],
      ],
      segments: ['session [09:00, 10:00) CLIENT', 'task [09:10, 10:00) PARENT_CLOSED'],
      corrections: ['CHILD_CLOSED_WITH_PARENT task_ended task at 10:00 <- e3'],
    },
    {
      name: 'three levels, deepest first',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['start', 'subtask', '09:20'],
        ['end', 'session', '10:00'],
      ],
      segments: [
        'session [09:00, 10:00) CLIENT',
        'task [09:10, 10:00) PARENT_CLOSED',
        'subtask [09:20, 10:00) PARENT_CLOSED',
      ],
      corrections: [
        'CHILD_CLOSED_WITH_PARENT subtask_ended subtask at 10:00 <- e4',
        'CHILD_CLOSED_WITH_PARENT task_ended task at 10:00 <- e4',
      ],
    },
    {
      name: 'task end closes only subtree',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10', 'a'],
        ['start', 'subtask', '09:20', 'a'],
        ['start', 'task', '09:30', 'b'],
        ['end', 'task', '10:00', 'a'],
      ],
      segments: [
        'session [09:00, open)',
        'task#a [09:10, 10:00) CLIENT',
        'subtask#a [09:20, 10:00) PARENT_CLOSED',
        'task#b [09:30, open)',
      ],
      corrections: ['CHILD_CLOSED_WITH_PARENT subtask_ended subtask#a at 10:00 <- e5'],
    },
    {
      name: 'two tasks, latest first',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10', 'a'],
        ['start', 'task', '09:20', 'b'],
        ['end', 'session', '10:00'],
      ],
      segments: [
        'session [09:00, 10:00) CLIENT',
        'task#a [09:10, 10:00) PARENT_CLOSED',
        'task#b [09:20, 10:00) PARENT_CLOSED',
      ],
      corrections: [
        'CHILD_CLOSED_WITH_PARENT task_ended task#b at 10:00 <- e4',
        'CHILD_CLOSED_WITH_PARENT task_ended task#a at 10:00 <- e4',
      ],
    },
  ];

  it.each(cases)('$name', ({ rows, segments, corrections }) => {
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(segmentLines(snapshot)).toEqual(segments);
    expect(correctionLines(snapshot)).toEqual(corrections);
    expect(flaggedIds(snapshot)).toEqual([]);
  });

  it('orders ends by ordinal', () => {
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'task', '09:10'],
      ['start', 'subtask', '09:20'],
      ['end', 'session', '10:00'],
    ];
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(snapshot.corrections.map((c) => [c.pairType, c.ordinal])).toEqual([
      ['subtask', 0],
      ['task', 1],
    ]);
    expect(snapshot.corrections.map((c) => c.position)).toEqual([
      { at: at('10:00'), seq: 4 },
      { at: at('10:00'), seq: 4 },
    ]);
  });
});

describe('DUPLICATE_START', () => {
  const cases: RuleCase[] = [
    {
      name: 'second session start',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'session', '10:00'],
      ],
      segments: ['session [09:00, 10:00) DUPLICATE_START', 'session [10:00, open)'],
      corrections: ['DUPLICATE_START session_ended session at 10:00 <- e2'],
    },
    {
      name: 'children close too',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['start', 'subtask', '09:20'],
        ['start', 'session', '10:00'],
      ],
      segments: [
        'session [09:00, 10:00) DUPLICATE_START',
        'task [09:10, 10:00) PARENT_CLOSED',
        'subtask [09:20, 10:00) PARENT_CLOSED',
        'session [10:00, open)',
      ],
      corrections: [
        'CHILD_CLOSED_WITH_PARENT subtask_ended subtask at 10:00 <- e4',
        'CHILD_CLOSED_WITH_PARENT task_ended task at 10:00 <- e4',
        'DUPLICATE_START session_ended session at 10:00 <- e4',
      ],
    },
    {
      name: 'task restarts under session',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['start', 'task', '09:20'],
      ],
      segments: ['session [09:00, open)', 'task [09:10, 09:20) DUPLICATE_START', 'task [09:20, open)'],
      corrections: ['DUPLICATE_START task_ended task at 09:20 <- e3'],
    },
    {
      name: 'same instant, empty segment',
      rows: [
        ['start', 'call', '09:00'],
        ['start', 'call', '09:00'],
      ],
      segments: ['call [09:00, 09:00) DUPLICATE_START', 'call [09:00, open)'],
      corrections: ['DUPLICATE_START call_ended call at 09:00 <- e2'],
    },
    {
      name: 'other key is no duplicate',
      rows: [
        ['start', 'call', '09:00', 'a'],
        ['start', 'call', '09:10', 'b'],
      ],
      segments: ['call#a [09:00, open)', 'call#b [09:10, open)'],
      corrections: [],
    },
  ];

  it.each(cases)('$name', ({ rows, segments, corrections }) => {
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(segmentLines(snapshot)).toEqual(segments);
    expect(correctionLines(snapshot)).toEqual(corrections);
    expect(flaggedIds(snapshot)).toEqual([]);
  });

  it('new task keeps session parent', () => {
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'task', '09:10'],
      ['start', 'task', '09:20'],
    ];
    const { state } = fold(eventsOf(rows), catalogWith());
    expect(state.open['task\u0000']?.segmentId).toBe(segmentIdFor('e3'));
    expect(state.open['task\u0000']?.parentSegmentId).toBe(segmentIdFor('e1'));
  });
});

describe('ORPHAN_END', () => {
  const cases: RuleCase[] = [
    {
      name: 'no instance',
      rows: [['end', 'session', '09:00']],
      segments: [],
      corrections: [],
      flags: ['e1 ORPHAN_END'],
    },
    {
      name: 'second end after close',
      rows: [
        ['start', 'session', '09:00'],
        ['end', 'session', '10:00'],
        ['end', 'session', '10:30'],
      ],
      segments: ['session [09:00, 10:00) CLIENT'],
      corrections: [],
      flags: ['e3 ORPHAN_END'],
    },
    {
      name: 'other key',
      rows: [
        ['start', 'call', '09:00', 'a'],
        ['end', 'call', '10:00', 'b'],
      ],
      segments: ['call#a [09:00, open)'],
      corrections: [],
      flags: ['e2 ORPHAN_END'],
    },
    {
      name: 'child already closed with parent',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['end', 'session', '10:00'],
        ['end', 'task', '10:05'],
      ],
      segments: ['session [09:00, 10:00) CLIENT', 'task [09:10, 10:00) PARENT_CLOSED'],
      corrections: ['CHILD_CLOSED_WITH_PARENT task_ended task at 10:00 <- e3'],
      flags: ['e4 ORPHAN_END'],
    },
  ];

  it.each(cases)('$name', ({ rows, segments, corrections, flags }) => {
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(segmentLines(snapshot)).toEqual(segments);
    expect(correctionLines(snapshot)).toEqual(corrections);
    expect(flaggedIds(snapshot)).toEqual(flags);
  });

  it('flag carries event position', () => {
    const { snapshot } = fold(eventsOf([['end', 'session', '09:00']]), catalogWith());
    expect(snapshot.flags).toEqual([
      { eventId: 'e1', rule: 'ORPHAN_END', position: { at: at('09:00'), seq: 1 } },
    ]);
  });
});

describe('AUTO_CLOSE', () => {
  // Timeout 12 h, start 09:00, heartbeat 17:42: the deadline is 05:42 next day.
  const workday: EventRow[] = [
    ['start', 'session', '09:00'],
    ['point', '17:42'],
  ];

  it.each([
    { endAt: 'LAST_ACTIVITY' as const, end: '17:42' },
    { endAt: 'DEADLINE' as const, end: '+1d 05:42' },
  ])('$endAt ends at $end', ({ endAt, end }) => {
    const catalog = catalogWith({ session: { timeoutSeconds: 12 * 3600, endAt } });
    const { snapshot } = fold(eventsOf(workday), catalog, at('05:42', 1));

    expect(segmentLines(snapshot)).toEqual([`session [09:00, ${end}) AUTO_CLOSE`]);
    expect(correctionLines(snapshot)).toEqual([`AUTO_CLOSE session_ended session at ${end} <- e1`]);
    expect(snapshot.corrections[0]?.position).toEqual({ at: at('05:42', 1), seq: -1 });
    expect(snapshot.segments[0]).toMatchObject({ decidedAt: { at: at('05:42', 1), seq: -1 } });
  });

  it.each(['LAST_ACTIVITY' as const, 'DEADLINE' as const])('%s open at 05:41', (endAt) => {
    const catalog = catalogWith({ session: { timeoutSeconds: 12 * 3600, endAt } });
    const { state, snapshot } = fold(eventsOf(workday), catalog, at('05:41', 1));
    expect(segmentLines(snapshot)).toEqual(['session [09:00, open)']);
    expect(nextDeadline(state, catalog)).toBe(at('05:42', 1));
  });

  it('empty segment without activity', () => {
    const { snapshot } = fold(eventsOf([['start', 'session', '09:00']]), catalogWith(), at('21:00'));
    expect(segmentLines(snapshot)).toEqual(['session [09:00, 09:00) AUTO_CLOSE']);
  });

  const cascadeCases: RuleCase[] = [
    {
      name: 'children close with parent',
      rows: [
        ['start', 'session', '09:00'],
        ['start', 'task', '09:10'],
        ['start', 'subtask', '09:20'],
      ],
      segments: [
        'session [09:00, 09:20) AUTO_CLOSE',
        'task [09:10, 09:20) PARENT_CLOSED',
        'subtask [09:20, 09:20) PARENT_CLOSED',
      ],
      corrections: [
        `CHILD_CLOSED_WITH_PARENT subtask_ended subtask at 09:20 <- ${correctionIdFor('e1', 'AUTO_CLOSE', 'session', '')}`,
        `CHILD_CLOSED_WITH_PARENT task_ended task at 09:20 <- ${correctionIdFor('e1', 'AUTO_CLOSE', 'session', '')}`,
        'AUTO_CLOSE session_ended session at 09:20 <- e1',
      ],
    },
    {
      name: 'event at deadline comes after',
      rows: [
        ['start', 'session', '09:00'],
        ['end', 'session', '21:00'],
      ],
      segments: ['session [09:00, 09:00) AUTO_CLOSE'],
      corrections: ['AUTO_CLOSE session_ended session at 09:00 <- e1'],
      flags: ['e2 ORPHAN_END'],
    },
    {
      name: 'activity pushes deadline',
      rows: [
        ['start', 'session', '09:00'],
        ['point', '20:00'],
        ['end', 'session', '21:00'],
      ],
      segments: ['session [09:00, 21:00) CLIENT'],
      corrections: [],
    },
  ];

  it.each(cascadeCases)('$name', ({ rows, segments, corrections, flags = [] }) => {
    const { snapshot } = fold(eventsOf(rows), catalogWith(), at('23:59'));
    expect(segmentLines(snapshot)).toEqual(segments);
    expect(correctionLines(snapshot)).toEqual(corrections);
    expect(flaggedIds(snapshot)).toEqual(flags);
  });

  it('closes child alone first', () => {
    const catalog = catalogWith({ task: { timeoutSeconds: 3600, endAt: 'DEADLINE' } });
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'task', '09:10'],
    ];
    const { state, snapshot } = fold(eventsOf(rows), catalog, at('12:00'));
    expect(segmentLines(snapshot)).toEqual(['session [09:00, open)', 'task [09:10, 10:10) AUTO_CLOSE']);
    expect(correctionLines(snapshot)).toEqual(['AUTO_CLOSE task_ended task at 10:10 <- e2']);
    // The task's synthesised end at 10:10 is activity, so the session's 12 h run from there.
    expect(nextDeadline(state, catalog)).toBe(at('22:10'));
  });

  it('orders same deadline by start', () => {
    const rows: EventRow[] = [
      ['start', 'call', '09:00', 'b'],
      ['start', 'call', '09:00', 'a'],
    ];
    const { snapshot } = fold(eventsOf(rows), catalogWith(), at('21:00'));
    expect(snapshot.corrections.map((c) => [c.pairKey, c.ordinal, c.position])).toEqual([
      ['b', 0, { at: at('21:00'), seq: -1 }],
      ['a', 1, { at: at('21:00'), seq: -1 }],
    ]);
  });

  it('same DEADLINE closes every instance', () => {
    // Both calls are due at 10:10. The first synthesised end at 10:10 comes
    // at the second's deadline, too late to keep it open, as a client event
    // at 10:10 would.
    const catalog = catalogWith({ call: { timeoutSeconds: 600, endAt: 'DEADLINE' } });
    const rows: EventRow[] = [
      ['start', 'call', '10:00', 'q'],
      ['start', 'call', '10:00'],
      ['point', '10:15'],
    ];
    const { snapshot } = fold(eventsOf(rows), catalog);
    expect(segmentLines(snapshot)).toEqual(['call#q [10:00, 10:10) AUTO_CLOSE', 'call [10:00, 10:10) AUTO_CLOSE']);
  });

  it.each([
    { order: 'session first', first: 'session' },
    { order: 'call first', first: 'call' },
  ])('same deadline, $order', ({ first }) => {
    const catalog = catalogWith({
      session: { timeoutSeconds: 600, endAt: 'LAST_ACTIVITY' },
      call: { timeoutSeconds: 600, endAt: 'DEADLINE' },
    });
    const starts: EventRow[] = [
      ['start', 'session', '10:00'],
      ['start', 'call', '10:00'],
    ];
    const rows: EventRow[] = [...(first === 'session' ? starts : [...starts].reverse()), ['point', '10:15']];
    const { snapshot } = fold(eventsOf(rows), catalog);
    const lines = segmentLines(snapshot);
    expect(lines).toContain('session [10:00, 10:00) AUTO_CLOSE');
    expect(lines).toContain('call [10:00, 10:10) AUTO_CLOSE');
  });

  it('later deadline still moves', () => {
    // The call's end at 10:10 is activity before the session's deadline of
    // 10:20, so the session's 20 min run from 10:10.
    const catalog = catalogWith({
      session: { timeoutSeconds: 1200, endAt: 'LAST_ACTIVITY' },
      call: { timeoutSeconds: 600, endAt: 'DEADLINE' },
    });
    const rows: EventRow[] = [
      ['start', 'session', '10:00'],
      ['start', 'call', '10:00'],
      ['point', '10:25'],
    ];
    const { snapshot } = fold(eventsOf(rows), catalog, at('11:00'));
    expect(segmentLines(snapshot)).toEqual(['session [10:00, 10:25) AUTO_CLOSE', 'call [10:00, 10:10) AUTO_CLOSE']);
  });

  it('moves position to decision', () => {
    const { state } = fold(eventsOf(workday), catalogWith(), at('12:00', 1));
    expect(state.position).toEqual({ at: at('05:42', 1), seq: -1 });
    expect(state.lastActivityAt).toBe(at('17:42'));
    expect(state.open).toEqual({});
  });

  it('decides a shortened deadline at position', () => {
    // LAST_ACTIVITY: the call ends at 10:00 but is decided at 11:00, after the last activity.
    const hourlyCall = { call: { timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' as const } };
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'call', '10:00'],
    ];
    const { state } = fold(eventsOf(rows), catalogWith(hourlyCall), at('11:30'));
    expect(state.position).toEqual({ at: at('11:00'), seq: -1 });

    // A policy changed after the state was built: the deadline 10:30 lies behind the position.
    const shorter = catalogWith({ ...hourlyCall, session: { timeoutSeconds: 1800, endAt: 'DEADLINE' } });
    const step = advanceTo(state, at('12:00'), shorter);
    expect(step.state.open).toEqual({});
    const closed = step.output.segments.filter((change) => change.kind === 'closed');
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({ endAt: at('10:30'), decidedAt: { at: at('11:00'), seq: -1 } });
  });

  it('nextDeadline picks the earliest', () => {
    // The session is due at 22:00 (12 h after 10:00), the call at 11:00.
    const hourlyCall = { call: { timeoutSeconds: 3600, endAt: 'LAST_ACTIVITY' as const } };
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'call', '10:00'],
    ];
    const catalog = catalogWith(hourlyCall);
    const { state } = fold(eventsOf(rows), catalog);
    expect(nextDeadline(state, catalog)).toBe(at('11:00'));
  });

  it('rejects a zero timeout', () => {
    const catalog = catalogWith({ session: { timeoutSeconds: 0, endAt: 'DEADLINE' } });
    const { state } = fold(eventsOf([['start', 'session', '09:00']]), catalogWith());
    expect(() => nextDeadline(state, catalog)).toThrow(RangeError);
  });

  it('nextDeadline is null when idle', () => {
    expect(nextDeadline(emptyState(), catalogWith())).toBeNull();
  });
});

describe('pair keys', () => {
  it('two tasks at once', () => {
    const rows: EventRow[] = [
      ['start', 'session', '09:00'],
      ['start', 'task', '09:10', 'a'],
      ['start', 'task', '09:20', 'b'],
      ['end', 'task', '10:00', 'a'],
      ['end', 'task', '10:30', 'b'],
      ['end', 'session', '11:00'],
    ];
    const { snapshot } = fold(eventsOf(rows), catalogWith());
    expect(segmentLines(snapshot)).toEqual([
      'session [09:00, 11:00) CLIENT',
      'task#a [09:10, 10:00) CLIENT',
      'task#b [09:20, 10:30) CLIENT',
    ]);
    expect(correctionLines(snapshot)).toEqual([]);
    expect(flaggedIds(snapshot)).toEqual([]);
  });
});

describe('ignored events', () => {
  const rows: EventRow[] = [['start', 'session', '09:00'], ['point', '10:00']];

  it.each([
    { name: 'start', row: ['start', 'session', '08:00'] as EventRow },
    { name: 'end', row: ['end', 'session', '08:00'] as EventRow },
    { name: 'point', row: ['point', '12:00'] as EventRow },
  ])('ignored $name changes nothing', ({ row }) => {
    const catalog = catalogWith();
    const { state } = fold(eventsOf(rows), catalog);
    const event = { ...eventsOf([row])[0]!, id: 'late', seq: 3, ignored: true };

    const step = applyEvent(state, event, catalog);

    expect(step.output).toEqual({ corrections: [], segments: [], flags: [] });
    expect(step.state).toEqual({ ...state, appliedSeq: 3 });
    expect(nextDeadline(step.state, catalog)).toBe(nextDeadline(state, catalog));
  });
});

describe('applyEvent', () => {
  it('rejects event before position', () => {
    const catalog = catalogWith();
    const { state } = fold(eventsOf([['start', 'session', '09:00']]), catalog);
    const early = { ...eventsOf([['point', '08:00']])[0]!, id: 'e2', seq: 2 };
    expect(() => applyEvent(state, early, catalog)).toThrow(RangeError);
  });

  it('rejects event at position', () => {
    const catalog = catalogWith();
    const events = eventsOf([['start', 'session', '09:00']]);
    const { state } = fold(events, catalog);
    expect(() => applyEvent(state, events[0]!, catalog)).toThrow(RangeError);
  });

  it('leaves input state unchanged', () => {
    const catalog = catalogWith();
    const { state } = fold(eventsOf([['start', 'session', '09:00']]), catalog);
    const copy = structuredClone(state);
    applyEvent(state, { ...eventsOf([['end', 'session', '10:00']])[0]!, seq: 2, id: 'e2' }, catalog);
    expect(state).toEqual(copy);
  });

  it('tracks activity and seq', () => {
    const { state } = fold(eventsOf([['start', 'session', '09:00'], ['point', '09:30']]), catalogWith());
    expect(state.lastActivityAt).toBe(at('09:30'));
    expect(state.position).toEqual({ at: at('09:30'), seq: 2 });
    expect(state.appliedSeq).toBe(2);
  });
});
