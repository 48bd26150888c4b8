/**
 * `cutover.newTableName: target`: the new table keeps the target's name (`items` -> `products`) and the old name
 * is gone after cutover; what was bound to the old table (a view, an inbound foreign key, grants) moves to it. A
 * rollback brings the old name back with what was written after cutover, and the target's name is gone again.
 */
import { atPhase, basePlan, relationOid, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';
import { asRole } from '../support/supabase';

async function items(): Promise<{ t: string; plan: Record<string, unknown>; oid: number }> {
  const t = uniqueName('items');
  await sql(`CREATE TABLE public.${t} (id serial PRIMARY KEY, name text NOT NULL, price_cents int NOT NULL)`);
  await sql(`INSERT INTO public.${t} (name, price_cents) SELECT 'item ' || g, g * 10 FROM generate_series(1, 200) g`);
  await sql(`CREATE TABLE public.${t}_orders (id int PRIMARY KEY, item_id int REFERENCES public.${t} (id))`);
  await sql(`INSERT INTO public.${t}_orders SELECT g, g FROM generate_series(1, 10) g`);
  await sql(`CREATE VIEW public.${t}_names AS SELECT id, name FROM public.${t}`);
  await sql(`REVOKE ALL ON public.${t} FROM anon`);
  await sql(`GRANT SELECT ON public.${t} TO anon`);
  const plan = basePlan(t, `public.${t}`, `public.${t}_products`, {
    create: `CREATE TABLE public.${t}_products (id int PRIMARY KEY DEFAULT nextval('public.${t}_id_seq'), name text NOT NULL, price numeric(12,2) NOT NULL)`,
    columns: { price: 'price_cents / 100.0' },
    reverse: { price_cents: '(price * 100)::int' },
    cutover: { newTableName: 'target' },
  });
  return { t, plan, oid: await relationOid(`public.${t}`) };
}

const exists = async (ref: string) => (await sql<{ r: string | null }>(`SELECT to_regclass($1)::text AS r`, [ref]))[0]!.r !== null;

test('newTableName target: the new table keeps its own name, the old name is gone; rollback brings the old name back', async () => {
  const { t, plan, oid } = await items();
  const planName = String(plan.name);
  expect(await runCli(['start', writePlan(plan)])).toMatchObject({ code: 0, stderr: '' });
  const atGate = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(atGate.warnings.join('\n')).toMatch(new RegExp(`new table keeps its own name public\\.${t}_products .*public\\.${t} is gone`));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  const atDrop = await waitFor(planName, atPhase('awaiting_drop'));

  const fresh = await relationOid(`public.${t}_products`);
  expect(fresh).not.toBe(oid);
  expect(await exists(`public.${t}`)).toBe(false);
  expect(await sql(`SELECT count(*)::int AS n, sum(price)::text AS total FROM public.${t}_products`)).toEqual([{ n: 200, total: '2010.00' }]);
  // What was bound to the old table moved to the new one: the view reads it, the foreign key references it, the
  // grants are its own now.
  expect(await sql(`SELECT confrelid::int AS oid FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`, [`public.${t}_orders`])).toEqual([{ oid: fresh }]);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t}_names`)).toEqual([{ n: 200 }]);
  expect(await asRole('anon', `SELECT count(*)::int AS n FROM public.${t}_products`)).toEqual([{ n: 200 }]);
  expect(await sql(`SELECT has_table_privilege('anon', $1, 'INSERT') AS insert`, [`public.${t}_products`])).toEqual([{ insert: false }]);
  // The new table kept its own index names; the retired table its.
  expect(await sql(`SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, [`public.${t}_products`])).toEqual([{ conname: `${t}_products_pkey` }]);

  // Written after cutover under the new name: carried back by the rollback.
  await sql(`INSERT INTO public.${t}_products (name, price) VALUES ('after cutover', 1.5)`);
  await sql(`UPDATE public.${t}_products SET name = 'renamed after cutover' WHERE id = 7`);
  expect((await runCli(['rollback', planName, '--as', 'carol', '--reason', 'the app still says items'])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'));
  expect(end.compensations[0]).toEqual({ name: 'swapBack', state: 'done' });
  expect(await sql(`SELECT oid::int AS oid FROM pg_class WHERE oid = $1::regclass`, [`public.${t}`])).toEqual([{ oid }]);
  expect(await exists(`public.${t}_products`)).toBe(false);
  expect(await exists(String(atDrop.retiredTable))).toBe(false);
  expect(await sql(`SELECT id, name, price_cents FROM public.${t} WHERE id IN (7, 201) ORDER BY id`)).toEqual([
    { id: 7, name: 'renamed after cutover', price_cents: 70 },
    { id: 201, name: 'after cutover', price_cents: 150 },
  ]);
  expect(await sql(`SELECT confrelid::int AS oid FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`, [`public.${t}_orders`])).toEqual([{ oid }]);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t}_names`)).toEqual([{ n: 201 }]);
  expect(await sql(`SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'`, [`public.${t}`])).toEqual([{ conname: `${t}_pkey` }]);
});

test('newTableName target runs to done: the table is under the new name with every row, the old name is gone', async () => {
  const { t, plan } = await items();
  const result = await runCli(['start', writePlan(plan), '--auto-approve', '--json']);
  expect(result).toMatchObject({ code: 0, stderr: '' });
  const end = JSON.parse(result.stdout) as { phase: string; outcome?: { reason: string } };
  expect(end.phase).toBe('done');
  expect(end.outcome?.reason).toMatch(new RegExp(`public\\.${t}_products is the new table under its own name and public\\.${t} is gone`));
  expect(await exists(`public.${t}`)).toBe(false);
  expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE $1`, [`${t}_retired_%`])).toEqual([]);
  expect(await sql(`SELECT count(*)::int AS n FROM public.${t}_products`)).toEqual([{ n: 200 }]);
  // The serial's sequence went with the new table: inserts go on from where the old table's left off.
  expect(await sql(`INSERT INTO public.${t}_products (name, price) VALUES ('next', 1) RETURNING id`)).toEqual([{ id: 201 }]);
});
