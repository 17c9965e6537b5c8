/** Rows for tests that call the intake storage functions directly. */
import { randomUUID } from 'node:crypto';

import type { NewClientEvent } from '../../src/storage/postgres/intake-store.js';

/** Returns a heartbeat of `userId` with sequence number `seq`, at `seq` minutes past 2026-01-01. */
export function heartbeatRow(userId: string, seq: number): NewClientEvent {
  const at = Date.UTC(2026, 0, 1, 0, seq);
  return {
    id: randomUUID(),
    userId,
    seq,
    clientId: `hb-${seq}-${randomUUID()}`,
    type: 'heartbeat',
    role: 'POINT',
    pairType: null,
    pairKey: null,
    occurredAt: at,
    clientOccurredAt: null,
    receivedAt: at,
    meta: null,
    intakeFlags: [],
    ignored: false,
  };
}
