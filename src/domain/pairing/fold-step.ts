/**
 * One engine step: a working copy of the state that the pairing rules change,
 * and the output they produce. `engine.ts` creates a step per call and returns
 * the copy as the new state, so the state passed in never changes.
 */
import { assertNever } from '../errors.js';
import { correctionIdFor, segmentIdFor } from './ids.js';
import { autoClosePosition, comparePositions, positionOfEvent } from './position.js';
import type {
  AutoClosePolicy,
  Correction,
  EndReason,
  EngineEvent,
  EngineOutput,
  EngineState,
  EngineStep,
  Instant,
  OpenInstance,
  PairCatalog,
  PairTypeDefinition,
  Position,
  SynthesisRule,
} from './types.js';

/** Returns the key of an instance: pair type and pair key joined by NUL. */
export function instanceKeyOf(pairType: string, pairKey: string): string {
  return `${pairType}\u0000${pairKey}`;
}

/**
 * A fold met a pair type that its catalog lacks. Pair types are never
 * deleted, so the catalog is older than the pair type, and a fold with a
 * fresh catalog succeeds.
 */
export class UnknownPairTypeError extends Error {
  constructor(readonly pairType: string) {
    super(`Pair type ${JSON.stringify(pairType)} is not in the catalog.`);
    this.name = 'UnknownPairTypeError';
  }
}

/** Returns the definition of a pair type, or throws UnknownPairTypeError when the catalog lacks it. */
export function definitionOf(catalog: PairCatalog, pairType: string): PairTypeDefinition {
  const definition = catalog.byName.get(pairType);
  if (definition === undefined) {
    throw new UnknownPairTypeError(pairType);
  }
  return definition;
}

/** Returns the user's effective policy for a pair type, falling back to the type's default. */
export function policyOf(catalog: PairCatalog, pairType: string): AutoClosePolicy {
  return catalog.policies.get(pairType) ?? definitionOf(catalog, pairType).autoClose;
}

/**
 * Returns the auto-close deadline of an open instance: the later of its start
 * and the last activity, plus the timeout of its effective policy.
 */
export function deadlineOf(
  instance: OpenInstance,
  lastActivityAt: Instant | null,
  catalog: PairCatalog,
): Instant {
  const { timeoutSeconds } = policyOf(catalog, instance.pairType);
  if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1) {
    // A zero timeout would put the deadline at the start, before the start position.
    throw new RangeError(
      `Auto-close timeout of pair type ${JSON.stringify(instance.pairType)} is ${timeoutSeconds} s, but it must be a whole number of seconds, 1 or more.`,
    );
  }
  const activeAt = Math.max(instance.startAt, lastActivityAt ?? instance.startAt);
  return activeAt + timeoutSeconds * 1000;
}

/** The end of the root of a closed subtree: a client end event, or a synthesised end. */
type RootEnd =
  | { kind: 'client'; endEventId: string }
  | { kind: 'synthesised'; rule: 'DUPLICATE_START' | 'AUTO_CLOSE'; causeEventId: string };

interface SubtreeClose {
  root: OpenInstance;
  endAt: Instant;
  decidedAt: Position;
  rootEnd: RootEnd;
  /** Cause of the CHILD_CLOSED_WITH_PARENT ends of the root's descendants. */
  childCauseEventId: string;
}

/** Key of a position in `FoldStep.correctionsAt`. */
function positionKey(position: Position): string {
  return `${position.at}:${position.seq}`;
}

export class FoldStep {
  /**
   * The open instances: the state's own record until the first change, then
   * a copy. Copying a record of many keys costs time linear in them, so a
   * step that opens and closes nothing returns the record it was given.
   */
  private open: Record<string, OpenInstance>;
  private openCopied = false;
  private lastActivityAt: Instant | null;
  private position: Position | null;
  private appliedSeq: number;
  private lastAutoCloseAt: Position | null | undefined;
  private readonly output: EngineOutput = { corrections: [], segments: [], flags: [] };
  /** Number of corrections in `output` at each position, keyed "at:seq". */
  private readonly correctionsAt = new Map<string, number>();
  /**
   * Open instances of each pair type looked up in this step, by start
   * position, the latest last. Built on the first lookup of the type. An
   * instance that closes stays until a lookup finds it on top and drops it.
   */
  private readonly openByStart = new Map<string, OpenInstance[]>();
  /** Instance keys of the open children of each open instance, by parent key. Built on the first close of this step. */
  private childKeys: Map<string, Set<string>> | null = null;
  /** The shortest auto-close timeout in the catalog in ms, computed on first use. */
  private shortestTimeoutMs: number | null = null;

