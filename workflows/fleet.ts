/**
 * fleetMigrationWorkflow: one template plan over many projects, a child migrationWorkflow per project, wave by
 * wave. Each wave waits at its gate (if it has one) for signed approvals, which then cover its children: they are
 * forwarded to each child, which checks them itself instead of waiting at its own gates (fleet-delegation.ts).
 * A failed child has rolled itself back (its own compensations); in a `stop` wave the fleet then starts nothing
 * more, in a `continue` wave it goes on; either way failed projects can be retried (`fleet retry`) until the
 * retry window closes. Pause holds new starts; abort cancels running children (each rolls back) and skips the rest.
 *
 * History: the fleet continues as new every `continueAsNewEvery` children (or when Temporal suggests it), after
 * letting the children in flight finish, carrying every project's state; plans are expanded in batches by one
 * activity, so the parent's history grows by a handful of events per child and per batch.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import { planHashOf, sameName, type DecisionPayload, type SignedDecision } from '../src/identity';
import {
  abort, approve, decisionOutcome, MIGRATION_PHASE, MIGRATION_PROJECT, MIGRATION_TABLE, pause, reject, resume,
  type GateStatus, type MigrationStatus, type RefusedDecision,
} from '../src/messages';
import {
  childWorkflowId, coveringGate, fleetPlan, fleetProject, fleetRetry, fleetStatus, waveOf,
  type FleetCarry, type FleetInput, type FleetPhase, type FleetStatus,
} from '../src/fleet/spec';
import type { Plan } from '../src/plan/schema';
import { displayName } from '../src/sql';
import { fleetDetails, FleetBook } from './fleet-status';
import { migrationWorkflow } from './migration';
import { ACTIVITY_RETRY, checkDecision, decisionDesk, failureMessage, readKeysAtStart, Refusal } from './shared';

const DEFAULT_CAN_EVERY = 500;
const DEFAULT_PLAN_BATCH = 50;
const DEFAULT_RETRY_WINDOW_MS = 7 * 86_400_000;

export async function fleetMigrationWorkflow(input: FleetInput): Promise<FleetStatus> {
  const { spec } = input;
  const settings = input.settings ?? {};
  const info = wf.workflowInfo();
  // Decisions are bound to what this fleet runs, hashed here (template, projects, waves, approvers): never a client's hash.
  const planHash = planHashOf(spec);
  // Short: these take milliseconds, and one lost with a killed worker holds the fleet for this long.
  const act = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '30s', retry: ACTIVITY_RETRY });
  const db = String(spec.template.database);
  const people = [...new Set([...spec.approvers, spec.requestedBy])];
  const carry: FleetCarry = input.carry ?? {
    runs: spec.projects.map(() => ({ s: 'waiting', a: 0 })), wave: 0, approvals: {}, retry: [], paused: false, continuedAsNew: 0,
    gates: spec.waves.filter((w) => w.gate).map((w) => ({ name: w.name, approvers: spec.approvers, required: spec.required, state: 'pending', decisions: [] })),
    startedAt: new Date().toISOString(),
  };
  const book = new FleetBook(spec, carry);
  const refused: RefusedDecision[] = [];
  let phase: FleetPhase = 'running';
  let outcome: FleetStatus['outcome'];
  let eventNo = 0;
  const inFlight = new Map<number, wf.CancellationScope>();
  const plans = new Map<number, Plan | string>();
  let startedThisRun = 0;
  const canEvery = settings.continueAsNewEvery ?? DEFAULT_CAN_EVERY;

  const status = () => book.status(planHash, phase, refused, outcome);
  const details = () => wf.setCurrentDetails(fleetDetails(status()));
  const audit = async (actor: string, action: string, d: Record<string, unknown> = {}): Promise<void> => {
    await act.recordEvent({ db, workflowId: info.workflowId, runId: info.runId, eventKey: `${info.runId}/${++eventNo}`, actor, action, phase, details: d })
      .catch(() => undefined); // the ledger may be down: the fleet's own record is its history
  };

  let keys = carry.keys;
  const desk = decisionDesk({
    workflowId: info.workflowId, runId: info.runId, requestedBy: spec.requestedBy, what: 'fleet',
    people: () => people, keys: () => keys, planHash: () => planHash, refused: () => refused, audit,
  });
  const openGate = () => carry.gates.find((g) => g.state === 'open');
  const gateRules = (d: DecisionPayload) => checkDecision(openGate(), d.by, d.gate,
    { requestedBy: spec.requestedBy, what: 'fleet', phase, gatesHint: 'a fleet takes decisions at the gate before a wave' });
  const operator = (d: DecisionPayload) => people.find((p) => sameName(p, d.by)) ?? d.by;
  const quietly = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => { if (!(err instanceof wf.ApplicationFailure)) throw err; });
  const approvedBy = (g: GateStatus<string>) => g.decisions.filter((x) => x.approved).length;

  wf.setHandler(fleetStatus, status);
  wf.setHandler(fleetPlan, () => ({ plan: { name: spec.name, templateHash: spec.templateHash, projects: spec.projects.length, waves: spec.waves }, planHash }));
  wf.setHandler(decisionOutcome, (sig: string) => desk.outcome(sig));
  wf.setHandler(fleetProject, (slug: string) => {
    const i = spec.projects.findIndex((p) => p.slug === slug);
    if (i < 0) return null;
    const r = carry.runs[i]!;
    return { ...r, slug, wave: spec.waves[waveOf(spec.waves, i)]!.name, workflowId: childWorkflowId(info.workflowId, slug, Math.max(1, r.a)) };
  });
  wf.setHandler(approve, async (args) => {
    const { d, result: { gate: g, name } } = await desk.accept('approve', args, gateRules);
    g.decisions.push({ approver: name, approved: true, reason: d.reason ?? undefined, at: new Date().toISOString() });
    // Kept as signed: the children check these signatures themselves.
    (carry.approvals[g.name] ??= []).push({ payload: (args as SignedDecision).payload, signature: (args as SignedDecision).signature });
    if (approvedBy(g) >= g.required) g.state = 'approved';
    await audit(name, `approve:${g.name}`, { reason: d.reason, planHash });
    details();
    return `${name} approved the fleet's ${g.name} gate (${approvedBy(g)}/${g.required})`;
  });
  wf.setHandler(reject, async (args) => {
    const { d, result: { gate: g, name } } = await desk.accept('reject', args, gateRules);
    g.decisions.push({ approver: name, approved: false, reason: d.reason ?? undefined, at: new Date().toISOString() });
    g.state = 'rejected';
    await audit(name, `reject:${g.name}`, { reason: d.reason, planHash });
    return `${name} rejected the fleet's ${g.name} gate: no more projects start`;
  });
  wf.setHandler(pause, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('pause', args, operator);
    carry.paused = true;
    await audit(by, 'pause', { reason: d.reason });
    details();
  })()));
  wf.setHandler(resume, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('resume', args, operator);
    carry.paused = false;
    await audit(by, 'resume', { reason: d.reason });
    details();
  })()));
  wf.setHandler(abort, (args) => quietly((async () => {
    const { d, result: by } = await desk.accept('abort', args, operator);
    if (outcome) return;
    carry.halted = { phase: 'aborted', reason: `aborted by ${by}${d.reason ? `: ${d.reason}` : ''}` };
    for (const scope of inFlight.values()) scope.cancel(); // each child runs its compensations
    await audit(by, 'abort', { reason: d.reason, running: inFlight.size });
    details();
  })()));
  wf.setHandler(fleetRetry, async (args) => {
    const { d, result: by } = await desk.accept('retry', args, (x) => {
      if (outcome) throw new Refusal('FleetOver', `the fleet has ended (${outcome.phase})`);
      if (carry.halted?.phase === 'aborted') throw new Refusal('FleetOver', 'the fleet was aborted');
      return operator(x);
    });
    const slug = d.gate; // a retry names the project in the signed text's gate field; null: every failed project
    const picked = spec.projects.map((p, i) => ({ p, i })).filter(({ p, i }) =>
      (slug === null || p.slug === slug) && (carry.runs[i]!.s === 'failed' || carry.runs[i]!.s === 'rolled_back'));
    if (picked.length === 0) throw wf.ApplicationFailure.nonRetryable(slug ? `project ${slug} has not failed (or is not in this fleet)` : 'no project has failed', 'NothingToRetry');
    for (const { i } of picked) { book.set(i, 'waiting'); carry.retry.push(i); }
    if (carry.halted?.phase === 'stopped') carry.halted = undefined;
    await audit(by, 'retry', { projects: picked.map(({ p }) => p.slug), reason: d.reason });
    details();
    return `retrying ${picked.map(({ p }) => p.slug).join(', ')}`;
  });

  /** This project's plan: expanded by the activity in a batch with the next waiting projects of its wave. */
  async function planFor(i: number): Promise<Plan | string> {
    if (!plans.has(i)) {
      const w = spec.waves[waveOf(spec.waves, i)]!;
      const batch = [i];
      for (let j = i + 1; j < w.end && batch.length < (settings.planBatch ?? DEFAULT_PLAN_BATCH); j += 1) {
        if (!plans.has(j) && carry.runs[j]!.s === 'waiting') batch.push(j);
      }
      const got = await act.fleetPlans({ template: spec.template, projects: batch.map((j) => spec.projects[j]!) });
      got.forEach((r, k) => plans.set(batch[k]!, r.plan ?? r.problem ?? 'no plan'));
    }
    return plans.get(i)!;
  }

  function ended(i: number, state: 'done' | 'rolled_back' | 'failed', reason: string | undefined, startedAt: number): void {
    const r = carry.runs[i]!;
    r.ms = Date.now() - startedAt;
    if (reason) r.e = reason.slice(0, 200); else delete r.e;
    book.set(i, state);
    if (state === 'done') book.noteSlow(spec.projects[i]!.slug, r.ms);
    const w = spec.waves[waveOf(spec.waves, i)]!;
    if (state !== 'done' && w.onError === 'stop' && !carry.halted) {
      carry.halted = { phase: 'stopped', reason: `project ${spec.projects[i]!.slug} ${state.replace('_', ' ')} in wave ${w.name} (on error: stop): ${reason ?? ''}` };
    }
    details();
  }

  /** Start project i's child; its end is booked when it comes. */
  function startChild(i: number, plan: Plan): void {
    const p = spec.projects[i]!;
    const r = carry.runs[i]!;
    const wi = waveOf(spec.waves, i);
    const gate = coveringGate(spec.waves, wi)!;
    r.a += 1;
    delete r.ms;
    book.set(i, 'running');
    const startedAt = Date.now();
    carry.firstChildAt ??= startedAt;
    startedThisRun += 1;
    const scope = new wf.CancellationScope();
    inFlight.set(i, scope);
    const child = scope.run(() => wf.executeChild(migrationWorkflow, {
      workflowId: childWorkflowId(info.workflowId, p.slug, r.a),
      args: [{ plan, fleet: { workflowId: info.workflowId, planHash, gate, approvals: carry.approvals[gate] ?? [] }, timeouts: settings.childTimeouts }],
      typedSearchAttributes: [
        { key: MIGRATION_PROJECT, value: p.slug }, { key: MIGRATION_PHASE, value: 'preflight' }, { key: MIGRATION_TABLE, value: displayName(plan.source) },
      ],
      staticSummary: `fleet ${spec.name}: project ${p.slug} (wave ${spec.waves[wi]!.name}, attempt ${r.a})`,
      // A cancelled child (abort) runs its own compensations; never terminated behind its back.
      parentClosePolicy: wf.ParentClosePolicy.REQUEST_CANCEL,
    }));
    void child.then(
      (s: MigrationStatus) => ended(i, s.phase === 'done' ? 'done' : s.phase === 'rolled_back' ? 'rolled_back' : 'failed', s.phase === 'done' ? undefined : s.outcome?.reason ?? s.phase, startedAt),
      (err: unknown) => ended(i, 'failed', wf.isCancellation(err) ? 'cancelled by the fleet\'s abort (the child ran its own compensations; see its status)' : failureMessage(err), startedAt),
    ).finally(() => inFlight.delete(i));
  }

  /**
   * Start the retries asked for, then wave wi's waiting projects (wi undefined: retries only), at most the wave's
   * parallelism at once, while not paused; until all have ended. 'can': time to continue as new (in flight drained).
   */
  async function pump(wi: number | undefined): Promise<'ok' | 'can'> {
    const w = wi === undefined ? undefined : spec.waves[wi]!;
    let cursor = w?.start ?? 0;
    const next = (): number | undefined => {
      if (carry.retry.length) return carry.retry[0];
      if (!w) return undefined;
      while (cursor < w.end && carry.runs[cursor]!.s !== 'waiting') cursor += 1;
      return cursor < w.end ? cursor : undefined;
    };
    const limit = () => w?.parallel ?? Math.max(...spec.waves.map((x) => x.parallel));
    for (;;) {
      await wf.condition(() => !!carry.halted || next() === undefined || (!carry.paused && inFlight.size < limit()));
      if (carry.halted || next() === undefined) break;
      if (startedThisRun >= canEvery || wf.workflowInfo().continueAsNewSuggested) {
        await wf.condition(() => inFlight.size === 0);
        return 'can';
      }
      const i = next()!;
      const plan = await planFor(i);
      if (carry.halted || carry.paused || carry.runs[i]!.s !== 'waiting') continue;
      if (carry.retry[0] === i) carry.retry.shift();
      plans.delete(i);
      if (typeof plan === 'string') {
        carry.runs[i]!.a += 1;
        book.set(i, 'running');
        ended(i, 'failed', `the template gives no valid plan: ${plan}`, Date.now());
        continue;
      }
      startChild(i, plan);
      details();
    }
    await wf.condition(() => inFlight.size === 0);
    return 'ok';
  }

  /** The gate before wave wi: open until enough approvals, a reject or an abort. */
  async function waveGate(wi: number): Promise<void> {
    const g = carry.gates.find((x) => x.name === spec.waves[wi]!.name)!;
    if (g.state === 'approved') return;
    g.state = 'open';
    g.openedAt ??= new Date().toISOString();
    phase = 'awaiting_gate';
    details();
    await audit('safeshift', `gate:${g.name}:open`, { approvers: g.approvers, required: g.required, wave: wi });
    await wf.condition(() => g.state !== 'open' || !!carry.halted);
    phase = 'running';
    if ((g.state as GateStatus['state']) === 'rejected' && !carry.halted) {
      const d = g.decisions.find((x) => !x.approved)!;
      carry.halted = { phase: 'aborted', reason: `${d.approver} rejected the ${g.name} gate${d.reason ? `: ${d.reason}` : ''}` };
    }
  }

  async function continueAsNew(): Promise<never> {
    carry.continuedAsNew += 1;
    carry.keys = keys;
    await audit('safeshift', 'fleet:continue-as-new', { started: startedThisRun, wave: carry.wave });
    await wf.condition(wf.allHandlersFinished);
    return wf.continueAsNew<typeof fleetMigrationWorkflow>({ spec, settings, carry });
  }

  if (!keys) {
    keys = (await readKeysAtStart(act.readDeciderKeys, { db, names: people }, audit)).keys;
    await audit('safeshift', 'fleet:start', { name: spec.name, planHash, projects: spec.projects.length, waves: spec.waves.map((w) => w.name) });
  }
  details();
  for (;;) {
    while (carry.wave < spec.waves.length && !carry.halted) {
      if (spec.waves[carry.wave]!.gate) await waveGate(carry.wave);
      if (carry.halted) break;
      if ((await pump(carry.wave)) === 'can') return continueAsNew();
      if (carry.halted) break;
      carry.wave += 1;
    }
    if (carry.wave >= spec.waves.length && carry.retry.length && !carry.halted) {
      if ((await pump(undefined)) === 'can') return continueAsNew();
      continue;
    }
    if (carry.halted?.phase === 'aborted' || !book.anyFailed()) break;
    phase = 'awaiting_retry';
    details();
    const aborted = () => (carry.halted as FleetCarry['halted'])?.phase === 'aborted';
    const asked = await wf.condition(() => carry.retry.length > 0 || aborted(), settings.retryWindowMs ?? DEFAULT_RETRY_WINDOW_MS);
    phase = 'running';
    if (!asked || aborted()) break;
  }
  for (const [i, r] of carry.runs.entries()) if (r.s === 'waiting') book.set(i, 'skipped');
  const t = status().totals;
  phase = carry.halted?.phase ?? (book.anyFailed() ? 'stopped' : 'done');
  outcome = {
    phase,
    reason: carry.halted?.reason ?? `${t.done} of ${t.projects} projects done${t.failed + t.rolledBack ? `, ${t.failed + t.rolledBack} failed (retry window closed)` : ''}`,
  };
  await audit('safeshift', `fleet:${phase}`, { reason: outcome.reason, ...t });
  details();
  await wf.condition(wf.allHandlersFinished);
  return status();
}
