/**
 * Splitting a shared table into per-project tables under live writes (issue 16, item 2): a writer inserts,
 * updates, deletes and moves rows between projects through the whole split, and every project table ends equal to
 * the writer's own record of that project's rows.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';
import { inspectPlan, PlanCheckFailed } from '../../activities/preflight';
import { loadPlan } from '../../src/plan/load';

interface Row { project: string; v: number; note: string }

const PROJECTS = ['a1b2c3d4-0000-4000-8000-00000000000a', 'a1b2c3d4-0000-4000-8000-00000000000b', 'a1b2c3d4-0000-4000-8000-00000000000c'];
const SEED = 3000;

/** One connection writing through `table` (the live name), keeping an exact record of the last write per id. */
async function writer(table: string, known: Map<number, Row>, stop: () => boolean, stats: Record<string, number>): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  let nextId = SEED;
  try {
    let ids = [...known.keys()];
    for (let i = 0; !stop(); i++) {
      if (i % 50 === 0) ids = [...known.keys()];
      const pick = ids[Math.floor(Math.random() * ids.length)];
      const project = PROJECTS[i % PROJECTS.length]!;
      const op = Math.random();
      if (op < 0.3 || pick === undefined) {
        const id = ++nextId;
        await client.query(`INSERT INTO ${table} (id, project_id, v, note) VALUES ($1, $2, $3, $4)`, [id, project, i, `ins ${i}`]);
        known.set(id, { project, v: i, note: `ins ${i}` });
        stats.inserts!++;
      } else if (op < 0.65) {
        const r = await client.query(`UPDATE ${table} SET v = $2, note = $3 WHERE id = $1`, [pick, i, `upd ${i}`]);
        if (r.rowCount === 1) known.set(pick, { ...known.get(pick)!, v: i, note: `upd ${i}` });
        stats.updates!++;
      } else if (op < 0.85) {
        // The row changes project: it must leave one project table and arrive in another.
        const r = await client.query(`UPDATE ${table} SET project_id = $2, v = $3 WHERE id = $1`, [pick, project, i]);
        if (r.rowCount === 1) known.set(pick, { ...known.get(pick)!, project, v: i });
        stats.moves!++;
      } else {
        const r = await client.query(`DELETE FROM ${table} WHERE id = $1`, [pick]);
        if (r.rowCount === 1) known.delete(pick);
        stats.deletes!++;
      }
      if (i % 10 === 0) await sleep(2);
    }
  } finally {
    await client.end();
  }
}

/** The writer's record of one project's rows, in key order, as the tables are compared. */
function expectedRows(known: Map<number, Row>, project: string): { id: string; project_id: string; v: number; note: string }[] {
  return [...known.entries()].filter(([, r]) => r.project === project).sort((a, b) => a[0] - b[0])
    .map(([id, r]) => ({ id: String(id), project_id: r.project, v: r.v, note: r.note }));
}

async function rowsOf(table: string, where = 'true'): Promise<{ id: string; project_id: string; v: number; note: string }[]> {
  return sql(`SELECT x.id::text AS id, x.project_id::text AS project_id, x.v, x.note FROM ${table} x WHERE ${where} ORDER BY x.id`);
}

/** A split plan of project `i` into its own schema. */
function splitPlan(t: string, schema: string, project: string, name: string): string {
  return writePlan(basePlan(name, `public.${t}`, `${schema}.stories`, {
    where: `project_id = '${project}'`,
    backup: { table: false },
    // Slow enough that the writer's changes land before, inside and after every chunk.
    copy: { chunkRows: 300, maxRowsPerSecond: 3000 },
  }));
}

