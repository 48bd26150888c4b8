/**
 * PostgreSQL drops safeshift's connections (pg_terminate_backend: what an administrator, a pooler or a failover
 * does) during copy, catch-up and cutover, under a live writer. Each time, the activity that held the connection
 * fails and Temporal retries it; the migration finishes on its own and the live table equals the writer's record.
 * The worker runs inside the test stack's `safeshift dev` process: that process must outlive every disconnect.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectClient } from '../../src/config';
import { migrationWorkflowId, type Phase } from '../../src/messages';
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

interface Row { v: number; note: string }

/** The `safeshift dev` process of global-setup: its worker, PostgreSQL and Temporal live and die with it. */
function assertDevStackAlive(after: string): void {
  const pid = Number(process.env.SAFESHIFT_DEV_PID);
  if (!pid) throw new Error('SAFESHIFT_DEV_PID is not set (test/support/global-setup.ts sets it)');
  try {
    process.kill(pid, 0);
  } catch {
    throw new Error(`safeshift dev (pid ${pid}) is gone after ${after}`);
  }
}

/** Every backend of safeshift (worker, CLI) is cut off at once; returns the application names it had. */
async function terminateSafeshiftConnections(): Promise<string[]> {
  const killed = await sql<{ application_name: string }>(`
    SELECT application_name FROM pg_stat_activity
     WHERE application_name LIKE 'safeshift%' AND pid <> pg_backend_pid() AND pg_terminate_backend(pid)`);
  return killed.map((r) => r.application_name);
}

/** Polls `check` every 100 ms until it holds; fails after `ms` (or at once if the dev stack has died). */
async function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assertDevStackAlive(`waiting for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

const phaseIs = async (planName: string, phases: Phase[]): Promise<boolean> =>
  phases.includes((await statusOf(planName).catch(() => undefined))?.phase as Phase);

const hasBackend = async (where: string): Promise<boolean> =>
  (await sql(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'safeshift%' AND ${where}`)).length > 0;

/** Activities the workflow's history shows on a second or later attempt: Temporal retried a failed one. */
async function retriedActivities(planName: string): Promise<string[]> {
  const client = await connectClient();
  try {
    const history = await client.workflow.getHandle(migrationWorkflowId(planName)).fetchHistory();
    const scheduled = new Map<string, string>();
    const retried = new Set<string>();
    for (const e of history.events ?? []) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) scheduled.set(String(e.eventId), s.activityType?.name ?? '?');
      const started = e.activityTaskStartedEventAttributes;
      if (started && (started.attempt ?? 1) > 1) retried.add(scheduled.get(String(started.scheduledEventId)) ?? '?');
    }
    return [...retried].sort();
  } finally {
    await client.connection.close();
  }
}

/** One connection (not safeshift's: never terminated) writing its own ids; `known` is the last write per id. */
async function writer(table: string, known: Map<number, Row>, stop: () => boolean): Promise<number> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  client.on('error', () => undefined); // if the server goes, the next write fails the test; no crash of jest
  await client.connect();
  let nextId = 1_000_000;
  let writes = 0;
  try {
    let ids = [...known.keys()];
    for (let i = 0; !stop(); i++) {
      if (i % 50 === 0) ids = [...known.keys()];
      const pick = ids[Math.floor(Math.random() * ids.length)]!;
      const op = Math.random();
      if (op < 0.3) {
        const id = ++nextId;
        await client.query(`INSERT INTO public.${table} (id, v, note) VALUES ($1, $2, $3)`, [id, i, `ins ${i}`]);
        known.set(id, { v: i, note: `ins ${i}` });
      } else if (op < 0.75) {
        const r = await client.query(`UPDATE public.${table} SET v = $2, note = $3 WHERE id = $1`, [pick, i, `upd ${i}`]);
        if (r.rowCount === 1) known.set(pick, { v: i, note: `upd ${i}` });
      } else if (op < 0.9) {
        const id = ++nextId;
        const r = await client.query(`UPDATE public.${table} SET id = $2 WHERE id = $1`, [pick, id]);
        if (r.rowCount === 1) {
          known.set(id, known.get(pick)!);
          known.delete(pick);
        }
      } else {
        const r = await client.query(`DELETE FROM public.${table} WHERE id = $1`, [pick]);
        if (r.rowCount === 1) known.delete(pick);
      }
      writes += 1;
      await sleep(2); // a steady trickle: catch-up always has work, the 2-core machine keeps up
    }
  } finally {
    await client.end();
  }
  return writes;
}

/** Terminate every safeshift connection `rounds` times while `during` holds, once `ready` holds; returns the names. */
async function disconnectRepeatedly(what: string, rounds: number, ready: () => Promise<boolean>, during: () => Promise<boolean>): Promise<string[]> {
  const killed: string[] = [];
  for (let round = 1; round <= rounds; round++) {
    await until(`${what} (round ${round})`, ready, 60_000);
    if (!(await during())) break;
    killed.push(...(await terminateSafeshiftConnections()));
    // The worker gets a moment to hit the dead connections; then it must still be there.
    await sleep(1500);
    assertDevStackAlive(`terminating safeshift's connections ${what} (round ${round})`);
  }
  return killed;
}

