/** Audit trail and migration bookkeeping, written by the workflow at every phase change and decision. */
import { inTransaction } from '../src/db';
import { appendAudit, ensureLedger, eventNumber, setMigrationPhase, setPaused, upsertMigration, type AuditHead, type MigrationRecord } from '../src/ledger';
import { withDatabase, type MigrationRef } from './support';

export interface RecordEventInput extends MigrationRef {
  eventKey: string;
  actor: string;
  action: string;
  phase: string;
  details?: Record<string, unknown>;
  /** Given with the first event of a run: creates the ledger and the migrations row. */
  migration?: Omit<MigrationRecord, 'runId' | 'workflowId'>;
  /** Given when the migration reaches a final phase. */
  outcome?: { reason: string };
  /** Given with pause / resume: the flag copy and catch-up read. */
  paused?: boolean;
}

/** Returns the row's seq and MAC: the workflow keeps the latest as its anchored head (MigrationStatus.auditHead). */
export async function recordEvent(input: RecordEventInput): Promise<AuditHead> {
  return withDatabase(input, async (client) => {
    if (input.migration) {
      await ensureLedger(client);
      await upsertMigration(client, { ...input.migration, runId: input.runId, workflowId: input.workflowId }, input.phase);
    }
    return inTransaction(client, async () => {
      await setMigrationPhase(client, input.runId, input.phase, input.outcome, eventNumber(input.eventKey));
      if (input.paused !== undefined) await setPaused(client, input.runId, input.paused);
      return appendAudit(client, {
        eventKey: input.eventKey,
        workflowId: input.workflowId,
        runId: input.runId,
        actor: input.actor,
        action: input.action,
        phase: input.phase,
        details: input.details,
      });
    });
  });
}
