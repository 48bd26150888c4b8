/**
 * Cutover, verify, rollback and drop of a split (a plan with a row filter, src/row-filter.ts): the project's rows
 * move out of a shared table that stays live for the other projects, so nothing is swapped away.
 *
 * Cutover, in one short transaction under the same lock rules as a swap: the last captured changes replayed, the
 * capture triggers dropped, on the first split the shared table renamed `<name>_shared`, the project table given
 * the shared table's access (grants, row security flags, policies), a NOT VALID CHECK on the shared table refusing
 * new rows of the project, and the old name (re)made as the split view over the shared table and every project
 * table (src/split-view.ts). Only the catalog changes: the project's rows stay in the shared table, hidden by the
 * view, until the drop phase deletes them. Reverse capture on the project table records every write after it.
 *
 * Rollback (splitBack): the project table's writes since cutover go back into the shared table (keys recorded by
 * reverse capture: the hidden old copy is replaced by the project table's current row, or deleted with it), the
 * last of them under the lock; then the split is forgotten and the view made again without it (or, for the last
 * split, dropped and the shared table given its name back). Nothing written after cutover is lost.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { relationName } from '../src/catalog';
import { changeTable, dropCaptureObjects, dropCaptureTriggers, installCapture, replayBatch } from '../src/capture';
import { BULK_LIMITS, inTransaction, pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import { addForeignKeys } from '../src/foreign-keys';
import { validateForeignKeys } from '../src/bound-objects';
import { restoreTriggers } from '../src/inert-triggers';
import { REPLAY_BEGIN } from '../src/replay';
import { sealTable } from '../src/seal';
import { openWriteGuard } from '../src/write-guard';
import {
  addSplitCheck, applySplitView, copyAccess, dropSplitCheck, ensureSplitsTable, forgetSplit, markSplitDone, recordSplit, splitCheckName, splitOfTarget, splitsOf, type SplitRow,
} from '../src/split-view';
import { lockExclusive, moveTable } from '../src/swap';
import { displayName, nameWithSuffix, qualified, quoteIdent, type TableRef } from '../src/sql';
import type { SwapInput, SwapResult } from './cutover';
import type { DropInput } from './drop';
import type { VerifyInput } from './verify';
import { heartbeating, underLock, withDatabase } from './support';

const REPLAY_BATCH = 5000;

async function drain(batch: () => Promise<{ changes: number }>): Promise<number> {
  let replayed = 0;
  for (let n = (await batch()).changes; n > 0; n = (await batch()).changes) {
    replayed += n;
    Context.current().heartbeat({ replayed });
  }
  return replayed;
}

/** Where the shared table goes at the first split: the old name is the view's from then on. */
export function sharedName(live: TableRef): TableRef {
  return { schema: live.schema, name: nameWithSuffix(live.name, '_shared') };
}

export async function splitCutover(input: SwapInput): Promise<SwapResult> {
  const { spec } = input;
  const where = spec.where!;
  return withDatabase(input, async (client) => {
    await ensureSplitsTable(client);
    if (await splitOfTarget(client, input.targetOid)) return { attempts: 0, lockHeldMs: 0, message: 'already split (retried after commit)', statements: [] };
    const replay = () => replayBatch(client, spec, input.sourceOid, REPLAY_BATCH);
    const outside = () => drain(() => inTransaction(client, replay, REPLAY_BEGIN));
    let replayedOutside = await outside();
    const earlier = await splitsOf(client, input.sourceOid);
    // The old name: the view the first split made, or (this is the first) the shared table's own name.
    const live = earlier[0]?.live ?? (await relationName(client, input.sourceOid))!;
    const done = await underLock(client, {
      timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or attempts',
      beforeEach: async (attempt) => { if (attempt > 1) replayedOutside += await outside(); },
    }, async (clock) => {
      const shared = (await relationName(client, input.sourceOid))!;
      // The view first: writers through it lock the view, then the tables.
      await clock.step('lock', async () => {
        if (earlier.length) await lockExclusive(client, live);
        await lockExclusive(client, spec.target);
        await lockExclusive(client, shared);
      });
      clock.locked();
      const drained = await clock.step('replay', () => drain(replay));
      // Nobody went around the project table's write guard (src/write-guard.ts), or the cutover fails closed.
      await clock.step('write guard', () => openWriteGuard(client, input.targetOid, spec.target));
      return clock.step('split', async () => {
        await dropCaptureTriggers(client, shared);
        const home = earlier.length ? shared : sharedName(live);
        if (!earlier.length) await moveTable(client, live, home);
        const row: SplitRow = { targetOid: input.targetOid, sharedOid: input.sourceOid, live, filter: where, runId: input.runId, state: 'live' };
        await recordSplit(client, row);
        const statements = [
          ...(!earlier.length ? [`ALTER TABLE ${qualified(live)} RENAME TO ${quoteIdent(home.name)}`] : []),
          ...(await copyAccess(client, input.sourceOid, input.targetOid)),
          await addSplitCheck(client, home, input.targetOid, where),
        ];
        const keys = await addForeignKeys(client, input.foreignKeys ?? [], input.targetOid);
        statements.push(...keys.map((k) => k.statement));
        await restoreTriggers(client, input.targetOid, spec.target);
        statements.push(...(await applySplitView(client, input.sourceOid, [...earlier, row], spec.key.map((k) => k.name), live)));
        // Reverse capture: every write to the project table from now on is recorded, for a rollback.
        await installCapture(client, { source: spec.target, sourceOid: input.targetOid }, spec.key);
        return {
          message: `${displayName(spec.target)} now holds the rows of ${displayName(live)} where ${where.trim()}; ${displayName(live)} is a view over ` +
            `${displayName(home)} and ${earlier.length + 1} project table${earlier.length ? 's' : ''}; ${drained} captured changes replayed under the lock`,
          statements,
          keys,
          drained,
        };
      });
    });
    await heartbeating(() => validateForeignKeys(client, done.keys.map((k) => ({ table: k.table, name: k.name }))));
    return {
      attempts: done.attempts, lockHeldMs: done.lockHeldMs, lockWaitMs: done.lockWaitMs, lockSteps: done.lockSteps,
      replayed: { outside: replayedOutside, underLock: done.drained }, message: done.message, statements: done.statements,
    };
  }, BULK_LIMITS);
}

