/**
 * The cutover's lock, retried: a long reader holds the table so the first attempts time out, a writer writes
 * during the backoff, and every attempt drains what was written meanwhile outside the lock before it locks. The
 * swap's audit row says how long the lock was held and where the time went (issue 15).
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrationWorkflowId } from '../../src/messages';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

const SEED = 2000;

/** Ten rows an INSERT, about every 10 ms, until stopped; returns how many rows it inserted. */
async function writer(table: string, stop: () => boolean): Promise<number> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: 'cutover-lock writer' });
  await client.connect();
  let next = SEED + 1;
  try {
    while (!stop()) {
      await client.query(`INSERT INTO public.${table} (id, v) SELECT g, g FROM generate_series($1::int, $1::int + 9) g`, [next]);
      next += 10;
      await sleep(10);
    }
  } finally {
    await client.end();
  }
  return next - SEED - 1;
}

/** Someone is queued for an ACCESS EXCLUSIVE lock on the table: a cutover attempt is waiting. */
async function cutoverWaiting(table: string): Promise<boolean> {
  const [r] = await sql<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_locks WHERE relation = $1::regclass AND mode = 'AccessExclusiveLock' AND NOT granted`, [`public.${table}`]);
  return r!.n > 0;
}

test('a cutover retried behind a long reader replays what was written during the backoff outside the lock; the lock time is broken down', async () => {
  const t = uniqueName('lockwait');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, v int NOT NULL)`);
  await sql(`INSERT INTO public.${t} SELECT g, g FROM generate_series(1, ${SEED}) g`);
  const planName = t.replace(/_/g, '-');
  // Short lock waits, many attempts: the reader below outlasts several of them.
  const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id bigint PRIMARY KEY, v int NOT NULL, w int)`,
    cutover: { lockTimeoutMs: 200, attempts: 30 },
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'), 90_000);

  let stopping = false;
  const writing = writer(t, () => stopping);
  const reader = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: 'cutover-lock reader' });
  await reader.connect();
  try {
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM public.${t}`);
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    // Hold the table until the cutover has been turned away at least once and has backed off for a while.
    const deadline = Date.now() + 60_000;
    while (!(await cutoverWaiting(t)) && Date.now() < deadline) await sleep(20);
    // Changed after the cutover read what is bound to the table (ahead of the lock), before it gets the lock:
    // the comment must still reach the new table (the read ahead is confirmed under the lock, or read again).
    await sql(`COMMENT ON TABLE public.${t} IS 'said during the retries'`);
    await sleep(2000);
  } finally {
    await reader.query('COMMIT').catch(() => undefined);
    await reader.end();
  }
  await waitFor(planName, atPhase('awaiting_drop'), 60_000);
  stopping = true;
  const inserted = await writing;

  const [row] = await sql<{ details: { attempts: number; message: string; lockHeldMs: number; lockWaitMs: number; lockSteps: { step: string; ms: number; statements: number }[] } }>(
    `SELECT details FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'cutover:swapped'`, [migrationWorkflowId(planName)]);
  const swapped = row!.details;
  expect(swapped.attempts).toBeGreaterThan(1);
  // The writer kept writing through the retries: hundreds of changes to replay, of which the lock saw a handful.
  expect(inserted).toBeGreaterThan(300);
  const underLock = Number(/(\d+) captured changes replayed under the lock/.exec(swapped.message)?.[1]);
  expect(underLock).toBeLessThanOrEqual(50);
  // Where the lock time went: the lock wait first, the replay among the steps, the commit last.
  const steps = swapped.lockSteps.map((s) => s.step);
  expect(steps[0]).toBe('lock');
  expect(steps).toContain('replay');
  expect(steps[steps.length - 1]).toBe('commit');
  expect(swapped.lockHeldMs).toBeGreaterThanOrEqual(0);
  expect(swapped.lockHeldMs).toBeLessThan(5000);

  const [comment] = await sql<{ c: string | null }>(`SELECT obj_description($1::regclass, 'pg_class') AS c`, [`public.${t}`]);
  expect(comment!.c).toBe('said during the retries');
  // Nothing the writer wrote was lost on the way.
  const [count] = await sql<{ n: number }>(`SELECT count(*)::int AS n FROM public.${t}`);
  expect(count!.n).toBe(SEED + inserted);
}, 120_000);
