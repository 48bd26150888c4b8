/**
 * `safeshift backup` (a workflow: export, then verify), `safeshift backup verify <dir>` (runs here, against the
 * database directly) and `safeshift restore` (restoreWorkflow: into a new table, or over the live table after a gate).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type pg from 'pg';
import { ApplicationFailure, ScheduleAlreadyRunning, ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import { connectClient, temporalConfig, workflowUiUrl } from '../config';
import { inTransaction, withClient } from '../db';
import { appendAudit, ensureLedger } from '../ledger';
import { ExportError, readManifest, verifyExport } from '../export';
import { BACKUP_KEY_ENV, MAX_GATE_WAIT_MS, restoreStatus, restoreWorkflowId, type RestoreInput, type RestoreStatus } from '../messages';
import { parseDuration } from '../plan/duration';
import { displayName, parseTableRef, qualified } from '../sql';
import type { BackupResult } from '../../workflows/backup';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';

/**
 * Writing an export: the key's environment variable with --encrypt or --key-env (BACKUP_KEY_ENV unless named);
 * '' with --no-encrypt (plain); undefined otherwise: the worker encrypts with BACKUP_KEY_ENV when it has it set.
 */
function encryptionKeyEnv(opts: { encrypt?: boolean; keyEnv?: string }): string | undefined {
  if (opts.encrypt === false) {
    if (opts.keyEnv) throw new CliError('--no-encrypt and --key-env: give one');
    return '';
  }
  return opts.encrypt || opts.keyEnv ? opts.keyEnv ?? BACKUP_KEY_ENV : undefined;
}
/** Reading an export: the named variable, else BACKUP_KEY_ENV when it is set (a plain export needs none). */
const keyEnvOf = (keyEnv: string | undefined) => keyEnv ?? (process.env[BACKUP_KEY_ENV] ? BACKUP_KEY_ENV : undefined);
const actorOf = (as: string | undefined) => as ?? process.env.USER ?? 'operator';

function stamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/** Refused here, before a workflow or schedule exists, so bad input changes nothing and exits 2. */
async function checkTables(tables: string[], opts: { all?: boolean; database: string }): Promise<void> {
  if (opts.all && tables.length) throw new CliError('give tables or --all, not both');
  if (!opts.all && !tables.length) throw new CliError('name the tables to back up (schema.table ...) or give --all');
  for (const t of tables) if (!parseTableRef(t)) throw new CliError(`table ${JSON.stringify(t)}: write it as schema.table`);
  if (!tables.length) return;
  const missing = await withClient(connectionString(opts.database), async (c) => {
    const { rows } = await c.query<{ name: string }>(
      `SELECT t AS name FROM unnest($1::text[]) t WHERE to_regclass(t) IS NULL`, [tables.map((t) => qualified(parseTableRef(t)!))]);
    return rows.map((r) => r.name);
  }, 'safeshift backup');
  if (missing.length) throw new CliError(`table ${missing.map((m) => displayName(parseTableRef(m)!)).join(', ')} does not exist`);
}

export async function startBackup(
  tables: string[], opts: { all?: boolean; dir?: string; encrypt?: boolean; keyEnv?: string; json?: boolean; database: string; as?: string },
  print: (line: string) => void,
): Promise<number> {
  await checkTables(tables, opts);
  const id = `backup-${stamp()}`;
  const dir = resolve(opts.dir ?? `safeshift-backups/${id}`);
  const keyEnv = encryptionKeyEnv(opts);
  const config = temporalConfig();
  const client = await connectClient(config);
  try {
    const handle = await client.workflow.start('backupWorkflow', {
      taskQueue: config.taskQueue,
      workflowId: id,
      args: [{ db: opts.database, id, tables, dir, keyEnv, requestedBy: actorOf(opts.as) }],
    });
    if (!opts.json) {
      const how = keyEnv ? ` (encrypted, key from ${keyEnv} on the worker)` : keyEnv === '' ? ' (plain: --no-encrypt)' : ` (encrypted if ${BACKUP_KEY_ENV} is set on the worker)`;
      print(`${id}: exporting ${opts.all ? 'every table' : tables.join(', ')} to ${dir}${how}`);
      const ui = workflowUiUrl(config, id);
      if (ui) print(`  ${ui}`);
    }
    try {
      const result = (await handle.result()) as BackupResult;
      if (opts.json) {
        print(JSON.stringify({ id, dir, ...result }, null, 2));
      } else {
        const mb = result.export.bytes / 1024 / 1024;
        print(`exported ${result.export.tables.length} table(s)${result.export.encrypted ? ' encrypted' : ', NOT encrypted'}, ${mb.toFixed(1)} MB in ${result.export.seconds.toFixed(1)} s; verified in ${result.verified.seconds.toFixed(1)} s`);
        for (const t of result.verified.tables) print(`  ${t.table}: ${t.rows} rows, verified`);
      }
      return EXIT_OK;
    } catch (err) {
      if (err instanceof WorkflowFailedError) {
        const cause = (err.cause as Error | undefined)?.message ?? err.message;
        if (opts.json) print(JSON.stringify({ id, dir, ok: false, error: cause }, null, 2));
        else process.stderr.write(`${id}: ${cause}\n`);
        return EXIT_FAILED;
      }
      throw err;
    }
  } finally {
    await client.connection.close();
  }
}

