/**
 * The frame a table-changing workflow runs in (migrationWorkflow, inPlaceWorkflow): its status, the audit row and
 * ledger phase of every step in the order things happened, pause and abort, and the signed decisions at the
 * cutover and drop gates. Both workflows keep the same status shape, messages and audit actions, so `safeshift
 * status / approve / reject / pause / resume / abort / rollback` work on either; this is where that sameness lives.
 * Deterministic like the workflows: no I/O here, only the activity the workflow hands in (recordEvent).
 */
import * as wf from '@temporalio/workflow';
import type { RecordEventInput } from '../activities/ledger';
import type { AuditHead } from '../src/audit-log';
import { fatal } from '../src/errors';
import { sameName, type DecisionPayload } from '../src/identity';
import {
  abort, approve, decisionOutcome, planQuery, rollbackRequestedReason, MIGRATION_PHASE, pause, reject, resume, rollback, status,
  type ApproveArgs, type ApproverKeys, type GateName, type GateStatus, type MigrationInput, type MigrationStatus, type OperatorArgs, type Phase, type RejectArgs,
} from '../src/messages';
import { formatDuration } from '../src/plan/duration';
import { checkDecision, decisionDesk, Refusal, type DeskMemory } from './shared';

type Plan = MigrationInput['plan'];

export interface FrameInit {
  plan: Plan;
  /** The hash of the plan this workflow runs, computed by the workflow: the one every decision must carry. */
  planHash: string;
  /** The ledger's key: a continued run (continue-as-new) writes under the first run's id. */
  ref: { db: string; workflowId: string; runId: string };
  state: MigrationStatus;
  /** The activity that writes an audit row and the ledger's phase. */
  recordEvent: (event: RecordEventInput) => Promise<AuditHead | null | undefined>;
  /** The Temporal UI's "current details" for this kind of workflow. */
  describe: (s: MigrationStatus) => string;
  /** What the run before this one kept (continue-as-new, workflows/carry.ts). */
  carried?: { eventNo: number; phaseStartedAt: number; cutoverAt?: number; deciderKeys?: ApproverKeys; desk?: DeskMemory };
  /** Earlier runs of this migration: a decision signed for one of them is about this migration too. */
  earlierRuns?: string[];
  /** What `rollback` answers once accepted. */
  rollbackReply: string;
  /** A swap back that waits (phase rollback_blocked): rollback and abort ask for another try instead. */
  blockedRollback?: { isBlocked: () => boolean; retry: (by: string, reason: string | null, via: 'rollback' | 'abort') => Promise<string> };
}

export type MigrationFrame = ReturnType<typeof migrationFrame>;

