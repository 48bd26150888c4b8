/**
 * restoreWorkflow's activities. A restore loads one table of a verified export and checks count and checksum
 * against the manifest before it commits.
 *
 * - Into a new table (the default): `loadRestore` is the whole restore.
 * - Over the live table: `loadRestore` fills a staged table made `LIKE` the live one (with its own foreign keys,
 *   so rows the parents no longer have are refused at once); after an approval `swapInRestored` puts it in the
 *   live table's place with the cutover's machinery, under one short lock: the live table becomes the retired
 *   table, kept with every row it had, and what was bound to it (inbound FKs, grants, RLS and policies, triggers,
 *   views, comments, sequences, publications) moves to the restored one. Compensation of the load:
 *   `discardStagedRestore`.
 */
import type pg from 'pg';
import { adoptNames } from '../src/names';
import { describeBoundObjects, captureBoundObjects, moveToNewTable, validateForeignKeys, withEmptySearchPath } from '../src/bound-objects';
import { relationName, tableOid } from '../src/catalog';
import { CAPTURE_TRIGGER } from '../src/capture';
import { BULK_LIMITS, inTransaction } from '../src/db';
import { fatal } from '../src/errors';
import { ExportError, exportedTable, restoreTable, storedColumns } from '../src/export';
import { ensureLedger } from '../src/ledger';
import { displayName, nameWithSuffix, parseTableRef, qualified, quoteIdent, sameTableRef, type TableRef } from '../src/sql';
import { lockExclusive, moveTable } from '../src/swap';
import { heartbeating, underLock, withDatabase, type MigrationRef } from './support';

export interface RestoreRequest extends MigrationRef {
  /** The export's directory (the CLI resolves a backup id to it). */
  dir: string;
  /** schema.table as named in the export. */
  table: string;
  /** A new table to restore into; absent: a new `<table>_restored_<stamp>` beside it, or the live table with `overLive`. */
  into?: string;
  overLive: boolean;
  keyEnv?: string;
  /** yyyymmddhhmmss (workflow time): makes the staged, retired and default names unique per restore. */
  stamp: string;
  requestedBy: string;
}

export interface RestorePlan {
  backupId: string;
  table: TableRef;
  /** Where the restored rows end up: the new table, or the live table's name. */
  into: TableRef;
  rows: number;
  checksum: string;
  /** Over the live table only. */
  live?: { oid: number; rows: number; staged: TableRef; retired: TableRef; moves: string[] };
}

const bad = (message: string) => fatal('BadRestore', message);

