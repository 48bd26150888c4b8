/**
 * layoutWorkflow's activities: plan (read-only), then converge the auth stand-in and each scope. The layout comes
 * from workflow history, so it is validated and every statement expanded and parsed again here before anything
 * runs. Each scope converges in one transaction that also writes its audit row: a retry after a crash finds what
 * was committed and does only the rest.
 */
import { Context } from '@temporalio/activity';
import { pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import { scrubText } from '../src/redact';
import { appendAudit, ensureLedger } from '../src/ledger';
import { LayoutError, parseLayout } from '../src/layout/load';
import { checkLayout, type LayoutModel } from '../src/layout/model';
import { actionable } from '../src/layout/diff';
import { convergeAuth, convergeScope, planLayout, scopeOf, type ScopeResult } from '../src/layout/converge';
import { MAX_CHANGE_LINES, type ChangeLine } from '../src/layout/messages';
import type { Layout } from '../src/layout/schema';
import { withDatabase, type MigrationRef } from './support';

export interface LayoutActivityInput extends MigrationRef {
  layout: Layout;
}

/** The layout checked again (it came through history); a problem is the operator's to fix: not retried. */
async function modelOf(raw: unknown, onlyProjects?: string[]): Promise<{ layout: Layout; model: LayoutModel }> {
  try {
    const layout = parseLayout(raw);
    return { layout, model: await checkLayout(layout, '(layout)', onlyProjects) };
  } catch (err) {
    if (err instanceof LayoutError) throw fatal('BadPlan', err.message);
    throw err;
  }
}

/**
 * A statement the layout's own SQL made PostgreSQL refuse (a name it does not know, a type, a constraint, a
 * privilege) fails the same way on every retry: the operator's to fix, so not retried. Lock timeouts, lost
 * connections and the rest are retried.
 */
function operatorError(err: unknown, scope: string): { type: 'BadPlan' | 'PermissionDenied'; message: string } | undefined {
  const code = pgErrorCode(err);
  if (!code) return undefined;
  const message = scrubText(`scope ${scope}: PostgreSQL refused a statement of the layout (${code}): ${(err as Error).message}; nothing of this scope was changed (one transaction)`);
  if (code === '42501') return { type: 'PermissionDenied', message };
  return /^(42|22|23|0A|2B)/.test(code) ? { type: 'BadPlan', message } : undefined;
}

export interface LayoutPlanResult {
  changes: ChangeLine[];
  changeCount: number;
  /** Scopes with something to change, in the order apply converges them (auth first, then shared, system, projects). */
  scopes: string[];
  findings: ChangeLine[];
  problems: string[];
}

export async function planLayoutChanges(input: LayoutActivityInput): Promise<LayoutPlanResult> {
  const { layout, model } = await modelOf(input.layout);
  return withDatabase(input, async (client) => {
    const plan = await planLayout(client, layout, model);
    const todo = actionable(plan.changes);
    const line = (c: ChangeLine): ChangeLine => ({ scope: c.scope, sign: c.sign, object: c.object, reason: c.reason });
    return {
      changes: todo.slice(0, MAX_CHANGE_LINES).map(line),
      changeCount: todo.length,
      scopes: [...new Set(todo.map((c) => c.scope))],
      findings: plan.changes.filter((c) => c.sign === '!').slice(0, MAX_CHANGE_LINES).map(line),
      problems: plan.problems,
    };
  });
}

/** The Supabase stand-in where it is missing (roles are cluster-wide; creating them is idempotent). */
export async function convergeLayoutAuth(input: LayoutActivityInput): Promise<string[]> {
  const { layout } = await modelOf(input.layout, []);
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    await client.query('BEGIN');
    try {
      const missing = await convergeAuth(client, layout);
      await appendAudit(client, {
        eventKey: `${input.runId}/layout/auth`, workflowId: input.workflowId, runId: input.runId, actor: 'safeshift',
        action: 'layout:auth', phase: 'apply', details: { created: missing },
      });
      await client.query('COMMIT');
      return missing;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

export interface ConvergeResult {
  results: ScopeResult[];
  /** A scope whose statement PostgreSQL refused (not retried): those before it in the batch are converged and kept. */
  failed?: { scope: string; type: 'BadPlan' | 'PermissionDenied'; message: string };
}

/**
 * Converge `scopes` (shared, system, project slugs), each in its own transaction with its audit row. A failure that
 * a retry may cure is thrown (the retry converges the batch again: what committed is found as it should be).
 */
export async function convergeLayoutScopes(input: LayoutActivityInput & { scopes: string[] }): Promise<ConvergeResult> {
  const { model } = await modelOf(input.layout, input.scopes);
  const ctx = Context.current();
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    const results: ScopeResult[] = [];
    for (const scope of input.scopes) {
      ctx.heartbeat(scope);
      const spec = scopeOf(model, scope);
      if (!spec) throw fatal('BadPlan', `scope ${scope} is not in the layout`);
      try {
        results.push(await convergeScope(client, spec, (r) => appendAudit(client, {
          eventKey: `${input.runId}/layout/scope/${scope}`, workflowId: input.workflowId, runId: input.runId, actor: 'safeshift',
          action: 'layout:converged', phase: 'apply',
          details: { scope, schema: spec.schema, statements: r.statements, changes: r.changes.slice(0, 100).map((c) => `${c.sign} ${c.object}: ${c.reason}`) },
        })));
      } catch (err) {
        const failed = operatorError(err, scope);
        if (!failed) throw err;
        return { results, failed: { scope, ...failed } };
      }
    }
    return { results };
  });
}