  constructor(
    state: EngineState,
    private readonly catalog: PairCatalog,
  ) {
    this.open = state.open;
    this.lastActivityAt = state.lastActivityAt;
    this.position = state.position;
    this.appliedSeq = state.appliedSeq;
    this.lastAutoCloseAt = state.lastAutoCloseAt;
    // An overdue auto-close decided in this step can sit at the position of
    // an earlier step's corrections, so their count carries over.
    if (state.position !== null && state.nextOrdinal !== undefined) {
      this.correctionsAt.set(positionKey(state.position), state.nextOrdinal);
    }
  }

  /** Returns the working state as the new state, with the output. */
  finish(): EngineStep {
    const nextOrdinal = this.position === null ? undefined : this.correctionsAt.get(positionKey(this.position));
    return {
      state: {
        version: 1,
        open: this.open,
        lastActivityAt: this.lastActivityAt,
        position: this.position,
        appliedSeq: this.appliedSeq,
        ...(this.lastAutoCloseAt === undefined ? {} : { lastAutoCloseAt: this.lastAutoCloseAt }),
        ...(nextOrdinal === undefined ? {} : { nextOrdinal }),
      },
      output: this.output,
    };
  }

  /** Records that an ignored event was seen, without applying it. */
  skipIgnored(event: EngineEvent): void {
    this.appliedSeq = Math.max(this.appliedSeq, event.seq);
  }

  /** Applies a client event after the auto-closes that are due before it. */
  applyClientEvent(event: EngineEvent): void {
    const position = positionOfEvent(event);
    if (this.position !== null && comparePositions(position, this.position) <= 0) {
      throw new RangeError(
        `Event ${event.id} at (${event.occurredAt}, ${event.seq}) is not after the state position (${this.position.at}, ${this.position.seq}). Restore the state at the event's position first.`,
      );
    }

    this.autoCloseThrough(event.occurredAt);

    switch (event.role) {
      case 'START':
        this.applyStart(event, position);
        break;
      case 'END':
        this.applyEnd(event, position);
        break;
      case 'POINT':
        break;
      default:
        assertNever(event.role);
    }

    this.lastActivityAt = event.occurredAt;
    this.position = position;
    this.appliedSeq = Math.max(this.appliedSeq, event.seq);
  }

  /**
   * Auto-closes every open instance whose deadline is at or before `limit`, in
   * deadline order. Ties go to the shallower instance, then the earlier start
   * position, then the smaller instance key.
   */
  autoCloseThrough(limit: Instant): void {
    // Activity of the ends synthesised so far, not yet counted. An event at
    // a deadline comes too late to keep its instance open, so a DEADLINE end
    // at instant D only moves deadlines that lie after D. Instances due at D
    // close at D too, whichever of them comes first.
    let pendingActivity: Instant | null = null;
    for (;;) {
      const due = this.firstDue(limit);
      if (due === null || (pendingActivity !== null && due.deadline > pendingActivity)) {
        if (pendingActivity === null) {
          return;
        }
        if (this.lastActivityAt === null || pendingActivity > this.lastActivityAt) {
          this.lastActivityAt = pendingActivity;
        }
        pendingActivity = null;
        continue;
      }

      const { instance, deadline } = due;
      // Deadlines only move later while events are applied in position order,
      // so a deadline before the position means a policy was shortened after
      // the state was built. The close is then decided at the current
      // position: history already applied is not rewritten.
      // A full replay applies the new policy to the whole history instead. A
      // user's preference change replays that user at once, and a pair type's
      // change queues its users for the replay worker.
      // NOTE: until that replay, the served segments and a rebuild differ, in
      // decision positions and in the ends of auto-closed segments.
      const deadlinePosition = autoClosePosition(deadline);
      const decidedAt =
        this.position !== null && comparePositions(deadlinePosition, this.position) < 0
          ? this.position
          : deadlinePosition;

      const policy = policyOf(this.catalog, instance.pairType);
      const endAt =
        policy.endAt === 'DEADLINE'
          ? deadline
          : Math.max(instance.startAt, this.lastActivityAt ?? instance.startAt);
      const autoCloseId = correctionIdFor(
        instance.startEventId,
        'AUTO_CLOSE',
        instance.pairType,
        instance.pairKey,
      );

      this.closeSubtree({
        root: instance,
        endAt,
        decidedAt,
        rootEnd: { kind: 'synthesised', rule: 'AUTO_CLOSE', causeEventId: instance.startEventId },
        childCauseEventId: autoCloseId,
      });
      this.position = decidedAt;
      // Decisions come in position order, so this one is the last so far.
      this.lastAutoCloseAt = decidedAt;

      // The synthesised end is an event of the user, so it counts as activity.
      // A DEADLINE end lies after the last activity; without this an ancestor
      // with LAST_ACTIVITY could end before the child that it contains.
      pendingActivity = pendingActivity === null ? endAt : Math.max(pendingActivity, endAt);
    }
  }