/** Builds the frame and sets the status, plan and decision handlers. Call once, at the top of the workflow. */
export function migrationFrame(init: FrameInit) {
  const { plan, planHash, ref, state } = init;
  // Its closures read the frame when a decision arrives, by which time the frame exists.
  const desk = decisionDesk({
    workflowId: ref.workflowId, runId: wf.workflowInfo().runId, earlierRuns: init.earlierRuns, memory: init.carried?.desk,
    requestedBy: plan.requestedBy, what: 'migration',
    people: () => frame.people, keys: () => frame.deciderKeys, planHash: () => planHash,
    refused: () => (state.refusedDecisions ??= []), audit: (actor, action, details) => audit(actor, action, details),
  });
  const frame = {
    state,
    /** The last audit event's number (event keys are `<runId>/<n>`, unique across runs). */
    eventNo: init.carried?.eventNo ?? 0,
    phaseStartedAt: init.carried?.phaseStartedAt ?? Date.parse(state.startedAt),
    /** Workflow time of the cutover's commit: rollback is possible from then until the drop starts. */
    cutoverAt: init.carried?.cutoverAt,
    /** Set when the drop starts, or when the drop gate timed out: past it nothing is undone, and abort is ignored. */
    dropStarted: false,
    /** Who asked for the old table back after cutover (safeshift rollback), so the outcome says so, not "aborted". */
    rollbackAsked: undefined as { by: string; reason?: string } | undefined,
    /** The registered public keys of those who may decide, read when the migration starts and fixed for it. */
    deciderKeys: init.carried?.deciderKeys,
    /** Everyone who may decide anything here: the approvers of both gates, and the requester (operator actions only). */
    people: [...new Set([...plan.approvals.cutover.approvers, ...plan.approvals.drop.approvers, plan.requestedBy])],
    desk, audit, touch, enter, stopped, checkpoint, openGate, gateOutcome, holdForDropRetention, keepAfterDropTimeout,
  };

  /**
   * The record runs in the order things happened: each ledger write starts once the one before it has finished
   * or failed. Without this, a decision's audit (from its Update handler) and the row of the phase that decision
   * lets in are scheduled in the same workflow task and race: the approval could land after the phase it enabled.
   * Each write runs in the cancellation scope it was asked from. Each row's seq and MAC is anchored in the status,
   * outside the database: `safeshift audit verify --migration` compares.
   */
  let ledgerTail: Promise<unknown> = Promise.resolve();
  function audit(actor: string, action: string, details: Record<string, unknown> = {}, extra: Partial<RecordEventInput> = {}): Promise<void> {
    const event: RecordEventInput = { ...ref, eventKey: `${ref.runId}/${++frame.eventNo}`, actor, action, phase: state.phase, details, ...extra };
    const scope = wf.CancellationScope.current();
    const next = ledgerTail.then(() => scope.run(() => init.recordEvent(event))).then((head) => {
      if (head && (!state.auditHead || head.seq > state.auditHead.seq)) state.auditHead = head;
    });
    ledgerTail = next.catch(() => undefined);
    return next;
  }

  function touch(): void {
    const now = Date.now();
    state.phaseDurationsMs[state.phase] = (state.phaseDurationsMs[state.phase] ?? 0) + (now - frame.phaseStartedAt);
    frame.phaseStartedAt = now;
    state.updatedAt = new Date(now).toISOString();
    wf.setCurrentDetails(init.describe(state));
  }

  /** A phase begins: its clock, the search attribute, the UI's details, its audit row (the first carries the plan). */
  async function enter(phase: Phase, details: Record<string, unknown> = {}, outcome?: { reason: string }): Promise<void> {
    touch();
    state.phase = phase;
    state.phaseDurationsMs[phase] ??= 0;
    wf.upsertSearchAttributes([{ key: MIGRATION_PHASE, value: phase }]);
    wf.setCurrentDetails(init.describe(state));
    await audit('safeshift', `phase:${phase}`, details, {
      ...(frame.eventNo === 0 ? { migration: { name: plan.name, plan, planHash, source: state.source, target: state.target, requestedBy: plan.requestedBy } } : {}),
      ...(outcome ? { outcome } : {}),
    });
  }

  /** An abort, or a rollback asked for after cutover, as the failure that starts the compensations. */
  function stopped(where: string): Error {
    return frame.rollbackAsked
      ? fatal('RollbackRequested', rollbackRequestedReason(frame.rollbackAsked.by, frame.rollbackAsked.reason))
      : fatal('Aborted', `aborted by an operator${where}`);
  }

  /** Between steps: hold while paused; an abort turns into the failure that starts the rollback. */
  async function checkpoint(): Promise<void> {
    await wf.condition(() => !state.paused || state.abortRequested);
    if (state.abortRequested) throw stopped('');
  }

  /** A gate opens: its state, opening time and deadline, and the phase that waits on it. */
  async function openGate(name: GateName): Promise<GateStatus> {
    const cfg = plan.approvals[name];
    const g = gateNamed(name);
    g.state = 'open';
    g.openedAt = new Date().toISOString();
    if (cfg.timeout) g.deadline = new Date(Date.now() + cfg.timeout).toISOString();
    await enter(name === 'cutover' ? 'awaiting_cutover' : 'awaiting_drop', { approvers: cfg.approvers, required: cfg.required });
    return g;
  }

  /**
   * How a wait at a gate ended. An abort, a reject or the cutover gate's timeout: thrown, the failure that starts
   * the rollback. The drop gate's timeout: 'timed_out', never a rollback (the application has used the new shape
   * since cutover; a swap back nobody asked for would break it) and never the drop (only an approval drops): the
   * workflow keeps what the drop would remove (keepAfterDropTimeout).
   */
  function gateOutcome(name: GateName, decided: boolean): 'decided' | 'timed_out' {
    const g = gateNamed(name);
    if (state.abortRequested) throw stopped(` at the ${name} gate`);
    if (!decided) {
      g.state = 'timed_out';
      if (name === 'drop') return 'timed_out';
      throw fatal('GateTimeout', `no decision at the ${name} gate within ${formatDuration(plan.approvals[name].timeout!)}`);
    }
    if (g.state === 'rejected') {
      const d = g.decisions.find((x) => !x.approved)!;
      throw fatal('Rejected', `${d.approver} rejected the ${name} gate${d.reason ? `: ${d.reason}` : ''}`);
    }
    return 'decided';
  }

  /**
   * The drop gate timed out: from here nothing is undone (rollback refused, abort ignored) and nothing is dropped.
   * `removeCapture` takes away what would otherwise stay for good on the live table (reverse capture: its trigger
   * runs on every write and its change table grows); `kept` (what the drop would have removed, each with the
   * statement that drops it by hand) stays, in the status and the audit log. Returns the note for the outcome.
   */
  async function keepAfterDropTimeout(kept: { what: string; drop: string }[], removeCapture: () => Promise<void>): Promise<string> {
    frame.dropStarted = true;
    const after = formatDuration(plan.approvals.drop.timeout!);
    state.kept = kept;
    const note = `the drop gate timed out after ${after} without a decision, so nothing was dropped and rollback is no longer possible ` +
      `(the application has used the new shape since cutover): ${kept.map((k) => `${k.what} is kept`).join(', ')}; ` +
      `to drop it once nobody needs it: ${kept.map((k) => k.drop).join('; ')}`;
    state.warnings.push(note);
    await audit('safeshift', 'gate:timed-out', { gate: 'drop', after, rollback: false });
    await removeCapture();
    await audit('safeshift', 'drop:skipped', { reason: 'the drop gate timed out: only an approval drops', kept });
    return note;
  }

  /** An approved drop gate still waits out `approvals.drop.notBefore` after the cutover (abort stays possible). */
  async function holdForDropRetention(name: GateName): Promise<void> {
    if (name !== 'drop' || !plan.approvals.drop.notBefore || frame.cutoverAt === undefined) return;
    const notBefore = frame.cutoverAt + plan.approvals.drop.notBefore;
    gateNamed(name).notBefore = new Date(notBefore).toISOString();
    const wait = notBefore - Date.now();
    if (wait > 0 && (await wf.condition(() => state.abortRequested, wait))) throw stopped(' while the drop gate waited for its retention time');
  }

  const gateNamed = (name: GateName): GateStatus => state.gates.find((x) => x.name === name)!;
  const open = (): GateStatus | undefined => state.gates.find((g) => g.state === 'open');
  const approvals = (g: GateStatus) => g.decisions.filter((d) => d.approved).length;

  installHandlers();
  return frame;

  function installHandlers(): void {
    const gateRules = (d: DecisionPayload) => checkDecision(open(), d.by, d.gate,
      { requestedBy: plan.requestedBy, what: 'migration', phase: state.phase, gatesHint: 'decisions are taken at the cutover and drop gates' });
    /** Operator actions: any approver or the requester, by the name as the plan spells it. */
    const operator = (d: DecisionPayload) => frame.people.find((p) => sameName(p, d.by)) ?? d.by;
    /** A signal cannot answer: a refused one is in the status and the audit log (the CLI asks `decisionOutcome`). */
    const quietly = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => {
      if (!(err instanceof wf.ApplicationFailure)) throw err;
    });
    const blocked = () => init.blockedRollback?.isBlocked() ?? false;

    wf.setHandler(status, () => state);
    wf.setHandler(planQuery, () => ({ plan, planHash }));
    wf.setHandler(decisionOutcome, (signature: string) => desk.outcome(signature));
    // No validators: a refused decision is accepted as an Update, recorded and audited, and then refused.
    wf.setHandler(approve, async (args: ApproveArgs) => {
      const { d, result: { gate: g, name } } = await desk.accept('approve', args, gateRules);
      g.decisions.push({ approver: name, approved: true, reason: d.reason ?? undefined, at: new Date().toISOString() });
      if (approvals(g) >= g.required) g.state = 'approved';
      await audit(name, `approve:${g.name}`, { reason: d.reason, planHash, signedAt: d.time });
      return `${name} approved the ${g.name} gate (${approvals(g)}/${g.required})`;
    });
    wf.setHandler(reject, async (args: RejectArgs) => {
      const { d, result: { gate: g, name } } = await desk.accept('reject', args, gateRules);
      g.decisions.push({ approver: name, approved: false, reason: d.reason ?? undefined, at: new Date().toISOString() });
      g.state = 'rejected';
      await audit(name, `reject:${g.name}`, { reason: d.reason, planHash, signedAt: d.time });
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
        // A blocked rollback is taken up again by the same command (even if the cutover's reply was lost).
        if (!blocked() && state.kept) {
          throw new Refusal('NotReversible', `the drop gate timed out: rollback is no longer possible (${state.kept.map((k) => `${k.what} is kept`).join(', ')})`);
        }
        if (!blocked() && (!frame.cutoverAt || frame.dropStarted || state.outcome)) {
          throw new Refusal('NotReversible', `rollback is possible after cutover and before the drop starts; the migration is in phase ${state.phase} (before cutover, use abort)`);
        }
        return operator(dd);
      });
      if (blocked()) return init.blockedRollback!.retry(by, d.reason, 'rollback');
      frame.rollbackAsked = { by, reason: d.reason ?? undefined };
      state.rollbackRequestedBy = by;
      state.abortRequested = true;
      await audit(by, 'rollback', { reason: d.reason });
      return init.rollbackReply;
    });
    wf.setHandler(abort, (args) => quietly((async () => {
      const { d, result: by } = await desk.accept('abort', args, operator);
      // An abort asks for the original table back, as the blocked rollback does: it is one more try.
      if (blocked()) {
        await init.blockedRollback!.retry(by, d.reason, 'abort');
        return;
      }
      if (frame.dropStarted || state.outcome) {
        await audit(by, 'abort:ignored', { reason: 'drop has started or the migration is over' });
        return;
      }
      state.abortRequested = true;
      // The pause flag stops copy and catch-up within a second; the next checkpoint turns it into the rollback.
      await audit(by, 'abort', { reason: d.reason }, { paused: true });
    })()));
  }
}
