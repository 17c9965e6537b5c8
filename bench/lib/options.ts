/** Command-line options of `npm run bench`. */
import { parseArgs } from 'node:util';

export const PHASES = ['reports', 'growth', 'intake', 'latency', 'casas'] as const;
export type Phase = (typeof PHASES)[number];

/** Batch sizes of the intake phase. */
export const BATCH_SIZES = [1, 100, 1000] as const;
export type BatchSize = (typeof BATCH_SIZES)[number];

export interface BenchOptions {
  quick: boolean;
  record: boolean;
  keep: boolean;
  profile: boolean;
  seed: number;
  phases: Phase[];
  /** Batch sizes the intake phase runs, in the order of BATCH_SIZES. */
  batches: BatchSize[];
  /** Rounds of each intake batch size, each timing the service and the baseline, for the median ratio. */
  rounds: number;
}

/** Intake rounds of a full run and of a quick run. */
export const DEFAULT_ROUNDS = { full: 3, quick: 1 } as const;
export const MAX_ROUNDS = 9;

export const USAGE = `Usage: npm run bench -- [--quick] [--record] [--keep] [--profile] [--seed N] [--only PHASES] [--batches SIZES] [--rounds N]

Benchmarks intake and reports of a server started as a child process on real
PostgreSQL and Redis (DATABASE_URL and REDIS_URL, or the local defaults), with
every figure set against a PostgreSQL baseline measured in the same run.

Options:
  --quick          smaller sizes and fewer repetitions (about a minute on 2 cores)
  --record         also write the report to docs/benchmarks.md
  --keep           keep the run's database em_bench_<timestamp> and Redis keys
  --profile        run the server under node --cpu-prof and print where it spent CPU time per phase
  --seed N         seed of the event mix and the report dataset (default 20261204)
  --only PHASES    comma-separated subset of ${PHASES.join(', ')} (default: all)
  --batches SIZES  comma-separated intake batch sizes, some of ${BATCH_SIZES.join(', ')} (default: all)
  --rounds N       intake rounds per batch size, 1 to ${MAX_ROUNDS}, each timing the baseline and the
                   service on new users; the tables show the round of the median ratio
                   (default ${DEFAULT_ROUNDS.full}, or ${DEFAULT_ROUNDS.quick} with --quick)
  --help           print this help
`;

export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses the arguments, or returns 'help'. Throws UsageError with the problem. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        record: { type: 'boolean' },
        keep: { type: 'boolean' },
        profile: { type: 'boolean' },
        seed: { type: 'string' },
        only: { type: 'string' },
        batches: { type: 'string' },
        rounds: { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values } = parsed;
  if (values.help === true) {
    return 'help';
  }

  const seedText = values.seed ?? '20261204';
  const seed = Number(seedText);
  if (!/^\d+$/.test(seedText) || !Number.isSafeInteger(seed) || seed > 0xffffffff) {
    throw new UsageError(`invalid --seed "${seedText}": expected an integer from 0 to 4294967295`);
  }

  let phases: Phase[] = [...PHASES];
  if (values.only !== undefined) {
    phases = [];
    for (const name of values.only.split(',').map((part) => part.trim())) {
      if (!(PHASES as readonly string[]).includes(name)) {
        throw new UsageError(`invalid --only phase "${name}": expected some of ${PHASES.join(', ')}`);
      }
      phases.push(name as Phase);
    }
  }
  let batches: BatchSize[] = [...BATCH_SIZES];
  if (values.batches !== undefined) {
    const named = values.batches.split(',').map((part) => part.trim());
    for (const name of named) {
      if (!BATCH_SIZES.some((size) => String(size) === name)) {
        throw new UsageError(`invalid --batches size "${name}": expected some of ${BATCH_SIZES.join(', ')}`);
      }
    }
    batches = BATCH_SIZES.filter((size) => named.includes(String(size)));
    if (!phases.includes('intake')) {
      throw new UsageError('--batches sets the batch sizes of the intake phase, so add intake to --only or drop --batches');
    }
  }
  let rounds: number = values.quick === true ? DEFAULT_ROUNDS.quick : DEFAULT_ROUNDS.full;
  if (values.rounds !== undefined) {
    rounds = Number(values.rounds);
    if (!/^\d+$/.test(values.rounds) || rounds < 1 || rounds > MAX_ROUNDS) {
      throw new UsageError(`invalid --rounds "${values.rounds}": expected an integer from 1 to ${MAX_ROUNDS}`);
    }
    if (!phases.includes('intake')) {
      throw new UsageError('--rounds sets the rounds of the intake phase, so add intake to --only or drop --rounds');
    }
  }
  if (
    values.record === true &&
    (values.quick === true || values.only !== undefined || values.batches !== undefined || values.rounds !== undefined)
  ) {
    throw new UsageError('--record needs a full run: drop --quick, --only, --batches and --rounds');
  }

  return {
    quick: values.quick === true,
    record: values.record === true,
    keep: values.keep === true,
    profile: values.profile === true,
    seed,
    phases,
    batches,
    rounds,
  };
}
