/** The CLI commands that talk to Temporal about one migration: start, status, decisions, operator signals, list. */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowNotFoundError,
  type Client, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { connectClient, temporalConfig, workflowUiUrl, type TemporalConfig } from '../config';
import { withClient } from '../db';
import {
  approve, FINAL_PHASES, isRestoreWorkflowId, planQuery, MIGRATION_PHASE, MIGRATION_TABLE, migrationWorkflowId, status,
  type GateName, type MigrationInput, type MigrationStatus,
} from '../messages';
import { loadCheckedPlan, PlanError, type LoadedPlan } from '../plan/load';
import { pathNote } from '../in-place';
import { displayName } from '../sql';
import type { migrationWorkflow } from '../../workflows';
import { planHashOf, sameName } from '../identity';
import { ensureDevKeys, isDevMode } from '../keys';
import { renderRestoreStatus } from './backup';
import { refusal, sendSignal, sendUpdate, signFor, type DecisionOptions } from './decisions';
import { CliError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK } from './exit';
import { planSummary, renderStatus, toJson } from './render';
import { migrationStatus, restoreStatusAnswer } from './status-sources';

type Print = (line: string) => void;

/** What `plan validate` says instead of rehearsing the cutover, whose locks would queue the application. */
export const REHEARSAL_AT_START = 'the cutover rehearsal (renames and moves under ACCESS EXCLUSIVE locks) runs at start, ' +
  'with a lock_timeout of a second at most, and refuses to start while the table is busy; validate takes no lock stronger than ACCESS SHARE';

/**
 * Static checks of the file, then (unless offline) preflight against the live database. `notes`: what preflight
 * tells the approver (what the cutover moves, constraints kept and dropped, rollback risks). `rehearse` (start):
 * also rehearse the cutover, which takes its locks for a moment; without it (validate) nothing stronger than
 * ACCESS SHARE is taken and no lock is waited for.
 */
export async function checkPlan(file: string, options: { offline?: boolean; rehearse?: boolean } = {}): Promise<LoadedPlan & { notes: string[] }> {
  let loaded: LoadedPlan;
  try {
    loaded = await loadCheckedPlan(file, options.offline ? null : process.env);
  } catch (err) {
    if (err instanceof PlanError) throw new CliError(err.problems.map((p) => `${file}: ${p}`).join('\n'));
    throw err;
  }
  if (options.offline) return { ...loaded, notes: [pathNote(loaded.plan)] };
  const url = process.env[loaded.plan.database]!;
  if (loaded.plan.alter !== undefined) return checkInPlace(file, loaded, options.rehearse ?? false);
  // Loaded here, not at the top: every CLI call pays for what it imports, and most commands never check a plan.
  const { inspectPlan, PlanCheckFailed } = require('../../activities/preflight') as typeof import('../../activities/preflight');
  try {
    const rehearse = options.rehearse ?? false;
    const report = await withClient(url, (client) => inspectPlan(client, loaded.plan, '00000000000000', { rehearse }), 'safeshift plan check');
    return { ...loaded, notes: rehearse ? report.warnings : [...report.warnings, REHEARSAL_AT_START] };
  } catch (err) {
    if (err instanceof PlanCheckFailed) throw new CliError(err.problems.map((p) => `${file}: ${p}`).join('\n'));
    throw new CliError(`${file}: database: cannot check the plan against ${loaded.plan.database}: ${(err as Error).message}`);
  }
}

/** checkPlan for an in-place plan (alter): its own preflight, whose first note says the path it takes and why. */
async function checkInPlace(file: string, loaded: LoadedPlan, rehearse: boolean): Promise<LoadedPlan & { notes: string[] }> {
  const { inspectInPlace } = require('../../activities/in-place-check') as typeof import('../../activities/in-place-check');
  const { PlanCheckFailed } = require('../../activities/preflight') as typeof import('../../activities/preflight');
  try {
    const report = await withClient(process.env[loaded.plan.database]!, (client) => inspectInPlace(client, loaded.plan, '00000000000000', { rehearse }), 'safeshift plan check');
    return { ...loaded, notes: report.warnings };
  } catch (err) {
    if (err instanceof PlanCheckFailed) throw new CliError(err.problems.map((p) => `${file}: ${p}`).join('\n'));
    throw new CliError(`${file}: database: cannot check the plan against ${loaded.plan.database}: ${(err as Error).message}`);
  }
}