  private firstDue(limit: Instant): { instance: OpenInstance; deadline: Instant } | null {
    // Every deadline is at least the last activity plus the shortest timeout,
    // so when that lies after the limit nothing is due and the scan is skipped.
    if (this.lastActivityAt !== null && this.lastActivityAt + this.shortestTimeout() > limit) {
      return null;
    }
    let best: { instance: OpenInstance; deadline: Instant; depth: number } | null = null;
    const instances = Object.values(this.open);
    for (const instance of instances) {
      const deadline = deadlineOf(instance, this.lastActivityAt, this.catalog);
      // A later deadline cannot win, so its depth is not worth computing.
      if (deadline > limit || (best !== null && deadline > best.deadline)) {
        continue;
      }
      const candidate = { instance, deadline, depth: this.depthOf(instance) };
      if (best === null || compareDue(candidate, best) < 0) {
        best = candidate;
      }
    }
    return best === null ? null : { instance: best.instance, deadline: best.deadline };
  }

  private applyStart(event: EngineEvent, position: Position): void {
    const pairType = requirePairType(event);
    const key = instanceKeyOf(pairType, event.pairKey);

    const running = this.open[key];
    if (running !== undefined) {
      this.closeSubtree({
        root: running,
        endAt: event.occurredAt,
        decidedAt: position,
        rootEnd: { kind: 'synthesised', rule: 'DUPLICATE_START', causeEventId: event.id },
        childCauseEventId: event.id,
      });
    }

    const definition = definitionOf(this.catalog, pairType);
    const parent =
      definition.parent === null
        ? null
        : this.resolveParent(definition.parent, event.pairKey, event, position, [pairType]);

    this.openInstance({
      segmentId: segmentIdFor(event.id),
      pairType,
      pairKey: event.pairKey,
      startAt: event.occurredAt,
      startSeq: event.seq,
      startEventId: event.id,
      parentKey: parent === null ? null : instanceKeyOf(parent.pairType, parent.pairKey),
      parentSegmentId: parent === null ? null : parent.segmentId,
    });
  }

  private applyEnd(event: EngineEvent, position: Position): void {
    const pairType = requirePairType(event);
    const running = this.open[instanceKeyOf(pairType, event.pairKey)];
    if (running === undefined) {
      this.output.flags.push({ eventId: event.id, rule: 'ORPHAN_END', position });
      return;
    }
    this.closeSubtree({
      root: running,
      endAt: event.occurredAt,
      decidedAt: position,
      rootEnd: { kind: 'client', endEventId: event.id },
      childCauseEventId: event.id,
    });
  }

  /**
   * Returns the open instance of `parentType` that a new child with `pairKey`
   * belongs to: the one with the same key, else the most recently started one.
   * When none is open, synthesises a MISSING_PARENT_START with key "" at the
   * cause's position, after resolving that start's own parent (so the root
   * starts first).
   */
  private resolveParent(
    parentType: string,
    pairKey: string,
    cause: EngineEvent,
    position: Position,
    chain: readonly string[],
  ): OpenInstance {
    if (chain.includes(parentType)) {
      throw new Error(`Pair type ${JSON.stringify(parentType)} is its own ancestor: ${chain.join(' -> ')}.`);
    }

    const sameKey = this.open[instanceKeyOf(parentType, pairKey)];
    if (sameKey !== undefined) {
      return sameKey;
    }
    const latest = this.latestOpenOfType(parentType);
    if (latest !== null) {
      return latest;
    }

    const definition = definitionOf(this.catalog, parentType);
    const grandparent =
      definition.parent === null
        ? null
        : this.resolveParent(definition.parent, '', cause, position, [...chain, parentType]);

    const correction = this.addCorrection({
      id: correctionIdFor(cause.id, 'MISSING_PARENT_START', parentType, ''),
      type: definition.startType,
      role: 'START',
      pairType: parentType,
      pairKey: '',
      occurredAt: cause.occurredAt,
      rule: 'MISSING_PARENT_START',
      causeEventId: cause.id,
      position,
    });
    return this.openInstance({
      segmentId: segmentIdFor(correction.id),
      pairType: parentType,
      pairKey: '',
      startAt: cause.occurredAt,
      startSeq: cause.seq,
      startEventId: correction.id,
      parentKey:
        grandparent === null ? null : instanceKeyOf(grandparent.pairType, grandparent.pairKey),
      parentSegmentId: grandparent === null ? null : grandparent.segmentId,
    });
  }

