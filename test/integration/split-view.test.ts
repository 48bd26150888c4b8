/**
 * Writes through a split's view (src/split-view.ts) never lose an update. Two sessions increment the same row
 * through the old name; the second one's INSTEAD OF trigger was handed the row as its statement read it, before the
 * first committed. A table re-reads the row (EvalPlanQual) and ends at 2; the trigger used to write 1 over the first
 * session's 1, a lost update, silently. Now it either applies on the row as it is or fails with 40001 (retry).
 * Likewise two sessions inserting one new key for two projects (two tables, no index spans both) both got it.
 */
import pg from 'pg';
import { applySplitView, copyAccess, type SplitRow } from '../../src/split-view';
import { asRole } from '../support/supabase';
import { sql, uniqueName } from '../support/helpers';

const connect = async () => {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  return c;
};

test('two sessions writing one row through the split view: no update is lost, one key is taken once, a moved row moves once', async () => {
  const name = uniqueName('splitview');
  await sql(`CREATE TABLE public.${name}_shared (id int PRIMARY KEY, project text NOT NULL, v int NOT NULL)`);
  await sql(`CREATE TABLE public.${name}_a (id int PRIMARY KEY, project text NOT NULL, v int NOT NULL)`);
  const [shared, a] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid UNION ALL SELECT $2::regclass::oid::int`, [`public.${name}_shared`, `public.${name}_a`]);
  const split: SplitRow = { targetOid: a!.oid, sharedOid: shared!.oid, live: { schema: 'public', name }, filter: `project = 'a'`, runId: 'test', state: 'live' };
  const admin = await connect();
  try {
    await admin.query('BEGIN');
    await applySplitView(admin, shared!.oid, [split], ['id'], split.live);
    await admin.query('COMMIT');
  } finally {
    await admin.end();
  }
  await sql(`INSERT INTO public.${name} VALUES (1, 'a', 0), (2, 'b', 0)`);
  expect(await sql(`SELECT id, v FROM public.${name}_a`)).toEqual([{ id: 1, v: 0 }]);

  for (const id of [1, 2]) {
    const first = await connect();
    const second = await connect();
    try {
      await first.query('BEGIN');
      await first.query(`UPDATE public.${name} SET v = v + 1 WHERE id = $1`, [id]);
      // The second statement reads v = 0 through the view, then waits on the first's row lock in its trigger.
      const late = second.query(`UPDATE public.${name} SET v = v + 1 WHERE id = $1`, [id]).then(() => 'applied', (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 300));
      await first.query('COMMIT');
      const outcome = await late;
      const [row] = await sql<{ v: number }>(`SELECT v FROM public.${name} WHERE id = $1`, [id]);
      // Applied on the row as it is now (2), or refused for a retry (40001, the row at 1): never applied on the old row.
      expect(outcome === 'applied' ? row!.v : `${outcome}:${row!.v}`).toBe(outcome === 'applied' ? 2 : '40001:1');
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
  }

  // Two sessions inserting one new key, for two projects (so into two tables no index spans): one gets it.
  {
    const first = await connect();
    const second = await connect();
    try {
      await first.query('BEGIN');
      await first.query(`INSERT INTO public.${name} VALUES (5, 'a', 0)`);
      const late = second.query(`INSERT INTO public.${name} VALUES (5, 'b', 0)`).then(() => 'applied', (e: { code?: string }) => e.code);
      await new Promise((r) => setTimeout(r, 300));
      await first.query('COMMIT');
      expect(await late).toBe('23505');
      expect(await sql(`SELECT project FROM public.${name} WHERE id = 5`)).toEqual([{ project: 'a' }]);
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
  }

  // A row moving project (shared → a) through the view while another session changes it: not duplicated, not lost.
  const first = await connect();
  const second = await connect();
  try {
    await first.query('BEGIN');
    await first.query(`UPDATE public.${name} SET v = v + 10 WHERE id = 2`);
    const late = second.query(`UPDATE public.${name} SET project = 'a' WHERE id = 2`).then(() => 'applied', (e: { code?: string }) => e.code);
    await new Promise((r) => setTimeout(r, 300));
    await first.query('COMMIT');
    const outcome = await late;
    const rows = await sql<{ project: string; v: number }>(`SELECT project, v FROM public.${name} WHERE id = 2`);
    expect(rows).toHaveLength(1);
    expect(outcome === 'applied' ? rows[0] : `${outcome}:${rows[0]!.project}`).toEqual(outcome === 'applied' ? { project: 'a', v: 11 } : '40001:b');
  } finally {
    await Promise.all([first.end(), second.end()]);
  }
});

test('a policy naming the table\'s own columns inside a subquery (membership, as on Supabase) works on the project table', async () => {
  const name = uniqueName('splitpol');
  await sql(`CREATE TABLE public.${name}_members (project text, who uuid)`);
  await sql(`GRANT SELECT ON public.${name}_members TO authenticated`);
  await sql(`INSERT INTO public.${name}_members VALUES ('a', '00000000-0000-0000-0000-00000000000a')`);
  await sql(`CREATE TABLE public.${name}_shared (id int PRIMARY KEY, project text NOT NULL)`);
  await sql(`CREATE TABLE public.${name}_a (id int PRIMARY KEY, project text NOT NULL)`);
  await sql(`ALTER TABLE public.${name}_shared ENABLE ROW LEVEL SECURITY`);
  // PostgreSQL prints the outer column as ${name}_shared.project: on the project table that name is not in scope.
  await sql(`CREATE POLICY members ON public.${name}_shared TO authenticated
    USING (EXISTS (SELECT 1 FROM public.${name}_members m WHERE m.project = ${name}_shared.project AND m.who = auth.uid()))`);
  await sql(`INSERT INTO public.${name}_a VALUES (1, 'a'), (2, 'b')`);
  const [shared, a] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid UNION ALL SELECT $2::regclass::oid::int`, [`public.${name}_shared`, `public.${name}_a`]);
  const admin = await connect();
  try {
    await admin.query('BEGIN');
    await copyAccess(admin, shared!.oid, a!.oid);
    await admin.query('COMMIT');
  } finally {
    await admin.end();
  }
  const [def] = await sql<{ qual: string }>(`SELECT pg_get_expr(polqual, polrelid) AS qual FROM pg_policy WHERE polrelid = $1`, [a!.oid]);
  expect(def!.qual).toContain(`${name}_a.project`);
  const member = { sub: '00000000-0000-0000-0000-00000000000a', role: 'authenticated' };
  expect(await asRole('authenticated', `SELECT id FROM public.${name}_a ORDER BY id`, [], member)).toEqual([{ id: 1 }]);
});
