/**
 * Phase 2, backup: a copy of the source in `safeshift_backup`, verified by count and checksum in the same
 * snapshot it was taken from. A backup is never removed by a rollback (no compensation): it outlives the
 * migration and is dropped only by its own retention (`backup.retention` after the migration ended:
 * keepBackupUntil, then dropExpiredBackup, run by backupRetentionWorkflow), matched by OID.
 */
import { sealTable } from '../src/seal';
import { displayName, qualified, type TableRef } from '../src/sql';
import { BULK_LIMITS, inTransaction } from '../src/db';
import { fatal } from '../src/errors';
import { relationName, tableOid } from '../src/catalog';
import { appendAudit } from '../src/ledger';
import { setLockTimeout } from '../src/swap';
import { tableChecksum } from '../src/checksum';
import { heartbeating, withDatabase, type MigrationRef } from './support';

export interface BackupInput extends MigrationRef {
  source: TableRef;
  backup: TableRef;
}

export interface BackupResult {
  table: string;
  rows: number;
  checksum: string;
}

/** How long the retention's drop waits for its lock: the backup table has no readers but safeshift's. */
const DROP_LOCK_TIMEOUT_MS = 2000;

export async function backupTable(input: BackupInput): Promise<BackupResult> {
  return withDatabase(input, (client) =>
    heartbeating(async () => {
      const name = displayName(input.backup);
      const done = await client.query<{ rows: string; checksum: string }>(
        `SELECT rows::text, checksum FROM safeshift.backups WHERE backup_table = $1 AND run_id = $2`,
        [name, input.runId],
      );
      if (done.rows[0]) return { table: name, rows: Number(done.rows[0].rows), checksum: done.rows[0].checksum };
      if (await tableOid(client, input.backup)) {
        throw fatal('NotOurs', `backup table ${name} exists but is not recorded as this migration's verified backup; move it away and retry`);
      }
      // One snapshot for copy and verification: what the backup holds is exactly what the source held then.
      return inTransaction(client, async () => {
        await client.query('CREATE SCHEMA IF NOT EXISTS safeshift_backup');
        await client.query(`REVOKE ALL ON SCHEMA safeshift_backup FROM PUBLIC`);
        await client.query(`CREATE TABLE ${qualified(input.backup)} (LIKE ${qualified(input.source)})`);
        // The source's rows without its policies: nobody but us, not even pg_read_all_data (src/seal.ts).
        await sealTable(client, (await tableOid(client, input.backup))!);
        await client.query(`INSERT INTO ${qualified(input.backup)} SELECT * FROM ${qualified(input.source)}`);
        const src = await tableChecksum(client, input.source);
        const bak = await tableChecksum(client, input.backup);
        if (src.rows !== bak.rows || src.checksum !== bak.checksum) {
          throw fatal('BackupMismatch', `backup ${name} holds ${bak.rows} rows (checksum ${bak.checksum}) but ${displayName(input.source)} holds ${src.rows} (checksum ${src.checksum})`);
        }
        await client.query(
          `INSERT INTO safeshift.backups (backup_table, run_id, source, rows, checksum, table_oid) VALUES ($1, $2, $3, $4, $5, $6)`,
          [name, input.runId, displayName(input.source), src.rows, src.checksum, await tableOid(client, input.backup)],
        );
        return { table: name, rows: src.rows, checksum: src.checksum };
      }, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
    }),
    BULK_LIMITS,
  );
}

export interface BackupRetentionInput {
  db: string;
  /** The migration's: the backup's ledger row is keyed by its run, its audit rows go with it. */
  workflowId: string;
  runId: string;
  backup: TableRef;
  retentionMs: number;
}

/**
 * The retention starts: the backup may be dropped `retentionMs` from now (the first call fixes the time, a retry
 * keeps it). Returns how long to wait, by the database's clock.
 */
export async function keepBackupUntil(input: BackupRetentionInput): Promise<{ keepUntil: string; waitMs: number }> {
  return withDatabase(input, async (client) => {
    const { rows } = await client.query<{ keep_until: Date; wait_ms: number }>(
      `UPDATE safeshift.backups SET keep_until = coalesce(keep_until, now() + $3 * interval '1 millisecond')
        WHERE backup_table = $1 AND run_id = $2
        RETURNING keep_until, greatest(0, extract(epoch FROM keep_until - now()) * 1000)::float8 AS wait_ms`,
      [displayName(input.backup), input.runId, input.retentionMs]);
    if (!rows[0]) throw fatal('NotOurs', `backup table ${displayName(input.backup)} is not recorded as this migration's backup; it is left alone`);
    return { keepUntil: rows[0].keep_until.toISOString(), waitMs: Math.ceil(rows[0].wait_ms) };
  });
}

/**
 * Drop the backup table once its retention has passed: only the very table the backup phase made (the OID in the
 * ledger, at the name recorded), under a short lock_timeout (a busy table fails the attempt and Temporal tries
 * again), with the ledger row marked and an audit row in the same transaction. `waitMs` > 0: not yet.
 */
export async function dropExpiredBackup(input: BackupRetentionInput): Promise<{ message: string; waitMs: number }> {
  return withDatabase(input, (client) => inTransaction(client, async () => {
    const name = displayName(input.backup);
    const { rows: [row] } = await client.query<{ table_oid: string | null; dropped_at: Date | null; wait_ms: number }>(
      `SELECT table_oid::text, dropped_at, greatest(0, extract(epoch FROM keep_until - now()) * 1000)::float8 AS wait_ms
         FROM safeshift.backups WHERE backup_table = $1 AND run_id = $2 FOR UPDATE`, [name, input.runId]);
    if (!row) throw fatal('NotOurs', `backup table ${name} is not recorded as this migration's backup; it is left alone`);
    if (row.dropped_at) return { message: `${name} was dropped at ${row.dropped_at.toISOString()}`, waitMs: 0 };
    if (row.wait_ms > 0) return { message: `${name} is kept ${Math.ceil(row.wait_ms)} ms more`, waitMs: Math.ceil(row.wait_ms) };
    if (row.table_oid === null) throw fatal('NotOurs', `backup table ${name} has no OID in the ledger (made before retention was recorded); drop it yourself if it is no longer needed`);
    const oid = Number(row.table_oid);
    await setLockTimeout(client, DROP_LOCK_TIMEOUT_MS);
    const at = await relationName(client, oid);
    let message: string;
    if (!at) {
      message = `${name} was already gone`;
    } else if (at.schema !== input.backup.schema || at.name !== input.backup.name) {
      throw fatal('NotOurs', `the backup table is now ${displayName(at)}, not ${name}; not dropped`);
    } else {
      await client.query(`LOCK TABLE ${qualified(input.backup)} IN ACCESS EXCLUSIVE MODE`);
      // Under the lock the name still means the same table: nobody can have swapped another one in meanwhile.
      if ((await tableOid(client, input.backup)) !== oid) throw fatal('NotOurs', `${name} is no longer the backup table this migration made; not dropped`);
      await client.query(`DROP TABLE ${qualified(input.backup)}`);
      message = `dropped ${name}, its retention having passed`;
    }
    await client.query(`UPDATE safeshift.backups SET dropped_at = now() WHERE backup_table = $1 AND run_id = $2`, [name, input.runId]);
    await appendAudit(client, {
      eventKey: `${input.runId}/backup:dropped`, workflowId: input.workflowId, runId: input.runId, actor: 'safeshift',
      action: 'backup:dropped', phase: 'retention', details: { table: name, oid, retentionMs: input.retentionMs, message },
    });
    return { message, waitMs: 0 };
  }));
}
