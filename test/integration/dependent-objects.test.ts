/**
 * Issue 12, finding 3: objects that used to refuse a cutover are carried through it. A materialized view over
 * the table (with an index, a grant and a comment) and a function returning `SETOF <table>` (with a grant, EXECUTE
 * revoked from PUBLIC) follow the live name to the new table at cutover, back to the original table on rollback,
 * and keep working once the retired table is dropped. A view whose column type changes (`price` numeric(4,2) ->
 * numeric(6,2)) cannot be replaced in place: it is dropped and created again, with its owner and grants, and a
 * role that may read only the view still reads it. The swap back's statements are in the audit log too.
 * Checked through the workflow and with our own catalog SQL.
 */
import pg from 'pg';
import { captureBoundObjects, describeBoundObjects, moveBoundObjects } from '../../src/bound-objects';
import { asRole } from '../support/supabase';
import { atPhase, basePlan, catalogSnapshot, relationOid, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

const ROLE = 'safeshift_dep_reader';
/** May read the view over `price` and nothing else. */
const VIEW_ROLE = 'safeshift_dep_view_reader';

async function seed(src: string): Promise<{ mv: string; fn: string }> {
  await sql(`DO $$ BEGIN CREATE ROLE ${ROLE} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await sql(`DO $$ BEGIN CREATE ROLE ${VIEW_ROLE} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  const mv = `${src}_per_owner`;
  const fn = `${src}_of_owner`;
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, owner_id int NOT NULL, title text NOT NULL, price numeric(4,2))`);
  await sql(`INSERT INTO public.${src} SELECT g, g % 4, 'row ' || g, g % 100 FROM generate_series(1, 200) g`);
  await sql(`CREATE VIEW public.${src}_prices AS SELECT id, price FROM public.${src}`);
  await sql(`GRANT SELECT ON public.${src}_prices TO ${VIEW_ROLE}`);
  await sql(`CREATE MATERIALIZED VIEW public.${mv} AS SELECT owner_id, count(*)::int AS n FROM public.${src} GROUP BY owner_id`);
  await sql(`CREATE UNIQUE INDEX ${mv}_key ON public.${mv} (owner_id)`);
  await sql(`GRANT SELECT ON public.${mv} TO ${ROLE}`);
  await sql(`COMMENT ON MATERIALIZED VIEW public.${mv} IS 'rows per owner'`);
  await sql(`CREATE FUNCTION public.${fn}(o int) RETURNS SETOF public.${src} LANGUAGE sql STABLE AS $$ SELECT * FROM public.${src} WHERE owner_id = o $$`);
  await sql(`REVOKE ALL ON FUNCTION public.${fn}(int) FROM PUBLIC`);
  await sql(`GRANT EXECUTE ON FUNCTION public.${fn}(int) TO ${ROLE}`);
  return { mv, fn };
}

/**
 * The target adds a column: the function's result type (the live table's row type) gains it. It widens `price`:
 * the view over it changes its column's type.
 */
function plan(src: string): string {
  return writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id int PRIMARY KEY, owner_id int NOT NULL, title text NOT NULL, price numeric(6,2), note text)`,
  }));
}

/** What both objects look like, by our own SQL: the relation the matview reads, its index, grants, comment, the function's result. */
async function shape(src: string, mv: string, fn: string) {
  const [m] = await sql<{ reads: string; populated: boolean; acl: string[]; comment: string | null; indexes: string[] }>(
    `SELECT (SELECT string_agg(DISTINCT d.refobjid::regclass::text, ',') FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
              WHERE r.ev_class = c.oid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid) AS reads,
            c.relispopulated AS populated, c.relacl::text[] AS acl, obj_description(c.oid, 'pg_class') AS comment,
            ARRAY(SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid ORDER BY 1) AS indexes
       FROM pg_class c WHERE c.oid = $1::regclass AND c.relkind = 'm'`, [`public.${mv}`]);
  const [f] = await sql<{ result: string; acl: string[] }>(
    `SELECT format_type(p.prorettype, NULL) AS result, p.proacl::text[] AS acl FROM pg_proc p WHERE p.oid = $1::regprocedure`, [`public.${fn}(int)`]);
  const [g] = await sql<{ mv: boolean; fn: boolean; pub: boolean }>(
    `SELECT has_table_privilege($1, $2, 'SELECT') AS mv, has_function_privilege($1, $3, 'EXECUTE') AS fn,
            has_function_privilege('public', $3, 'EXECUTE') AS pub`, [ROLE, `public.${mv}`, `public.${fn}(int)`]);
  return { matview: m, fn: f, granted: g, live: await relationOid(`public.${src}`), view: await priceView(src) };
}

/** The view over `price`: its column's type, what it reads, owner and grants, and what the view-only role reads. */
async function priceView(src: string) {
  const [v] = await sql<{ type: string; reads: number; owner: string; acl: string[] }>(
    `SELECT format_type(a.atttypid, a.atttypmod) AS type, pg_get_userbyid(c.relowner) AS owner, c.relacl::text[] AS acl,
            (SELECT d.refobjid::int FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
              WHERE r.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> c.oid LIMIT 1) AS reads
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'price' WHERE c.oid = $1::regclass`, [`public.${src}_prices`]);
  const [read] = await asRole<{ n: number }>(VIEW_ROLE, `SELECT count(*)::int AS n FROM public.${src}_prices WHERE price >= 0`);
  return { ...v!, readsAs: read!.n };
}

