/**
 * One table migrated end to end on the real stack (embedded PostgreSQL, Temporal dev server, worker), driven
 * through the CLI as an operator would.
 */
import { connectClient } from '../../src/config';
import { abort, migrationWorkflowId, pause, resume } from '../../src/messages';
import { loadPlan } from '../../src/plan/load';
import { atPhase, basePlan, fingerprint, relationOid, runCli, signedAs, slowOnCopy, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';
import { PROFILES_V2_SELECT, PROFILES_V2_TARGET_SELECT, profilesV2, seedProfiles } from '../support/seed';

describe('migrationWorkflow on a real database and Temporal server', () => {
  test('happy path: reaches done, the live table holds exactly the mapped source rows, the old table is dropped', async () => {
    const src = uniqueName('profiles');
    const dst = `${src}_v2`;
    await seedProfiles(src, 12_345);
    const expected = await fingerprint(PROFILES_V2_SELECT(src), 'id');
    const plan = writePlan(basePlan(src, `public.${src}`, `public.${dst}`, { ...profilesV2(dst), copy: { chunkRows: 1000, chunkTime: '0s' } }));
    const planName = src.replace(/_/g, '-');

    const started = await runCli(['start', plan, '--auto-approve', '--json']);
    expect(started).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(started.stdout)).toMatchObject({ phase: 'done' }); // --json: stdout is one JSON document

    // The live name now has the new shape and exactly the mapped rows, by our own SQL.
    const live = await fingerprint(PROFILES_V2_TARGET_SELECT(src), 'id');
    expect(live).toEqual(expected);
    expect(live.rows).toBe(12_345);
    const [cols] = await sql<{ cols: string[] }>(
      `SELECT array_agg(attname::text ORDER BY attnum) AS cols FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0`, [`public.${src}`]);
    expect(cols!.cols).toContain('display_name');
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [dst])).toHaveLength(0);
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname LIKE $1`, [`${src}_retired_%`])).toHaveLength(0);

    // The verified backup is kept, with the original rows.
    const s = await statusOf(planName);
    expect(s.phase).toBe('done');
    const backup = await fingerprint(`SELECT * FROM ${s.backupTable}`, 'id');
    expect(backup.rows).toBe(12_345);

    // status --json carries what dashboards need.
    const json = JSON.parse((await runCli(['status', planName, '--json'])).stdout);
    expect(json).toMatchObject({ phase: 'done', copy: { rowsCopied: 12_345, chunks: 13 }, validation: { ok: true, rangesChecked: 1 } }); // equal as a whole: no range-by-range pass
    expect(json.phaseDurationsMs).toHaveProperty('copy');
    expect(json.gates.map((g: { state: string }) => g.state)).toEqual(['approved', 'approved']);
    expect(json.uiUrl).toMatch(/^http:\/\/localhost:\d+\/namespaces\/default\/workflows\/migration-/);

    // Every phase left an audit row, and the hash chain holds.
    const audit = await sql<{ action: string }>(`SELECT action FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [`migration-${planName}`]);
    const actions = audit.map((a) => a.action);
    for (const phase of ['preflight', 'backup', 'prepare', 'copy', 'validate', 'awaiting_cutover', 'cutover', 'verify', 'awaiting_drop', 'drop', 'done']) {
      expect(actions).toContain(`phase:${phase}`);
    }
    expect(actions).toContain('approve:cutover');
    const broken = await sql(`
      SELECT seq FROM (SELECT seq, prev_hash, lag(hash) OVER (ORDER BY seq) AS lag_hash, lag(seq) OVER (ORDER BY seq) AS lag_seq
                         FROM safeshift.audit_log) x
       WHERE lag_seq IS NOT NULL AND (prev_hash IS DISTINCT FROM lag_hash OR seq <> lag_seq + 1)`);
    expect(broken).toHaveLength(0);
    await expect(sql(`DELETE FROM safeshift.audit_log`)).rejects.toThrow(/append-only/);
    await expect(sql(`UPDATE safeshift.audit_log SET actor = 'x'`)).rejects.toThrow(/append-only/);
  });

  test('reject at cutover leaves the source byte-for-byte as before, removes the target, keeps the backup', async () => {
    const src = uniqueName('profiles');
    const dst = `${src}_v2`;
    await seedProfiles(src, 3000);
    const before = await fingerprint(`SELECT * FROM public.${src}`, 'id');
    const oidBefore = await relationOid(`public.${src}`);
    const planName = src.replace(/_/g, '-');
    const plan = writePlan(basePlan(src, `public.${src}`, `public.${dst}`, profilesV2(dst)));

    expect((await runCli(['start', plan])).code).toBe(0);
    const atGate = await waitFor(planName, atPhase('awaiting_cutover'));
    expect(atGate.validation?.ok).toBe(true);
    const rejected = await runCli(['reject', planName, '--as', 'bob', '--reason', 'not during the sale']);
    expect(rejected.code).toBe(0);

    const end = await waitFor(planName, atPhase('rolled_back'));
    expect(end.outcome?.reason).toMatch(/bob rejected the cutover gate: not during the sale/);
    expect(end.compensations).toEqual([{ name: 'removeChangeCapture', state: 'done' }, { name: 'dropTarget', state: 'done' }]);
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [`public.${src}`])).toEqual([]);
    expect(await fingerprint(`SELECT * FROM public.${src}`, 'id')).toEqual(before);
    const oidAfter = await relationOid(`public.${src}`);
    expect(oidAfter).toEqual(oidBefore);
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [dst])).toHaveLength(0);
    expect((await fingerprint(`SELECT * FROM ${end.backupTable}`, 'id')).md5).toBe(before.md5);
    const [row] = await sql<{ phase: string; reason: string }>(`SELECT phase, reason FROM safeshift.migrations WHERE workflow_id = $1`, [`migration-${planName}`]);
    expect(row).toMatchObject({ phase: 'rolled_back' });
    expect((await runCli(['status', planName])).code).toBe(1);
  });

  test('approvals: the requester, a non-approver and a second vote are refused with clear errors', async () => {
    const src = uniqueName('profiles');
    await seedProfiles(src, 500);
    const planName = src.replace(/_/g, '-');
    const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
      approvals: { cutover: { approvers: ['alice', 'bob', 'carol'], required: 2 }, drop: { approvers: ['alice'] } },
    }));
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'));

    const self = await runCli(['approve', planName, '--as', 'carol']);
    expect(self.code).toBe(2);
    expect(self.stderr).toMatch(/SelfApproval.*carol requested this migration/);
    const stranger = await runCli(['approve', planName, '--as', 'mallory']);
    expect(stranger.code).toBe(2);
    expect(stranger.stderr).toMatch(/NotAnApprover.*mallory is not an approver/);
    const wrongGate = await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop']);
    expect(wrongGate.code).toBe(2);
    expect(wrongGate.stderr).toMatch(/GateNotOpen/);
    const wrongPlan = await runCli(['approve', planName, '--as', 'alice', '--plan-hash', 'f'.repeat(64)]);
    expect(wrongPlan.stderr).toMatch(/PlanMismatch/);

    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    const twice = await runCli(['approve', planName, '--as', 'alice']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/AlreadyDecided/);
    // One valid approval of the two required: the gate is still open.
    const s = await statusOf(planName);
    expect(s.phase).toBe('awaiting_cutover');
    expect(s.gates[0]).toMatchObject({ state: 'open', decisions: [{ approver: 'alice', approved: true }] });

    expect((await runCli(['abort', planName, '--as', 'carol', '--reason', 'test over'])).code).toBe(0);
    const end = await waitFor(planName, atPhase('rolled_back'));
    expect(end.outcome?.reason).toMatch(/aborted/);
    const refusedAudit = await sql(`SELECT 1 FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'approve:cutover'`, [`migration-${planName}`]);
    expect(refusedAudit).toHaveLength(1);
  });

  test('writes to the source while the cutover gate waits are carried into the new table', async () => {
    const src = uniqueName('profiles');
    await seedProfiles(src, 800);
    const planName = src.replace(/_/g, '-');
    const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`));
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'));
    const sourceOid = await relationOid(`public.${src}`);
    await sql(`UPDATE public.${src} SET full_name = 'changed while waiting' WHERE id = 42`);
    await sql(`DELETE FROM public.${src} WHERE id = 43`);
    await sql(`UPDATE public.${src} SET id = 5000 WHERE id = 44`);
    await sql(`INSERT INTO public.${src} (id, full_name) VALUES (6000, 'new while waiting')`);
    const before = await fingerprint(`SELECT * FROM public.${src}`, 'id');

    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    const s = await waitFor(planName, atPhase('awaiting_drop'));
    expect(s.retiredTable).toBeDefined();
    expect(await fingerprint(`SELECT * FROM public.${src}`, 'id')).toEqual(before);
    // Capture is gone from the retired table; only the write guard is there until the drop (src/write-guard.ts).
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [s.retiredTable])).toEqual([{ tgname: 'safeshift_write_guard' }]);
    expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
    await waitFor(planName, atPhase('done'));
    expect(await fingerprint(`SELECT * FROM public.${src}`, 'id')).toEqual(before);
    // Nothing of the capture is left behind.
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [`public.${src}`])).toEqual([]);
    const live = await relationOid(`public.${src}`);
    expect(await sql(`SELECT to_regclass($1) AS t, to_regclass($2) AS u`, [`safeshift.changes_${sourceOid}`, `safeshift.changes_${live}`]))
      .toEqual([{ t: null, u: null }]);
  });
});

describe('after cutover', () => {
  test('reject at the drop gate swaps back: the original table is live again, unchanged, and the new one is gone', async () => {
    const src = uniqueName('profiles');
    const dst = `${src}_v2`;
    await seedProfiles(src, 2000);
    const before = await fingerprint(`SELECT * FROM public.${src}`, 'id');
    const oidBefore = await relationOid(`public.${src}`);
    const planName = src.replace(/_/g, '-');
    expect((await runCli(['start', writePlan(basePlan(src, `public.${src}`, `public.${dst}`, profilesV2(dst)))])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'));
    expect((await runCli(['approve', planName, '--as', 'bob', '--gate', 'cutover'])).code).toBe(0);
    const atDrop = await waitFor(planName, atPhase('awaiting_drop'));
    // Cut over: the live name is the new shape now.
    const live = await relationOid(`public.${src}`);
    expect(live).not.toBe(oidBefore);
    expect(atDrop.retiredTable).toMatch(new RegExp(`^public\\.${src}_retired_\\d{14}$`));

    expect((await runCli(['reject', planName, '--as', 'alice', '--reason', 'app errors after cutover'])).code).toBe(0);
    const end = await waitFor(planName, atPhase('rolled_back'));
    expect(end.compensations).toEqual([{ name: 'swapBack', state: 'done' }, { name: 'removeChangeCapture', state: 'done' }, { name: 'dropTarget', state: 'done' }]);
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [`public.${src}`])).toEqual([]);
    const oidAfter = await relationOid(`public.${src}`);
    expect(oidAfter).toEqual(oidBefore);
    expect(await fingerprint(`SELECT * FROM public.${src}`, 'id')).toEqual(before);
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname IN ($1, $2)`, [dst, end.retiredTable!.split('.')[1]])).toHaveLength(0);
  });

  test('safeshift rollback after cutover carries inserts, updates and deletes made since back to the original table', async () => {
    const src = uniqueName('profiles');
    const dst = `${src}_v2`;
    await seedProfiles(src, 1000);
    const planName = src.replace(/_/g, '-');
    expect((await runCli(['start', writePlan(basePlan(src, `public.${src}`, `public.${dst}`, profilesV2(dst)))])).code).toBe(0);
    const atGate = await waitFor(planName, atPhase('awaiting_cutover'));
    // The mapping's lower(email) cannot be run backwards: approvers are told before they say go.
    expect(atGate.warnings.join('\n')).toMatch(/rollback after cutover: source columns email cannot be derived/);
    expect((await runCli(['rollback', planName, '--as', 'carol'])).stderr).toMatch(/NotReversible/);
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    const atDrop = await waitFor(planName, atPhase('awaiting_drop'));
    const before = await fingerprint(`SELECT * FROM ${atDrop.retiredTable} WHERE id NOT IN (6, 7)`, 'id');
    await sql(`INSERT INTO public.${src} (id, display_name, created_at) VALUES (1000001, 'written after cutover', '2025-01-01Z')`);
    await sql(`UPDATE public.${src} SET display_name = 'renamed after cutover', bio = NULL WHERE id = 7`);
    await sql(`DELETE FROM public.${src} WHERE id = 6`);

    const rolled = await runCli(['rollback', planName, '--as', 'carol', '--reason', 'app errors']);
    expect(rolled.code).toBe(0);
    // Nothing on stderr but the plan hash the rollback was signed for (the CLI asked the workflow for it).
    expect(rolled.stderr).toMatch(/^deciding on plan sha256:[0-9a-f]{64} \(safeshift show \S+ --plan\)\n$/);
    const end = await waitFor(planName, atPhase('rolled_back'));
    expect(end.compensations[0]).toEqual({ name: 'swapBack', state: 'done' });
    // The original table is live again, with every write made after cutover, by our own SQL.
    expect(await fingerprint(`SELECT * FROM public.${src} WHERE id NOT IN (6, 7, 1000001)`, 'id')).toEqual(before);
    expect(await sql(`SELECT full_name, email, created_at FROM public.${src} WHERE id = 1000001`))
      .toEqual([{ full_name: 'written after cutover', email: null, created_at: new Date('2025-01-01Z') }]);
    expect(await sql(`SELECT full_name, email, bio FROM public.${src} WHERE id = 7`))
      .toEqual([{ full_name: 'renamed after cutover', email: 'User7@Example.ORG', bio: null }]); // email kept: not invertible
    expect(await sql(`SELECT 1 FROM public.${src} WHERE id = 6`)).toHaveLength(0);
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname IN ($1, $2)`, [dst, atDrop.retiredTable!.split('.')[1]])).toHaveLength(0);
    expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass`, [`public.${src}`])).toEqual([]);
  });
});

