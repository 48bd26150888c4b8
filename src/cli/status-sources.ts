/**
 * Where `safeshift status` gets what it prints. The workflow's `status` query when a worker answers within a few
 * seconds; when none does (workers down is exactly when operators need status), what was recorded: a finished
 * workflow's result, its search attribute `MigrationPhase`, and the ledger in the migrated database (phase, gate
 * decisions from the audit log, chunk records), said so with the time of the record. Either way, figures that
 * move faster than the workflow hears of them are read live from the database: rows copied and their rate from
 * the chunk records (the workflow learns them once per copy slice), the catch-up backlog from the change table
 * (the workflow learns it once per follow slice while a gate waits).
 */
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription, type WorkflowHandle } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type pg from 'pg';
import { backlog } from '../capture';
import { withClient } from '../db';
import {
  MIGRATION_PHASE, restoreStatus, status,
  type GateDecision, type GateName, type GateStatus, type MigrationInput, type MigrationStatus, type Phase, type RestoreInput, type RestoreStatus,
} from '../messages';
import type { Plan } from '../plan/schema';
import { displayName, qualified } from '../sql';
import { CliError } from './exit';

/** How long status waits for a worker to answer the query before it reads the record instead. */
const QUERY_TIMEOUT_MS = 3_000;
const DB_TIMEOUT_MS = 3_000;

/** Said with a status that did not come from a worker: where it came from and as of when. */
export interface Recorded {
  from: 'result' | 'ledger' | 'temporal';
  at: string;
  note: string;
}

export interface StatusAnswer {
  status: MigrationStatus;
  recorded?: Recorded;
  /** Figures read from the database now, overriding the workflow's last report (copy, catchUp), and when. */
  live?: { at: string; parts: ('copy' | 'catchUp')[] };
}

function within<T>(client: Client, ms: number, fn: () => Promise<T>): Promise<T> {
  return client.connection.withDeadline(Date.now() + ms, fn);
}

