/**
 * Summarises a V8 CPU profile (`node --cpu-prof` output) as self time per
 * function and per source area, so a run shows where the server spent its
 * CPU time without opening a profiler.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileEntry {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Time outside idle samples, garbage collection included; shares are of this time. */
  busyMs: number;
  gcMs: number;
  functions: ProfileEntry[];
  areas: ProfileEntry[];
}

/** Names the part of the code a script URL belongs to: a file of this repository, a package, or node itself. */
export function sourceArea(url: string): string {
  if (url === '') {
    return '(native)';
  }
  if (url.startsWith('node:')) {
    return 'node internals';
  }
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (packageMatch !== null) {
    return `package ${packageMatch[1]}`;
  }
  const sourceMatch = /\/(src\/.+)$/.exec(url);
  return sourceMatch !== null ? sourceMatch[1]! : url;
}

export function summariseProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let index = 0; index < samples.length; index += 1) {
    const id = samples[index]!;
    // A sample's delta is the time since the previous sample, so it belongs to the next one's stack.
    const ms = (deltas[index + 1] ?? 0) / 1000;
    selfMs.set(id, (selfMs.get(id) ?? 0) + ms);
  }

  const functions = new Map<string, number>();
  const areas = new Map<string, number>();
  let idleMs = 0;
  let gcMs = 0;
  let totalMs = 0;
  for (const [id, ms] of selfMs) {
    const frame = byId.get(id)!.callFrame;
    totalMs += ms;
    if (frame.functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    if (frame.functionName === '(garbage collector)') {
      gcMs += ms;
    }
    const area = frame.functionName.startsWith('(') ? frame.functionName : sourceArea(frame.url);
    const name = `${frame.functionName || '(anonymous)'} ${sourceArea(frame.url)}:${frame.lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + ms);
    areas.set(area, (areas.get(area) ?? 0) + ms);
  }

  const busyMs = totalMs - idleMs;
  const rank = (map: Map<string, number>): ProfileEntry[] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms, share: busyMs > 0 ? ms / busyMs : 0 }));
  return { totalMs, busyMs, gcMs, functions: rank(functions), areas: rank(areas) };
}
