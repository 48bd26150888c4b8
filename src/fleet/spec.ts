/**
 * A fleet: one template plan over many projects, in waves. What the CLI, the fleet workflow and the children agree
 * on: the input (spec and the state carried over continue-as-new), the status shape, the messages and the ids.
 * Imported by workflow code, so: no Node, no I/O.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { SignedDecision } from '../identity';
import type { ApproverKeys, DecisionArgs, GateStatus, RefusedDecision } from '../messages';

/** One project as the fleet knows it: its slug (an identifier) and its other metadata (id, region, ...), all text. */
export interface ProjectMeta {
  slug: string;
  [key: string]: string;
}

export type OnError = 'stop' | 'continue';

/**
 * A wave: a contiguous range [start, end) of the spec's projects (the CLI orders them wave by wave), run with its
 * own parallelism and error rule. `gate`: an approval is taken before the wave starts and covers it (and every
 * following wave without a gate of its own).
 */
export interface WaveSpec {
  name: string;
  start: number;
  end: number;
  parallel: number;
  onError: OnError;
  gate: boolean;
}

/** What a fleet runs; fixed for its whole life (every continue-as-new carries it unchanged): its hash is what approvals bind to. */
export interface FleetSpec {
  name: string;
  requestedBy: string;
  /** Who may approve a wave (the template's cutover and drop approvers) and how many must. */
  approvers: string[];
  required: number;
  /** The template plan as parsed from its file (YAML tree; createFile inlined as create), before expansion. */
  template: Record<string, unknown>;
  /** SHA-256 of the template file's bytes (and its createFile), as the CLI read it. */
  templateHash: string;
  projects: ProjectMeta[];
  waves: WaveSpec[];
}

/** A project's state in the fleet: waiting (not started), running, done, rolled back (failed, undone), failed (undo incomplete or no result), skipped (aborted before it started). */
export type ProjectState = 'waiting' | 'running' | 'done' | 'rolled_back' | 'failed' | 'skipped';

/** Per project, carried over continue-as-new: kept small (10,000 of them must fit one payload). */
export interface ProjectRun {
  s: ProjectState;
  /** Attempts started (a retry adds one; the child's workflow id carries it). */
  a: number;
  /** ms the last attempt took, once it ended. */
  ms?: number;
  /** Why it failed or rolled back (first 200 characters). */
  e?: string;
}

export type FleetPhase = 'running' | 'awaiting_gate' | 'awaiting_retry' | 'stopped' | 'aborted' | 'done';

/** Everything carried from one run of the fleet workflow to the next. */
export interface FleetCarry {
  runs: ProjectRun[];
  /** The wave running (or whose gate is open). */
  wave: number;
  /** Approvals taken, by gate name (= the wave's name): forwarded to the children they cover. */
  approvals: Record<string, SignedDecision[]>;
  gates: GateStatus<string>[];
  paused: boolean;
  /** Set by a failed project in a stop wave, or an abort; the fleet then starts nothing more. */
  halted?: { phase: 'stopped' | 'aborted'; reason: string };
  /** Projects to retry, asked for while the fleet was running (or carried from a run that continued as new). */
  retry: number[];
  continuedAsNew: number;
  /** The deciders' keys, read when the fleet started and fixed for its whole life (like a migration's). */
  keys?: ApproverKeys;
  startedAt: string;
  /** ms since the epoch of the first child start: the ETA's clock. */
  firstChildAt?: number;
}

export interface FleetSettings {
  /** Children started per run before the fleet continues as new (default 500; tests set a few). */
  continueAsNewEvery?: number;
  /** Plans expanded per activity call (default 50). */
  planBatch?: number;
  /** Passed to every child (tests shorten heartbeats). */
  childTimeouts?: { heartbeat?: string; copySliceMs?: number; followSliceMs?: number };
  /** How long the fleet waits for a retry after its last wave when projects failed (default 7d); then it ends. */
  retryWindowMs?: number;
}

export interface FleetInput {
  spec: FleetSpec;
  settings?: FleetSettings;
  carry?: FleetCarry;
}

/**
 * What a fleet hands a child instead of its own gates: the approvals of the fleet gate covering the child's wave.
 * The child believes them only if the fleet is its parent (Temporal records that, no client can set it) and each is
 * a signature of a registered approver of the child's gate over this fleet, this gate and the fleet's hash.
 */
export interface FleetDelegation {
  workflowId: string;
  planHash: string;
  gate: string;
  approvals: SignedDecision[];
}

export interface WaveStatus {
  name: string;
  parallel: number;
  onError: OnError;
  gate: boolean;
  total: number;
  done: number;
  running: number;
  waiting: number;
  failed: number;
  rolledBack: number;
  skipped: number;
}

export interface FleetStatus {
  name: string;
  planHash: string;
  requestedBy: string;
  phase: FleetPhase;
  paused: boolean;
  /** The fleet's gates, as a migration's: the CLI's signing asks for the open one. */
  gates: GateStatus<string>[];
  waves: WaveStatus[];
  totals: { projects: number; done: number; running: number; waiting: number; failed: number; rolledBack: number; skipped: number };
  slowest: { slug: string; ms: number }[];
  failures: { slug: string; state: ProjectState; attempts: number; reason?: string }[];
  etaSeconds: number | null;
  continuedAsNew: number;
  refusedDecisions?: RefusedDecision[];
  outcome?: { phase: FleetPhase; reason: string };
  startedAt: string;
  updatedAt: string;
}

export const fleetStatus = defineQuery<FleetStatus>('status');
/** The same query name as a migration's plan query: what decisions are signed over (the fleet's hash). */
export const fleetPlan = defineQuery<{ plan: { name: string; templateHash: string; projects: number; waves: WaveSpec[] }; planHash: string }>('plan');
/** A slug's state (for tests and `fleet status --project`). */
export const fleetProject = defineQuery<(ProjectRun & { slug: string; wave: string; workflowId: string }) | null, [string]>('fleetProject');
/** Retry a project (or, with gate null in the signed text, every failed project): a signed `retry` decision; its reason names the slug. */
export const fleetRetry = defineUpdate<string, [DecisionArgs]>('fleetRetry');

export function fleetWorkflowId(name: string): string {
  return `fleet-${name}`;
}

/** The child's id: derived from the fleet's id and the slug; a retry gets its attempt number, so each run is its own workflow. */
export function childWorkflowId(fleetId: string, slug: string, attempt: number): string {
  return attempt <= 1 ? `${fleetId}.${slug}` : `${fleetId}.${slug}.${attempt}`;
}

/** The wave a project index belongs to. */
export function waveOf(waves: readonly WaveSpec[], index: number): number {
  return waves.findIndex((w) => index >= w.start && index < w.end);
}

/** The gate whose approval covers wave `w`: the nearest wave at or before it that has a gate. */
export function coveringGate(waves: readonly WaveSpec[], w: number): string | undefined {
  for (let i = w; i >= 0; i -= 1) if (waves[i]!.gate) return waves[i]!.name;
  return undefined;
}
