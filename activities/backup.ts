/**
 * Phase 2, backup: a copy of the source in `safeshift_backup`, verified by count and checksum in the same
 * snapshot it was taken from. A backup is never removed by a rollback (no compensation): it outlives the
 * migration and is pruned only by its own retention.
 */
import { displayName, qualified, type TableRef } from '../src/sql';
import { inTransaction } from '../src/db';
import { fatal } from '../src/errors';
import { tableOid } from '../src/catalog';
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
        await client.query(`INSERT INTO ${qualified(input.backup)} SELECT * FROM ${qualified(input.source)}`);
        const src = await tableChecksum(client, input.source);
        const bak = await tableChecksum(client, input.backup);
        if (src.rows !== bak.rows || src.checksum !== bak.checksum) {
          throw fatal('BackupMismatch', `backup ${name} holds ${bak.rows} rows (checksum ${bak.checksum}) but ${displayName(input.source)} holds ${src.rows} (checksum ${src.checksum})`);
        }
        await client.query(
          `INSERT INTO safeshift.backups (backup_table, run_id, source, rows, checksum) VALUES ($1, $2, $3, $4, $5)`,
          [name, input.runId, displayName(input.source), src.rows, src.checksum],
        );
        return { table: name, rows: src.rows, checksum: src.checksum };
      }, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
    }),
  );
}
