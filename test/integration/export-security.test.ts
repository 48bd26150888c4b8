/**
 * Exports under attack (issue 13, findings 4-6). A manifest is data, never SQL: a column type carrying SQL, an
 * edited manifest, a wrong recorded digest, a manifest nobody recorded, a file name leaving the directory are each
 * refused with a clear error (exit 2), nothing runs and the catalog is unchanged. Retention deletes only an
 * export's own directory under its schedule's root. Exports are readable by their owner only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { pruneBackups } from '../../activities/export';
import { connect } from '../../src/db';
import { DefaultLogger } from '@temporalio/worker';
import { exportTables, recordExport, restoreTable, verifyExport, type Manifest } from '../../src/export';
import { ensureLedger } from '../../src/ledger';
import { catalogSnapshot, runCli, sql, uniqueName } from '../support/helpers';
import { asRole } from '../support/supabase';

async function withDb<T>(fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const c = await connect(process.env.DATABASE_URL!);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const mode = (path: string) => statSync(path).mode & 0o777;
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;
const writeManifest = (dir: string, m: unknown) => writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(m, null, 2)}\n`);
/** What an attacker who can also write the ledger would record: the digest of the manifest now in `dir`. */
const recordDigestOf = (id: string, dir: string) => sql(`UPDATE safeshift.exports SET manifest_sha256 = $2 WHERE id = $1`,
  [id, createHash('sha256').update(readFileSync(join(dir, 'manifest.json'))).digest('hex')]);
const victimThere = async (s: string) => (await sql<{ there: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS there`, [`${s}.victim`]))[0]!.there;

/** A schema with the table exported and a victim table a forged manifest tries to drop. */
async function schema(): Promise<string> {
  const s = uniqueName('sec');
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`CREATE DOMAIN ${s}.email AS text CHECK (VALUE LIKE '%@%')`);
  await sql(`CREATE TABLE ${s}.people (id int PRIMARY KEY, email ${s}.email, at timestamptz, score numeric(10,2), tags varchar(20)[])`);
  await sql(`INSERT INTO ${s}.people SELECT g, 'p' || g || '@example.org', timestamptz '2020-01-01' + g * interval '1 hour', g / 7.0, ARRAY['t' || g]
               FROM generate_series(1, 200) g`);
  await sql(`CREATE TABLE ${s}.victim (id int)`);
  return s;
}

test('a forged manifest is refused by verify and restore, exit 2, named; nothing runs, the victim table and the catalog unchanged; exports are 0700/0600; a restored table is sealed', async () => {
  const s = await schema();
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-sec-')), 'plain');
  // The real path: the backup workflow exports (the worker writes) and records the manifest's digest.
  const started = await runCli(['backup', `${s}.people`, '--dir', dir, '--json']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const { id } = JSON.parse(started.stdout) as { id: string };

  // Finding 6: owner only.
  expect(mode(dir)).toBe(0o700);
  for (const f of readdirSync(dir)) expect([f, mode(join(dir, f))]).toEqual([f, 0o600]);

  const genuine = manifestOf(dir);
  const before = await catalogSnapshot();
  /** Refused by the library the CLI and the restore activity run (the CLI's exit 2 is checked once, below). */
  const refused = async (expected: RegExp | string) => {
    await expect(withDb((c) => verifyExport(c, dir))).rejects.toThrow(expected);
    await expect(withDb((c) => restoreTable(c, dir, { schema: s, name: 'people' }, { schema: s, name: 'people_back' }))).rejects.toThrow(expected);
    expect(await victimThere(s)).toBe(true);
    expect(await catalogSnapshot()).toBe(before);
  };

  // Finding 4 as reported: SQL in a column type. Through the CLI: exit 2, the field named, for verify and restore.
  const sqlType = `timestamptz); COMMIT; DROP TABLE ${s}.victim; COMMIT; CREATE TABLE ${s}.x (y int`;
  const withSql = structuredClone(genuine);
  withSql.tables[0]!.columns[2]!.type = sqlType;
  writeManifest(dir, withSql);
  const named = /tables\[0\]\.columns\[2\]\.type of .*\.people\.at: .* is not a type name .*the manifest is refused, nothing loaded/;
  expect(await runCli(['backup', 'verify', dir])).toMatchObject({ code: 2, stderr: expect.stringMatching(named) });
  expect(await runCli(['restore', dir, '--table', `${s}.people`, '--into', `${s}.people_back`])).toMatchObject({ code: 2, stderr: expect.stringMatching(named) });
  await refused(named);
  // ... even when the attacker also rewrote the digest in the ledger: the type is not a type name.
  await recordDigestOf(id, dir);
  await refused(/is not a type name/);
  const twoStatements = structuredClone(genuine);
  twoStatements.tables[0]!.columns[2]!.type = `int; DROP TABLE ${s}.victim`;
  writeManifest(dir, twoStatements);
  await recordDigestOf(id, dir);
  await refused(/is not a type name \(2 statements\)/);

  // An edited manifest (a harmless-looking change): its digest is not the one recorded at export time.
  writeManifest(dir, genuine);
  await recordDigestOf(id, dir);
  const edited = structuredClone(genuine);
  edited.tables[0]!.rows = 199;
  writeManifest(dir, edited);
  await refused(/manifest\.json: SHA-256 [0-9a-f]{64} differs from the [0-9a-f]{64} safeshift\.exports recorded when export .* was written \(the manifest was changed\); refused, nothing loaded/);

  // A file name that leaves the directory.
  const escaping = structuredClone(genuine);
  escaping.tables[0]!.file = '../../../etc/passwd';
  writeManifest(dir, escaping);
  await refused(/tables\[0\]\.file: "\.\.\/\.\.\/\.\.\/etc\/passwd" is not the export's file for/);

  // The genuine manifest back, but the ledger's digest wrong.
  writeManifest(dir, genuine);
  await sql(`UPDATE safeshift.exports SET manifest_sha256 = repeat('0', 64) WHERE id = $1`, [id]);
  await refused(/differs from the 0{64} safeshift\.exports recorded/);
  // A plain export this database has no record of.
  await sql(`UPDATE safeshift.exports SET id = id || '-moved' WHERE id = $1`, [id]);
  await refused(/is plain and this database's safeshift\.exports has no record of it, so its manifest cannot be authenticated/);

  // Put right, it verifies and restores (types resolved through the catalog).
  await sql(`UPDATE safeshift.exports SET id = $1 WHERE id = $1 || '-moved'`, [id]);
  await recordDigestOf(id, dir);
  expect((await withDb((c) => verifyExport(c, dir))).tables).toEqual([{ table: `${s}.people`, ok: true, rows: 200 }]);
  // Into public, where Supabase's default privileges grant ALL to anon and authenticated: the restored rows are
  // sealed (only the owner reads them) until someone grants access.
  const back = uniqueName('people_back');
  await withDb((c) => restoreTable(c, dir, { schema: s, name: 'people' }, { schema: 'public', name: back }));
  expect(await sql(`SELECT count(*)::int AS n FROM public.${back}`)).toEqual([{ n: 200 }]);
  // The types as the catalog names them: the domain kept, modifiers kept.
  expect(await sql(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 ORDER BY attnum`, [`public.${back}`]))
    .toEqual(['integer', `${s}.email`, 'timestamp with time zone', 'numeric(10,2)', 'character varying(20)[]'].map((type) => ({ type })));
  for (const role of ['anon', 'authenticated']) {
    await expect(asRole(role, `SELECT count(*) FROM public.${back}`)).rejects.toThrow(/permission denied/);
  }
});

