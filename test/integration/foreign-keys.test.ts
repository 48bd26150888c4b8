/**
 * Targets keep every outbound foreign key. The default target (LIKE ... INCLUDING ALL) used to lose them silently.
 * They are added to the new table at cutover (NOT VALID under the lock, validated right after the commit): before
 * that, a foreign key on a target holding stale rows would refuse the application's own valid deletes of parents.
 * Before the gate the validation proves the target has no orphans, so the approver sees the result; a key the
 * target adds that the source's rows break fails there, named.
 */
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

async function orgTeamPeople(t: string, withTeamFk: boolean): Promise<void> {
  await sql(`CREATE TABLE public.${t}_org (id int PRIMARY KEY)`);
  await sql(`CREATE TABLE public.${t}_team (id int PRIMARY KEY)`);
  await sql(`INSERT INTO public.${t}_org SELECT generate_series(1, 20)`);
  await sql(`INSERT INTO public.${t}_team SELECT generate_series(1, 10)`);
  await sql(`CREATE TABLE public.${t} (
    id int PRIMARY KEY,
    org_id int NOT NULL REFERENCES public.${t}_org ON DELETE CASCADE,
    team_id int ${withTeamFk ? `REFERENCES public.${t}_team` : ''},
    manager_id int REFERENCES public.${t} (id))`);
  await sql(`INSERT INTO public.${t} SELECT g, 1 + g % 20, CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 12 END, CASE WHEN g > 10 THEN 1 + g % 10 END
               FROM generate_series(1, 3000) g`);
}

test('a default target keeps its outbound foreign keys (to other tables and to itself), validated after cutover', async () => {
  const t = uniqueName('people');
  await orgTeamPeople(t, false);
  await sql(`UPDATE public.${t} SET team_id = NULL WHERE team_id > 10`);
  await sql(`ALTER TABLE public.${t} ADD FOREIGN KEY (team_id) REFERENCES public.${t}_team ON UPDATE CASCADE`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))])).code).toBe(0);
  const gate = await waitFor(planName, atPhase('awaiting_cutover'));
  // The gate shows what the new table will get and that the target has no orphan for any of them.
  expect(gate.warnings.join('\n')).toMatch(new RegExp(`foreign key ${t}_org_id_fkey .*added at cutover`));
  expect(gate.validation?.message).toMatch(/3 foreign keys: no orphans/);
  // The application deletes a parent while the gate waits: its cascade reaches the source, replay the target.
  await sql(`DELETE FROM public.${t}_org WHERE id = 15`); // nobody there manages anyone
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  const fks = await sql<{ name: string; references: string; validated: boolean; definition: string }>(
    `SELECT conname AS name, confrelid::regclass::text AS references, convalidated AS validated, pg_get_constraintdef(oid) AS definition
       FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname`, [`public.${t}`]);
  expect(fks).toEqual([
    { name: `${t}_manager_id_fkey`, references: t, validated: true, definition: `FOREIGN KEY (manager_id) REFERENCES ${t}(id)` },
    { name: `${t}_org_id_fkey`, references: `${t}_org`, validated: true, definition: `FOREIGN KEY (org_id) REFERENCES ${t}_org(id) ON DELETE CASCADE` },
    { name: `${t}_team_id_fkey`, references: `${t}_team`, validated: true, definition: `FOREIGN KEY (team_id) REFERENCES ${t}_team(id) ON UPDATE CASCADE` },
  ]);
  // The live table is the new one and the keys work there.
  const [live] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [`public.${t}`]);
  const [retired] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [(await statusOf(planName)).retiredTable]);
  expect(live!.oid).not.toBe(retired!.oid);
  await expect(sql(`INSERT INTO public.${t} (id, org_id) VALUES (99999, 999)`)).rejects.toThrow(/foreign key/);
  await sql(`DELETE FROM public.${t}_org WHERE id = 16`);
  expect(await sql(`SELECT 1 FROM public.${t} WHERE org_id IN (15, 16)`)).toHaveLength(0);
  expect((await runCli(['approve', planName, '--as', 'alice', '--gate', 'drop'])).code).toBe(0);
  await waitFor(planName, atPhase('done'));
  expect(await sql(`SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'`, [`public.${t}`])).toHaveLength(3);
});

test('a foreign key the target adds that the source rows break fails validation before the gate, named', async () => {
  const t = uniqueName('people');
  await orgTeamPeople(t, false); // team_id 11 and 12 have no team
  const planName = t.replace(/_/g, '-');
  const plan = writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, {
    create: `CREATE TABLE public.${t}_v2 (id int PRIMARY KEY, org_id int NOT NULL REFERENCES public.${t}_org ON DELETE CASCADE,
               team_id int CONSTRAINT team_must_exist REFERENCES public.${t}_team, manager_id int REFERENCES public.${t}_v2 (id))`,
  }));
  expect((await runCli(['start', plan])).code).toBe(0);
  const end = await waitFor(planName, atPhase('rolled_back'), 90_000);
  expect(end.outcome?.reason).toMatch(/team_must_exist/);
  expect(end.outcome?.reason).toMatch(/\d+ rows/);
  expect(end.gates[0]!.state).toBe('pending');
});

test('a foreign key NOT VALID on purpose in the source (old rows break it) is carried NOT VALID: no orphan check, no VALIDATE', async () => {
  const t = uniqueName('people');
  await orgTeamPeople(t, false); // team_id 11 and 12 have no team
  await sql(`ALTER TABLE public.${t} ADD CONSTRAINT legacy_team FOREIGN KEY (team_id) REFERENCES public.${t}_team NOT VALID`);
  const planName = t.replace(/_/g, '-');
  expect((await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_cutover'));
  expect((await runCli(['approve', planName, '--as', 'alice'])).code).toBe(0);
  await waitFor(planName, atPhase('awaiting_drop'));
  expect(await sql(`SELECT convalidated AS validated FROM pg_constraint WHERE conrelid = $1::regclass AND conname = 'legacy_team'`, [`public.${t}`]))
    .toEqual([{ validated: false }]);
  // Still enforced for new rows, as in the source.
  await expect(sql(`INSERT INTO public.${t} (id, org_id, team_id) VALUES (99999, 1, 77)`)).rejects.toThrow(/legacy_team/);
  expect((await runCli(['abort', planName])).code).toBe(0);
  await waitFor(planName, atPhase('rolled_back'));
});
