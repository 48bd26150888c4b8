/**
 * A fleet of 30 projects (a schema each, a 20-row table) on the stack's task queue, served by the stack's worker
 * and a second `safeshift worker` process started here: the canary wave behind a gate, the gate after it, the rest
 * grouped by region (continue on error), one project made to fail (it rolls back on its own and is retried once
 * its data is fixed), pause and resume, the second worker killed with SIGKILL mid-fleet while it works, and the
 * parent continuing as new every 8 children.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspectPlan } from '../../activities/preflight';
import type { Client } from '@temporalio/client';
import { connectClient } from '../../src/config';
import { connect } from '../../src/db';
import { fleetProject, fleetStatus, fleetWorkflowId, type FleetStatus } from '../../src/fleet/spec';
import { MIGRATION_PROJECT } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { ROOT, runCli, sql, uniqueName, writePlan } from '../support/helpers';

const N = 30;

function startWorker(): ChildProcess {
  return spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'worker'], { cwd: ROOT, env: process.env, stdio: 'ignore' });
}

/** Whether the worker process `pid` polls the task queue for activities (its identity is pid@host). */
async function polling(client: Client, pid: number): Promise<boolean> {
  const r = await client.workflowService.describeTaskQueue({
    namespace: process.env.TEMPORAL_NAMESPACE ?? 'default', taskQueue: { name: process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift' },
    taskQueueType: 2, // TASK_QUEUE_TYPE_ACTIVITY (@temporalio/proto is not a direct dependency)
  });
  return (r.pollers ?? []).some((p) => p.identity?.startsWith(`${pid}@`));
}

async function stopped(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill(signal);
  await exited;
}

test('fleet of 30: canary, gates, a failed project rolled back and retried, pause/resume, a worker killed, continue-as-new', async () => {
  const u = uniqueName('fl');
  const slugs = Array.from({ length: N }, (_, i) => `${u}_${String(i).padStart(2, '0')}`);
  const bad = slugs[9]!;
  // The second worker bundles the workflows while the fleet starts on the stack's worker.
  const second = startWorker();
  const client = await connectClient();
  const started = Date.now();
  const t = (what: string) => process.stdout.write(`fleet: ${what} at ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  try {
    await sql(`CREATE TABLE public.${u}_projects (slug text, id int, region text);
      INSERT INTO public.${u}_projects SELECT '${u}_' || lpad(i::text, 2, '0'), 1000 + i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END
        FROM generate_series(0, ${N - 1}) i;
      ${slugs.map((s) => `CREATE SCHEMA project_${s}; CREATE TABLE project_${s}.items (id int PRIMARY KEY, title text);
        INSERT INTO project_${s}.items SELECT g, 'item ' || g FROM generate_series(1, 20) g;`).join('\n')}
      UPDATE project_${bad}.items SET title = 'poison' WHERE id = 7;`);
    const file = writePlan({
      version: 1, name: `${u.replace(/_/g, '-')}`, database: 'DATABASE_URL', requestedBy: 'carol',
      source: 'project_{{project.slug}}.items',
      target: 'project_{{project.slug}}.items_v2',
      create: "CREATE TABLE project_{{project.slug}}.items_v2 (id int PRIMARY KEY, title text CHECK (title <> 'poison'), project_id int NOT NULL)",
      columns: { project_id: '{{project.id}}' },
      copy: { chunkRows: 10, chunkTime: '0s' },
      backup: { table: false },
      approvals: { cutover: { approvers: ['alice', 'bob'] }, drop: { approvers: ['alice'] } },
    });
    const env = {};

    // Refused before anything starts, each named: a slug that is not an identifier, a projects query that writes
    // (run beside the real start: neither starts anything).
    const [badSlug, writing, start] = await Promise.all([
      runCli(['fleet', 'start', file, '--projects', `${slugs[0]},Bad-Slug`], env),
      runCli(['fleet', 'start', file, '--projects', `WITH d AS (DELETE FROM public.${u}_projects RETURNING slug) SELECT slug FROM d`], env),
      runCli(['fleet', 'start', file, '--projects', `SELECT slug, id, region FROM public.${u}_projects ORDER BY slug`,
        '--canary', '2', '--group-by', 'region', '--parallel', '6', '--on-error', 'continue', '--continue-as-new-every', '8', '--child-heartbeat', '3s'], env),
    ]);
    expect(badSlug.code).toBe(2);
    expect(badSlug.stderr).toMatch(/"Bad-Slug" is not a safe identifier/);
    expect(writing.code).toBe(2);
    expect(writing.stderr).toMatch(/--projects: must only read; it holds DeleteStmt/);
    expect(start.stderr).toBe('');
    expect(start.code).toBe(0);
    const id = fleetWorkflowId(u.replace(/_/g, '-'));
    expect(start.stdout).toContain(`started ${id}: ${N} projects, waves canary (2), eu (14), us (14)`);
    const handle = client.workflow.getHandle(id);
    const waitFleet = async (what: string, until: (s: FleetStatus) => boolean, ms = 120_000): Promise<FleetStatus> => {
      const deadline = Date.now() + ms;
      let last: FleetStatus | undefined;
      while (Date.now() < deadline) {
        last = await handle.query(fleetStatus).catch(() => undefined);
        if (last && until(last)) { t(what); return last; }
        await sleep(300);
      }
      throw new Error(`timed out waiting for ${what}; last status: ${JSON.stringify(last)}`);
    };
    const approveGate = async (gate: string) => {
      await waitFleet(`gate ${gate} open`, (s) => s.gates.some((g) => g.name === gate && g.state === 'open'));
      const r = await runCli(['fleet', 'approve', id, '--as', 'alice'], env);
      expect(r.stdout).toContain(`alice approved the fleet's ${gate} gate (1/1)`);
    };

    // Nothing runs before the canary's gate is approved.
    expect((await waitFleet('gate canary open', (x) => x.gates.some((g) => g.name === 'canary' && g.state === 'open'))).totals.waiting).toBe(N);
    await approveGate('canary');
    let s = await waitFleet('canary done', (x) => x.waves[0]!.done === 2);
    expect(s.totals.done).toBe(2);
    // The gate after the canary holds the other waves.
    expect(s.gates.find((g) => g.name === 'eu')?.state).toBe('open');
    expect(s.waves[1]!.waiting + s.waves[2]!.waiting).toBe(N - 2);
    const child = await client.workflow.getHandle(`${id}.${slugs[0]}`).describe();
    expect(child.typedSearchAttributes.get(MIGRATION_PROJECT)).toBe(slugs[0]);
    expect(child.parentExecution?.workflowId).toBe(id);

    // Paused at the gate, then approved: nothing starts until resumed.
    await waitFleet('gate eu open', (x) => x.gates.some((g) => g.name === 'eu' && g.state === 'open'));
    const paused = await runCli(['fleet', 'pause', id, '--as', 'carol'], env);
    expect(paused.stderr).toBe('');
    expect(paused.code).toBe(0);
    await approveGate('eu');
    await sleep(2500);
    s = await handle.query(fleetStatus);
    expect(s).toMatchObject({ paused: true, totals: expect.objectContaining({ done: 2, running: 0, waiting: N - 2 }) });
    expect(s.gates.find((g) => g.name === 'eu')?.state).toBe('approved');
    const begun = 2;
    // The second worker is up (it polls the queue) before the fleet goes on, so it takes a share of the work.
    for (let i = 0; !(await polling(client, second.pid!)); i += 1) {
      if (i > 600) throw new Error('the second worker never polled the task queue');
      await sleep(200);
    }
    t('second worker polling');
    const resumed = await runCli(['fleet', 'resume', id, '--as', 'carol'], env);
    expect(resumed.stderr).toBe('');
    expect(resumed.code).toBe(0);

    // The second worker killed (no graceful shutdown) while it serves running children: the other carries the fleet to its end.
    await waitFleet('children started after resume', (x) => x.totals.running >= 2 && N - x.totals.waiting > begun);
    await waitFleet('children running', (x) => x.totals.running >= 2);
    await stopped(second, 'SIGKILL');
    t('worker killed');
    s = await waitFleet('all waves over', (x) => x.phase === 'awaiting_retry', 150_000);
    if (s.totals.done !== N - 1) process.stdout.write(`fleet: failures ${JSON.stringify(s.failures)}\n`);
    expect(s.totals).toMatchObject({ projects: N, done: N - 1, running: 0, waiting: 0 });
    expect(s.failures).toEqual([expect.objectContaining({ slug: bad, state: 'rolled_back', attempts: 1 })]);
    expect(s.continuedAsNew).toBeGreaterThanOrEqual(1);
    // The failed project rolled back on its own: its table as before, no new table left.
    expect(await sql(`SELECT count(*)::int AS n, count(*) FILTER (WHERE title = 'poison')::int AS p FROM project_${bad}.items`)).toEqual([{ n: 20, p: 1 }]);
    expect(await sql(`SELECT to_regclass('project_${bad}.items_v2') AS t`)).toEqual([{ t: null }]);
    // A done project: the new shape under the live name, every row, its project id from the template.
    expect(await sql(`SELECT count(*)::int AS n, min(project_id) AS lo, max(project_id) AS hi FROM project_${slugs[3]}.items`)).toEqual([{ n: 20, lo: 1003, hi: 1003 }]);

    // Fix the data, retry the project: it runs again (attempt 2, its own child id) and the fleet ends done.
    await sql(`UPDATE project_${bad}.items SET title = 'cured' WHERE id = 7`);
    const retry = await runCli(['fleet', 'retry', id, '--project', bad, '--as', 'carol'], env);
    expect(retry.stdout).toContain(`retrying ${bad}`);
    const final = await handle.result() as FleetStatus;
    t('fleet done');
    expect(final.outcome?.phase).toBe('done');
    expect(final.totals).toMatchObject({ done: N, failed: 0, rolledBack: 0 });
    expect(await handle.query(fleetProject, bad)).toMatchObject({ s: 'done', a: 2, workflowId: `${id}.${bad}.2` });
    expect(await sql(`SELECT count(*)::int AS n, min(project_id) AS lo FROM project_${bad}.items`)).toEqual([{ n: 20, lo: 1009 }]);
    const shown = await runCli(['fleet', 'status', id], env);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/wave eu +14\/14 done/);
  } finally {
    await stopped(second, 'SIGTERM');
    await client.connection.close();
  }
}, 300_000);

