/**
 * The audit chain is keyed and its head anchored outside the database (issue 14, item 4). The rewrite attack: the
 * table's owner disables the append-only trigger, edits a row, deletes a row, re-hashes the whole chain
 * consistently with the old unkeyed formula (even as a whole "legacy" log), cuts the tail; `safeshift audit
 * verify` finds each; a genuine legacy part passes only up to the --legacy-until the operator gives. One migration,
 * held at its cutover gate, writes the rows; each attack is undone before the next.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { verifyAuditLog } from '../../src/audit';
import { auditKeys } from '../../src/audit-key';
import { appendAudit } from '../../src/audit-log';
import { connectClient } from '../../src/config';
import { exportTables } from '../../src/export';
import { MANIFEST, manifestText, type Manifest } from '../../src/manifest';
import { migrationWorkflowId } from '../../src/messages';
import { atPhase, basePlan, runCli, sql, statusOf, uniqueName, waitFor, writePlan } from '../support/helpers';

const t = uniqueName('audited');
const planName = t.replace(/_/g, '-');
const COPY = `public.${t}_audit_copy`;

/** As the table's owner, triggers off (what any owner may do), in one transaction. */
async function asOwner(statements: string): Promise<void> {
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE safeshift_audit_owner');
    await c.query('ALTER TABLE safeshift.audit_log DISABLE TRIGGER USER');
    await c.query(statements);
    await c.query('ALTER TABLE safeshift.audit_log ENABLE TRIGGER USER');
    await c.query('COMMIT');
  } finally {
    await c.end();
  }
}

/** The old trigger's formula, as an attacker without the key would re-hash with it, in seq order. */
const REHASH_UNKEYED = (clearKeyIds: boolean) => `
  DO $$ DECLARE r record; prev text; BEGIN
    FOR r IN SELECT * FROM safeshift.audit_log ORDER BY seq LOOP
      UPDATE safeshift.audit_log SET prev_hash = prev, ${clearKeyIds ? 'key_id = NULL,' : ''}
        hash = encode(sha256(convert_to(concat_ws('|', r.seq, coalesce(prev, ''), r.event_key, extract(epoch FROM r.at), r.workflow_id,
          r.run_id, r.actor, r.action, r.phase, r.details::text), 'UTF8')), 'hex')
       WHERE seq = r.seq RETURNING hash INTO prev;
    END LOOP;
  END $$`;

type Report = Awaited<ReturnType<typeof verifyAuditLog>>;

/** Through the CLI: exit code and --json report. */
async function verifyCli(...args: string[]): Promise<{ code: number; report: Report }> {
  const r = await runCli(['audit', 'verify', '--json', ...args]);
  if (r.code === 2) throw new Error(r.stderr);
  return { code: r.code, report: JSON.parse(r.stdout) };
}

/** The same check in this process (what the CLI runs after reading the anchor), to keep the file quick. */
async function verify(...args: string[]): Promise<{ code: number; report: Report }> {
  const anchor = args.includes('--migration') ? { workflowId: migrationWorkflowId(planName), head: (await statusOf(planName)).auditHead ?? null } : undefined;
  const legacyUntil = args.includes('--legacy-until') ? Number(args[args.indexOf('--legacy-until') + 1]) : 0;
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  try {
    const report = await verifyAuditLog(c, auditKeys(), anchor, legacyUntil);
    return { code: report.ok ? 0 : 1, report };
  } finally {
    await c.end();
  }
}

let rowOfMigration: number;