async function targetRows(table: string): Promise<number> {
  const [r] = await sql<{ n: string }>(`SELECT count(*)::text AS n FROM public.${table}`);
  return Number(r!.n);
}

test('pause stops the copy within a second, even mid-chunk; resume goes on', async () => {
  const src = uniqueName('profiles');
  await seedProfiles(src, 12_000);
  // Every chunk takes ~2 s (a target CHECK sleeps 1 ms per row on copy connections): a pause that holds within 1.2 s
  // cut one off. (Not a target trigger: those are inert while safeshift fills the table.)
  await slowOnCopy(`public.${src}_slow`);
  const { plan, hash } = loadPlan(writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (LIKE public.${src} INCLUDING ALL);
             ALTER TABLE public.${src}_v2 ADD CONSTRAINT slow CHECK (public.${src}_slow(full_name) IS NOT NULL)`,
    allowFunctions: [`public.${src}_slow`], // target DDL calls a function of the database only when the plan lists it
    copy: { chunkRows: 2000, chunkTime: '0s' },
  })));
  const client = await connectClient();
  try {
    const handle = await client.workflow.start('migrationWorkflow', {
      taskQueue: process.env.SAFESHIFT_TASK_QUEUE ?? 'safeshift',
      workflowId: migrationWorkflowId(plan.name),
      args: [{ plan, planHash: hash }],
    });
    while ((await targetRows(`${src}_v2`).catch(() => 0)) < 2000) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 300)); // well inside the next chunk
    await handle.signal(pause, await signedAs(handle, 'pause', 'carol'));
    await new Promise((r) => setTimeout(r, 1200));
    const held = await targetRows(`${src}_v2`);
    await new Promise((r) => setTimeout(r, 3000)); // longer than a chunk: one not cut off would have committed
    expect(await targetRows(`${src}_v2`)).toBe(held);
    expect(held % 2000).toBe(0); // whole chunks only: the cut-off one was rolled back
    expect(held).toBeLessThan(12_000);
    expect(await statusOf(plan.name)).toMatchObject({ phase: 'copy', paused: true });
    await handle.signal(resume, await signedAs(handle, 'resume', 'carol'));
    const s = await waitFor(plan.name, atPhase('awaiting_cutover'));
    expect(s.validation?.ok).toBe(true);
    expect(await targetRows(`${src}_v2`)).toBe(12_000);
    await handle.signal(abort, await signedAs(handle, 'abort', 'carol'));
    await waitFor(plan.name, atPhase('rolled_back'));
    const audit = await sql<{ action: string; actor: string }>(`SELECT action, actor FROM safeshift.audit_log WHERE workflow_id = $1 AND action IN ('pause', 'resume', 'abort') ORDER BY seq`, [handle.workflowId]);
    expect(audit).toEqual([{ action: 'pause', actor: 'carol' }, { action: 'resume', actor: 'carol' }, { action: 'abort', actor: 'carol' }]);
  } finally {
    await client.connection.close();
  }
});

test('the copy backs off while the plan\'s throttle query says so, and status says why', async () => {
  const src = uniqueName('profiles');
  await seedProfiles(src, 10_000);
  await sql(`CREATE TABLE public.${src}_hold (hold boolean NOT NULL)`);
  await sql(`INSERT INTO public.${src}_hold VALUES (false)`);
  const planName = src.replace(/_/g, '-');
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    copy: { chunkRows: 500, maxRowsPerSecond: 5000, throttleQuery: `SELECT hold FROM public.${src}_hold` },
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  while ((await targetRows(`${src}_v2`).catch(() => 0)) < 500) await new Promise((r) => setTimeout(r, 100));
  await sql(`UPDATE public.${src}_hold SET hold = true`);
  await new Promise((r) => setTimeout(r, 1500));
  const held = await targetRows(`${src}_v2`);
  await new Promise((r) => setTimeout(r, 2500));
  expect(await targetRows(`${src}_v2`)).toBe(held);
  await sql(`UPDATE public.${src}_hold SET hold = false`);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.throttle?.reason).toBe('the throttle query says so');
  expect(s.copy.throttledMs).toBeGreaterThanOrEqual(2000);
  expect((await runCli(['status', planName])).stdout).toMatch(/throttled: the throttle query says so/);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('plain secondary indexes are built after the copy (phase build), same definition and comment; unique ones stay throughout', async () => {
  const t = uniqueName('indexes');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, email text, code text)`);
  await sql(`INSERT INTO public.${t} SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'u' || g || '@example.org' END, 'c' || g FROM generate_series(1, 3000) g`);
  const planName = t.replace(/_/g, '-');
  const file = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, email text, code text);
             CREATE INDEX ${t}_v2_email ON public.${t}_v2 (lower(email)) WHERE email IS NOT NULL;
             COMMENT ON INDEX public.${t}_v2_email IS 'login lookups';
             CREATE UNIQUE INDEX ${t}_v2_code ON public.${t}_v2 (code)`,
  }));
  const indexes = `SELECT c.relname AS name, pg_get_indexdef(c.oid) AS definition, obj_description(c.oid, 'pg_class') AS comment
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'public.${t}_v2'::regclass ORDER BY 1`;
  // What the DDL makes, for comparison: run it in a transaction that is rolled back.
  const client = new (await import('pg')).default.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  let expected: unknown[];
  try {
    await client.query('BEGIN');
    await client.query(loadPlan(file).plan.createSql!);
    expected = (await client.query(indexes)).rows;
    await client.query('ROLLBACK');
  } finally {
    await client.end();
  }
  expect(expected).toHaveLength(3);

  expect((await runCli(['start', file])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(Object.keys(s.phaseDurationsMs)).toEqual(expect.arrayContaining(['copy', 'build', 'validate']));
  expect(await sql(indexes)).toEqual(expected);
  const deferred = await sql<{ name: string; built: boolean }>(
    `SELECT d.name, d.built_at IS NOT NULL AS built FROM safeshift.deferred_indexes d JOIN safeshift.migrations m USING (run_id) WHERE m.name = $1`, [planName]);
  expect(deferred).toEqual([{ name: `${t}_v2_email`, built: true }]);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});
