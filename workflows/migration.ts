/**
 * migrationWorkflow(plan): the migrator. Reads like the phase table of DESIGN.md: each phase is entered (audit
 * row, search attribute, details), its compensation registered, its activity run. Any failure, reject, gate
 * timeout or abort runs the registered compensations in reverse, in a non-cancellable scope, and the migration
 * ends `rolled_back` (or `failed` if a compensation could not finish: the status says what is left).
 *
 * Deterministic: no I/O here, only activities; time is workflow time.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { CatchUpResult } from '../activities/catch-up';
import type { CopyProgress } from '../activities/copy';
import type { PreflightReport } from '../activities/preflight';
import { fatal } from '../src/errors';
import { planHashOf, sameName } from '../src/identity';
import { BACKUP_KEY_ENV, doneReason, type GateName, type MigrationStatus } from '../src/messages';
import type { SwapBackRefusal } from '../src/rollback-feasibility';
import { formatDuration } from '../src/plan/duration';
import { displayName } from '../src/sql';
import { settleByFleet } from './fleet-delegation';
import { migrationFrame } from './frame';
import { CONTINUE_AS_NEW_EVENTS, historyIsLong, runsStep, runsSoFar, undoOutcome, undoStep, type Carried, type MigrationRunInput, type ResumeAt, type UndoResult, type UndoStep } from './carry';
import { ACTIVITY_RETRY, exportAndVerify, HEARTBEAT_TIMEOUT, ignoredKeysWarning, readKeysAtStart, SHORT_ACTIVITY, failureDetails, failureMessage, failureType, stampOf } from './shared';

const COPY_SLICE_MS = 30_000;
/** How long one follow-the-source activity runs while a gate waits; each adds a few history events. */
const FOLLOW_SLICE_MS = 120_000;
/** Catch-up is done (validation may start) once no more than this many changes wait. */
const SMALL_BACKLOG = 1000;
const REPLAY_BATCH = 5000;