describe('a materialized view and a SETOF function are carried through cutover and rollback', () => {
  test('cutover carries both to the new table; rollback carries them back to the original', async () => {
    const src = uniqueName('dep');
    const { mv, fn } = await seed(src);
    const original = await relationOid(`public.${src}`);
    const before = await shape(src, mv, fn);
    expect(before.matview).toMatchObject({ reads: `${src}`, populated: true, comment: 'rows per owner', indexes: [`${mv}_key`] });
    expect(before.granted).toEqual({ mv: true, fn: true, pub: false });
    const planName = src.replace(/_/g, '-');

    expect((await runCli(['start', plan(src)])).code).toBe(0);
    const gate = await waitFor(planName, atPhase('awaiting_cutover'));
    // Shown at the gate, each object named.
    const shown = gate.warnings.join('\n');
    expect(shown).toMatch(new RegExp(`materialized view public\\.${mv}: recreated`));
    expect(shown).toMatch(new RegExp(`function public\\.${fn}\\(integer\\): recreated`));
    expect(shown).toContain(`view public.${src}_prices: column types change (price numeric(4,2) → numeric(6,2)): dropped and created again`);

    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'));
    const after = await shape(src, mv, fn);
    expect(after.live).not.toBe(original);
    // Recorded: the cutover's statements in the audit log recreate both.
    const [swapped] = await sql<{ statements: string[] }>(
      `SELECT details->'statements' AS statements FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'cutover:swapped'`, [`migration-${planName}`]);
    const statements = swapped!.statements.join('\n');
    expect(statements).toContain(`DROP MATERIALIZED VIEW "public"."${mv}" RESTRICT`);
    expect(statements).toContain(`CREATE MATERIALIZED VIEW "public"."${mv}"`);
    expect(statements).toContain(`CREATE UNIQUE INDEX ${mv}_key ON public.${mv}`);
    expect(statements).toContain(`GRANT SELECT ON TABLE "public"."${mv}" TO "${ROLE}"`);
    expect(statements).toMatch(new RegExp(`DROP ROUTINE (public\\.)?${fn}\\(integer\\) RESTRICT`));
    expect(statements).toContain(`RETURNS SETOF public.${src}`);
    expect(statements).toContain(`DROP VIEW "public"."${src}_prices" RESTRICT`);
    expect(statements).toContain(`GRANT SELECT ON TABLE "public"."${src}_prices" TO "${VIEW_ROLE}"`);
    // The view reads the new table, with the new type; owner and grants as before; its reader still reads it.
    expect(after.view).toEqual({ ...before.view, type: 'numeric(6,2)', reads: after.live });
    // Same name, same index, grant and comment; reads the new table (its rows equal a fresh query).
    expect(after.matview).toEqual({ ...before.matview, reads: `${src}` });
    expect(await sql(`SELECT d.refobjid::int AS oid FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid
                       WHERE r.ev_class = $1::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class LIMIT 1`, [`public.${mv}`]))
      .toEqual([{ oid: after.live }]);
    await sql(`INSERT INTO public.${src} (id, owner_id, title, note) VALUES (1001, 9, 'after cutover', 'new')`);
    await sql(`REFRESH MATERIALIZED VIEW CONCURRENTLY public.${mv}`);
    expect(await sql(`SELECT * FROM public.${mv} ORDER BY owner_id`))
      .toEqual(await sql(`SELECT owner_id, count(*)::int AS n FROM public.${src} GROUP BY owner_id ORDER BY owner_id`));
    // The function returns the new table's rows, new column included; grants as before.
    expect(after.fn!.result).toBe(`${src}`);
    expect(after.granted).toEqual(before.granted);
    expect(after.fn!.acl).toEqual(before.fn!.acl);
    expect(await sql(`SELECT id, note FROM public.${fn}(9)`)).toEqual([{ id: 1001, note: 'new' }]);

    const rolled = await runCli(['rollback', planName, '--as', 'carol', '--reason', 'trying the way back']);
    expect(rolled.code).toBe(0);
    // Nothing on stderr but the plan hash the rollback was signed for (the CLI asked the workflow for it).
    expect(rolled.stderr).toMatch(/^deciding on plan sha256:[0-9a-f]{64} \(safeshift show \S+ --plan\)\n$/);
    await waitFor(planName, atPhase('rolled_back'));
    const back = await shape(src, mv, fn);
    expect(back.live).toBe(original);
    expect(back).toEqual({ ...before, live: original });
    // Recorded: the swap back's statements in the audit log, each object carried back named.
    const [undone] = await sql<{ statements: string[] }>(
      `SELECT details->'statements' AS statements FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'compensate:swapBack'`, [`migration-${planName}`]);
    const back_ = (undone?.statements ?? []).join('\n');
    expect(back_).toContain(`DROP MATERIALIZED VIEW "public"."${mv}" RESTRICT`);
    expect(back_).toMatch(new RegExp(`DROP ROUTINE (public\\.)?${fn}\\(integer\\) RESTRICT`));
    expect(back_).toContain(`DROP VIEW "public"."${src}_prices" RESTRICT`);
    expect(back_).toContain(`CREATE VIEW "public"."${src}_prices"`);
    expect(await sql(`SELECT * FROM public.${mv} ORDER BY owner_id`))
      .toEqual(await sql(`SELECT owner_id, count(*)::int AS n FROM public.${src} GROUP BY owner_id ORDER BY owner_id`));
    const [row] = await sql<Record<string, unknown>>(`SELECT * FROM public.${fn}(9)`);
    expect(row).toEqual({ id: 1001, owner_id: 9, title: 'after cutover', price: null });
  });

  test('approved to done, both work after the retired table is dropped', async () => {
    const src = uniqueName('dep_done');
    const { mv, fn } = await seed(src);
    const before = await shape(src, mv, fn);
    const result = await runCli(['start', plan(src), '--auto-approve', '--json']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(result.stdout).phase).toBe('done');
    expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE $1`, [`${src}_retired_%`])).toEqual([]);
    const after = await shape(src, mv, fn);
    expect(after.matview).toEqual(before.matview);
    expect(after.granted).toEqual(before.granted);
    await sql(`REFRESH MATERIALIZED VIEW public.${mv}`);
    expect(await sql(`SELECT * FROM public.${mv} ORDER BY owner_id`))
      .toEqual(await sql(`SELECT owner_id, count(*)::int AS n FROM public.${src} GROUP BY owner_id ORDER BY owner_id`));
    const rows = await sql<{ id: number; note: string }>(`SELECT id, note FROM public.${fn}(1) ORDER BY id LIMIT 2`);
    expect(rows).toEqual([{ id: 1, note: null }, { id: 5, note: null }]);
  });
});

describe('what cannot be carried is refused, named, by the rehearsal', () => {
  test('a function whose body no longer compiles, a function a view calls, a matview a view reads', async () => {
    const src = uniqueName('dep_no');
    const target = `${src}_v2`;
    const broken = `${src}_titles`;
    const called = `${src}_all`;
    const caller = `${src}_caller`;
    const mv = `${src}_mv`;
    const overMv = `${src}_over_mv`;
    await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, owner_id int, title text)`);
    await sql(`INSERT INTO public.${src} VALUES (1, 1, 'a')`);
    // The new table drops `title`: this body returns three columns for a two-column row type.
    await sql(`CREATE FUNCTION public.${broken}() RETURNS SETOF public.${src} LANGUAGE sql AS $$ SELECT id, owner_id, title FROM public.${src} $$`);
    await sql(`CREATE FUNCTION public.${called}() RETURNS SETOF public.${src} LANGUAGE sql AS $$ SELECT * FROM public.${src} $$`);
    await sql(`CREATE VIEW public.${caller} AS SELECT count(*) AS n FROM public.${called}()`);
    await sql(`CREATE MATERIALIZED VIEW public.${mv} AS SELECT id FROM public.${src}`);
    await sql(`CREATE VIEW public.${overMv} AS SELECT id FROM public.${mv}`);
    await sql(`CREATE TABLE public.${target} (id int PRIMARY KEY, owner_id int)`);
    const sourceOid = await relationOid(`public.${src}`);
    const targetOid = await relationOid(`public.${target}`);
    const before = await catalogSnapshot();

    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    let problems: string[];
    let described: string[];
    try {
      await client.query('BEGIN');
      const captured = await captureBoundObjects(client, sourceOid, { schema: 'public', name: src });
      described = describeBoundObjects(captured);
      await client.query(`ALTER TABLE public.${src} RENAME TO ${src}_ret`);
      await client.query(`ALTER TABLE public.${target} RENAME TO ${src}`);
      ({ problems } = await moveBoundObjects(client, captured, sourceOid, { ref: { schema: 'public', name: src }, oid: targetOid }, { dryRun: true }));
    } finally {
      await client.query('ROLLBACK');
      await client.end();
    }
    expect(described.join('\n')).toContain(`function public.${broken}(): recreated`);
    const text = problems.join('\n');
    expect(text).toMatch(new RegExp(`^function public\\.${broken}\\(\\): column "title" does not exist`, 'm'));
    expect(text).toMatch(new RegExp(`^function public\\.${called}\\(\\): cannot drop function .*other objects depend on it \\(view .*${caller} depends on function`, 'm'));
    expect(text).toMatch(new RegExp(`^materialized view public\\.${mv}: cannot drop materialized view .*other objects depend on it \\(view .*${overMv} depends on materialized view`, 'm'));
    expect(text).toMatch(new RegExp(`^old table public\\.${src}_ret cannot be dropped without CASCADE`, 'm'));
    expect(await catalogSnapshot()).toEqual(before);
  });
});
