/**
 * Projects into waves: a canary (the first N projects, or a named list), then groups (by a metadata column such as
 * region, in order of first appearance, or fixed-size slices of the order given), each with its own parallelism
 * and error rule. Pure; every problem names the option or project at fault.
 */
import type { OnError, ProjectMeta, WaveSpec } from './spec';

/** A slug becomes part of schema names (`project_<slug>`) and workflow ids: a plain identifier, short enough for suffixes. */
export const SLUG_PATTERN = /^[a-z][a-z0-9_]{0,39}$/;
/**
 * Any other metadata value (id, region, ...): letters, digits, `_` and `-`, so it is inert inside a quoted SQL
 * literal or identifier; where it lands outside quotes the plan's own checks see the result.
 */
export const VALUE_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$/;
export const KEY_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

export class FleetInputError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

/** Problems with the project list: bad slugs and values (named), duplicates. */
export function projectProblems(projects: readonly ProjectMeta[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  if (projects.length === 0) problems.push('--projects: no projects');
  projects.forEach((p, i) => {
    const at = `--projects[${i}]`;
    if (typeof p.slug !== 'string' || !SLUG_PATTERN.test(p.slug)) {
      problems.push(`${at}: slug ${JSON.stringify(p.slug)} is not a safe identifier (lower-case letter, then lower-case letters, digits or _; at most 40)`);
      return;
    }
    if (seen.has(p.slug)) problems.push(`${at}: project ${p.slug} is listed twice`);
    seen.add(p.slug);
    for (const [k, v] of Object.entries(p)) {
      if (k === 'slug') continue;
      if (!KEY_PATTERN.test(k)) problems.push(`project ${p.slug}: metadata name ${JSON.stringify(k)} is not a plain lower-case name`);
      else if (typeof v !== 'string' || !VALUE_PATTERN.test(v)) problems.push(`project ${p.slug}: ${k} ${JSON.stringify(v)} is not a safe value (letters, digits, _ and -; at most 100)`);
    }
  });
  return problems;
}

export interface WaveOptions {
  /** First N projects, or these slugs, form the canary wave (default 1 project). */
  canary?: number | string[];
  canaryParallel?: number;
  /** Group the rest by this metadata column (e.g. region), in order of first appearance. */
  groupBy?: string;
  /** Else: slices of this many projects (default: all the rest in one wave). */
  waveSize?: number;
  /** Parallelism of every wave after the canary, unless `parallelByWave` names it. */
  parallel?: number;
  parallelByWave?: Record<string, number>;
  onError?: OnError;
  onErrorByWave?: Record<string, OnError>;
  /** A gate before every wave after the first one past the canary too (the canary and the wave after it always have one). */
  gateEveryWave?: boolean;
}

/**
 * The projects in run order and their waves. The canary always has a gate (its approval lets it start) and so has
 * the first wave after it (the gate after the canary); with gateEveryWave, every wave does.
 */
export function buildWaves(projects: readonly ProjectMeta[], o: WaveOptions = {}): { projects: ProjectMeta[]; waves: WaveSpec[] } {
  const problems = projectProblems(projects);
  if (problems.length) throw new FleetInputError(problems);
  let canary: ProjectMeta[];
  if (Array.isArray(o.canary)) {
    const missing = o.canary.filter((s) => !projects.some((p) => p.slug === s));
    if (missing.length) throw new FleetInputError([`--canary: no project ${missing.join(', ')} in --projects`]);
    canary = o.canary.map((s) => projects.find((p) => p.slug === s)!);
  } else {
    const n = o.canary ?? 1;
    if (!Number.isInteger(n) || n < 1) throw new FleetInputError(['--canary: must be a positive number of projects or a list of slugs']);
    canary = projects.slice(0, n);
  }
  const rest = projects.filter((p) => !canary.includes(p));
  const groups: { name: string; members: ProjectMeta[] }[] = [];
  if (o.groupBy) {
    const col = o.groupBy;
    if (!KEY_PATTERN.test(col)) throw new FleetInputError([`--group-by: ${JSON.stringify(col)} is not a metadata name`]);
    const lacking = rest.filter((p) => p[col] === undefined).map((p) => p.slug);
    if (lacking.length) throw new FleetInputError([`--group-by ${col}: project(s) ${lacking.slice(0, 5).join(', ')}${lacking.length > 5 ? ', ...' : ''} have no ${col}`]);
    for (const p of rest) {
      const name = p[col]!;
      let g = groups.find((x) => x.name === name);
      if (!g) groups.push(g = { name, members: [] });
      g.members.push(p);
    }
  } else if (rest.length) {
    const size = o.waveSize ?? rest.length;
    if (!Number.isInteger(size) || size < 1) throw new FleetInputError(['--wave-size: must be a positive number']);
    for (let i = 0; i < rest.length; i += size) groups.push({ name: `wave-${groups.length + 1}`, members: rest.slice(i, i + size) });
  }
  if (groups.some((g) => g.name === 'canary')) throw new FleetInputError(['--group-by: a group may not be named canary']);
  const parallelOf = (name: string, fallback: number) => {
    const p = o.parallelByWave?.[name] ?? fallback;
    if (!Number.isInteger(p) || p < 1 || p > 500) throw new FleetInputError([`parallelism of wave ${name}: must be 1..500 (got ${p})`]);
    return p;
  };
  for (const name of Object.keys({ ...o.parallelByWave, ...o.onErrorByWave })) {
    if (name !== 'canary' && !groups.some((g) => g.name === name)) throw new FleetInputError([`--wave ${name}: no such wave (waves: canary, ${groups.map((g) => g.name).join(', ')})`]);
  }
  const ordered: ProjectMeta[] = [...canary];
  const waves: WaveSpec[] = [{
    name: 'canary', start: 0, end: canary.length, parallel: parallelOf('canary', o.canaryParallel ?? Math.min(canary.length, 4)),
    onError: o.onErrorByWave?.canary ?? 'stop', gate: true,
  }];
  groups.forEach((g, i) => {
    const start = ordered.length;
    ordered.push(...g.members);
    waves.push({
      name: g.name, start, end: ordered.length, parallel: parallelOf(g.name, o.parallel ?? 4),
      onError: o.onErrorByWave?.[g.name] ?? o.onError ?? 'stop', gate: i === 0 || (o.gateEveryWave ?? false),
    });
  });
  return { projects: ordered, waves };
}
