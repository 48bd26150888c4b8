/** What `safeshift fleet ...` does: resolve and check the projects and every project's plan, start, report, decide. */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { workflowUiUrl } from '../config';
import { withClient } from '../db';
import { signDecision } from '../identity';
import { ensureDevKeys, findKey, isDevMode, keysDir } from '../keys';
import { sendSignal, sendUpdate, refusal } from '../cli/decisions';
import { CliError, EXIT_FAILED, EXIT_OK } from '../cli/exit';
import { withTemporal } from '../cli/migrations';
import { humanDuration } from '../cli/render';
import { isLayoutFile, projectsFromLayout, projectsFromList, looksLikeSql, queryProjects } from './projects';
import { fleetPlan, fleetProject, fleetRetry, fleetStatus, fleetWorkflowId, type FleetInput, type FleetSpec, type FleetStatus, type OnError, type ProjectMeta } from './spec';
import { planForProject, readTemplate, TemplateError } from './template';
import { buildWaves, FleetInputError, type WaveOptions } from './waves';

type Print = (line: string) => void;

export function fleetIdOf(idOrName: string): string {
  return idOrName.startsWith('fleet-') ? idOrName : fleetWorkflowId(idOrName);
}

function positive(text: unknown, option: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new CliError(`${option}: must be a positive whole number (got ${String(text)})`);
  return n;
}

function pairs<T>(list: unknown, option: string, value: (v: string) => T): Record<string, T> {
  const out: Record<string, T> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const m = /^([A-Za-z0-9_-]+)=(.+)$/.exec(item);
    if (!m) throw new CliError(`${option}: ${JSON.stringify(item)} is not name=value`);
    out[m[1]!] = value(m[2]!);
  }
  return out;
}

export function waveOptions(o: Record<string, unknown>): WaveOptions {
  const canaryText = String(o.canary ?? '1');
  const onError = (v: string): OnError => {
    if (v !== 'stop' && v !== 'continue') throw new CliError(`on error: ${JSON.stringify(v)} is neither stop nor continue`);
    return v;
  };
  return {
    canary: /^\d+$/.test(canaryText) ? positive(canaryText, '--canary') : canaryText.split(',').map((s) => s.trim()).filter(Boolean),
    canaryParallel: positive(o.canaryParallel, '--canary-parallel'),
    groupBy: o.groupBy as string | undefined,
    waveSize: positive(o.waveSize, '--wave-size'),
    parallel: positive(o.parallel, '--parallel'),
    parallelByWave: pairs(o.wave, '--wave', (v) => positive(v, '--wave')!),
    onError: onError(String(o.onError ?? 'stop')),
    onErrorByWave: pairs(o.waveOnError, '--wave-on-error', onError),
    gateEveryWave: Boolean(o.gateEveryWave),
  };
}

/** Who approves a fleet's waves: approvers of both the template's gates (each child checks both), and how many. */
export function fleetApprovers(template: Record<string, unknown>): { approvers: string[]; required: number; requestedBy: string } {
  const a = (template.approvals ?? {}) as Record<string, { approvers?: unknown; required?: unknown } | undefined>;
  const list = (g: string) => (Array.isArray(a[g]?.approvers) ? (a[g]!.approvers as unknown[]).map(String) : []);
  const requestedBy = String(template.requestedBy ?? '');
  const drop = list('drop').map((n) => n.toLowerCase());
  const approvers = list('cutover').filter((n) => drop.includes(n.toLowerCase()) && n.toLowerCase() !== requestedBy.toLowerCase());
  const required = Math.max(Number(a.cutover?.required ?? 1), Number(a.drop?.required ?? 1));
  if (approvers.length < required) {
    throw new CliError(`approvals: a fleet's approval covers both gates of each child, so it needs ${required} approver(s) listed in both cutover and drop (other than ${requestedBy}); found ${approvers.join(', ') || 'none'}`);
  }
  return { approvers, required, requestedBy };
}

