/** Helpers for integration tests: the CLI as a subprocess, SQL of our own, plans written to temp files. */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { stringify } from 'yaml';
import { connectClient } from '../../src/config';
import { migrationWorkflowId, status, type MigrationStatus, type Phase } from '../../src/messages';

export const ROOT = resolve(__dirname, '../..');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/safeshift'), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', fail);
    child.on('exit', (code) => ok({ code: code ?? -1, stdout, stderr }));
  });
}

export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** An order-dependent fingerprint of a query's rows, computed by PostgreSQL, independent of safeshift's code. */
export async function fingerprint(select: string, orderBy: string): Promise<{ rows: number; md5: string }> {
  const [r] = await sql<{ rows: string; md5: string }>(
    `SELECT count(*)::text AS rows, coalesce(md5(string_agg(q::text, E'\\n' ORDER BY ${orderBy})), '') AS md5 FROM (${select}) q`);
  return { rows: Number(r!.rows), md5: r!.md5 };
}

/** The OID of a relation named as in SQL (`public.t`, `"Odd"."Name"`); fails if there is none. */
export async function relationOid(ref: string): Promise<number> {
  const [r] = await sql<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [ref]);
  return r!.oid;
}

/** Everything the catalog says about user objects: equal before and after means nothing was created or changed. */
export async function catalogSnapshot(): Promise<string> {
  const [r] = await sql<{ md5: string }>(`
    SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS md5 FROM (
      SELECT format('%s %s.%s %s %s', c.oid, n.nspname, c.relname, c.relkind, c.relfilenode) AS x
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      UNION ALL SELECT 'schema ' || nspname FROM pg_namespace
      UNION ALL SELECT format('col %s %s %s', attrelid, attname, atttypid) FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND a.attnum > 0
    ) s`);
  return r!.md5;
}

/** Plans go under the test stack's home, which global teardown removes. */
export function writePlan(plan: Record<string, unknown>, ext: 'yaml' | 'json' = 'yaml'): string {
  const dir = mkdtempSync(join(process.env.SAFESHIFT_HOME ?? tmpdir(), 'plan-'));
  const file = join(dir, `plan.${ext}`);
  writeFileSync(file, ext === 'json' ? JSON.stringify(plan, null, 2) : stringify(plan));
  return file;
}

let counter = 0;
/** A unique lower-case name per test, so tests never see each other's tables or workflows. */
export function uniqueName(prefix: string): string {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}_${Date.now().toString(36)}`.toLowerCase();
}

export function basePlan(name: string, source: string, target: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    version: 1,
    name: name.replace(/_/g, '-'),
    database: 'DATABASE_URL',
    requestedBy: 'carol',
    source,
    target,
    approvals: {
      cutover: { approvers: ['alice', 'bob'], required: 1 },
      drop: { approvers: ['alice'], required: 1 },
    },
    ...extra,
  };
}

export async function statusOf(planName: string): Promise<MigrationStatus> {
  const client = await connectClient();
  try {
    return await client.workflow.getHandle(migrationWorkflowId(planName)).query(status);
  } finally {
    await client.connection.close();
  }
}

/** Poll the status query until `until` holds (or the migration ends, which fails the wait unless wanted). */
export async function waitFor(planName: string, until: (s: MigrationStatus) => boolean, timeoutMs = 120_000): Promise<MigrationStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: MigrationStatus | undefined;
  while (Date.now() < deadline) {
    last = await statusOf(planName).catch(() => undefined);
    if (last && until(last)) return last;
    const final: Phase[] = ['done', 'rolled_back', 'failed'];
    if (last && final.includes(last.phase)) throw new Error(`migration ended in ${last.phase}: ${last.outcome?.reason}`);
    await sleep(250);
  }
  throw new Error(`timed out waiting; last status: ${JSON.stringify(last)}`);
}

export const atPhase = (phase: Phase) => (s: MigrationStatus) => s.phase === phase;

/**
 * `fn(text) RETURNS text`: its argument, after sleeping 0.5 ms when called by a safeshift copy connection. In a
 * target CHECK, it makes chunks slow enough to catch mid-flight, and costs replay and validation nothing.
 */
export async function slowOnCopy(fn: string): Promise<void> {
  await sql(`CREATE FUNCTION ${fn}(v text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
      IF current_setting('application_name') LIKE 'safeshift copy%' THEN PERFORM pg_sleep(0.0005); END IF;
      RETURN v;
    END $$`);
}
