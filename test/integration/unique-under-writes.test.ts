/**
 * Valid concurrent writes never fail a migration on a unique secondary index. A writer hands unique values from
 * rows the copy has already taken to rows it has not reached yet, and changes primary keys, during the copy, the
 * catch-up and the cutover gate: every chunk and every replay batch meets stale copies of those values. The
 * migration must bring the stale rows up to date instead of failing, and end equal to the writer's record. A
 * constraint the target adds that the source's data really breaks still fails fast, named, with no values shown.
 */
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

const ROWS = 30_000;

/**
 * One connection. Each transaction either hands a row's email to another row (the giver gets a fresh one first, as
 * a unique index demands), swaps two rows' emails through a placeholder, or changes a primary key. `known` is the
 * writer's own record of every row.
 */
async function handOver(table: string, known: Map<number, string>, stop: () => boolean, stats: Record<string, number>): Promise<void> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  let fresh = 0;
  let nextId = 10_000_000;
  const ids = () => [...known.keys()];
  try {
    for (let i = 0; !stop(); i++) {
      const all = ids();
      // Givers from the low end (copied early), takers from the high end (copied late): every handed value leaves a
      // stale copy behind in the target that a later chunk or replay collides with.
      const giver = all[Math.floor(Math.random() * all.length * 0.3)]!;
      const taker = all[all.length - 1 - Math.floor(Math.random() * all.length * 0.3)]!;
      if (giver === taker) continue;
      const op = i % 3;
      await client.query('BEGIN');
      try {
        if (op === 0) {
          const value = known.get(giver)!;
          const replacement = `fresh-${process.pid}-${fresh++}@example.org`;
          await client.query(`UPDATE public.${table} SET email = $2 WHERE id = $1`, [giver, replacement]);
          await client.query(`UPDATE public.${table} SET email = $2 WHERE id = $1`, [taker, value]);
          await client.query('COMMIT');
          known.set(giver, replacement);
          known.set(taker, value);
          stats.handovers!++;
        } else if (op === 1) {
          const a = known.get(giver)!;
          const b = known.get(taker)!;
          await client.query(`UPDATE public.${table} SET email = 'swap-' || id WHERE id = $1`, [giver]);
          await client.query(`UPDATE public.${table} SET email = $2 WHERE id = $1`, [taker, a]);
          await client.query(`UPDATE public.${table} SET email = $2 WHERE id = $1`, [giver, b]);
          await client.query('COMMIT');
          known.set(giver, b);
          known.set(taker, a);
          stats.swaps!++;
        } else {
          // A low key moves to the high end, carrying its email: the copy meets that email again under a new key.
          const id = nextId++;
          await client.query(`UPDATE public.${table} SET id = $2 WHERE id = $1`, [giver, id]);
          await client.query('COMMIT');
          known.set(id, known.get(giver)!);
          known.delete(giver);
          stats.keyChanges!++;
        }
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
      if (i % 10 === 0) await sleep(1);
    }
  } finally {
    await client.end();
  }
}

async function migrateWithHandovers(rollbackAfterCutover: boolean): Promise<void> {
  const src = uniqueName('handover');
  await sql(`CREATE TABLE public.${src} (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, n int NOT NULL)`);
  await sql(`CREATE UNIQUE INDEX ${src}_lower_email ON public.${src} (lower(email))`);
  await sql(`INSERT INTO public.${src} SELECT g, 'user' || g || '@example.org', g FROM generate_series(1, ${ROWS}) g`);
  const known = new Map<number, string>();
  for (let g = 1; g <= ROWS; g++) known.set(g, `user${g}@example.org`);
  const planName = src.replace(/_/g, '-');
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    // The default target (LIKE ... INCLUDING ALL) keeps both unique indexes. Slow chunks: writes land between them.
    copy: { chunkRows: 500, chunkTime: '0s', maxRowsPerSecond: 6000 },
  }));

  let stopping = false;
  const stats: Record<string, number> = { handovers: 0, swaps: 0, keyChanges: 0 };
  const writer = handOver(src, known, () => stopping, stats);
  try {
    expect((await runCli(['start', plan])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_cutover'), 150_000);
    await sleep(3000); // the follower replays the writer's changes while the gate waits
    expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
    await waitFor(planName, atPhase('awaiting_drop'), 60_000);
    await sleep(1500); // the writer goes on handing values around in the new table
    if (rollbackAfterCutover) {
      // The swap back carries those writes into the old table, whose unique indexes hold their stale values.
      expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
      await waitFor(planName, atPhase('rolled_back'), 60_000);
      await sleep(300);
    }
  } finally {
    stopping = true;
    await writer;
  }
  if (!rollbackAfterCutover) {
    expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
    await waitFor(planName, atPhase('done'), 60_000);
  }
  expect(stats.handovers).toBeGreaterThan(20);
  expect(stats.swaps).toBeGreaterThan(20);
  expect(stats.keyChanges).toBeGreaterThan(20);

  const live = await sql<{ key: string; email: string }>(`SELECT id::text AS key, email FROM public.${src} ORDER BY id`);
  const expected = [...known.entries()].sort((a, b) => a[0] - b[0]).map(([id, email]) => ({ key: String(id), email }));
  expect(live.length).toBe(expected.length);
  expect(live).toEqual(expected);
  // The live table is the new one, with both unique indexes.
  const indexes = await sql<{ def: string }>(`SELECT pg_get_indexdef(indexrelid) AS def FROM pg_index WHERE indrelid = $1::regclass AND indisunique`, [`public.${src}`]);
  expect(indexes.map((i) => i.def).join('\n')).toMatch(/lower\(email\)/);
  expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${src}_v2`])).toHaveLength(0);
}

test('a writer handing unique values between rows and changing keys during copy, catch-up and the gate: the migration completes and equals its record', async () => {
  await migrateWithHandovers(false);
}, 300_000);

test('the same writer, then rollback after cutover: the original table, live again, equals its record too', async () => {
  await migrateWithHandovers(true);
}, 300_000);

test('a unique index the target adds that the source data breaks fails the copy fast, named, without the values', async () => {
  const src = uniqueName('dupes');
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, email text NOT NULL)`);
  await sql(`INSERT INTO public.${src} SELECT g, 'user' || g || '@example.org' FROM generate_series(1, 3000) g`);
  // Unique in the source as written, not once lower-cased: the new constraint really refuses the data.
  await sql(`UPDATE public.${src} SET email = 'Secret.Person@example.org' WHERE id = 10`);
  await sql(`UPDATE public.${src} SET email = 'secret.person@example.org' WHERE id = 2900`);
  const planName = src.replace(/_/g, '-');
  const plan = writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
    create: `CREATE TABLE public.${src}_v2 (id int PRIMARY KEY, email text NOT NULL);
             CREATE UNIQUE INDEX ${src}_v2_email_ci ON public.${src}_v2 (lower(email))`,
    copy: { chunkRows: 500, chunkTime: '0s' },
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'), 120_000);
  expect(end.outcome?.reason).toMatch(new RegExp(`${src}_v2_email_ci`));
  expect(end.outcome?.reason).toMatch(/23505/);
  expect(end.outcome?.reason).not.toMatch(/secret\.person/i);
  expect(end.gates[0]!.state).toBe('pending');
  expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${src}_v2`])).toHaveLength(0);
}, 180_000);
