/**
 * Kill the worker mid-copy (SIGKILL: no graceful shutdown, chunk transactions cut off): a second worker resumes
 * from the last heartbeated key and the migration completes with every row exactly once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectClient } from '../../src/config';
import { approve, migrationWorkflowId, status } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, fingerprint, ROOT, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { PROFILES_V2_SELECT, PROFILES_V2_TARGET_SELECT, profilesV2, seedProfiles } from '../support/seed';

function startWorker(taskQueue: string): ChildProcess {
  return spawn(process.execPath, [join(ROOT, 'bin/safeshift'), 'worker'], {
    cwd: ROOT,
    env: { ...process.env, SAFESHIFT_TASK_QUEUE: taskQueue },
    stdio: 'ignore',
  });
}

async function stopped(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill(signal);
  await exited;
}

test('worker killed mid-copy: another worker finishes it, no row missing or doubled', async () => {
  const src = uniqueName('profiles');
  const dst = `${src}_v2`;
  const rows = 60_000;
  await seedProfiles(src, rows);
  const expected = await fingerprint(PROFILES_V2_SELECT(src), 'id');
  // Throttled so the copy takes ~6 s: long enough to kill the worker in the middle of it.
  const file = writePlan(basePlan(src, `public.${src}`, `public.${dst}`, { ...profilesV2(dst), copy: { chunkRows: 1000, maxRowsPerSecond: 10_000 } }));
  const { plan, hash } = loadPlan(file);
  const taskQueue = `crash-${src}`;
  const workflowId = migrationWorkflowId(plan.name);

  let worker = startWorker(taskQueue);
  const client = await connectClient();
  try {
    const handle = await client.workflow.start('migrationWorkflow', {
      taskQueue, workflowId, args: [{ plan, planHash: hash, timeouts: { heartbeat: '3s' } }],
    });
    await waitFor(plan.name, (s) => s.phase === 'copy', 60_000);
    // Wait until some chunks are committed in the target, then kill in the middle of the copy.
    for (;;) {
      const [r] = await sql<{ n: string }>(`SELECT count(*)::text AS n FROM public.${dst}`);
      if (Number(r!.n) >= 15_000) break;
      await sleep(100);
    }
    await stopped(worker, 'SIGKILL');
    const [atKill] = await sql<{ n: string }>(`SELECT count(*)::text AS n FROM public.${dst}`);
    expect(Number(atKill!.n)).toBeLessThan(rows);

    worker = startWorker(taskQueue);
    const s = await waitFor(plan.name, atPhase('awaiting_cutover'), 150_000);
    expect(s.validation?.ok).toBe(true);
    expect(s.copy.rowsCopied).toBe(rows);
    // Our own comparison: same rows, each exactly once.
    const [dups] = await sql<{ n: string }>(`SELECT count(*) - count(DISTINCT id) AS n FROM public.${dst}`);
    expect(Number(dups!.n)).toBe(0);
    expect(await fingerprint(PROFILES_V2_TARGET_SELECT(dst), 'id')).toEqual(expected);

    await handle.executeUpdate(approve, { args: [{ approver: 'alice', gate: 'cutover' }] });
    await waitFor(plan.name, atPhase('awaiting_drop'), 60_000);
    await handle.executeUpdate(approve, { args: [{ approver: 'alice', gate: 'drop' }] });
    await waitFor(plan.name, atPhase('done'), 60_000);
    expect(await fingerprint(PROFILES_V2_TARGET_SELECT(src), 'id')).toEqual(expected);
    expect((await handle.query(status)).copy.rowsCopied).toBe(rows);
  } finally {
    await stopped(worker, 'SIGTERM');
    await client.connection.close();
  }
});
