/** Helpers of the pairing engine's unit tests: catalogs and full replays. */
import {
  advanceTo,
  applyEvent,
  comparePositions,
  DerivedLedger,
  emptyState,
  positionOfEvent,
  type AutoClosePolicy,
  type EngineEvent,
  type EngineState,
  type LedgerSnapshot,
  type PairCatalog,
  type PairTypeDefinition,
} from '../../src/domain/pairing/index.js';

/** Builds the catalog of `definitions`, with `policies` overriding their auto-close policies by pair type. */
export function catalogOf(
  definitions: readonly PairTypeDefinition[],
  policies: ReadonlyMap<string, AutoClosePolicy> = new Map(),
): PairCatalog {
  const byEventType = new Map<string, { pairType: string; role: 'START' | 'END' }>();
  for (const definition of definitions) {
    byEventType.set(definition.startType, { pairType: definition.name, role: 'START' });
    byEventType.set(definition.endType, { pairType: definition.name, role: 'END' });
  }
  return {
    byEventType,
    byName: new Map(definitions.map((definition) => [definition.name, definition])),
    policies: new Map(policies),
  };
}

/** Folds the events in position order from an empty state, then advances to `now`. */
export function replayInOrder(
  events: readonly EngineEvent[],
  catalog: PairCatalog,
  now: number,
): { state: EngineState; snapshot: LedgerSnapshot } {
  const ordered = [...events].sort((a, b) => comparePositions(positionOfEvent(a), positionOfEvent(b)));
  const ledger = new DerivedLedger();
  let state = emptyState();
  for (const event of ordered) {
    const step = applyEvent(state, event, catalog);
    ledger.applyOutput(step.output);
    state = step.state;
  }
  const final = advanceTo(state, now, catalog);
  ledger.applyOutput(final.output);
  return { state: final.state, snapshot: ledger.snapshot() };
}
