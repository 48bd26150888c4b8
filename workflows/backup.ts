/**
 * backupWorkflow: export tables to files in one snapshot, then verify the export. A backup counts only once
 * verified; an export that fails verification is kept (evidence) and the workflow fails, naming each problem.
 * Every step is in the audit log. Deterministic: no I/O here, only activities.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { ExportSummary } from '../activities/export';
import { fatal, NON_RETRYABLE_TYPES } from '../src/errors';

export interface BackupInput {
  db: string;
  id: string;
  tables: string[];
  dir: string;
  keyEnv?: string;
  requestedBy: string;
}

export interface BackupResult {
  export: ExportSummary;
  verified: { ok: boolean; seconds: number; tables: { table: string; ok: boolean; problem?: string; rows?: number }[] };
}

export async function backupWorkflow(input: BackupInput): Promise<BackupResult> {
  const info = wf.workflowInfo();
  const retry = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1m', maximumAttempts: 10, nonRetryableErrorTypes: NON_RETRYABLE_TYPES };
  const quick = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '2m', retry });
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '24h', heartbeatTimeout: '1m', retry });
  let event = 0;
  const audit = (action: string, details: Record<string, unknown>) => quick.recordEvent({
    db: input.db, workflowId: info.workflowId, runId: info.runId, eventKey: `${info.runId}/${++event}`,
    actor: input.requestedBy, action, phase: 'backup', details,
  });

  const exported = await long.exportBackup({ db: input.db, workflowId: info.workflowId, id: input.id, tables: input.tables, dir: input.dir, keyEnv: input.keyEnv });
  await audit('backup:exported', { id: input.id, dir: input.dir, tables: exported.tables, bytes: exported.bytes, encrypted: exported.encrypted });
  const verified = await long.verifyBackup({ db: input.db, id: input.id, dir: input.dir, keyEnv: input.keyEnv });
  await audit(verified.ok ? 'backup:verified' : 'backup:unverified', { id: input.id, tables: verified.tables });
  if (!verified.ok) {
    throw fatal('BackupNotVerified', `export ${input.id} in ${input.dir} failed verification: ` +
      verified.tables.filter((t) => !t.ok).map((t) => `${t.table}: ${t.problem}`).join('; '));
  }
  return { export: exported, verified };
}
