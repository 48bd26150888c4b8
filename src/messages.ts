/**
 * Everything the workflows and their clients (CLI, tests, dashboards) must agree on: message definitions,
 * search attribute keys, phase names and the status shape. Imported by workflow code, so: no Node, no I/O.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { Plan } from './plan/schema';
import type { SignedDecision } from './identity';
import type { RollbackRisk } from './rollback-feasibility';
import type { FleetDelegation } from './fleet/spec';

export const MIGRATION_PHASE = defineSearchAttributeKey('MigrationPhase', SearchAttributeType.KEYWORD);
export const MIGRATION_TABLE = defineSearchAttributeKey('MigrationTable', SearchAttributeType.KEYWORD);
export const MIGRATION_PROJECT = defineSearchAttributeKey('MigrationProject', SearchAttributeType.KEYWORD);
export const SEARCH_ATTRIBUTES = [MIGRATION_PHASE, MIGRATION_TABLE, MIGRATION_PROJECT] as const;

export const PHASES = [
  'preflight', 'backup', 'prepare', 'copy', 'build', 'catch_up', 'validate', 'awaiting_cutover', 'cutover',
  'verify', 'awaiting_drop', 'drop', 'done', 'rolling_back', 'rollback_blocked', 'rolled_back', 'failed',
] as const;
export type Phase = (typeof PHASES)[number];
export const FINAL_PHASES: readonly Phase[] = ['done', 'rolled_back', 'failed'];

export type GateName = 'cutover' | 'drop';

/**
 * The longest any gate waits for a person (a plan's `approvals.*.timeout` and `notBefore`, restore's
 * `--gate-timeout`): while one waits, capture triggers run on the application's writes and change tables grow,
 * or a staged copy of a table sits beside the live one. Thirty days is long enough for any approver and short
 * enough that nothing is left for years.
 */
export const MAX_GATE_WAIT_MS = 30 * 86_400_000;

export interface MigrationInput {
  plan: Plan;
  /** What the client computed; informational only: the workflow computes the plan's hash itself (src/identity.ts). */
  planHash?: string;
  /**
   * Activity timeouts; tests shorten them so a killed worker is noticed quickly. `continueAsNewEvents`: a run hands
   * the migration over to a new one (continue-as-new) once its history has this many events (default 10,000, or
   * earlier when the server suggests it); tests set it low.
   */
  timeouts?: { heartbeat?: string; copySliceMs?: number; followSliceMs?: number; continueAsNewEvents?: number };
  /** Set by a fleet for its children: the gates are settled by the fleet's approval (workflows/fleet-delegation.ts). */
  fleet?: FleetDelegation;
}

/**
 * A decision (approve, reject) or an operator action (abort, rollback, pause, resume) as sent to a workflow: the
 * signed text and its Ed25519 signature (src/identity.ts). Nothing outside the signed text is believed; the
 * members are optional because anything may be sent (an unsigned one is refused and audited).
 */
export type DecisionArgs = Partial<SignedDecision>;
export type ApproveArgs = DecisionArgs;
export type RejectArgs = DecisionArgs;
export type OperatorArgs = DecisionArgs;

/** Registered public keys (hex) of the people who may decide on a run, by lower-case name, fixed at its start. */
export type ApproverKeys = Record<string, string[]>;

/** A decision the workflow refused, kept in its status (and written to the audit log) before it was refused. */
export interface RefusedDecision {
  at: string;
  action: string;
  /** Who the decision claims to be from; only verified when `type` is not about the signature. */
  by: string | null;
  gate: string | null;
  type: string;
  reason: string;
  /** The first 16 hex digits of the signature, so the sender can find its own refusal. */
  signature: string | null;
}

/** What became of a signed decision (by its signature's first 16 hex digits), for the CLI after a signal. */
export interface DecisionOutcome {
  accepted: boolean;
  type?: string;
  reason?: string;
}

export interface GateDecision {
  approver: string;
  approved: boolean;
  reason?: string;
  at: string;
}
export interface GateStatus<Name extends string = GateName> {
  name: Name;
  approvers: string[];
  required: number;
  state: 'pending' | 'open' | 'approved' | 'rejected' | 'timed_out';
  decisions: GateDecision[];
  openedAt?: string;
  deadline?: string;
  notBefore?: string;
}

/** A key range (lo, hi] as PostgreSQL prints the key; null is an open end. */
export interface KeyRangeReport {
  lo: string[] | null;
  hi: string[] | null;
  /** For a repaired range: the repair pass after which it was equal. */
  pass?: number;
}

