/**
 * A reference model of pairing and correction for one user. It is written from
 * the product contract and the API documentation alone, and shares no code
 * with src/domain. It records what the user sent in arrival order, with the
 * receipt flags (FUTURE_TIMESTAMP, LATE_EVENT, LATE_BEYOND_HORIZON), and
 * derives segments, corrections and ORPHAN_END flags by replaying the applied
 * events in (occurredAt, arrival) order up to a given now.
 *
 * Its output uses the keys of `normaliseTimeline` in ./replay.ts: a client
 * event is `client:<clientId>`, a correction `<rule>(<cause key>,<pairType>,<pairKey>)`
 * and a segment `segment:<start event key>`.
 *
 * Choices the contract leaves open, taken from the API documentation:
 * - the deadline of an open instance is its timeout added to the later of its
 *   start and the user's last activity, and activity includes the ends the
 *   model synthesises;
 * - an event at a deadline comes too late to keep the pair open, and all
 *   instances that share a deadline close there. The model closes parents
 *   first, so that a child never ends after its parent;
 * - a child's parent is the open parent instance with the same pair key, else
 *   the most recently started one, else a synthesised start with the empty key;
 * - empty segments are not listed, but their corrections are;
 * - the cause of an AUTO_CLOSE is the start event of the segment it closes,
 *   and the cause of the ends of the children (and grandchildren) it closes
 *   is that AUTO_CLOSE correction.
 *
 * The contract leaves two more points open, and the model follows the service
 * there. Lateness is measured against the latest `occurredAt` of the user's
 * applied client events, so an AUTO_CLOSE end at a deadline after them does
 * not make an event late. A chain of MISSING_PARENT_START corrections, and
 * the ends of the children of a segment that a client end or a duplicate
 * start ended, all name the client event that set them off.
 */
import type { NormalisedCorrection, NormalisedSegment } from './replay.js';

export type EndAt = 'LAST_ACTIVITY' | 'DEADLINE';

export interface ReferencePairType {
  name: string;
  startType: string;
  endType: string;
  parent: string | null;
  timeoutSeconds: number;
  endAt: EndAt;
}

export interface ReferencePolicy {
  timeoutSeconds: number;
  endAt: EndAt;
}

/** One event as a client sends it. An omitted `occurredAt` means the receipt time. */
export interface ReferenceInput {
  id: string;
  type: string;
  pairKey?: string;
  occurredAt?: string;
}

export interface ReferenceSettings {
  clockSkewSeconds: number;
  latenessHorizonSeconds: number;
}

interface StoredEvent {
  clientId: string;
  type: string;
  /** Pair type and role of the event's type when it was received, which later definitions do not change. */
  role: { pairType: string; role: 'START' | 'END' } | undefined;
  pairKey: string;
  /** Instant at which the event applies, in ms since the epoch. */
  at: number;
  arrival: number;
  receiptFlags: string[];
  applied: boolean;
  /** The input as sent, to tell a duplicate from a conflict. */
  sent: string;
}

interface OpenInstance {
  pairType: string;
  pairKey: string;
  start: number;
  startKey: string;
  opening: number;
  parent: OpenInstance | null;
  children: OpenInstance[];
  segment: ModelSegment;
}

interface ModelSegment {
  key: string;
  pairType: string;
  pairKey: string;
  start: number;
  end: number | null;
  endReason: string | null;
  parent: string | null;
  endEvent: string | null;
}

export interface ReferenceTimeline {
  /** Listed segments (open or longer than zero), sorted as `normaliseTimeline` sorts them. */
  segments: NormalisedSegment[];
  corrections: NormalisedCorrection[];
  /** Client id to the event's applied `occurredAt`, as an ISO string. */
  occurredAt: Map<string, string>;
  /** Client id to its sorted flags. */
  flags: Map<string, string[]>;
}

