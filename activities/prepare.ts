/**
 * Phase 3, prepare: create the target table (plan DDL, or LIKE source INCLUDING ALL) and install change capture
 * on the source. Compensations: remove the capture; drop the target — but only the very table this run created
 * (matched by OID in the ledger), and only while it is not live.
 */
import { changeTable, dropCaptureObjects, dropCaptureTriggers, installCapture } from '../src/capture';
import { createdByRun, recordCreatedObject } from '../src/ledger';
import { forgetInertTriggers, makeTriggersInert } from '../src/inert-triggers';
import { dropForeignKeys, outboundForeignKeys } from '../src/foreign-keys';
import { addBoundCheck, type PartitionOf } from '../src/partition';
import type { CopySpec } from '../src/projection';
import { setLockTimeout } from '../src/swap';
import { relationName, tableOid } from '../src/catalog';
import type pg from 'pg';
import { inTransaction } from '../src/db';
import { fatal } from '../src/errors';
import { displayName, qualified, type TableRef } from '../src/sql';
import { createLikeSql } from '../src/target-ddl';
import { sealTree } from '../src/seal';
import { GUARD_RECORD, guardTree } from '../src/write-guard';
import { withDatabase, type MigrationRef } from './support';

export interface PrepareInput extends MigrationRef {
  source: TableRef;
  target: TableRef;
  createSql?: string;
  /** The source is a partition: the target gets the CHECK that spares ATTACH its scan at cutover. */
  partition?: PartitionOf | null;
}

/**
 * Indexes built after the copy instead of kept up row by row during it: not unique, not backing a constraint,
 * not the clustering or replica-identity index. Unique ones stay, so a duplicate is refused by the chunk that
 * brings it, with its key range named.
 */
const DEFERRABLE_INDEXES = `
  SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, obj_description(i.indexrelid, 'pg_class') AS comment
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE i.indrelid = $1 AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisclustered AND NOT i.indisreplident
     -- A partitioned table's indexes print as CREATE INDEX ... ON ONLY (no partitions): not rebuilt that way.
     AND (SELECT relkind FROM pg_class WHERE oid = $1) = 'r'
     AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
   ORDER BY c.relname`;

export interface CreatedTarget {
  targetOid: number;
  /** Indexes dropped now and built again in the build phase (recorded in `safeshift.deferred_indexes`). */
  deferredIndexes: string[];
}