/** A directory, or the id of an export recorded in `safeshift.exports` (its directory). */
async function backupDir(client: pg.Client, arg: string): Promise<string> {
  if (existsSync(arg) && statSync(arg).isDirectory()) return arg;
  const { rows } = await client.query<{ dir: string }>(
    `SELECT dir FROM safeshift.exports WHERE id = $1 AND to_regclass('safeshift.exports') IS NOT NULL`, [arg]).catch(() => ({ rows: [] as { dir: string }[] }));
  if (!rows[0]) throw new CliError(`${arg} is neither a directory nor the id of an export in safeshift.exports`);
  return rows[0].dir;
}


export async function verifyBackupDir(arg: string, opts: { keyEnv?: string; json?: boolean; database: string; as?: string }, print: (line: string) => void): Promise<number> {
  try {
    const { dir, manifest, tables } = await withClient(connectionString(opts.database), async (c) => {
      const dir = await backupDir(c, arg);
      const result = await verifyExport(c, dir, { keyEnv: keyEnvOf(opts.keyEnv) });
      const problems = result.tables.filter((t) => !t.ok);
      // Recorded: the export's verification state follows the latest check, and the check is in the audit log.
      await ensureLedger(c);
      await inTransaction(c, async () => {
        await c.query(`UPDATE safeshift.exports SET verified_at = CASE WHEN $2::boolean THEN now() END, problems = $3 WHERE id = $1`,
          [result.manifest.id, problems.length === 0, problems.length ? JSON.stringify(problems) : null]);
        await appendAudit(c, { eventKey: `cli/${randomUUID()}`, workflowId: null, runId: null, actor: actorOf(opts.as),
          action: problems.length ? 'backup:verify-failed' : 'backup:verify-ok', phase: 'backup', details: { id: result.manifest.id, dir, tables: result.tables } });
      });
      return { dir, ...result };
    }, 'safeshift backup verify');
    const ok = tables.every((t) => t.ok);
    if (opts.json) print(JSON.stringify({ id: manifest.id, dir, ok, tables }, null, 2));
    else {
      for (const t of tables) print(`  ${t.table}: ${t.ok ? `${t.rows} rows, intact` : t.problem}`);
      print(ok ? `${dir}: intact (${tables.length} tables)` : `${dir}: NOT intact`);
    }
    return ok ? EXIT_OK : EXIT_FAILED;
  } catch (err) {
    if (err instanceof ExportError) throw new CliError(err.message);
    throw err;
  }
}

export interface RestoreOptions {
  table?: string;
  into?: string;
  overLive?: boolean;
  approvers?: string;
  required: string;
  gateTimeout: string;
  lockTimeoutMs: string;
  wait?: boolean;
  json?: boolean;
  keyEnv?: string;
  database: string;
  as?: string;
}