test('an encrypted export\'s manifest carries a MAC: it verifies without a ledger record, and an edited one is refused', async () => {
  process.env.SAFESHIFT_TEST_SEC_KEY = randomBytes(32).toString('base64');
  const s = await schema();
  const parent = mkdtempSync(join(tmpdir(), 'safeshift-sec-'));
  const dir = join(parent, 'made', 'enc');
  const old = process.umask(0);
  let manifest: Manifest;
  try {
    manifest = await withDb((c) => exportTables(c, [{ schema: s, name: 'people' }], dir, { id: uniqueName('sec-enc'), keyEnv: 'SAFESHIFT_TEST_SEC_KEY' }));
  } finally {
    process.umask(old);
  }
  // Whatever the umask: directories made for the export 0700, files 0600.
  expect([mode(join(parent, 'made')), mode(dir)]).toEqual([0o700, 0o700]);
  for (const f of readdirSync(dir)) expect([f, mode(join(dir, f))]).toEqual([f, 0o600]);
  expect(manifest.mac).toMatch(/^[0-9a-f]{64}$/);

  // No ledger row for it (exported by the library): the MAC alone authenticates it.
  const keyEnv = 'SAFESHIFT_TEST_SEC_KEY';
  expect((await withDb((c) => verifyExport(c, dir, { keyEnv }))).tables).toEqual([{ table: `${s}.people`, ok: true, rows: 200 }]);
  const before = await catalogSnapshot();
  const forged = structuredClone(manifest);
  forged.tables[0]!.columns[1]!.type = 'bytea';
  writeManifest(dir, forged);
  await expect(withDb((c) => verifyExport(c, dir, { keyEnv }))).rejects
    .toThrow(/manifest's MAC does not match \(the manifest was changed after export .* was written\); refused, nothing loaded/);
  await expect(withDb((c) => restoreTable(c, dir, { schema: s, name: 'people' }, { schema: s, name: 'people_back' }, { keyEnv }))).rejects.toThrow(/MAC does not match/);
  const { mac: _mac, ...unsigned } = manifest;
  writeManifest(dir, unsigned);
  await expect(withDb((c) => verifyExport(c, dir, { keyEnv }))).rejects.toThrow('the manifest of an encrypted export has no MAC');
  expect(await victimThere(s)).toBe(true);
  expect(await catalogSnapshot()).toBe(before);
});

test('retention deletes only an export\'s own directory under the schedule\'s root; anything else is refused, kept, audited', async () => {
  const s = await schema();
  const scheduleId = uniqueName('backup-schedule-sec');
  const root = mkdtempSync(join(tmpdir(), 'safeshift-sec-root-'));
  const outside = mkdtempSync(join(tmpdir(), 'safeshift-sec-outside-'));
  writeFileSync(join(outside, 'precious.txt'), 'not a backup');
  await withDb(ensureLedger);

  /** A real export of this schedule, recorded and verified, older than anything else. */
  const genuine = async (id: string) => {
    const dir = join(root, id);
    const m = await withDb((c) => exportTables(c, [{ schema: s, name: 'people' }], dir, { id }));
    await withDb((c) => recordExport(c, m, { workflowId: scheduleId, dir, scheduleId }));
    return { dir, m };
  };
  /** A row planted in the ledger: verified, old, of this schedule. */
  const plant = (id: string, dir: string) => sql(
    `INSERT INTO safeshift.exports (id, workflow_id, dir, tables, bytes, encrypted, snapshot_at, schedule_id)
     VALUES ($1, 'planted', $2, '[]', 0, false, now(), $3)`, [id, dir, scheduleId]);

  const ok = await genuine(`${scheduleId}-ok`);
  await plant(`${scheduleId}-outside`, outside);
  await plant(`${scheduleId}-dotdot`, join(root, '..', root.split('/').pop()!, '..', outside.split('/').pop()!));
  const bare = join(root, `${scheduleId}-bare`);
  mkdirSync(bare);
  writeFileSync(join(bare, 'data.txt'), 'no manifest here');
  await plant(`${scheduleId}-bare`, bare);
  const foreign = join(root, `${scheduleId}-foreign`);
  mkdirSync(foreign);
  writeManifest(foreign, ok.m);
  await plant(`${scheduleId}-foreign`, foreign);
  const link = join(root, `${scheduleId}-link`);
  symlinkSync(outside, link);
  await plant(`${scheduleId}-link`, link);
  const edited = await genuine(`${scheduleId}-edited`);
  writeManifest(edited.dir, { ...edited.m, server: 'edited' });
  const extra = await genuine(`${scheduleId}-extra`);
  writeFileSync(join(extra.dir, 'notes.txt'), 'someone else\'s');
  await sql(`UPDATE safeshift.exports SET verified_at = now(), exported_at = now() - interval '1 day' WHERE schedule_id = $1`, [scheduleId]);

  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const pruned = await env.run(pruneBackups, { db: 'DATABASE_URL', scheduleId, retain: 0, root, workflowId: scheduleId, runId: 'run-1' });
  expect(pruned).toEqual([`${scheduleId}-ok`]);
  expect(existsSync(ok.dir)).toBe(false);
  expect(readFileSync(join(outside, 'precious.txt'), 'utf8')).toBe('not a backup');
  for (const d of [bare, foreign, link, edited.dir, extra.dir]) expect([d, existsSync(d)]).toEqual([d, true]);
  expect(readdirSync(extra.dir).sort()).toEqual([...extra.m.tables.map((t) => t.file), 'manifest.json', 'notes.txt'].sort());

  const refusals = await sql<{ id: string; reason: string }>(
    `SELECT details->>'id' AS id, details->>'reason' AS reason FROM safeshift.audit_log WHERE action = 'backup:prune-refused' AND details->>'schedule' = $1 ORDER BY 1`, [scheduleId]);
  expect(Object.fromEntries(refusals.map((r) => [r.id.slice(scheduleId.length + 1), r.reason.replace(/^export \S+: \S+ /, '')]))).toEqual({
    bare: expect.stringMatching(/^holds no manifest\.json \(a plain file\); not deleted$/),
    dotdot: expect.stringMatching(/^is not the schedule's directory for it/),
    edited: expect.stringMatching(/^holds a manifest whose SHA-256 [0-9a-f]{64} is not the [0-9a-f]{64} recorded when the export was written; not deleted$/),
    extra: 'holds files that are not the export\'s (notes.txt); not deleted',
    foreign: expect.stringMatching(/^holds the manifest of another export \(.*-ok\); not deleted$/),
    link: 'is a symbolic link; not deleted',
    outside: expect.stringMatching(/^is not the schedule's directory for it/),
  });
  expect(await sql(`SELECT id FROM safeshift.exports WHERE schedule_id = $1 AND pruned_at IS NOT NULL`, [scheduleId])).toEqual([{ id: `${scheduleId}-ok` }]);

  // No root given (a run that cannot say where its exports live): nothing is deleted.
  expect(await env.run(pruneBackups, { db: 'DATABASE_URL', scheduleId, retain: 0 })).toEqual([]);
  expect(existsSync(edited.dir)).toBe(true);
});