beforeAll(async () => {
  await sql(`CREATE TABLE public.${t} (id int PRIMARY KEY, v text)`);
  await sql(`INSERT INTO public.${t} SELECT g, 'v' || g FROM generate_series(1, 200) g`);
  const started = await runCli(['start', writePlan(basePlan(t, `public.${t}`, `public.${t}_v2`))]);
  expect(started.stderr).toBe('');
  await waitFor(planName, atPhase('awaiting_cutover'));
  // The phase shows before its audit row commits: copy the log (and anchor) only once that row and head are there.
  for (let i = 0; i < 80; i++, await new Promise((ok) => setTimeout(ok, 250))) {
    const [gate] = await sql<{ seq: string }>(`SELECT seq::text FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'phase:awaiting_cutover'`, [migrationWorkflowId(planName)]);
    if (gate && (await statusOf(planName)).auditHead?.seq === Number(gate.seq)) break;
  }
  const [r] = await sql<{ seq: string }>(`SELECT min(seq)::text AS seq FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'phase:copy'`, [migrationWorkflowId(planName)]);
  rowOfMigration = Number(r!.seq);
  await sql(`CREATE TABLE ${COPY} AS SELECT * FROM safeshift.audit_log`);
  await sql(`GRANT SELECT ON ${COPY} TO safeshift_audit_owner`);
});

afterEach(async () => {
  // Undo the attack: the rows exactly as the worker wrote them.
  await asOwner(`DELETE FROM safeshift.audit_log; INSERT INTO safeshift.audit_log SELECT * FROM ${COPY}`);
});

afterAll(async () => {
  const client = await connectClient();
  await client.workflow.getHandle(migrationWorkflowId(planName)).terminate('test over').catch(() => undefined);
  await client.connection.close();
});

test('as written, the chain is intact, keyed, owned by safeshift_audit_owner, and matches the anchored head', async () => {
  const [owner] = await sql<{ owner: string; unkeyed: string }>(
    `SELECT pg_get_userbyid(relowner) AS owner, (SELECT count(*) FROM safeshift.audit_log WHERE key_id IS NULL)::text AS unkeyed
       FROM pg_class WHERE oid = 'safeshift.audit_log'::regclass`);
  expect(owner).toEqual({ owner: 'safeshift_audit_owner', unkeyed: '0' });
  const whole = await verifyCli();
  expect(whole.code).toBe(0);
  expect(whole.report).toMatchObject({ ok: true, unkeyed: { rows: 0 }, findings: [] });
  const anchored = await verifyCli('--migration', planName);
  expect(anchored.code).toBe(0);
  const [last] = await sql<{ seq: string }>(`SELECT max(seq)::text AS seq FROM safeshift.audit_log WHERE workflow_id = $1`, [migrationWorkflowId(planName)]);
  expect(anchored.report.anchor?.head?.seq).toBe(Number(last!.seq));
  // The chain cannot be extended without the key, even by a superuser going through the trigger.
  await expect(sql(`INSERT INTO safeshift.audit_log (seq, event_key, at, actor, action, hash) VALUES (999999, 'x', now(), 'mallory', 'approve:cutover', 'x')`))
    .rejects.toThrow(/keyed by safeshift/);
});

test('an edited row is found', async () => {
  await asOwner(`UPDATE safeshift.audit_log SET actor = 'mallory' WHERE seq = ${rowOfMigration}`);
  const { code, report } = await verifyCli();
  expect(code).toBe(1);
  expect(report.findings[0]).toMatchObject({ seq: rowOfMigration, kind: 'edited' });
});

test('a deleted row is found', async () => {
  await asOwner(`DELETE FROM safeshift.audit_log WHERE seq = ${rowOfMigration}`);
  const { code, report } = await verify();
  expect(code).toBe(1);
  expect(report.findings[0]).toMatchObject({ seq: rowOfMigration, kind: 'missing' });
});

