/**
 * The tool protects the database from itself (issue 13, findings 8 and 9): `plan validate` never takes a lock an
 * application read would queue behind; the locking cutover rehearsal runs at `start` with a short lock_timeout
 * and says "busy" instead of waiting; sessions carry a statement and an idle-in-transaction timeout; the throttle
 * query cannot write; unknown replication lag is refused, not ignored.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { BULK_LIMITS, connect } from '../../src/db';
import { throttleReason } from '../../src/throttle';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
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
    // A lock timeout as long as the plan says would keep an ACCESS EXCLUSIVE request queued for 60 s; validate must
    // finish well before that even on a loaded machine (the CLI's own start takes seconds there).
    const file = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { cutover: { lockTimeoutMs: 60_000 } }));
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
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  test('start rehearses the cutover with a short lock_timeout and says the table is busy instead of waiting', async () => {
    // The plan would wait 60 s for the lock; the rehearsal's attempts are short (3 of at most 1 s).
    const file = writePlan(basePlan(`${t}_start`, `public.${t}`, `public.${t}_v2`, { cutover: { lockTimeoutMs: 60_000 } }));
    const started = Date.now();
    const r = await runCli(['start', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`cutover: public\\.${t} is busy`));
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

test('every safeshift session has a statement timeout and an idle-in-transaction limit; bulk sessions only the idle limit', async () => {
  const show = async (c: pg.Client) => (await c.query<{ s: string; i: string }>(
    `SELECT current_setting('statement_timeout') AS s, current_setting('idle_in_transaction_session_timeout') AS i`)).rows[0];
  const plain = await connect(process.env.DATABASE_URL!, 'limits test');
  const bulk = await connect(process.env.DATABASE_URL!, 'limits test (bulk)', BULK_LIMITS);
  try {
    expect(await show(plain)).toEqual({ s: '2min', i: '1min' });
    expect(await show(bulk)).toEqual({ s: '0', i: '1min' });
  } finally {
    await Promise.all([plain.end(), bulk.end()]);
  }
});

describe('the throttle query only reads', () => {
  let t: string;
  beforeAll(async () => {
    t = uniqueName('throttled');
    await seedProfiles(t, 300);
    // Deletes rows, but only when the copy's control connection calls it: preflight's own run cannot see it.
    await sql(`CREATE FUNCTION public.${t}_sneaky() RETURNS int LANGUAGE plpgsql AS $$
      BEGIN
        IF current_setting('application_name') = 'safeshift copy (control)' THEN DELETE FROM public.${t} WHERE id % 2 = 0; END IF;
        RETURN 0;
      END $$`);
    await sql(`CREATE FUNCTION public.${t}_purge() RETURNS int LANGUAGE sql AS $$ DELETE FROM public.${t} WHERE id > 250 RETURNING 0 $$`);
  });
  const count = async () => (await sql<{ n: number }>(`SELECT count(*)::int AS n FROM public.${t}`))[0]!.n;

  // DML, a DML WITH, SELECT INTO, FOR UPDATE are refused by the parser alone (test/unit/limits.test.ts).
  test('a SELECT of a function that deletes is refused by plan validate, naming the field; no row is touched', async () => {
    const r = await runCli(['plan', 'validate', writePlan(basePlan(`${t}_v`, `public.${t}`, `public.${t}_v2`, { copy: { throttleQuery: `SELECT public.${t}_purge()` } }))]);
    expect(r.stderr).toMatch(/copy\.throttleQuery: fails when run \(read-only, 5000 ms at most\): cannot execute DELETE in a read-only transaction/);
    expect(r.code).toBe(2);
    expect(await count()).toBe(300);
  });

  test('a throttle query that runs too long is cut at its statement timeout', async () => {
    const c = await connect(process.env.DATABASE_URL!, 'limits test', BULK_LIMITS);
    try {
      const started = Date.now();
      expect(await throttleReason(c, { maxReplicationLagMs: 0, throttleQuery: 'SELECT pg_sleep(30) IS NULL' })).toMatch(/took longer than 5000 ms/);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await c.end();
    }
  });

  test('while copying it runs read-only: a write it attempts holds the copy instead of deleting rows; after a rollback the backup table is dropped when its retention has passed', async () => {
    const name = `${t}_run`.replace(/_/g, '-');
    const plan = basePlan(name, `public.${t}`, `public.${t}_v2`, {
      copy: { throttleQuery: `SELECT public.${t}_sneaky() > 0`, chunkRows: 100 },
      backup: { retention: '1s' },
    });
    const started = await runCli(['start', writePlan(plan)]);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await waitFor(name, atPhase('copy'));
    await sleep(3000);
    expect(await count()).toBe(300);
    expect((await runCli(['abort', name, '--as', 'carol', '--reason', 'test over'])).code).toBe(0);
    const end = await waitFor(name, (s) => s.phase === 'rolled_back');
    expect(end.throttle?.reason).toMatch(/the throttle query fails \(SQLSTATE 25006\); holding until it answers/);
    expect(await count()).toBe(300);
    // backup.retention: 1s, counted from the end of the migration; the drop is recorded in the ledger and the audit log.
    const backup = end.backupTable!;
    const deadline = Date.now() + 30_000;
    while ((await sql(`SELECT to_regclass($1) AS r`, [backup]))[0]!.r !== null && Date.now() < deadline) await sleep(250);
    expect((await sql(`SELECT to_regclass($1) AS r`, [backup]))[0]!.r).toBeNull();
    const [row] = await sql<{ dropped: boolean; kept: boolean }>(
      `SELECT dropped_at IS NOT NULL AS dropped, keep_until <= dropped_at AS kept FROM safeshift.backups WHERE backup_table = $1`, [backup]);
    expect(row).toEqual({ dropped: true, kept: true });
    expect(await sql(`SELECT action FROM safeshift.audit_log WHERE action = 'backup:dropped' AND details->>'table' = $1`, [backup])).toEqual([{ action: 'backup:dropped' }]);
  });
});

describe('a role that is not a superuser', () => {
  let t: string;
  let url: string;
  beforeAll(async () => {
    t = uniqueName('limited');
    await seedProfiles(t, 20);
    await sql(`CREATE ROLE ${t} LOGIN PASSWORD 'limits-test' CONNECTION LIMIT 4`);
    await sql(`ALTER TABLE public.${t} OWNER TO ${t}`);
    await sql(`GRANT CREATE ON SCHEMA public TO ${t}`);
    const u = new URL(process.env.DATABASE_URL!);
    u.username = t;
    u.password = 'limits-test';
    url = u.toString();
  });
  afterAll(async () => {
    await sql(`REVOKE CREATE ON SCHEMA public FROM ${t}`);
    await sql(`ALTER TABLE public.${t} OWNER TO CURRENT_USER`);
  });
  const validate = (extra: Record<string, unknown>) =>
    runCli(['plan', 'validate', writePlan({ ...basePlan(`${t}-v`, `public.${t}`, `public.${t}_v2`, extra), database: 'LIMITS_TEST_URL' })], { LIMITS_TEST_URL: url });

  test('a lag limit it cannot measure, and lanes beyond its CONNECTION LIMIT, are refused at preflight; unknown lag holds the work at run time', async () => {
    // Validate holds one of the role's 4 connections: 3 are left, a lane needs 2 and the copy 1 more.
    const r = await validate({ copy: { parallel: 2 } });
    expect(r.stderr).toMatch(/copy\.maxReplicationLag: the connecting role cannot read standbys' lag .*pg_read_all_stats.*copy\.maxReplicationLag: 0s/);
    expect(r.stderr).toMatch(/copy\.parallel: 2 lanes need 5 connections; 3 are available/);
    expect(r.code).toBe(2);
    const one = await validate({ copy: { parallel: 1, maxReplicationLag: '0s' } });
    expect(one.stderr).toBe('');
    expect(one.code).toBe(0);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      expect(await throttleReason(c, { maxReplicationLagMs: 30_000 })).toMatch(/replication lag cannot be read/);
      await sql(`GRANT pg_read_all_stats TO ${t}`);
      expect(await throttleReason(c, { maxReplicationLagMs: 30_000 })).toBeUndefined();
    } finally {
      await sql(`REVOKE pg_read_all_stats FROM ${t}`);
      await c.end();
    }
  });

});