/** Everything refusable before the database is touched: the export, the key, the names, the live table's shape. */
export async function checkRestore(input: RestoreRequest): Promise<RestorePlan> {
  const table = parseTableRef(input.table);
  if (!table) throw bad(`--table: ${JSON.stringify(input.table)} is not schema.table`);
  return withDatabase(input, async (client) => {
    let exported: Awaited<ReturnType<typeof exportedTable>>;
    try {
      exported = await exportedTable(client, input.dir, table, { keyEnv: input.keyEnv });
    } catch (err) {
      if (err instanceof ExportError) throw bad(err.message);
      throw err;
    }
    const base = { backupId: exported.manifest.id, table, rows: exported.table.rows, checksum: exported.table.checksum };
    if (!input.overLive) {
      const into = input.into ? parseTableRef(input.into) : { schema: table.schema, name: nameWithSuffix(table.name, `_restored_${input.stamp}`) };
      if (!into) throw bad(`--into: ${JSON.stringify(input.into)} is not schema.table`);
      if (await tableOid(client, into)) throw bad(`--into: ${displayName(into)} exists; restore goes into a new table (or over the live table with --over-live)`);
      return { ...base, into };
    }
    const liveOid = await tableOid(client, table);
    if (liveOid === undefined) throw bad(`${displayName(table)} does not exist; restore it into a new table instead (--into)`);
    const { rows: [rel] } = await client.query<{ kind: string; capturing: boolean }>(
      `SELECT relkind AS kind, EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND tgname = $2) AS capturing FROM pg_class WHERE oid = $1`,
      [liveOid, CAPTURE_TRIGGER]);
    if (rel!.kind !== 'r') throw bad(`${displayName(table)} is not a plain table (relkind ${rel!.kind}); restore it into a new table instead (--into)`);
    if (rel!.capturing) throw bad(`${displayName(table)} is being migrated (it has safeshift's change capture); finish or roll back that migration first`);
    const live = new Map((await storedColumns(client, table)).map((c) => [c.name, c.type]));
    const problems: string[] = [];
    for (const c of exported.table.columns) {
      const type = live.get(c.name);
      if (type === undefined) problems.push(`column ${c.name} (${c.type}) is in the export but not in the live table`);
      else if (type !== c.type) problems.push(`column ${c.name} is ${c.type} in the export but ${type} in the live table`);
    }
    const exportedNames = new Set(exported.table.columns.map((c) => c.name));
    for (const [name, type] of live) if (!exportedNames.has(name)) problems.push(`column ${name} (${type}) is in the live table but not in the export`);
    if (problems.length) throw bad(`cannot restore over ${displayName(table)}, the columns differ: ${problems.join('; ')}. Restore into a new table instead (--into)`);
    const staged = { schema: table.schema, name: nameWithSuffix(table.name, `_restore_${input.stamp}`) };
    const retired = { schema: table.schema, name: nameWithSuffix(table.name, `_retired_${input.stamp}`) };
    for (const t of [staged, retired]) if (await tableOid(client, t)) throw bad(`${displayName(t)} exists; the restore needs that name`);
    const { rows: [count] } = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualified(table)}`);
    // The migration's wording, told the way a restore does it: inbound FKs are validated before the swap commits,
    // the table's own FKs are recreated on the staged table at load.
    const moves = describeBoundObjects(await captureBoundObjects(client, liveOid, table)).map((line) => line
      .replace('re-added NOT VALID on the new table, validated after commit', 're-pointed to the restored table, validated before the swap commits')
      .replace('not moved, the new table must define its own', 'recreated on the restored table when it is loaded'));
    return { ...base, into: table, live: { oid: liveOid, rows: Number(count!.n), staged, retired, moves } };
  });
}

/**
 * The live table's own foreign keys, recreated on the staged table inside the load's transaction: validated
 * there, so restored rows whose parents are gone are refused before anyone is asked to approve. A self-reference
 * is pointed at the staged table itself.
 */
async function copyForeignKeys(client: pg.Client, live: TableRef, liveOid: number, staged: TableRef): Promise<void> {
  await withEmptySearchPath(client, async () => {
    const { rows } = await client.query<{ name: string; definition: string; self: boolean; liveName: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS definition, confrelid = conrelid AS self, conrelid::regclass::text AS "liveName"
         FROM pg_constraint WHERE conrelid = $1 AND contype = 'f' AND conparentid = 0 ORDER BY conname`, [liveOid]);
    for (const fk of rows) {
      let definition = fk.definition;
      if (fk.self) {
        const at = `REFERENCES ${fk.liveName}(`;
        if (!definition.includes(at)) throw bad(`foreign key ${fk.name} of ${displayName(live)}: unexpected definition ${definition}`);
        definition = definition.replace(at, `REFERENCES ${qualified(staged)}(`);
      }
      await client.query(`ALTER TABLE ${qualified(staged)} ADD CONSTRAINT ${quoteIdent(fk.name)} ${definition}`);
    }
  });
}

export interface LoadedRestore {
  /** The table now holding the restored rows: the new table, or the staged one. */
  table: string;
  oid: number;
  rows: number;
}

