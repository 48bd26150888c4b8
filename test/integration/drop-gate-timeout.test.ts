/**
 * Issue 13, finding 9: the drop gate has a timeout (30d at most, 30d by default), and its timeout never rolls a
 * live migration back (the application has been using the new table since cutover) and never drops anything (only
 * an explicit approval does). It ends `done`: reverse capture removed from the live table, the forward change
 * table gone, the retired table kept under its retired name, still sealed, and the status and the audit log say
 * so and how to drop it by hand. The in-place path the same way: the hidden column stays, nothing is reverted.
 */
import { asRole } from '../support/supabase';
import { atPhase, basePlan, relationOid, runCli, sql, uniqueName, waitFor, writePlan } from '../support/helpers';

const actionsOf = async (planName: string) => (await sql<{ action: string; details: Record<string, unknown> }>(
  `SELECT action, details FROM safeshift.audit_log WHERE run_id = (SELECT run_id FROM safeshift.migrations WHERE name = $1) ORDER BY seq`, [planName]));

test('a drop gate that times out ends done, nothing dropped, nothing rolled back: copy path (retired table kept sealed, capture gone) and in place (hidden column kept)', async () => {
  // Both paths at once (one test, one wait): a copy-path migration and an in-place one.
  const src = uniqueName('profiles');
  await sql(`CREATE TABLE public.${src} (id int PRIMARY KEY, email text)`);
  await sql(`INSERT INTO public.${src} SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 50) g`);
  const sourceOid = await relationOid(`public.${src}`);
  const planName = src.replace(/_/g, '-');
  const t = uniqueName('inplace');
  await sql(`CREATE TABLE public.${t} (id bigint PRIMARY KEY, title text NOT NULL, legacy text)`);
  await sql(`INSERT INTO public.${t} SELECT g, 't' || g, 'l' || g FROM generate_series(1, 20) g`);
  const inPlace = basePlan(t, `public.${t}`, `public.${t}_unused`, {
    alter: `ALTER TABLE public.${t} RENAME COLUMN title TO name; ALTER TABLE public.${t} DROP COLUMN legacy;`,
    approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '2s' } },
  });
  delete inPlace.target;
  const inPlaceName = String(inPlace.name);
  const started = await Promise.all([
    runCli(['start', writePlan(basePlan(src, `public.${src}`, `public.${src}_v2`, {
      approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'], timeout: '3s' } },
    }))]),
    runCli(['start', writePlan(inPlace)]),
  ]);
  expect(started.map((r) => r.code)).toEqual([0, 0]);
  await Promise.all([waitFor(planName, atPhase('awaiting_cutover')), waitFor(inPlaceName, atPhase('awaiting_cutover'))]);
  const targetOid = await relationOid(`public.${src}_v2`);
  const approved = await Promise.all([runCli(['approve', planName, '--as', 'alice']), runCli(['approve', inPlaceName, '--as', 'alice'])]);
  expect(approved.map((r) => r.code)).toEqual([0, 0]);
  const [end, endInPlace] = await Promise.all([
    waitFor(planName, (s) => s.outcome !== undefined, 60_000), waitFor(inPlaceName, (s) => s.outcome !== undefined, 60_000),
  ]);

  // Copy path: done, the drop gate timed out, the outcome and a warning say what was kept and how to drop it.
  expect(end.phase).toBe('done');
  expect(end.gates.map((g) => g.state)).toEqual(['approved', 'timed_out']);
  const retired = end.retiredTable!;
  expect(retired).toMatch(new RegExp(`^public\\.${src}_retired_\\d+$`));
  expect(end.outcome!.reason).toContain('the drop gate timed out after 3s without a decision');
  expect(end.outcome!.reason).toContain('rollback is no longer possible');
  expect(end.outcome!.reason).toContain(`${retired} is kept`);
  expect(end.outcome!.reason).toContain(`DROP TABLE ${retired}`);
  expect(end.warnings.some((w) => w.includes(`${retired} is kept`) && w.includes('timed out after 3s'))).toBe(true);
  expect(end.kept).toEqual([{ what: `the retired table ${retired}`, drop: `DROP TABLE ${retired}` }]);

  // The new table is live under the source's name; the retired one is still there, with every row, sealed.
  expect(await relationOid(`public.${src}`)).toBe(targetOid);
  expect(await relationOid(retired)).toBe(sourceOid);
  expect(await sql(`SELECT count(*)::int AS n FROM ${retired}`)).toEqual([{ n: 50 }]);
  for (const role of ['anon', 'authenticated']) {
    const rows = await asRole(role, `SELECT * FROM ${retired}`).catch((err: Error) => { expect(err.message).toMatch(/permission denied/); return []; });
    expect(rows).toHaveLength(0);
  }
  // No capture left: no capture trigger on either table, no change table of either. The kept retired table keeps
  // its write guard (sealed the same way as while the gate waited); the live table has none.
  expect(await sql(`SELECT tgrelid::int AS rel, tgname FROM pg_trigger WHERE tgrelid IN ($1, $2) AND tgname LIKE 'safeshift%' ORDER BY 1, 2`, [sourceOid, targetOid]))
    .toEqual([{ rel: sourceOid, tgname: 'safeshift_write_guard' }]);
  await expect(sql(`UPDATE ${retired} SET id = id`)).rejects.toThrow(/sealed by safeshift/);
  expect(await sql(`SELECT to_regclass($1) AS a, to_regclass($2) AS b`, [`safeshift.changes_${sourceOid}`, `safeshift.changes_${targetOid}`])).toEqual([{ a: null, b: null }]);
  // Rollback is refused now (the migration is over); the audit log says the gate timed out and the drop was
  // skipped, with what was kept.
  const rollback = await runCli(['rollback', planName, '--as', 'alice']);
  expect(rollback.code).not.toBe(0);
  expect(rollback.stderr).toMatch(/is not running \(completed\)/);
  const audit = await actionsOf(planName);
  const actions = audit.map((a) => a.action);
  expect(actions).toEqual(expect.arrayContaining(['approve:cutover', 'phase:awaiting_drop', 'gate:timed-out', 'drop:skipped', 'phase:done']));
  expect(actions).not.toContain('phase:drop');
  expect(actions).not.toContain('phase:rolling_back');
  expect(audit.find((a) => a.action === 'drop:skipped')!.details).toMatchObject({ kept: [{ what: `the retired table ${retired}`, drop: `DROP TABLE ${retired}` }] });
  expect(await sql(`SELECT phase, outcome FROM safeshift.migrations WHERE name = $1`, [planName])).toEqual([{ phase: 'done', outcome: 'done' }]);

  // In place: done, the rename stays, the dropped column stays hidden (not dropped, not renamed back).
  expect(endInPlace.phase).toBe('done');
  expect(endInPlace.gates.map((g) => g.state)).toEqual(['approved', 'timed_out']);
  const columns = (await sql<{ name: string }>(`SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [`public.${t}`])).map((c) => c.name);
  const hidden = columns.find((c) => c.startsWith('legacy_safeshift_retired_'))!;
  expect(columns).toEqual(['id', 'name', hidden]);
  expect(endInPlace.outcome!.reason).toContain('the drop gate timed out after 2s without a decision');
  expect(endInPlace.kept).toEqual([{ what: `the hidden column ${hidden} of public.${t}`, drop: `ALTER TABLE public.${t} DROP COLUMN ${hidden}` }]);
  const inPlaceActions = (await actionsOf(inPlaceName)).map((a) => a.action);
  expect(inPlaceActions).toEqual(expect.arrayContaining(['gate:timed-out', 'drop:skipped', 'phase:done']));
  expect(inPlaceActions).not.toContain('phase:rolling_back');
});
