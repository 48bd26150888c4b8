/**
 * A key type change (issue 15): `id integer` primary key → `id bigint`, the most common big-table migration, under
 * a writer that inserts, updates, changes keys and deletes throughout. Chunks and capture go by the source's
 * integer key, replay and range deletes compare it with the target's bigint. Through cutover the live table equals
 * the writer's record; after cutover a key beyond integer's range blocks the rollback cleanly (named, no value told)
 * until it is removed, and the rollback then brings every write back into the original integer table. A key
 * change that does not keep the order (integer → text) is refused by preflight, naming the column and why.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { atPhase, basePlan, relationOid, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

interface Row { v: number; note: string }

/** One connection writing ids of its own, so `known` is exactly the last write per id. */
async function writer(table: string, known: Map<number, Row>, stop: () => boolean, stats: { writes: number; keyChanges: number }): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  client.on('error', () => undefined); // the stack going down at the end of a failed run: the query fails instead
  await client.connect();
  let nextId = 1_000_000 + stats.writes * 10; // a second run of the writer starts past the first one's ids
  try {
    let ids = [...known.keys()];
    for (let i = 0; !stop(); i++) {
      if (i % 50 === 0) ids = [...known.keys()];
      const pick = ids[Math.floor(Math.random() * ids.length)];
      const op = Math.random();
      const v = stats.writes;
      if (op < 0.3 || pick === undefined) {
        const id = ++nextId;
        await client.query(`INSERT INTO public.${table} (id, v, note) VALUES ($1, $2, $3)`, [id, v, `ins ${v}`]);
        known.set(id, { v, note: `ins ${v}` });
      } else if (op < 0.7) {
        const r = await client.query(`UPDATE public.${table} SET v = $2, note = $3 WHERE id = $1`, [pick, v, `upd ${v}`]);
        if (r.rowCount === 1) known.set(pick, { v, note: `upd ${v}` });
      } else if (op < 0.85) {
        const id = ++nextId;
        const r = await client.query(`UPDATE public.${table} SET id = $2 WHERE id = $1`, [pick, id]);
        if (r.rowCount === 1) {
          known.set(id, known.get(pick)!);
          known.delete(pick);
          stats.keyChanges++;
        }
      } else {
        const r = await client.query(`DELETE FROM public.${table} WHERE id = $1`, [pick]);
        if (r.rowCount === 1) known.delete(pick);
      }
      stats.writes++;
      if (i % 20 === 0) await sleep(1);
    }
  } finally {
    await client.end();
  }
}

async function liveEqualsRecord(table: string, known: Map<number, Row>): Promise<void> {
  const live = await sql<{ key: string; v: number; note: string }>(`SELECT id::text AS key, v, note FROM public.${table} ORDER BY id`);
  const expected = [...known.entries()].sort((a, b) => a[0] - b[0]).map(([id, r]) => ({ key: String(id), v: r.v, note: r.note }));
  expect(live.length).toBe(expected.length);
  expect(live).toEqual(expected);
}

const keyType = async (oid: number) =>
  (await sql<{ type: string }>(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1 AND attname = 'id'`, [oid]))[0]!.type;

const src = uniqueName('widen');
const planName = src.replace(/_/g, '-');
const BEYOND_INT = 3_000_000_000;

beforeAll(async () => {
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, v int NOT NULL, note text)`);
  await sql(`INSERT INTO public.${src} SELECT g, g, 'seed ' || g FROM generate_series(1, 5000) g`);
});

test('a key change that does not keep the order (integer → text) is refused by preflight, naming the column and why', async () => {
  const plan = writePlan(basePlan(`${planName}-text`, `public.${src}`, `public.${src}_t`, {
    create: `CREATE TABLE public.${src}_t (id text PRIMARY KEY, v int NOT NULL, note text)`,
  }));
  const result = await runCli(['plan', 'validate', plan]);
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(/key: key column id is integer in the source but text in the target: the order differs/);
});

test('integer → bigint key under a writer: equal to its record through cutover; a key beyond integer blocks the rollback cleanly; then rolled back with every write', async () => {
  const sourceOid = await relationOid(`public.${src}`);
  const known = new Map<number, Row>();
  for (let g = 1; g <= 5000; g++) known.set(g, { v: g, note: `seed ${g}` });
  const plan = writePlan(basePlan(planName, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY, v int NOT NULL, note text)`,
    copy: { chunkRows: 500, maxRowsPerSecond: 5000 }, // the writer's changes land before, inside and after chunks
  }));
  const stats = { writes: 0, keyChanges: 0 };
  let stopping = false;
  let writing = writer(src, known, () => stopping, stats);
  writing.catch(() => undefined); // awaited below; a failed test must not leave it unhandled

  expect((await runCli(['start', plan])).code).toBe(0);
  const gate = await waitFor(planName, atPhase('awaiting_cutover'), 90_000);
  // The way back narrows the key: the gate says so.
  expect(gate.rollbackRisks).toEqual([expect.objectContaining({ column: 'id', from: 'bigint', to: 'integer', effect: 'refused' })]);
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'), 60_000);
  await sleep(300); // the writer goes on against the new table
  stopping = true;
  await writing;
  const targetOid = await relationOid(`public.${src}`);
  expect(targetOid).not.toBe(sourceOid);
  expect(await keyType(targetOid)).toBe('bigint');
  expect(stats.keyChanges).toBeGreaterThan(10);
  expect((await statusOf(planName)).catchUp.replayedChanges).toBeGreaterThan(0);
  await liveEqualsRecord(src, known);

  // After cutover: a key the original integer column cannot hold, and the writer again.
  await sql(`INSERT INTO public.${src} (id, v, note) VALUES ($1, 0, 'too big')`, [BEYOND_INT]);
  stopping = false;
  writing = writer(src, known, () => stopping, stats);
  writing.catch(() => undefined);
  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  const blocked = await waitFor(planName, (s) => s.rollbackBlocked !== undefined, 60_000);
  expect(blocked.phase).toBe('rollback_blocked');
  expect(blocked.rollbackBlocked).toMatchObject({ sqlstate: '22003', column: 'id', rows: 1 });
  expect(JSON.stringify(blocked)).not.toContain(String(BEYOND_INT));
  expect(await relationOid(`public.${src}`)).toBe(targetOid); // still live, still recording

  await sql(`DELETE FROM public.${src} WHERE id = $1`, [BEYOND_INT]);
  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'), 60_000);
  await sleep(300);
  stopping = true;
  await writing;
  expect(await relationOid(`public.${src}`)).toBe(sourceOid);
  expect(await keyType(sourceOid)).toBe('integer');
  await liveEqualsRecord(src, known);
}, 180_000);