export async function migrationWorkflow(input: MigrationRunInput): Promise<MigrationStatus> {
  const { plan, carried } = input;
  // Decisions are bound to the plan this workflow runs, hashed here: a hash the client put in the input is never trusted.
  const planHash = planHashOf(plan);
  const info = wf.workflowInfo();
  // A continued run (continue-as-new, workflows/carry.ts) goes on under the first run's id and stamp: the ledger's
  // rows, event keys, chunk records and the names the run made stay the migration's, whichever run writes them.
  const migrationRunId = carried?.runId ?? info.runId;
  const stamp = carried?.stamp ?? stampOf(info.startTime);
  const resumeAt = carried?.resumeAt;
  const historyLimit = input.timeouts?.continueAsNewEvents ?? CONTINUE_AS_NEW_EVENTS;
  // No wf.patched() here: Temporal's Core writes a patch marker's payload itself, in plain JSON, past the payload
  // codec, and history holds ciphertext only (issue 14; test: codec). Upgrading the worker across this change
  // with migrations in flight: one already past continueAsNewEvents would hand over at a different point than its
  // history recorded (a nondeterminism error); finish or restart those first (docs/architecture.md).
  const handOverDue = () => historyIsLong(historyLimit);
  const ref = { db: plan.database, workflowId: info.workflowId, runId: migrationRunId };
  const retry = ACTIVITY_RETRY;
  const heartbeatTimeout = input.timeouts?.heartbeat ?? HEARTBEAT_TIMEOUT;
  const sliceMs = input.timeouts?.copySliceMs ?? COPY_SLICE_MS;
  // WAIT_CANCELLATION_COMPLETED: on a cancel, compensations start only once the running activity has stopped,
  // so a swap cannot commit behind the back of the swap back that is meant to undo it.
  const cancellationType = wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED;
  const quick = wf.proxyActivities<typeof activities>({ ...SHORT_ACTIVITY, heartbeatTimeout });
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '12h', heartbeatTimeout, retry, cancellationType });
  const copy = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '30m', heartbeatTimeout, retry: { ...retry, maximumAttempts: 50 }, cancellationType });

  const startedAt = carried?.clocks.startedAt ?? Date.now();
  const state: MigrationStatus = carried?.state ?? {
    name: plan.name,
    planHash,
    source: displayName(plan.source),
    target: displayName(plan.target),
    requestedBy: plan.requestedBy,
    phase: 'preflight',
    paused: false,
    abortRequested: false,
    copy: { rowsCopied: 0, rowsTotal: 0, chunks: 0, lastKey: null, rowsPerSecond: 0, etaSeconds: null, throttledMs: 0, rowsRedone: 0, chunkRows: 0, parallel: 1, format: 'text' },
    catchUp: { backlogRows: 0, lagSeconds: 0, replayedChanges: 0 },
    gates: (['cutover', 'drop'] as const).map((name) => ({
      name, approvers: plan.approvals[name].approvers, required: plan.approvals[name].required, state: 'pending', decisions: [],
    })),
    phaseDurationsMs: {},
    warnings: [],
    compensations: [],
    startedAt: new Date(startedAt).toISOString(),
    updatedAt: new Date(startedAt).toISOString(),
  };
  /** How many times the original table refused the swap back, and whether an operator asked for another try. */
  let rollbackBlocks = 0;
  let rollbackRetry = false;
  const runs = runsSoFar(carried, info.runId);
  const frame = migrationFrame({
    plan, planHash, ref, state, recordEvent: quick.recordEvent, describe: currentDetails, earlierRuns: runs.slice(0, -1),
    carried: carried && { eventNo: carried.eventNo, phaseStartedAt: carried.clocks.phaseStartedAt, cutoverAt: carried.clocks.cutoverAt, deciderKeys: carried.deciderKeys, desk: carried.desk },
    rollbackReply: `rolling back ${state.source}: writes made since cutover go back to the original table, then the names are swapped back`,
    blockedRollback: { isBlocked: () => state.rollbackBlocked !== undefined, retry: retryRollback },
  });
  const { audit, touch, enter, checkpoint, people } = frame;

  /** A rollback blocked on data, asked for again (rollback or abort): the swap back runs once more. */
  async function retryRollback(by: string, reason: string | null, via: 'rollback' | 'abort'): Promise<string> {
    rollbackRetry = true;
    await audit(by, 'rollback:retry', { via, attempt: rollbackBlocks + 1, reason });
    return `retrying the rollback of ${state.source} (attempt ${rollbackBlocks + 1}): writes made since cutover go back to the original table, then the names are swapped back; \`safeshift status ${plan.name}\` tells whether it finished`;
  }

  function noteCatchUp(r: CatchUpResult): void {
    if (r.throttleReason) state.throttle = { reason: r.throttleReason, at: new Date().toISOString() };
    state.copy.throttledMs += r.throttledMs;
    state.catchUp = {
      backlogRows: r.rows, lagSeconds: Math.round(r.lagSeconds * 10) / 10,
      replayedChanges: state.catchUp.replayedChanges + r.replayedChanges, updatedAt: new Date().toISOString(),
    };
    touch();
  }

  /**
   * While a gate waits (an approver may take days), keep replaying captured changes so the backlog stays small.
   * One activity runs per FOLLOW_SLICE_MS, so history grows by a few events per slice, not per change.
   */
  async function followSource(replay: Omit<activities.CatchUpInput, 'mode' | 'sliceMs'>, settled: () => boolean): Promise<void> {
    const followMs = input.timeouts?.followSliceMs ?? FOLLOW_SLICE_MS;
    while (!settled()) {
      const scope = new wf.CancellationScope();
      const follow = scope.run(() => long.catchUp({ ...replay, mode: 'follow', sliceMs: followMs }));
      // A failing follower (say, the target refuses a replayed value) fails the gate: no catch here.
      const first = await Promise.race([follow, wf.condition(settled).then(() => 'settled' as const)]);
      if (first === 'settled') {
        scope.cancel();
        const last = await follow.catch(() => undefined);
        if (last) noteCatchUp(last);
        return;
      }
      noteCatchUp(first);
    }
  }

  /**
   * Wait at a gate until enough approvals, a reject, an abort or the timeout; `meanwhile` runs until then.
   * 'handover': history grew long while the gate waited; the caller continues as new, and the next run waits on
   * at the same gate (already open and entered: its decisions, opening time and deadline are in the state).
   * 'timed_out': the drop gate's timeout (the cutover gate's throws: it rolls back).
   */
  async function gate(name: GateName, meanwhile?: (settled: () => boolean) => Promise<void>): Promise<'decided' | 'handover' | 'timed_out'> {
    const cfg = plan.approvals[name];
    const g = resumeAt === `awaiting_${name}` ? state.gates.find((x) => x.name === name)! : await frame.openGate(name);
    if (resumeAt !== `awaiting_${name}`) {
      // A fleet's child: the fleet's forwarded approval settles the gate at once (it never waits, so never resumes here).
      if (input.fleet) await settleByFleet(input.fleet, g, cfg, plan.requestedBy, frame.deciderKeys ?? {}, (by, details) => audit(by, `approve:${name}`, { ...details, planHash }));
    }
    let timedOut = false;
    let backgroundFailure: unknown;
    // History is read at every activation: the end of a follow slice, a decision, a signal.
    const settled = () => g.state !== 'open' || state.abortRequested || timedOut || backgroundFailure !== undefined || handOverDue();
    // Caught at once: a rejection nobody awaits would fail the workflow task, not the migration.
    const background = meanwhile ? meanwhile(settled).catch((err: unknown) => { backgroundFailure = err; }) : Promise.resolve();
    // condition(fn, undefined) would time out at once: only a gate with a timeout gets one (what is left of it).
    const left = g.deadline === undefined ? undefined : Date.parse(g.deadline) - Date.now();
    const decided = left === undefined ? (await wf.condition(settled), true) : left > 0 ? await wf.condition(settled, left) : g.state !== 'open' || state.abortRequested;
    timedOut = !decided;
    await background;
    if (backgroundFailure !== undefined && !wf.isCancellation(backgroundFailure)) throw backgroundFailure;
    if (backgroundFailure !== undefined) timedOut = false;
    if (frame.gateOutcome(name, decided) === 'timed_out') return 'timed_out';
    if (g.state === 'open') return 'handover';
    await frame.holdForDropRetention(name);
    return 'decided';
  }

  /**
   * The swap back, taken up again for as long as the original table refuses a write made after cutover
   * (SwapBackUnsafe). Nothing is lost meanwhile: the new table stays live and reverse capture records every
   * write. Any other failure is the compensation's failure, as before.
   */
  async function untilSwappedBack(c: UndoStep): Promise<UndoResult> {
    for (;;) {
      try {
        return await undoStep(c, { quick, long });
      } catch (err) {
        if (failureType(err) !== 'SwapBackUnsafe') throw err;
        await waitWhileBlocked(err);
      }
    }
  }

  /** Phase rollback_blocked: say what refused (no values) and wait, without polling, until asked to try again. */
  async function waitWhileBlocked(err: unknown): Promise<void> {
    const { sqlstate, column, constraint, rows, findRows } = (failureDetails(err) ?? {}) as Partial<SwapBackRefusal>;
    rollbackBlocks += 1;
    rollbackRetry = false;
    const fix = sqlstate
      ? `fix the rows written after cutover that the original table refuses (UPDATE or DELETE them through ${state.source}${findRows ? `; to list their keys: ${findRows}` : ''})`
      : 'fix what the reason names';
    state.rollbackBlocked = {
      since: new Date().toISOString(), attempts: rollbackBlocks, reason: failureMessage(err), sqlstate, column, constraint, rows, findRows,
      next: `${fix}, then run \`safeshift rollback ${plan.name}\` again; until then the new table stays live and every write to it is recorded for the rollback`,
    };
    await enter('rollback_blocked', { attempt: rollbackBlocks }).catch(() => undefined);
    await audit('safeshift', 'rollback:blocked', { attempt: rollbackBlocks, reason: state.rollbackBlocked.reason, sqlstate: sqlstate ?? null, column: column ?? null, constraint: constraint ?? null, rows: rows ?? null })
      .catch(() => undefined);
    await wf.condition(() => rollbackRetry);
    state.rollbackBlocked = undefined;
    await enter('rolling_back', { attempt: rollbackBlocks + 1 }).catch(() => undefined);
  }

  /**
   * The backup table's retention starts when the migration ends, done or rolled back (a failed one keeps it: a
   * person has to look): an abandoned child drops it `backup.retention` later, so the result is not held up.
   */
  async function startBackupRetention(backup: PreflightReport['backup'] | undefined): Promise<void> {
    if (!state.backupTable || !backup) return;
    try {
      await wf.startChild('backupRetentionWorkflow', {
        workflowId: `${info.workflowId}-backup-retention-${stamp}`,
        parentClosePolicy: wf.ParentClosePolicy.ABANDON,
        args: [{ ...ref, backup, retentionMs: plan.backup.retention }],
      });
      await audit('safeshift', 'backup:retention', { table: state.backupTable, retention: formatDuration(plan.backup.retention) }).catch(() => undefined);
    } catch (err) {
      state.warnings.push(`the backup table ${state.backupTable} was not scheduled for its retention (${failureMessage(err)}); it stays until dropped by hand`);
    }
  }

  const throttle = { maxReplicationLagMs: plan.copy.maxReplicationLag, throttleQuery: plan.copy.throttleQuery };
  /** Undo steps as data (workflows/carry.ts), the one to run first first; each registered next to its action. */
  const compensations: UndoStep[] = [...(carried?.compensations ?? [])];
  let report: PreflightReport | undefined = carried?.work.report;
  let work: Carried['work'] | undefined = carried?.work;
  let copyStarted = carried?.clocks.copyStartedAt;

  /**
   * History is long: the migration goes on in a new run of this workflow, from `at`, with everything this run
   * keeps. Decisions and signals being handled finish first, so none is lost in the hand-over.
   */
  async function handOver(at: ResumeAt, made: Carried['work']): Promise<never> {
    await wf.condition(wf.allHandlersFinished);
    touch();
    const next: Carried = {
      runId: migrationRunId, stamp, runs, resumeAt: at, state, eventNo: frame.eventNo, events: wf.workflowInfo().historyLength,
      clocks: { startedAt, phaseStartedAt: frame.phaseStartedAt, copyStartedAt: copyStarted, cutoverAt: frame.cutoverAt },
      compensations, deciderKeys: frame.deciderKeys, desk: frame.desk.memory(), work: made,
    };
    // The search attributes (MigrationPhase, the table) as they are now: the dashboard finds the new run like the old.
    return wf.makeContinueAsNewFunc<typeof migrationWorkflow>({ typedSearchAttributes: wf.workflowInfo().typedSearchAttributes })({ ...input, carried: next });
  }

  try {
    if (!carried) {
      await enter('preflight');
      const read = await readKeysAtStart(quick.readDeciderKeys, { db: plan.database, names: people }, audit);
      const deciderKeys = frame.deciderKeys = read.keys;
      // The approvers without a key (a requester without one only cannot pause, resume, abort or roll back by signature).
      const keyless = people.filter((p) => !sameName(p, plan.requestedBy) && !deciderKeys[p.toLowerCase()]?.length);
      if (keyless.length) await audit('safeshift', 'keys:missing', { names: keyless });
      if (input.planHash && input.planHash !== planHash) {
        await audit('safeshift', 'plan:hash-differs', { given: input.planHash, computed: planHash });
      }
      report = await quick.preflight({ db: plan.database, plan, stamp });
      state.copy.rowsTotal = report.rowsEstimate;
      state.warnings = [...report.warnings,
        ...(keyless.length ? [`no key registered for ${keyless.join(', ')} when the migration started: their decisions will be refused (safeshift keys add)`] : []),
        ...ignoredKeysWarning(read.ignored),
        ...(input.planHash && input.planHash !== planHash ? [`the client said the plan hash was ${input.planHash.slice(0, 12)}; the plan this migration runs hashes to ${planHash.slice(0, 12)}, and only that one can be approved`] : [])];
      state.rollbackRisks = report.reverse.risks;
    } else {
      touch();
      await audit('safeshift', 'history:continued', { run: info.runId, from: info.continuedFromExecutionRunId ?? null, at: carried.resumeAt, events: carried.events });
    }
    if (!report) throw fatal('Unsupported', 'a continued run carries no preflight report');
    const { spec, retired } = report;
    const capture = { ...ref, source: plan.source, sourceOid: report.sourceOid, key: spec.key, where: spec.where, lockTimeoutMs: plan.cutover.lockTimeoutMs };

    if (!carried) {
      await checkpoint();
      await enter('backup', { table: plan.backup.table });
      if (plan.backup.table) {
        const backup = await long.backupTable({ ...ref, source: plan.source, backup: report.backup });
        state.backupTable = backup.table;
        await audit('safeshift', 'backup:verified', { ...backup });
      }
      if (plan.backup.export) {
        // A file export of the source too, in its own snapshot, verified (restored into a scratch schema) before
        // anything else happens: a migration never starts on an export that does not restore.
        const id = `${info.workflowId}-${stamp}`;
        const dir = `${plan.backup.export.dir.replace(/\/+$/, '')}/${id}`;
        const keyEnv = plan.backup.export.encrypt ? BACKUP_KEY_ENV : undefined;
        await exportAndVerify(long, (action, details) => audit('safeshift', action, details),
          { db: plan.database, workflowId: info.workflowId, id, tables: [displayName(plan.source)], dir, keyEnv });
        state.backupExport = { id, dir };
      }

      await checkpoint();
      await enter('prepare');
      work = { report, ...(await quick.createTarget({ ...ref, source: plan.source, target: plan.target, createSql: report.createSql, partition: report.partition })) };
      compensations.unshift({ name: 'dropTarget', args: { ...ref, target: plan.target, targetOid: work.targetOid } });
      // Registered first: the trigger may be in place even if the reply is lost.
      compensations.unshift({ name: 'removeChangeCapture', args: capture });
      await audit('safeshift', 'capture:installed', { message: await quick.installChangeCapture(capture) });
    }
    if (!work) throw fatal('Unsupported', 'a continued run carries no target');
    const { targetOid, deferredIndexes } = work;

    if (runsStep(resumeAt, 'copy')) {
      if (resumeAt !== 'copy') {
        await checkpoint();
        await enter('copy', { rowsEstimate: report.rowsEstimate, chunkRows: plan.copy.chunkRows, parallel: plan.copy.parallel, format: spec.format, formatReason: report.copyFormatReason });
        Object.assign(state.copy, { parallel: plan.copy.parallel, format: spec.format ?? 'text', chunkRows: plan.copy.chunkRows });
        copyStarted = Date.now();
      }
      // Chunks start at the plan's size and are tuned toward chunkTime; never below 100 rows (or the plan's size, if
      // smaller) nor above 1M rows (or the plan's size, if larger), so one chunk stays a bounded amount of work.
      const sizing = { targetMs: plan.copy.chunkTime, min: Math.min(plan.copy.chunkRows, 100), max: Math.max(plan.copy.chunkRows, 1_000_000) };
      for (;;) {
        await checkpoint();
        const slice: CopyProgress = await copy.copySlice({
          db: plan.database, runId: migrationRunId, spec, targetOid, chunkRows: state.copy.chunkRows, sizing, parallel: plan.copy.parallel,
          maxRowsPerSecond: plan.copy.maxRowsPerSecond, throttle, sliceMs,
        });
        if (slice.throttleReason) state.throttle = { reason: slice.throttleReason, at: new Date().toISOString() };
        state.copy.rowsCopied = slice.rows;
        state.copy.chunks = slice.chunks;
        state.copy.rowsRedone += slice.rowsRedone;
        state.copy.chunkRows = slice.chunkRows;
        state.copy.throttledMs += slice.throttledMs;
        state.copy.lastKey = slice.lastKey;
        const seconds = Math.max(1, Date.now() - (copyStarted ?? startedAt)) / 1000;
        state.copy.rowsPerSecond = Math.round(state.copy.rowsCopied / seconds);
        state.copy.etaSeconds = state.copy.rowsPerSecond > 0 ? Math.max(0, Math.round((state.copy.rowsTotal - state.copy.rowsCopied) / state.copy.rowsPerSecond)) : null;
        touch();
        if (slice.done) break;
        if (handOverDue()) return await handOver('copy', work);
      }
      if (state.copy.rowsRedone) await audit('safeshift', 'copy:redone', { rows: state.copy.rowsRedone, message: `${state.copy.rowsRedone} rows of chunks in flight when a copy attempt stopped were copied again` });
      state.copy.rowsTotal = state.copy.rowsCopied;
      state.copy.etaSeconds = 0;
    }

    if (runsStep(resumeAt, 'build') && deferredIndexes.length) {
      await checkpoint();
      await enter('build', { indexes: deferredIndexes });
      const built = await long.buildIndexes({ ...ref, target: plan.target, targetOid });
      await audit('safeshift', 'build:indexes', { built });
    }

    const replay = { db: plan.database, runId: migrationRunId, throttle, spec, sourceOid: report.sourceOid, smallBacklog: SMALL_BACKLOG, batch: REPLAY_BATCH, maxRowsPerSecond: plan.copy.maxRowsPerSecond };
    if (runsStep(resumeAt, 'catch_up')) {
      if (resumeAt !== 'catch_up') {
        await checkpoint();
        await enter('catch_up');
      }
      for (;;) {
        await checkpoint();
        const r: CatchUpResult = await long.catchUp({ ...replay, mode: 'drain', sliceMs });
        noteCatchUp(r);
        if (r.caughtUp) break;
        if (handOverDue()) return await handOver('catch_up', work);
      }
    }

    if (runsStep(resumeAt, 'validate')) {
      await checkpoint();
      await enter('validate');
      const validation = await long.validateCopy({ db: plan.database, spec, sourceOid: report.sourceOid, chunkRows: plan.copy.chunkRows, parallel: plan.copy.parallel, foreignKeys: report.foreignKeys, targetOid });
      state.validation = validation;
      await audit('safeshift', validation.ok ? 'validate:ok' : 'validate:mismatch', { ...validation });
      if (!validation.ok) throw fatal('ValidationMismatch', validation.message);
    }

    if (runsStep(resumeAt, 'awaiting_cutover')) {
      if ((await gate('cutover', (settled) => followSource(replay, settled))) === 'handover') return await handOver('awaiting_cutover', work);
      await checkpoint();
      await enter('cutover');
      const swap = { ...ref, spec, retired, sourceOid: report.sourceOid, targetOid, reverse: report.reverse.spec, compatView: report.compatView, newTableName: plan.cutover.newTableName, foreignKeys: report.foreignKeys, partition: report.partition, partitions: report.partitions, stamp, lockTimeoutMs: plan.cutover.lockTimeoutMs, attempts: plan.cutover.attempts };
      // Registered first: the swap may commit and its reply be lost; swapBack checks where the tables are.
      compensations.unshift({ name: 'swapBack', args: swap });
      const swapped = await long.swapTables(swap);
      frame.cutoverAt = Date.now();
      state.retiredTable = displayName(retired);
      await audit('safeshift', 'cutover:swapped', { ...swapped });

      await enter('verify');
      await long.verifyCutover({ db: plan.database, spec, targetOid, compatView: report.compatView !== null, newTableName: plan.cutover.newTableName, accessChanged: swapped.accessChanged });
    }

    const dropGate = await gate('drop');
    if (dropGate === 'handover') return await handOver('awaiting_drop', work);
    if (dropGate === 'timed_out') {
      // No decision is not an approval: the retired table stays (sealed since cutover), the live table loses its
      // reverse capture (a trigger on every write, a growing change table) and the forward change table goes.
      compensations.length = 0;
      const name = displayName(retired);
      const kept = plan.where !== undefined
        ? [{ what: `the split project's old rows (hidden in the shared table since cutover)`, drop: `DELETE the shared table's rows matching the plan's where, then VALIDATE the split's CHECK (what the drop phase does)` }]
        : [{ what: `the retired table ${name}`, drop: `DROP TABLE ${name}` }];
      const note = await frame.keepAfterDropTimeout(kept, async () => {
        await quick.removeChangeCapture({ ...capture, sourceOid: targetOid }); // the reverse capture on the live table
        await quick.removeChangeCapture(capture);
      });
      touch();
      state.outcome = { phase: 'done', reason: `${doneReason(state, { compatView: report.compatView !== null, newTableName: plan.cutover.newTableName }, state.copy.rowsCopied)}; ${note}` };
      await enter('done', {}, { reason: state.outcome.reason });
      await startBackupRetention(report.backup);
      await wf.condition(wf.allHandlersFinished);
      return state;
    }
    await checkpoint();
    frame.dropStarted = true;
    compensations.length = 0; // past this point nothing is undone: the drop is the point of no return
    await enter('drop', { retired: displayName(retired) });
    await quick.dropRetired({ ...ref, retired, sourceOid: report.sourceOid });
    await quick.removeChangeCapture(capture);
    await quick.removeChangeCapture({ ...capture, sourceOid: targetOid }); // the reverse capture on the live table

    touch();
    state.outcome = { phase: 'done', reason: doneReason(state, { compatView: report.compatView !== null, newTableName: plan.cutover.newTableName }, state.copy.rowsCopied) };
    await enter('done', {}, { reason: state.outcome.reason });
    await startBackupRetention(report.backup);
  } catch (err) {
    // The hand-over to the next run (continue-as-new) is how this run ends, not a failure.
    if (err instanceof wf.ContinueAsNew) throw err;
    const reason = failureMessage(err);
    if (frame.dropStarted) {
      state.outcome = { phase: 'failed', reason: state.kept
        ? `the drop gate timed out (nothing is dropped, no rollback), then removing the change capture failed: ${reason}; ${state.kept.map((k) => `${k.what} is kept`).join(', ')}`
        : `drop failed after approval: ${reason}; the retired table may still exist` };
      await wf.CancellationScope.nonCancellable(async () => {
        await enter('failed', {}, { reason: state.outcome!.reason }).catch(() => undefined);
        await wf.condition(wf.allHandlersFinished);
      });
      throw wf.ApplicationFailure.nonRetryable(state.outcome.reason, 'Failed');
    }
    await wf.CancellationScope.nonCancellable(async () => {
      // The ledger may be what failed (database down): an audit row that cannot be written must not stop the undo.
      await enter('rolling_back', { reason }).catch(() => undefined);
      for (const c of compensations) {
        try {
          const message = c.name === 'swapBack' ? await untilSwappedBack(c) : await undoStep(c, { quick, long });
          state.compensations.push({ name: c.name, state: 'done' });
          await audit('safeshift', `compensate:${c.name}`, undoOutcome(message));
        } catch (cerr) {
          state.compensations.push({ name: c.name, state: 'failed', error: failureMessage(cerr) });
          await audit('safeshift', `compensate:${c.name}:failed`, { error: failureMessage(cerr) }).catch(() => undefined);
        }
      }
      const failed = state.compensations.filter((c) => c.state === 'failed');
      state.outcome = failed.length
        ? { phase: 'failed', reason: `${reason}; rollback incomplete: ${failed.map((c) => `${c.name}: ${c.error}`).join('; ')}` }
        : { phase: 'rolled_back', reason: rollbackBlocks ? `${reason}; the swap back was refused ${rollbackBlocks} time${rollbackBlocks > 1 ? 's' : ''} before it went through` : reason };
      await enter(state.outcome.phase, {}, { reason: state.outcome.reason }).catch(() => undefined);
      if (state.outcome.phase === 'rolled_back') await startBackupRetention(report?.backup);
      // Inside the scope: after a Temporal cancel this wait must not throw, the rollback has finished.
      await wf.condition(wf.allHandlersFinished);
    });
    if (state.outcome!.phase === 'failed') throw wf.ApplicationFailure.nonRetryable(state.outcome!.reason, 'Failed');
    return state;
  }
  await wf.condition(wf.allHandlersFinished);
  return state;
}