export interface ValidationResult {
  ok: boolean;
  /** Whole-table figures of the first check, before any repair. */
  source: { rows: number; checksum: string };
  target: { rows: number; checksum: string };
  /** Keys with captured changes not yet replayed when the snapshot was taken: left out on both sides. */
  inFlightKeys: number;
  /** Key ranges compared: 1 (the whole table) when it was equal, else the copy's chunks. */
  rangesChecked: number;
  /** Ranges that differed, were copied again and then were equal. */
  repaired: KeyRangeReport[];
  /** Ranges that still differed after the last repair pass: the migration fails. */
  stillDifferent: KeyRangeReport[];
  /** The foreign keys the new table gets at cutover, and the target rows that would break each (0: none). */
  foreignKeys?: { name: string; orphans: number }[];
  message: string;
}

export interface CatchUpStatus {
  /** Captured changes waiting to be replayed, and the age of the oldest, as of the last report. */
  backlogRows: number;
  lagSeconds: number;
  replayedChanges: number;
  updatedAt?: string;
}

export interface CopyStatus {
  rowsCopied: number;
  rowsTotal: number;
  chunks: number;
  lastKey: string[] | null;
  rowsPerSecond: number;
  etaSeconds: number | null;
  throttledMs: number;
  /** Rows copied again because their chunk was in flight when a copy attempt died (worker killed, connection lost). */
  rowsRedone: number;
  /** Current chunk size (tuned toward copy.chunkTime). */
  chunkRows: number;
  parallel: number;
  format: 'binary' | 'text';
}

/**
 * A rollback the original table refused (a write made after cutover does not fit it): the new table stays live
 * and keeps recording writes while the workflow waits for the operator to fix the data and run rollback again.
 * Never a row value: what refused is told by SQLSTATE, column and constraint.
 */
export interface RollbackBlocked {
  since: string;
  /** How many times the swap back was refused so far (1 the first time). */
  attempts: number;
  reason: string;
  sqlstate?: string;
  /** The original table's column that refuses, when PostgreSQL or the diagnosis names one. */
  column?: string;
  constraint?: string;
  /** Rows written after cutover whose `column` the original type refuses (class 22, PostgreSQL 16+). */
  rows?: number;
  /** A query that lists the keys of those rows on the live table. */
  findRows?: string;
  /** What the operator does next. */
  next: string;
}

export interface MigrationStatus {
  name: string;
  planHash: string;
  source: string;
  target: string;
  requestedBy: string;
  phase: Phase;
  paused: boolean;
  abortRequested: boolean;
  /** Set when the abort is a rollback asked for after cutover: who asked (the status line says rollback, not abort). */
  rollbackRequestedBy?: string;
  copy: CopyStatus;
  catchUp: CatchUpStatus;
  validation?: ValidationResult;
  gates: GateStatus[];
  /** ms spent in each phase so far, by phase name, in the order entered. */
  phaseDurationsMs: Record<string, number>;
  /** The last time copy or catch-up backed off, and why (replication lag, throttle query). */
  throttle?: { reason: string; at: string };
  /** From preflight, for approvers: what cutover moves, what a rollback after cutover cannot give back. */
  warnings: string[];
  /** From preflight: columns a rollback after cutover can fail on or change (also among the warnings). */
  rollbackRisks?: RollbackRisk[];
  /** Set while the rollback waits in phase `rollback_blocked`. */
  rollbackBlocked?: RollbackBlocked;
  backupTable?: string;
  /** The plan's `backup.export`: the verified export's id and directory. */
  backupExport?: { id: string; dir: string };
  retiredTable?: string;
  /**
   * What a drop gate's timeout left in place instead of dropping it (a timeout is no decision: only an approval
   * drops), each with the statement that drops it by hand. Rollback is no longer possible then.
   */
  kept?: { what: string; drop: string }[];
  compensations: { name: string; state: 'done' | 'failed'; error?: string }[];
  /** Decisions refused (bad or missing signature, not an approver, self-approval, wrong gate or plan), newest last. */
  refusedDecisions?: RefusedDecision[];
  outcome?: { phase: Phase; reason: string };
  /** The latest audit row this migration wrote (seq, HMAC), kept outside the database for `safeshift audit verify`. */
  auditHead?: { seq: number; hash: string };
  startedAt: string;
  updatedAt: string;
}

