/**
 * Operators are never blind (issue 15): `safeshift status` answers when no worker polls the migration's task
 * queue (from the workflow's recorded result, its search attributes and the ledger, and says so), shows copy
 * progress as it happens (not once per 30 s copy slice), reads the catch-up backlog live, and the record (audit
 * log, ledger phase) runs in the order things happened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { recordEvent } from '../../activities/ledger';
import { migrationStatus } from '../../src/cli/status-sources';
import { connectClient } from '../../src/config';
import { migrationWorkflowId, restoreWorkflowId } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, ROOT, runCli, slowOnCopy, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { profilesV2, seedProfiles } from '../support/seed';

function startWorker(taskQueue: string): ChildProcess {
  return spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'worker'], {
    cwd: ROOT, env: { ...process.env, SAFESHIFT_TASK_QUEUE: taskQueue }, stdio: 'ignore',
  });
}

async function stopped(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  await exited;
}

async function auditOrder(workflowId: string): Promise<string[]> {
  const rows = await sql<{ action: string }>(`SELECT action FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [workflowId]);
  return rows.map((r) => r.action);
}

test('with every worker stopped, status of a finished and of a running migration prints the phase, the gates and the live backlog', async () => {
  const done = uniqueName('sw_done');
  const waiting = uniqueName('sw_wait');
  await seedProfiles(done, 500);
  await seedProfiles(waiting, 500);
  const plans = [done, waiting].map((t) => loadPlan(writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, profilesV2(`${t}_v2`)))));
  const [finished, running] = plans as [ReturnType<typeof loadPlan>, ReturnType<typeof loadPlan>];
  // A queue of our own: stopping its only worker leaves the migrations with no worker at all.
  const taskQueue = `no-worker-${done}`;
  const worker = startWorker(taskQueue);
  const client = await connectClient();
  try {
    const handles = await Promise.all(plans.map(({ plan, hash }) => client.workflow.start('migrationWorkflow', {
      taskQueue, workflowId: migrationWorkflowId(plan.name), args: [{ plan, planHash: hash }],
    })));
    await waitFor(finished.plan.name, atPhase('awaiting_cutover'), 90_000);
    expect(await runCli(['approve', finished.plan.name, '--as', 'alice', '--gate', 'cutover'])).toMatchObject({ code: 0 });
    await waitFor(finished.plan.name, atPhase('awaiting_drop'), 60_000);
    expect(await runCli(['approve', finished.plan.name, '--as', 'alice', '--gate', 'drop'])).toMatchObject({ code: 0 });
    await handles[0]!.result();
    await waitFor(running.plan.name, atPhase('awaiting_cutover'), 90_000);

    // The record runs in order: each approval's row before the phase it lets in.
    const order = await auditOrder(handles[0]!.workflowId);
    expect(order.indexOf('approve:cutover')).toBeGreaterThan(-1);
    expect(order.indexOf('approve:cutover')).toBeLessThan(order.indexOf('phase:cutover'));
    expect(order.indexOf('approve:drop')).toBeLessThan(order.indexOf('phase:drop'));
    expect(order.indexOf('phase:drop')).toBeLessThan(order.indexOf('phase:done'));

    await stopped(worker);
    // Writes while nobody replays them: the backlog status shows is read now, not the last follow slice's.
    await sql(`UPDATE public.${waiting} SET bio = 'changed while no worker ran' WHERE id <= 7`);

    const t0 = Date.now();
    const a = await runCli(['status', finished.plan.name]);
    const aMs = Date.now() - t0;
    expect(a.stderr).toBe('');
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/no worker is answering/);
    expect(a.stdout).toMatch(new RegExp(`${migrationWorkflowId(finished.plan.name)}: done`));
    expect(a.stdout).toMatch(/gate drop: approved, 1\/1/);
    expect(aMs).toBeLessThan(25_000); // the CLI's start-up included: seconds on a busy machine

    const b = await runCli(['status', running.plan.name]);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/no worker is answering/);
    expect(b.stdout).toMatch(new RegExp(`${migrationWorkflowId(running.plan.name)}: awaiting_cutover`));
    expect(b.stdout).toMatch(/gate cutover: open, 0\/1 of alice, bob/);
    expect(b.stdout).toMatch(/catch-up: 7 changes waiting/);

    const j = await runCli(['status', running.plan.name, '--json']);
    expect(j.code).toBe(0);
    const json = JSON.parse(j.stdout) as { phase: string; recorded?: { from: string }; catchUp: { backlogRows: number } };
    expect(json.phase).toBe('awaiting_cutover');
    expect(json.recorded?.from).toBe('ledger');
    expect(json.catchUp.backlogRows).toBe(7);

    const list = await runCli(['list', '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual(expect.arrayContaining([
      expect.objectContaining({ workflowId: handles[1]!.workflowId, phase: 'awaiting_cutover' }),
    ]));
    await handles[1]!.terminate('test over: no worker will take it up');

    // A restore nobody runs: its status says so, with what was recorded, and no stack trace.
    const restore = await client.workflow.start('restoreWorkflow', {
      taskQueue, workflowId: restoreWorkflowId(uniqueName('sw')), args: [{ db: 'DATABASE_URL', dir: '/nonexistent', table: `public.${waiting}`, requestedBy: 'carol' }],
    });
    const r = await runCli(['status', restore.workflowId]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/no worker is answering.*restoring public\./);
    await restore.terminate('test over');
  } finally {
    await stopped(worker);
    await client.connection.close();
  }
});

test('status shows rows copied within 3 s of the copy starting, and they move every couple of seconds', async () => {
  const src = uniqueName('sw_live');
  await seedProfiles(src, 16_000);
  // 0.5 ms a row on copy connections: 1000-row chunks of ~0.5 s, a copy of ~8 s, well inside one 30 s slice.
  await slowOnCopy(`public.${src}_slow`);
  const target = profilesV2(`${src}_v2`);
  const file = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    ...target,
    create: `${target.create}; ALTER TABLE public.${src}_v2 ADD CONSTRAINT slow CHECK (public.${src}_slow(display_name) IS NOT NULL)`,
    allowFunctions: [`public.${src}_slow`], // target DDL calls a function of the database only when the plan lists it
    copy: { chunkRows: 1000, chunkTime: '0s' },
  }));
  const name = loadPlan(file).plan.name;
  const started = await runCli(['start', file]);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  await waitFor(name, atPhase('copy'), 60_000);
  const copyAt = Date.now();
  // What `safeshift status` computes, called in-process: the CLI's own start-up takes seconds on a busy machine.
  const client = await connectClient();
  const readings: { at: number; rows: number; rate: number }[] = [];
  try {
    const handle = client.workflow.getHandle(migrationWorkflowId(name));
    while (Date.now() - copyAt < 8_000) {
      const at = Date.now() - copyAt;
      const { status: s } = await migrationStatus(client, handle);
      if (s.phase !== 'copy') break;
      readings.push({ at, rows: s.copy.rowsCopied, rate: s.copy.rowsPerSecond });
      await sleep(250);
    }
  } finally {
    await client.connection.close();
  }
  process.stdout.write(`status-sources: readings after the copy started ${JSON.stringify(readings)}\n`);
  const first = readings.find((r) => r.rows > 0);
  expect(first?.at).toBeLessThan(3_000);
  expect(first!.rate).toBeGreaterThan(0);
  // A reading ~2 s later while the copy still runs has moved.
  const later = readings.find((r) => r.at - first!.at >= 1_500);
  if (later) expect(later.rows).toBeGreaterThan(first!.rows);
  const human = await runCli(['status', name]);
  expect(human).toMatchObject({ code: 0, stderr: '' });
  expect(human.stdout).not.toMatch(/\d\.\d{4,}/); // no 29057.673095703125 ms
  await runCli(['abort', name, '--as', 'carol']);
  await waitFor(name, (s) => s.phase === 'rolled_back', 60_000).catch(() => undefined);
});

test('the ledger phase never goes back: an event written late does not overwrite a later phase', async () => {
  const runId = `test-run-${uniqueName('ledger')}`;
  const ref = { db: 'DATABASE_URL', workflowId: `migration-${runId}`, runId };
  const migration = { name: runId, plan: {}, planHash: 'x', source: 'public.a', target: 'public.b', requestedBy: 'carol' };
  await recordEvent({ ...ref, eventKey: `${runId}/1`, actor: 'safeshift', action: 'phase:awaiting_drop', phase: 'awaiting_drop', migration });
  await recordEvent({ ...ref, eventKey: `${runId}/3`, actor: 'safeshift', action: 'phase:drop', phase: 'drop' });
  // The approval's row (event 2), in the phase it was given in, arrives after the drop has started.
  await recordEvent({ ...ref, eventKey: `${runId}/2`, actor: 'alice', action: 'approve:drop', phase: 'awaiting_drop' });
  const [row] = await sql<{ phase: string }>(`SELECT phase FROM safeshift.migrations WHERE run_id = $1`, [runId]);
  expect(row!.phase).toBe('drop');
  // A retried write of the same event is still applied (idempotent), and the audit row is there once.
  await recordEvent({ ...ref, eventKey: `${runId}/3`, actor: 'safeshift', action: 'phase:drop', phase: 'drop' });
  expect(await sql(`SELECT 1 FROM safeshift.audit_log WHERE run_id = $1`, [runId])).toHaveLength(3);
  await sleep(0);
});
