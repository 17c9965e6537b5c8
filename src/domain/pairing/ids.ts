/**
 * Deterministic ids for derived rows. Each id is a SHA-256 digest of the facts
 * that define the row, laid out as an RFC 9562 version 8 (custom) UUID, so a
 * replay of the same events yields the same ids and storage writes are
 * idempotent.
 */
import { createHash } from 'node:crypto';

import type { SynthesisRule } from './types.js';

/**
 * Returns the id of the segment opened by a start event. Event ids are
 * unique across users, so segment ids are too.
 */
export function segmentIdFor(startEventId: string): string {
  return uuidFromParts(['segment', startEventId]);
}

/** Returns the id of the event synthesised by `rule` for one instance because of `causeEventId`. */
export function correctionIdFor(
  causeEventId: string,
  rule: SynthesisRule,
  pairType: string,
  pairKey: string,
): string {
  return uuidFromParts(['correction', causeEventId, rule, pairType, pairKey]);
}

function uuidFromParts(parts: readonly string[]): string {
  // JSON of a string array is an unambiguous encoding: no choice of parts can
  // produce the same text as a different choice.
  const digest = createHash('sha256').update(JSON.stringify(parts)).digest();
  const bytes = Buffer.from(digest.subarray(0, 16));

  // Version 8 in the high nibble of byte 6, variant 0b10 in the top bits of byte 8.
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x80;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;

  const hex = bytes.toString('hex');
  return [
    hex.slice(0, 8),
    hex.slice(8, 12),
    hex.slice(12, 16),
    hex.slice(16, 20),
    hex.slice(20, 32),
  ].join('-');
}