export const approve = defineUpdate<string, [ApproveArgs]>('approve');
export const reject = defineUpdate<string, [RejectArgs]>('reject');
export const pause = defineSignal<[OperatorArgs]>('pause');
export const resume = defineSignal<[OperatorArgs]>('resume');
export const abort = defineSignal<[OperatorArgs]>('abort');
/** After cutover, before the drop: carry writes back, swap the names back. An Update: refused outside that window. */
export const rollback = defineUpdate<string, [OperatorArgs]>('rollback');
export const status = defineQuery<MigrationStatus>('status');
/** The whole plan a migration runs and the hash the workflow computed of it: what an approver decides on. */
export const planQuery = defineQuery<{ plan: Plan; planHash: string }>('plan');
/** Whether a signed decision (by its signature's first 16 hex digits) was accepted or refused; null: not seen. */
export const decisionOutcome = defineQuery<DecisionOutcome | null, [string]>('decisionOutcome');

export const DEFAULT_TASK_QUEUE = 'safeshift';

/** The environment variable (on the worker) holding the export key when none is named (`--encrypt`, plan `backup.export.encrypt`). */
export const BACKUP_KEY_ENV = 'SAFESHIFT_BACKUP_KEY';

/** restoreWorkflow's input: one table of an export, into a new table, or over the live table after a gate. */
export interface RestoreInput {
  db: string;
  dir: string;
  table: string;
  into?: string;
  keyEnv?: string;
  requestedBy: string;
  /** Over the live table: who may approve, how many must, how long the gate waits, the swap's lock settings. */
  overLive?: { approvers: string[]; required: number; gateTimeoutMs: number; lockTimeoutMs: number; attempts: number };
}

/**
 * What is wrong with a restore gate's timeout (`--gate-timeout`, or `overLive.gateTimeoutMs` from any client), or
 * undefined: whole milliseconds, at least 1s, at most 30d (MAX_GATE_WAIT_MS). The workflow checks it again.
 */
export function restoreGateProblem(ms: number): string | undefined {
  if (!Number.isSafeInteger(ms)) return `overLive.gateTimeoutMs: ${ms} ms is not a whole number of milliseconds`;
  if (ms < 1000) return `overLive.gateTimeoutMs: ${ms} ms is less than 1s`;
  if (ms > MAX_GATE_WAIT_MS) return `overLive.gateTimeoutMs: ${ms} ms is more than 30d, the longest a gate may wait`;
  return undefined;
}

export const RESTORE_PHASES = ['check', 'load', 'awaiting_restore', 'swap', 'done', 'rolled_back', 'failed'] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];

export interface RestoreStatus {
  phase: RestorePhase;
  /** The hash the workflow computed of this restore's request: what an approval is bound to. */
  planHash?: string;
  backupId?: string;
  table: string;
  /** Where the restored rows end up (the live table's name when over the live table). */
  into?: string;
  rows?: number;
  requestedBy: string;
  /** Over the live table: the staged and retired names, the live table's row count, what the swap moves. */
  staged?: string;
  retired?: string;
  liveRows?: number;
  moves?: string[];
  gate?: GateStatus<'restore'>;
  refusedDecisions?: RefusedDecision[];
  message?: string;
  outcome?: { phase: RestorePhase; reason: string };
}

export const restoreStatus = defineQuery<RestoreStatus>('restoreStatus');

export function migrationWorkflowId(planName: string): string {
  return `migration-${planName}`;
}

export function restoreWorkflowId(suffix: string): string {
  return `restore-${suffix}`;
}

export function isRestoreWorkflowId(id: string): boolean {
  return id.startsWith('restore-');
}

/** What a finished migration says the live name is now: the new table, or (compatibility view) a view over it. */
export function doneReason(names: { source: string; target: string }, how: boolean | { compatView: boolean; newTableName?: 'source' | 'target' }, rows: number): string {
  if (typeof how === 'boolean') how = { compatView: how };
  if (how.compatView) return `${names.target} is the new table and ${names.source} a view over it with the old columns; ${rows} rows moved`;
  return how.newTableName === 'target'
    ? `${names.target} is the new table under its own name and ${names.source} is gone; ${rows} rows moved`
    : `${names.source} now has the new shape; ${rows} rows moved`;
}

/** Why a migration rolled back when an operator asked for it after cutover (not an abort, not a failure). */
export function rollbackRequestedReason(by: string, reason?: string): string {
  return `rolled back after cutover at the request of ${by}${reason ? `: ${reason}` : ''}`;
}
