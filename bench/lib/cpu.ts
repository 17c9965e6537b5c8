/**
 * CPU time of the processes that share the machine during a run, so that a
 * report can show where the cores went. server.ts reads the server's own
 * time. This module reads the bench process itself, which runs the load
 * generator and the baseline's client, and the PostgreSQL and Redis server
 * processes from /proc. PostgreSQL and Redis are null when no such process
 * is visible, as when they run on another host or the system has no /proc.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on Linux x86-64 and arm64. */
const CLOCK_TICKS_PER_SECOND = 100;

export function ticksToMs(ticks: number): number {
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}
export interface CpuSample {
  /** Bench process, user and system, ms. */
  clientMs: number;
  /** All PostgreSQL processes, with the exited backends their parent has reaped, ms. */
  postgresMs: number | null;
  /** All redis-server processes, ms. */
  redisMs: number | null;
}

/** The command name and CPU ticks of one /proc/<pid>/stat line. */
export interface StatTicks {
  command: string;
  /** utime + stime + cutime + cstime: the process and its reaped children. */
  ticks: number;
}

/**
 * Parses a /proc/<pid>/stat line. The command name is in parentheses and
 * may itself contain spaces and parentheses, so the fields start after the last
 * closing one.
 */
export function parseStatTicks(stat: string): StatTicks | null {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) {
    return null;
  }
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is the state (field 3 of proc(5)), and utime..cstime are fields 14 to 17.
  const ticks = [11, 12, 13, 14].reduce((sum, index) => sum + Number(fields[index]), 0);
  return Number.isFinite(ticks) ? { command: stat.slice(open + 1, close), ticks } : null;
}

const PROCESS_GROUPS = { postgres: 'postgres', redis: 'redis-server' } as const;

function readGroupTicks(): Record<keyof typeof PROCESS_GROUPS, number | null> {
  const totals: Record<keyof typeof PROCESS_GROUPS, number | null> = { postgres: null, redis: null };
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return totals;
  }
  for (const pid of pids) {
    let parsed: StatTicks | null;
    try {
      parsed = parseStatTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      continue; // The process exited between the listing and the read.
    }
    for (const [group, command] of Object.entries(PROCESS_GROUPS) as Array<[keyof typeof PROCESS_GROUPS, string]>) {
      if (parsed?.command === command) {
        totals[group] = (totals[group] ?? 0) + parsed.ticks;
      }
    }
  }
  return totals;
}

export function sampleCpu(): CpuSample {
  const usage = process.cpuUsage();
  const groups = readGroupTicks();
  const toMs = (ticks: number | null) => (ticks === null ? null : ticksToMs(ticks));
  return {
    clientMs: (usage.user + usage.system) / 1000,
    postgresMs: toMs(groups.postgres),
    redisMs: toMs(groups.redis),
  };
}

/**
 * Returns the CPU used between two samples. A group missing from either
 * sample is null, and so is a group whose time went down.
 */
export function cpuBetween(before: CpuSample, after: CpuSample): CpuSample {
  // NOTE: PostgreSQL's time has been seen to fall between two samples, as if
  // an exited process's time never reached its parent's reaped-children time.
  // The cause is unknown, so a fall reads as unknown rather than as negative.
  const delta = (a: number | null, b: number | null) => (a === null || b === null || b < a ? null : b - a);
  return {
    clientMs: after.clientMs - before.clientMs,
    postgresMs: delta(before.postgresMs, after.postgresMs),
    redisMs: delta(before.redisMs, after.redisMs),
  };
}
