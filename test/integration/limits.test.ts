/**
 * The tool protects the database from itself (issue 13, findings 8 and 9): `plan validate` never takes a lock an
 * application read would queue behind; the locking cutover rehearsal runs at `start` with a short lock_timeout
 * and says "busy" instead of waiting; sessions carry a statement and an idle-in-transaction timeout; the throttle
 * query cannot write; unknown replication lag is refused, not ignored.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { basePlan, runCli, sql, uniqueName, writePlan } from '../support/helpers';
import { seedProfiles } from '../support/seed';

async function client(applicationName: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: applicationName });
  await c.connect();
  return c;
}

/**
 * Read `table` again and again while `running` is pending; each read has 3 s before it gives up. Meanwhile note
 * every lock a safeshift CLI session holds or waits for on `table`. Returns the slowest read and those locks.
 */
async function readWhile(running: Promise<unknown>, table: string): Promise<{ slowestMs: number; failed: string[]; modes: string[] }> {
  const reader = await client('limits test reader');
  const watcher = await client('limits test watcher');
  let done = false;
  void running.finally(() => { done = true; });
  const out = { slowestMs: 0, failed: [] as string[], modes: new Set<string>() };
  try {
    await reader.query(`SET statement_timeout = '3s'`);
    while (!done) {
      const { rows } = await watcher.query<{ mode: string; granted: boolean }>(
        `SELECT l.mode, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE a.application_name LIKE 'safeshift plan%' AND l.locktype = 'relation' AND l.relation = $1::regclass`, [table]);
      for (const r of rows) out.modes.add(`${r.mode}${r.granted ? '' : ' (waiting)'}`);
      const t0 = Date.now();
      await reader.query(`SELECT count(*) FROM ${table}`).catch((err: Error) => { out.failed.push(err.message); });
      out.slowestMs = Math.max(out.slowestMs, Date.now() - t0);
      await sleep(50);
    }
  } finally {
    await Promise.all([reader.end(), watcher.end()]);
  }
  return { slowestMs: out.slowestMs, failed: out.failed, modes: [...out.modes].sort() };
}

describe('behind a long transaction on the source', () => {
  let t: string;
  let holder: pg.Client;
  beforeAll(async () => {
    t = uniqueName('busy');
    await seedProfiles(t, 50);
    // An application transaction that wrote and has not committed: it holds ROW EXCLUSIVE on the table.
    holder = await client('limits test holder');
    await holder.query('BEGIN');
    await holder.query(`INSERT INTO public.${t} (id, full_name) VALUES (1000000, 'uncommitted')`);
  });
  afterAll(async () => {
    await holder.query('ROLLBACK').catch(() => undefined);
    await holder.end();
  });

  test('plan validate takes no lock stronger than ACCESS SHARE: a concurrent reader is never queued behind it, and validate finishes', async () => {
    // A lock timeout as long as the plan allows would keep an ACCESS EXCLUSIVE request queued for 20 s.
    const file = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { cutover: { lockTimeoutMs: 20_000 } }));
    const started = Date.now();
    const validate = runCli(['plan', 'validate', file]);
    const reads = await readWhile(validate, `public.${t}`);
    const r = await validate;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/note: the cutover rehearsal .* runs at start/);
    expect(reads.failed).toEqual([]);
    expect(reads.slowestMs).toBeLessThan(1000);
    expect(reads.modes.filter((m) => m !== 'AccessShareLock')).toEqual([]);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  test('start rehearses the cutover with a short lock_timeout and says the table is busy instead of waiting', async () => {
    const file = writePlan(basePlan(`${t}_start`, `public.${t}`, `public.${t}_v2`, { cutover: { lockTimeoutMs: 20_000 } }));
    const started = Date.now();
    const r = await runCli(['start', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`cutover: public\\.${t} is busy`));
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await runCli(['status', `${t}_start`.replace(/_/g, '-')])).code).toBe(2);
  });
});
