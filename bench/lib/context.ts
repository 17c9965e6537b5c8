/** Values that the runner passes to every benchmark phase. */
import type pg from 'pg';

import type { GraphQLClient } from './http.js';
import type { RunningServer } from './server.js';

export interface PhaseContext {
  quick: boolean;
  seed: number;
  /** Pool on the run's database, for setup, baselines and checks. */
  pool: pg.Pool;
  client: GraphQLClient;
  server: RunningServer;
  adminToken: string;
  passwordHash: string;
  /** Prints a progress line to stderr. */
  log(message: string): void;
}
