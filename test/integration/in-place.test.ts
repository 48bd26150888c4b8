/**
 * Issue 15, the catalog-only fast path (plan field `alter:`): rename / add / drop column (and the other in-place
 * changes) run to done WITHOUT copying the table (pg_class.relfilenode unchanged from start to done), and a
 * rollback after cutover gives the old shape back with every row, those written after cutover included. Plans
 * whose `alter` is not catalog-only are refused, exit 2, naming `alter` and the statement, nothing changed.
 */
import { atPhase, basePlan, catalogSnapshot, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

async function table(extra = ''): Promise<string> {
  const t = uniqueName('inplace');
  await sql(`CREATE TABLE public.${t} (id bigint PRIMARY KEY, title text NOT NULL, legacy text NOT NULL${extra}, qty int)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'title ' || g, 'legacy ' || g, g FROM generate_series(1, 300) g`);
  return t;
}

const relfilenode = async (t: string) => (await sql<{ f: string }>(`SELECT relfilenode::text AS f FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`]))[0]!.f;
const shape = async (t: string) => sql<{ name: string; notnull: boolean; dflt: string | null }>(
  `SELECT attname AS name, attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS dflt FROM pg_attribute a
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, [`public.${t}`]);
const inPlan = (t: string, alter: string) => basePlan(t, `public.${t}`, `public.${t}_unused`, { alter }) as Record<string, unknown> & { target?: unknown };
function planOf(t: string, alter: string): Record<string, unknown> {
  const p = inPlan(t, alter);
  delete p.target;
  return p;
}

test('rename, add and drop column (with a CHECK, SET NOT NULL and an index) run to done in place: no copy, the drop only after its gate', async () => {
  const t = await table();
  const before = await relfilenode(t);
  const plan = planOf(t, `
    ALTER TABLE public.${t} RENAME COLUMN title TO name;
    ALTER TABLE public.${t} ADD COLUMN note text NOT NULL DEFAULT 'none';
    ALTER TABLE public.${t} DROP COLUMN legacy;
    ALTER TABLE public.${t} ADD CONSTRAINT ${t}_qty_ok CHECK (qty >= 0);
    ALTER TABLE public.${t} ALTER COLUMN qty SET NOT NULL;
    CREATE INDEX CONCURRENTLY ${t}_qty ON public.${t} (qty);`);
  const file = writePlan(plan);
  const validate = await runCli(['plan', 'validate', file]);
  expect(validate.code).toBe(0);
  expect(validate.stdout).toMatch(/note: path: in place \(catalog only\): 6 changes/);
  expect(validate.stdout).toMatch(/note: at cutover: drop column legacy: hidden at cutover as legacy_safeshift_retired_\d+, its NOT NULL relaxed/);

  expect(await runCli(['start', file])).toMatchObject({ code: 0, stderr: '' });
  const atGate = await waitFor(String(plan.name), atPhase('awaiting_cutover'));
  expect(atGate.warnings[0]).toMatch(/^path: in place/);
  expect(atGate.backupTable).toMatch(/^safeshift_backup\./);
  expect(await sql(`SELECT count(*)::int AS n FROM ${atGate.backupTable}`)).toEqual([{ n: 300 }]);
  expect((await runCli(['approve', String(plan.name), '--as', 'alice'])).code).toBe(0);
  await waitFor(String(plan.name), atPhase('awaiting_drop'));

  // The application's new shape works at once; the dropped column is hidden, its values still there.
  const hidden = (await shape(t)).find((c) => c.name.startsWith('legacy_safeshift_retired_'))!;
  expect(hidden).toMatchObject({ notnull: false });
  await sql(`INSERT INTO public.${t} (id, name, qty) VALUES (301, 'after cutover', 5)`);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t} WHERE ${hidden.name} IS NOT NULL`)).toEqual([{ n: 300 }]);
  expect((await runCli(['approve', String(plan.name), '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
  const done = await waitFor(String(plan.name), atPhase('done'));
  expect(done.outcome?.reason).toMatch(/changed in place: 6 catalog-only changes, no row copied/);

  // status and list as for any migration (the same workflow id, status shape and search attributes).
  expect((await runCli(['status', String(plan.name)])).stdout).toMatch(/done/);
  const listed = JSON.parse((await runCli(['list', '--json', '--phase', 'done'])).stdout) as { workflowId: string }[];
  expect(listed.map((r) => r.workflowId)).toContain(`migration-${String(plan.name)}`);

  expect(await relfilenode(t)).toBe(before);
  expect(await shape(t)).toEqual([
    { name: 'id', notnull: true, dflt: null },
    { name: 'name', notnull: true, dflt: null },
    { name: 'qty', notnull: true, dflt: null },
    { name: 'note', notnull: true, dflt: `'none'::text` },
  ]);
  expect(await sql(`SELECT count(*)::int AS n, count(*) FILTER (WHERE note = 'none')::int AS dflt FROM public.${t}`)).toEqual([{ n: 301, dflt: 301 }]);
  expect(await sql(`SELECT convalidated AS v FROM pg_constraint WHERE conname = $1`, [`${t}_qty_ok`])).toEqual([{ v: true }]);
  expect(await sql(`SELECT i.indisvalid AS v FROM pg_index i WHERE i.indexrelid = $1::regclass`, [`public.${t}_qty`])).toEqual([{ v: true }]);
  // The ledger and the audit trail as a migration writes them.
  expect(await sql(`SELECT phase, outcome FROM safeshift.migrations WHERE name = $1`, [String(plan.name)])).toEqual([{ phase: 'done', outcome: 'done' }]);
  const actions = (await sql<{ action: string }>(`SELECT action FROM safeshift.audit_log WHERE run_id = (SELECT run_id FROM safeshift.migrations WHERE name = $1) ORDER BY seq`, [String(plan.name)])).map((r) => r.action);
  expect(actions).toEqual(expect.arrayContaining(['phase:preflight', 'backup:verified', 'approve:cutover', 'cutover:in-place', 'approve:drop', 'drop:in-place', 'phase:done']));
  expect(actions.indexOf('approve:drop')).toBeLessThan(actions.indexOf('phase:drop'));
});

test('rollback after cutover gives the old shape back with every row, those written after cutover included, still without a copy', async () => {
  const t = await table(` DEFAULT 'kept'`);
  const before = await relfilenode(t);
  const oldShape = await shape(t);
  const plan = planOf(t, `
    ALTER TABLE public.${t} RENAME COLUMN title TO name;
    ALTER TABLE public.${t} ADD COLUMN note text;
    ALTER TABLE public.${t} DROP COLUMN legacy;
    ALTER TABLE public.${t} RENAME TO ${t}_v2;`);
  const name = String(plan.name);
  expect(await runCli(['start', writePlan(plan)])).toMatchObject({ code: 0, stderr: '' });
  await waitFor(name, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', name, '--as', 'bob'])).code).toBe(0);
  const atDrop = await waitFor(name, atPhase('awaiting_drop'));
  expect(atDrop.target).toBe(`public.${t}_v2`);

  // Written after cutover in the new shape, under the new name.
  await sql(`INSERT INTO public.${t}_v2 (id, name, note, qty) SELECT g, 'new ' || g, 'note ' || g, g FROM generate_series(301, 310) g`);
  await sql(`UPDATE public.${t}_v2 SET name = 'renamed after cutover', note = 'n7' WHERE id = 7`);
  await sql(`DELETE FROM public.${t}_v2 WHERE id = 8`);
  expect((await runCli(['rollback', name, '--as', 'carol', '--reason', 'the app still reads title'])).code).toBe(0);
  const end = await waitFor(name, atPhase('rolled_back'));
  expect(end.compensations).toEqual([{ name: 'revertInPlace', state: 'done' }]);

  expect(await relfilenode(t)).toBe(before);
  expect(await shape(t)).toEqual(oldShape);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t}`)).toEqual([{ n: 309 }]);
  expect(await sql(`SELECT id::int, title, legacy FROM public.${t} WHERE id IN (1, 7, 305) ORDER BY id`)).toEqual([
    { id: 1, title: 'title 1', legacy: 'legacy 1' },
    { id: 7, title: 'renamed after cutover', legacy: 'legacy 7' },
    { id: 305, title: 'new 305', legacy: 'kept' },
  ]);
  // The added column's values written meanwhile are kept beside the backup, whole rows.
  const kept = end.warnings.find((w) => /rows with a value in note are kept in/.test(w))!;
  const keptTable = /kept in (\S+) /.exec(kept)![1]!;
  expect(await sql(`SELECT count(*)::int AS n, max(note) FILTER (WHERE id = 7) AS n7 FROM ${keptTable}`)).toEqual([{ n: 11, n7: 'n7' }]);
});

describe('alter that is not catalog-only: exit 2 naming alter and each statement, the copy path suggested, nothing changed', () => {
  let t: string;
  let before: string;
  beforeAll(async () => {
    t = await table();
    await sql(`CREATE VIEW public.${t}_legacy AS SELECT id, legacy FROM public.${t}`);
    await sql(`CREATE DOMAIN public.${t}_pos AS int CHECK (VALUE > 0)`);
    before = await catalogSnapshot();
  });
  afterAll(async () => {
    expect(await catalogSnapshot()).toBe(before);
  });
  const refused = async (args: string[], alter: string, messages: RegExp[]) => {
    const result = await runCli([...args, writePlan(planOf(t, alter))]);
    for (const m of messages) expect(result.stderr).toMatch(m);
    expect(result).toMatchObject({ code: 2, stdout: '' });
  };

  // Every problem of a plan is listed at once: one plan per kind of check keeps the file lean.
  test('statements the parse tree refuses: a type change, another table, another statement kind', () => refused(['plan', 'validate'], `
    ALTER TABLE public.${t} ALTER COLUMN qty TYPE bigint;
    ALTER TABLE public.${t}_legacy RENAME COLUMN legacy TO old;
    UPDATE public.${t} SET qty = 0;`, [
    /alter: statement 1 \(AlterTableStmt\) is not catalog-only: ALTER COLUMN TYPE.*use the copy path/,
    /alter: statement 2 \(RenameStmt\) names public\.\S+_legacy; an in-place plan changes only its source/,
    /alter: statement 3 \(UpdateStmt\) is not an ALTER TABLE.*use the copy path/,
  ]));

  test('changes the live table refuses: a volatile default, a column a view reads, a key column', () => refused(['plan', 'validate'], `
    ALTER TABLE public.${t} ADD COLUMN r float8 DEFAULT random();
    ALTER TABLE public.${t} DROP COLUMN legacy;
    ALTER TABLE public.${t} DROP COLUMN id;`, [
    /alter: statement 1: the DEFAULT of r calls pg_catalog\.random, which is volatile: every row would be rewritten; use the copy path/,
    /alter: statement 2: view \S+_legacy depends on column legacy/,
    /alter: statement 3: id is in the primary key or replica identity/,
  ]));

  test('a copy plan says so in plan validate: path: copy', async () => {
    const result = await runCli(['plan', 'validate', writePlan(basePlan(`${t}-copy`, `public.${t}`, `public.${t}_v2`))]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/note: path: copy: the plan gives a target table made like the source, so every row is copied/);
  });

  test('a plan with alter and a target is refused before any check', async () => {
    const result = await runCli(['plan', 'validate', '--offline', writePlan(inPlan(t, `ALTER TABLE public.${t} ADD COLUMN x int`))]);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toMatch(/alter: an in-place plan \(alter\) cannot have target, which belongs to the copy path/);
  });

  test('start rehearses: a change that would rewrite the table is refused (its storage changed when rehearsed)', () => refused(['start'],
    `ALTER TABLE public.${t} ADD COLUMN p public.${t}_pos DEFAULT 1`,
    [/alter: statement 1 rewrites public\.\S+ \(its storage changed when rehearsed\): it is not catalog-only; use the copy path/]));
});
