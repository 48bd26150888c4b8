/**
 * A partition as the source: the cutover detaches the old partition and attaches the new one under the same lock,
 * so the parent never routes a row to the retired table. Migrating one monthly partition used to leave the new
 * table standalone while the parent kept routing that month to the retired one, which the drop then removed. A
 * partitioned table migrated whole: every partition captured, the new tree's partitions take the old names.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
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

/**
 * A writer through the parent: inserts, updates, deletes, and updates that move a row to another partition (its
 * date, part of the key, changes). `known` is its record, by key.
 */
async function paymentsWriter(t: string, known: Map<string, string>, stop: () => boolean): Promise<number> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  let writes = 0;
  let nextId = 500_000;
  const day = (n: number) => new Date(Date.UTC(2024, 0, 1 + (n % 91))).toISOString().slice(0, 10);
  try {
    while (!stop()) {
      const keys = [...known.keys()];
      const pick = keys[Math.floor(Math.random() * keys.length)]!;
      const [id, paidOn] = pick.split('|') as [string, string];
      const op = Math.random();
      if (op < 0.3) {
        const key = `${nextId}|${day(nextId)}`;
        await client.query(`INSERT INTO public.${t} VALUES ($1, $2, 7.25)`, [nextId, day(nextId)]);
        known.set(key, '7.25');
        nextId++;
      } else if (op < 0.6) {
        const r = await client.query(`UPDATE public.${t} SET amount = amount + 1 WHERE id = $1 AND paid_on = $2 RETURNING amount::text`, [id, paidOn]);
        if (r.rowCount) known.set(pick, r.rows[0].amount);
      } else if (op < 0.8) {
        // Moves the row to another month's partition.
        const moved = day(Number(id) + 31);
        const r = await client.query(`UPDATE public.${t} SET paid_on = $3 WHERE id = $1 AND paid_on = $2 RETURNING amount::text`, [id, paidOn, moved]);
        if (r.rowCount) { known.delete(pick); known.set(`${id}|${moved}`, r.rows[0].amount); }
      } else {
        const r = await client.query(`DELETE FROM public.${t} WHERE id = $1 AND paid_on = $2`, [id, paidOn]);
        if (r.rowCount) known.delete(pick);
      }
      writes++;
      if (writes % 20 === 0) await sleep(2);
    }
  } finally {
    await client.end();
  }
  return writes;
}

test('a partitioned table migrated whole under a writer moving rows between partitions: the live tree equals its record', async () => {
  const t = uniqueName('payments');
  await monthlyPayments(t);
  const before = await routing(t);
  const known = new Map<string, string>();
  for (const r of await sql<{ key: string; amount: string }>(`SELECT id || '|' || paid_on AS key, amount::text AS amount FROM public.${t}`)) known.set(r.key, r.amount);
  const planName = t.replace(/_/g, '-');
  const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { copy: { chunkRows: 500, chunkTime: '0s', maxRowsPerSecond: 5000 } }));
  let stopping = false;
  const writer = paymentsWriter(t, known, () => stopping);
  let writes = 0;
  try {
    expect((await runCli(['start', plan])).code).toBe(0);
    const gate = await waitFor(planName, atPhase('awaiting_cutover'), 120_000);
    expect(gate.warnings.join('\n')).toMatch(/3 partitions of the new table take the names of the old ones/);
    // While safeshift captures the tree, emptying one partition (which fires no row trigger) is refused.
    await expect(sql(`TRUNCATE public.${t}_2024_01`)).rejects.toThrow(/refused/);
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'));
    await sleep(500);
  } finally {
    stopping = true;
    writes = await writer;
  }
  expect(writes).toBeGreaterThan(100);
  expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
  const end = await waitFor(planName, atPhase('done'));
  const after = await routing(t);
  expect(after.partitions).toEqual(before.partitions);
  expect(await sql(`SELECT 1 FROM pg_class WHERE relname LIKE $1`, [`${t}%retired%`])).toHaveLength(0);
  const live = await sql<{ key: string; amount: string }>(`SELECT id || '|' || paid_on AS key, amount::text AS amount FROM public.${t} ORDER BY id, paid_on`);
  const expected = [...known.entries()].map(([key, amount]) => ({ key, amount }))
    .sort((a, b) => Number(a.key.split('|')[0]) - Number(b.key.split('|')[0]) || a.key.localeCompare(b.key));
  expect(live.length).toBe(expected.length);
  expect(live).toEqual(expected);
  // Each row is in the partition its date belongs to, and the new tree keeps the parent's index on every partition.
  const misplaced = await sql(`SELECT 1 FROM public.${t}_2024_02 WHERE paid_on < '2024-02-01' OR paid_on >= '2024-03-01'`);
  expect(misplaced).toHaveLength(0);
  expect(await sql(`SELECT 1 FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%(amount)%'`, [`${t}_2024_03`])).toHaveLength(1);
  expect(end.copy.rowsCopied).toBeGreaterThan(8000);
}, 240_000);

test('a partitioned table migrated whole, then rolled back: the original tree is live again, partitions by name, with every write made meanwhile', async () => {
  const t = uniqueName('payments');
  await monthlyPayments(t);
  const originalOids = await sql<{ name: string; oid: number }>(
    `SELECT c.relname AS name, c.oid::int AS oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [`public.${t}`]);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  // Writes on the new tree: an insert, an update, a row moved to another month, a delete.
  await sql(`INSERT INTO public.${t} VALUES (700001, '2024-03-05', 9.99)`);
  await sql(`UPDATE public.${t} SET amount = 1234.5 WHERE id = 10`);
  await sql(`UPDATE public.${t} SET paid_on = '2024-03-31' WHERE id = 20`);
  await sql(`DELETE FROM public.${t} WHERE id = 30`);
  const written = await sql(`SELECT id, paid_on::text, amount::text FROM public.${t} ORDER BY id, paid_on`);
  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
  expect(await sql(`SELECT c.relname AS name, c.oid::int AS oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, [`public.${t}`]))
    .toEqual(originalOids);
  expect(await sql(`SELECT id, paid_on::text, amount::text FROM public.${t} ORDER BY id, paid_on`)).toEqual(written);
  expect(await sql(`SELECT relname FROM pg_class WHERE relname LIKE $1`, [`${t}%new%`])).toEqual([]);
});

test('tables in an inheritance hierarchy (not partitions) are refused at preflight, naming the other table', async () => {
  const t = uniqueName('events');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, at date NOT NULL)`);
  await sql(`CREATE TABLE public.${t}_old (id int PRIMARY KEY, at date NOT NULL) INHERITS (public.${t})`);
  await sql(`INSERT INTO public.${t} VALUES (1, '2024-01-01')`);
  await sql(`INSERT INTO public.${t}_old VALUES (2, '2020-01-01')`);
  // The parent: reading it reads the child's rows too, which a copy would duplicate into the new table.
  const parent = await runCli(['plan', 'validate', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))]);
  expect(parent.code).toBe(2);
  expect(parent.stdout + parent.stderr).toMatch(new RegExp(`public\\.${t}_old inherits from public\\.${t}`));
  // The child: the parent reads its rows; once retired and dropped they would be gone from the parent.
  const child = await runCli(['plan', 'validate', writePlan(basePlan(`${t}_old`, `public.${t}_old`, `public.${t}_old_v2`))]);
  expect(child.code).toBe(2);
  expect(child.stdout + child.stderr).toMatch(new RegExp(`public\\.${t}_old inherits from public\\.${t}`));
});
