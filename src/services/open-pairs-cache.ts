/**
 * Open instances of the users with many open pairs, kept in this process
 * between requests. The engine state that Redis holds for such a user leaves
 * its open instances out, because writing and reading them there costs time
 * linear in their number on every request. A fold takes them from here when
 * this process folded the user last, and from PostgreSQL otherwise.
 */
import type { OpenInstance } from '../domain/pairing/types.js';

/** Open instances as of one derived version of a user. */
export interface CachedOpenPairs {
  /** The user's derived version after the write that produced these instances. */
  derivedVersion: number;
  /** The highest client seq folded into them, as in the engine state. */
  appliedSeq: number;
  open: Record<string, OpenInstance>;
  /** Number of keys in `open`. */
  count: number;
}

/**
 * A least recently used cache of open instances per user, bounded by the
 * sum of their counts. The derived version and applied seq identify the
 * state, because every derived write increments the version, so an entry
 * with the head's version and applied seq is that head's open set.
 */
export class OpenPairsCache {
  private readonly entries = new Map<string, CachedOpenPairs>();
  private total = 0;

  constructor(private readonly maxPairs: number) {}

  /** Returns the user's entry when it matches the version and applied seq, and drops an entry that does not. */
  get(userId: string, derivedVersion: number, appliedSeq: number): CachedOpenPairs | null {
    const entry = this.entries.get(userId);
    if (entry === undefined) {
      return null;
    }
    this.delete(userId);
    if (entry.derivedVersion !== derivedVersion || entry.appliedSeq !== appliedSeq) {
      return null;
    }
    // Insert again, so that the Map order puts it last among the most recently used.
    this.insert(userId, entry);
    return entry;
  }

  /** Stores the user's entry in place of any other, and evicts the least recently used entries above the bound. */
  set(userId: string, entry: CachedOpenPairs): void {
    this.delete(userId);
    if (entry.count > this.maxPairs) {
      return;
    }
    this.insert(userId, entry);
    for (const [oldest, cached] of this.entries) {
      if (this.total <= this.maxPairs) {
        break;
      }
      this.entries.delete(oldest);
      this.total -= cached.count;
    }
  }

  delete(userId: string): void {
    const entry = this.entries.get(userId);
    if (entry !== undefined) {
      this.entries.delete(userId);
      this.total -= entry.count;
    }
  }

  /** Number of open instances cached, across users. */
  get size(): number {
    return this.total;
  }

  private insert(userId: string, entry: CachedOpenPairs): void {
    this.entries.set(userId, entry);
    this.total += entry.count;
  }
}
