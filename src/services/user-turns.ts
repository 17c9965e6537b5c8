/**
 * First-come, first-served turns per user within one process, taken before
 * the shared user lock. Without them every waiting request polled the lock
 * with a random backoff, so under a burst for one user a late request could
 * overtake earlier ones, and the lock sat free between a release and the next
 * poll. With them only the request whose turn it is polls the lock, and a
 * release hands the turn to the next waiter at once. Requests of other
 * processes still meet at the shared lock.
 */
import { userBusyError } from '../storage/redis/store-common.js';

/** A granted turn. Releasing it twice, or after it expired, does nothing. */
export interface UserTurn {
  release(): void;
  /** Restarts the turn's lifetime, as an extension of the user lock does. Does nothing after a release. */
  extend(): void;
}

interface Waiter {
  grant: (turn: UserTurn) => void;
}

/** The requests waiting for one user's turn. A line exists while some request has the turn. */
interface Line {
  waiting: Waiter[];
}

export class UserTurns {
  private readonly lines = new Map<string, Line>();

  /**
   * @param ttlMs lifetime of a turn, equal to the user lock's TTL. A turn whose
   *   request hangs passes to the next waiter after this time, as the shared
   *   lock would expire.
   */
  constructor(private readonly ttlMs: number) {}

  /**
   * Waits for the user's turn, at most `waitMs`.
   *
   * @throws DomainError SERVICE_UNAVAILABLE with reason `USER_BUSY` when the
   *   wait ends first. With `waitMs` 0 it throws at once if the turn is taken.
   */
  take(userId: string, waitMs: number): Promise<UserTurn> {
    const line = this.lines.get(userId);
    if (line === undefined) {
      const fresh: Line = { waiting: [] };
      this.lines.set(userId, fresh);
      return Promise.resolve(this.grant(userId, fresh));
    }
    if (waitMs <= 0) {
      return Promise.reject(userBusyError(userId, waitMs));
    }
    return new Promise<UserTurn>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (turn) => {
          clearTimeout(timer);
          resolve(turn);
        },
      };
      const timer = setTimeout(() => {
        const index = line.waiting.indexOf(waiter);
        if (index >= 0) {
          line.waiting.splice(index, 1);
        }
        reject(userBusyError(userId, waitMs));
      }, waitMs);
      line.waiting.push(waiter);
    });
  }

  /** Number of requests in the user's line: the one whose turn it is and those waiting behind it. */
  lineLength(userId: string): number {
    const line = this.lines.get(userId);
    return line === undefined ? 0 : 1 + line.waiting.length;
  }

  /** Number of users whose turn some request has, for tests. */
  get busyUsers(): number {
    return this.lines.size;
  }

  private grant(userId: string, line: Line): UserTurn {
    let released = false;
    const startExpiry = () => {
      const timer = setTimeout(() => turn.release(), this.ttlMs);
      timer.unref();
      return timer;
    };
    const turn: UserTurn = {
      release: () => {
        if (released) {
          return;
        }
        released = true;
        clearTimeout(expiry);
        this.passOn(userId, line);
      },
      extend: () => {
        if (released) {
          return;
        }
        clearTimeout(expiry);
        expiry = startExpiry();
      },
    };
    let expiry = startExpiry();
    return turn;
  }

  private passOn(userId: string, line: Line): void {
    const next = line.waiting.shift();
    if (next === undefined) {
      this.lines.delete(userId);
      return;
    }
    next.grant(this.grant(userId, line));
  }
}