test('a shared table split project by project under a live writer: each project table equals the writer\'s record of that project; a rollback brings its rows back', async () => {
  const t = uniqueName('stories');
  const schemas = PROJECTS.map((_, i) => `project_${t}_${'abc'[i]}`);
  await sql(`CREATE TABLE public.${t} (id bigint PRIMARY KEY, project_id uuid NOT NULL, v int NOT NULL, note text)`);
  await sql(`INSERT INTO public.${t} SELECT g, ($1::uuid[])[1 + g % 3], g, 'seed ' || g FROM generate_series(1, ${SEED}) g`, [PROJECTS]);
  // Row security with a policy, as on Supabase: the project tables must get both.
  await sql(`ALTER TABLE public.${t} ENABLE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY members ON public.${t} FOR ALL TO authenticated USING (v >= 0) WITH CHECK (v >= 0)`);
  for (const s of schemas) await sql(`CREATE SCHEMA ${s}`);
  const known = new Map<number, Row>();
  for (let g = 1; g <= SEED; g++) known.set(g, { project: PROJECTS[g % 3]!, v: g, note: `seed ${g}` });
  const names = PROJECTS.map((_, i) => `${t}-${'abc'[i]}`.replace(/_/g, '-'));
  const timings: Record<string, number> = {};
  const timed = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try { return await fn(); } finally { timings[what] = Date.now() - t0; }
  };

  // A filter the catalog refuses fails the plan check (PlanCheckFailed: exit 2 from plan validate and start), named.
  const badFilter = async (where: string): Promise<string[]> => {
    const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    try {
      await inspectPlan(client, loadPlan(writePlan(basePlan(`${t}_bad`, `public.${t}`, `${schemas[0]}.stories`, { where }))).plan, '00000000000000', { rehearse: false });
      return [];
    } catch (err) {
      if (err instanceof PlanCheckFailed) return err.problems;
      throw err;
    } finally {
      await client.end();
    }
  };
  await timed('bad', async () => {
    for (const [where, says] of [['v > extract(epoch FROM now())', /^where: .*IMMUTABLE/], ['note', /^where: .*boolean/], ['nosuch = 1', /^where: .*nosuch/]] as const) {
      const problems = await badFilter(where);
      expect(problems.filter((p) => !p.startsWith('where: '))).toEqual([]);
      expect(problems).toEqual(expect.arrayContaining([expect.stringMatching(says)]));
    }
  });

  let stopping = false;
  const stats: Record<string, number> = { inserts: 0, updates: 0, moves: 0, deletes: 0 };
  // Through the old name all along: the shared table first, the split view after the first cutover.
  const writing = writer(`public.${t}`, known, () => stopping, stats);
  try {
    await sleep(300);
    // Project a to the end (its drop phase deletes its old rows from the shared table).
    for (const i of [0]) {
      const started = await timed(`split ${i}`, () => runCli(['start', splitPlan(t, schemas[i]!, PROJECTS[i]!, names[i]!), '--auto-approve', '--json']));
      expect(started).toMatchObject({ code: 0, stderr: '' });
      const done = await statusOf(names[i]!);
      expect(done.phase).toBe('done');
      timings[`phases ${i}`] = Object.values(done.phaseDurationsMs).reduce((x, y) => x + y, 0);
    }
    // Project b, the second split (its source is the split view now): after cutover the writer goes on through the
    // view for a while, moving rows between the project tables and the shared one, then the split is rolled back.
    await timed('split 1', async () => {
      expect((await runCli(['start', splitPlan(t, schemas[1]!, PROJECTS[1]!, names[1]!)])).code).toBe(0);
      await waitFor(names[1]!, atPhase('awaiting_cutover'), 90_000);
      expect((await runCli(['approve', names[1]!, '--as', 'alice'])).code).toBe(0);
      await waitFor(names[1]!, atPhase('awaiting_drop'), 60_000);
      const before = stats.inserts! + stats.moves!;
      await sleep(1000);
      expect(stats.inserts! + stats.moves! - before).toBeGreaterThan(5);
      expect((await runCli(['rollback', names[1]!, '--as', 'carol'])).code).toBe(0);
      await waitFor(names[1]!, atPhase('rolled_back'), 60_000);
    });
    await sleep(300);
  } finally {
    stopping = true;
    await writing;
  }
  console.log(`split test timings (ms): ${JSON.stringify(timings)}; writer: ${JSON.stringify(stats)}`);
  expect(stats.moves).toBeGreaterThan(20);

  // The project table is exactly the writer's record of its project; the rest, the rolled-back project's rows
  // written after its cutover included, is in the shared table, and nothing else is.
  expect(await rowsOf(`${schemas[0]}.stories`)).toEqual(expectedRows(known, PROJECTS[0]!));
  const rest = [...known.entries()].filter(([, r]) => r.project !== PROJECTS[0]).sort((a, b) => a[0] - b[0])
    .map(([id, r]) => ({ id: String(id), project_id: r.project, v: r.v, note: r.note }));
  expect(await rowsOf(`public.${t}_shared`)).toEqual(rest);
  expect(await sql(`SELECT to_regclass($1) AS c`, [`${schemas[1]}.stories`])).toEqual([{ c: null }]);
  // Through the old name, every row, wherever it lives.
  const all = [...known.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => ({ id: String(id), project_id: r.project, v: r.v, note: r.note }));
  expect(await rowsOf(`public.${t}`)).toEqual(all);
  // Access: the project tables and the view have the shared table's grants and row-security flags.
  const access = await sql<{ rel: string; acl: string; rls: boolean }>(
    `SELECT c.oid::regclass::text AS rel, array(SELECT format('%s:%s', pg_get_userbyid(x.grantee), x.privilege_type) FROM aclexplode(c.relacl) x
        WHERE x.grantee <> c.relowner ORDER BY 1)::text AS acl, c.relrowsecurity AS rls FROM pg_class c WHERE c.oid = ANY ($1::regclass[]) ORDER BY 1`,
    [[`public.${t}_shared`, `${schemas[0]}.stories`]]);
  expect(new Set(access.map((a) => `${a.acl} ${a.rls}`)).size).toBe(1);
  const [view] = await sql<{ acl: string }>(`SELECT array(SELECT format('%s:%s', pg_get_userbyid(x.grantee), x.privilege_type) FROM aclexplode(c.relacl) x
      WHERE x.grantee <> c.relowner ORDER BY 1)::text AS acl FROM pg_class c WHERE c.oid = $1::regclass`, [`public.${t}`]);
  expect(view!.acl).toBe(access[0]!.acl);
  expect(access[0]!.acl).toContain('anon:SELECT'); // the shared table's own grants (Supabase's default privileges), not none
  expect(access.every((a) => a.rls)).toBe(true);
  const policies = await sql<{ def: string }>(`SELECT format('%s %s %s %s %s', polname, polcmd, polroles::regrole[], pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) AS def
      FROM pg_policy WHERE polrelid = ANY ($1::regclass[]) ORDER BY polrelid`, [[`public.${t}_shared`, `${schemas[0]}.stories`]]);
  expect(policies.length).toBe(2);
  expect(policies[1]!.def).toBe(policies[0]!.def);
}, 240_000);
