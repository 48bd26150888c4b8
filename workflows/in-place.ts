/**
 * inPlaceWorkflow(plan): the catalog-only fast path (plan field `alter:`, src/in-place.ts). No table is copied:
 * preflight → backup → cutover gate → cutover (the reversible part of each op) → verify → drop gate → drop (the
 * irreversible part: a dropped column's real DROP COLUMN) → done. The same status shape, gates, signals, updates,
 * audit rows and ledger phases as migrationWorkflow, under the same workflow id, so `safeshift status / approve /
 * reject / pause / resume / abort / rollback` work unchanged. A reject, abort, timeout, failure or a rollback
 * asked for after cutover runs the inverse of what was applied (revertInPlace) and ends `rolled_back`.
 *
 * Deterministic: no I/O here, only activities; time is workflow time.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { InPlaceReport, InPlaceInput } from '../activities/in-place';
import { planHashOf, sameName } from '../src/identity';
import type { GateName, MigrationInput, MigrationStatus } from '../src/messages';
import { formatDuration } from '../src/plan/duration';
import { displayIdent, displayName } from '../src/sql';
import { migrationFrame } from './frame';
import { ACTIVITY_RETRY, failureMessage, ignoredKeysWarning, readKeysAtStart, stampOf } from './shared';

export async function inPlaceWorkflow(input: MigrationInput): Promise<MigrationStatus> {
  const { plan } = input;
  const planHash = planHashOf(plan);
  const info = wf.workflowInfo();
  const ref = { db: plan.database, workflowId: info.workflowId, runId: info.runId };
  const retry = ACTIVITY_RETRY;
  const heartbeatTimeout = input.timeouts?.heartbeat ?? '30s';
  const cancellationType = wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED;
  const quick = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '2m', retry });
  // Cutover and rollback can validate a constraint or build an index concurrently: long, heartbeating.
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '12h', heartbeatTimeout, retry, cancellationType });

  const startedAt = Date.now();
  const state: MigrationStatus = {
    name: plan.name,
    planHash,
    source: displayName(plan.source),
    target: displayName(plan.source),
    requestedBy: plan.requestedBy,
    phase: 'preflight',
    paused: false,
    abortRequested: false,
    copy: { rowsCopied: 0, rowsTotal: 0, chunks: 0, lastKey: null, rowsPerSecond: 0, etaSeconds: 0, throttledMs: 0, rowsRedone: 0, chunkRows: 0, parallel: 0, format: 'text' },
    catchUp: { backlogRows: 0, lagSeconds: 0, replayedChanges: 0 },
    gates: (['cutover', 'drop'] as const).map((name) => ({
      name, approvers: plan.approvals[name].approvers, required: plan.approvals[name].required, state: 'pending', decisions: [],
    })),
    phaseDurationsMs: {},
    warnings: [],
    compensations: [],
    startedAt: new Date(startedAt).toISOString(),
    updatedAt: new Date(startedAt).toISOString(),
  };
  const frame = migrationFrame({
    plan, planHash, ref, state, recordEvent: quick.recordEvent, describe: currentDetails,
    rollbackReply: `rolling back ${state.source} in place: each change applied at cutover is undone (its inverse), newest first`,
  });
  const { audit, touch, enter, checkpoint, people } = frame;

  /** Wait at a gate until enough approvals, a reject, an abort or the timeout (as migrationWorkflow's gate). */
  async function gate(name: GateName): Promise<'decided' | 'timed_out'> {
    const g = await frame.openGate(name);
    const timeout = plan.approvals[name].timeout;
    const settled = () => g.state !== 'open' || state.abortRequested;
    const decided = timeout === undefined ? (await wf.condition(settled), true) : await wf.condition(settled, timeout);
    if (frame.gateOutcome(name, decided) === 'timed_out') return 'timed_out';
    await frame.holdForDropRetention(name);
    return 'decided';
  }

  function doneReasonInPlace(r: InPlaceReport): string {
    return `${state.source} changed in place${state.target !== state.source ? ` (now ${state.target})` : ''}: ${r.ops.length} catalog-only change${r.ops.length === 1 ? '' : 's'}, no row copied`;
  }

  async function startBackupRetention(report: InPlaceReport | undefined): Promise<void> {
    if (!state.backupTable || !report) return;
    try {
      await wf.startChild('backupRetentionWorkflow', {
        workflowId: `${info.workflowId}-backup-retention-${stampOf(info.startTime)}`,
        parentClosePolicy: wf.ParentClosePolicy.ABANDON,
        args: [{ db: plan.database, workflowId: info.workflowId, runId: info.runId, backup: report.backup, retentionMs: plan.backup.retention }],
      });
      await audit('safeshift', 'backup:retention', { table: state.backupTable, retention: formatDuration(plan.backup.retention) }).catch(() => undefined);
    } catch (err) {
      state.warnings.push(`the backup table ${state.backupTable} was not scheduled for its retention (${failureMessage(err)}); it stays until dropped by hand`);
    }
  }

  let report: InPlaceReport | undefined;
  let applyArgs: InPlaceInput | undefined;
  let revertRegistered = false;
  try {
    await enter('preflight', { path: 'in place' });
    const read = await readKeysAtStart(quick.readDeciderKeys, { db: plan.database, names: people }, audit);
    const deciderKeys = frame.deciderKeys = read.keys;
    const keyless = people.filter((p) => !sameName(p, plan.requestedBy) && !deciderKeys[p.toLowerCase()]?.length);
    if (keyless.length) await audit('safeshift', 'keys:missing', { names: keyless });
    report = await quick.preflightInPlace({ db: plan.database, plan, stamp: stampOf(info.startTime) });
    state.target = displayName(report.finalName);
    state.warnings = [...report.warnings,
      ...(keyless.length ? [`no key registered for ${keyless.join(', ')} when the migration started: their decisions will be refused (safeshift keys add)`] : []),
      ...ignoredKeysWarning(read.ignored)];
    await audit('safeshift', 'inplace:planned', { relfilenode: report.relfilenode, ops: report.warnings.slice(1) });

    await checkpoint();
    await enter('backup', { table: plan.backup.table });
    if (plan.backup.table) {
      const backup = await long.backupTable({ ...ref, source: plan.source, backup: report.backup });
      state.backupTable = backup.table;
      await audit('safeshift', 'backup:verified', { ...backup });
    }

    await gate('cutover');
    await checkpoint();
    await enter('cutover', { ops: report.ops.length });
    applyArgs = { ...ref, sourceOid: report.sourceOid, ops: report.ops, stamp: stampOf(info.startTime), lockTimeoutMs: plan.cutover.lockTimeoutMs, attempts: plan.cutover.attempts };
    // Registered before it runs: a step may commit and the reply be lost; the inverse looks at the catalog first.
    revertRegistered = true;
    const applied = await long.applyInPlace(applyArgs);
    frame.cutoverAt = Date.now();
    state.retiredTable = undefined;
    await audit('safeshift', 'cutover:in-place', { steps: applied.steps, table: applied.table, relfilenode: applied.relfilenode });

    await enter('verify');
    // The point of this path: the table's storage is the same file it was (no row was copied or rewritten).
    if (applied.relfilenode !== report.relfilenode) state.warnings.push(`the table was rewritten after all (relfilenode ${report.relfilenode} → ${applied.relfilenode})`);
    await audit('safeshift', 'verify:in-place', { rewritten: applied.relfilenode !== report.relfilenode, relfilenode: applied.relfilenode });

    if ((await gate('drop')) === 'timed_out') {
      // No decision is not an approval: the columns hidden at cutover stay (nothing captures here, nothing to remove).
      revertRegistered = false;
      const table = displayName(report.finalName);
      const kept = report.ops.filter((op) => op.kind === 'drop_column' && op.hidden)
        .map((op) => ({ what: `the hidden column ${displayIdent(op.hidden!)} of ${table}`, drop: `ALTER TABLE ${table} DROP COLUMN ${displayIdent(op.hidden!)}` }));
      const note = await frame.keepAfterDropTimeout(kept, async () => undefined);
      touch();
      state.outcome = { phase: 'done', reason: `${doneReasonInPlace(report)}; ${note}` };
      await enter('done', {}, { reason: state.outcome.reason });
      await startBackupRetention(report);
      await wf.condition(wf.allHandlersFinished);
      return state;
    }
    await checkpoint();
    frame.dropStarted = true;
    revertRegistered = false; // past this point nothing is undone: the drop is the point of no return
    await enter('drop');
    const finished = await quick.finishInPlace(applyArgs);
    await audit('safeshift', 'drop:in-place', { steps: finished.steps, relfilenode: finished.relfilenode });

    touch();
    state.outcome = { phase: 'done', reason: doneReasonInPlace(report) };
    await enter('done', {}, { reason: state.outcome.reason });
    await startBackupRetention(report);
  } catch (err) {
    const reason = failureMessage(err);
    if (frame.dropStarted) {
      state.outcome = { phase: 'failed', reason: state.kept
        ? `the drop gate timed out (nothing is dropped, no rollback), then: ${reason}; ${state.kept.map((k) => `${k.what} is kept`).join(', ')}`
        : `drop failed after approval: ${reason}; a hidden column may still exist` };
      await wf.CancellationScope.nonCancellable(async () => {
        await enter('failed', {}, { reason: state.outcome!.reason }).catch(() => undefined);
        await wf.condition(wf.allHandlersFinished);
      });
      throw wf.ApplicationFailure.nonRetryable(state.outcome.reason, 'Failed');
    }
    await wf.CancellationScope.nonCancellable(async () => {
      await enter('rolling_back', { reason }).catch(() => undefined);
      if (revertRegistered && applyArgs) {
        try {
          const reverted = await long.revertInPlace(applyArgs);
          state.compensations.push({ name: 'revertInPlace', state: 'done' });
          state.warnings.push(...reverted.notes);
          await audit('safeshift', 'compensate:revertInPlace', { steps: reverted.steps, notes: reverted.notes, relfilenode: reverted.relfilenode });
        } catch (cerr) {
          state.compensations.push({ name: 'revertInPlace', state: 'failed', error: failureMessage(cerr) });
          await audit('safeshift', 'compensate:revertInPlace:failed', { error: failureMessage(cerr) }).catch(() => undefined);
        }
      }
      const failed = state.compensations.filter((c) => c.state === 'failed');
      state.outcome = failed.length
        ? { phase: 'failed', reason: `${reason}; rollback incomplete: ${failed.map((c) => `${c.name}: ${c.error}`).join('; ')}` }
        : { phase: 'rolled_back', reason };
      await enter(state.outcome.phase, {}, { reason: state.outcome.reason }).catch(() => undefined);
      if (state.outcome.phase === 'rolled_back') await startBackupRetention(report);
      await wf.condition(wf.allHandlersFinished);
    });
    if (state.outcome!.phase === 'failed') throw wf.ApplicationFailure.nonRetryable(state.outcome!.reason, 'Failed');
    return state;
  }
  await wf.condition(wf.allHandlersFinished);
  return state;
}

function currentDetails(s: MigrationStatus): string {
  const lines = [`**${s.phase}**${s.paused ? ' (paused)' : ''} — ${s.source} in place${s.target !== s.source ? ` → ${s.target}` : ''}`];
  for (const g of s.gates) {
    if (g.state === 'pending') continue;
    lines.push(`gate ${g.name}: ${g.state} (${g.decisions.filter((d) => d.approved).length}/${g.required}; approvers ${g.approvers.join(', ')})`);
  }
  for (const w of s.warnings) lines.push(`note: ${w}`);
  if (s.outcome) lines.push(`outcome: ${s.outcome.phase} — ${s.outcome.reason}`);
  return lines.join('\n\n');
}
