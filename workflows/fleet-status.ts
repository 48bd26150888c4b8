/**
 * The fleet's bookkeeping: per-wave counts kept up to date as projects change state (so a status or the UI
 * details cost O(waves), not O(projects), at 10,000 projects), the slowest projects, the ETA and the markdown
 * summary shown in the Temporal UI. Deterministic, no I/O.
 */
import type { FleetCarry, FleetPhase, FleetSpec, FleetStatus, ProjectState, WaveStatus } from '../src/fleet/spec';
import { waveOf } from '../src/fleet/spec';
import type { RefusedDecision } from '../src/messages';

const KEY: Record<ProjectState, keyof Pick<WaveStatus, 'done' | 'running' | 'waiting' | 'failed' | 'rolledBack' | 'skipped'>> = {
  done: 'done', running: 'running', waiting: 'waiting', failed: 'failed', rolled_back: 'rolledBack', skipped: 'skipped',
};

export class FleetBook {
  readonly waves: WaveStatus[];
  private slowest: { slug: string; ms: number }[] = [];
  /** Projects that ended in this run and when the run's counting started: the ETA's rate. */
  private endedInRun = 0;
  private readonly runStartedAt = Date.now();

  constructor(private readonly spec: FleetSpec, private readonly carry: FleetCarry) {
    this.waves = spec.waves.map((w) => ({
      name: w.name, parallel: w.parallel, onError: w.onError, gate: w.gate, total: w.end - w.start,
      done: 0, running: 0, waiting: 0, failed: 0, rolledBack: 0, skipped: 0,
    }));
    carry.runs.forEach((r, i) => { this.waves[waveOf(spec.waves, i)]![KEY[r.s]] += 1; });
    for (const [i, r] of carry.runs.entries()) if (r.ms !== undefined && r.s === 'done') this.noteSlow(spec.projects[i]!.slug, r.ms);
  }

  /** Change a project's state, keeping the counts right. */
  set(i: number, s: ProjectState): void {
    const r = this.carry.runs[i]!;
    const w = this.waves[waveOf(this.spec.waves, i)]!;
    w[KEY[r.s]] -= 1;
    w[KEY[s]] += 1;
    if (r.s === 'running' && s !== 'running') this.endedInRun += 1;
    r.s = s;
  }

  noteSlow(slug: string, ms: number): void {
    this.slowest.push({ slug, ms });
    this.slowest.sort((a, b) => b.ms - a.ms);
    if (this.slowest.length > 5) this.slowest.length = 5;
  }

  anyFailed(): boolean {
    return this.waves.some((w) => w.failed + w.rolledBack > 0);
  }

  status(planHash: string, phase: FleetPhase, refused: RefusedDecision[], outcome?: FleetStatus['outcome']): FleetStatus {
    const totals = { projects: this.spec.projects.length, done: 0, running: 0, waiting: 0, failed: 0, rolledBack: 0, skipped: 0 };
    for (const w of this.waves) for (const k of ['done', 'running', 'waiting', 'failed', 'rolledBack', 'skipped'] as const) totals[k] += w[k];
    const failures: FleetStatus['failures'] = [];
    for (const [i, r] of this.carry.runs.entries()) {
      if (failures.length >= 50) break;
      if (r.s === 'failed' || r.s === 'rolled_back') failures.push({ slug: this.spec.projects[i]!.slug, state: r.s, attempts: r.a, reason: r.e });
    }
    const elapsed = Date.now() - this.runStartedAt;
    const remaining = totals.waiting + totals.running;
    const etaSeconds = remaining === 0 ? 0 : this.endedInRun > 0 ? Math.round((remaining * elapsed) / this.endedInRun / 1000) : null;
    return {
      name: this.spec.name, planHash, requestedBy: this.spec.requestedBy, phase, paused: this.carry.paused, gates: this.carry.gates,
      waves: this.waves, totals, slowest: this.slowest, failures, etaSeconds, continuedAsNew: this.carry.continuedAsNew,
      ...(refused.length ? { refusedDecisions: refused } : {}), ...(outcome ? { outcome } : {}),
      startedAt: this.carry.startedAt, updatedAt: new Date().toISOString(),
    };
  }
}

/** The fleet summary in the parent's details (Temporal UI). */
export function fleetDetails(s: FleetStatus): string {
  const t = s.totals;
  const lines = [
    `**fleet ${s.name}: ${s.phase}**${s.paused ? ' (paused)' : ''} — ${t.done}/${t.projects} done, ${t.running} running, ${t.waiting} waiting, ` +
      `${t.failed} failed, ${t.rolledBack} rolled back${t.skipped ? `, ${t.skipped} skipped` : ''}${s.etaSeconds ? `; ETA ${s.etaSeconds}s` : ''}`,
    ['| wave | parallel | on error | done | running | waiting | failed | rolled back |', '|---|---|---|---|---|---|---|---|',
      ...s.waves.map((w) => `| ${w.name}${w.gate ? ' (gate)' : ''} | ${w.parallel} | ${w.onError} | ${w.done}/${w.total} | ${w.running} | ${w.waiting} | ${w.failed} | ${w.rolledBack} |`),
    ].join('\n'),
  ];
  const open = s.gates.find((g) => g.state === 'open');
  if (open) lines.push(`gate **${open.name}** open: approvers ${open.approvers.join(', ')} (safeshift fleet approve)`);
  if (s.slowest.length) lines.push(`slowest: ${s.slowest.map((x) => `${x.slug} ${Math.round(x.ms / 1000)}s`).join(', ')}`);
  if (s.failures.length) lines.push(`failed: ${s.failures.slice(0, 10).map((f) => f.slug).join(', ')}${s.failures.length > 10 ? ', ...' : ''}`);
  if (s.continuedAsNew) lines.push(`continued as new ${s.continuedAsNew} time(s)`);
  if (s.outcome) lines.push(`outcome: ${s.outcome.phase} — ${s.outcome.reason}`);
  return lines.join('\n\n');
}
