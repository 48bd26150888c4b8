/**
 * Validation compares key range by key range; a range that differs is copied again and checked again, and only a
 * range that still differs after the repair passes fails the migration, named. The mismatch is forced by a
 * mapping function that corrupts one row as the copy (or a repair) reads it: once, or every time. Not a target
 * trigger: those are inert while safeshift fills the table. Validation's own reads see the true value.
 * 1000 rows checked in ranges of 100: ten full ranges and the open-ended range above the last key (empty here).
 */
import { atPhase, basePlan, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

async function corruptingPlan(mode: 'once' | 'always', parallel = 1): Promise<{ t: string; planName: string; file: string }> {
  const t = uniqueName(`repair_${mode}`);
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, name text NOT NULL)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'name ' || g FROM generate_series(1, 1000) g`);
  await sql(`CREATE TABLE public.${t}_armed (armed boolean)`);
  await sql(`INSERT INTO public.${t}_armed VALUES (true)`);
  await sql(`CREATE FUNCTION public.${t}_corrupt(id int, name text, mode text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF id = 77 AND current_setting('application_name') LIKE ANY (ARRAY['safeshift copy%', 'safeshift validate (repair%'])
         AND EXISTS (SELECT 1 FROM public.${t}_armed) THEN
        IF mode = 'once' THEN DELETE FROM public.${t}_armed; END IF;
        RETURN 'corrupted in flight';
      END IF;
      RETURN name;
    END $$`);
  const file = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, name text NOT NULL)`,
    columns: { name: `public.${t}_corrupt(id, name, '${mode}')` },
    allowFunctions: [`public.${t}_corrupt`], // it writes (DELETE): a plan calls such a function only by name
    copy: { chunkRows: 100, parallel },
  }));
  return { t, planName: t.replace(/_/g, '-'), file };
}

test('a key range that differs is copied again, checked again, and reported as repaired (2 lanes: ranges checked on two connections in one snapshot)', async () => {
  const { t, planName, file } = await corruptingPlan('once', 2);
  expect((await runCli(['start', file])).code).toBe(0);
  const s = await waitFor(planName, atPhase('awaiting_cutover'));
  expect(s.validation).toMatchObject({ ok: true, rangesChecked: 11, repaired: [{ lo: null, hi: ['100'], pass: 1 }], stillDifferent: [] });
  // Copied with the chunk size tuned toward copy.chunkTime (2 s): chunks of 100 rows take milliseconds, so it grew.
  expect(s.copy).toMatchObject({ parallel: 2, format: 'binary' });
  expect(s.copy.chunkRows).toBeGreaterThan(100);
  expect(s.validation!.message).toMatch(/1 differing key range\(s\) copied again and now equal: \(-inf, 100\]/);
  expect(await sql(`SELECT name FROM public.${t}_v2 WHERE id = 77`)).toEqual([{ name: 'name 77' }]);
  const [audit] = await sql<{ details: { repaired: unknown[] } }>(
    `SELECT details FROM safeshift.audit_log WHERE action = 'validate:ok' AND workflow_id = $1`, [`migration-${planName}`]);
  expect(audit!.details.repaired).toHaveLength(1);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});

test('a key range that still differs after the repair passes fails the migration with the range named', async () => {
  const { t, planName, file } = await corruptingPlan('always');
  expect((await runCli(['start', file])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'));
  expect(end.validation).toMatchObject({ ok: false, rangesChecked: 11, repaired: [], stillDifferent: [{ lo: null, hi: ['100'] }] });
  expect(end.outcome?.reason).toMatch(/1 of 11 key ranges still differ after 2 repair passes: \(-inf, 100\]/);
  expect(end.gates[0]!.state).toBe('pending');
  expect(await sql(`SELECT 1 FROM pg_class WHERE relname = $1`, [`${t}_v2`])).toHaveLength(0);
});
