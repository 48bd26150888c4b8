/**
 * Pieces the migration, backup and restore workflows share: the signed-decision desk and gate rules every decision passes, the verified
 * export, and how a failure and a time are told. Deterministic like the workflows themselves: no I/O here.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { ExportSummary, ExportInput } from '../activities/export';
import type { DeciderKeys } from '../activities/identity';
import { fatal, NON_RETRYABLE_TYPES } from '../src/errors';
import {
  DECISION_MAX_AGE_MS, DECISION_MAX_SKEW_MS, parseDecisionPayload, sameName, verifySignature,
  type DecisionAction, type DecisionPayload, type SignedDecision,
} from '../src/identity';
import type { ApproverKeys, DecisionArgs, DecisionOutcome, GateStatus, RefusedDecision } from '../src/messages';

/**
 * How activities are retried. Anything not in the closed set of fatal types is transient: a lost connection, a
 * restarting or failing-over server. 30 attempts with backoff capped at a minute is about 25 minutes of a database
 * that does not answer before the migration gives up and rolls back; a PostgreSQL restart or failover is well
 * inside that, so the migration resumes on its own once the server is back.
 */
export const ACTIVITY_RETRY = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 30, nonRetryableErrorTypes: NON_RETRYABLE_TYPES };

/**
 * Every activity heartbeats while it runs (the worker's keep-alive interceptor, activities/keep-alive.ts, beats once
 * a second whatever the step is doing): a worker that dies inside any step is noticed within this timeout and the
 * step retried on another worker, about 10 s later, not at its start-to-close timeout.
 */
export const HEARTBEAT_TIMEOUT = '10s';

/**
 * Short steps (ledger writes, preflight, creating and dropping objects): dead workers are found by the heartbeat;
 * the start-to-close timeout only bounds a step that hangs while its worker lives.
 */
export const SHORT_ACTIVITY = { startToCloseTimeout: '10m', heartbeatTimeout: HEARTBEAT_TIMEOUT, retry: ACTIVITY_RETRY } as const;

