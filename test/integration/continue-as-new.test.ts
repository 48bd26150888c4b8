/**
 * History within limits (issue 15): the migration continues as new in its copy loop and while a gate waits, and
 * loses nothing on the way. A threshold of 40 events forces a hand-over mid-copy and mid-gate: one migration
 * completes (rows, gate decisions, audit numbering, ledger, status all whole), another rolls back after its
 * hand-overs with the compensations the first runs registered (swap back, capture, target), run from data.
 */
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { migrationStatus } from '../../src/cli/status-sources';
import { connectClient } from '../../src/config';
import { approve, MIGRATION_PHASE, MIGRATION_TABLE, migrationWorkflowId, reject, type MigrationStatus } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { displayName } from '../../src/sql';
import { atPhase, basePlan, fingerprint, signedAs, slowOnCopy, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { PROFILES_V2_SELECT, PROFILES_V2_TARGET_SELECT, profilesV2, seedProfiles } from '../support/seed';

const THRESHOLD = 40;
/**
 * Short slices: the copy (2000 rows, at least 1 s) takes more than one, so the first run hands over mid-copy; the
 * gate goes through several follow slices, and hands over, in a few seconds.
 */
const timeouts = { copySliceMs: 800, followSliceMs: 300, continueAsNewEvents: THRESHOLD };
const taskQueue = process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift';

interface Run { runId: string; events: number; activities: Record<string, number>; continued: boolean }

/** Every run of a workflow id, oldest first, from Temporal's own histories (each run's start names the one before). */
async function runsOf(client: Client, workflowId: string): Promise<Run[]> {
  const runs: Run[] = [];
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  while (runId) {
    const events: temporal.api.history.v1.IHistoryEvent[] = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    const activities: Record<string, number> = {};
    for (const e of events) {
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name;
      if (name) activities[name] = (activities[name] ?? 0) + 1;
    }
    const continued = events.some((e) => e.workflowExecutionContinuedAsNewEventAttributes);
    runs.unshift({ runId, events: events.length, activities, continued });
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return runs;
}

async function auditRows(workflowId: string) {
  return sql<{ event_key: string; run_id: string; action: string; actor: string; details: Record<string, unknown> }>(
    `SELECT event_key, run_id, action, actor, details FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [workflowId]);
}

/** Until the migration has handed over at `at` (the new run's audit row says so). */
async function continuedAt(workflowId: string, at: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await auditRows(workflowId)).every((r) => r.action !== 'history:continued' || r.details.at !== at)) {
    if (Date.now() > deadline) throw new Error(`${workflowId} did not continue as new at ${at} within 60 s`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

/** Until the workflow's latest run is another than `runId` (it continued as new). */
async function nextRun(client: Client, workflowId: string, runId: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const now = (await client.workflow.getHandle(workflowId).describe()).runId;
    if (now !== runId) return now;
    if (Date.now() > deadline) throw new Error(`${workflowId} did not continue as new within 60 s`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}

async function slowTable(rows: number) {
  const src = uniqueName('can');
  await seedProfiles(src, rows);
  // 0.5 ms a row on copy connections: a 100-row chunk takes over 50 ms, 2000 rows over 1 s.
  await slowOnCopy(`public.${src}_slow`);
  const target = profilesV2(`${src}_v2`);
  return { src, plan: {
    ...target,
    create: `${target.create}; ALTER TABLE public.${src}_v2 ADD CONSTRAINT slow CHECK (public.${src}_slow(display_name) IS NOT NULL)`,
    allowFunctions: [`public.${src}_slow`], // target DDL calls a function of the database only when the plan lists it
    copy: { chunkRows: 100, chunkTime: '0s' },
  } };
}

test('continue-as-new mid-copy and mid-gate loses nothing: one migration completes whole, another rolls back with compensations run from data', async () => {
  const client = await connectClient();
  const t0 = Date.now();
  try {
    // Two migrations side by side on the shared worker.
    const [a, b] = await Promise.all([slowTable(2000), slowTable(2000)]);
    const planA = loadPlan(writePlan(basePlan(a.src, `public.${a.src}`, `public.${a.src}_v2`, {
      ...a.plan, approvals: { cutover: { approvers: ['alice', 'bob'], required: 2 }, drop: { approvers: ['alice'], required: 1 } },
    }))).plan;
    const planB = loadPlan(writePlan(basePlan(b.src, `public.${b.src}`, `public.${b.src}_v2`, b.plan))).plan;
    const expectedA = await fingerprint(PROFILES_V2_SELECT(a.src), 'id');
    const beforeB = await fingerprint(`SELECT * FROM public.${b.src}`, 'id');
    // Started as `safeshift start` starts it, search attributes included.
    const start = (plan: typeof planA) => client.workflow.start('migrationWorkflow', {
      taskQueue, workflowId: migrationWorkflowId(plan.name), args: [{ plan, timeouts }],
      typedSearchAttributes: [{ key: MIGRATION_PHASE, value: 'preflight' }, { key: MIGRATION_TABLE, value: displayName(plan.source) }],
    });
    const [handleA, handleB] = await Promise.all([start(planA), start(planB)]);

    const completes = async () => {
      const id = handleA.workflowId;
      await waitFor(planA.name, atPhase('awaiting_cutover'), 90_000);
      await handleA.executeUpdate(approve, { args: [await signedAs(handleA, 'approve', 'alice', { gate: 'cutover' })] });
      // bob signs for the run he sees now; the migration continues as new before his decision arrives.
      const seen = (await handleA.describe()).runId;
      const bobs = await signedAs(handleA, 'approve', 'bob', { gate: 'cutover' });
      await nextRun(client, id, seen);
      // safeshift status (its sources, in process) finds the live run, with the decision taken in an earlier one.
      const { status: live, recorded } = await migrationStatus(client, client.workflow.getHandle(id));
      expect(recorded).toBeUndefined();
      expect(live.phase).toBe('awaiting_cutover');
      expect(live.gates.find((g) => g.name === 'cutover')?.decisions.map((d) => d.approver)).toEqual(['alice']);
      // The dashboard's search attributes came along (safeshift list --phase finds the live run).
      const attributes = (await handleA.describe()).typedSearchAttributes;
      expect([attributes.get(MIGRATION_PHASE), attributes.get(MIGRATION_TABLE)]).toEqual(['awaiting_cutover', `public.${a.src}`]);
      await handleA.executeUpdate(approve, { args: [bobs] });
      await waitFor(planA.name, atPhase('awaiting_drop'), 60_000);
      await handleA.executeUpdate(approve, { args: [await signedAs(handleA, 'approve', 'alice', { gate: 'drop' })] });
      return (await handleA.result()) as MigrationStatus;
    };

    const rollsBack = async () => {
      await waitFor(planB.name, atPhase('awaiting_cutover'), 90_000);
      await handleB.executeUpdate(approve, { args: [await signedAs(handleB, 'approve', 'alice', { gate: 'cutover' })] });
      const at = await waitFor(planB.name, atPhase('awaiting_drop'), 60_000);
      expect(at.gates.find((g) => g.name === 'drop')?.state).toBe('open');
      // The run that swapped hands over at the drop gate: the swap back is in the next run's input, as data.
      await continuedAt(handleB.workflowId, 'awaiting_drop');
      await handleB.executeUpdate(reject, { args: [await signedAs(handleB, 'reject', 'alice', { gate: 'drop', reason: 'after a hand-over' })] });
      return (await handleB.result()) as MigrationStatus;
    };

    const [doneA, backB] = await Promise.all([completes(), rollsBack()]);

    // A: whole. Every row, once; both gates with their decisions; every phase timed.
    expect(doneA.phase).toBe('done');
    expect(doneA.copy.rowsCopied).toBe(2000);
    expect(await fingerprint(PROFILES_V2_TARGET_SELECT(a.src), 'id')).toEqual(expectedA);
    expect(doneA.gates.map((g) => [g.name, g.state, g.decisions.map((d) => d.approver)])).toEqual([['cutover', 'approved', ['alice', 'bob']], ['drop', 'approved', ['alice']]]);
    for (const p of ['preflight', 'backup', 'prepare', 'copy', 'catch_up', 'validate', 'awaiting_cutover', 'cutover', 'verify', 'awaiting_drop', 'drop']) {
      expect(doneA.phaseDurationsMs[p]).toBeGreaterThanOrEqual(0);
    }
    expect(doneA.phaseDurationsMs.copy).toBeGreaterThan(1000);
    const runsA = await runsOf(client, handleA.workflowId);
    const auditA = await auditRows(handleA.workflowId);
    const handedOverA = auditA.filter((r) => r.action === 'history:continued').map((r) => r.details.at);
    expect(handedOverA).toEqual(expect.arrayContaining(['copy', 'awaiting_cutover']));
    expect(handedOverA).toHaveLength(runsA.length - 1);
    // The audit log is one numbered sequence under the first run's id, whichever run wrote each row.
    const firstRun = runsA[0]!.runId;
    expect(auditA.map((r) => r.event_key)).toEqual(auditA.map((_, i) => `${firstRun}/${i + 1}`));
    expect(new Set(auditA.map((r) => r.run_id))).toEqual(new Set([firstRun]));
    const phases = auditA.filter((r) => r.action.startsWith('phase:')).map((r) => r.action);
    expect(phases).toEqual(['preflight', 'backup', 'prepare', 'copy', 'catch_up', 'validate', 'awaiting_cutover', 'cutover', 'verify', 'awaiting_drop', 'drop', 'done'].map((p) => `phase:${p}`));
    expect(auditA.filter((r) => r.action === 'approve:cutover').map((r) => r.actor)).toEqual(['alice', 'bob']);
    expect(doneA.auditHead?.seq).toBeGreaterThan(0);
    const ledger = await sql<{ run_id: string; phase: string; outcome: string }>(`SELECT run_id, phase, outcome FROM safeshift.migrations WHERE workflow_id = $1`, [handleA.workflowId]);
    expect(ledger).toEqual([{ run_id: firstRun, phase: 'done', outcome: 'done' }]);
    // The copy's chunk records are the first run's, all of them.
    const [chunks] = await sql<{ rows: string }>(`SELECT sum(rows)::text AS rows FROM safeshift.copy_chunks WHERE run_id = $1`, [firstRun]);
    expect(Number(chunks!.rows)).toBe(2000);

    // B: the compensations registered before its hand-overs all ran, and the source is as it was.
    expect(backB.phase).toBe('rolled_back');
    expect(backB.compensations).toEqual([
      { name: 'swapBack', state: 'done' }, { name: 'removeChangeCapture', state: 'done' }, { name: 'dropTarget', state: 'done' },
    ]);
    expect(await fingerprint(`SELECT * FROM public.${b.src}`, 'id')).toEqual(beforeB);
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${b.src}_v2`])).toHaveLength(0);
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [`public.${b.src}`])).toEqual([]);
    const runsB = await runsOf(client, handleB.workflowId);
    const auditB = await auditRows(handleB.workflowId);
    expect(auditB.filter((r) => r.action === 'history:continued').map((r) => r.details.at)).toEqual(expect.arrayContaining(['copy', 'awaiting_drop']));
    expect(auditB.map((r) => r.event_key)).toEqual(auditB.map((_, i) => `${runsB[0]!.runId}/${i + 1}`));

    // A run hands over at the first slice (or decision) past the threshold: the first run, past it before the copy
    // starts, after its first copy slice; a run that only copies or only waits at a gate, one slice past it.
    const copyRuns = runsA.filter((r) => r.continued && Object.keys(r.activities).every((n) => n === 'copySlice' || n === 'recordEvent'));
    const followRuns = runsA.filter((r) => r.continued && Object.keys(r.activities).every((n) => n === 'catchUp' || n === 'recordEvent'));
    for (const runs of [runsA, runsB]) expect(runs[0]!.activities.copySlice).toBe(1);
    expect(copyRuns.length + followRuns.length).toBeGreaterThan(0);
    for (const r of [...copyRuns, ...followRuns]) expect(r.events).toBeLessThanOrEqual(THRESHOLD + 15);
    const perSlice = (rs: Run[], activity: string) => rs.map((r) => `${r.events} events / ${r.activities[activity]} slices`).join(', ');
    process.stdout.write(`continue-as-new: ${runsA.length} runs for A, ${runsB.length} for B in ${Math.round((Date.now() - t0) / 1000)} s; ` +
      `copy-only runs: ${perSlice(copyRuns, 'copySlice')}; gate runs: ${perSlice(followRuns, 'catchUp')}; ` +
      `A's runs: ${runsA.map((r) => r.events).join(', ')} events\n`);
  } finally {
    await client.connection.close();
  }
});