test('a chain re-hashed consistently with the old unkeyed formula is found', async () => {
  // Edited, then every row re-hashed in order: each row's hash and link are consistent again.
  await asOwner(`UPDATE safeshift.audit_log SET actor = 'mallory' WHERE seq = ${rowOfMigration}; ${REHASH_UNKEYED(false)}`);
  const kept = await verify();
  expect(kept.code).toBe(1);
  expect(kept.report.findings[0]).toMatchObject({ seq: 1, kind: 'edited' });

  // Made to look like a ledger from before the keyed chain (key ids cleared too): every row is unkeyed, and with
  // an audit key configured an unkeyed row is a finding unless the operator says the legacy part reaches it.
  await asOwner(`${REHASH_UNKEYED(true)}`);
  const alone = await verifyCli();
  expect(alone.code).toBe(1);
  expect(alone.report).toMatchObject({ ok: false, keyedRows: 0, unkeyed: { rows: 0, legacyUntil: 0 } });
  expect(alone.report.findings[0]).toMatchObject({ seq: 1, kind: 'unkeyed', message: expect.stringMatching(/--legacy-until/) });
  // Claiming the whole log is legacy does not pass it either: the head anchored in the workflow differs.
  const anchored = await verify('--migration', planName, '--legacy-until', String(alone.report.rows));
  expect(anchored.code).toBe(1);
  expect(anchored.report.findings).toEqual([expect.objectContaining({ kind: 'anchor-mismatch' })]);
});

test('a ledger from before the key: its unkeyed part passes only as far as --legacy-until says', async () => {
  // The log as an upgraded ledger has it: rows 1..L of the old unkeyed chain, then keyed rows chained onto them.
  const [last] = await sql<{ seq: string }>(`SELECT max(seq)::text AS seq FROM safeshift.audit_log`);
  const legacy = Math.min(Number(last!.seq), 20);
  await asOwner(`DELETE FROM safeshift.audit_log WHERE seq > ${legacy}; ${REHASH_UNKEYED(true)}`);
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  try {
    for (const n of [1, 2]) await appendAudit(c, { eventKey: `${t}/after-upgrade/${n}`, workflowId: null, runId: null, actor: 'test', action: 'after-upgrade' });
  } finally {
    await c.end();
  }
  const unstated = await verifyCli();
  expect(unstated.code).toBe(1);
  expect(unstated.report.findings.map((f) => f.kind)).toEqual(Array(legacy).fill('unkeyed'));
  const stated = await verifyCli('--legacy-until', String(legacy));
  expect(stated.code).toBe(0);
  expect(stated.report).toMatchObject({ ok: true, keyedRows: 2, unkeyed: { rows: legacy, legacyUntil: legacy }, findings: [] });
  // Stated one short, the last legacy row is a finding; the legacy part re-hashed, the first keyed row's link breaks.
  expect((await verify('--legacy-until', String(legacy - 1))).report.findings).toEqual([expect.objectContaining({ seq: legacy, kind: 'unkeyed' })]);
  await asOwner(`UPDATE safeshift.audit_log SET actor = 'mallory' WHERE seq = 1; ${REHASH_UNKEYED(false).replace('ORDER BY seq', `WHERE seq <= ${legacy} ORDER BY seq`)}`);
  expect((await verify('--legacy-until', String(legacy))).report.findings).toEqual([expect.objectContaining({ seq: legacy + 1, kind: 'broken-link' })]);
});

test('a deleted tail is found through the anchored head', async () => {
  await asOwner(`DELETE FROM safeshift.audit_log WHERE seq > ${rowOfMigration}`);
  expect((await verify()).code).toBe(0);
  const { code, report } = await verifyCli('--migration', planName);
  expect(code).toBe(1);
  expect(report.findings[0]).toMatchObject({ kind: 'anchor-missing' });
  expect(report.findings[0]!.message).toMatch(/tail was deleted/);
});

