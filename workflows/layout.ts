/**
 * layoutWorkflow: make the database what a layout file says (src/layout/), behind an approval.
 *
 *   plan (read-only difference) → nothing to change: unchanged
 *                               → apply gate (signed decisions, as a migration's) → auth stand-in → shared →
 *                                 system → each project → check (plan again: nothing may be left) → done
 *
 * Every step converges (creates what is missing, leaves alone what is as said), in one transaction per scope with
 * its audit row, so a crash, a retry or a second run repeats nothing. A reject or a gate timeout changes nothing.
 * A failure mid-apply leaves the scopes converged so far as they are (each is whole: one transaction) and says so;
 * running apply again converges the rest. Deterministic: no I/O here.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import { fatal } from '../src/errors';
import { planHashOf, type DecisionPayload } from '../src/identity';
import type { Plan } from '../src/plan/schema';
import { approve, decisionOutcome, planQuery, reject, type ApproveArgs, type ApproverKeys, type RejectArgs } from '../src/messages';
import { layoutStatus, SCOPES_PER_ACTIVITY, type LayoutInput, type LayoutPhase, type LayoutStatus } from '../src/layout/messages';
import { ACTIVITY_RETRY, checkDecision, decisionDesk, failureMessage, failureType, readKeysAtStart } from './shared';

export async function layoutWorkflow(input: LayoutInput): Promise<LayoutStatus> {
  const info = wf.workflowInfo();
  const layout = input.layout;
  const ref = { db: layout.database, workflowId: info.workflowId, runId: info.runId };
  const quick = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '5m', retry: ACTIVITY_RETRY });
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '30m', heartbeatTimeout: '2m', retry: ACTIVITY_RETRY });
  // What an approver decides on: the layout, hashed by the workflow itself.
  const planHash = planHashOf(layout);
  const state: LayoutStatus = {
    name: layout.name, phase: 'plan', requestedBy: layout.requestedBy, planHash, changes: [], changeCount: 0, scopes: [], converged: [], statements: 0,
  };
  let event = 0;
  const audit = (actor: string, action: string, details: Record<string, unknown>) => quick.recordEvent({
    ...ref, eventKey: `${info.runId}/${++event}`, actor, action, phase: state.phase, details,
  });
  const enter = (phase: LayoutPhase, message?: string) => {
    state.phase = phase;
    if (message !== undefined) state.message = message;
    wf.setCurrentDetails(`**layout ${layout.name}**: ${phase}; ${state.changeCount} change(s) in ${state.scopes.length} scope(s), ` +
      `${state.converged.length} converged${state.message ? `\n\n${state.message}` : ''}`);
  };

  // Decisions: the migration's signed-decision desk and gate rules; the keys are read before the gate opens.
  const people = [...new Set([...layout.approvals.apply.approvers, layout.requestedBy])];
  let deciderKeys: ApproverKeys | undefined;
  installDecisions(layout, state, () => deciderKeys, people, audit);

  enter('plan');
  await audit(layout.requestedBy, 'layout:requested', { name: layout.name, planHash, fileHash: input.fileHash ?? null, projects: layout.projects.length });
  try {
    deciderKeys = (await readKeysAtStart(quick.readDeciderKeys, { db: layout.database, names: people }, audit)).keys;
    const plan = await quick.planLayoutChanges({ ...ref, layout });
    if (plan.problems.length) throw fatal('BadPlan', plan.problems.join('; '));
    Object.assign(state, { changes: plan.changes, changeCount: plan.changeCount, scopes: plan.scopes });
    if (plan.changeCount === 0) {
      enter('unchanged', `the database already is as layout ${layout.name} says: nothing to change`);
      await audit('safeshift', 'layout:unchanged', { planHash });
      return state;
    }

    const gate = layout.approvals.apply;
    state.gate = {
      name: 'apply', approvers: gate.approvers, required: gate.required, state: 'open', decisions: [],
      openedAt: new Date().toISOString(), deadline: new Date(Date.now() + gate.timeout).toISOString(),
    };
    enter('awaiting_apply', `${plan.changeCount} change(s) in ${plan.scopes.length} scope(s) wait for approval (safeshift layout plan shows them)`);
    await audit('safeshift', 'gate:apply:open', { approvers: gate.approvers, required: gate.required, changes: plan.changeCount, scopes: plan.scopes.length });
    if (!(await wf.condition(() => state.gate!.state !== 'open', gate.timeout))) {
      state.gate.state = 'timed_out';
      throw fatal('GateTimeout', `no decision at the apply gate by ${state.gate.deadline}`);
    }
    if (state.gate.state === 'rejected') throw fatal('Rejected', `the apply gate was rejected by ${state.gate.decisions.find((x) => !x.approved)?.approver}`);

    enter('apply', undefined);
    const scopes = plan.scopes.filter((s) => s !== 'auth');
    if (plan.scopes.includes('auth')) {
      const created = await quick.convergeLayoutAuth({ ...ref, layout });
      state.converged.push('auth');
      state.statements += created.length;
    }
    for (let i = 0; i < scopes.length; i += SCOPES_PER_ACTIVITY) {
      const { results, failed } = await long.convergeLayoutScopes({ ...ref, layout, scopes: scopes.slice(i, i + SCOPES_PER_ACTIVITY) });
      for (const r of results) {
        state.converged.push(r.scope);
        state.statements += r.statements;
      }
      if (failed) throw fatal(failed.type, failed.message);
      enter('apply');
    }

    enter('check');
    const after = await quick.planLayoutChanges({ ...ref, layout });
    if (after.changeCount > 0) {
      throw fatal('BadPlan', `after apply, ${after.changeCount} change(s) are still to make (changed meanwhile?): ${after.changes.slice(0, 5).map((c) => `${c.sign} ${c.object}`).join('; ')}`);
    }
    enter('done', `layout ${layout.name} applied: ${state.converged.length} scope(s) converged, ${state.statements} statement(s); nothing left to change`);
    await audit(layout.requestedBy, 'layout:applied', { planHash, scopes: state.converged.length, statements: state.statements });
    return state;
  } catch (err) {
    const reason = failureMessage(err);
    const type = failureType(err);
    await wf.CancellationScope.nonCancellable(async () => {
      // Nothing to undo: before the gate nothing changed; after it, each converged scope is whole and as the layout says.
      const applying = state.phase === 'apply' || state.phase === 'check';
      const phase: LayoutPhase = applying ? 'failed' : 'rolled_back';
      state.outcome = { phase, reason };
      enter(phase, !applying ? `${reason}; nothing was changed`
        : `${reason}; converged before the failure: ${state.converged.join(', ') || 'none reported'} (each whole, in one transaction with its ` +
          'layout:converged audit row); run layout apply again to converge the rest');
      await audit('safeshift', `layout:${phase}`, { reason, converged: state.converged }).catch(() => undefined);
    });
    throw wf.ApplicationFailure.create({ type: type ?? 'LayoutFailed', message: state.message, nonRetryable: true });
  }
}

type Audit = (actor: string, action: string, details: Record<string, unknown>) => Promise<unknown>;

/** The status and plan queries, and approve / reject at the apply gate through the signed-decision desk. */
function installDecisions(layout: LayoutInput['layout'], state: LayoutStatus, keys: () => ApproverKeys | undefined, people: string[], audit: Audit): void {
  const info = wf.workflowInfo();
  const planHash = state.planHash;
  const desk = decisionDesk({
    workflowId: info.workflowId, runId: info.runId, requestedBy: layout.requestedBy, what: 'layout apply',
    people: () => people, keys, planHash: () => planHash,
    refused: () => (state.refusedDecisions ??= []), audit,
  });
  const openGate = () => (state.gate?.state === 'open' ? state.gate : undefined);
  const gateRules = (d: DecisionPayload) => checkDecision(openGate(), d.by, d.gate,
    { requestedBy: layout.requestedBy, what: 'layout apply', phase: state.phase, gatesHint: 'a layout apply decides at the apply gate, after its plan' });
  wf.setHandler(layoutStatus, () => state);
  wf.setHandler(decisionOutcome, (signature: string) => desk.outcome(signature));
  wf.setHandler(planQuery, () => ({ plan: layout as unknown as Plan, planHash }));
  wf.setHandler(approve, async (args: ApproveArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('approve', args, gateRules);
    g.decisions.push({ approver: name, approved: true, reason: d.reason ?? undefined, at: new Date().toISOString() });
    const approvals = g.decisions.filter((x) => x.approved).length;
    if (approvals >= g.required) g.state = 'approved';
    await audit(name, 'approve:layout', { reason: d.reason, planHash, signedAt: d.time });
    return `${name} approved the apply gate of layout ${layout.name} (${approvals}/${g.required})`;
  });
  wf.setHandler(reject, async (args: RejectArgs) => {
    const { d, result: { gate: g, name } } = await desk.accept('reject', args, gateRules);
    g.decisions.push({ approver: name, approved: false, reason: d.reason ?? undefined, at: new Date().toISOString() });
    g.state = 'rejected';
    await audit(name, 'reject:layout', { reason: d.reason, planHash, signedAt: d.time });
    return `${name} rejected the apply gate of layout ${layout.name}; nothing is changed`;
  });
}