/** yyyymmddhhmmss (UTC): makes the names a run creates (retired, backup, staged tables; export ids) unique. */
export function stampOf(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** What an operator should read: the activity's own failure, not Temporal's wrapper around it. */
export function failureMessage(err: unknown): string {
  let e: unknown = err;
  while (e instanceof wf.ActivityFailure && e.cause) e = e.cause;
  if (e instanceof wf.CancelledFailure) return 'the workflow was cancelled';
  return e instanceof Error ? e.message : String(e);
}

/** The failure type (`BadRestore`, `Rejected`, ...) inside Temporal's wrappers, if there is one. */
export function failureType(err: unknown): string | undefined {
  let e: unknown = err;
  while (e instanceof wf.ActivityFailure && e.cause) e = e.cause;
  return e instanceof wf.ApplicationFailure ? e.type ?? undefined : undefined;
}

/** A decision refused: its failure type (`SelfApproval`, `BadSignature`, ...) and why, for the sender and the audit. */
export class Refusal {
  constructor(readonly type: string, readonly message: string) {}
}

/**
 * The gate rules every approve or reject passes once its signature is good: a gate must be open and be the one
 * signed for, the requester cannot decide (in any letter case), only listed approvers can, each once. Returns
 * the open gate and the approver's name as the plan lists it. `what` names the workflow's subject ("migration",
 * "restore"); `gatesHint` says where decisions are taken.
 */
export function checkDecision<N extends string>(
  open: GateStatus<N> | undefined, approver: string, gate: string | null | undefined,
  context: { requestedBy: string; what: string; phase: string; gatesHint: string },
): { gate: GateStatus<N>; name: string } {
  if (!open) throw new Refusal('GateNotOpen', `no gate is open (phase ${context.phase}); ${context.gatesHint}`);
  if (!gate) throw new Refusal('GateNotOpen', `the decision names no gate; the open gate is ${open.name}`);
  if (gate !== open.name) throw new Refusal('GateNotOpen', `the ${gate} gate is not open; the open gate is ${open.name}`);
  if (sameName(approver, context.requestedBy)) throw new Refusal('SelfApproval', `${approver} requested this ${context.what} and cannot decide on it`);
  const name = open.approvers.find((a) => sameName(a, approver));
  if (name === undefined) throw new Refusal('NotAnApprover', `${approver} is not an approver of the ${open.name} gate (approvers: ${open.approvers.join(', ')})`);
  if (open.decisions.some((d) => sameName(d.approver, name))) throw new Refusal('AlreadyDecided', `${name} has already decided on the ${open.name} gate`);
  return { gate: open, name };
}

export interface DeskContext {
  workflowId: string;
  runId: string;
  /**
   * Earlier runs of the same workflow (a migration that continued as new): a decision signed for one of them is
   * about this same migration (the CLI signs for the run it saw; the workflow may have continued meanwhile).
   */
  earlierRuns?: string[];
  /** What the desk of the run before this one remembered (signatures used, outcomes), carried over continue-as-new. */
  memory?: DeskMemory;
  requestedBy: string;
  what: string;
  /** Everyone who may decide anything on this run (approvers of every gate, and the requester for operator actions). */
  people: () => string[];
  /** The keys fixed at start; undefined until they are read. */
  keys: () => ApproverKeys | undefined;
  /** The hash the workflow computed of what it runs; undefined until computed. */
  planHash: () => string | undefined;
  /** Where refusals are kept for the status (newest last, bounded). */
  refused: () => RefusedDecision[];
  audit: (actor: string, action: string, details: Record<string, unknown>) => Promise<unknown>;
}

const KEEP_REFUSALS = 50;
/** Outcomes kept for the CLI to ask after a signal, carried from run to run: the newest this many. */
const KEEP_OUTCOMES = 500;

/** The desk's memory, as data: replay protection and outcomes must survive a continue-as-new. */
export interface DeskMemory {
  used: string[];
  outcomes: [string, DecisionOutcome][];
}

/**
 * Every signed decision a workflow receives passes here (in the handler, not the validator: a refusal is written
 * to the status and the audit log before the sender is told). Checks, in order: the shape, that the signer may
 * decide here at all, the signature against the keys fixed at start, that the signature was never used before
 * (replay), the workflow and run, the action, the age (workflow time), the plan hash the workflow computed, then
 * the caller's own rules (gate, self-approval, ...). Deterministic: pure-JS Ed25519, workflow time only.
 */
export function decisionDesk(ctx: DeskContext) {
  /** By the signature's first 16 hex digits: what became of it (the CLI asks after a signal). */
  const seen = new Map<string, DecisionOutcome>(ctx.memory?.outcomes ?? []);
  const usedSignatures = new Set<string>(ctx.memory?.used ?? []);

  async function refuse(action: DecisionAction, args: unknown, r: Refusal, verifiedBy: string | undefined, claimed?: DecisionPayload): Promise<wf.ApplicationFailure> {
    const signature = typeof (args as DecisionArgs | undefined)?.signature === 'string' ? (args as DecisionArgs).signature!.slice(0, 16) : null;
    const entry: RefusedDecision = {
      at: new Date().toISOString(), action, by: claimed?.by ?? null, gate: claimed?.gate ?? null, type: r.type, reason: r.message, signature,
    };
    const list = ctx.refused();
    list.push(entry);
    if (list.length > KEEP_REFUSALS) list.splice(0, list.length - KEEP_REFUSALS);
    if (signature && !seen.has(signature)) seen.set(signature, { accepted: false, type: r.type, reason: r.message });
    // The ledger may be down: the refusal stands (and is in the status) even if its audit row cannot be written.
    await ctx.audit(verifiedBy ?? 'unverified', `refused:${action}`, {
      type: r.type, reason: r.message, claimedBy: claimed?.by ?? null, gate: claimed?.gate ?? null, signature,
    }).catch(() => undefined);
    return wf.ApplicationFailure.nonRetryable(r.message, r.type);
  }

  function verify(action: DecisionAction, args: unknown): { d: DecisionPayload; signature: string } {
    const a = (args ?? {}) as DecisionArgs;
    if (typeof a.payload !== 'string' || typeof a.signature !== 'string' || !/^[0-9a-f]{128}$/.test(a.signature)) {
      throw new Refusal('Unsigned', `the ${action} is not signed; decisions are signed with the decider's key (safeshift keys init, then an administrator runs safeshift keys add)`);
    }
    const d = parseDecisionPayload(a.payload);
    if (!d) throw new Refusal('Unsigned', `the ${action} does not carry a well-formed signed decision`);
    return { d, signature: a.signature };
  }

  function authenticate(action: DecisionAction, d: DecisionPayload, payload: string, signature: string): void {
    const keys = ctx.keys();
    if (!keys) throw new Refusal('KeysNotLoaded', 'the keys of the people who may decide are not read yet; try again in a moment');
    const known = ctx.people().some((p) => sameName(p, d.by));
    if (!known) {
      const gated = action === 'approve' || action === 'reject';
      // An approve or reject names the approvers only: the requester is among the people, but never decides a gate.
      const who = gated ? ctx.people().filter((p) => !sameName(p, ctx.requestedBy)) : ctx.people();
      throw new Refusal(gated ? 'NotAnApprover' : 'NotAnOperator', `${d.by} is not an approver${gated ? '' : ' or the requester'} of this ${ctx.what} (${gated ? 'approvers' : 'who may act'}: ${who.join(', ')})`);
    }
    const registered = keys[d.by.toLowerCase()] ?? [];
    if (registered.length === 0) throw new Refusal('UnknownSigner', `${d.by} had no key registered when this ${ctx.what} started (safeshift keys add)`);
    if (!registered.some((k) => verifySignature(payload, signature, k))) throw new Refusal('BadSignature', `the signature is not ${d.by}'s`);
  }

  function bind(action: DecisionAction, d: DecisionPayload, signature: string): void {
    if (usedSignatures.has(signature)) throw new Refusal('Replayed', `this signed ${d.action} was already used`);
    usedSignatures.add(signature);
    if (d.workflowId !== ctx.workflowId || (d.runId !== ctx.runId && !ctx.earlierRuns?.includes(d.runId))) {
      throw new Refusal('WrongWorkflow', `the decision was signed for ${d.workflowId} (run ${d.runId.slice(0, 8)}), not this ${ctx.what} (${ctx.workflowId}, run ${ctx.runId.slice(0, 8)})`);
    }
    if (d.action !== action) throw new Refusal('WrongAction', `the decision was signed as ${d.action}, not ${action}`);
    const age = Date.now() - Date.parse(d.time);
    if (age > DECISION_MAX_AGE_MS) throw new Refusal('Expired', `the decision was signed at ${d.time}, more than ${DECISION_MAX_AGE_MS / 60_000} minutes ago`);
    if (-age > DECISION_MAX_SKEW_MS) throw new Refusal('Expired', `the decision is dated ${d.time}, in the future`);
    const hash = ctx.planHash();
    if (hash === undefined || d.planHash !== hash) {
      throw new Refusal('PlanMismatch', `the decision is for plan ${d.planHash.slice(0, 12)}, this ${ctx.what} runs plan ${(hash ?? '(not computed yet)').slice(0, 12)} (safeshift show <id> --plan)`);
    }
  }

  return {
    /** What to hand to the next run's desk (continue-as-new): every signature used, the newest outcomes. */
    memory(): DeskMemory {
      return { used: [...usedSignatures], outcomes: [...seen].slice(-KEEP_OUTCOMES) };
    },
    /** What became of a signature (its first 16 hex digits); null: never seen. */
    outcome(signature16: string): DecisionOutcome | null {
      return seen.get(signature16) ?? null;
    },
    /**
     * Verify a signed decision for `action`, then `rules` (which throws a Refusal to refuse). On refusal: recorded,
     * audited, and an ApplicationFailure thrown (fails the Update; a signal handler catches and drops it).
     */
    async accept<T>(action: DecisionAction, args: unknown, rules: (d: DecisionPayload) => T): Promise<{ d: DecisionPayload; result: T }> {
      let claimed: DecisionPayload | undefined;
      let verifiedBy: string | undefined;
      try {
        const { d, signature } = verify(action, args);
        claimed = d;
        authenticate(action, d, (args as SignedDecision).payload, signature);
        verifiedBy = d.by;
        bind(action, d, signature);
        const result = rules(d);
        seen.set(signature.slice(0, 16), { accepted: true });
        return { d, result };
      } catch (err) {
        if (err instanceof Refusal) throw await refuse(action, args, err, verifiedBy, claimed);
        throw err;
      }
    },
  };
}

/**
 * The deciders' keys, read once when a workflow starts. Rows the activity ignored (not signed by an administrator,
 * revoked) are audited here, in the workflow's own numbered record (`keys:ignored`), never by the activity. A
 * worker from before this answered the keys alone: read as such on replay.
 */
export async function readKeysAtStart(
  read: (input: { db: string; names: string[] }) => Promise<DeciderKeys | ApproverKeys>, input: { db: string; names: string[] },
  audit: (actor: string, action: string, details: Record<string, unknown>) => Promise<unknown>,
): Promise<DeciderKeys> {
  const r = await read(input);
  const answered = (typeof r.keys === 'object' && !Array.isArray(r.keys) && Array.isArray(r.ignored)) ? r as DeciderKeys : { keys: r as ApproverKeys, ignored: [] };
  for (const k of answered.ignored) await audit('safeshift', 'keys:ignored', { name: k.name, fingerprint: k.fingerprint, reason: k.reason });
  return answered;
}

/** What a start-up warning says of the ignored keys (person, fingerprint, why; never the key). */
export function ignoredKeysWarning(ignored: DeciderKeys['ignored']): string[] {
  return ignored.length
    ? [`decider keys ignored (their decisions will be refused): ${ignored.map((k) => `${k.name} ${k.fingerprint} (${k.reason})`).join('; ')}`]
    : [];
}

/** The first detail of the failure inside Temporal's wrappers (what `fatal` was given), if there is one. */
export function failureDetails(err: unknown): unknown {
  let e: unknown = err;
  while (e instanceof wf.ActivityFailure && e.cause) e = e.cause;
  return e instanceof wf.ApplicationFailure ? e.details?.[0] : undefined;
}

type Audit = (action: string, details: Record<string, unknown>) => Promise<void>;

/**
 * Export, then verify, each audited; an export that does not verify is kept (evidence) and fails the caller with
 * `BackupNotVerified`, naming each problem. The backup workflow and the migration's backup phase both run this.
 */
export async function exportAndVerify(
  run: Pick<typeof activities, 'exportBackup' | 'verifyBackup'>, audit: Audit, input: ExportInput,
): Promise<{ exported: ExportSummary; verified: Awaited<ReturnType<typeof activities.verifyBackup>> }> {
  const { id, dir } = input;
  const exported = await run.exportBackup(input);
  await audit('backup:exported', { id, dir, tables: exported.tables, bytes: exported.bytes, encrypted: exported.encrypted });
  const verified = await run.verifyBackup({ db: input.db, id, dir, keyEnv: input.keyEnv });
  await audit(verified.ok ? 'backup:verified' : 'backup:unverified', { id, tables: verified.tables });
  if (!verified.ok) {
    throw fatal('BackupNotVerified', `export ${id} in ${dir} failed verification: ` +
      verified.tables.filter((t) => !t.ok).map((t) => `${t.table}: ${t.problem}`).join('; '));
  }
  return { exported, verified };
}
