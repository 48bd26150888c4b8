/**
 * `cutover.compatView`: the new table keeps its own name (here in another schema, as in the multi-project
 * layout) and the old name becomes a `security_invoker` view with the old columns, the old grants and the new
 * table's row-level security. Code still using the old name reads and writes through it; rollback removes it and
 * brings back the original table with what was written through the view; after the drop the view stays.
 */
import { atPhase, basePlan, fingerprint, relationOid, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { asRole } from '../support/supabase';

async function stories(): Promise<{ t: string; schema: string; plan: Record<string, unknown>; oid: number }> {
  for (const role of ['anon', 'authenticated']) {
    await sql(`DO $$ BEGIN CREATE ROLE ${role} NOLOGIN NOINHERIT; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  }
  const t = uniqueName('stories');
  const schema = `${t}_shared`;
  await sql(`CREATE SCHEMA ${schema}`);
  await sql(`GRANT USAGE ON SCHEMA ${schema} TO authenticated`);
  await sql(`CREATE TABLE public.${t} (id serial PRIMARY KEY, owner_id int NOT NULL, title text NOT NULL, status text NOT NULL DEFAULT 'active')`);
  await sql(`INSERT INTO public.${t} (owner_id, title, status) SELECT g % 3, 'story ' || g, CASE WHEN g % 5 = 0 THEN 'inactive' ELSE 'active' END FROM generate_series(1, 300) g`);
  await sql(`CREATE TABLE public.${t}_comments (id int PRIMARY KEY, story_id int REFERENCES public.${t} (id))`);
  await sql(`INSERT INTO public.${t}_comments SELECT g, g FROM generate_series(1, 20) g`);
  await sql(`CREATE VIEW public.${t}_titles AS SELECT id, title FROM public.${t}`);
  // Supabase's default privileges gave the API roles ALL on it; this team narrowed anon's and authenticated's.
  await sql(`REVOKE ALL ON public.${t} FROM anon, authenticated`);
  await sql(`GRANT SELECT ON public.${t} TO anon`);
  await sql(`GRANT SELECT, INSERT, UPDATE ON public.${t} TO authenticated`);
  await sql(`GRANT USAGE ON SEQUENCE public.${t}_id_seq TO authenticated`);
  await sql(`ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY own_stories ON public.${t} FOR ALL TO authenticated USING (owner_id = 1) WITH CHECK (owner_id = 1)`);
  const old = await relationOid(`public.${t}`);
  const plan = basePlan(t, `public.${t}`, `${schema}.${t}`, {
    create: `CREATE TABLE ${schema}.${t} (id int PRIMARY KEY DEFAULT nextval('public.${t}_id_seq'), owner_id int NOT NULL, headline text NOT NULL, is_active boolean NOT NULL DEFAULT true)`,
    columns: { headline: 'title', is_active: `status = 'active'` },
    reverse: { status: `CASE WHEN is_active THEN 'active' ELSE 'inactive' END` },
    cutover: { compatView: true },
  });
  return { t, schema, plan, oid: old };
}

beforeAll(async () => {
  // Runs a query as `authenticated` and returns its rows as JSON: the helpers' pool has no session to SET ROLE in.
  await sql(`CREATE OR REPLACE FUNCTION public.safeshift_as_authenticated(q text) RETURNS SETOF jsonb LANGUAGE plpgsql AS $$
    BEGIN SET LOCAL ROLE authenticated; RETURN QUERY EXECUTE format('SELECT to_jsonb(x) FROM (%s) x', q); RESET ROLE; END $$`);
});

test('compat view: new table under its own name, the old name a security_invoker view; writes through it survive rollback', async () => {
  const { t, schema, plan, oid } = await stories();
  const planName = String(plan.name);
  const [anonTitles] = await asRole<{ n: number }>('anon', `SELECT count(*)::int AS n FROM public.${t}_titles`);
  const titlesSeenByAnon = anonTitles!.n;
  expect(titlesSeenByAnon).toBe(300);
  expect(await runCli(['start', writePlan(plan)])).toMatchObject({ code: 0, stderr: '' });
  const atGate = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(atGate.warnings.join('\n')).toMatch(new RegExp(`${schema}\\.${t} keeps its name and public\\.${t} becomes a view .*read-only through the view .*: status`));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  const atDrop = await waitFor(planName, atPhase('awaiting_drop'));

  // The foreign key moved to the new table and followed it to its own name; the dependent view, written against
  // the old columns (title), reads a twin of the compatibility view (below).
  const fresh = await relationOid(`${schema}.${t}`);
  expect(await sql(`SELECT confrelid::int AS oid FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`, [`public.${t}_comments`])).toEqual([{ oid: fresh }]);
  const readsOf = (view: string) => sql(`SELECT DISTINCT d.refobjid::int AS oid FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
                     WHERE r.ev_class = $1::regclass AND d.refobjid <> r.ev_class AND d.refclassid = 'pg_class'::regclass`, [view]);
  // The view has its owner's rights over a table with row-level security: it reads a twin of the compatibility
  // view with its owner's rights, so it reads as its owner did before (here the table's owner: every row).
  const [twin] = await sql<{ oid: number; relname: string; owner: string; invoker: string[] | null }>(
    `SELECT oid::int AS oid, relname, pg_get_userbyid(relowner) AS owner, reloptions AS invoker FROM pg_class WHERE relname LIKE $1`, [`${t}_compat_%`]);
  expect(twin).toMatchObject({ owner: 'postgres', invoker: ['security_invoker=false'] });
  expect(await readsOf(`public.${t}_titles`)).toEqual([{ oid: twin!.oid }]);
  expect(await asRole('anon', `SELECT count(*)::int AS n FROM public.${t}_titles`)).toEqual([{ n: titlesSeenByAnon }]);
  // Only its owner reads the twin itself.
  await expect(asRole('anon', `SELECT 1 FROM public.${twin!.relname}`)).rejects.toThrow(/permission denied/);
  const [view] = await sql<{ relkind: string; reloptions: string[] }>(`SELECT relkind, reloptions FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`]);
  expect(view).toEqual({ relkind: 'v', reloptions: ['security_invoker=true'] });
  expect(await sql(`SELECT relkind FROM pg_class WHERE oid = $1::regclass`, [`${schema}.${t}`])).toEqual([{ relkind: 'r' }]);
  expect((await sql<{ attname: string }>(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 ORDER BY attnum`, [`public.${t}`]))
    .map((c) => c.attname)).toEqual(['id', 'owner_id', 'title', 'status']);
  // Old code reading the old name sees the old columns and values.
  expect(await fingerprint(`SELECT * FROM public.${t}`, 'id')).toEqual(await fingerprint(`SELECT * FROM ${atDrop.retiredTable}`, 'id'));
  // The old grants are on the view, and the new table's policy applies to whoever reads through it.
  expect(await sql(`SELECT has_table_privilege('anon', $1, 'SELECT') AS a, has_table_privilege('authenticated', $1, 'INSERT') AS b,
                           has_table_privilege('anon', $1, 'INSERT') AS c`, [`public.${t}`])).toEqual([{ a: true, b: true, c: false }]);
  const seen = await sql<{ owner_id: number }>(`SELECT DISTINCT (r ->> 'owner_id')::int AS owner_id FROM safeshift_as_authenticated($1) r`, [`SELECT owner_id FROM public.${t}`]);
  expect(seen).toEqual([{ owner_id: 1 }]);

  // Writes through the view land in the new table; a derived column is read-only there.
  await sql(`INSERT INTO public.${t} (owner_id, title) VALUES (1, 'written through the view')`);
  await sql(`UPDATE public.${t} SET title = 'retitled through the view' WHERE id = 7`);
  await expect(sql(`UPDATE public.${t} SET status = 'inactive' WHERE id = 8`)).rejects.toThrow(/cannot update column "status"/);
  expect(await sql(`SELECT headline, is_active FROM ${schema}.${t} WHERE id IN (7, 301) ORDER BY id`))
    .toEqual([{ headline: 'retitled through the view', is_active: true }, { headline: 'written through the view', is_active: true }]);

  const rolled = await runCli(['rollback', planName, '--as', 'carol', '--reason', 'old code still breaks']);
  expect(rolled.code).toBe(0);
    // Nothing on stderr but the plan hash the rollback was signed for (the CLI asked the workflow for it).
    expect(rolled.stderr).toMatch(/^deciding on plan sha256:[0-9a-f]{64} \(safeshift show \S+ --plan\)\n$/);
  const end = await waitFor(planName, atPhase('rolled_back'));
  expect(end.outcome?.reason).toBe('rolled back after cutover at the request of carol: old code still breaks');
  expect(end.compensations[0]).toEqual({ name: 'swapBack', state: 'done' });
  expect(await sql(`SELECT oid::int AS oid, relkind FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`])).toEqual([{ oid, relkind: 'r' }]);
  expect(await sql(`SELECT id, title, status FROM public.${t} WHERE id IN (7, 301) ORDER BY id`)).toEqual([
    { id: 7, title: 'retitled through the view', status: 'active' },
    { id: 301, title: 'written through the view', status: 'active' },
  ]);
  expect(await sql(`SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`, [schema])).toEqual([]);
  expect(await sql(`SELECT confrelid::int AS oid FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`, [`public.${t}_comments`])).toEqual([{ oid }]);
  expect(await readsOf(`public.${t}_titles`)).toEqual([{ oid }]);
  expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE $1`, [`${t}_compat_%`])).toEqual([]);
  expect(await asRole('anon', `SELECT count(*)::int AS n FROM public.${t}_titles`)).toEqual([{ n: titlesSeenByAnon + 1 }]);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t}_titles`)).toEqual([{ n: 301 }]);
});