test('terminating every safeshift connection during copy, catch-up and cutover: the worker and safeshift dev keep running, the migration completes with the writer\'s rows', async () => {
  assertDevStackAlive('global setup');
  const src = uniqueName('disconnects');
  const planName = src.replace(/_/g, '-');
  const rows = 24_000;
  await sql(`CREATE TABLE public.${src} (id bigint PRIMARY KEY, v int NOT NULL, note text)`);
  await sql(`INSERT INTO public.${src} SELECT g, g, 'seed ' || g FROM generate_series(1, ${rows}) g`);
  const known = new Map<number, Row>();
  for (let g = 1; g <= rows; g++) known.set(g, { v: g, note: `seed ${g}` });
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY, v int NOT NULL, note text)`,
    // About 8 s of copy in 500-row chunks on two lanes: there is a copy to interrupt, again and again.
    copy: { chunkRows: 500, chunkTime: '0s', parallel: 2, maxRowsPerSecond: 3000 },
    // The test holds the cutover in lock waits: enough attempts that only the disconnects fail a swap.
    cutover: { lockTimeoutMs: 3000, attempts: 50 },
  }));

  let stopping = false;
  const writing = writer(src, known, () => stopping);
  writing.catch(() => undefined); // awaited at the end; a failure before that must not surface as unhandled
  const locker = new pg.Client({ connectionString: process.env.DATABASE_URL });
  locker.on('error', () => undefined);
  await locker.connect();
  try {
    expect(await runCli(['start', plan])).toMatchObject({ code: 0 });
    await waitFor(planName, atPhase('copy'), 60_000);
    const copying = () => phaseIs(planName, ['copy']);

    const duringCopy = await disconnectRepeatedly('during copy', 3,
      async () => !(await copying()) || (await hasBackend(`application_name = 'safeshift copy (control)'`)), copying);
    expect(duringCopy).toEqual(expect.arrayContaining(['safeshift copy (control)']));

    // Drain (catch_up) is short under this writer: hit it when it shows, then the follower at the gate for sure.
    const catchingUp = () => phaseIs(planName, ['catch_up']);
    const duringCatchUp = await disconnectRepeatedly('during catch-up', 1, async () => !(await copying()), catchingUp);
    const atGate = () => phaseIs(planName, ['awaiting_cutover']);
    const duringGate = await disconnectRepeatedly('at the cutover gate, while catch-up follows the writer', 2,
      async () => (await atGate()) && (await hasBackend('true')), atGate);
    expect(duringGate.length).toBeGreaterThan(0);

    // Held in the cutover: our share lock on the source makes every swap attempt wait for its exclusive lock,
    // and that waiting connection is the one cut off (twice), so the swap's transaction is always the one hit.
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE public.${src} IN ACCESS SHARE MODE`);
    expect(await runCli(['approve', planName, '--as', 'alice'])).toMatchObject({ code: 0 });
    const inCutover = () => phaseIs(planName, ['cutover']);
    const duringCutover = await disconnectRepeatedly('during cutover', 2,
      async () => (await inCutover()) && (await hasBackend(`wait_event_type = 'Lock'`)), inCutover);
    expect(duringCutover.length).toBeGreaterThan(0);
    await locker.query('COMMIT');

    await waitFor(planName, atPhase('awaiting_drop'), 120_000);
    assertDevStackAlive('the cutover');
    await sleep(500); // the writer goes on, now on the new table
    expect(await runCli(['approve', planName, '--as', 'alice'])).toMatchObject({ code: 0 });
    await waitFor(planName, atPhase('done'), 60_000);
    const retried = await retriedActivities(planName);
    process.stdout.write(`disconnects: terminated during copy ${duringCopy.join(', ')}; during catch-up ${duringCatchUp.join(', ') || '(none)'}; ` +
      `at the gate ${duringGate.join(', ')}; during cutover ${duringCutover.join(', ')}; retried activities: ${retried.join(', ')}\n`);
    expect(retried).toEqual(expect.arrayContaining(['copySlice', 'swapTables']));
  } finally {
    stopping = true;
    await locker.end().catch(() => undefined);
  }
  expect(await writing).toBeGreaterThan(100);

  const live = await sql<{ key: string; v: number; note: string }>(`SELECT id::text AS key, v, note FROM public.${src} ORDER BY id`);
  const expected = [...known.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => ({ key: String(id), v: r.v, note: r.note }));
  expect(live.length).toBe(expected.length);
  expect(live).toEqual(expected);

  // The same worker takes the next migration: it is polling, not just a process that is still there.
  const next = uniqueName('after_disconnects');
  await sql(`CREATE TABLE public.${next} (id int PRIMARY KEY, v int)`);
  await sql(`INSERT INTO public.${next} SELECT g, g FROM generate_series(1, 100) g`);
  const nextPlan = writePlan(basePlan(next, `public.${next}`, `public.${next}_v2`));
  expect(await runCli(['start', nextPlan, '--auto-approve'])).toMatchObject({ code: 0 });
  expect((await statusOf(next.replace(/_/g, '-'))).phase).toBe('done');
  assertDevStackAlive('the whole test');
}, 300_000);