test('projects migrating side by side: DDL another session commits during a preflight is not blamed on the plan', async () => {
  // A fleet runs many migrations in one database at once: one child's preflight must not fail because another
  // dropped its own change table meanwhile. Here the other session's DROP lands while the preflight waits for the
  // rehearsal's lock on the source, between its before and after snapshots of the catalog.
  const u = uniqueName('side');
  await sql(`CREATE TABLE public.${u} (id int PRIMARY KEY, v text); INSERT INTO public.${u} SELECT g, 'v' FROM generate_series(1, 5) g;
             CREATE TABLE public.${u}_other (id int)`);
  const { plan } = loadPlan(writePlan({
    version: 1, name: u.replace(/_/g, '-'), database: 'DATABASE_URL', requestedBy: 'carol', source: `public.${u}`, target: `public.${u}_v2`,
    approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'] } },
  }));
  const holder = await connect(process.env.DATABASE_URL!, 'fleet test holder');
  const preflight = await connect(process.env.DATABASE_URL!, 'fleet test preflight');
  try {
    await holder.query(`BEGIN; LOCK TABLE public.${u} IN ACCESS SHARE MODE`);
    const pid = (await preflight.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const report = inspectPlan(preflight, plan, '20261130000000', { rehearse: true }).then((r) => r, (err: unknown) => err);
    for (;;) {
      const [w] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE pid = $1 AND NOT granted`, [pid]);
      if (w!.n > 0) break;
      await sleep(10);
    }
    await sql(`DROP TABLE public.${u}_other`);
    await holder.query('ROLLBACK');
    const r = await report;
    expect(r instanceof Error ? (r as { problems?: string[] }).problems ?? r.message : 'ok').toBe('ok');
  } finally {
    await holder.end();
    await preflight.end();
  }
});
