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
import { fatal } from '../src/errors';
import { planHashOf, sameName, type DecisionPayload } from '../src/identity';
import {
  abort, approve, decisionOutcome, planQuery, rollbackRequestedReason, MIGRATION_PHASE, pause, reject, resume, rollback, status,
  type ApproveArgs, type ApproverKeys, type OperatorArgs, type GateName, type GateStatus, type MigrationInput, type MigrationStatus, type Phase, type RejectArgs,
} from '../src/messages';
import { formatDuration } from '../src/plan/duration';
import { displayName } from '../src/sql';
import { ACTIVITY_RETRY, checkDecision, decisionDesk, failureMessage, Refusal, stampOf } from './shared';

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
  let phaseStartedAt = startedAt;
  let eventNo = 0;
  let dropStarted = false;
  let cutoverAt: number | undefined;
  let rollbackAsked: { by: string; reason?: string } | undefined;

  // Written one after the other (as migrationWorkflow's ledgerInOrder does): the record runs in the order things happened.
  let ledgerTail: Promise<unknown> = Promise.resolve();
  const audit = (actor: string, action: string, details: Record<string, unknown> = {}, extra: Partial<Parameters<typeof quick.recordEvent>[0]> = {}): Promise<void> => {
    const event = { ...ref, eventKey: `${info.runId}/${++eventNo}`, actor, action, phase: state.phase, details, ...extra };
    const scope = wf.CancellationScope.current();
    const next = ledgerTail.then(() => scope.run(() => quick.recordEvent(event))).then((head) => {
      if (head && (!state.auditHead || head.seq > state.auditHead.seq)) state.auditHead = head;
    });
    ledgerTail = next.catch(() => undefined);
    return next;
  };

  function touch(): void {
    const now = Date.now();
    state.phaseDurationsMs[state.phase] = (state.phaseDurationsMs[state.phase] ?? 0) + (now - phaseStartedAt);
    phaseStartedAt = now;
    state.updatedAt = new Date(now).toISOString();
    wf.setCurrentDetails(currentDetails(state));
  }

  async function enter(phase: Phase, details: Record<string, unknown> = {}, outcome?: { reason: string }): Promise<void> {
    touch();
    state.phase = phase;
    state.phaseDurationsMs[phase] ??= 0;
    wf.upsertSearchAttributes([{ key: MIGRATION_PHASE, value: phase }]);
    wf.setCurrentDetails(currentDetails(state));
    await audit('safeshift', `phase:${phase}`, details, {
      ...(eventNo === 0 ? { migration: { name: plan.name, plan, planHash, source: state.source, target: state.target, requestedBy: plan.requestedBy } } : {}),
      ...(outcome ? { outcome } : {}),
    });
  }

  function stopped(where: string): Error {
    return rollbackAsked
      ? fatal('RollbackRequested', rollbackRequestedReason(rollbackAsked.by, rollbackAsked.reason))
      : fatal('Aborted', `aborted by an operator${where}`);
  }

  async function checkpoint(): Promise<void> {
    await wf.condition(() => !state.paused || state.abortRequested);
    if (state.abortRequested) throw stopped('');
  }

  const openGate = (): GateStatus | undefined => state.gates.find((g) => g.state === 'open');
  const approvals = (g: GateStatus) => g.decisions.filter((d) => d.approved).length;
  const people = [...new Set([...plan.approvals.cutover.approvers, ...plan.approvals.drop.approvers, plan.requestedBy])];
  let deciderKeys: ApproverKeys | undefined;
  const desk = decisionDesk({
    workflowId: info.workflowId, runId: info.runId, requestedBy: plan.requestedBy, what: 'migration',
    people: () => people, keys: () => deciderKeys, planHash: () => planHash,
    refused: () => (state.refusedDecisions ??= []), audit: (actor, action, details) => audit(actor, action, details),
  });
  const gateRules = (d: DecisionPayload) => checkDecision(openGate(), d.by, d.gate,
    { requestedBy: plan.requestedBy, what: 'migration', phase: state.phase, gatesHint: 'decisions are taken at the cutover and drop gates' });
  const operator = (d: DecisionPayload) => people.find((p) => sameName(p, d.by)) ?? d.by;
  const quietly = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => {
    if (!(err instanceof wf.ApplicationFailure)) throw err;
  });

  wf.setHandler(status, () => state);
  wf.setHandler(planQuery, () => ({ plan, planHash }));
  wf.setHandler(decisionOutcome, (signature: string) => desk.outcome(signature));
  wf.setHandler(approve, async (args: ApproveArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('approve', args, gateRules);
    g.decisions.push({ approver: name, approved: true, reason: d.reason ?? undefined, at: new Date().toISOString() });
    // The gate opens once its audit row is written (the phase it lets in is recorded after it), or failed to be.
    try {
      await audit(name, `approve:${g.name}`, { reason: d.reason, planHash, signedAt: d.time });
    } finally {
      if (approvals(g) >= g.required) g.state = 'approved';
    }
    return `${name} approved the ${g.name} gate (${approvals(g)}/${g.required})`;
  });
  wf.setHandler(reject, async (args: RejectArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('reject', args, gateRules);
    g.decisions.push({ approver: name, approved: false, reason: d.reason ?? undefined, at: new Date().toISOString() });
    try {
      await audit(name, `reject:${g.name}`, { reason: d.reason, planHash, signedAt: d.time });
    } finally {
      g.state = 'rejected';
    }
    return `${name} rejected the ${g.name} gate; rolling back`;
  });
  wf.setHandler(pause, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('pause', args, operator);
    state.paused = true;
    touch();
    await audit(by, 'pause', { reason: d.reason }, { paused: true });
  })()));
  wf.setHandler(resume, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('resume', args, operator);
    state.paused = false;
    touch();
    await audit(by, 'resume', { reason: d.reason }, { paused: false });
  })()));
  wf.setHandler(rollback, async (args: OperatorArgs) => {
    const { d, result: by } = await desk.accept('rollback', args, (dd) => {
      if (!cutoverAt || dropStarted || state.outcome) {
        throw new Refusal('NotReversible', `rollback is possible after cutover and before the drop starts; the migration is in phase ${state.phase} (before cutover, use abort)`);
      }
      return operator(dd);
    });
    rollbackAsked = { by, reason: d.reason ?? undefined };
    state.rollbackRequestedBy = by;
    await audit(by, 'rollback', { reason: d.reason });
    state.abortRequested = true;
    return `rolling back ${state.source} in place: each change applied at cutover is undone (its inverse), newest first`;
  });
  wf.setHandler(abort, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('abort', args, operator);
    if (dropStarted || state.outcome) {
      await audit(by, 'abort:ignored', { reason: 'drop has started or the migration is over' });
      return;
    }
    await audit(by, 'abort', { reason: d.reason }, { paused: true });
    state.abortRequested = true;
  })()));

  /** Wait at a gate until enough approvals, a reject, an abort or the timeout (as migrationWorkflow's gate). */
  async function gate(name: GateName): Promise<void> {
    const cfg = plan.approvals[name];
    const g = state.gates.find((x) => x.name === name)!;
    g.state = 'open';
    g.openedAt = new Date().toISOString();
    if (cfg.timeout) g.deadline = new Date(Date.now() + cfg.timeout).toISOString();
    await enter(name === 'cutover' ? 'awaiting_cutover' : 'awaiting_drop', { approvers: cfg.approvers, required: cfg.required });
    const settled = () => g.state !== 'open' || state.abortRequested;
    const decided = cfg.timeout === undefined ? (await wf.condition(settled), true) : await wf.condition(settled, cfg.timeout);
    if (state.abortRequested) throw stopped(` at the ${name} gate`);
    if (!decided) {
      g.state = 'timed_out';
      throw fatal('GateTimeout', `no decision at the ${name} gate within ${formatDuration(cfg.timeout!)}`);
    }
    if ((g.state as GateStatus['state']) === 'rejected') {
      const d = g.decisions.find((x) => !x.approved)!;
      throw fatal('Rejected', `${d.approver} rejected the ${name} gate${d.reason ? `: ${d.reason}` : ''}`);
    }
    if (name === 'drop' && plan.approvals.drop.notBefore && cutoverAt !== undefined) {
      const notBefore = cutoverAt + plan.approvals.drop.notBefore;
      g.notBefore = new Date(notBefore).toISOString();
      const wait = notBefore - Date.now();
      if (wait > 0 && (await wf.condition(() => state.abortRequested, wait))) throw stopped(' while the drop gate waited for its retention time');
    }
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
    deciderKeys = await quick.readDeciderKeys({ db: plan.database, names: people });
    const keyless = people.filter((p) => !sameName(p, plan.requestedBy) && !deciderKeys![p.toLowerCase()]?.length);
    if (keyless.length) await audit('safeshift', 'keys:missing', { names: keyless });
    report = await quick.preflightInPlace({ db: plan.database, plan, stamp: stampOf(info.startTime) });
    state.target = displayName(report.finalName);
    state.warnings = [...report.warnings,
      ...(keyless.length ? [`no key registered for ${keyless.join(', ')} when the migration started: their decisions will be refused (safeshift keys add)`] : [])];
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
    cutoverAt = Date.now();
    state.retiredTable = undefined;
    await audit('safeshift', 'cutover:in-place', { steps: applied.steps, table: applied.table, relfilenode: applied.relfilenode });

    await enter('verify');
    // The point of this path: the table's storage is the same file it was (no row was copied or rewritten).
    if (applied.relfilenode !== report.relfilenode) state.warnings.push(`the table was rewritten after all (relfilenode ${report.relfilenode} → ${applied.relfilenode})`);
    await audit('safeshift', 'verify:in-place', { rewritten: applied.relfilenode !== report.relfilenode, relfilenode: applied.relfilenode });

    await gate('drop');
    await checkpoint();
    dropStarted = true;
    revertRegistered = false; // past this point nothing is undone: the drop is the point of no return
    await enter('drop');
    const finished = await quick.finishInPlace(applyArgs);
    await audit('safeshift', 'drop:in-place', { steps: finished.steps, relfilenode: finished.relfilenode });

    touch();
    state.outcome = { phase: 'done', reason: `${state.source} changed in place${state.target !== state.source ? ` (now ${state.target})` : ''}: ${report.ops.length} catalog-only change${report.ops.length === 1 ? '' : 's'}, no row copied` };
    await enter('done', {}, { reason: state.outcome.reason });
    await startBackupRetention(report);
  } catch (err) {
    const reason = failureMessage(err);
    if (dropStarted) {
      state.outcome = { phase: 'failed', reason: `drop failed after approval: ${reason}; a hidden column may still exist` };
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
