/** Helpers for integration tests: the CLI as a subprocess, SQL of our own, plans written to temp files. */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { stringify } from 'yaml';
import { connectClient } from '../../src/config';
import { failureMessage } from './history';
import { migrationWorkflowId, planQuery, status, type MigrationStatus, type Phase } from '../../src/messages';
import { signDecision, type DecisionAction, type DecisionPayload, type SignedDecision } from '../../src/identity';
import { devKeysDir, readKeyFile } from '../../src/keys';

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

/**
 * Everything the catalog says about user objects and who may do what: equal before and after means nothing was
 * created or changed. Relations (with owner, ACL, RLS flags, options), columns (with column ACLs), schemas,
 * functions (owner, ACL, volatility, body), types, constraints, policies, triggers, rules, comments, default
 * privileges, inheritance, roles and memberships, databases, extensions, publications, event triggers. Written
 * here, independent of safeshift's own snapshot (src/catalog-snapshot.ts).
 */
export async function catalogSnapshot(): Promise<string> {
  const [r] = await sql<{ md5: string }>(`
    SELECT md5(string_agg(x, E'\\n' ORDER BY x)) AS md5 FROM (
      SELECT format('%s %s.%s %s %s %s %s %s %s %s', c.oid, n.nspname, c.relname, c.relkind, c.relfilenode, c.relowner, c.relacl,
                    c.relrowsecurity, c.relforcerowsecurity, c.reloptions) AS x
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') OR c.relacl IS NOT NULL
      UNION ALL SELECT format('schema %s %s %s', nspname, nspowner, nspacl) FROM pg_namespace
      UNION ALL SELECT format('col %s %s %s %s %s', attrelid, attname, atttypid, attnotnull, attacl) FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') OR a.attacl IS NOT NULL) AND a.attnum > 0
      UNION ALL SELECT format('function %s %s.%s %s %s %s %s %s', p.oid, p.pronamespace, p.proname, p.proowner, p.proacl, p.provolatile, p.prosecdef, md5(p.prosrc))
        FROM pg_proc p
      UNION ALL SELECT format('type %s %s %s %s %s', oid, typnamespace, typname, typowner, typacl) FROM pg_type
      UNION ALL SELECT format('constraint %s %s %s %s %s', oid, conrelid, conname, contype, convalidated) FROM pg_constraint
      UNION ALL SELECT format('policy %s %s %s %s %s %s %s', oid, polrelid, polname, polcmd, polroles, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)) FROM pg_policy
      UNION ALL SELECT format('trigger %s %s %s %s %s', oid, tgrelid, tgname, tgfoid, tgenabled) FROM pg_trigger
      UNION ALL SELECT format('rule %s %s %s', oid, ev_class, rulename) FROM pg_rewrite
      UNION ALL SELECT format('comment %s %s %s %s', classoid, objoid, objsubid, md5(description)) FROM pg_description
      UNION ALL SELECT format('shcomment %s %s %s', classoid, objoid, md5(description)) FROM pg_shdescription
      UNION ALL SELECT format('default acl %s %s %s %s', defaclrole, defaclnamespace, defaclobjtype, defaclacl) FROM pg_default_acl
      UNION ALL SELECT format('inherits %s %s', inhrelid, inhparent) FROM pg_inherits
      UNION ALL SELECT format('role %s %s %s %s %s', oid, rolname, rolsuper, rolbypassrls, rolcanlogin) FROM pg_roles
      UNION ALL SELECT format('member %s %s %s', roleid, member, admin_option) FROM pg_auth_members
      UNION ALL SELECT format('database %s %s %s', oid, datname, datacl) FROM pg_database
      UNION ALL SELECT format('extension %s %s', extname, extversion) FROM pg_extension
      UNION ALL SELECT format('publication %s %s', pubname, puballtables) FROM pg_publication
      UNION ALL SELECT format('publication rel %s %s', prpubid, prrelid) FROM pg_publication_rel
      UNION ALL SELECT format('event trigger %s %s', evtname, evtenabled) FROM pg_event_trigger
      UNION ALL SELECT format('language %s %s', lanname, lanacl) FROM pg_language
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

/**
 * One Temporal client per test file for the status polls (a wait polls four times a second: a connection per poll
 * cost the CI minutes of CPU). Closed after the file's tests; tests that need their own still connect themselves.
 */
let pollClient: Promise<Awaited<ReturnType<typeof connectClient>>> | undefined;
function sharedClient(): ReturnType<typeof connectClient> {
  if (!pollClient) {
    pollClient = connectClient();
    pollClient.catch(() => { pollClient = undefined; });
  }
  return pollClient;
}
if (typeof afterAll === 'function') {
  afterAll(async () => {
    const client = await pollClient?.catch(() => undefined);
    pollClient = undefined;
    await client?.connection.close();
  });
}

export async function statusOf(planName: string): Promise<MigrationStatus> {
  const client = await sharedClient();
  return client.workflow.getHandle(migrationWorkflowId(planName)).query(status);
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
  throw new Error(`timed out waiting; last status: ${JSON.stringify(last)}; running steps: ${await pendingActivities(planName)}`);
}

/** What the migration's workflow is waiting on (activity, attempt, last failure): a timed-out wait says where it hung. */
async function pendingActivities(planName: string): Promise<string> {
  try {
    const { raw } = await (await sharedClient()).workflow.getHandle(migrationWorkflowId(planName)).describe();
    // The last failure's message is encrypted in what Temporal returns (src/failure-converter.ts): decrypted here.
    return JSON.stringify(await Promise.all((raw.pendingActivities ?? []).map(async (a) => ({
      activity: a.activityType?.name, state: a.state, attempt: a.attempt,
      lastHeartbeat: a.lastHeartbeatTime?.seconds?.toString(), lastFailure: await failureMessage(a.lastFailure),
    }))));
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
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

/**
 * A decision signed as `by` with the test people's dev keys (global setup registers them), for tests that talk
 * to a migration through the Temporal client: the current run, the plan hash the workflow computed, now.
 */
export async function signedAs(
  handle: { workflowId: string; describe(): Promise<{ runId: string }>; query: (q: typeof planQuery) => Promise<{ planHash: string }> },
  action: DecisionAction, by: string, extra: Partial<DecisionPayload> = {}, privateKey?: string,
): Promise<SignedDecision> {
  const runId = extra.runId ?? (await handle.describe()).runId;
  const planHash = extra.planHash ?? (await handle.query(planQuery)).planHash;
  // `by`'s dev key unless another key is given (a key of the user's config, or an attacker's).
  const key = privateKey ?? readKeyFile(join(devKeysDir(), `${by.toLowerCase()}.key`)).privateKey;
  return signDecision({
    by, workflowId: handle.workflowId, runId, gate: null, action, planHash, reason: null, time: new Date().toISOString(), ...extra,
  }, key);
}