function currentDetails(s: MigrationStatus): string {
  const lines = [`**${s.phase}**${s.paused ? ' (paused)' : ''} — ${s.source} → ${s.target}`];
  if (s.copy.rowsTotal || s.copy.rowsCopied) lines.push(`rows copied: ${s.copy.rowsCopied} / ${s.copy.rowsTotal} in ${s.copy.chunks} chunks`);
  if (s.catchUp.updatedAt) lines.push(`catch-up: ${s.catchUp.backlogRows} changes waiting, lag ${s.catchUp.lagSeconds}s, ${s.catchUp.replayedChanges} replayed`);
  if (s.validation) lines.push(`validation: ${s.validation.ok ? 'equal' : 'MISMATCH'} — ${s.validation.message}`);
  for (const g of s.gates) {
    if (g.state === 'pending') continue;
    lines.push(`gate ${g.name}: ${g.state} (${g.decisions.filter((d) => d.approved).length}/${g.required}; approvers ${g.approvers.join(', ')})`);
  }
  for (const w of s.warnings) lines.push(`note: ${w}`);
  if (s.rollbackBlocked) lines.push(`rollback BLOCKED (attempt ${s.rollbackBlocked.attempts}): ${s.rollbackBlocked.reason}`, `next: ${s.rollbackBlocked.next}`);
  if (s.outcome) lines.push(`outcome: ${s.outcome.phase} — ${s.outcome.reason}`);
  return lines.join('\n\n');
}