test('compat view after the drop: the view stays over the new table, the retired table is gone', async () => {
  const { t, schema, plan } = await stories();
  const result = await runCli(['start', writePlan(plan), '--auto-approve', '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  expect(JSON.parse(result.stdout).phase).toBe('done');
  expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE $1`, [`${t}_retired_%`])).toEqual([]);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} WHERE status = 'inactive'`)).toEqual([{ n: 60 }]);
  expect(await sql(`SELECT count(*)::int AS n FROM ${schema}.${t}`)).toEqual([{ n: 300 }]);
  expect(await sql(`SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [`${schema}.${t}`])).toEqual([]);
});

test('compat view: when swap back is refused, the new table, live at its own name, is never dropped by a later compensation', async () => {
  const { t, schema, plan } = await stories();
  const planName = String(plan.name);
  expect((await runCli(['start', writePlan(plan)])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  await sql(`INSERT INTO public.${t} (owner_id, title) VALUES (1, 'only in the new table')`);
  // Somebody replaces the compatibility view by a table of their own: swap back must refuse to touch it.
  await sql(`DROP VIEW public.${t} CASCADE`);
  await sql(`CREATE TABLE public.${t} (x int)`);

  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  const end = await waitFor(planName, atPhase('failed'));
  expect(end.compensations.map((c) => [c.name, c.state])).toEqual([['swapBack', 'failed'], ['removeChangeCapture', 'done'], ['dropTarget', 'failed']]);
  expect(end.compensations[0]!.error).toMatch(/no longer the compatibility view/);
  expect(end.compensations[2]!.error).toMatch(/went live at cutover and was not swapped back; left in place/);
  expect(await sql(`SELECT count(*)::int AS n FROM ${schema}.${t}`)).toEqual([{ n: 301 }]);
});

test('the gate says what readers of the old name will see when a new value may not fit the old type', async () => {
  const t = uniqueName('prices');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, price numeric(4,2) NOT NULL, code varchar(10))`);
  const r = await runCli(['plan', 'validate', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, price numeric(6,2), code varchar(40))`,
    dropConstraints: ['price:NOT NULL'],
    cutover: { compatView: true },
  }))]);
  expect(r.code).toBe(0);
  // A price of 123.45 is valid in the new table; read as numeric(4,2) through the view it is an error.
  expect(r.stdout).toMatch(new RegExp(`readers of public\\.${t} .*price .*numeric\\(6,2\\).*numeric\\(4,2\\).*fail`));
  expect(r.stdout).toMatch(new RegExp(`readers of public\\.${t} .*code .*character varying\\(40\\)`));
  // NOT NULL is the original table's rule for writes; a view has no such rule for readers.
  expect(r.stdout).not.toMatch(/readers of [^\n]*allows NULL/);
});
