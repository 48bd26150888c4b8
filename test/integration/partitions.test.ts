/**
 * A partition as the source: the cutover detaches the old partition and attaches the new one under the same lock,
 * so the parent never routes a row to the retired table. Migrating one monthly partition used to leave the new
 * table standalone while the parent kept routing that month to the retired one, which the drop then removed.
 */
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

async function monthlyPayments(t: string): Promise<void> {
  await sql(`CREATE TABLE public.${t} (id bigint NOT NULL, paid_on date NOT NULL, amount numeric(10,2) NOT NULL, PRIMARY KEY (id, paid_on))
               PARTITION BY RANGE (paid_on)`);
  for (const m of ['01', '02', '03']) {
    const next = m === '03' ? '2024-04-01' : `2024-${String(Number(m) + 1).padStart(2, '0')}-01`;
    await sql(`CREATE TABLE public.${t}_2024_${m} PARTITION OF public.${t} FOR VALUES FROM ('2024-${m}-01') TO ('${next}')`);
  }
  await sql(`CREATE INDEX ON public.${t} (amount)`);
  await sql(`INSERT INTO public.${t} SELECT g, date '2024-01-01' + (g % 91), (g % 500) / 3.0 FROM generate_series(1, 9000) g`);
}

/** Where each February row lives, and how many rows the parent sees in all. */
async function routing(t: string): Promise<{ feb: number; total: number; partitions: string[] }> {
  const [r] = await sql<{ feb: string; total: string }>(
    `SELECT count(*) FILTER (WHERE paid_on >= '2024-02-01' AND paid_on < '2024-03-01')::text AS feb, count(*)::text AS total FROM public.${t}`);
  const parts = await sql<{ name: string }>(`SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = $1::regclass ORDER BY 1`, [`public.${t}`]);
  return { feb: Number(r!.feb), total: Number(r!.total), partitions: parts.map((p) => p.name) };
}

async function migrateFebruary(rollback: boolean): Promise<void> {
  const t = uniqueName('payments');
  await monthlyPayments(t);
  const before = await routing(t);
  const planName = `${t}_2024_02`.replace(/_/g, '-');
  const plan = writePlan(basePlan(`${t}_2024_02`, `public.${t}_2024_02`, `public.${t}_2024_02_v2`, { copy: { chunkRows: 500 } }));
  expect((await runCli(['start', plan])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  await sql(`INSERT INTO public.${t} VALUES (100001, '2024-02-10', 1.5)`); // through the parent, during the gate
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  const s = await statusOf(planName);

  // The new table is the February partition now; the retired one is out of the tree.
  const after = await routing(t);
  expect(after.partitions).toEqual(before.partitions);
  const [attached] = await sql<{ oid: number; bound: string }>(
    `SELECT c.oid::int AS oid, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_class c WHERE c.oid = $1::regclass`, [`public.${t}_2024_02`]);
  expect(attached!.bound).toBe("FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')");
  expect(await sql(`SELECT 1 FROM pg_inherits WHERE inhrelid = $1::regclass`, [s.retiredTable])).toHaveLength(0);
  expect(await sql(`SELECT 1 FROM pg_constraint WHERE conrelid = $1 AND contype = 'c'`, [attached!.oid])).toHaveLength(0);
  // A row inserted through the parent after cutover lands in the new partition.
  const [routed] = await sql<{ home: number }>(`INSERT INTO public.${t} VALUES (100002, '2024-02-20', 2.5) RETURNING tableoid::int AS home`);
  expect(routed!.home).toBe(attached!.oid);
  expect(after.feb).toBe(before.feb + 1);
  expect(after.total).toBe(before.total + 1);

  if (rollback) {
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    await waitFor(planName, atPhase('rolled_back'));
    const back = await routing(t);
    expect(back.partitions).toEqual(before.partitions);
    expect(back.feb).toBe(before.feb + 2); // both rows written through the parent are in the original partition
    const [original] = await sql<{ bound: string }>(`SELECT pg_get_expr(relpartbound, oid) AS bound FROM pg_class WHERE oid = $1::regclass`, [`public.${t}_2024_02`]);
    expect(original!.bound).toBe("FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')");
    expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${t}_2024_02_v2`])).toHaveLength(0);
  } else {
    expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
    await waitFor(planName, atPhase('done'));
    const done = await routing(t);
    expect(done.feb).toBe(before.feb + 2); // nothing lost with the retired table
    expect(done.total).toBe(before.total + 2);
  }
}

test('one partition migrated: the new table is attached in its place, a row inserted through the parent lands there, the drop loses nothing', async () => {
  await migrateFebruary(false);
});

test('one partition migrated, then rolled back: the original partition is attached again with every row written meanwhile', async () => {
  await migrateFebruary(true);
});

test('a partitioned table as the source is refused at preflight, naming it', async () => {
  const t = uniqueName('payments');
  await monthlyPayments(t);
  const r = await runCli(['plan', 'validate', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))]);
  expect(r.code).toBe(2);
  expect(r.stdout + r.stderr).toMatch(new RegExp(`public\\.${t} is a partitioned table`));
});
