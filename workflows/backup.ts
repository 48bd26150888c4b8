/**
 * backupWorkflow: export tables to files in one snapshot, then verify the export. A backup counts only once
 * verified; an export that fails verification is kept (evidence) and the workflow fails, naming each problem.
 * Every step is in the audit log. Deterministic: no I/O here, only activities.
 */
import * as wf from '@temporalio/workflow';
import type * as activities from '../activities';
import type { ExportSummary } from '../activities/export';
import { ACTIVITY_RETRY, exportAndVerify, HEARTBEAT_TIMEOUT, SHORT_ACTIVITY } from './shared';

export interface BackupInput {
  db: string;
  /** Export id; a scheduled run uses its workflow id (the schedule id plus the scheduled time). */
  id?: string;
  tables: string[];
  /** The export's directory; or, for scheduled runs, `dirRoot` + `/` + id. */
  dir?: string;
  dirRoot?: string;
  keyEnv?: string;
  requestedBy: string;
  /** Scheduled runs: keep the newest `retain` verified exports of this schedule, prune older ones. */
  schedule?: { id: string; retain: number };
}

export interface BackupResult {
  export: ExportSummary;
  pruned: string[];
  verified: { ok: boolean; seconds: number; tables: { table: string; ok: boolean; problem?: string; rows?: number }[] };
}

export async function backupWorkflow(input: BackupInput): Promise<BackupResult> {
  const info = wf.workflowInfo();
  const retry = ACTIVITY_RETRY;
  const quick = wf.proxyActivities<typeof activities>(SHORT_ACTIVITY);
  const long = wf.proxyActivities<typeof activities>({ startToCloseTimeout: '24h', heartbeatTimeout: HEARTBEAT_TIMEOUT, retry });
  let event = 0;
  const audit = async (action: string, details: Record<string, unknown>): Promise<void> => {
    await quick.recordEvent({
      db: input.db, workflowId: info.workflowId, runId: info.runId, eventKey: `${info.runId}/${++event}`,
      actor: input.requestedBy, action, phase: 'backup', details,
    });
  };

  const id = input.id ?? info.workflowId;
  const dir = input.dir ?? `${(input.dirRoot ?? 'safeshift-backups').replace(/\/+$/, '')}/${id}`;
  const { exported, verified } = await exportAndVerify(long, audit,
    { db: input.db, workflowId: info.workflowId, id, tables: input.tables, dir, keyEnv: input.keyEnv, scheduleId: input.schedule?.id });
  // Only after this export verified: retention never leaves a schedule with fewer verified exports than asked.
  const pruned = input.schedule ? await quick.pruneBackups({ db: input.db, scheduleId: input.schedule.id, retain: input.schedule.retain,
    root: input.dirRoot ?? 'safeshift-backups', workflowId: info.workflowId, runId: info.runId }) : [];
  if (pruned.length) await audit('backup:pruned', { schedule: input.schedule!.id, pruned, retained: input.schedule!.retain });
  return { export: exported, verified, pruned };
}
