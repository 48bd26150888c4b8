/**
 * The layout commands: `plan` (read-only difference, here), `apply` (layoutWorkflow, gated by signed decisions),
 * `verify` (isolation probes, here, in a rolled-back transaction). Bad input (the file, its SQL, a missing
 * variable or role) is refused before anything starts: exit 2, nothing changed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { connectClient, temporalConfig, workflowUiUrl } from '../config';
import { withClient } from '../db';
import { sameName } from '../identity';
import { ensureDevKeys, isDevMode } from '../keys';
import { approve } from '../messages';
import { CliError, EXIT_FAILED, EXIT_OK } from '../cli/exit';
import { refusal, signFor } from '../cli/decisions';
import { planLayout } from './converge';
import { actionable, type Change } from './diff';
import { LayoutError, readLayout } from './load';
import { FINAL_LAYOUT_PHASES, layoutStatus, layoutWorkflowId, type LayoutInput, type LayoutStatus } from './messages';
import { allScopes, checkLayout, type LayoutModel } from './model';
import type { Layout } from './schema';
import { verifyLayout } from './verify';

type Print = (line: string) => void;

async function loadChecked(file: string): Promise<{ layout: Layout; model: LayoutModel; fileHash: string; url: string }> {
  try {
    const { layout, fileHash } = readLayout(file);
    const model = await checkLayout(layout, file);
    const url = process.env[layout.database];
    // Never the value in a message: the variable holds a password.
    if (!url) throw new CliError(`${file}: database: environment variable ${layout.database} is not set`);
    return { layout, model, fileHash, url };
  } catch (err) {
    if (err instanceof LayoutError) throw new CliError(err.message);
    throw err;
  }
}

function scopeTitle(model: LayoutModel, scope: string): string {
  if (scope === 'auth') return 'auth (Supabase roles and auth schema)';
  const s = allScopes(model).find((x) => x.scope === scope);
  if (!s?.project) return `${scope} (schema ${s?.schema ?? scope})`;
  const p = s.project;
  return `project ${p.slug} (schema ${p.schema}, id ${p.id}, owner ${p.owner}, region ${p.region}${p.tier ? `, tier ${p.tier}` : ''})`;
}

export async function layoutPlan(file: string, opts: { json?: boolean }, print: Print): Promise<number> {
  const { layout, model, url } = await loadChecked(file);
  const plan = await withClient(url, (client) => planLayout(client, layout, model), 'safeshift layout plan').catch((err: unknown) => {
    throw new CliError(`${file}: database: cannot read ${layout.database}: ${(err as Error).message}`);
  });
  const todo = actionable(plan.changes);
  const byScope = new Map<string, Change[]>();
  for (const c of plan.changes) (byScope.get(c.scope) ?? byScope.set(c.scope, []).get(c.scope)!).push(c);
  const unchanged = model.projects.filter((p) => !byScope.has(p.scope)).map((p) => p.scope);
  if (opts.json) {
    print(JSON.stringify({
      name: layout.name, changeCount: todo.length, problems: plan.problems, unchangedProjects: unchanged,
      scopes: Object.fromEntries([...byScope].map(([s, cs]) => [s, cs.map(({ sign, what, object, reason, sql }) => ({ sign, what, object, reason, sql }))])),
    }, null, 2));
  } else {
    print(`layout ${layout.name}: ${todo.length} change(s) in ${new Set(todo.map((c) => c.scope)).size} scope(s); ${model.projects.length} project(s), ${unchanged.length} already as the layout says`);
    for (const [scope, cs] of byScope) {
      print(scopeTitle(model, scope));
      for (const c of cs) print(`  ${c.sign} ${c.object}: ${c.reason}`);
    }
    for (const p of plan.problems) print(`problem: ${p}`);
  }
  if (plan.problems.length) throw new CliError(`${file}: ${plan.problems.length} problem(s): layout apply would refuse`);
  return EXIT_OK;
}

export async function layoutApply(file: string, opts: { wait?: boolean; autoApprove?: boolean; json?: boolean }, print: Print): Promise<number> {
  const { layout, model, fileHash, url } = await loadChecked(file);
  // What the workflow would refuse (a role that does not exist, no auth and no stand-in) is bad input: refused here.
  const plan = await withClient(url, (client) => planLayout(client, layout, model), 'safeshift layout apply').catch((err: unknown) => {
    throw new CliError(`${file}: database: cannot read ${layout.database}: ${(err as Error).message}`);
  });
  if (plan.problems.length) throw new CliError(plan.problems.map((p) => `${file}: ${p}`).join('\n'));
  const approvers = layout.approvals.apply.approvers;
  // On the embedded dev stack only, so `approve --as alice` and --auto-approve can sign.
  if (isDevMode()) await withClient(url, (c) => ensureDevKeys(c, [...approvers, layout.requestedBy]), 'safeshift dev keys');
  const config = temporalConfig();
  const client = await connectClient(config).catch((err: unknown) => {
    throw new CliError(`cannot reach Temporal at ${config.address} (TEMPORAL_ADDRESS): ${(err as Error).message}; is \`safeshift dev\` running?`);
  });
  const id = layoutWorkflowId(layout.name);
  try {
    let handle: WorkflowHandle;
    try {
      const input: LayoutInput = { layout, fileHash };
      handle = await client.workflow.start('layoutWorkflow', { taskQueue: config.taskQueue, workflowId: id, args: [input] });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new CliError(`${id} is already running (safeshift approve ${id} --as <approver>, or wait for it)`);
      throw err;
    }
    const say = opts.json ? () => undefined : print;
    say(`${id}: started`);
    const ui = workflowUiUrl(config, id);
    if (ui) say(`  ${ui}`);
    if (!opts.wait && !opts.autoApprove) {
      say(`  if it has changes to make it waits at the apply gate: safeshift approve ${id} --as <${approvers.join('|')}>`);
      if (opts.json) print(JSON.stringify({ id }));
      return EXIT_OK;
    }
    if (opts.autoApprove) void autoApprove(handle, layout, say);
    try {
      const s = (await handle.result()) as LayoutStatus;
      if (opts.json) print(JSON.stringify(s, null, 2));
      else print(`${s.phase}: ${s.message ?? ''}`);
      return EXIT_OK;
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      const s = await handle.query(layoutStatus).catch(() => undefined);
      if (opts.json) print(JSON.stringify(s ?? { id, error: err.cause?.message }, null, 2));
      else print(`${s?.phase ?? 'failed'}: ${s?.message ?? err.cause?.message ?? err.message}`);
      return EXIT_FAILED;
    }
  } finally {
    await client.connection.close().catch(() => undefined);
  }
}

/** Approve the apply gate as the layout's approvers (not the requester), with their dev keys, once it opens. */
async function autoApprove(handle: WorkflowHandle, layout: Layout, print: Print): Promise<void> {
  for (;;) {
    const s = await handle.query(layoutStatus).catch(() => undefined);
    if (s && FINAL_LAYOUT_PHASES.includes(s.phase)) return;
    if (s?.gate?.state === 'open') {
      for (const approver of s.gate.approvers.filter((a) => !sameName(a, layout.requestedBy)).slice(0, s.gate.required)) {
        try {
          const signed = await signFor(handle, 'approve', { as: approver, gate: 'apply', reason: 'auto-approve', planHash: s.planHash });
          await handle.executeUpdate(approve, { args: [signed] });
          print(`approved the apply gate as ${approver} (--auto-approve)`);
        } catch (err) {
          print(`could not approve the apply gate as ${approver}: ${(refusal(err) ?? (err as Error)).message}`);
        }
      }
      return;
    }
    await sleep(250);
  }
}

export async function layoutVerify(file: string, opts: { sample: string; projects?: string; json?: boolean }, print: Print): Promise<number> {
  const sample = Number(opts.sample);
  if (!Number.isInteger(sample) || sample < 2 || sample > 1000) throw new CliError('--sample: a whole number of projects from 2 to 1000');
  const { model, url, layout } = await loadChecked(file);
  const projects = opts.projects?.split(',').map((s) => s.trim()).filter(Boolean);
  const report = await withClient(url, (client) => verifyLayout(client, model, { sample, projects }), 'safeshift layout verify').catch((err: unknown) => {
    throw new CliError(`${file}: ${(err as Error).message}`);
  });
  if (opts.json) {
    print(JSON.stringify(report, null, 2));
  } else {
    print(`layout ${layout.name}: ${report.ok ? 'isolation verified' : `${report.failures.length} failure(s)`} (${report.checks} checks; project pairs: ${report.pairs.map(([a, b]) => `${a}->${b}`).join(', ') || 'none'})`);
    for (const f of report.failures) print(`  FAIL ${f.table} [${f.check}]: ${f.message}`);
    for (const n of report.notes) print(`  note: ${n}`);
  }
  return report.ok ? EXIT_OK : EXIT_FAILED;
}
