/**
 * backupRetentionWorkflow: a migration's backup table is kept for `backup.retention` after the migration ended
 * (done or rolled back), then dropped, matched by OID (activities/backup.ts). Started by the migration as an
 * abandoned child, so the migration's own result is not held up by the wait; a durable timer does the waiting,
 * across worker restarts. Deterministic: no I/O here, only activities.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { BackupRetentionInput } from '../activities/backup';
import { SHORT_ACTIVITY } from './shared';

export async function backupRetentionWorkflow(input: BackupRetentionInput): Promise<string> {
  const quick = wf.proxyActivities<typeof activities>(SHORT_ACTIVITY);
  let { waitMs } = await quick.keepBackupUntil(input);
  // The database's clock decides (it fixed keep_until); Temporal's timer only sleeps until then.
  for (;;) {
    if (waitMs > 0) await wf.sleep(waitMs);
    const dropped = await quick.dropExpiredBackup(input);
    if (dropped.waitMs <= 0) return dropped.message;
    waitMs = dropped.waitMs;
  }
}