  /**
   * Returns the open instance of a type with the latest start position. No
   * two open instances of one type share a start position, because one
   * client event opens at most one instance of each type.
   */
  private latestOpenOfType(pairType: string): OpenInstance | null {
    let stack = this.openByStart.get(pairType);
    if (stack === undefined) {
      stack = Object.values(this.open).filter((instance) => instance.pairType === pairType);
      stack.sort(compareStarts);
      this.openByStart.set(pairType, stack);
    }
    for (;;) {
      const top = stack.at(-1);
      if (top === undefined) {
        return null;
      }
      if (this.open[instanceKeyOf(top.pairType, top.pairKey)] === top) {
        return top;
      }
      stack.pop();
    }
  }

  private openInstance(instance: OpenInstance): OpenInstance {
    const key = instanceKeyOf(instance.pairType, instance.pairKey);
    this.ownOpen()[key] = instance;
    // The fold opens instances at its current position, which is at or after
    // the start of every open instance, so the new one is the latest of its type.
    this.openByStart.get(instance.pairType)?.push(instance);
    if (this.childKeys !== null && instance.parentKey !== null) {
      addChildKey(this.childKeys, instance.parentKey, key);
    }
    this.output.segments.push({
      kind: 'opened',
      segmentId: instance.segmentId,
      pairType: instance.pairType,
      pairKey: instance.pairKey,
      startAt: instance.startAt,
      startSeq: instance.startSeq,
      startEventId: instance.startEventId,
      parentSegmentId: instance.parentSegmentId,
      // Every ancestor of an instance that opens is open.
      depth: this.depthOf(instance),
    });
    return instance;
  }

  /**
   * Closes an instance and its open descendants at one instant. Descendants
   * end first, deepest first, with CHILD_CLOSED_WITH_PARENT ends, so the
   * ordinals of one position list every child's end before its parent's.
   */
  private closeSubtree(close: SubtreeClose): void {
    for (const child of this.descendantsOf(close.root)) {
      const correction = this.addEndCorrection(
        child,
        'CHILD_CLOSED_WITH_PARENT',
        close.childCauseEventId,
        close,
      );
      this.closeInstance(child, close, correction.id, 'PARENT_CLOSED');
    }

    const { rootEnd } = close;
    switch (rootEnd.kind) {
      case 'client':
        this.closeInstance(close.root, close, rootEnd.endEventId, 'CLIENT');
        break;
      case 'synthesised': {
        const correction = this.addEndCorrection(
          close.root,
          rootEnd.rule,
          rootEnd.causeEventId,
          close,
        );
        this.closeInstance(close.root, close, correction.id, rootEnd.rule);
        break;
      }
      default:
        assertNever(rootEnd);
    }
  }

  private addEndCorrection(
    instance: OpenInstance,
    rule: SynthesisRule,
    causeEventId: string,
    close: SubtreeClose,
  ): Correction {
    return this.addCorrection({
      id: correctionIdFor(causeEventId, rule, instance.pairType, instance.pairKey),
      type: definitionOf(this.catalog, instance.pairType).endType,
      role: 'END',
      pairType: instance.pairType,
      pairKey: instance.pairKey,
      occurredAt: close.endAt,
      rule,
      causeEventId,
      position: close.decidedAt,
    });
  }

  private closeInstance(
    instance: OpenInstance,
    close: SubtreeClose,
    endEventId: string,
    endReason: EndReason,
  ): void {
    const key = instanceKeyOf(instance.pairType, instance.pairKey);
    delete this.ownOpen()[key];
    if (this.childKeys !== null) {
      this.childKeys.delete(key);
      if (instance.parentKey !== null) {
        this.childKeys.get(instance.parentKey)?.delete(key);
      }
    }
    this.output.segments.push({
      kind: 'closed',
      segmentId: instance.segmentId,
      pairType: instance.pairType,
      startAt: instance.startAt,
      endAt: close.endAt,
      endEventId,
      endReason,
      decidedAt: close.decidedAt,
    });
  }

