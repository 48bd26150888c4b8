/**
 * Restore over the live table (restoreWorkflow): staged and verified, nothing changes until an approver says go;
 * then the restored table takes the live name with everything bound to it, and the table it replaced is kept
 * whole as the retired table. A reject, and a child row pointing at a row the restore would take away, leave the
 * live table exactly as it was.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectClient } from '../../src/config';
import { restoreStatus, type RestoreStatus } from '../../src/messages';
import { fingerprint, relationOid, runCli, sql, uniqueName } from '../support/helpers';

/** profiles with identity, a unique, a CHECK, a generated column, an outbound and a self FK; posts referencing it. */
async function schema(): Promise<string> {
  const s = uniqueName('rst');
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`CREATE TABLE ${s}.orgs (id int PRIMARY KEY)`);
  await sql(`INSERT INTO ${s}.orgs SELECT generate_series(1, 10)`);
  await sql(`CREATE TABLE ${s}.profiles (
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               email text NOT NULL UNIQUE CHECK (length(email) > 3),
               org_id int REFERENCES ${s}.orgs (id),
               manager_id bigint REFERENCES ${s}.profiles (id),
               name text,
               email_lower text GENERATED ALWAYS AS (lower(email)) STORED)`);
  await sql(`CREATE INDEX profiles_name_idx ON ${s}.profiles (name)`);
  await sql(`INSERT INTO ${s}.profiles (email, org_id, manager_id, name)
             SELECT 'User' || g || '@example.org', 1 + g % 10, CASE WHEN g > 1 THEN 1 END, 'name ' || g FROM generate_series(1, 1000) g`);
  await sql(`CREATE TABLE ${s}.posts (id int PRIMARY KEY, profile_id bigint REFERENCES ${s}.profiles (id))`);
  await sql(`INSERT INTO ${s}.posts SELECT g, g FROM generate_series(1, 100) g`);
  await sql(`CREATE VIEW ${s}.profile_names AS SELECT id, name FROM ${s}.profiles`);
  await sql(`CREATE TABLE ${s}.inserted (id bigint)`);
  await sql(`CREATE FUNCTION ${s}.note_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${s}.inserted VALUES (NEW.id); RETURN NEW; END $$`);
  await sql(`CREATE TRIGGER note_insert AFTER INSERT ON ${s}.profiles FOR EACH ROW EXECUTE FUNCTION ${s}.note_insert()`);
  await sql(`ALTER TABLE ${s}.profiles ENABLE ROW LEVEL SECURITY`);
  await sql(`CREATE POLICY everyone ON ${s}.profiles USING (true)`);
  await sql(`CREATE ROLE ${s}_reader`);
  await sql(`GRANT USAGE ON SCHEMA ${s} TO ${s}_reader`);
  await sql(`GRANT SELECT ON ${s}.profiles TO ${s}_reader`);
  await sql(`COMMENT ON TABLE ${s}.profiles IS 'people'`);
  return s;
}

async function exportOf(s: string): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-restore-')), 'out');
  const backup = await runCli(['backup', `${s}.profiles`, '--dir', dir, '--json']);
  expect(backup).toMatchObject({ code: 0, stderr: '' });
  return dir;
}

