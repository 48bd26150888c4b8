/**
 * Decisions from the command line: approve, reject, rollback (Updates) and pause, resume, abort (signals), each
 * signed with the decider's own key (src/keys.ts) over {by, workflowId, runId, gate, action, planHash, reason,
 * time}. The workflow verifies and may refuse; a refusal is recorded there and told here, exit 2.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { signDecision, type DecisionAction, type SignedDecision } from '../identity';
import { findKey, keysDir } from '../keys';
import {
  abort, approve, decisionOutcome, isRestoreWorkflowId, pause, planQuery, reject, restoreStatus, resume, rollback, status,
  type GateName,
} from '../messages';
import { isLayoutWorkflowId, layoutStatus } from '../layout/messages';
import { CliError, EXIT_OK } from './exit';

type Print = (line: string) => void;

export interface DecisionOptions {
  as?: string;
  gate?: GateName | 'restore' | 'apply';
  reason?: string;
  planHash?: string;
}

/** Who signs: --as, else SAFESHIFT_AS. */
function signerName(as: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const name = as ?? env.SAFESHIFT_AS;
  if (!name) throw new CliError('--as: who decides is required (or set SAFESHIFT_AS); the decision is signed with that person\'s key');
  return name;
}

/** What the workflow says it runs and which gate is open: the hash is the workflow's own, never the plan file's. */
async function subject(handle: WorkflowHandle): Promise<{ planHash?: string; openGate?: string }> {
  if (isRestoreWorkflowId(handle.workflowId)) {
    const s = await handle.query(restoreStatus);
    return { planHash: s.planHash, openGate: s.gate?.state === 'open' ? s.gate.name : undefined };
  }
  if (isLayoutWorkflowId(handle.workflowId)) {
    const s = await handle.query(layoutStatus);
    return { planHash: s.planHash, openGate: s.gate?.state === 'open' ? s.gate.name : undefined };
  }
  const [p, s] = await Promise.all([handle.query(planQuery), handle.query(status)]);
  return { planHash: p.planHash, openGate: s.gates.find((g) => g.state === 'open')?.name };
}

/**
 * Sign `action` as `as` for the workflow's current run. The plan hash is `--plan-hash` when given (refused by the
 * workflow if it is not the plan it runs), else the one the workflow computed, printed so the decider sees it.
 */
export async function signFor(handle: WorkflowHandle, action: DecisionAction, options: DecisionOptions, say: Print = () => undefined): Promise<SignedDecision> {
  const by = signerName(options.as);
  const key = findKey(by);
  if (!key) throw new CliError(`--as ${by}: no key for ${by} in ${keysDir()} (safeshift keys init --name ${by}, then an administrator runs safeshift keys add)`);
  let runId: string;
  try {
    const d = await handle.describe();
    if (d.status.name !== 'RUNNING') throw new CliError(`${handle.workflowId} is not running (${d.status.name.toLowerCase()})`);
    runId = d.runId;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CliError(`no running migration or restore ${handle.workflowId}`);
    throw err;
  }
  const gated = action === 'approve' || action === 'reject';
  let planHash = options.planHash;
  let gate: string | undefined = options.gate;
  if (!planHash || (gated && !gate)) {
    const s = await subject(handle).catch((err: unknown) => {
      throw new CliError(`cannot read what ${handle.workflowId} runs (${(err as Error).message}); is a worker running? ` +
        'Pass --plan-hash (safeshift show <id> --plan)' + (gated ? ' and --gate' : ''));
    });
    if (!planHash) {
      if (!s.planHash) throw new CliError(`${handle.workflowId} has not computed its plan hash yet; try again`);
      planHash = s.planHash;
      say(`deciding on plan sha256:${planHash} (safeshift show ${handle.workflowId} --plan)`);
    }
    gate ??= s.openGate;
  }
  return signDecision({
    by, workflowId: handle.workflowId, runId, gate: gated ? gate ?? null : null, action, planHash,
    reason: options.reason ?? null, time: new Date().toISOString(),
  }, key.privateKey);
}

export function refusal(err: unknown): CliError | undefined {
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause;
    const type = cause instanceof ApplicationFailure ? cause.type : undefined;
    return new CliError(`refused${type ? ` (${type})` : ''}: ${cause?.message ?? err.message}`);
  }
  if (err instanceof WorkflowNotFoundError) return new CliError(`no running migration ${err.workflowId ?? ''}`.trim());
  return undefined;
}

/** approve, reject, rollback: an Update, whose reply is the workflow's answer (refusals included). */
export async function sendUpdate(client: Client, workflowId: string, action: 'approve' | 'reject' | 'rollback', options: DecisionOptions, print: Print): Promise<number> {
  const handle = client.workflow.getHandle(workflowId);
  // What was signed goes to stderr: stdout carries the workflow's answer only.
  const signed = await signFor(handle, action, options, (line) => process.stderr.write(`${line}\n`));
  try {
    print(await handle.executeUpdate({ approve, reject, rollback }[action], { args: [signed] }));
  } catch (err) {
    throw refusal(err) ?? err;
  }
  return EXIT_OK;
}

/**
 * pause, resume, abort: signals (they reach the workflow even while no worker runs). A signal has no reply, so
 * the CLI then asks the workflow what became of this signature for a few seconds; a refusal exits 2 with why.
 */
export async function sendSignal(client: Client, workflowId: string, action: 'pause' | 'resume' | 'abort', options: DecisionOptions, print: Print): Promise<number> {
  const handle = client.workflow.getHandle(workflowId);
  const signed = await signFor(handle, action, options);
  try {
    await handle.signal({ pause, resume, abort }[action], signed);
  } catch (err) {
    throw refusal(err) ?? err;
  }
  const id = signed.signature.slice(0, 16);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const outcome = await handle.query(decisionOutcome, id).catch(() => undefined);
    if (outcome?.accepted) {
      print(`${action} sent to ${workflowId}`);
      return EXIT_OK;
    }
    if (outcome) throw new CliError(`refused (${outcome.type}): ${outcome.reason}`);
    await sleep(200);
  }
  print(`${action} sent to ${workflowId}; not verified yet (no worker answering?): \`safeshift status\` lists refused decisions`);
  return EXIT_OK;
}
