/**
 * What layoutWorkflow and its clients (CLI, tests) agree on. Imported by workflow code: no Node, no I/O.
 * Decisions use the migration's `approve` / `reject` Updates (src/messages.ts) and the same signed-decision desk.
 */
import { defineQuery } from '@temporalio/workflow';
import type { GateStatus, RefusedDecision } from '../messages';
import type { Layout } from './schema';

export interface LayoutInput {
  layout: Layout;
  /** SHA-256 of the file as read by the CLI: informational; decisions are bound to the workflow's own hash. */
  fileHash?: string;
}

/** One change as an approver reads it (src/layout/diff.ts Change without its SQL). */
export interface ChangeLine {
  scope: string;
  sign: '+' | '-' | '~' | '!';
  object: string;
  reason: string;
}

export const LAYOUT_PHASES = ['plan', 'awaiting_apply', 'apply', 'check', 'done', 'unchanged', 'rolled_back', 'failed'] as const;
export type LayoutPhase = (typeof LAYOUT_PHASES)[number];
export const FINAL_LAYOUT_PHASES: readonly LayoutPhase[] = ['done', 'unchanged', 'rolled_back', 'failed'];

export interface LayoutStatus {
  name: string;
  phase: LayoutPhase;
  requestedBy: string;
  /** The hash the workflow computed of the layout it applies: what a decision is bound to. */
  planHash: string;
  /** What the plan found to change (at most MAX_CHANGE_LINES; `changeCount` is the whole count). */
  changes: ChangeLine[];
  changeCount: number;
  /** Scopes (auth, shared, system, project slugs) with something to change, and those converged so far. */
  scopes: string[];
  converged: string[];
  statements: number;
  gate?: GateStatus<'apply'>;
  refusedDecisions?: RefusedDecision[];
  message?: string;
  outcome?: { phase: LayoutPhase; reason: string };
}

/** Change lines kept in the status and history; the count is always whole. */
export const MAX_CHANGE_LINES = 500;
/** Scopes converged per activity: each in its own transaction, heartbeated between. */
export const SCOPES_PER_ACTIVITY = 20;

export const layoutStatus = defineQuery<LayoutStatus>('layoutStatus');

export function layoutWorkflowId(name: string): string {
  return `layout-${name}`;
}

export function isLayoutWorkflowId(id: string): boolean {
  return id.startsWith('layout-');
}
