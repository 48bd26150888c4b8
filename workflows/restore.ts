/**
 * restoreWorkflow: one table of an export back into the database.
 *
 *   check → load (count and checksum against the manifest before commit) → done               into a new table
 *   check → load into a staged table → restore gate → swap (live table kept as retired) → done  over the live table
 *
 * A reject, a gate timeout or a failure discards the staged table (compensation next to the load); the live table
 * is touched only by the swap, which is one transaction. Every step is in the audit log. Deterministic: no I/O.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { RestorePlan } from '../activities/restore';
import { fatal } from '../src/errors';
import { planHashOf, type DecisionPayload } from '../src/identity';
import type { Plan } from '../src/plan/schema';
import { approve, decisionOutcome, planQuery, reject, restoreGateProblem, restoreStatus, type ApproveArgs, type ApproverKeys, type RejectArgs, type RestoreInput, type RestorePhase, type RestoreStatus } from '../src/messages';
import { displayName } from '../src/sql';
import { ACTIVITY_RETRY, checkDecision, decisionDesk, failureMessage, failureType, HEARTBEAT_TIMEOUT, readKeysAtStart, SHORT_ACTIVITY, stampOf } from './shared';

export async function restoreWorkflow(input: RestoreInput): Promise<RestoreStatus> {
  const info = wf.workflowInfo();
  const ref = { db: input.db, workflowId: info.workflowId, runId: info.runId };
  const retry = ACTIVITY_RETRY;
  const quick = wf.proxyActivities<typeof activities>(SHORT_ACTIVITY);
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '24h', heartbeatTimeout: HEARTBEAT_TIMEOUT, retry });
  const stamp = stampOf(new Date());
  const state: RestoreStatus = { phase: 'check', table: input.table, into: input.into, requestedBy: input.requestedBy };
  let event = 0;
  const audit = (actor: string, action: string, details: Record<string, unknown>) => quick.recordEvent({
    ...ref, eventKey: `${info.runId}/${++event}`, actor, action, phase: 'restore', details,
  });
  const enter = (phase: RestorePhase) => {
    state.phase = phase;
    wf.setCurrentDetails(`**restore ${state.table}** → ${state.into ?? '(new table)'}: ${phase}${state.message ? `\n\n${state.message}` : ''}`);
  };

  const openGate = () => (state.gate?.state === 'open' ? state.gate : undefined);
  // What an approver decides on: this request, hashed by the workflow (shown as the restore's planHash).
  const planHash = planHashOf(input);
  state.planHash = planHash;
  const people = [...new Set([...(input.overLive?.approvers ?? []), input.requestedBy])];
  let deciderKeys: ApproverKeys | undefined;
  const desk = decisionDesk({
    workflowId: info.workflowId, runId: info.runId, requestedBy: input.requestedBy, what: 'restore',
    people: () => people, keys: () => deciderKeys, planHash: () => planHash,
    refused: () => (state.refusedDecisions ??= []), audit: (actor, action, details) => audit(actor, action, details),
  });
  const gateRules = (d: DecisionPayload) => checkDecision(openGate(), d.by, d.gate,
    { requestedBy: input.requestedBy, what: 'restore', phase: state.phase, gatesHint: 'a restore over the live table decides at the restore gate' });
  wf.setHandler(restoreStatus, () => state);
  wf.setHandler(decisionOutcome, (signature: string) => desk.outcome(signature));
  // `safeshift show <id> --plan`: for a restore, the request the approver decides on (and its hash).
  wf.setHandler(planQuery, () => ({ plan: input as unknown as Plan, planHash }));
  // No validators: a refused decision is accepted as an Update, recorded and audited, and then refused.
  wf.setHandler(approve, async (args: ApproveArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('approve', args, gateRules);
    g.decisions.push({ approver: name, approved: true, reason: d.reason ?? undefined, at: new Date().toISOString() });
    const approvals = g.decisions.filter((x) => x.approved).length;
    if (approvals >= g.required) g.state = 'approved';
    await audit(name, 'approve:restore', { reason: d.reason, planHash, signedAt: d.time });
    return `${name} approved the restore gate (${approvals}/${g.required})`;
  });
  wf.setHandler(reject, async (args: RejectArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('reject', args, gateRules);
    g.decisions.push({ approver: name, approved: false, reason: d.reason ?? undefined, at: new Date().toISOString() });
    g.state = 'rejected';
    await audit(name, 'reject:restore', { reason: d.reason, planHash, signedAt: d.time });
    return `${name} rejected the restore gate; the staged table is dropped, ${state.into} stays as it is`;
  });

  // A client other than the CLI may ask for any wait: refused before anything is read or written (the CLI exits 2).
  const gateProblem = input.overLive ? restoreGateProblem(input.overLive.gateTimeoutMs) : undefined;
  if (gateProblem) throw wf.ApplicationFailure.create({ type: 'BadInput', message: gateProblem, nonRetryable: true });

  enter('check');
  const request = { ...ref, dir: input.dir, table: input.table, into: input.into, overLive: Boolean(input.overLive), keyEnv: input.keyEnv, stamp, requestedBy: input.requestedBy };
  await audit(input.requestedBy, 'restore:requested', { dir: input.dir, table: input.table, into: input.into ?? null, overLive: input.overLive ?? null });
  let plan: RestorePlan | undefined;
  let loaded = false;
  try {
    if (input.overLive) deciderKeys = (await readKeysAtStart(quick.readDeciderKeys, { db: input.db, names: people }, audit)).keys;
    plan = await quick.checkRestore(request);
    Object.assign(state, { backupId: plan.backupId, into: displayName(plan.into), rows: plan.rows });
    if (plan.live) Object.assign(state, { staged: displayName(plan.live.staged), retired: displayName(plan.live.retired), liveRows: plan.live.rows, moves: plan.live.moves });

    enter('load');
    const load = await long.loadRestore({ ...request, plan });
    loaded = true;
    await audit('safeshift', 'restore:loaded', { id: plan.backupId, table: load.table, rows: load.rows });
    if (!plan.live || !input.overLive) {
      state.message = `restored ${displayName(plan.table)} into ${load.table}: ${load.rows} rows, count and checksum equal to the export's`;
      enter('done');
      await audit(input.requestedBy, 'backup:restored', { id: plan.backupId, dir: input.dir, table: displayName(plan.table), into: load.table, rows: load.rows });
      return state;
    }

    const gateTimeoutMs = input.overLive.gateTimeoutMs;
    state.gate = {
      name: 'restore', approvers: input.overLive.approvers, required: input.overLive.required, state: 'open', decisions: [],
      openedAt: new Date().toISOString(), deadline: new Date(Date.now() + gateTimeoutMs).toISOString(),
    };
    state.message = `${load.rows} rows restored and verified in ${state.staged}; ${state.into} has ${plan.live.rows} now. ` +
      `On approval ${state.staged} takes its place and the live table is kept as ${state.retired}`;
    enter('awaiting_restore');
    await audit('safeshift', 'gate:restore:open', { approvers: state.gate.approvers, required: state.gate.required, liveRows: plan.live.rows, rows: load.rows, moves: plan.live.moves });
    if (!(await wf.condition(() => state.gate!.state !== 'open', gateTimeoutMs))) {
      state.gate.state = 'timed_out';
      throw fatal('GateTimeout', `no decision at the restore gate by ${state.gate.deadline}`);
    }
    if (state.gate.state === 'rejected') throw fatal('Rejected', `the restore gate was rejected by ${state.gate.decisions.find((d) => !d.approved)?.approver}`);

    enter('swap');
    const swapped = await long.swapInRestored({ ...ref, plan, stagedOid: load.oid, stamp, lockTimeoutMs: input.overLive.lockTimeoutMs, attempts: input.overLive.attempts });
    state.message = swapped.message;
    enter('done');
    await audit(input.requestedBy, 'backup:restored', { id: plan.backupId, dir: input.dir, table: displayName(plan.table), into: displayName(plan.into), rows: plan.rows, overLive: true, retired: state.retired, lockHeldMs: swapped.lockHeldMs, statements: swapped.statements });
    return state;
  } catch (err) {
    const reason = failureMessage(err);
    await wf.CancellationScope.nonCancellable(async () => {
      // Over the live table also when the load's own attempt failed: it is one transaction, so this is a no-op then.
      const discarded = plan?.live ? await quick.discardStagedRestore({ ...ref, plan }) : loaded ? `${state.into} is kept` : 'nothing loaded';
      state.outcome = { phase: loaded ? 'rolled_back' : 'failed', reason };
      state.message = `${reason}; ${discarded}`;
      enter(state.outcome.phase);
      await audit('safeshift', `restore:${state.outcome.phase}`, { reason, compensation: discarded });
    });
    throw wf.ApplicationFailure.create({ type: failureType(err) ?? 'RestoreFailed', message: state.message, nonRetryable: true });
  }
}