export function workflowIdOf(idOrName: string): string {
  // Restores share approve / reject (their gate is the restore gate).
  return idOrName.startsWith('migration-') || isRestoreWorkflowId(idOrName) || idOrName.startsWith('layout-') ? idOrName : migrationWorkflowId(idOrName);
}

/** A Temporal client for one command, closed after it; unreachable Temporal is a CLI error naming the address. */
export async function withTemporal<T>(fn: (client: Client, config: TemporalConfig) => Promise<T>): Promise<T> {
  const config = temporalConfig();
  let client: Client;
  try {
    client = await connectClient(config);
  } catch (err) {
    throw new CliError(`cannot reach Temporal at ${config.address} (TEMPORAL_ADDRESS): ${(err as Error).message}; is \`safeshift dev\` running?`);
  }
  try {
    return await fn(client, config);
  } finally {
    await client.connection.close().catch(() => undefined);
  }
}

export interface StartOptions {
  wait?: boolean;
  autoApprove?: boolean;
  json?: boolean;
  timeouts?: MigrationInput['timeouts'];
}

export async function startMigration(file: string, options: StartOptions, print: Print): Promise<number> {
  const loaded = await checkPlan(file, { rehearse: true });
  const { plan } = loaded;
  // The hash the workflow computes of the plan it runs (src/identity.ts): what approvers see and sign.
  const hash = planHashOf(plan);
  // On the embedded dev stack only, so the quickstart's `approve --as alice` and --auto-approve can sign.
  if (isDevMode()) await devKeysForPlan(plan);
  return withTemporal(async (client, config) => {
    const workflowId = migrationWorkflowId(plan.name);
    const source = displayName(plan.source);
    const target = displayName(plan.target);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof migrationWorkflow>;
    try {
      // The same input, status and messages either way: an in-place plan (alter) runs the catalog-only workflow.
      handle = await client.workflow.start<typeof migrationWorkflow>(plan.alter !== undefined ? 'inPlaceWorkflow' : 'migrationWorkflow', {
        taskQueue: config.taskQueue,
        workflowId,
        args: [{ plan, planHash: hash, ...(options.timeouts ? { timeouts: options.timeouts } : {}) }],
        typedSearchAttributes: [{ key: MIGRATION_PHASE, value: 'preflight' }, { key: MIGRATION_TABLE, value: source }],
        staticSummary: planSummary({ name: plan.name, source, target }),
        staticDetails: [
          `**${plan.name}** requested by ${plan.requestedBy}, plan sha256 \`${hash}\``,
          plan.alter !== undefined ? `- change \`${source}\` in place (catalog only): \`${plan.alter.replace(/\s+/g, ' ').slice(0, 500)}\`` : `- move \`${source}\` into \`${target}\`, then swap names`,
          `- mapping: ${Object.entries(plan.columns).map(([c, e]) => `\`${c}\` ← \`${e}\``).join(', ') || 'columns by name'}`,
          `- cutover approvers: ${plan.approvals.cutover.approvers.join(', ')} (${plan.approvals.cutover.required} needed)`,
          `- drop approvers: ${plan.approvals.drop.approvers.join(', ')} (${plan.approvals.drop.required} needed)`,
        ].join('\n'),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new CliError(`a migration named ${plan.name} is already running (${workflowId}); see \`safeshift status ${plan.name}\``);
      }
      throw err;
    }
    const uiUrl = workflowUiUrl(config, workflowId);
    if (options.json && !options.wait && !options.autoApprove) {
      print(JSON.stringify({ workflowId, runId: handle.firstExecutionRunId, planHash: hash, uiUrl }));
      return EXIT_OK;
    }
    // With --json, stdout carries only the final JSON document; progress lines are for people.
    const say: Print = options.json ? () => undefined : print;
    say(`started ${workflowId} (plan sha256:${hash.slice(0, 16)})`);
    if (uiUrl) say(`watch: ${uiUrl}`);
    if (!options.wait && !options.autoApprove) return EXIT_OK;
    if (options.autoApprove) await autoApprove(handle, plan.requestedBy, say);
    return finish(handle, options.json ?? false, uiUrl, print);
  });
}

