/**
 * Replays write exactly the source's values: the application's triggers on the table being filled (the target
 * before cutover, the retired table during a swap back) never rewrite them. Triggers fire for the application's
 * own writes once a table is live, and are back as they were after a rollback.
 */
import { atPhase, basePlan, fingerprint, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

/** A trigger that stamps a column on insert and on update, as applications do with `last_update`. */
async function stampingTable(t: string): Promise<void> {
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now())`);
  await sql(`INSERT INTO public.${t} SELECT g, 'n' || g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour' FROM generate_series(1, 2000) g`);
  await sql(`CREATE FUNCTION public.${t}_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.last_update := clock_timestamp(); RETURN NEW; END $$`);
  await sql(`CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON public.${t} FOR EACH ROW EXECUTE FUNCTION public.${t}_stamp()`);
}

test('rollback with a stamping trigger on the old table returns exactly the values written after cutover', async () => {
  const t = uniqueName('stamped');
  await stampingTable(t);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));

  // The application writes to the new table; its trigger (moved there at cutover) stamps those rows.
  await sql(`UPDATE public.${t} SET name = name || ' updated' WHERE id % 10 = 0`);
  await sql(`INSERT INTO public.${t} (id, name) SELECT g, 'new ' || g FROM generate_series(3001, 3100) g`);
  await sql(`DELETE FROM public.${t} WHERE id % 97 = 0`);
  const stamped = await sql<{ n: string }>(`SELECT count(*)::text AS n FROM public.${t} WHERE last_update > '2021-01-01'`);
  expect(Number(stamped[0]!.n)).toBeGreaterThan(250);
  const written = await fingerprint(`SELECT * FROM public.${t}`, 'id');
  await new Promise((r) => setTimeout(r, 50)); // a trigger firing in the swap back would stamp a later time

  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
  expect(await fingerprint(`SELECT * FROM public.${t}`, 'id')).toEqual(written);
  // The original table is live again with its trigger as it was: enabled, stamping the application's writes.
  expect(await sql(`SELECT tgname, tgenabled::text AS state FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [`public.${t}`]))
    .toEqual([{ tgname: 'stamp', state: 'O' }]);
  const [after] = await sql<{ stamped: boolean }>(
    `UPDATE public.${t} SET name = 'again' WHERE id = 1 RETURNING last_update > now() - interval '1 minute' AS stamped`);
  expect(after!.stamped).toBe(true);
});

test("the target's own triggers do not rewrite the copy or the replay; they fire once it is live", async () => {
  const t = uniqueName('stamped');
  await stampingTable(t);
  await sql(`DROP TRIGGER stamp ON public.${t}`);
  const before = await fingerprint(`SELECT * FROM public.${t} WHERE id <> 7`, 'id');
  const planName = t.replace(/_/g, '-');
  const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TRIGGER stamp_v2 BEFORE INSERT OR UPDATE ON public.${t}_v2 FOR EACH ROW EXECUTE FUNCTION public.${t}_stamp()`,
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  // A write during the gate is replayed into the target exactly.
  await sql(`UPDATE public.${t} SET name = 'during the gate', last_update = '2019-06-01 00:00:00+00' WHERE id = 7`);
  await new Promise((r) => setTimeout(r, 1500));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  const [row7] = await sql<{ last_update: string }>(`SELECT last_update::text FROM public.${t} WHERE id = 7`);
  expect(row7!.last_update).toBe('2019-06-01 00:00:00+00');
  expect(await fingerprint(`SELECT * FROM public.${t} WHERE id <> 7`, 'id')).toEqual(before);
  // Live now: the trigger fires for the application.
  const [after] = await sql<{ stamped: boolean }>(
    `UPDATE public.${t} SET name = 'app' WHERE id = 8 RETURNING last_update > now() - interval '1 minute' AS stamped`);
  expect(after!.stamped).toBe(true);
  expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
  await waitFor(planName, atPhase('done'));
});