export async function loadRestore(input: RestoreRequest & { plan: RestorePlan }): Promise<LoadedRestore> {
  const { plan } = input;
  const target = plan.live ? plan.live.staged : plan.into;
  return withDatabase(input, (client) => heartbeating(async () => {
    await ensureLedger(client);
    const { rows: [done] } = await client.query<{ state: string }>(`SELECT state FROM safeshift.restores WHERE workflow_id = $1`, [input.workflowId]);
    const oid = await tableOid(client, target);
    // The load and its ledger row commit together: a recorded load is a finished one (a retry after a lost reply).
    if (done && oid !== undefined) return { table: displayName(target), oid, rows: plan.rows };
    if (oid !== undefined) throw fatal('NotOurs', `${displayName(target)} exists but was not loaded by this restore; move it away and retry`);
    try {
      await restoreTable(client, input.dir, plan.table, target, {
        keyEnv: input.keyEnv,
        like: plan.live ? plan.table : undefined,
        beforeCommit: async (c) => {
          if (plan.live) await copyForeignKeys(c, plan.table, plan.live.oid, plan.live.staged);
          // Statistics now, not when autovacuum gets to it: the application's queries (and the swap's FK
          // validation, an anti-join against this table) are planned on them the moment it goes live.
          await c.query(`ANALYZE ${qualified(target)}`);
          await c.query(
            `INSERT INTO safeshift.restores (backup_id, source, into_table, rows, actor, workflow_id, mode, state, staged_table, retired_table)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
            [plan.backupId, displayName(plan.table), displayName(plan.into), plan.rows, input.requestedBy, input.workflowId,
              plan.live ? 'over' : 'new', plan.live ? 'loaded' : 'restored', plan.live ? displayName(plan.live.staged) : null, plan.live ? displayName(plan.live.retired) : null]);
        },
      });
    } catch (err) {
      if (err instanceof ExportError) throw bad(err.message);
      throw err;
    }
    return { table: displayName(target), oid: (await tableOid(client, target))!, rows: plan.rows };
  }), BULK_LIMITS);
}

/** Compensation of loadRestore over the live table: drop the staged table unless it went live. Idempotent. */
export async function discardStagedRestore(input: MigrationRef & { plan: RestorePlan }): Promise<string> {
  const staged = input.plan.live?.staged;
  if (!staged) return 'nothing staged';
  return withDatabase(input, async (client) => {
    await ensureLedger(client);
    const { rows: [r] } = await client.query<{ state: string }>(`SELECT state FROM safeshift.restores WHERE workflow_id = $1`, [input.workflowId]);
    if (r?.state === 'swapped') return `${displayName(input.plan.into)} holds the restored rows; nothing to discard`;
    if (r?.state === 'loaded') {
      await inTransaction(client, async () => {
        await client.query(`DROP TABLE IF EXISTS ${qualified(staged)}`);
        await client.query(`UPDATE safeshift.restores SET state = 'discarded' WHERE workflow_id = $1`, [input.workflowId]);
      });
    }
    return `staged table ${displayName(staged)} dropped; ${displayName(input.plan.into)} untouched`;
  });
}

export interface SwapInRestoredInput extends MigrationRef {
  plan: RestorePlan;
  stagedOid: number;
  stamp: string;
  lockTimeoutMs: number;
  attempts: number;
}

/**
 * The restore's cutover: under one lock the live table takes its retired name, the staged table the live name,
 * and everything bound moves to it. Inbound foreign keys are validated before the commit (a child row pointing at
 * a row the restore takes away refuses the swap and leaves the live table as it was): a restore trades a longer
 * lock for never committing a broken reference. Idempotent: the names say whether it happened.
 */
export async function swapInRestored(input: SwapInRestoredInput): Promise<{ message: string; lockHeldMs: number; statements: string[] }> {
  const { plan } = input;
  const live = plan.live;
  if (!live) throw bad('swapInRestored: this restore goes into a new table');
  return withDatabase(input, async (client) => {
    const stagedAt = await relationName(client, input.stagedOid);
    if (sameTableRef(await relationName(client, live.oid), live.retired) && sameTableRef(stagedAt, plan.into)) {
      return { message: 'already swapped (retried after commit)', lockHeldMs: 0, statements: [] };
    }
    if (!sameTableRef(stagedAt, live.staged)) throw fatal('NotOurs', `the staged table ${displayName(live.staged)} was moved or dropped; nothing swapped`);
    const result = await underLock(client, { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'the restore\'s --lock-timeout-ms' }, async () => {
      await lockExclusive(client, plan.into);
      await lockExclusive(client, live.staged);
      const bound = await captureBoundObjects(client, live.oid, plan.into);
      await moveTable(client, plan.into, live.retired);
      const moved = await moveToNewTable(client, bound, live.oid, { oid: input.stagedOid, home: live.staged }, null);
      if (moved.problems.length) throw bad(`restore refused, these cannot move to the restored table: ${moved.problems.join('; ')}; ${displayName(plan.into)} left as it was`);
      try {
        await validateForeignKeys(client, moved.notValidForeignKeys);
      } catch (err) {
        throw bad(`restore refused: rows elsewhere reference rows the restore takes away (${(err as Error).message}); ${displayName(plan.into)} left as it was`);
      }
      // The restored table answers to the names the application knows (src/names.ts).
      const renamed = await adoptNames(client, live.oid, input.stagedOid, `_retired_${input.stamp}`);
      await client.query(`UPDATE safeshift.restores SET state = 'swapped' WHERE workflow_id = $1`, [input.workflowId]);
      return {
        message: `${displayName(plan.into)} now holds the ${plan.rows} restored rows; the table it replaced is kept as ${displayName(live.retired)} (${live.rows} rows when the restore was checked)`,
        statements: [...moved.statements, ...renamed.map((r) => `-- ${r.kind} ${r.to}: name taken over from the retired table`)],
      };
    });
    return { message: result.message, lockHeldMs: result.lockHeldMs, statements: result.statements };
  }, BULK_LIMITS);
}