async function deferredIndexNames(client: pg.Client, runId: string, targetOid: number): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT name FROM safeshift.deferred_indexes WHERE run_id = $1 AND target_oid = $2 ORDER BY name`, [runId, targetOid]);
  return rows.map((r) => r.name);
}

export async function createTarget(input: PrepareInput): Promise<CreatedTarget> {
  return withDatabase(input, async (client) => {
    const existing = await tableOid(client, input.target);
    if (existing !== undefined) {
      // A retry after a commit whose reply was lost: ours, so done. Anything else was not made by us.
      if (await createdByRun(client, input.runId, 'target', existing)) {
        return { targetOid: existing, deferredIndexes: await deferredIndexNames(client, input.runId, existing) };
      }
      throw fatal('TargetExists', `target ${displayName(input.target)} exists and was not created by this migration`);
    }
    return inTransaction(client, async () => {
      await client.query(input.createSql ?? createLikeSql(input.source, input.target));
      const oid = await tableOid(client, input.target);
      if (oid === undefined) throw fatal('BadPlan', `the target DDL did not create ${displayName(input.target)}`);
      await recordCreatedObject(client, input.runId, 'target', oid, displayName(input.target));
      // Filled with the source's rows long before the cutover decides who may read them: nobody but us until then.
      await sealTree(client, oid);
      // Privileges do not stop a superuser or the owner (src/write-guard.ts): their writes are refused until cutover.
      await guardTree(client, oid);
      await recordCreatedObject(client, input.runId, GUARD_RECORD, oid, displayName(input.target));
      const { rows } = await client.query<{ name: string; definition: string; comment: string | null }>(DEFERRABLE_INDEXES, [oid]);
      for (const ix of rows) {
        await client.query(
          `INSERT INTO safeshift.deferred_indexes (run_id, target_oid, name, definition, comment) VALUES ($1, $2, $3, $4, $5)`,
          [input.runId, oid, ix.name, ix.definition, ix.comment]);
        await client.query(`DROP INDEX ${qualified({ schema: input.target.schema, name: ix.name })}`);
      }
      // A foreign key on a target holding stale rows would refuse the application's valid deletes of parents: the
      // DDL's keys come back at cutover (preflight listed them).
      await dropForeignKeys(client, await outboundForeignKeys(client, oid), input.target);
      if (input.partition) await addBoundCheck(client, input.target, input.partition);
      // Copy and replay write exactly the mapped source rows: the target's own triggers rest until cutover.
      await makeTriggersInert(client, oid, input.target);
      return { targetOid: oid, deferredIndexes: rows.map((r) => r.name) };
    });
  });
}

export interface DropTargetInput extends MigrationRef {
  target: TableRef;
  targetOid: number;
}

/** Compensation of createTarget. Idempotent: a target that is already gone is fine. */
export async function dropTarget(input: DropTargetInput): Promise<string> {
  return withDatabase(input, async (client) => {
    const where = await relationName(client, input.targetOid);
    if (!where) return `target ${displayName(input.target)} already gone`;
    if (where.schema !== input.target.schema || where.name !== input.target.name) {
      throw fatal('NotOurs', `the table created as ${displayName(input.target)} is now ${displayName(where)}; it may be live, so it is left in place`);
    }
    // Reverse capture exists from the cutover commit until a completed swap back: the table went live and may
    // hold writes nobody else has (with a compatibility view it is still at its own name, so the check above passes).
    if (await tableOid(client, changeTable(input.targetOid))) {
      throw fatal('NotOurs', `${displayName(input.target)} went live at cutover and was not swapped back; left in place`);
    }
    if (!(await createdByRun(client, input.runId, 'target', input.targetOid))) {
      throw fatal('NotOurs', `${displayName(input.target)} is not recorded as created by this migration; left in place`);
    }
    await client.query(`DROP TABLE ${qualified(input.target)}`);
    await forgetInertTriggers(client, input.targetOid);
    return `dropped target ${displayName(input.target)}`;
  });
}

export interface CaptureInput extends MigrationRef {
  source: TableRef;
  sourceOid: number;
  key: CopySpec['key'];
  lockTimeoutMs: number;
  /** The plan's row filter: only changes whose old or new row matches are captured. */
  where?: string;
}

/**
 * Install change capture on the source before the copy reads anything, so every write the copy might miss is
 * recorded. CREATE TRIGGER waits for in-flight writers: bounded by lock_timeout, retried by Temporal.
 */
export async function installChangeCapture(input: CaptureInput): Promise<string> {
  return withDatabase(input, (client) =>
    inTransaction(client, async () => {
      await setLockTimeout(client, input.lockTimeoutMs);
      // A split's source may be the split view by name (src/split-view.ts): the trigger goes on the table, found by OID.
      const source = input.where === undefined ? input.source : (await relationName(client, input.sourceOid)) ?? input.source;
      await installCapture(client, { source, sourceOid: input.sourceOid }, input.key, input.where);
      return `capturing changes of ${displayName(input.source)} into ${displayName(changeTable(input.sourceOid))}`;
    }),
  );
}

/** Compensation of installChangeCapture (and the last step of a finished migration). Idempotent. */
export async function removeChangeCapture(input: Pick<CaptureInput, 'db' | 'sourceOid' | 'lockTimeoutMs'>): Promise<string> {
  return withDatabase(input, (client) =>
    inTransaction(client, async () => {
      await setLockTimeout(client, input.lockTimeoutMs);
      const at = await relationName(client, input.sourceOid);
      if (at) await dropCaptureTriggers(client, at);
      await dropCaptureObjects(client, input.sourceOid);
      return `change capture removed${at ? ` from ${displayName(at)}` : ''}`;
    }),
  );
}
