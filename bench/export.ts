/**
 * `npm run bench:export`: `safeshift backup` of the Empathy Ledger demo table (BENCH_ROWS rows, default
 * 2,000,000, about 820 MB), plain and encrypted, through the workflow (export, then verify). Prints export and
 * verify throughput in MB/s of table (heap + TOAST) read, and the size of the files; then the plain export restored
 * over the live table (to the gate, approved, swapped): load time and the swap's lock time. Not a test.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { seedDemoProfiles } from '../examples/empathy-ledger/seed';
import { restoreFromDir, startBackup } from '../src/cli/backup';
import { decide } from '../src/cli/migrations';
import { connect, withClient } from '../src/db';
import { ensureDevKeys } from '../src/keys';
import { attachOrStartDevStack } from '../src/dev/stack';
import type { BackupResult } from '../workflows/backup';

const ROWS = Number(process.env.BENCH_ROWS ?? 2_000_000);
const say = (line: string) => process.stdout.write(`${line}\n`);

/** The plain export back over the live table: load + verify to the gate, then the swap's lock time. */
async function restoreOverLive(dir: string, mb: number): Promise<void> {
  const quiet = () => undefined;
  const began = Date.now();
  let json = '';
  // Decisions are signed: the approver gets a dev key, registered before the restore reads its deciders' keys.
  await withClient(process.env.DATABASE_URL!, (db) => ensureDevKeys(db, ['bench-approver']), 'safeshift bench');
  const code = await restoreFromDir(dir, { overLive: true, approvers: 'bench-approver', required: '1', gateTimeout: '1h', lockTimeoutMs: '2000', json: true, database: 'DATABASE_URL', as: 'bench' },
    (line) => { json += line; });
  if (code !== 0) throw new Error(`restore failed: ${json}`);
  const toGate = (Date.now() - began) / 1000;
  const { id } = JSON.parse(json) as { id: string };
  await decide(id, 'approve', { as: 'bench-approver' }, quiet);
  const client = await connect(process.env.DATABASE_URL!, 'safeshift bench');
  try {
    for (let i = 0; ; i++) {
      const { rows } = await client.query<{ ms: string }>(
        `SELECT details->>'lockHeldMs' AS ms FROM safeshift.audit_log WHERE workflow_id = $1 AND action = 'backup:restored'`, [id]);
      if (rows[0]) {
        say(`restore over the live table: load + verify to the gate ${toGate.toFixed(1)} s (${(mb / toGate).toFixed(0)} MB/s of table), swap lock held ${rows[0].ms} ms`);
        return;
      }
      if (i > 600) throw new Error(`restore ${id} did not finish`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  // The in-process worker reads the key from this process's environment.
  process.env.SAFESHIFT_BENCH_KEY = randomBytes(32).toString('base64');
  const stack = await attachOrStartDevStack({ log: () => undefined });
  try {
    const url = process.env.DATABASE_URL!;
    await seedDemoProfiles(url, ROWS);
    const client = await connect(url, 'safeshift bench');
    const { rows } = await client.query<{ bytes: string }>(`SELECT pg_table_size('public.profiles')::text AS bytes`);
    await client.query('CHECKPOINT');
    await client.end();
    const mb = Number(rows[0]!.bytes) / 1024 / 1024;
    say(`table: public.profiles, ${ROWS} rows, ${mb.toFixed(0)} MB (heap + TOAST); node ${process.version}`);
    let plainDir = '';
    for (const keyEnv of [undefined, 'SAFESHIFT_BENCH_KEY']) {
      const dir = join(mkdtempSync(join(tmpdir(), 'safeshift-bench-export-')), 'out');
      let json = '';
      const code = await startBackup(['public.profiles'], { dir, json: true, database: 'DATABASE_URL', keyEnv }, (line) => { json += line; });
      if (code !== 0) throw new Error(`backup failed: ${json}`);
      const r = JSON.parse(json) as BackupResult;
      if (!keyEnv) plainDir = dir;
      const files = r.export.bytes / 1024 / 1024;
      say(`${keyEnv ? 'encrypted' : 'plain    '}  export ${r.export.seconds.toFixed(1)} s (${(mb / r.export.seconds).toFixed(0)} MB/s), ` +
        `verify ${r.verified.seconds.toFixed(1)} s (${(mb / r.verified.seconds).toFixed(0)} MB/s), files ${files.toFixed(0)} MB (${(mb / files).toFixed(1)}x smaller)`);
    }
    await restoreOverLive(plainDir, mb);
  } finally {
    await stack?.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