test('a backup export anchors the head outside the database: a tail deleted after it shows; its manifest cannot be edited', async () => {
  const keyEnv = 'SAFESHIFT_TEST_ANCHOR_EXPORT_KEY';
  process.env[keyEnv] = randomBytes(32).toString('hex');
  const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-anchor-')), 'export');
  const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await c.connect();
  let manifest: Manifest;
  try {
    manifest = await exportTables(c, [{ schema: 'public', name: t }], dir, { id: uniqueName('anchor'), keyEnv });
  } finally {
    await c.end();
  }
  const [last] = await sql<{ seq: string; hash: string }>(`SELECT a.seq::text AS seq, a.hash FROM safeshift.audit_log a ORDER BY a.seq DESC LIMIT 1`);
  expect(manifest.auditHead).toEqual({ seq: Number(last!.seq), hash: last!.hash });
  const withAnchor = (anchor: string) => runCli(['audit', 'verify', '--json', '--anchor', anchor, '--key-env', keyEnv]);
  const intact = await withAnchor(dir);
  expect(intact.code).toBe(0);
  expect(JSON.parse(intact.stdout).anchor).toMatchObject({ workflowId: `export ${manifest.id}`, head: manifest.auditHead });

  // The owner cuts the tail: the table alone is consistent; the head in the export is not in it any more.
  await asOwner(`DELETE FROM safeshift.audit_log WHERE seq > ${rowOfMigration}`);
  expect((await verify()).code).toBe(0);
  const cut = await withAnchor(dir);
  expect(cut.code).toBe(1);
  expect(JSON.parse(cut.stdout).findings).toEqual([expect.objectContaining({ seq: Number(last!.seq), kind: 'anchor-missing' })]);
  // Written down as <seq>:<mac>, the same.
  expect((await withAnchor(`${last!.seq}:${last!.hash}`)).code).toBe(1);
  // Whoever also reaches the backup storage cannot move the head in the manifest: its MAC (the export key) refuses it.
  const [kept] = await sql<{ hash: string }>(`SELECT hash FROM safeshift.audit_log WHERE seq = $1`, [rowOfMigration]);
  writeFileSync(join(dir, MANIFEST), manifestText({ ...manifest, auditHead: { seq: rowOfMigration, hash: kept!.hash } }));
  const forged = await withAnchor(dir);
  expect(forged.code).toBe(2);
  expect(forged.stderr).toMatch(/--anchor: .*MAC does not match/);
});

test('concurrent writers (migrations side by side) chain in commit order: every row follows the one before', async () => {
  const clients = await Promise.all(Array.from({ length: 6 }, async () => {
    const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await c.connect();
    return c;
  }));
  try {
    await Promise.all(clients.map(async (c, i) => {
      for (let n = 0; n < 5; n++) {
        // Half inside a transaction of the caller's (as recordEvent does), half on their own.
        if (i % 2) await appendAudit(c, { eventKey: `${t}/concurrent/${i}/${n}`, workflowId: null, runId: null, actor: 'test', action: 'concurrent' });
        else {
          await c.query('BEGIN');
          await appendAudit(c, { eventKey: `${t}/concurrent/${i}/${n}`, workflowId: null, runId: null, actor: 'test', action: 'concurrent', details: { i, n } });
          await c.query('COMMIT');
        }
      }
    }));
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  const { code, report } = await verify();
  expect(report.findings).toEqual([]);
  expect(code).toBe(0);
  expect(report.keyedRows).toBeGreaterThanOrEqual(30);
});

test('bad input exits 2: no such migration, no key, a --legacy-until that is not a row number, a bad --anchor', async () => {
  const badAnchor = await runCli(['audit', 'verify', '--anchor', '12:abc']);
  expect(badAnchor.code).toBe(2);
  expect(badAnchor.stderr).toMatch(/--anchor: 12:abc is neither <seq>:<64 hex digits> nor an export directory/);
  const badLegacy = await runCli(['audit', 'verify', '--legacy-until', 'all']);
  expect(badLegacy.code).toBe(2);
  expect(badLegacy.stderr).toMatch(/--legacy-until: "all" is not a row number/);
  const none = await runCli(['audit', 'verify', '--migration', 'no-such-migration']);
  expect(none.code).toBe(2);
  expect(none.stderr).toMatch(/no migration migration-no-such-migration/);
  const noKey = await runCli(['audit', 'verify'], { SAFESHIFT_AUDIT_KEY_FILE: '', SAFESHIFT_AUDIT_KEY: '', SAFESHIFT_HOME: '/nonexistent-safeshift-home' });
  expect(noKey.code).toBe(2);
  expect(noKey.stderr).toMatch(/no audit key/);
});
