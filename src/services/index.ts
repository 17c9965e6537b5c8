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

export interface Services {
  clock: Clock;
  users: UserService;
  pairTypes: PairTypeService;
  intake: IntakeService;
  queries: QueryService;
  reports: ReportService;
}