/**
 * Dev mode (the embedded stack) only: keys for the plan's approvers under SAFESHIFT_HOME/dev-keys, generated if
 * missing and registered before the workflow starts (it fixes the keys it verifies against at start).
 */
async function devKeysForPlan(plan: LoadedPlan['plan']): Promise<void> {
  const names = [...new Set([...plan.approvals.cutover.approvers, ...plan.approvals.drop.approvers, plan.requestedBy].map((n) => n.toLowerCase()))];
  await withClient(process.env[plan.database]!, (client) => ensureDevKeys(client, names), 'safeshift dev keys');
}

/**
 * Approve each gate as it opens, as the plan's approvers other than the requester (demo and CI use). Ends when
 * the workflow closes, however it closes; a refused approval (the gate closed meanwhile) is reported, not fatal.
 */
async function autoApprove(handle: WorkflowHandle, requestedBy: string, print: Print): Promise<void> {
  let closed = false;
  const result = handle.result().then(() => undefined, () => undefined).finally(() => { closed = true; });
  const done = new Set<GateName>();
  while (!closed) {
    const s = await handle.query(status).catch(() => undefined);
    if (s && FINAL_PHASES.includes(s.phase)) break;
    const open = s?.gates.find((g) => g.state === 'open');
    if (s && open && !done.has(open.name)) {
      done.add(open.name);
      for (const approver of open.approvers.filter((a) => !sameName(a, requestedBy)).slice(0, open.required)) {
        try {
          const signed = await signFor(handle, 'approve', { as: approver, gate: open.name, reason: 'auto-approve', planHash: s.planHash });
          await handle.executeUpdate(approve, { args: [signed] });
          print(`approved the ${open.name} gate as ${approver} (--auto-approve)`);
        } catch (err) {
          print(`could not approve the ${open.name} gate as ${approver}: ${(refusal(err) ?? (err as Error)).message}`);
        }
      }
    }
    await Promise.race([sleep(300), result]);
  }
}

async function finish(handle: WorkflowHandle, json: boolean, uiUrl: string | undefined, print: Print): Promise<number> {
  let final: MigrationStatus;
  try {
    final = await handle.result();
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    final = await handle.query(status);
  }
  print(json ? JSON.stringify(toJson(handle.workflowId, final, uiUrl)) : renderStatus(handle.workflowId, final, uiUrl));
  return final.phase === 'done' ? EXIT_OK : EXIT_FAILED;
}

