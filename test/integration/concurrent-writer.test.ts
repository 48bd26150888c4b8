/**
 * Zero loss while the application keeps writing: a writer inserts, updates (including key changes) and deletes
 * through the whole migration, on the live name, and the live table at the end equals the writer's own record.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

interface Row { v: number; note: string }

/** One connection, its own ids (id % writers == slot), so its record of the last write per id is exact. */
async function writer(table: string, slot: number, writers: number, known: Map<number, Row>, stop: () => boolean, stats: Record<string, number>): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  let nextId = 1_000_000 + slot;
  const mine = () => [...known.keys()].filter((id) => id % writers === slot);
  try {
    let ids = mine();
    for (let i = 0; !stop(); i++) {
      if (i % 50 === 0) ids = mine();
      const pick = ids[Math.floor(Math.random() * ids.length)];
      const op = Math.random();
      if (op < 0.3 || pick === undefined) {
        const id = (nextId += writers);
        await client.query(`INSERT INTO public.${table} (id, v, note) VALUES ($1, $2, $3)`, [id, i, `ins ${i}`]);
        known.set(id, { v: i, note: `ins ${i}` });
        stats.inserts!++;
      } else if (op < 0.7) {
        const r = await client.query(`UPDATE public.${table} SET v = $2, note = $3 WHERE id = $1`, [pick, i, `upd ${i}`]);
        if (r.rowCount === 1) known.set(pick, { v: i, note: `upd ${i}` });
        stats.updates!++;
      } else if (op < 0.85) {
        const id = (nextId += writers);
        const r = await client.query(`UPDATE public.${table} SET id = $2 WHERE id = $1`, [pick, id]);
        if (r.rowCount === 1) {
          known.set(id, known.get(pick)!);
          known.delete(pick);
        }
        stats.keyChanges!++;
      } else {
        const r = await client.query(`DELETE FROM public.${table} WHERE id = $1`, [pick]);
        if (r.rowCount === 1) known.delete(pick);
        stats.deletes!++;
      }
      if (i % 20 === 0) await sleep(1);
    }
  } finally {
    await client.end();
  }
}

async function migrateUnderWrites(rollbackAfterCutover: boolean): Promise<void> {
  const src = uniqueName('busy');
  await sql(`CREATE TABLE public.${src} (id bigint PRIMARY KEY, v int NOT NULL, note text)`);
  await sql(`INSERT INTO public.${src} SELECT g, g, 'seed ' || g FROM generate_series(1, 20000) g`);
  const known = new Map<number, Row>();
  for (let g = 1; g <= 20000; g++) known.set(g, { v: g, note: `seed ${g}` });
  const planName = src.replace(/_/g, '-');
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY, v int NOT NULL, note text, source text NOT NULL DEFAULT 'v2')`,
    // Slow enough that the writer's changes land before, inside and after every chunk.
    copy: { chunkRows: 500, maxRowsPerSecond: 8000 },
  }));

  let stopping = false;
  const stats: Record<string, number> = { inserts: 0, updates: 0, keyChanges: 0, deletes: 0 };
  const total = () => stats.inserts! + stats.updates! + stats.keyChanges! + stats.deletes!;
  const writers = [0, 1].map((slot) => writer(src, slot, 2, known, () => stopping, stats));
  await sleep(300);
  let started: { code: number; stderr: string };
  let afterCutover = 0;
  if (rollbackAfterCutover) {
    started = await runCli(['start', plan]);
    await waitFor(planName, atPhase('awaiting_cutover'), 120_000);
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'), 60_000);
    const atCutover = total();
    await sleep(1000); // the writer keeps going on the new table
    afterCutover = total() - atCutover;
    expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
    await waitFor(planName, atPhase('rolled_back'), 60_000);
  } else {
    started = await runCli(['start', plan, '--auto-approve', '--json']);
  }
  const atEnd = total();
  await sleep(500); // a few more writes on whichever table is live now
  stopping = true;
  await Promise.all(writers);

  expect(started).toMatchObject({ code: 0, stderr: '' });
  const s = await statusOf(planName);
  expect(s.phase).toBe(rollbackAfterCutover ? 'rolled_back' : 'done');
  expect(s.catchUp.replayedChanges).toBeGreaterThan(0);
  expect(stats.keyChanges).toBeGreaterThan(20);
  expect(total()).toBeGreaterThan(atEnd);
  if (rollbackAfterCutover) expect(afterCutover).toBeGreaterThan(20);

  const live = await sql<{ key: string; v: number; note: string }>(`SELECT id::text AS key, v, note FROM public.${src} ORDER BY id`);
  const expected = [...known.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => ({ key: String(id), v: r.v, note: r.note }));
  expect(live.length).toBe(expected.length);
  expect(live).toEqual(expected);
  const columns = await sql<{ attname: string }>(`SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`, [`public.${src}`]);
  expect(columns.some((c) => c.attname === 'source')).toBe(!rollbackAfterCutover);
}

test('a writer inserting, updating (keys too) and deleting throughout: the live table equals its record, row by row', async () => {
  await migrateUnderWrites(false);
}, 240_000);

test('the same writer, then rollback after cutover: the original table, live again, equals its record too', async () => {
  await migrateUnderWrites(true);
}, 240_000);
