/**
 * Continue-as-new for the migration workflow. A copy of days or a gate held for weeks would outgrow Temporal's
 * history (51,200 events): the copy loop, the catch-up loop and a waiting gate hand the migration over to a new
 * run of the same workflow id once history is long. What crosses over is data only: the whole state, the
 * compensations as named steps with their arguments (a closure would not survive), the decision desk's memory,
 * the counters and clocks. Deterministic like the workflows: no I/O here.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { PreflightReport } from '../activities/preflight';
import type { ApproverKeys, MigrationInput, MigrationStatus } from '../src/messages';
import type { DeskMemory } from './shared';

/** Where a continued run takes the migration up: the loops whose length has no bound. */
export type ResumeAt = 'copy' | 'catch_up' | 'awaiting_cutover' | 'awaiting_drop';

/** The steps of the migration in order, from the copy on: a continued run skips those before its resume point. */
const STEPS = ['copy', 'build', 'catch_up', 'validate', 'awaiting_cutover', 'cutover', 'verify', 'awaiting_drop'] as const;
export type Step = (typeof STEPS)[number];

/** Does this run do `step`? Every step of a first run; of a continued one, its resume point and what follows. */
export function runsStep(resumeAt: ResumeAt | undefined, step: Step): boolean {
  return resumeAt === undefined || STEPS.indexOf(resumeAt) <= STEPS.indexOf(step);
}

/** A run hands over once history has this many events, or earlier when the server suggests it. */
export const CONTINUE_AS_NEW_EVENTS = 10_000;

/** A run does at least this much before it hands over (its start and the audit row saying it continued take ~10). */
const MIN_EVENTS = 30;

/** Is it time to hand over? Read at the end of a slice (copy, catch-up, follow) and while a gate waits. */
export function historyIsLong(limit: number): boolean {
  const info = wf.workflowInfo();
  return info.continueAsNewSuggested || info.historyLength >= Math.max(limit, MIN_EVENTS);
}

/**
 * Compensations as data: an undo is an activity and its argument. The workflow registers each right before the
 * action it undoes (workflows/migration.ts); `undoStep` runs it, in this run or any later one.
 */
type UndoName = 'dropTarget' | 'removeChangeCapture' | 'swapBack';
export type UndoStep = { [K in UndoName]: { name: K; args: Parameters<typeof activities[K]>[0] } }[UndoName];

/** What an undo returns: a message, or (swapBack) a message and the statements that carried objects back. */
export type UndoResult = string | { message: string; statements: string[] };

export function undoStep(
  s: UndoStep, run: { quick: Pick<typeof activities, 'dropTarget' | 'removeChangeCapture'>; long: Pick<typeof activities, 'swapBack'> },
): Promise<UndoResult> {
  switch (s.name) {
    case 'dropTarget': return run.quick.dropTarget(s.args);
    case 'removeChangeCapture': return run.quick.removeChangeCapture(s.args);
    case 'swapBack': return run.long.swapBack(s.args);
  }
}

/**
 * The audit details of an undo: its message, and its statements when it has them. A swapBack recorded in a
 * history from before it returned its statements gives a plain string: read as the message alone.
 */
export function undoOutcome(result: UndoResult | void): { message: string | null; statements?: string[] } {
  if (result === undefined) return { message: null };
  if (typeof result === 'string') return { message: result };
  return { message: result.message, statements: result.statements };
}

/** What one run of a migration hands to the next: everything the workflow keeps in locals. */
export interface Carried {
  /** The first run's id. The ledger (migrations row, audit event keys, chunk records, created objects) is keyed by it. */
  runId: string;
  /** yyyymmddhhmmss of the first run's start: names of the retired and backup tables, the export id. */
  stamp: string;
  /** Ids of this migration's runs before this one, oldest first (the first, and the latest few). */
  runs: string[];
  resumeAt: ResumeAt;
  state: MigrationStatus;
  /** The last audit event's number: the next run's events go on from here (their keys are unique). */
  eventNo: number;
  /** Workflow-time clocks (ms): phase durations, the copy rate, the drop gate's notBefore. */
  clocks: { startedAt: number; phaseStartedAt: number; copyStartedAt?: number; cutoverAt?: number };
  /** Registered compensations, the one to run first first. */
  compensations: UndoStep[];
  deciderKeys: ApproverKeys | undefined;
  desk: DeskMemory;
  /** What preflight and prepare found, which every later step reads. */
  work: { report: PreflightReport; targetOid: number; deferredIndexes: string[] };
  /** History length when the run before handed over, for the audit row the new run writes. */
  events: number;
}

/** A migration run's input: the client's (plan, timeouts), plus what the run before handed over, if any. */
export interface MigrationRunInput extends MigrationInput {
  carried?: Carried;
}

/** Runs remembered for decisions signed for an earlier run: the first and this many latest. */
const RUNS_KEPT = 20;

export function runsSoFar(carried: Carried | undefined, current: string): string[] {
  const runs = [...(carried?.runs ?? []), current];
  return runs.length > RUNS_KEPT + 1 ? [runs[0]!, ...runs.slice(-RUNS_KEPT)] : runs;
}
