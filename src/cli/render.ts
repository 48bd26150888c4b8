/** Human and machine renderings of a migration's status. */
import type { MigrationStatus } from '../messages';
import type { StatusAnswer } from './status-sources';

/** Where the status came from, beyond the workflow's own answer: `recorded` (no worker answered), `live` figures. */
type Sources = Pick<StatusAnswer, 'recorded' | 'live'>;

export interface StatusJson extends MigrationStatus, Sources {
  workflowId: string;
  uiUrl?: string;
}

export function toJson(workflowId: string, s: MigrationStatus, uiUrl?: string, sources: Sources = {}): StatusJson {
  return { workflowId, ...s, ...(uiUrl ? { uiUrl } : {}), ...(sources.recorded ? { recorded: sources.recorded } : {}), ...(sources.live ? { live: sources.live } : {}) };
}

/** A duration for people: `0.4 s`, `29 s`, `4 min 12 s`, `3 h 20 min`, `2 d 5 h`. */
export function humanDuration(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.round(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min${whole % 60 ? ` ${whole % 60} s` : ''}`;
  const min = Math.round(whole / 60);
  if (min < 24 * 60) return `${Math.floor(min / 60)} h${min % 60 ? ` ${min % 60} min` : ''}`;
  const h = Math.round(min / 60);
  return `${Math.floor(h / 24)} d${h % 24 ? ` ${h % 24} h` : ''}`;
}

/** A count for people: 950, 12,345, 1.2M. */
export function humanCount(n: number): string {
  const r = Math.round(n);
  return Math.abs(r) >= 10_000_000 ? `${(r / 1_000_000).toFixed(1)}M` : r.toLocaleString('en-US');
}

function bar(done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(frac * 100).toFixed(1)}%`;
}

export function renderStatus(workflowId: string, s: MigrationStatus, uiUrl?: string, sources: Sources = {}): string {
  const lines = [
    ...(sources.recorded ? [`(${sources.recorded.note})`] : []),
    `${workflowId}: ${s.phase}${s.paused ? ' (paused)' : ''}${s.rollbackRequestedBy ? ` (rollback requested by ${s.rollbackRequestedBy})` : s.abortRequested ? ' (abort requested)' : ''}`,
    `  ${s.source} -> ${s.target}   requested by ${s.requestedBy}   plan sha256:${s.planHash.slice(0, 16)}`,
  ];
  const c = s.copy;
  if (c.rowsTotal || c.rowsCopied) {
    lines.push(`  copy ${bar(c.rowsCopied, c.rowsTotal)} ${humanCount(c.rowsCopied)}/${humanCount(c.rowsTotal)} rows, ${humanCount(c.chunks)} chunks, ${humanCount(c.rowsPerSecond)} rows/s` +
      (c.etaSeconds !== null && c.etaSeconds > 0 ? `, ETA ${humanDuration(c.etaSeconds * 1000)}` : '') + (c.throttledMs >= 50 ? `, throttled ${humanDuration(c.throttledMs)}` : '') +
      (sources.live?.parts.includes('copy') ? ` (read live at ${sources.live.at})` : ''));
    lines.push(`       ${c.format} COPY, ${c.parallel} lane${c.parallel > 1 ? 's' : ''}, chunks of ${c.chunkRows} rows` +
      (c.rowsRedone ? `, ${humanCount(c.rowsRedone)} rows copied again after a stopped attempt` : ''));
  }
  if (s.throttle) lines.push(`  throttled: ${s.throttle.reason} (last at ${s.throttle.at})`);
  if (s.catchUp.updatedAt) {
    const when = sources.live?.parts.includes('catchUp') ? 'read live at' : 'as of';
    lines.push(`  catch-up: ${humanCount(s.catchUp.backlogRows)} changes waiting, lag ${humanDuration(s.catchUp.lagSeconds * 1000)}, ${humanCount(s.catchUp.replayedChanges)} replayed (${when} ${s.catchUp.updatedAt})`);
  }
  if (s.backupTable) lines.push(`  backup ${s.backupTable} (verified)`);
  if (s.backupExport) lines.push(`  export ${s.backupExport.id} in ${s.backupExport.dir} (verified)`);
  if (s.validation) lines.push(`  validation ${s.validation.ok ? 'OK' : 'MISMATCH'}: ${s.validation.message}`);
  for (const g of s.gates) {
    if (g.state === 'pending') continue;
    const who = g.decisions.map((d) => `${d.approver} ${d.approved ? 'approved' : 'rejected'}${d.reason ? ` (${d.reason})` : ''}`).join(', ');
    lines.push(`  gate ${g.name}: ${g.state}, ${g.decisions.filter((d) => d.approved).length}/${g.required} of ${g.approvers.join(', ')}` +
      (who ? ` — ${who}` : '') + (g.deadline ? `, deadline ${g.deadline}` : '') + (g.notBefore ? `, not before ${g.notBefore}` : ''));
  }
  if (s.retiredTable) lines.push(`  retired table ${s.retiredTable}`);
  for (const w of s.warnings) lines.push(`  note: ${w}`);
  const b = s.rollbackBlocked;
  if (b) lines.push(`  ROLLBACK BLOCKED since ${b.since} (attempt ${b.attempts}): ${b.reason}`, `  next: ${b.next}`);
  const durations = Object.entries(s.phaseDurationsMs).map(([p, ms]) => `${p} ${humanDuration(ms)}`).join(', ');
  if (durations) lines.push(`  phases: ${durations}`);
  for (const c2 of s.compensations) lines.push(`  compensation ${c2.name}: ${c2.state}${c2.error ? ` — ${c2.error}` : ''}`);
  if (s.outcome) lines.push(`  outcome: ${s.outcome.phase} — ${s.outcome.reason}`);
  if (uiUrl) lines.push(`  ${uiUrl}`);
  return lines.join('\n');
}

/** One line for the Temporal UI list and the workflow's static summary. */
export function planSummary(s: { name: string; source: string; target: string }): string {
  return `safeshift ${s.name}: ${s.source} -> ${s.target}`;
}