/**
 * Writes made to the project table after cutover, back into the shared table, one batch: for each changed key the
 * shared table's row of the project (the old copy the view hides) is deleted and the project table's current row,
 * if any, inserted. A row the project no longer has stays gone; one moved to another project through the view
 * lives there already. A key the shared table already has visibly (a duplicate the view's routing could not see)
 * blocks the rollback for an operator (SwapBackUnsafe): nothing is lost, the project table stays live.
 */
async function replayBack(client: pg.Client, input: SwapInput, shared: TableRef): Promise<{ changes: number }> {
  const { spec } = input;
  const changes = qualified(changeTable(input.targetOid));
  const taken = await client.query<{ key: string[] }>(
    `DELETE FROM ${changes} WHERE seq IN (SELECT seq FROM ${changes} ORDER BY seq LIMIT $1) RETURNING key`, [REPLAY_BATCH]);
  if (taken.rows.length === 0) return { changes: 0 };
  const keys = [...new Map(taken.rows.map((r) => [JSON.stringify(r.key), r.key])).values()];
  const cols = spec.key.map((k) => quoteIdent(k.name));
  const keyRows = `SELECT ${spec.key.map((k, i) => `u.c${i}::${k.type}`).join(', ')} FROM unnest(${spec.key.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS u(${spec.key.map((_, i) => `c${i}`).join(', ')})`;
  const values = spec.key.map((_, i) => keys.map((k) => k[i]!));
  const { rows: writable } = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, [input.sourceOid]);
  const list = writable.map((c) => quoteIdent(c.name)).join(', ');
  await client.query('SAVEPOINT split_back');
  try {
    await client.query({ text: `DELETE FROM ${qualified(shared)} s WHERE (${cols.map((c) => `s.${c}`).join(', ')}) IN (${keyRows}) AND (\n${spec.where}\n) IS TRUE`, values });
    await client.query({ text: `INSERT INTO ${qualified(shared)} (${list}) OVERRIDING SYSTEM VALUE SELECT ${list} FROM ${qualified(spec.target)} p WHERE (${cols.map((c) => `p.${c}`).join(', ')}) IN (${keyRows})`, values });
    await client.query('RELEASE SAVEPOINT split_back');
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT split_back');
    if (/^2[23]/.test(pgErrorCode(err) ?? '')) {
      throw fatal('SwapBackUnsafe', `cannot roll the split back: ${displayName(shared)} refuses a row written to ${displayName(spec.target)} after cutover (SQLSTATE ${pgErrorCode(err)}); fix that row, then roll back again`);
    }
    throw err;
  }
  return { changes: taken.rows.length };
}

