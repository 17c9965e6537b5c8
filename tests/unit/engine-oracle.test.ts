/**
 * The pairing engine against a small model written from the product rules
 * alone. Events apply in (occurredAt, seq) order. Before each event, the
 * instances whose deadline (last activity plus timeout) is at or before it
 * close together, and their ends count as activity. The model keeps
 * instances in a plain list and shares no code with the engine.
 */
import { describe, expect, it } from 'vitest';

import type { AutoClosePolicy, EngineEvent, PairTypeDefinition } from '../../src/domain/pairing/index.js';
import { catalogOf, replayInOrder } from '../support/engine.js';
import { seededRandom } from '../support/random.js';

const BASE = Date.parse('2025-06-02T08:00:00Z');
const CASES = 500;

const DEFINITIONS: PairTypeDefinition[] = [
  { name: 'session', startType: 'session_started', endType: 'session_ended', parent: null, autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
  { name: 'task', startType: 'task_started', endType: 'task_ended', parent: 'session', autoClose: { timeoutSeconds: 1800, endAt: 'LAST_ACTIVITY' } },
  { name: 'focus', startType: 'focus_started', endType: 'focus_ended', parent: 'task', autoClose: { timeoutSeconds: 600, endAt: 'DEADLINE' } },
  { name: 'call', startType: 'call_started', endType: 'call_ended', parent: null, autoClose: { timeoutSeconds: 900, endAt: 'DEADLINE' } },
];

interface ModelInstance {
  pairType: string;
  pairKey: string;
  startAt: number;
  startSeq: number;
  parent: ModelInstance | null;
  endAt: number | null;
  endReason: string | null;
}

/** Folds the events in (occurredAt, seq) order by the rules, then closes what is due at `now`. */
function model(
  events: readonly EngineEvent[],
  policies: ReadonlyMap<string, AutoClosePolicy>,
  now: number,
): { instances: ModelInstance[]; orphanEnds: string[] } {
  const definitionOf = (name: string) => DEFINITIONS.find((definition) => definition.name === name)!;
  const policyOf = (name: string) => policies.get(name) ?? definitionOf(name).autoClose;
  const all: ModelInstance[] = [];
  const orphanEnds: string[] = [];
  let lastActivity: number | null = null;

  const openOnes = () => all.filter((instance) => instance.endAt === null);
  const depthOf = (instance: ModelInstance): number => (instance.parent === null ? 0 : 1 + depthOf(instance.parent));
  const deadlineOf = (instance: ModelInstance) =>
    Math.max(instance.startAt, lastActivity ?? instance.startAt) + policyOf(instance.pairType).timeoutSeconds * 1000;
  const close = (instance: ModelInstance, endAt: number, reason: string) => {
    for (const child of openOnes().filter((other) => other.parent === instance)) {
      close(child, endAt, 'PARENT_CLOSED');
    }
    instance.endAt = endAt;
    instance.endReason = reason;
  };
  const autoCloseThrough = (limit: number) => {
    for (;;) {
      const open = openOnes();
      if (open.length === 0) {
        return;
      }
      const due = Math.min(...open.map(deadlineOf));
      if (due > limit) {
        return;
      }
      // Every instance due at that instant closes there, parents first, and
      // their ends then count as activity.
      const closing = open.filter((instance) => deadlineOf(instance) === due).sort((a, b) => depthOf(a) - depthOf(b));
      const ends: number[] = [];
      const activity = lastActivity;
      for (const instance of closing) {
        if (instance.endAt !== null) {
          continue;
        }
        const endAt = policyOf(instance.pairType).endAt === 'DEADLINE' ? due : Math.max(instance.startAt, activity ?? instance.startAt);
        close(instance, endAt, 'AUTO_CLOSE');
        ends.push(endAt);
      }
      lastActivity = Math.max(lastActivity ?? -Infinity, ...ends);
    }
  };
  const parentFor = (parentType: string, pairKey: string, event: EngineEvent): ModelInstance => {
    const open = openOnes().filter((instance) => instance.pairType === parentType);
    const sameKey = open.find((instance) => instance.pairKey === pairKey);
    if (sameKey !== undefined) {
      return sameKey;
    }
    const latest = open.sort((a, b) => b.startAt - a.startAt || b.startSeq - a.startSeq)[0];
    if (latest !== undefined) {
      return latest;
    }
    const grandparentType = definitionOf(parentType).parent;
    const parent = grandparentType === null ? null : parentFor(grandparentType, '', event);
    const synthesised: ModelInstance = { pairType: parentType, pairKey: '', startAt: event.occurredAt, startSeq: event.seq, parent, endAt: null, endReason: null };
    all.push(synthesised);
    return synthesised;
  };

  const ordered = [...events].sort((a, b) => a.occurredAt - b.occurredAt || a.seq - b.seq);
  for (const event of ordered) {
    autoCloseThrough(event.occurredAt);
    if (event.pairType !== null) {
      const running = openOnes().find((instance) => instance.pairType === event.pairType && instance.pairKey === event.pairKey);
      if (event.role === 'START') {
        if (running !== undefined) {
          close(running, event.occurredAt, 'DUPLICATE_START');
        }
        const parentType = definitionOf(event.pairType).parent;
        const parent = parentType === null ? null : parentFor(parentType, event.pairKey, event);
        all.push({ pairType: event.pairType, pairKey: event.pairKey, startAt: event.occurredAt, startSeq: event.seq, parent, endAt: null, endReason: null });
      } else if (running !== undefined) {
        close(running, event.occurredAt, 'CLIENT');
      } else {
        orphanEnds.push(event.id);
      }
    }
    lastActivity = event.occurredAt;
  }
  autoCloseThrough(now);
  return { instances: all, orphanEnds };
}

function generate(random: () => number, count: number): EngineEvent[] {
  const kinds = [...DEFINITIONS.flatMap((definition) => [definition.startType, definition.endType]), 'heartbeat', 'heartbeat'];
  const seqs = Array.from({ length: count }, (_, index) => index + 1).sort(() => random() - 0.5);
  const events: EngineEvent[] = [];
  let at = BASE;
  for (let index = 0; index < count; index += 1) {
    const type = kinds[Math.floor(random() * kinds.length)]!;
    const definition = DEFINITIONS.find((candidate) => candidate.startType === type || candidate.endType === type);
    let role: EngineEvent['role'] = 'POINT';
    if (definition !== undefined) {
      role = definition.startType === type ? 'START' : 'END';
    }
    events.push({
      id: `e${index}`,
      seq: seqs[index]!,
      type,
      occurredAt: at,
      role,
      pairType: definition?.name ?? null,
      pairKey: definition === undefined ? '' : ['', 'a', 'b'][Math.floor(random() * 3)]!,
      ignored: false,
    });
    // A quarter of the events share an instant, and a tenth of the gaps exceed every timeout.
    const roll = random();
    if (roll >= 0.35) {
      at += Math.floor(random() * 700) * 1000;
    } else if (roll >= 0.25) {
      at += (2000 + Math.floor(random() * 2000)) * 1000;
    }
  }
  return events;
}

describe('engine against rules model', () => {
  it('segments agree', () => {
    for (let seed = 1; seed <= CASES; seed += 1) {
      // The seed is scrambled so that neighbouring seeds start far apart.
      const random = seededRandom(seed * 2654435761 + 1);
      const events = generate(random, 5 + Math.floor(random() * 40));
      const policies = new Map<string, AutoClosePolicy>();
      for (const definition of DEFINITIONS) {
        if (random() < 0.5) {
          policies.set(definition.name, {
            timeoutSeconds: [60, 300, 600, 1800][Math.floor(random() * 4)]!,
            endAt: random() < 0.5 ? 'DEADLINE' : 'LAST_ACTIVITY',
          });
        }
      }
      const now = events.at(-1)!.occurredAt + Math.floor(random() * 4000) * 1000;

      const expected = model(events, policies, now);
      const describeModel = (instance: ModelInstance): string =>
        `${instance.pairType}/${instance.pairKey} ${instance.startAt - BASE}..${instance.endAt === null ? 'open' : instance.endAt - BASE} ${instance.endReason ?? ''} in ${instance.parent === null ? '-' : `${instance.parent.pairType}@${instance.parent.startAt - BASE}`}`;

      const { snapshot } = replayInOrder(events, catalogOf(DEFINITIONS, policies), now);
      const byId = new Map(snapshot.segments.map((segment) => [segment.segmentId, segment]));
      const actual = snapshot.segments.map((segment) => {
        const parent = segment.parentSegmentId === null ? null : byId.get(segment.parentSegmentId)!;
        const end = segment.status === 'closed' ? `${segment.endAt - BASE} ${segment.endReason}` : 'open ';
        const [endAt, endReason] = end.split(' ');
        return `${segment.pairType}/${segment.pairKey} ${segment.startAt - BASE}..${endAt} ${endReason} in ${parent === null ? '-' : `${parent.pairType}@${parent.startAt - BASE}`}`;
      });

      expect(actual.sort(), `segments of seed ${seed}`).toEqual(expected.instances.map(describeModel).sort());
      expect(snapshot.flags.map((flag) => flag.eventId).sort(), `orphan ends of seed ${seed}`).toEqual(expected.orphanEnds.sort());
    }
  });
});