function compareText(a: string, b: string): number {
  if (a === b) {
    return 0;
  }
  return a < b ? -1 : 1;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class ReferenceUser {
  private readonly events: StoredEvent[] = [];
  private readonly byClientId = new Map<string, StoredEvent>();
  private readonly preferences = new Map<string, ReferencePolicy>();
  private readonly pairTypes = new Map<string, ReferencePairType>();
  private readonly roleOfType = new Map<string, { pairType: string; role: 'START' | 'END' }>();
  /** Latest `occurredAt` among applied events, the reference for lateness. */
  private latestApplied: number | null = null;

  constructor(
    pairTypes: readonly ReferencePairType[],
    private readonly settings: ReferenceSettings,
  ) {
    for (const pairType of pairTypes) {
      this.definePairType(pairType);
    }
  }

  /**
   * Adds a pair type, or replaces the parent and policy of one. Events received
   * later take their role from it, and the parent and policy apply to the
   * whole history.
   */
  definePairType(pairType: ReferencePairType): void {
    this.pairTypes.set(pairType.name, pairType);
    this.roleOfType.set(pairType.startType, { pairType: pairType.name, role: 'START' });
    this.roleOfType.set(pairType.endType, { pairType: pairType.name, role: 'END' });
  }

  setPreference(pairType: string, policy: ReferencePolicy): void {
    this.preferences.set(pairType, policy);
  }

  /** Records one received event and returns whether it was a duplicate of an earlier one. */
  receive(input: ReferenceInput, receiptMs: number): { duplicate: boolean } {
    const sent = JSON.stringify([input.type, input.pairKey ?? '', input.occurredAt ?? null]);
    const earlier = this.byClientId.get(input.id);
    if (earlier !== undefined) {
      if (earlier.sent !== sent) {
        throw new Error(`the model does not cover idempotency conflicts (client id ${input.id})`);
      }
      return { duplicate: true };
    }

    const receiptFlags: string[] = [];
    let at = input.occurredAt === undefined ? receiptMs : Date.parse(input.occurredAt);
    if (at > receiptMs + this.settings.clockSkewSeconds * 1000) {
      at = receiptMs;
      receiptFlags.push('FUTURE_TIMESTAMP');
    }

    let applied = true;
    if (this.latestApplied !== null && at < this.latestApplied) {
      if (at < this.latestApplied - this.settings.latenessHorizonSeconds * 1000) {
        receiptFlags.push('LATE_BEYOND_HORIZON');
        applied = false;
      } else {
        receiptFlags.push('LATE_EVENT');
      }
    }
    if (applied) {
      this.latestApplied = Math.max(this.latestApplied ?? at, at);
    }

    const role = this.roleOfType.get(input.type);
    const event: StoredEvent = {
      clientId: input.id,
      type: input.type,
      role,
      pairKey: role === undefined ? '' : (input.pairKey ?? ''),
      at,
      arrival: this.events.length,
      receiptFlags,
      applied,
      sent,
    };
    this.events.push(event);
    this.byClientId.set(input.id, event);
    return { duplicate: false };
  }

  /** Replays the applied events and closes the instances whose deadline is at or before `nowMs`. */
  derive(nowMs: number): ReferenceTimeline {
    return new Fold(this, nowMs).run();
  }

  /** @internal */ appliedInOrder(): StoredEvent[] {
    return this.events.filter((event) => event.applied).sort((a, b) => a.at - b.at || a.arrival - b.arrival);
  }

  /** @internal */ allEvents(): readonly StoredEvent[] {
    return this.events;
  }

  /** @internal */ pairType(name: string): ReferencePairType {
    const pairType = this.pairTypes.get(name);
    if (pairType === undefined) {
      throw new Error(`unknown pair type ${name}`);
    }
    return pairType;
  }

  /** @internal */ policy(name: string): ReferencePolicy {
    return this.preferences.get(name) ?? this.pairType(name);
  }
}

/** One replay of a user's applied events. */
class Fold {
  private readonly open: OpenInstance[] = [];
  private readonly segments: ModelSegment[] = [];
  private readonly corrections: NormalisedCorrection[] = [];
  private readonly orphanEnds = new Set<string>();
  private lastActivity: number | null = null;
  private openings = 0;

  constructor(
    private readonly user: ReferenceUser,
    private readonly nowMs: number,
  ) {}

  run(): ReferenceTimeline {
    for (const event of this.user.appliedInOrder()) {
      this.closeDue(event.at);
      this.apply(event);
      this.touch(event.at);
    }
    this.closeDue(this.nowMs);

    const segments = this.segments
      .filter((segment) => segment.end === null || segment.end > segment.start)
      .map((segment) => ({
        key: segment.key,
        pairType: segment.pairType,
        pairKey: segment.pairKey,
        start: iso(segment.start),
        end: segment.end === null ? null : iso(segment.end),
        endReason: segment.endReason,
        parent: segment.parent,
        endEvent: segment.endEvent,
      }))
      .sort((a, b) => compareText(a.start, b.start) || compareText(a.key, b.key));
    const corrections = [...this.corrections].sort(
      (a, b) => compareText(a.occurredAt, b.occurredAt) || compareText(a.key, b.key),
    );
    const occurredAt = new Map<string, string>();
    const flags = new Map<string, string[]>();
    for (const event of this.user.allEvents()) {
      occurredAt.set(event.clientId, iso(event.at));
      const eventFlags = [...event.receiptFlags];
      if (this.orphanEnds.has(event.clientId)) {
        eventFlags.push('ORPHAN_END');
      }
      flags.set(event.clientId, eventFlags.sort(compareText));
    }
    return { segments, corrections, occurredAt, flags };
  }

  private touch(at: number): void {
    this.lastActivity = Math.max(this.lastActivity ?? at, at);
  }

  private deadlineOf(instance: OpenInstance): number {
    const base = Math.max(instance.start, this.lastActivity ?? instance.start);
    return base + this.user.policy(instance.pairType).timeoutSeconds * 1000;
  }

  /** Auto-closes, in deadline order, every open instance whose deadline is at or before `limit`. */
  private closeDue(limit: number): void {
    for (;;) {
      if (this.open.length === 0) {
        return;
      }
      const deadlines = this.open.map((instance) => this.deadlineOf(instance));
      const earliest = Math.min(...deadlines);
      if (earliest > limit) {
        return;
      }
      // All instances that share the deadline close there, parents first, so
      // that an end synthesised at the deadline does not extend the others.
      const due = this.open
        .filter((_, index) => deadlines[index] === earliest)
        .sort((a, b) => depthOf(a) - depthOf(b) || a.opening - b.opening);
      const lastActivity = this.lastActivity;
      let latestEnd = lastActivity ?? earliest;
      for (const instance of due) {
        if (!this.open.includes(instance)) {
          continue;
        }
        const policy = this.user.policy(instance.pairType);
        const end =
          policy.endAt === 'DEADLINE' ? earliest : Math.max(instance.start, lastActivity ?? instance.start);
        const key = `AUTO_CLOSE(${instance.startKey},${instance.pairType},${instance.pairKey})`;
        this.corrections.push({
          key,
          type: this.user.pairType(instance.pairType).endType,
          rule: 'AUTO_CLOSE',
          occurredAt: iso(end),
          cause: instance.startKey,
        });
        this.close(instance, end, 'AUTO_CLOSE', key, key);
        latestEnd = Math.max(latestEnd, end);
      }
      this.touch(latestEnd);
    }
  }

  private apply(event: StoredEvent): void {
    const role = event.role;
    if (role === undefined) {
      return;
    }
    const eventKey = `client:${event.clientId}`;
    const current = this.open.find(
      (instance) => instance.pairType === role.pairType && instance.pairKey === event.pairKey,
    );
    if (role.role === 'END') {
      if (current === undefined) {
        this.orphanEnds.add(event.clientId);
      } else {
        this.close(current, event.at, 'CLIENT', eventKey, eventKey);
      }
      return;
    }
    if (current !== undefined) {
      const key = `DUPLICATE_START(${eventKey},${current.pairType},${current.pairKey})`;
      this.corrections.push({
        key,
        type: this.user.pairType(current.pairType).endType,
        rule: 'DUPLICATE_START',
        occurredAt: iso(event.at),
        cause: eventKey,
      });
      this.close(current, event.at, 'DUPLICATE_START', key, eventKey);
    }
    this.openInstance(role.pairType, event.pairKey, event.at, eventKey, eventKey);
  }

  /** Opens an instance, first finding or synthesising its parent instance. */
  private openInstance(
    pairTypeName: string,
    pairKey: string,
    at: number,
    startKey: string,
    cause: string,
  ): OpenInstance {
    const pairType = this.user.pairType(pairTypeName);
    let parent: OpenInstance | null = null;
    if (pairType.parent !== null) {
      const candidates = this.open.filter((instance) => instance.pairType === pairType.parent);
      parent =
        candidates.find((instance) => instance.pairKey === pairKey) ??
        candidates.sort((a, b) => b.start - a.start || b.opening - a.opening)[0] ??
        null;
      if (parent === null) {
        const key = `MISSING_PARENT_START(${cause},${pairType.parent},)`;
        this.corrections.push({
          key,
          type: this.user.pairType(pairType.parent).startType,
          rule: 'MISSING_PARENT_START',
          occurredAt: iso(at),
          cause,
        });
        parent = this.openInstance(pairType.parent, '', at, key, cause);
      }
    }
    const segment: ModelSegment = {
      key: `segment:${startKey}`,
      pairType: pairTypeName,
      pairKey,
      start: at,
      end: null,
      endReason: null,
      parent: parent === null ? null : parent.segment.key,
      endEvent: null,
    };
    this.segments.push(segment);
    const instance: OpenInstance = {
      pairType: pairTypeName,
      pairKey,
      start: at,
      startKey,
      opening: this.openings++,
      parent,
      children: [],
      segment,
    };
    parent?.children.push(instance);
    this.open.push(instance);
    return instance;
  }

  /** Ends an instance and, with CHILD_CLOSED_WITH_PARENT corrections caused by `childCause`, its open children. */
  private close(instance: OpenInstance, at: number, reason: string, endKey: string, childCause: string): void {
    const index = this.open.indexOf(instance);
    if (index < 0) {
      throw new Error(`instance ${instance.startKey} is not open`);
    }
    this.open.splice(index, 1);
    instance.segment.end = at;
    instance.segment.endReason = reason;
    instance.segment.endEvent = endKey;
    for (const child of instance.children) {
      if (!this.open.includes(child)) {
        continue;
      }
      const key = `CHILD_CLOSED_WITH_PARENT(${childCause},${child.pairType},${child.pairKey})`;
      this.corrections.push({
        key,
        type: this.user.pairType(child.pairType).endType,
        rule: 'CHILD_CLOSED_WITH_PARENT',
        occurredAt: iso(at),
        cause: childCause,
      });
      this.close(child, at, 'PARENT_CLOSED', key, childCause);
    }
  }
}

function depthOf(instance: OpenInstance): number {
  let depth = 0;
  for (let parent = instance.parent; parent !== null; parent = parent.parent) {
    depth += 1;
  }
  return depth;
}
