/**
 * File exports: a full export + verify + restore round trip reproduces every table value by value, plain and
 * encrypted; a changed byte and a wrong key are detected and refused with a clear message, nothing restored.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectClient } from '../../src/config';
import { connect } from '../../src/db';
import { exportTables, readManifest, recordExport, restoreTable, verifyExport, type Manifest } from '../../src/export';
import { ensureLedger } from '../../src/ledger';
import { manifestMac } from '../../src/manifest';
import { basePlan, fingerprint, runCli, sql, uniqueName, writePlan } from '../support/helpers';

async function withDb<T>(fn: (c: Awaited<ReturnType<typeof connect>>) => Promise<T>): Promise<T> {
  const c = await connect(process.env.DATABASE_URL!);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** Two tables with awkward values, NULLs everywhere, and a generated column (not exported: it is recomputed). */
async function tables(): Promise<string> {
  const s = uniqueName('exp');
  await sql(`CREATE SCHEMA ${s}`);
  await sql(`CREATE TABLE ${s}.stories (id int PRIMARY KEY, title text, body bytea, tags text[], meta jsonb, score numeric(30,10), at timestamptz,
               during tstzrange, "Odd Name" text, title_len int GENERATED ALWAYS AS (length(title)) STORED)`);
  await sql(`INSERT INTO ${s}.stories (id, title, body, tags, meta, score, at, during, "Odd Name")
             SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE E'tab\\there\\nnew line \\\\ ☃ ' || g END,
                    CASE WHEN g % 5 = 0 THEN NULL ELSE decode(lpad(to_hex(g), 8, '0') || '00ff', 'hex') END,
                    CASE WHEN g % 3 = 0 THEN NULL ELSE ARRAY['a,b', NULL, E'q"' || g] END,
                    jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x')),
                    g * 1.0000000001, CASE WHEN g = 1 THEN 'infinity' ELSE timestamptz '2020-01-01' + g * interval '1 minute' END,
                    tstzrange(timestamptz '2020-01-01', timestamptz '2020-01-01' + g * interval '1 day'), 'odd ' || g
               FROM generate_series(1, 5000) g`);
  await sql(`CREATE TABLE ${s}.empty_one (k text PRIMARY KEY)`);
  return s;
}

/** As the backup activity does: the export recorded with its manifest's digest (a plain export verifies only against it). */
const recorded = (dir: string, manifest: Manifest) => withDb(async (c) => {
  await ensureLedger(c);
  await recordExport(c, manifest, { workflowId: 'test', dir });
  return manifest;
});

const differing = (a: string, b: string, key: string) =>
  sql<{ n: number }>(`SELECT count(*)::int AS n FROM ${a} x FULL JOIN ${b} y USING (${key}) WHERE x IS DISTINCT FROM y`);

test.each([['plain', undefined], ['encrypted', 'SAFESHIFT_TEST_EXPORT_KEY']] as const)('%s export: verify passes, restore reproduces every value', async (_label, keyEnv) => {
  process.env.SAFESHIFT_TEST_EXPORT_KEY = randomBytes(32).toString('base64');
  const s = await tables();
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-export-')), 'out');
  const manifest = await recorded(dir, await withDb((c) => exportTables(c, [{ schema: s, name: 'stories' }, { schema: s, name: 'empty_one' }], dir, { id: uniqueName('test'), keyEnv })));
  expect(manifest.tables.map((t) => [t.name, t.rows])).toEqual([['stories', 5000], ['empty_one', 0]]);
  expect(manifest.tables[0]!.columns.map((c) => c.name)).not.toContain('title_len');
  expect(manifest.encryption?.algorithm ?? null).toBe(keyEnv ? 'aes-256-gcm' : null);
  expect(readManifest(dir)).toEqual(manifest);
  if (keyEnv) expect(readFileSync(join(dir, manifest.tables[0]!.file)).includes(Buffer.from('tab'))).toBe(false);

  const verified = await withDb((c) => verifyExport(c, dir, { keyEnv }));
  expect(verified.tables).toEqual([{ table: `${s}.stories`, ok: true, rows: 5000 }, { table: `${s}.empty_one`, ok: true, rows: 0 }]);

  await withDb((c) => restoreTable(c, dir, { schema: s, name: 'stories' }, { schema: s, name: 'stories_restored' }, { keyEnv }));
  const cols = `id, title, body, tags, meta, score, at, during, "Odd Name"`;
  expect(await differing(`(SELECT ${cols} FROM ${s}.stories)`, `(SELECT ${cols} FROM ${s}.stories_restored)`, 'id')).toEqual([{ n: 0 }]);
  expect(await sql(`SELECT count(*)::int AS n FROM ${s}.stories_restored`)).toEqual([{ n: 5000 }]);
});