/** Resolve the projects, build the waves, check every project's plan; nothing is started if anything is wrong. */
export async function prepareFleet(file: string, opts: Record<string, unknown>): Promise<FleetSpec> {
  let loaded;
  try {
    loaded = readTemplate(file);
  } catch (err) {
    if (err instanceof TemplateError) throw new CliError(err.problems.map((p) => `${file}: ${p}`).join('\n'));
    throw err;
  }
  const { template } = loaded;
  const dbVar = String(template.database ?? '');
  if (!/^[A-Z_][A-Z0-9_]*$/.test(dbVar) || !process.env[dbVar]) throw new CliError(`${file}: database: environment variable ${dbVar || '(none)'} is not set`);
  const name = String(opts.name ?? template.name ?? '');
  if (!/^[a-z0-9][a-z0-9-]{0,40}[a-z0-9]$/.test(name)) throw new CliError(`--name: fleet name ${JSON.stringify(name)} must be a slug (lower-case letters, digits, dashes; 2-42)`);
  const arg = String(opts.projects ?? '');
  let projects: ProjectMeta[];
  let built;
  try {
    projects = isLayoutFile(arg) ? projectsFromLayout(arg) : looksLikeSql(arg) ? await queryProjects(process.env[dbVar]!, arg) : projectsFromList(arg);
    built = buildWaves(projects, waveOptions(opts));
  } catch (err) {
    if (err instanceof FleetInputError) throw new CliError(err.problems.join('\n'));
    throw err;
  }
  const problems: string[] = [];
  for (const p of built.projects) {
    try {
      await planForProject(template, p, process.env);
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err;
      problems.push(...err.problems);
      if (problems.length > 50) break;
    }
  }
  if (problems.length) throw new CliError(problems.map((p) => `${file}: ${p}`).join('\n'));
  return { name, ...fleetApprovers(template), template, templateHash: loaded.hash, projects: built.projects, waves: built.waves };
}

export async function startFleet(file: string, opts: Record<string, unknown>, print: Print): Promise<number> {
  const spec = await prepareFleet(file, opts);
  if (isDevMode()) {
    const names = [...new Set([...spec.approvers, spec.requestedBy].map((n) => n.toLowerCase()))];
    await withClient(process.env[String(spec.template.database)]!, (c) => ensureDevKeys(c, names), 'safeshift dev keys');
  }
  const heartbeat = opts.childHeartbeat === undefined ? undefined : String(opts.childHeartbeat);
  if (heartbeat !== undefined && !/^\d+(ms|s|m)$/.test(heartbeat)) throw new CliError(`--child-heartbeat: ${JSON.stringify(heartbeat)} is not a duration like 5s`);
  const input: FleetInput = {
    spec,
    settings: { continueAsNewEvery: positive(opts.continueAsNewEvery, '--continue-as-new-every'), ...(heartbeat ? { childTimeouts: { heartbeat } } : {}) },
  };
  return withTemporal(async (client, config) => {
    const workflowId = fleetWorkflowId(spec.name);
    try {
      await client.workflow.start('fleetMigrationWorkflow', {
        taskQueue: config.taskQueue, workflowId, args: [input],
        staticSummary: `fleet ${spec.name}: ${spec.projects.length} projects in ${spec.waves.length} waves`,
        staticDetails: [
          `**fleet ${spec.name}** requested by ${spec.requestedBy}, template sha256 \`${spec.templateHash}\``,
          ...spec.waves.map((w) => `- wave ${w.name}: ${w.end - w.start} projects, ${w.parallel} at once, on error ${w.onError}${w.gate ? ', gate before it' : ''}`),
          `- wave approvers: ${spec.approvers.join(', ')} (${spec.required} needed)`,
        ].join('\n'),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new CliError(`a fleet named ${spec.name} is already running (${workflowId})`);
      throw err;
    }
    const uiUrl = workflowUiUrl(config, workflowId);
    if (opts.json) print(JSON.stringify({ workflowId, projects: spec.projects.length, waves: spec.waves, uiUrl }));
    else {
      print(`started ${workflowId}: ${spec.projects.length} projects, waves ${spec.waves.map((w) => `${w.name} (${w.end - w.start})`).join(', ')}`);
      print(`the canary waits at its gate: safeshift fleet approve ${workflowId} --as <approver>`);
      if (uiUrl) print(`watch: ${uiUrl}`);
    }
    return EXIT_OK;
  });
}

export function renderFleet(id: string, s: FleetStatus): string {
  const t = s.totals;
  const lines = [
    `${id}: ${s.phase}${s.paused ? ' (paused)' : ''} — ${t.done}/${t.projects} done, ${t.running} running, ${t.waiting} waiting, ${t.failed} failed, ${t.rolledBack} rolled back` +
      `${t.skipped ? `, ${t.skipped} skipped` : ''}${s.etaSeconds !== null && s.etaSeconds > 0 ? `; ETA ${humanDuration(s.etaSeconds * 1000)}` : ''}`,
    ...s.waves.map((w) => `  wave ${w.name.padEnd(12)} ${`${w.done}/${w.total}`.padStart(9)} done  ${w.running} running  ${w.waiting} waiting  ${w.failed} failed  ${w.rolledBack} rolled back  (parallel ${w.parallel}, on error ${w.onError}${w.gate ? ', gated' : ''})`),
    ...s.gates.filter((g) => g.state !== 'pending').map((g) => `  gate ${g.name}: ${g.state}${g.decisions.length ? ` (${g.decisions.map((d) => `${d.approver} ${d.approved ? 'approved' : 'rejected'}`).join(', ')})` : ''}`),
  ];
  if (s.slowest.length) lines.push(`  slowest: ${s.slowest.map((x) => `${x.slug} ${humanDuration(x.ms)}`).join(', ')}`);
  for (const f of s.failures) lines.push(`  ${f.state.replace('_', ' ')}: ${f.slug} (attempt ${f.attempts}): ${f.reason ?? ''}`);
  if (s.continuedAsNew) lines.push(`  continued as new ${s.continuedAsNew} time(s)`);
  if (s.outcome) lines.push(`  outcome: ${s.outcome.phase} — ${s.outcome.reason}`);
  return lines.join('\n');
}

export async function fleetStatusCommand(idOrName: string, opts: { project?: string; json?: boolean }, print: Print): Promise<number> {
  const id = fleetIdOf(idOrName);
  return withTemporal(async (client) => {
    const handle = client.workflow.getHandle(id);
    try {
      if (opts.project) {
        const p = await handle.query(fleetProject, opts.project);
        if (!p) throw new CliError(`--project: no project ${opts.project} in ${id}`);
        print(opts.json ? JSON.stringify(p) : `${p.slug} (wave ${p.wave}): ${p.s}, attempt ${p.a}, ${p.workflowId}${p.e ? `: ${p.e}` : ''}`);
        return EXIT_OK;
      }
      const s = await handle.query(fleetStatus);
      print(opts.json ? JSON.stringify(s) : renderFleet(id, s));
      return s.outcome && s.outcome.phase !== 'done' ? EXIT_FAILED : EXIT_OK;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new CliError(`no fleet ${id}`);
      throw err;
    }
  });
}

/**
 * A decision is signed for the fleet's current run; a fleet continues as new every few hundred children, so one
 * may land on the next run and be refused as WrongWorkflow: signed again for the new run and sent again (a few times).
 */
async function acrossRuns(send: () => Promise<number>): Promise<number> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof CliError) || !err.message.includes('(WrongWorkflow)') || attempt >= 3) throw err;
    }
  }
}