async function startOverLive(dir: string): Promise<{ id: string; status: RestoreStatus }> {
  const started = await runCli(['restore', dir, '--over-live', '--approvers', 'alice,bob', '--as', 'alice', '--json']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const { id, ...status } = JSON.parse(started.stdout) as RestoreStatus & { id: string };
  return { id, status };
}

async function outcome(id: string): Promise<{ ok: boolean; status: RestoreStatus; error?: string }> {
  const client = await connectClient();
  try {
    const handle = client.workflow.getHandle(id);
    try {
      await handle.result();
      return { ok: true, status: await handle.query(restoreStatus) };
    } catch (err) {
      return { ok: false, status: await handle.query(restoreStatus), error: ((err as Error).cause as Error | undefined)?.message };
    }
  } finally {
    await client.connection.close();
  }
}

test('restore over the live table: staged, approved, swapped in with everything bound to it; the replaced table kept whole', async () => {
  const s = await schema();
  const dir = await exportOf(s);
  const exported = await fingerprint(`SELECT * FROM ${s}.profiles`, 'id');
  const oldOid = await relationOid(`${s}.profiles`);

  // After the export, the damage a restore is for; ids up to 1003 have been handed out.
  await sql(`UPDATE ${s}.profiles SET name = 'oops' WHERE id <= 500`);
  await sql(`DELETE FROM ${s}.profiles WHERE id > 900`);
  await sql(`INSERT INTO ${s}.profiles (email, name) SELECT 'late' || g || '@example.org', 'late' FROM generate_series(1, 3) g`);
  const damaged = await fingerprint(`SELECT * FROM ${s}.profiles`, 'id');

  const { id, status } = await startOverLive(dir);
  expect(status).toMatchObject({ phase: 'awaiting_restore', rows: 1000, liveRows: 903, into: `${s}.profiles`, gate: { name: 'restore', state: 'open', required: 1 } });
  expect(status.moves!.join('\n')).toContain('posts_profile_id_fkey');
  // Nothing has changed yet: the live table is the same table with the same rows.
  expect(await relationOid(`${s}.profiles`)).toBe(oldOid);
  expect(await fingerprint(`SELECT * FROM ${s}.profiles`, 'id')).toEqual(damaged);

  expect(await runCli(['approve', id, '--as', 'alice'])).toMatchObject({ code: 2, stderr: expect.stringContaining('(SelfApproval)') });
  expect(await runCli(['approve', id, '--as', 'bob', '--reason', 'restore the export'])).toMatchObject({ code: 0, stdout: 'bob approved the restore gate (1/1)\n' });
  const done = await outcome(id);
  expect(done).toMatchObject({ ok: true, status: { phase: 'done' } });

  // The live name holds exactly the exported rows; the table it replaced holds exactly what it held.
  expect(await fingerprint(`SELECT * FROM ${s}.profiles`, 'id')).toEqual(exported);
  expect(await relationOid(`${s}.profiles`)).not.toBe(oldOid);
  const [restore] = await sql<{ retired: string; state: string }>(`SELECT retired_table AS retired, state FROM safeshift.restores WHERE workflow_id = $1`, [id]);
  expect(restore!.state).toBe('swapped');
  expect(await relationOid(restore!.retired)).toBe(oldOid);
  expect(await fingerprint(`SELECT * FROM ${restore!.retired}`, 'id')).toEqual(damaged);

  // Analyzed before it went live: the planner knows its size (a table only loaded by COPY says -1, never analyzed).
  expect(await sql(`SELECT reltuples::int AS n FROM pg_class WHERE oid = '${s}.profiles'::regclass`)).toEqual([{ n: 1000 }]);
  const shown = await runCli(['status', id, '--json']);
  expect(shown).toMatchObject({ code: 0, stderr: '' });
  expect(JSON.parse(shown.stdout)).toMatchObject({ id, phase: 'done', rows: 1000, retired: restore!.retired, gate: { state: 'approved' } });

  // What was bound to the live table is bound to the restored one.
  const rel = `'${s}.profiles'::regclass`;
  expect(await sql(`SELECT conname, convalidated FROM pg_constraint WHERE confrelid = ${rel} AND conrelid <> ${rel} ORDER BY conname`))
    .toEqual([{ conname: 'posts_profile_id_fkey', convalidated: true }]);
  expect(await sql(`SELECT count(*)::int AS n FROM ${s}.profile_names`)).toEqual([{ n: 1000 }]);
  expect(await sql(`SELECT has_table_privilege('${s}_reader', ${rel}, 'SELECT') AS reads, relrowsecurity AS rls,
                           (SELECT count(*)::int FROM pg_policy WHERE polrelid = c.oid) AS policies, obj_description(c.oid, 'pg_class') AS comment,
                           (SELECT array_agg(tgname::text) FROM pg_trigger WHERE tgrelid = c.oid AND NOT tgisinternal) AS triggers
                      FROM pg_class c WHERE c.oid = ${rel}`))
    .toEqual([{ reads: true, rls: true, policies: 1, comment: 'people', triggers: ['note_insert'] }]);
  // Its own constraints and indexes under the names the application knows; its FKs (outbound and to itself) kept.
  expect(await sql(`SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = ${rel} ORDER BY 1`))
    .toEqual([{ name: 'profiles_email_key' }, { name: 'profiles_name_idx' }, { name: 'profiles_pkey' }]);
  expect(await sql(`SELECT conname, confrelid::regclass::text AS refs FROM pg_constraint WHERE conrelid = ${rel} AND contype = 'f' ORDER BY conname`))
    .toEqual([{ conname: 'profiles_manager_id_fkey', refs: `${s}.profiles` }, { conname: 'profiles_org_id_fkey', refs: `${s}.orgs` }]);
  // No id handed out before (up to 1003) is handed out again.
  const [fresh] = await sql<{ id: string }>(`INSERT INTO ${s}.profiles (email) VALUES ('fresh@example.org') RETURNING id::text`);
  expect(Number(fresh!.id)).toBeGreaterThan(1003);
  expect(await sql(`SELECT count(*)::int AS n FROM ${s}.inserted WHERE id = $1`, [fresh!.id])).toEqual([{ n: 1 }]);

  expect(await sql(`SELECT actor, action FROM safeshift.audit_log WHERE workflow_id = $1 AND action IN ('gate:restore:open', 'approve:restore', 'backup:restored') ORDER BY seq`, [id]))
    .toEqual([{ actor: 'safeshift', action: 'gate:restore:open' }, { actor: 'bob', action: 'approve:restore' }, { actor: 'alice', action: 'backup:restored' }]);
});

test('a reject, a gate timeout, or a child row pointing at a row the restore takes away leave the live table as it was; bad input changes nothing; by default a restore goes into a new table beside it', async () => {
  const s = await schema();
  const dir = await exportOf(s);
  const oldOid = await relationOid(`${s}.profiles`);

  const rejected = await startOverLive(dir);
  expect(await runCli(['reject', rejected.id, '--as', 'bob', '--reason', 'wrong export'])).toMatchObject({ code: 0 });
  const afterReject = await outcome(rejected.id);
  expect(afterReject).toMatchObject({ ok: false, status: { phase: 'rolled_back' } });
  expect(await sql(`SELECT to_regclass($1) IS NULL AS gone, (SELECT state FROM safeshift.restores WHERE workflow_id = $2) AS state`, [rejected.status.staged, rejected.id]))
    .toEqual([{ gone: true, state: 'discarded' }]);
  expect(await relationOid(`${s}.profiles`)).toBe(oldOid);

  // Nobody decides in time: the staged rows are discarded, the live table untouched.
  const expiring = await runCli(['restore', dir, '--over-live', '--approvers', 'bob', '--as', 'alice', '--gate-timeout', '1s', '--wait']);
  expect(expiring.code).toBe(1);
  expect(expiring.stderr).toMatch(/no decision at the restore gate by .*; staged table .* dropped/);
  expect(await relationOid(`${s}.profiles`)).toBe(oldOid);

  // A profile the export lacks, and a post pointing at it: the swap would break that reference.
  await sql(`INSERT INTO ${s}.profiles (email) VALUES ('after@example.org')`);
  await sql(`INSERT INTO ${s}.posts SELECT 1000, max(id) FROM ${s}.profiles`);
  const before = await fingerprint(`SELECT * FROM ${s}.profiles`, 'id');
  const refused = await startOverLive(dir);
  expect(await runCli(['approve', refused.id, '--as', 'bob'])).toMatchObject({ code: 0 });
  const afterRefusal = await outcome(refused.id);
  expect(afterRefusal.ok).toBe(false);
  expect(afterRefusal.error).toMatch(/restore refused: rows elsewhere reference rows the restore takes away .*posts_profile_id_fkey/);
  expect(afterRefusal.status.phase).toBe('rolled_back');
  expect(await relationOid(`${s}.profiles`)).toBe(oldOid);
  expect(await fingerprint(`SELECT * FROM ${s}.profiles`, 'id')).toEqual(before);
  expect(await sql(`SELECT conname, convalidated, confrelid = $1::regclass AS refs_live FROM pg_constraint WHERE conname = 'posts_profile_id_fkey' AND connamespace = $2::regnamespace`,
    [`${s}.profiles`, s])).toEqual([{ conname: 'posts_profile_id_fkey', convalidated: true, refs_live: true }]);
  expect(await sql(`SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = $1::regnamespace AND relname LIKE 'profiles\\_re%'`, [s])).toEqual([{ n: 0 }]);

  // Refused before anything starts (exit 2): the live table no longer has the export's columns; flags that clash.
  await sql(`ALTER TABLE ${s}.profiles ADD COLUMN extra int`);
  const drifted = await runCli(['restore', dir, '--over-live', '--approvers', 'bob', '--as', 'alice']);
  expect(drifted).toMatchObject({ code: 2, stderr: expect.stringContaining(`column extra (integer) is in the live table but not in the export`) });
  expect(await runCli(['restore', dir, '--over-live', '--into', `${s}.x`, '--approvers', 'bob'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--into and --over-live') });
  expect(await runCli(['restore', dir, '--over-live', '--approvers', 'alice', '--as', 'alice'])).toMatchObject({ code: 2, stderr: expect.stringContaining('besides the requester alice') });
  expect(await sql(`SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = $1::regnamespace AND relname LIKE 'profiles\\_re%'`, [s])).toEqual([{ n: 0 }]);

  // Into a new table by default, named after the table and the time, beside it.
  const beside = await runCli(['restore', dir]);
  expect(beside).toMatchObject({ code: 0, stderr: '' });
  const [into] = beside.stdout.match(new RegExp(`${s}\\.profiles_restored_\\d{14}`)) ?? [];
  expect(into).toBeDefined();
  expect(await sql(`SELECT count(*)::int AS n FROM ${into}`)).toEqual([{ n: 1000 }]);
});