  private addCorrection(correction: Omit<Correction, 'ordinal'>): Correction {
    // Ordinals count on from the state's count at its position (see the
    // constructor), which a state rebuilt from storage reads from the stored
    // corrections there.
    const key = positionKey(correction.position);
    const ordinal = this.correctionsAt.get(key) ?? 0;
    this.correctionsAt.set(key, ordinal + 1);
    const complete: Correction = { ...correction, ordinal };
    this.output.corrections.push(complete);
    return complete;
  }

  /** Returns the open descendants of an instance, deepest first, then latest start first. */
  private descendantsOf(root: OpenInstance): OpenInstance[] {
    const childKeys = this.childKeysOfOpen();
    const found: Array<{ instance: OpenInstance; depth: number }> = [];
    let frontier = [instanceKeyOf(root.pairType, root.pairKey)];
    for (let depth = 1; frontier.length > 0; depth += 1) {
      const next: string[] = [];
      for (const parentKey of frontier) {
        for (const key of childKeys.get(parentKey) ?? []) {
          found.push({ instance: this.open[key]!, depth });
          next.push(key);
        }
      }
      frontier = next;
    }

    found.sort(
      (a, b) =>
        b.depth - a.depth ||
        compareStarts(b.instance, a.instance) ||
        compareKeys(a.instance, b.instance),
    );
    return found.map((entry) => entry.instance);
  }

  /** Returns `open` after copying it on the first change, so that the state passed in stays as it is. */
  private ownOpen(): Record<string, OpenInstance> {
    if (!this.openCopied) {
      this.open = { ...this.open };
      this.openCopied = true;
    }
    return this.open;
  }

  /** Returns the index of open children by parent key, built from `open` on the first call of this step. */
  private childKeysOfOpen(): Map<string, Set<string>> {
    if (this.childKeys === null) {
      this.childKeys = new Map();
      for (const [key, instance] of Object.entries(this.open)) {
        if (instance.parentKey !== null) {
          addChildKey(this.childKeys, instance.parentKey, key);
        }
      }
    }
    return this.childKeys;
  }

  private shortestTimeout(): number {
    if (this.shortestTimeoutMs === null) {
      let shortest = Number.POSITIVE_INFINITY;
      for (const name of this.catalog.byName.keys()) {
        shortest = Math.min(shortest, policyOf(this.catalog, name).timeoutSeconds * 1000);
      }
      for (const policy of this.catalog.policies.values()) {
        shortest = Math.min(shortest, policy.timeoutSeconds * 1000);
      }
      this.shortestTimeoutMs = shortest;
    }
    return this.shortestTimeoutMs;
  }

  /**
   * Counts the open ancestors of an instance. A chain that reaches a key it
   * passed already is a cycle. A valid chain is no longer than the pair
   * type hierarchy is deep, so its keys are kept in a list.
   */
  private depthOf(instance: OpenInstance): number {
    const passed: string[] = [];
    let parentKey = instance.parentKey;
    while (parentKey !== null) {
      const parent = this.open[parentKey];
      if (parent === undefined || passed.includes(parentKey)) {
        throw new Error(
          `Open instance ${JSON.stringify(instance.segmentId)} has a broken parent chain at ${JSON.stringify(parentKey)}.`,
        );
      }
      passed.push(parentKey);
      parentKey = parent.parentKey;
    }
    return passed.length;
  }
}

function addChildKey(childKeys: Map<string, Set<string>>, parentKey: string, key: string): void {
  const keys = childKeys.get(parentKey);
  if (keys === undefined) {
    childKeys.set(parentKey, new Set([key]));
  } else {
    keys.add(key);
  }
}

function requirePairType(event: EngineEvent): string {
  if (event.pairType === null) {
    throw new TypeError(`Event ${event.id} has role ${event.role} but no pair type.`);
  }
  return event.pairType;
}

function compareStarts(a: OpenInstance, b: OpenInstance): number {
  return comparePositions({ at: a.startAt, seq: a.startSeq }, { at: b.startAt, seq: b.startSeq });
}

function compareKeys(a: OpenInstance, b: OpenInstance): number {
  const left = instanceKeyOf(a.pairType, a.pairKey);
  const right = instanceKeyOf(b.pairType, b.pairKey);
  if (left === right) {
    return 0;
  }
  return left < right ? -1 : 1;
}

function compareDue(
  a: { instance: OpenInstance; deadline: Instant; depth: number },
  b: { instance: OpenInstance; deadline: Instant; depth: number },
): number {
  return (
    a.deadline - b.deadline ||
    a.depth - b.depth ||
    compareStarts(a.instance, b.instance) ||
    compareKeys(a.instance, b.instance)
  );
}
