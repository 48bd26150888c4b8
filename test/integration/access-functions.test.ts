/**
 * The privilege matrix (src/access-matrix.ts) covers the functions bound to the table (EXECUTE) and the writes a
 * role may make through a view PostgreSQL writes through (INSERT, UPDATE per column, DELETE), as well as what it
 * covered before; a cutover carries them unchanged. And verify, after a retry past the cutover's commit (no
 * `accessChanged` from the cutover), compares the live access with the matrix recorded before the swap
 * (src/access-record.ts): a difference fails it closed.
 */
import { accessDifferences } from '../../src/access-matrix';
import { accessOf } from '../support/access';
import type { CopySpec } from '../../src/projection';
import { verifyCutover } from '../../activities/verify';
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

/** A table with a SETOF function only service_role may run, and a view a writer role writes through. */
async function notes(t: string): Promise<string> {
  const writer = `${t}_writer`;
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, title text NOT NULL, secret text)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'note ' || g, 's' FROM generate_series(1, 100) g`);
  await sql(`CREATE FUNCTION public.${t}_all() RETURNS SETOF public.${t} LANGUAGE sql STABLE AS 'SELECT * FROM public.${t}'`);
  await sql(`REVOKE ALL ON FUNCTION public.${t}_all() FROM PUBLIC, anon, authenticated`);
  await sql(`GRANT EXECUTE ON FUNCTION public.${t}_all() TO service_role`);
  // Named arguments: pg_get_function_identity_arguments says "n integer", which to_regprocedure refuses (a syntax error).
  await sql(`CREATE FUNCTION public.${t}_from(n integer) RETURNS SETOF public.${t} LANGUAGE sql STABLE AS 'SELECT * FROM public.${t} WHERE id >= n'`);
  await sql(`REVOKE ALL ON FUNCTION public.${t}_from(integer) FROM PUBLIC, anon, authenticated`);
  await sql(`CREATE VIEW public.${t}_titles AS SELECT id, title FROM public.${t}`);
  await sql(`REVOKE ALL ON public.${t}_titles FROM anon, authenticated, service_role`);
  await sql(`CREATE ROLE ${writer} NOLOGIN`);
  await sql(`GRANT SELECT, INSERT (id, title), UPDATE (title), DELETE ON public.${t}_titles TO ${writer}`);
  return writer;
}

test('functions bound to the table and writes through a view over it are in the matrix; a cutover leaves them, verify after a retry compares with the record', async () => {
  const t = uniqueName('notes');
  const writer = await notes(t);
  const before = await accessOf(t);
  const fn = `public.${t}_all()`;
  const named = `public.${t}_from(integer)`;
  expect(before.objects.functions).toEqual([fn, named]);
  expect(before.entries[`anon: EXECUTE on function ${named}`]).toBe(false);
  expect(before.entries[`service_role: EXECUTE on function ${named}`]).toBe(true);
  expect(before.entries[`service_role: EXECUTE on function ${fn}`]).toBe(true);
  expect(before.entries[`anon: EXECUTE on function ${fn}`]).toBe(false);
  expect(before.entries[`${writer}: INSERT on public.${t}_titles (title)`]).toBe(true);
  expect(before.entries[`${writer}: UPDATE on public.${t}_titles (id)`]).toBe(false);
  expect(before.entries[`${writer}: DELETE on public.${t}_titles`]).toBe(true);
  expect(before.entries[`anon: INSERT on public.${t}_titles (title)`]).toBe(false);

  const planName = t.replace(/_/g, '-');
  const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, title text NOT NULL, secret text, tags text[])`,
  }));
  expect((await runCli(['start', plan])).stderr).toBe('');
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  // Verify passed in the run: the function (recreated over the new table) and the view's writes are as they were.
  await waitFor(planName, atPhase('awaiting_drop'));
  const after = await accessOf(t, before.objects);
  expect(accessDifferences(before, after)).toEqual([]);
  expect(after.entries[`service_role: EXECUTE on function ${fn}`]).toBe(true);

  // Verify as after a retry past the commit: no accessChanged from the cutover; it reads the record instead.
  const targetOid = Number((await sql<{ oid: string }>(`SELECT $1::regclass::oid AS oid`, [`public.${t}`]))[0]!.oid);
  const spec = { source: { schema: 'public', name: t }, target: { schema: 'public', name: `${t}_v2` }, columns: [] } as unknown as CopySpec;
  const input = { db: 'DATABASE_URL', spec, targetOid };
  await expect(verifyCutover(input)).resolves.toMatch(/is the new table and answers reads/);
  await sql(`REVOKE EXECUTE ON FUNCTION ${fn} FROM service_role`);
  await sql(`REVOKE DELETE ON public.${t}_titles FROM ${writer}`);
  try {
    const failed = verifyCutover(input);
    await expect(failed).rejects.toThrow(`service_role: EXECUTE on function ${fn}: granted before, refused after`);
    await expect(failed).rejects.toThrow(`${writer}: DELETE on public.${t}_titles: granted before, refused after`);
  } finally {
    await sql(`GRANT EXECUTE ON FUNCTION ${fn} TO service_role`);
    await sql(`GRANT DELETE ON public.${t}_titles TO ${writer}`);
  }
  expect((await runCli(['rollback', planName, '--as', 'carol'])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
  expect(accessDifferences(before, await accessOf(t, before.objects))).toEqual([]);
});
