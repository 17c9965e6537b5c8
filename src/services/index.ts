import type { IntakeService } from './intake.js';
import type { PairTypeService } from './pair-types.js';
import type { QueryService } from './queries.js';
import type { ReportService } from './reports.js';
import type { UserService } from './users.js';

/** Source of the current time, in ms since the epoch. Tests replace it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * Work that a read runs after it validated its arguments and before it
 * reads, given the users it reads: null for every user, and an empty list
 * when it reads none. Reads use it to settle passed auto-close deadlines.
 */
export type BeforeRead = (users: readonly string[] | null) => Promise<void>;

export interface Services {
  clock: Clock;
  users: UserService;
  pairTypes: PairTypeService;
  intake: IntakeService;
  queries: QueryService;
  reports: ReportService;
}
