/**
 * Splitting a shared table into per-project tables under live writes (issue 16, item 2): a writer inserts,
 * updates, deletes and moves rows between projects through the whole split, and every project table ends equal to
 * the writer's own record of that project's rows.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

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

test('a shared table split project by project under a live writer: each project table equals the writer\'s record of that project', async () => {
  const t = uniqueName('stories');
  const schemas = PROJECTS.map((_, i) => `project_${t}_${'abc'[i]}`);
  await sql(`CREATE TABLE public.${t} (id bigint PRIMARY KEY, project_id uuid NOT NULL, v int NOT NULL, note text)`);
  await sql(`INSERT INTO public.${t} SELECT g, ($1::uuid[])[1 + g % 3], g, 'seed ' || g FROM generate_series(1, ${SEED}) g`, [PROJECTS]);
  for (const s of schemas) await sql(`CREATE SCHEMA ${s}`);
  const known = new Map<number, Row>();
  for (let g = 1; g <= SEED; g++) known.set(g, { project: PROJECTS[g % 3]!, v: g, note: `seed ${g}` });

  // A bad filter is refused before anything starts: exit 2, the field named.
  const bad = await runCli(['plan', 'validate', writePlan(basePlan(`${t}_bad`, `public.${t}`, `${schemas[0]}.stories`, { where: 'v > extract(epoch FROM now())' }))]);
  expect(bad.code).toBe(2);
  expect(bad.stderr + bad.stdout).toMatch(/where: .*IMMUTABLE/);

  let stopping = false;
  const stats: Record<string, number> = { inserts: 0, updates: 0, moves: 0, deletes: 0 };
  const writing = writer(`public.${t}`, known, () => stopping, stats);
  try {
    await sleep(300);
    const name = `${t}-a`.replace(/_/g, '-');
    const plan = writePlan(basePlan(name, `public.${t}`, `${schemas[0]}.stories`, {
      where: `project_id = '${PROJECTS[0]}'`,
      backup: { table: false },
      // Slow enough that the writer's changes land before, inside and after every chunk.
      copy: { chunkRows: 200, maxRowsPerSecond: 2000 },
    }));
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(name, atPhase('awaiting_cutover'), 90_000);
    await sleep(500);
    stopping = true;
    await writing;
    const [oid] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [`public.${t}`]);
    const deadline = Date.now() + 30_000;
    while (Number((await sql<{ n: string }>(`SELECT count(*)::text AS n FROM safeshift.changes_${oid!.oid}`))[0]!.n) > 0 && Date.now() < deadline) await sleep(200);
    expect(stats.moves).toBeGreaterThan(20);
    expect(await rowsOf(`${schemas[0]}.stories`)).toEqual(expectedRows(known, PROJECTS[0]!));
    expect((await runCli(['reject', name, '--as', 'alice'])).code).toBe(0);
    await waitFor(name, atPhase('rolled_back'), 60_000);
  } finally {
    stopping = true;
    await writing;
  }
}, 240_000);