/** Compensation of splitCutover. Idempotent: nothing to do once the split is forgotten (or never made). */
export async function splitBack(input: SwapInput): Promise<string> {
  const { spec } = input;
  return withDatabase(input, async (client) => {
    await ensureSplitsTable(client);
    const row = await splitOfTarget(client, input.targetOid);
    if (!row) return `nothing to undo: ${displayName(spec.target)} was never split off (or its rollback finished)`;
    if (row.state === 'done') throw fatal('NotOurs', `the split into ${displayName(spec.target)} passed its drop phase; the project's rows are gone from the shared table`);
    const back = async () => replayBack(client, input, (await relationName(client, input.sourceOid))!);
    // The CHECK that kept the project's rows out of the shared table would refuse them coming back: gone first, in
    // a lock of its own (a catalog change), so the rows written since cutover can go back outside the final lock.
    await underLock(client, { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or attempts' }, async (clock) => {
      const shared = (await relationName(client, input.sourceOid))!;
      await lockExclusive(client, shared);
      clock.locked();
      await dropSplitCheck(client, shared, input.targetOid);
    });
    let carried = await drain(() => inTransaction(client, back, REPLAY_BEGIN));
    const result = await underLock(client, { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or attempts' }, async (clock) => {
      const shared = (await relationName(client, input.sourceOid))!;
      await lockExclusive(client, row.live);
      await lockExclusive(client, spec.target);
      await lockExclusive(client, shared);
      clock.locked();
      carried += await drain(back);
      await dropCaptureTriggers(client, spec.target);
      await dropCaptureObjects(client, input.targetOid);
      await forgetSplit(client, input.targetOid);
      const rest = await splitsOf(client, input.sourceOid);
      await applySplitView(client, input.sourceOid, rest, spec.key.map((k) => k.name), row.live);
      if (rest.length === 0) await moveTable(client, shared, row.live);
      // The project table is what it was before cutover: sealed, to be dropped by the prepare phase's compensation.
      await sealTable(client, input.targetOid);
      return rest.length
        ? `${displayName(row.live)} no longer routes to ${displayName(spec.target)}`
        : `${displayName(row.live)} is the shared table again (no project split from it any more)`;
    });
    return `split rolled back: ${result}; ${carried} changes made to ${displayName(spec.target)} after cutover carried back into the shared table`;
  }, BULK_LIMITS);
}

/** Phase verify of a split: the project table is where the plan put it, the split recorded, the old name answers reads. */
export async function verifySplit(input: VerifyInput): Promise<string> {
  return withDatabase(input, async (client) => {
    const row = await splitOfTarget(client, input.targetOid);
    const at = await relationName(client, input.targetOid);
    if (!row || !at || at.schema !== input.spec.target.schema || at.name !== input.spec.target.name) {
      throw fatal('ValidationMismatch', `after cutover ${displayName(input.spec.target)} is not the recorded project table of a split`);
    }
    const { rows } = await client.query<{ n: number }>(`SELECT (SELECT count(*) FROM (SELECT 1 FROM ${qualified(row.live)} LIMIT 1) one)::int AS n`);
    return `${displayName(row.live)} is the split view (${displayName(at)} one of its project tables) and answers reads (${rows[0]!.n ? 'has rows' : 'empty'})`;
  });
}

/**
 * Phase drop of a split: the project's old rows, hidden in the shared table since cutover, are deleted and the
 * CHECK that kept new ones out is validated. Undefined when the migration is not a split (the caller drops the
 * retired table as usual).
 */
export async function splitDrop(client: pg.Client, input: DropInput): Promise<string | undefined> {
  // Every migration's drop asks; only a database where a split was made has the table (never created here).
  if (!(await client.query(`SELECT to_regclass('safeshift.splits') IS NOT NULL AS e`)).rows[0]?.e) return undefined;
  const { rows } = await client.query<{ targetOid: number; filter: string; state: string }>(
    `SELECT target_oid::int AS "targetOid", filter, state FROM safeshift.splits WHERE shared_oid = $1 AND run_id = $2`, [input.sourceOid, input.runId]);
  const row = rows[0];
  if (!row) return undefined;
  const shared = (await relationName(client, input.sourceOid))!;
  if (row.state === 'done') return `the split's old rows were already deleted from ${displayName(shared)}`;
  const deleted = await heartbeating(() => client.query(`DELETE FROM ${qualified(shared)} WHERE (\n${row.filter}\n) IS TRUE`));
  await heartbeating(() => client.query(`ALTER TABLE ${qualified(shared)} VALIDATE CONSTRAINT ${quoteIdent(splitCheckName(row.targetOid))}`));
  await markSplitDone(client, row.targetOid);
  return `deleted the ${deleted.rowCount ?? 0} rows of the split project from ${displayName(shared)} (hidden since cutover); its CHECK is validated`;
}