/** Flags checked here, before a workflow exists: bad input exits 2 and changes nothing. */
export function restoreRequest(opts: RestoreOptions, requestedBy: string): Pick<RestoreInput, 'into' | 'overLive'> {
  if (opts.into && !parseTableRef(opts.into)) throw new CliError(`--into: ${JSON.stringify(opts.into)} is not schema.table`);
  if (!opts.overLive) {
    if (opts.approvers) throw new CliError('--approvers: only a restore over the live table (--over-live) has a gate');
    return { into: opts.into };
  }
  if (opts.into) throw new CliError('--into and --over-live: give one (a new table, or the live table after a gate)');
  const approvers = (opts.approvers ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  if (!approvers.length) throw new CliError('--approvers: a restore over the live table needs approvers (name,name)');
  const required = Number(opts.required);
  if (!Number.isInteger(required) || required < 1) throw new CliError(`--required: ${JSON.stringify(opts.required)} must be a whole number of at least 1`);
  const eligible = approvers.filter((a) => a !== requestedBy);
  if (eligible.length < required) throw new CliError(`--approvers: ${required} approval(s) needed but only ${eligible.length} approver(s) besides the requester ${requestedBy}`);
  const gateTimeoutMs = parseDuration(opts.gateTimeout);
  if (!gateTimeoutMs) throw new CliError(`--gate-timeout: ${JSON.stringify(opts.gateTimeout)} is not a duration like 24h`);
  if (gateTimeoutMs > MAX_GATE_WAIT_MS) throw new CliError(`--gate-timeout: ${opts.gateTimeout} is more than 30d: the staged table would wait beside the live one for longer than any gate may`);
  if (gateTimeoutMs < 1000) throw new CliError(`--gate-timeout: ${opts.gateTimeout} is less than 1s`);
  const lockTimeoutMs = Number(opts.lockTimeoutMs);
  if (!Number.isInteger(lockTimeoutMs) || lockTimeoutMs < 1) throw new CliError(`--lock-timeout-ms: ${JSON.stringify(opts.lockTimeoutMs)} must be a whole number of milliseconds`);
  return { overLive: { approvers, required, gateTimeoutMs, lockTimeoutMs, attempts: 20 } };
}

export function renderRestoreStatus(id: string, s: RestoreStatus): string {
  const lines = [`${id}: restore ${s.table}${s.backupId ? ` from ${s.backupId}` : ''} → ${s.into ?? '(new table)'}  [${s.phase}]`];
  if (s.rows !== undefined) lines.push(`  restored rows: ${s.rows}${s.liveRows !== undefined ? `; live table now: ${s.liveRows}` : ''}`);
  if (s.staged) lines.push(`  staged: ${s.staged}; the live table is kept as ${s.retired}`);
  if (s.gate) {
    const g = s.gate;
    lines.push(`  restore gate: ${g.state}, ${g.decisions.filter((d) => d.approved).length}/${g.required} approvals from ${g.approvers.join(', ')}${g.deadline ? `, until ${g.deadline}` : ''}`);
    if (g.state === 'open') lines.push(`  decide: safeshift approve ${id} --as <approver>   |   safeshift reject ${id} --as <approver>`);
  }
  for (const m of s.moves ?? []) lines.push(`  moves: ${m}`);
  if (s.message) lines.push(`  ${s.message}`);
  return lines.join('\n');
}

/**
 * `safeshift restore`: restoreWorkflow. Into a new table it waits for the result; over the live table it returns
 * once the restored rows are staged and the gate is open (or, with --wait, once the restore is over).
 */
export async function restoreFromDir(arg: string, opts: RestoreOptions, print: (line: string) => void): Promise<number> {
  const requestedBy = actorOf(opts.as);
  const shape = restoreRequest(opts, requestedBy);
  const dir = resolve(await withClient(connectionString(opts.database), (c) => backupDir(c, arg), 'safeshift restore'));
  let table = opts.table;
  if (table === undefined) {
    let tables: string[];
    try {
      tables = readManifest(dir).tables.map((t) => displayName(t));
    } catch (err) {
      if (err instanceof ExportError) throw new CliError(err.message);
      throw err;
    }
    if (tables.length !== 1) throw new CliError(`--table: the export has ${tables.length} tables (${tables.join(', ')}); name one`);
    table = tables[0]!;
  }
  if (!parseTableRef(table)) throw new CliError(`--table: ${JSON.stringify(table)} is not schema.table`);
  const id = restoreWorkflowId(`${stamp()}-${randomUUID().slice(0, 6)}`);
  const config = temporalConfig();
  const client = await connectClient(config);
  try {
    const handle = await client.workflow.start('restoreWorkflow', {
      taskQueue: config.taskQueue,
      workflowId: id,
      args: [{ db: opts.database, dir, table, keyEnv: keyEnvOf(opts.keyEnv), requestedBy, ...shape } satisfies RestoreInput],
    });
    if (!opts.json) {
      print(`${id}: restoring ${table} from ${dir}${shape.overLive ? ' over the live table (after approval)' : ''}`);
      const ui = workflowUiUrl(config, id);
      if (ui) print(`  ${ui}`);
    }
    const settled = async (): Promise<RestoreStatus> => {
      try {
        return await handle.result() as RestoreStatus;
      } catch (err) {
        if (!(err instanceof WorkflowFailedError)) throw err;
        const message = err.cause?.message ?? err.message;
        const s = await handle.query(restoreStatus);
        // Refused by the check, before anything was loaded: bad input, exit 2.
        if (s.outcome?.phase === 'failed' && err.cause instanceof ApplicationFailure && err.cause.type === 'BadRestore') throw new CliError(message);
        if (opts.json) print(JSON.stringify({ id, ok: false, error: message }, null, 2));
        else process.stderr.write(`${id}: ${message}\n`);
        return { ...s, phase: 'failed' };
      }
    };
    let final: RestoreStatus;
    if (shape.overLive && !opts.wait) {
      // Until the gate opens or the restore ends: the staged rows are verified by then.
      for (;;) {
        const s = await handle.query(restoreStatus);
        if (s.phase === 'awaiting_restore') {
          print(opts.json ? JSON.stringify({ id, ...s }, null, 2) : renderRestoreStatus(id, s));
          return EXIT_OK;
        }
        if (['done', 'failed', 'rolled_back'].includes(s.phase)) break;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    final = await settled();
    if (final.phase !== 'done') return EXIT_FAILED;
    print(opts.json ? JSON.stringify({ id, ...final }, null, 2) : (shape.overLive ? renderRestoreStatus(id, final) : final.message ?? ''));
    return EXIT_OK;
  } finally {
    await client.connection.close();
  }
}

export function backupScheduleId(name: string): string {
  return `backup-schedule-${name}`;
}

/**
 * `safeshift backup schedule`: a Temporal Schedule starting backupWorkflow on a cron expression. Overlap SKIP (a
 * backup still running means the next one is skipped, not queued), an explicit catch-up window (runs missed while
 * Temporal was down are made up only within it), retention of the newest N verified exports.
 */
export async function scheduleBackup(
  tables: string[],
  opts: { all?: boolean; name: string; cron: string; retain: string; dir: string; catchupWindow: string; encrypt?: boolean; keyEnv?: string; database: string; as?: string },
  print: (line: string) => void,
): Promise<number> {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(opts.name)) throw new CliError(`--name: ${JSON.stringify(opts.name)} must be lower-case letters, digits and dashes`);
  const retain = Number(opts.retain);
  if (!Number.isInteger(retain) || retain < 1) throw new CliError(`--retain: ${JSON.stringify(opts.retain)} must be a whole number of at least 1`);
  if (!parseDuration(opts.catchupWindow)) throw new CliError(`--catchup-window: ${JSON.stringify(opts.catchupWindow)} is not a duration like 1h`);
  await checkTables(tables, opts);
  const scheduleId = backupScheduleId(opts.name);
  const dirRoot = resolve(opts.dir);
  const keyEnv = encryptionKeyEnv(opts);
  const config = temporalConfig();
  const client = await connectClient(config);
  try {
    await client.schedule.create({
      scheduleId,
      spec: { cronExpressions: [opts.cron] },
      action: {
        type: 'startWorkflow',
        workflowType: 'backupWorkflow',
        taskQueue: config.taskQueue,
        workflowId: scheduleId,
        args: [{ db: opts.database, tables, dirRoot, keyEnv, requestedBy: actorOf(opts.as), schedule: { id: scheduleId, retain } }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: parseDuration(opts.catchupWindow)! },
    });
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) throw new CliError(`--name: schedule ${scheduleId} exists already`);
    const message = (err as Error).message;
    if (/cron|spec|invalid/i.test(message)) throw new CliError(`--cron: ${JSON.stringify(opts.cron)} is refused by Temporal: ${message}`);
    throw err;
  } finally {
    await client.connection.close();
  }
  print(`schedule ${scheduleId}: ${opts.all ? 'every table' : tables.join(', ')} on "${opts.cron}" (UTC) into ${dirRoot}/<run>${keyEnv ? `, encrypted with ${keyEnv}` : keyEnv === '' ? ', plain (--no-encrypt)' : `, encrypted if ${BACKUP_KEY_ENV} is set on the worker`}; ` +
    `keeps the newest ${retain} verified export(s); a run still going when the next is due makes that one skip`);
  return EXIT_OK;
}