/** Resolves to undefined (and stops waiting) after `ms`: a database that does not answer only costs the live figures. */
async function orNothing<T>(ms: number, p: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((ok) => { timer = setTimeout(() => ok(undefined), ms); });
  try {
    return await Promise.race([p.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The migration's input from the first event of its history (one page of one event): the plan, so the database. */
async function inputOf(client: Client, desc: WorkflowExecutionDescription): Promise<MigrationInput | undefined> {
  const { history } = await within(client, QUERY_TIMEOUT_MS, () => client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace, execution: { workflowId: desc.workflowId, runId: desc.runId }, maximumPageSize: 1,
  }));
  const payloads = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
  // Through the client's codec: payloads may be stored encrypted.
  return payloads?.length ? decodeFromPayloadsAtIndex<MigrationInput>(client.options.loadedDataConverter, 0, payloads) : undefined;
}

async function withDb<T>(plan: Plan | undefined, fn: (db: pg.Client) => Promise<T>): Promise<T | undefined> {
  const url = plan ? process.env[plan.database] : undefined;
  if (!url) return undefined;
  return orNothing(DB_TIMEOUT_MS + 2_000, withClient(url, fn, 'safeshift status', { statementTimeoutMs: DB_TIMEOUT_MS, idleInTransactionMs: 10_000 }));
}

/** The status of one migration, from a worker if one answers, else from the record; then live figures. */
export async function migrationStatus(client: Client, handle: WorkflowHandle): Promise<StatusAnswer> {
  let answer: StatusAnswer;
  let desc: WorkflowExecutionDescription;
  try {
    desc = await within(client, QUERY_TIMEOUT_MS, () => handle.describe());
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CliError(`no migration ${handle.workflowId}`);
    throw new CliError(`cannot describe ${handle.workflowId}: ${(err as Error).message}`, 1);
  }
  const input = await inputOf(client, desc).catch(() => undefined);
  try {
    answer = { status: await within(client, QUERY_TIMEOUT_MS, () => handle.query(status)) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CliError(`no migration ${handle.workflowId}`);
    answer = await recordedStatus(client, handle, desc, input?.plan, (err as Error).message);
  }
  return withLiveFigures(answer, input?.plan, handle.workflowId);
}

function noWorker(desc: WorkflowExecutionDescription, reason: string): string {
  const why = /deadline|timed? ?out/i.test(reason) ? `no answer within ${QUERY_TIMEOUT_MS / 1000} s` : reason.split('\n')[0]!.slice(0, 200);
  const closed = desc.status.name === 'RUNNING' ? '' : `; the workflow is ${desc.status.name.toLowerCase()}`;
  return `no worker is answering on task queue ${desc.taskQueue} (${why})${closed}`;
}

async function recordedStatus(client: Client, handle: WorkflowHandle, desc: WorkflowExecutionDescription, plan: Plan | undefined, reason: string): Promise<StatusAnswer> {
  const note = noWorker(desc, reason);
  if (desc.status.name === 'COMPLETED') {
    // A finished migration returns its final status: the whole record, no worker needed to read it.
    const result = await within(client, QUERY_TIMEOUT_MS, () => handle.result() as Promise<MigrationStatus>).catch(() => undefined);
    const at = (desc.closeTime ?? new Date()).toISOString();
    if (result) return { status: result, recorded: { from: 'result', at, note: `${note}; from the workflow's result recorded at ${at}` } };
  }
  const attribute = desc.typedSearchAttributes.get(MIGRATION_PHASE) as Phase | undefined;
  const fromLedger = await withDb(plan, (db) => ledgerStatus(db, handle.workflowId, plan!));
  if (fromLedger) {
    // The search attribute is the workflow's own word on its phase; the ledger's may lag a failed write.
    if (attribute) fromLedger.phase = attribute;
    return { status: fromLedger, recorded: { from: 'ledger', at: fromLedger.updatedAt, note: `${note}; from the ledger and the last recorded state at ${fromLedger.updatedAt}` } };
  }
  const at = (desc.closeTime ?? desc.startTime).toISOString();
  const bare = emptyStatus(plan, attribute ?? 'preflight', desc.startTime.toISOString(), at);
  const why = plan ? `the ledger could not be read (environment variable ${plan.database} unset or the database did not answer)` : 'the plan could not be read from history';
  return { status: bare, recorded: { from: 'temporal', at, note: `${note}; ${why}; phase from the workflow's search attribute MigrationPhase` } };
}

function emptyStatus(plan: Plan | undefined, phase: Phase, startedAt: string, updatedAt: string): MigrationStatus {
  return {
    name: plan?.name ?? '?', planHash: '', source: plan ? displayName(plan.source) : '?', target: plan ? displayName(plan.target) : '?',
    requestedBy: plan?.requestedBy ?? '?', phase, paused: false, abortRequested: false,
    copy: { rowsCopied: 0, rowsTotal: 0, chunks: 0, lastKey: null, rowsPerSecond: 0, etaSeconds: null, throttledMs: 0, rowsRedone: 0, chunkRows: plan?.copy.chunkRows ?? 0, parallel: plan?.copy.parallel ?? 1, format: 'text' },
    catchUp: { backlogRows: 0, lagSeconds: 0, replayedChanges: 0 },
    gates: plan ? (['cutover', 'drop'] as const).map((name) => ({ name, approvers: plan.approvals[name].approvers, required: plan.approvals[name].required, state: 'pending' as const, decisions: [] })) : [],
    phaseDurationsMs: {}, warnings: [], compensations: [], startedAt, updatedAt,
  };
}

interface LedgerRow {
  run_id: string; phase: Phase; paused: boolean; plan_hash: string; started_at: Date; updated_at: Date; outcome: Phase | null; reason: string | null;
}

/** The migration as the ledger has it: the latest run of this workflow id, its gate decisions and copy estimate. */
async function ledgerStatus(db: pg.Client, workflowId: string, plan: Plan): Promise<MigrationStatus | undefined> {
  const { rows: [m] } = await db.query<LedgerRow>(
    `SELECT run_id, phase, paused, plan_hash, started_at, updated_at, outcome, reason FROM safeshift.migrations
      WHERE workflow_id = $1 ORDER BY started_at DESC LIMIT 1`, [workflowId]);
  if (!m) return undefined;
  const s = emptyStatus(plan, m.phase, m.started_at.toISOString(), m.updated_at.toISOString());
  s.planHash = m.plan_hash;
  s.paused = m.paused;
  if (m.outcome) s.outcome = { phase: m.outcome, reason: m.reason ?? '' };
  const { rows: events } = await db.query<{ action: string; actor: string; at: Date; details: Record<string, unknown> }>(
    `SELECT action, actor, at, details FROM safeshift.audit_log
      WHERE run_id = $1 AND (action LIKE 'approve:%' OR action LIKE 'reject:%' OR action IN ('phase:copy', 'phase:awaiting_cutover', 'phase:awaiting_drop'))
      ORDER BY seq`, [m.run_id]);
  for (const e of events) {
    const [verb, what] = e.action.split(':') as [string, string];
    if (verb === 'phase' && what === 'copy') {
      s.copy.rowsTotal = Number(e.details.rowsEstimate ?? 0);
      if (e.details.format === 'binary') s.copy.format = 'binary';
      continue;
    }
    const gate = s.gates.find((g) => g.name === (verb === 'phase' ? what.replace('awaiting_', '') : what));
    if (!gate) continue;
    if (verb === 'phase') {
      gate.openedAt = e.at.toISOString();
      continue;
    }
    const decision: GateDecision = { approver: e.actor, approved: verb === 'approve', at: e.at.toISOString() };
    if (typeof e.details.reason === 'string') decision.reason = e.details.reason;
    gate.decisions.push(decision);
  }
  for (const g of s.gates) g.state = gateState(g, s.phase);
  const copied = await copiedSoFar(db, workflowId);
  if (copied) {
    Object.assign(s.copy, { rowsCopied: copied.rows, chunks: copied.chunks, rowsTotal: Math.max(s.copy.rowsTotal, copied.rows) });
    // Past the copy the estimate gives way to what was copied, as the workflow's own status does.
    if (!(['preflight', 'backup', 'prepare', 'copy'] as Phase[]).includes(s.phase)) s.copy.rowsTotal = copied.rows;
  }
  return s;
}

function gateState(g: GateStatus, phase: Phase): GateStatus['state'] {
  if (g.decisions.some((d) => !d.approved)) return 'rejected';
  if (g.decisions.filter((d) => d.approved).length >= g.required) return 'approved';
  return phase === `awaiting_${g.name as GateName}` ? 'open' : 'pending';
}

const BEFORE_CUTOVER: readonly Phase[] = ['copy', 'build', 'catch_up', 'validate', 'awaiting_cutover'];

/**
 * Rows copied and their rate from the chunk records (committed chunks, exact), and the catch-up backlog from the
 * change table, read now. Only before cutover: after it the source's name is the new table's.
 */
async function withLiveFigures(answer: StatusAnswer, plan: Plan | undefined, workflowId: string): Promise<StatusAnswer> {
  const s = answer.status;
  if (!plan || !BEFORE_CUTOVER.includes(s.phase)) return answer;
  const parts: ('copy' | 'catchUp')[] = [];
  const read = await withDb(plan, async (db) => {
    const at = new Date().toISOString();
    if (s.phase === 'copy') {
      const copied = await copiedSoFar(db, workflowId);
      if (copied && copied.rows >= s.copy.rowsCopied) {
        s.copy.rowsCopied = copied.rows;
        s.copy.chunks = copied.chunks;
        s.copy.rowsTotal = Math.max(s.copy.rowsTotal, copied.rows);
        s.copy.rowsPerSecond = copied.seconds > 0 ? Math.round(copied.rows / copied.seconds) : 0;
        s.copy.etaSeconds = s.copy.rowsPerSecond > 0 ? Math.round((s.copy.rowsTotal - copied.rows) / s.copy.rowsPerSecond) : null;
        parts.push('copy');
      }
    }
    const { rows: [src] } = await db.query<{ changes: string | null }>(
      `SELECT to_regclass('safeshift.changes_' || to_regclass($1)::oid)::text AS changes`, [qualified(plan.source)]);
    if (src?.changes) {
      const oid = Number(src.changes.replace(/^.*changes_/, ''));
      const b = await backlog(db, oid);
      s.catchUp = { ...s.catchUp, backlogRows: b.rows, lagSeconds: Math.round(b.lagSeconds * 10) / 10, updatedAt: at };
      // During the copy the backlog only grows (replay starts after it): shown from catch-up on.
      if (s.phase !== 'copy') parts.push('catchUp');
      else delete s.catchUp.updatedAt;
    }
    return at;
  });
  return read && parts.length ? { ...answer, live: { at: read, parts } } : answer;
}

/** Committed chunks of the latest run of this migration, and the seconds since its first chunk was handed out. */
async function copiedSoFar(db: pg.Client, workflowId: string): Promise<{ rows: number; chunks: number; seconds: number } | undefined> {
  const { rows: [r] } = await db.query<{ rows: string; chunks: string; seconds: number | null }>(
    `SELECT coalesce(sum(c.rows), 0)::text AS rows, count(c.copied_at)::text AS chunks,
            extract(epoch FROM clock_timestamp() - min(c.handed_at))::float8 AS seconds
       FROM safeshift.copy_chunks c
      WHERE c.run_id = (SELECT run_id FROM safeshift.migrations WHERE workflow_id = $1 ORDER BY started_at DESC LIMIT 1)
        AND c.copied_at IS NOT NULL`, [workflowId]);
  return r ? { rows: Number(r.rows), chunks: Number(r.chunks), seconds: r.seconds ?? 0 } : undefined;
}

/**
 * A restore's status: from its worker, else its result once finished, else what was recorded (the workflow's
 * state, its last audit row): its phase is known only to its worker, and that is said.
 */
export async function restoreStatusAnswer(client: Client, handle: WorkflowHandle): Promise<{ status?: RestoreStatus; recorded?: Recorded & { lastEvent?: { action: string; at: string } } }> {
  try {
    return { status: await within(client, QUERY_TIMEOUT_MS, () => handle.query(restoreStatus)) };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CliError(`no restore ${handle.workflowId}`);
    const desc = await within(client, QUERY_TIMEOUT_MS, () => handle.describe()).catch((e: unknown) => {
      throw e instanceof WorkflowNotFoundError ? new CliError(`no restore ${handle.workflowId}`) : new CliError(`cannot describe ${handle.workflowId}: ${(e as Error).message}`, 1);
    });
    const note = noWorker(desc, (err as Error).message);
    const at = (desc.closeTime ?? new Date()).toISOString();
    if (desc.status.name === 'COMPLETED') {
      const result = await within(client, QUERY_TIMEOUT_MS, () => handle.result() as Promise<RestoreStatus>).catch(() => undefined);
      if (result) return { status: result, recorded: { from: 'result', at, note: `${note}; from the workflow's result recorded at ${at}` } };
    }
    const { history } = await within(client, QUERY_TIMEOUT_MS, () => client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace, execution: { workflowId: desc.workflowId, runId: desc.runId }, maximumPageSize: 1,
    })).catch(() => ({ history: undefined }));
    const payloads = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads;
    const input = payloads?.length ? await decodeFromPayloadsAtIndex<RestoreInput>(client.options.loadedDataConverter, 0, payloads).catch(() => undefined) : undefined;
    const url = input ? process.env[input.db] : undefined;
    const last = url ? await orNothing(DB_TIMEOUT_MS + 2_000, withClient(url, async (db) => (await db.query<{ action: string; at: Date }>(
      `SELECT action, at FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq DESC LIMIT 1`, [handle.workflowId])).rows[0],
    'safeshift status', { statementTimeoutMs: DB_TIMEOUT_MS, idleInTransactionMs: 10_000 })) : undefined;
    const lastEvent = last ? { action: last.action, at: last.at.toISOString() } : undefined;
    return {
      recorded: {
        from: lastEvent ? 'ledger' : 'temporal', at: lastEvent?.at ?? at, lastEvent,
        note: `${note}; a restore's phase is known only to its worker` +
          (lastEvent ? `; its last audit row: ${lastEvent.action} at ${lastEvent.at}` : '') + (input ? `; restoring ${input.table}${input.into ? ` into ${input.into}` : ''}` : ''),
      },
    };
  }
}
