/**
 * The benchmark reads CPU times from /proc/<pid>/stat lines, whose command
 * name may contain spaces and parentheses.
 */
import { describe, expect, it } from 'vitest';

import { cpuBetween, parseStatTicks } from '../../bench/lib/cpu.js';

// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
const line = (command: string, utime: number, stime: number, cutime: number, cstime: number) =>
  `4242 (${command}) S 1 4242 4242 0 -1 4194560 100 0 0 0 ${utime} ${stime} ${cutime} ${cstime} 20 0 1 0 55 0 0`;

describe('parseStatTicks', () => {
  it('adds the process and its reaped children', () => {
    expect(parseStatTicks(line('postgres', 120, 30, 7, 3))).toEqual({ command: 'postgres', ticks: 160 });
  });

  it('reads a command name with spaces and parentheses', () => {
    expect(parseStatTicks(line('npm run (bench)', 5, 1, 0, 0))).toEqual({ command: 'npm run (bench)', ticks: 6 });
  });

  it('rejects a line without a command name or with missing fields', () => {
    expect(parseStatTicks('4242 postgres S 1')).toBeNull();
    expect(parseStatTicks('4242 (postgres) S 1 2 3')).toBeNull();
  });
});

describe('cpuBetween', () => {
  it('leaves a group unknown when either sample lacks it', () => {
    const before = { clientMs: 10, postgresMs: 100, redisMs: null };
    const after = { clientMs: 25, postgresMs: 160, redisMs: 4 };
    expect(cpuBetween(before, after)).toEqual({ clientMs: 15, postgresMs: 60, redisMs: null });
  });

  it('leaves a group unknown when its time went down', () => {
    const before = { clientMs: 10, postgresMs: 100, redisMs: 4 };
    const after = { clientMs: 25, postgresMs: 90, redisMs: 4 };
    expect(cpuBetween(before, after)).toEqual({ clientMs: 15, postgresMs: null, redisMs: 0 });
  });
});
