/** Public surface of the pairing engine. */
export {
  advanceTo,
  applyEvent,
  applyEvents,
  emptyState,
  instanceKeyOf,
  nextDeadline,
  restoreState,
  type RestoreInput,
} from './engine.js';
export { correctionIdFor, segmentIdFor } from './ids.js';
export {
  classifyArrival,
  type Arrival,
  type ArrivalClassification,
  type ArrivalFlag,
  type ArrivalLimits,
} from './intake-rules.js';
export {
  DerivedLedger,
  startPositionOf,
  type ClosedSegmentRecord,
  type LedgerSnapshot,
  type OpenSegmentRecord,
  type SegmentRecord,
} from './ledger.js';
export {
  AUTO_CLOSE_SEQ,
  autoClosePosition,
  comparePositions,
  positionOfEvent,
} from './position.js';
export {
  ReferenceTimeline,
  type IncomingEvent,
  type ReceiveResult,
} from './reference-timeline.js';
export type * from './types.js';