export async function fleetDecide(idOrName: string, what: 'approve' | 'reject', opts: { as: string; reason?: string }, print: Print): Promise<number> {
  return withTemporal((client) => acrossRuns(() => sendUpdate(client, fleetIdOf(idOrName), what, opts, print)));
}

export async function fleetSignal(idOrName: string, what: 'pause' | 'resume' | 'abort', opts: { as?: string; reason?: string }, print: Print): Promise<number> {
  return withTemporal((client) => acrossRuns(() => sendSignal(client, fleetIdOf(idOrName), what, opts, print)));
}

/** A signed `retry`: the project's slug rides in the signed text's gate field (null: every failed project). */
export async function fleetRetryCommand(idOrName: string, opts: { project?: string; as?: string; reason?: string }, print: Print): Promise<number> {
  const id = fleetIdOf(idOrName);
  const by = opts.as ?? process.env.SAFESHIFT_AS;
  if (!by) throw new CliError('--as: who asks is required (or set SAFESHIFT_AS)');
  const key = findKey(by);
  if (!key) throw new CliError(`--as ${by}: no key for ${by} in ${keysDir()} (safeshift keys init --name ${by})`);
  return withTemporal((client) => acrossRuns(async () => {
    const handle = client.workflow.getHandle(id);
    try {
      const d = await handle.describe();
      if (d.status.name !== 'RUNNING') throw new CliError(`${id} is not running (${d.status.name.toLowerCase()})`);
      const { planHash } = await handle.query(fleetPlan);
      const signed = signDecision({
        by, workflowId: id, runId: d.runId, gate: opts.project ?? null, action: 'retry', planHash, reason: opts.reason ?? null, time: new Date().toISOString(),
      }, key.privateKey);
      print(await handle.executeUpdate(fleetRetry, { args: [signed] }));
      return EXIT_OK;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new CliError(`no fleet ${id}`);
      throw refusal(err) ?? err;
    }
  }));
}
