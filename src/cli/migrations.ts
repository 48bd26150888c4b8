/** The CLI commands that talk to Temporal about one migration: start, status, decisions, operator signals, list. */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError,
  type Client, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { inspectPlan, PlanCheckFailed } from '../../activities/preflight';
import { connectClient, temporalConfig, workflowUiUrl, type TemporalConfig } from '../config';
import { withClient } from '../db';
import {
  abort, approve, FINAL_PHASES, isRestoreWorkflowId, restoreStatus, MIGRATION_PHASE, MIGRATION_TABLE, migrationWorkflowId, pause, reject, resume, rollback, status,
  type GateName, type MigrationInput, type MigrationStatus,
} from '../messages';
import { loadCheckedPlan, PlanError, type LoadedPlan } from '../plan/load';
import { displayName } from '../sql';
import type { migrationWorkflow } from '../../workflows';
import { renderRestoreStatus } from './backup';
import { CliError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK } from './exit';
import { planSummary, renderStatus, toJson } from './render';
import { migrationStatus } from './status-sources';

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
  if (options.offline) return { ...loaded, notes: [] };
  const url = process.env[loaded.plan.database]!;
  try {
    const rehearse = options.rehearse ?? false;
    const report = await withClient(url, (client) => inspectPlan(client, loaded.plan, '00000000000000', { rehearse }), 'safeshift plan check');
    return { ...loaded, notes: rehearse ? report.warnings : [...report.warnings, REHEARSAL_AT_START] };
  } catch (err) {
    if (err instanceof PlanCheckFailed) throw new CliError(err.problems.map((p) => `${file}: ${p}`).join('\n'));
    throw new CliError(`${file}: database: cannot check the plan against ${loaded.plan.database}: ${(err as Error).message}`);
  }
}

export function workflowIdOf(idOrName: string): string {
  // Restores share approve / reject (their gate is the restore gate).
  return idOrName.startsWith('migration-') || isRestoreWorkflowId(idOrName) ? idOrName : migrationWorkflowId(idOrName);
}

async function withTemporal<T>(fn: (client: Client, config: TemporalConfig) => Promise<T>): Promise<T> {
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
  const { plan, hash } = await checkPlan(file, { rehearse: true });
  return withTemporal(async (client, config) => {
    const workflowId = migrationWorkflowId(plan.name);
    const source = displayName(plan.source);
    const target = displayName(plan.target);
    let handle: WorkflowHandleWithFirstExecutionRunId<typeof migrationWorkflow>;
    try {
      handle = await client.workflow.start<typeof migrationWorkflow>('migrationWorkflow', {
        taskQueue: config.taskQueue,
        workflowId,
        args: [{ plan, planHash: hash, ...(options.timeouts ? { timeouts: options.timeouts } : {}) }],
        typedSearchAttributes: [{ key: MIGRATION_PHASE, value: 'preflight' }, { key: MIGRATION_TABLE, value: source }],
        staticSummary: planSummary({ name: plan.name, source, target }),
        staticDetails: [
          `**${plan.name}** requested by ${plan.requestedBy}, plan sha256 \`${hash}\``,
          `- move \`${source}\` into \`${target}\`, then swap names`,
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
      for (const approver of open.approvers.filter((a) => a !== requestedBy).slice(0, open.required)) {
        try {
          await handle.executeUpdate(approve, { args: [{ approver, gate: open.name, reason: 'auto-approve', planHash: s.planHash }] });
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
      const s = await handle.query(restoreStatus).catch((err: unknown) => {
        throw err instanceof WorkflowNotFoundError ? new CliError(`no restore ${workflowId}`) : err;
      });
      print(options.json ? JSON.stringify({ id: workflowId, ...s, uiUrl }) : renderRestoreStatus(workflowId, s));
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

function refusal(err: unknown): CliError | undefined {
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause;
    const type = cause instanceof ApplicationFailure ? cause.type : undefined;
    return new CliError(`refused${type ? ` (${type})` : ''}: ${cause?.message ?? err.message}`);
  }
  if (err instanceof WorkflowNotFoundError) return new CliError(`no running migration ${err.workflowId ?? ''}`.trim());
  return undefined;
}

export async function decide(idOrName: string, decision: 'approve' | 'reject', options: { as: string; gate?: GateName | 'restore'; reason?: string; planHash?: string }, print: Print): Promise<number> {
  return withTemporal(async (client) => {
    const handle = client.workflow.getHandle(workflowIdOf(idOrName));
    try {
      const message = decision === 'approve'
        ? await handle.executeUpdate(approve, { args: [{ approver: options.as, gate: options.gate, reason: options.reason, planHash: options.planHash }] })
        : await handle.executeUpdate(reject, { args: [{ approver: options.as, reason: options.reason }] });
      print(message);
      return EXIT_OK;
    } catch (err) {
      throw refusal(err) ?? err;
    }
  });
}

export async function signalMigration(idOrName: string, what: 'pause' | 'resume' | 'abort', options: { as?: string; reason?: string }, print: Print): Promise<number> {
  return withTemporal(async (client) => {
    const handle = client.workflow.getHandle(workflowIdOf(idOrName));
    const signal = { pause, resume, abort }[what];
    try {
      await handle.signal(signal, { by: options.as, reason: options.reason });
    } catch (err) {
      throw refusal(err) ?? err;
    }
    print(`${what} sent to ${handle.workflowId}`);
    return EXIT_OK;
  });
}

export async function rollbackMigration(idOrName: string, options: { as?: string; reason?: string }, print: Print): Promise<number> {
  return withTemporal(async (client) => {
    const handle = client.workflow.getHandle(workflowIdOf(idOrName));
    try {
      print(await handle.executeUpdate(rollback, { args: [{ by: options.as, reason: options.reason }] }));
    } catch (err) {
      throw refusal(err) ?? err;
    }
    return EXIT_OK;
  });
}

export async function listMigrations(options: { phase?: string; json?: boolean }, print: Print): Promise<number> {
  return withTemporal(async (client, config) => {
    const filters = [`WorkflowType = 'migrationWorkflow'`];
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
