/**
 * The backup workflow's activities: export tables to files in one snapshot, then verify the export (hashes, and
 * a load into a scratch schema that is rolled back). Both recorded in `safeshift.exports`. No compensation: an
 * export that fails verification is kept, marked unverified, as evidence; it never counts as a backup.
 */
import { Context, log } from '@temporalio/activity';
import { exportKeyEnv, exportTables, recordExport, verifyExport, ExportError, type VerifiedTable } from '../src/export';
import { BULK_LIMITS } from '../src/db';
import { fatal } from '../src/errors';
import { appendAudit, ensureLedger } from '../src/ledger';
import { exportDirToPrune, removeExportDir } from '../src/retention';
import { parseTableRef, type TableRef } from '../src/sql';
import { heartbeating, withDatabase } from './support';

export interface ExportInput {
  db: string;
  workflowId: string;
  id: string;
  /** schema.table names, or every table outside PostgreSQL's and safeshift's own schemas when empty. */
  tables: string[];
  dir: string;
  /**
   * Environment variable (on the worker) holding the encryption key. Absent: SAFESHIFT_BACKUP_KEY if it is set on
   * the worker (encrypted whenever a key is configured), else plain. '' (`--no-encrypt`): plain.
   */
  keyEnv?: string;
  /** The schedule that started this export, if any (retention prunes per schedule). */
  scheduleId?: string;
}

export interface ExportSummary {
  id: string;
  dir: string;
  tables: { table: string; rows: number; bytes: number }[];
  bytes: number;
  seconds: number;
  encrypted: boolean;
}

export async function exportBackup(input: ExportInput): Promise<ExportSummary> {
  return withDatabase(input, (client) => heartbeating(async () => {
    await ensureLedger(client);
    const done = await client.query<{ tables: ExportSummary['tables']; bytes: string; encrypted: boolean }>(
      `SELECT tables, bytes::text, encrypted FROM safeshift.exports WHERE id = $1`, [input.id]);
    // A retry after the export was recorded (reply lost): done.
    if (done.rows[0]) return { id: input.id, dir: input.dir, tables: done.rows[0].tables, bytes: Number(done.rows[0].bytes), seconds: 0, encrypted: done.rows[0].encrypted };
    let tables: TableRef[];
    if (input.tables.length) {
      tables = input.tables.map((t) => {
        const ref = parseTableRef(t);
        if (!ref) throw fatal('BadBackupRequest', `table ${JSON.stringify(t)} is not schema.table`);
        return ref;
      });
    } else {
      const { rows } = await client.query<{ schema: string; name: string }>(
        `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
            AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT IN ('information_schema', 'safeshift', 'safeshift_backup')
          ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"`);
      tables = rows;
    }
    const started = Date.now();
    const ctx = Context.current();
    try {
      const keyEnv = exportKeyEnv(input.keyEnv);
      const manifest = await exportTables(client, tables, input.dir, { id: input.id, keyEnv, onTable: (t) => ctx.heartbeat(t.name) });
      const { tables: summary, bytes } = await recordExport(client, manifest, { workflowId: input.workflowId, dir: input.dir, scheduleId: input.scheduleId });
      return { id: input.id, dir: input.dir, tables: summary, bytes, seconds: (Date.now() - started) / 1000, encrypted: manifest.encryption !== null };
    } catch (err) {
      if (err instanceof ExportError) throw fatal('BadBackupRequest', err.message);
      throw err;
    }
  }), BULK_LIMITS);
}

export async function verifyBackup(input: Pick<ExportInput, 'db' | 'id' | 'dir' | 'keyEnv'>): Promise<{ ok: boolean; tables: VerifiedTable[]; seconds: number }> {
  return withDatabase(input, (client) => heartbeating(async () => {
    const started = Date.now();
    try {
      const { tables } = await verifyExport(client, input.dir, { keyEnv: input.keyEnv });
      const problems = tables.filter((t) => !t.ok);
      await client.query(
        `UPDATE safeshift.exports SET verified_at = CASE WHEN $2::boolean THEN now() END, problems = $3 WHERE id = $1`,
        [input.id, problems.length === 0, problems.length ? JSON.stringify(problems) : null]);
      return { ok: problems.length === 0, tables, seconds: (Date.now() - started) / 1000 };
    } catch (err) {
      if (err instanceof ExportError) throw fatal('BadBackupRequest', err.message);
      throw err;
    }
  }), BULK_LIMITS);
}

export interface PruneInput {
  db: string;
  scheduleId: string;
  retain: number;
  /** The schedule's root directory (its `--dir`): nothing outside it is ever deleted. */
  root?: string;
  /** The run pruning, for the audit rows of refusals. */
  workflowId?: string;
  runId?: string;
}

/**
 * Retention of a schedule's exports: the newest `retain` verified ones stay; older verified ones are deleted
 * (their directory) and marked pruned. Unverified exports are never pruned (evidence) and never count.
 * A directory is deleted only if it is that export's, under the schedule's root (src/retention.ts); any other is
 * refused, left as it is, unpruned, and each refusal audited (`backup:prune-refused`) and logged.
 * Idempotent: an export already pruned is skipped, a directory already gone is fine.
 */
export async function pruneBackups(input: PruneInput): Promise<string[]> {
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    const { rows } = await client.query<{ id: string; dir: string; digest: string | null }>(
      `SELECT id, dir, manifest_sha256 AS digest FROM safeshift.exports
        WHERE schedule_id = $1 AND verified_at IS NOT NULL AND pruned_at IS NULL
        ORDER BY exported_at DESC, id DESC OFFSET $2`, [input.scheduleId, input.retain]);
    const pruned: string[] = [];
    for (const r of rows) {
      const target = input.root
        ? exportDirToPrune(input.root, { id: r.id, dir: r.dir, manifestSha256: r.digest })
        : { refused: `export ${r.id}: ${r.dir} not deleted: the run gave no schedule root to check it against` };
      if (typeof target === 'object' && 'refused' in target) {
        log.warn(`retention refused: ${target.refused}`, { scheduleId: input.scheduleId });
        await appendAudit(client, {
          eventKey: `${input.runId ?? input.scheduleId}/prune-refused/${r.id}`, workflowId: input.workflowId ?? null, runId: input.runId ?? null,
          actor: 'safeshift', action: 'backup:prune-refused', phase: 'backup',
          details: { schedule: input.scheduleId, id: r.id, dir: r.dir, root: input.root ?? null, reason: target.refused },
        });
        continue;
      }
      if (target !== 'gone') removeExportDir(target);
      await client.query(`UPDATE safeshift.exports SET pruned_at = now() WHERE id = $1`, [r.id]);
      pruned.push(r.id);
    }
    return pruned;
  });
}
