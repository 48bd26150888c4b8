/** Human and machine renderings of a migration's status. */
import type { MigrationStatus } from '../messages';

export interface StatusJson extends MigrationStatus {
  workflowId: string;
  uiUrl?: string;
  workflowStatus?: string;
}

export function toJson(workflowId: string, s: MigrationStatus, uiUrl?: string, workflowStatus?: string): StatusJson {
  return { workflowId, ...s, ...(uiUrl ? { uiUrl } : {}), ...(workflowStatus ? { workflowStatus } : {}) };
}

function bar(done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 0;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(frac * 100).toFixed(1)}%`;
}

export function renderStatus(workflowId: string, s: MigrationStatus, uiUrl?: string): string {
  const lines = [
    `${workflowId}: ${s.phase}${s.paused ? ' (paused)' : ''}${s.rollbackRequestedBy ? ` (rollback requested by ${s.rollbackRequestedBy})` : s.abortRequested ? ' (abort requested)' : ''}`,
    `  ${s.source} -> ${s.target}   requested by ${s.requestedBy}   plan sha256:${s.planHash.slice(0, 16)}`,
  ];
  const c = s.copy;
  if (c.rowsTotal || c.rowsCopied) {
    lines.push(`  copy ${bar(c.rowsCopied, c.rowsTotal)} ${c.rowsCopied}/${c.rowsTotal} rows, ${c.chunks} chunks, ${c.rowsPerSecond} rows/s` +
      (c.etaSeconds !== null && c.etaSeconds > 0 ? `, ETA ${c.etaSeconds}s` : '') + (c.throttledMs ? `, throttled ${c.throttledMs} ms` : ''));
    lines.push(`       ${c.format} COPY, ${c.parallel} lane${c.parallel > 1 ? 's' : ''}, chunks of ${c.chunkRows} rows` +
      (c.rowsRedone ? `, ${c.rowsRedone} rows copied again after a stopped attempt` : ''));
  }
  if (s.throttle) lines.push(`  throttled: ${s.throttle.reason} (last at ${s.throttle.at})`);
  if (s.catchUp.updatedAt) {
    lines.push(`  catch-up: ${s.catchUp.backlogRows} changes waiting, lag ${s.catchUp.lagSeconds}s, ${s.catchUp.replayedChanges} replayed (as of ${s.catchUp.updatedAt})`);
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
  const durations = Object.entries(s.phaseDurationsMs).map(([p, ms]) => `${p} ${(ms / 1000).toFixed(1)}s`).join(', ');
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