test('a changed byte and a wrong key are refused, named, and nothing is restored', async () => {
  process.env.SAFESHIFT_TEST_EXPORT_KEY = randomBytes(32).toString('hex');
  process.env.SAFESHIFT_TEST_OTHER_KEY = randomBytes(32).toString('hex');
  const s = await tables();
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-export-')), 'out');
  const manifest = await withDb((c) => exportTables(c, [{ schema: s, name: 'stories' }], dir, { id: 'test', keyEnv: 'SAFESHIFT_TEST_EXPORT_KEY' }));

  await expect(withDb((c) => verifyExport(c, dir, { keyEnv: 'SAFESHIFT_TEST_OTHER_KEY' }))).rejects.toThrow(/wrong key: SAFESHIFT_TEST_OTHER_KEY has key id [0-9a-f]{16}, the export was encrypted with [0-9a-f]{16}/);
  await expect(withDb((c) => verifyExport(c, dir))).rejects.toThrow(/is encrypted \(key id [0-9a-f]{16}\): name the key's environment variable/);

  // One byte in the middle of the file changed.
  const file = join(dir, manifest.tables[0]!.file);
  const bytes = readFileSync(file);
  const middle = Math.floor(bytes.length / 2);
  bytes[middle] = bytes[middle]! ^ 0x01;
  writeFileSync(file, bytes);
  const verified = await withDb((c) => verifyExport(c, dir, { keyEnv: 'SAFESHIFT_TEST_EXPORT_KEY' }));
  expect(verified.tables).toEqual([{ table: `${s}.stories`, ok: false, problem: expect.stringMatching(/SHA-256 [0-9a-f]{64} differs from the manifest's [0-9a-f]{64} \(the file was changed or corrupted\)/) }]);
  await expect(withDb((c) => restoreTable(c, dir, { schema: s, name: 'stories' }, { schema: s, name: 'stories_restored' }, { keyEnv: 'SAFESHIFT_TEST_EXPORT_KEY' })))
    .rejects.toThrow(/SHA-256 .* differs .*; nothing restored/);
  expect(await sql(`SELECT to_regclass('${s}.stories_restored') IS NULL AS gone`)).toEqual([{ gone: true }]);

  // Changed consistently with a forged manifest hash: the manifest's MAC refuses it before anything is loaded
  // (and the cipher's authentication would still refuse the file).
  const m = readManifest(dir);
  const { createHash } = await import('node:crypto');
  m.tables[0]!.sha256 = createHash('sha256').update(bytes).digest('hex');
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
  await expect(withDb((c) => verifyExport(c, dir, { keyEnv: 'SAFESHIFT_TEST_EXPORT_KEY' }))).rejects.toThrow(/the manifest's MAC does not match/);
  // Re-signed by someone holding the key: the cipher's authentication still refuses the changed file.
  m.mac = manifestMac(m, Buffer.from(process.env.SAFESHIFT_TEST_EXPORT_KEY, 'hex'));
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));
  const again = await withDb((c) => verifyExport(c, dir, { keyEnv: 'SAFESHIFT_TEST_EXPORT_KEY' }));
  expect(again.tables[0]).toMatchObject({ ok: false, problem: expect.stringMatching(/decryption failed authentication|does not restore/) });
});

test('a deleted export file is named by verify and refused by restore', async () => {
  const s = await tables();
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-export-')), 'out');
  const manifest = await recorded(dir, await withDb((c) => exportTables(c, [{ schema: s, name: 'stories' }, { schema: s, name: 'empty_one' }], dir, { id: uniqueName('test') })));
  rmSync(join(dir, manifest.tables[0]!.file));
  const verified = await withDb((c) => verifyExport(c, dir));
  expect(verified.tables).toEqual([
    { table: `${s}.stories`, ok: false, problem: `${manifest.tables[0]!.file} is missing` },
    { table: `${s}.empty_one`, ok: true, rows: 0 },
  ]);
  await expect(withDb((c) => restoreTable(c, dir, { schema: s, name: 'stories' }, { schema: s, name: 'stories_restored' })))
    .rejects.toThrow(`${manifest.tables[0]!.file} is missing from ${dir}; nothing restored`);
  expect(await sql(`SELECT to_regclass('${s}.stories_restored') IS NULL AS gone`)).toEqual([{ gone: true }]);
});

test('backup --all takes every table outside PostgreSQL\'s and safeshift\'s schemas; a partitioned table is one table with all its partitions\' rows', async () => {
  const s = await tables();
  await sql(`CREATE TABLE ${s}.events (id int, at date NOT NULL, what text) PARTITION BY RANGE (at)`);
  await sql(`CREATE TABLE ${s}.events_2025 PARTITION OF ${s}.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`);
  await sql(`CREATE TABLE ${s}.events_2026 PARTITION OF ${s}.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`);
  await sql(`INSERT INTO ${s}.events SELECT g, date '2025-06-01' + g, 'e' || g FROM generate_series(1, 400) g`);
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-export-')), 'all');
  const started = await runCli(['backup', '--all', '--dir', dir, '--json']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const result = JSON.parse(started.stdout) as { export: { tables: { table: string; rows: number }[] }; verified: { ok: boolean } };
  expect(result.verified.ok).toBe(true);
  const mine = result.export.tables.filter((t) => t.table.startsWith(`${s}.`));
  expect(mine).toEqual([
    { table: `${s}.empty_one`, rows: 0, bytes: expect.any(Number) },
    { table: `${s}.events`, rows: 400, bytes: expect.any(Number) },
    { table: `${s}.stories`, rows: 5000, bytes: expect.any(Number) },
  ]);
  expect(result.export.tables.some((t) => /^(safeshift|safeshift_backup|pg_catalog|information_schema)\./.test(t.table))).toBe(false);
  expect(await runCli(['restore', dir, '--table', `${s}.events`, '--into', `${s}.events_back`])).toMatchObject({ code: 0 });
  expect(await differing(`${s}.events`, `${s}.events_back`, 'id')).toEqual([{ n: 0 }]);
});

test('safeshift backup runs as a workflow (export, then verify, both audited); backup verify and restore work from the files', async () => {
  const s = await tables();
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-export-')), 'cli');
  const started = await runCli(['backup', `${s}.stories`, `${s}.empty_one`, '--dir', dir, '--json', '--as', 'carol']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const result = JSON.parse(started.stdout) as { id: string; verified: { ok: boolean } };
  expect(result.verified.ok).toBe(true);
  expect(await sql(`SELECT action FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [result.id])).toEqual([{ action: 'backup:exported' }, { action: 'backup:verified' }]);
  expect(await sql(`SELECT verified_at IS NOT NULL AS verified, encrypted FROM safeshift.exports WHERE id = $1`, [result.id])).toEqual([{ verified: true, encrypted: false }]);

  expect(await runCli(['backup', 'verify', dir])).toMatchObject({ code: 0, stdout: expect.stringContaining(`${dir}: intact (2 tables)`) });
  // By backup id too (the ledger knows the directory); each check and restore recorded.
  expect(await runCli(['backup', 'verify', result.id, '--as', 'dave'])).toMatchObject({ code: 0, stdout: expect.stringContaining(`${dir}: intact (2 tables)`) });
  expect(await runCli(['backup', 'verify', 'backup-no-such-id'])).toMatchObject({ code: 2, stderr: 'backup-no-such-id is neither a directory nor the id of an export in safeshift.exports\n' });
  const restored = await runCli(['restore', result.id, '--table', `${s}.stories`, '--into', `${s}.stories_back`, '--as', 'dave']);
  expect(restored).toMatchObject({ code: 0, stderr: '' });
  expect(restored.stdout).toMatch(new RegExp(`^restore-\\S+: restoring ${s}.stories from ${dir}\n`));
  expect(restored.stdout).toContain(`restored ${s}.stories into ${s}.stories_back: 5000 rows, count and checksum equal to the export's\n`);
  expect(await sql(`SELECT source, into_table, rows::int, actor FROM safeshift.restores WHERE backup_id = $1`, [result.id]))
    .toEqual([{ source: `${s}.stories`, into_table: `${s}.stories_back`, rows: 5000, actor: 'dave' }]);
  expect(await sql(`SELECT action FROM safeshift.audit_log WHERE actor = 'dave' AND details->>'id' = $1 ORDER BY seq`, [result.id]))
    .toEqual([{ action: 'backup:verify-ok' }, { action: 'backup:restored' }]);
  expect(await runCli(['restore', dir, '--table', `${s}.stories`, '--into', `${s}.stories_back`])).toMatchObject({ code: 2, stderr: expect.stringContaining(`--into: ${s}.stories_back exists; restore goes into a new table`) });

  const file = join(dir, readManifest(dir).tables[0]!.file);
  const bytes = readFileSync(file);
  bytes[10] = bytes[10]! ^ 0xff;
  writeFileSync(file, bytes);
  const broken = await runCli(['backup', 'verify', dir]);
  expect(broken.code).toBe(1);
  expect(broken.stdout).toMatch(/SHA-256 .* differs from the manifest's .* \(the file was changed or corrupted\)/);
  expect(broken.stdout).toContain(`${dir}: NOT intact`);
  expect(await sql(`SELECT verified_at IS NULL AS unverified, problems IS NOT NULL AS has_problems FROM safeshift.exports WHERE id = $1`, [result.id]))
    .toEqual([{ unverified: true, has_problems: true }]);
});

test('backup refuses a table that does not exist, exit 2, before anything starts', async () => {
  const result = await runCli(['backup', 'public.no_such_table_here', '--dir', join(tmpdir(), 'never-written')]);
  expect(result).toMatchObject({ code: 2, stderr: 'table public.no_such_table_here does not exist\n' });
});

test('a backup schedule fires (triggered), and retention keeps the newest 2 verified exports', async () => {
  const s = await tables();
  const name = s.replace(/_/g, '-');
  const root = mkdtempSync(join(tmpdir(), 'safeshift-schedule-'));
  // Yearly: it will not fire by itself during the test; each run is triggered.
  const created = await runCli(['backup', 'schedule', `${s}.empty_one`, '--name', name, '--cron', '0 0 1 1 *', '--retain', '2', '--dir', root]);
  expect(created).toMatchObject({ code: 0, stderr: '' });
  expect(created.stdout).toContain(`schedule backup-schedule-${name}:`);
  expect(await runCli(['backup', 'schedule', `${s}.empty_one`, '--name', name, '--cron', '0 0 1 1 *', '--retain', '2', '--dir', root]))
    .toMatchObject({ code: 2, stderr: `--name: schedule backup-schedule-${name} exists already\n` });

  const client = await connectClient();
  const schedule = client.schedule.getHandle(`backup-schedule-${name}`);
  try {
    const description = await schedule.describe();
    expect(description.policies).toMatchObject({ overlap: 'SKIP', catchupWindow: 3_600_000 });
    for (let run = 1; run <= 3; run++) {
      // A scheduled run's workflow id is the schedule id plus the time to the second: a trigger within the same
      // second as the last would name the same workflow and start nothing.
      if (run > 1) await new Promise((ok) => setTimeout(ok, 1100));
      await schedule.trigger();
      // The run this trigger started, then its end (retention and its audit row come after the verification).
      let started: { workflowId: string; firstExecutionRunId: string } | undefined;
      await waitUntil(async () => {
        const actions = (await schedule.describe()).info.recentActions;
        started = actions.length === run ? actions[run - 1]!.action.workflow : undefined;
        return started !== undefined;
      });
      await client.workflow.getHandle(started!.workflowId, started!.firstExecutionRunId).result();
    }
    const exports = await sql<{ id: string; dir: string; pruned: boolean }>(
      `SELECT id, dir, pruned_at IS NOT NULL AS pruned FROM safeshift.exports WHERE schedule_id = $1 ORDER BY exported_at, id`, [`backup-schedule-${name}`]);
    expect(exports.map((e) => e.pruned)).toEqual([true, false, false]);
    expect(exports.map((e) => existsSync(e.dir))).toEqual([false, true, true]);
    expect(exports.every((e) => e.dir.startsWith(`${root}/backup-schedule-${name}`))).toBe(true);
    const [pruned] = await sql<{ details: { pruned: string[] } }>(
      `SELECT details FROM safeshift.audit_log WHERE action = 'backup:pruned' AND details->>'schedule' = $1`, [`backup-schedule-${name}`]);
    expect(pruned!.details.pruned).toEqual([exports[0]!.id]);
  } finally {
    await schedule.delete();
    await client.connection.close();
  }
});

/** Until `check` is true; an error counts as not yet. */
async function waitUntil(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

test('a plan with backup.export: the migration exports and verifies the source before it prepares; the export restores it', async () => {
  const t = uniqueName('mexp');
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'v' || g FROM generate_series(1, 2000) g`);
  const expected = await fingerprint(`SELECT id, v FROM public.${t}`, 'id');
  const root = mkdtempSync(join(tmpdir(), 'safeshift-plan-export-'));

  // Encrypted, with no key on the worker: refused before anything starts, naming the field.
  const keyless = await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { backup: { table: false, export: { dir: root, encrypt: true } } })), '--auto-approve', '--json'],
    { SAFESHIFT_BACKUP_KEY: '' });
  expect(keyless.code).toBe(2);
  expect(keyless.stdout + keyless.stderr).toContain('backup.export.encrypt');

  const started = await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`, { backup: { table: false, export: { dir: root } } })), '--auto-approve', '--json']);
  expect(started).toMatchObject({ code: 0, stderr: '' });
  const status = JSON.parse(started.stdout) as { workflowId: string; phase: string; backupExport: { id: string; dir: string } };
  expect(status.phase).toBe('done');
  expect(status.backupExport.dir).toBe(`${root}/${status.backupExport.id}`);
  expect(await sql(`SELECT verified_at IS NOT NULL AS verified, workflow_id FROM safeshift.exports WHERE id = $1`, [status.backupExport.id]))
    .toEqual([{ verified: true, workflow_id: status.workflowId }]);
  const actions = (await sql<{ action: string }>(`SELECT action FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [status.workflowId])).map((r) => r.action);
  expect(actions.indexOf('backup:exported')).toBeGreaterThan(actions.indexOf('phase:backup'));
  expect(actions.indexOf('backup:verified')).toBeGreaterThan(actions.indexOf('backup:exported'));
  expect(actions.indexOf('phase:prepare')).toBeGreaterThan(actions.indexOf('backup:verified'));

  // The export holds the rows as they were before the migration.
  expect(await runCli(['restore', status.backupExport.id, '--into', `public.${t}_back`])).toMatchObject({ code: 0 });
  expect(await fingerprint(`SELECT id, v FROM public.${t}_back`, 'id')).toEqual(expected);
});