export async function showStatus(idOrName: string, options: { json?: boolean; watch?: boolean }, print: Print): Promise<number> {
  return withTemporal(async (client, config) => {
    const workflowId = workflowIdOf(idOrName);
    const handle = client.workflow.getHandle(workflowId);
    const uiUrl = workflowUiUrl(config, workflowId);
    if (isRestoreWorkflowId(workflowId)) {
      const { status: s, recorded } = await restoreStatusAnswer(client, handle);
      if (!s) {
        print(options.json ? JSON.stringify({ id: workflowId, recorded, uiUrl }) : `(${recorded!.note})\n${workflowId}${uiUrl ? `\n  ${uiUrl}` : ''}`);
        return EXIT_OK;
      }
      const text = `${recorded ? `(${recorded.note})\n` : ''}${renderRestoreStatus(workflowId, s)}`;
      print(options.json ? JSON.stringify({ id: workflowId, ...s, ...(recorded ? { recorded } : {}), uiUrl }) : text);
      return s.phase === 'failed' || s.phase === 'rolled_back' ? EXIT_FAILED : EXIT_OK;
    }
    for (;;) {
      // From a worker if one answers within seconds, else from the record (said so); never a stack trace.
      const answer = await migrationStatus(client, handle);
      const s = answer.status;
      const text = options.json ? JSON.stringify(toJson(workflowId, s, uiUrl, answer)) : renderStatus(workflowId, s, uiUrl, answer);
      if (options.watch && !options.json && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
      print(text);
      const final = FINAL_PHASES.includes(s.phase);
      if (!options.watch || final) return final && s.phase !== 'done' ? EXIT_FAILED : EXIT_OK;
      await sleep(1000);
    }
  });
}

/** approve, reject: signed by `--as`, bound to the plan the workflow runs (src/cli/decisions.ts). */
export async function decide(idOrName: string, decision: 'approve' | 'reject', options: DecisionOptions, print: Print): Promise<number> {
  return withTemporal((client) => sendUpdate(client, workflowIdOf(idOrName), decision, options, print));
}

export async function signalMigration(idOrName: string, what: 'pause' | 'resume' | 'abort', options: DecisionOptions, print: Print): Promise<number> {
  return withTemporal((client) => sendSignal(client, workflowIdOf(idOrName), what, options, print));
}

export async function rollbackMigration(idOrName: string, options: DecisionOptions, print: Print): Promise<number> {
  return withTemporal((client) => sendUpdate(client, workflowIdOf(idOrName), 'rollback', options, print));
}

/** The whole plan a migration runs and the hash the workflow computed (what every decision must carry). */
export async function showPlan(idOrName: string, options: { json?: boolean }, print: Print): Promise<number> {
  return withTemporal(async (client) => {
    const handle = client.workflow.getHandle(workflowIdOf(idOrName));
    const { plan, planHash } = await handle.query(planQuery).catch((err: unknown) => {
      throw err instanceof WorkflowNotFoundError ? new CliError(`no migration ${handle.workflowId}`) : err;
    });
    // Hashed again here: what is shown is exactly what the workflow hashed, or the difference is said.
    const local = planHashOf(plan);
    if (options.json) print(JSON.stringify({ workflowId: handle.workflowId, planHash, plan }));
    else print(`${handle.workflowId} runs plan sha256:${planHash}\n${JSON.stringify(plan, null, 2)}`);
    if (local !== planHash) throw new CliError(`the plan shown hashes to ${local}, not ${planHash}: do not approve`, EXIT_FAILED);
    return EXIT_OK;
  });
}

export async function listMigrations(options: { phase?: string; json?: boolean }, print: Print): Promise<number> {
  return withTemporal(async (client, config) => {
    // A migration that continued as new has closed runs too: only its latest run is the migration.
    const filters = [`WorkflowType IN ('migrationWorkflow', 'inPlaceWorkflow')`, `ExecutionStatus != 'ContinuedAsNew'`];
    if (options.phase) {
      if (!/^[a-z_]+$/.test(options.phase)) throw new CliError(`--phase: "${options.phase}" is not a phase name`, EXIT_BAD_INPUT);
      filters.push(`MigrationPhase = '${options.phase}'`);
    }
    const rows: Record<string, unknown>[] = [];
    for await (const w of client.workflow.list({ query: filters.join(' AND ') })) {
      rows.push({
        workflowId: w.workflowId,
        runId: w.runId,
        phase: w.typedSearchAttributes.get(MIGRATION_PHASE) ?? null,
        table: w.typedSearchAttributes.get(MIGRATION_TABLE) ?? null,
        status: w.status.name,
        startTime: w.startTime.toISOString(),
        uiUrl: workflowUiUrl(config, w.workflowId) ?? null,
      });
    }
    if (options.json) print(JSON.stringify(rows));
    else if (rows.length === 0) print('no migrations');
    else for (const r of rows) print(`${r.workflowId}  ${r.phase ?? '-'}  ${r.table ?? '-'}  ${r.status}  ${r.startTime}`);
    return EXIT_OK;
  });
}
