/**
 * Pieces the migration, backup and restore workflows share: the gate rules every approval passes, the verified
 * export, and how a failure and a time are told. Deterministic like the workflows themselves: no I/O here.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { ExportSummary, ExportInput } from '../activities/export';
import { fatal, NON_RETRYABLE_TYPES } from '../src/errors';

/**
 * How activities are retried. Anything not in the closed set of fatal types is transient: a lost connection, a
 * restarting or failing-over server. 30 attempts with backoff capped at a minute is about 25 minutes of a database
 * that does not answer before the migration gives up and rolls back; a PostgreSQL restart or failover is well
 * inside that, so the migration resumes on its own once the server is back.
 */
export const ACTIVITY_RETRY = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 30, nonRetryableErrorTypes: NON_RETRYABLE_TYPES };
import type { GateStatus } from '../src/messages';

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

/**
 * The rules every decision at a gate passes (run in the Update's validator, so a refused one leaves no trace in
 * history): a gate must be open (and be the one meant), the requester cannot decide, only listed approvers can,
 * each once. `what` names the workflow's subject ("migration", "restore"); `gatesHint` says where decisions are taken.
 */
export function checkDecision<N extends string>(
  open: GateStatus<N> | undefined, approver: string, gate: string | undefined,
  context: { requestedBy: string; what: string; phase: string; gatesHint: string },
): GateStatus<N> {
  const refuse = (message: string, type: string) => wf.ApplicationFailure.nonRetryable(message, type);
  if (!open) throw refuse(`no gate is open (phase ${context.phase}); ${context.gatesHint}`, 'GateNotOpen');
  if (gate && gate !== open.name) throw refuse(`the ${gate} gate is not open; the open gate is ${open.name}`, 'GateNotOpen');
  if (approver === context.requestedBy) throw refuse(`${approver} requested this ${context.what} and cannot decide on it`, 'SelfApproval');
  if (!open.approvers.includes(approver)) throw refuse(`${approver} is not an approver of the ${open.name} gate (approvers: ${open.approvers.join(', ')})`, 'NotAnApprover');
  if (open.decisions.some((d) => d.approver === approver)) throw refuse(`${approver} has already decided on the ${open.name} gate`, 'AlreadyDecided');
  return open;
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
