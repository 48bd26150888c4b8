/**
 * `safeshift backup` (a workflow: export, then verify), `safeshift backup verify <dir>` and `safeshift restore
 * <dir> --table --into` (into a new table only; both run here, against the database directly).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type pg from 'pg';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, WorkflowFailedError } from '@temporalio/client';
import { connectClient, temporalConfig, workflowUiUrl } from '../config';
import { inTransaction, withClient } from '../db';
import { appendAudit, ensureLedger } from '../ledger';
import { ExportError, readManifest, restoreTable, verifyExport } from '../export';
import { parseDuration } from '../plan/duration';
import { displayName, parseTableRef, qualified } from '../sql';
import type { BackupResult } from '../../workflows/backup';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';

/** The encryption key's environment variable when --encrypt is given without --key-env. */
export const DEFAULT_KEY_ENV = 'SAFESHIFT_BACKUP_KEY';

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
  const keyEnv = opts.encrypt || opts.keyEnv ? opts.keyEnv ?? DEFAULT_KEY_ENV : undefined;
  const config = temporalConfig();
  const client = await connectClient(config);
  try {
    const handle = await client.workflow.start('backupWorkflow', {
      taskQueue: config.taskQueue,
      workflowId: id,
      args: [{ db: opts.database, id, tables, dir, keyEnv, requestedBy: opts.as ?? process.env.USER ?? 'operator' }],
    });
    if (!opts.json) {
      print(`${id}: exporting ${opts.all ? 'every table' : tables.join(', ')} to ${dir}${keyEnv ? ` (encrypted, key from ${keyEnv} on the worker)` : ''}`);
      const ui = workflowUiUrl(config, id);
      if (ui) print(`  ${ui}`);
    }
    try {
      const result = (await handle.result()) as BackupResult;
      if (opts.json) {
        print(JSON.stringify({ id, dir, ...result }, null, 2));
      } else {
        const mb = result.export.bytes / 1024 / 1024;
        print(`exported ${result.export.tables.length} table(s), ${mb.toFixed(1)} MB in ${result.export.seconds.toFixed(1)} s; verified in ${result.verified.seconds.toFixed(1)} s`);
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

const keyEnvOf = (keyEnv: string | undefined) => keyEnv ?? (process.env[DEFAULT_KEY_ENV] ? DEFAULT_KEY_ENV : undefined);
const actorOf = (as: string | undefined) => as ?? process.env.USER ?? 'operator';

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

export async function restoreFromDir(arg: string, opts: { table: string; into: string; keyEnv?: string; database: string; as?: string }, print: (line: string) => void): Promise<number> {
  const table = parseTableRef(opts.table);
  if (!table) throw new CliError(`--table: ${JSON.stringify(opts.table)} is not schema.table`);
  const into = parseTableRef(opts.into);
  if (!into) throw new CliError(`--into: ${JSON.stringify(opts.into)} is not schema.table`);
  try {
    const { rows } = await withClient(connectionString(opts.database), async (c) => {
      const dir = await backupDir(c, arg);
      const restored = await restoreTable(c, dir, table, into, { keyEnv: keyEnvOf(opts.keyEnv) });
      const { id } = readManifest(dir);
      await ensureLedger(c);
      await inTransaction(c, async () => {
        await c.query(`INSERT INTO safeshift.restores (backup_id, source, into_table, rows, actor) VALUES ($1, $2, $3, $4, $5)`,
          [id, displayName(table), displayName(into), restored.rows, actorOf(opts.as)]);
        await appendAudit(c, { eventKey: `cli/${randomUUID()}`, workflowId: null, runId: null, actor: actorOf(opts.as),
          action: 'backup:restored', phase: 'restore', details: { id, dir, table: displayName(table), into: displayName(into), rows: restored.rows } });
      });
      return restored;
    }, 'safeshift restore');
    print(`restored ${opts.table} into ${opts.into}: ${rows} rows, count and checksum equal to the export's`);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof ExportError) throw new CliError(err.message);
    throw err;
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
  const keyEnv = opts.encrypt || opts.keyEnv ? opts.keyEnv ?? DEFAULT_KEY_ENV : undefined;
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
        args: [{ db: opts.database, tables, dirRoot, keyEnv, requestedBy: opts.as ?? process.env.USER ?? 'operator', schedule: { id: scheduleId, retain } }],
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
  print(`schedule ${scheduleId}: ${opts.all ? 'every table' : tables.join(', ')} on "${opts.cron}" (UTC) into ${dirRoot}/<run>${keyEnv ? `, encrypted with ${keyEnv}` : ''}; ` +
    `keeps the newest ${retain} verified export(s); a run still going when the next is due makes that one skip`);
  return EXIT_OK;
}
