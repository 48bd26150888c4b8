/**
 * Kill the worker mid-copy (SIGKILL: no graceful shutdown, chunk transactions cut off) while three lanes copy at
 * once: a second worker resumes from the chunk records, copies again only the chunks that were in flight, and the
 * migration completes with every row exactly once.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectClient } from '../../src/config';
import { approve, migrationWorkflowId, status } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, fingerprint, ROOT, signedAs, slowOnCopy, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
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

/** Rows ever inserted into the table, rolled-back inserts included (PostgreSQL's own counter). */
async function rowsInserted(table: string): Promise<number> {
  // Backends report counters when idle or on exit, at most once a second: read until two readings agree.
  let last = -1;
  for (;;) {
    const [r] = await sql<{ n: string }>(`SELECT n_tup_ins::text AS n FROM pg_stat_user_tables WHERE relid = 'public.${table}'::regclass`);
    const n = Number(r!.n);
    if (n === last) return n;
    last = n;
    await sleep(1500);
  }
}

test('worker killed mid-copy with 3 lanes: another worker finishes it, copying again only the chunks in flight', async () => {
  const src = uniqueName('profiles');
  const dst = `${src}_v2`;
  const rows = 30_000;
  await seedProfiles(src, rows);
  const expected = await fingerprint(PROFILES_V2_SELECT(src), 'id');
  // A target CHECK sleeps 0.5 ms a row on copy connections: each 1000-row chunk takes over half a second, so the
  // three lanes are nearly always in the middle of a chunk when the worker is killed. (Not a target trigger: those
  // are inert while safeshift fills the table.)
  await slowOnCopy(`public.${src}_slow`);
  const target = profilesV2(dst);
  const file = writePlan(basePlan(src, `public.${src}`, `public.${dst}`, {
    ...target,
    create: `${target.create}; ALTER TABLE public.${dst} ADD CONSTRAINT slow CHECK (public.${src}_slow(display_name) IS NOT NULL)`,
    allowFunctions: [`public.${src}_slow`], // target DDL calls a function of the database only when the plan lists it
    copy: { chunkRows: 1000, chunkTime: '0s', parallel: 3 },
  }));
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
      if (Number(r!.n) >= 9_000) break;
      await sleep(100);
    }
    await stopped(worker, 'SIGKILL');
    const [atKill] = await sql<{ n: string }>(`SELECT count(*)::text AS n FROM public.${dst}`);
    expect(Number(atKill!.n)).toBeLessThan(rows);

    worker = startWorker(taskQueue);
    const s = await waitFor(plan.name, atPhase('awaiting_cutover'), 150_000);
    expect(s.validation?.ok).toBe(true);
    expect(s.copy.rowsCopied).toBe(rows);
    // What the crash cost: rows inserted by chunk transactions that never committed. At most the 3 chunks in
    // flight; a resume from a stale heartbeat would copy committed chunks again and count them here.
    const redone = (await rowsInserted(dst)) - rows;
    process.stdout.write(`worker-crash: ${redone} rows copied again after the kill (3 lanes of 1000-row chunks); ${s.copy.rowsRedone} rows of the chunks in flight copied again (status)\n`);
    expect(redone).toBeGreaterThan(0);
    expect(redone).toBeLessThanOrEqual(3 * 1000);
    // Status counts the same chunks whole (the killed transactions had inserted part of them).
    expect(s.copy.rowsRedone).toBeGreaterThanOrEqual(redone);
    expect(s.copy.rowsRedone).toBeLessThanOrEqual(3 * 1000);
    expect(s.copy.rowsRedone % 1000).toBe(0);
    const [audit] = await sql<{ details: { rows: number } }>(
      `SELECT details FROM safeshift.audit_log WHERE action = 'copy:redone' AND workflow_id = $1`, [workflowId]);
    expect(audit!.details.rows).toBe(s.copy.rowsRedone);
    // Our own comparison: same rows, each exactly once.
    const [dups] = await sql<{ n: string }>(`SELECT count(*) - count(DISTINCT id) AS n FROM public.${dst}`);
    expect(Number(dups!.n)).toBe(0);
    expect(await fingerprint(PROFILES_V2_TARGET_SELECT(dst), 'id')).toEqual(expected);

    await handle.executeUpdate(approve, { args: [await signedAs(handle, 'approve', 'alice', { gate: 'cutover' })] });
    await waitFor(plan.name, atPhase('awaiting_drop'), 60_000);
    await handle.executeUpdate(approve, { args: [await signedAs(handle, 'approve', 'alice', { gate: 'drop' })] });
    await waitFor(plan.name, atPhase('done'), 60_000);
    expect(await fingerprint(PROFILES_V2_TARGET_SELECT(src), 'id')).toEqual(expected);
    expect((await handle.query(status)).copy.rowsCopied).toBe(rows);
  } finally {
    await stopped(worker, 'SIGTERM');
    await client.connection.close();
  }
});
