/**
 * Access is preserved: a role that may read only some columns of the old table reads the same data after cutover
 * (the column it was granted may have a new name in the new table), and again after rollback. Through a compatibility
 * view PostgreSQL cannot serve such a role (see src/bound/compat-view.ts): that plan is refused, naming the role.
 */
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

/** How many rows `role` reads with `select`, or the error it gets (see ensureReadAs). */
async function readAs(role: string, select: string): Promise<string> {
  const [r] = await sql<{ out: string }>(`SELECT public.safeshift_test_read_as($1, $2) AS out`, [role, select]);
  return r!.out;
}

async function ensureReadAs(): Promise<void> {
  // Runs `select` as `role` inside a function (SET LOCAL ROLE), returning the row count or the error message.
  await sql(`CREATE OR REPLACE FUNCTION public.safeshift_test_read_as(role text, q text) RETURNS text LANGUAGE plpgsql AS $$
    DECLARE n bigint;
    BEGIN
      EXECUTE format('SET LOCAL ROLE %I', role);
      EXECUTE format('SELECT count(*) FROM (%s) q', q) INTO n;
      RESET ROLE;
      RETURN n::text;
    EXCEPTION WHEN OTHERS THEN
      RETURN SQLERRM;
    END $$`);
}

async function migrateWithColumnGrant(): Promise<void> {
  await ensureReadAs();
  const t = uniqueName('people');
  const role = `${t}_reporter`;
  await sql(`CREATE ROLE ${role} NOLOGIN`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, full_name text NOT NULL, salary int)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'n' || g, g * 10 FROM generate_series(1, 50) g`);
  await sql(`GRANT SELECT (id, full_name) ON public.${t} TO ${role}`);
  const select = `SELECT id, full_name FROM public.${t}`;
  expect(await readAs(role, select)).toBe('50');
  expect(await readAs(role, `SELECT salary FROM public.${t}`)).toMatch(/permission denied/);

  const planName = t.replace(/_/g, '-');
  const target = `public.${t}_v2`;
  const plan = writePlan(basePlan(t, `public.${t}`, target, {
    create: `CREATE TABLE ${target} (id int PRIMARY KEY, display_name text NOT NULL, salary int)`,
    columns: { display_name: 'full_name' },
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  const atDrop = await waitFor(planName, atPhase('awaiting_drop'));
  expect(atDrop.warnings.join('\n')).not.toMatch(/has no column full_name/);

  expect(await readAs(role, `SELECT id, display_name FROM public.${t}`)).toBe('50');
  expect(await readAs(role, `SELECT salary FROM public.${t}`)).toMatch(/permission denied/);
  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
  expect(await readAs(role, select)).toBe('50');
  expect(await readAs(role, `SELECT salary FROM public.${t}`)).toMatch(/permission denied/);
}

test('a column-grant-only role reads the renamed column after cutover, and the old one after rollback', async () => {
  await migrateWithColumnGrant();
});

// Without row-level security the compatibility view reads with its owner's rights and these roles keep their
// access (access-matrix.test.ts); with it, the view must be security_invoker, which would lock them out.
test('on a table with row-level security, a compatibility view that a column-grant-only role could not read through is refused at preflight, naming the role', async () => {
  await ensureReadAs();
  const t = uniqueName('people');
  const role = `${t}_reporter`;
  await sql(`CREATE ROLE ${role} NOLOGIN`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, full_name text NOT NULL, salary int)`);
  await sql(`ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY everyone ON public.${t} FOR SELECT USING (true)`);
  await sql(`GRANT SELECT (id, full_name) ON public.${t} TO ${role}`);
  // The compatibility view is found out by the cutover rehearsal, which runs at start (validate takes no locks).
  const r = await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, display_name text NOT NULL, salary int)`,
    columns: { display_name: 'full_name' },
    reverse: { full_name: 'display_name' },
    cutover: { compatView: true },
  }))]);
  expect(r.code).toBe(2);
  expect(r.stdout + r.stderr).toMatch(new RegExp(`role ${role} has SELECT on only some columns of public\\.${t} \\(id, full_name\\)`));
  expect(r.stdout + r.stderr).toMatch(/or use compatView: false/);
});

test('on a table with row-level security, a role reading only through a view over the table keeps reading it through the compatibility view (the view reads a twin with its owner\'s rights)', async () => {
  const t = uniqueName('people');
  const role = `${t}_viewer`;
  await sql(`CREATE ROLE ${role} NOLOGIN`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, full_name text NOT NULL, salary int)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'person ' || g, g FROM generate_series(1, 40) g`);
  await sql(`ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY everyone ON public.${t} FOR SELECT USING (true)`);
  await sql(`CREATE VIEW public.${t}_names AS SELECT id, full_name FROM public.${t}`);
  await sql(`GRANT SELECT ON public.${t}_names TO ${role}`);
  await ensureReadAs();
  expect(await readAs(role, `SELECT * FROM public.${t}_names`)).toBe('40');
  const r = await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { cutover: { compatView: true } })), '--auto-approve']);
  expect(r).toMatchObject({ code: 0, stderr: '' });
  expect(await readAs(role, `SELECT * FROM public.${t}_names`)).toBe('40');
  expect(await readAs(role, `SELECT * FROM public.${t}`)).toMatch(/permission denied/);
});
