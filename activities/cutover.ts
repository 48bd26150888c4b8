/**
 * Phase 9, cutover: captured changes are drained, then in one short transaction (lock_timeout, retried with
 * backoff and jitter) writers are locked out, the last captured changes replayed, the capture triggers dropped,
 * the source renamed to its retired name and the target given the live name. Blocked writers then find the new
 * table under the name they asked for (PostgreSQL looks the name up again after waiting for the lock).
 *
 * Compensation, swapBack: writes made to the new table after cutover (reverse capture) are replayed into the
 * retired table through the inverse mapping, the last of them under the lock, then the renames are reversed.
 * Nothing written after cutover is lost; a write that cannot go back fails the swap back, leaving both tables.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { relationName } from '../src/catalog';
import { dropCaptureObjects, dropCaptureTriggers, installCapture, replayBatch } from '../src/capture';
import { inTransaction, pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import type { CopySpec } from '../src/projection';
import { displayName, type TableRef } from '../src/sql';
import { captureBoundObjects, moveBoundObjects, validateForeignKeys } from '../src/bound-objects';
import { lockExclusive, moveTable, setLockTimeout } from '../src/swap';

const REPLAY_BATCH = 5000;
import { heartbeating, withDatabase, type MigrationRef } from './support';

export interface SwapInput extends MigrationRef {
  spec: CopySpec;
  retired: TableRef;
  sourceOid: number;
  targetOid: number;
  /** The inverse mapping (preflight): how writes made after cutover go back into the retired table. */
  reverse: CopySpec;
  lockTimeoutMs: number;
  attempts: number;
}

export interface SwapResult {
  attempts: number;
  lockHeldMs: number;
  message: string;
  /** SQL run to move the objects bound to the table (audit log). */
  statements: string[];
}

/** Lock timeout and deadlock (a writer that read then wrote while we upgraded our lock): both worth retrying. */
const RETRY_CODES = new Set(['55P03', '40P01']);
/** Kept well under the heartbeat timeout: the activity must keep heartbeating while it backs off. */
const MAX_BACKOFF_MS = 10_000;

function same(a: TableRef | undefined, b: TableRef): boolean {
  return a !== undefined && a.schema === b.schema && a.name === b.name;
}

/** Run `fn` in a transaction with lock_timeout, retrying lock timeouts with exponential backoff and jitter. */
async function underLock<T extends { message: string }>(client: pg.Client, lockTimeoutMs: number, attempts: number, fn: () => Promise<T>): Promise<T & { attempts: number; lockHeldMs: number }> {
  const ctx = Context.current();
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN');
    const began = Date.now();
    try {
      // Heartbeats go on while the statements under the lock run (a checksum scan can take a while), so the
      // server never starts a second attempt that would fight this one for the same locks.
      const result = await heartbeating(async () => {
        await setLockTimeout(client, lockTimeoutMs);
        return fn();
      }, () => ({ attempt }));
      await client.query('COMMIT');
      return { ...result, attempts: attempt, lockHeldMs: Date.now() - began };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (!RETRY_CODES.has(pgErrorCode(err) ?? '')) throw err;
      if (attempt >= attempts) {
        throw fatal('Unsupported', `could not take the locks within ${lockTimeoutMs} ms in ${attempts} attempts (last: ${(err as Error).message}): long transactions hold the table (see pg_stat_activity); raise cutover.lockTimeoutMs or attempts, or retry later`);
      }
      ctx.heartbeat({ attempt, backingOff: true });
      await ctx.sleep(Math.min(MAX_BACKOFF_MS, 100 * 2 ** attempt) * (0.5 + Math.random()));
    }
  }
}

export async function swapTables(input: SwapInput): Promise<SwapResult> {
  const { spec, retired } = input;
  return withDatabase(input, async (client) => {
    if (same(await relationName(client, input.targetOid), spec.source) && same(await relationName(client, input.sourceOid), retired)) {
      return { attempts: 0, lockHeldMs: 0, message: 'already swapped (retried after commit)', statements: [] };
    }
    // Outside the lock first, so what is left for the lock is a handful of changes at most.
    while ((await inTransaction(client, () => replayBatch(client, spec, input.sourceOid, REPLAY_BATCH))).changes > 0) {
      Context.current().heartbeat({ draining: true });
    }
    const swapped = await underLock(client, input.lockTimeoutMs, input.attempts, async () => {
      await lockExclusive(client, spec.target);
      await lockExclusive(client, spec.source);
      // Writers wait from here: every change they committed before is in the change table. Drain it all.
      let drained = 0;
      for (let done = await replayBatch(client, spec, input.sourceOid, REPLAY_BATCH); done.changes > 0; done = await replayBatch(client, spec, input.sourceOid, REPLAY_BATCH)) {
        drained += done.changes;
      }
      await dropCaptureTriggers(client, spec.source);
      const bound = await captureBoundObjects(client, input.sourceOid, spec.source);
      await moveTable(client, spec.source, retired);
      await moveTable(client, spec.target, spec.source);
      const moved = await moveBoundObjects(client, bound, input.sourceOid, { ref: spec.source, oid: input.targetOid });
      if (moved.problems.length) {
        // Preflight rehearsed this; something bound to the table changed since. Roll back rather than strand it.
        throw fatal('BadPlan', `cutover refused, these cannot move to the new table: ${moved.problems.join('; ')}`);
      }
      // Reverse capture: every write to the new table from now on is recorded, so a swap back knows exactly
      // whether it would lose something.
      await installCapture(client, { source: spec.source, sourceOid: input.targetOid }, spec.key);
      return {
        message: `${displayName(spec.target)} is now ${displayName(spec.source)}; the old table is ${displayName(retired)}; ${drained} captured changes replayed under the lock`,
        statements: moved.statements,
        foreignKeys: moved.notValidForeignKeys,
      };
    });
    // After the commit: VALIDATE takes only SHARE UPDATE EXCLUSIVE, writers go on meanwhile.
    await heartbeating(() => validateForeignKeys(client, swapped.foreignKeys));
    return { attempts: swapped.attempts, lockHeldMs: swapped.lockHeldMs, message: swapped.message, statements: swapped.statements };
  });
}

/** Compensation of swapTables. Idempotent: nothing to do when the source already has its name back. */
export async function swapBack(input: SwapInput): Promise<string> {
  const { spec, retired } = input;
  return withDatabase(input, async (client) => {
    const sourceAt = await relationName(client, input.sourceOid);
    const targetAt = await relationName(client, input.targetOid);
    if (same(sourceAt, spec.source)) return `${displayName(spec.source)} is the original table; nothing to swap back`;
    if (!same(sourceAt, retired) || !same(targetAt, spec.source)) {
      throw fatal('NotOurs', `cannot swap back: the original table is at ${sourceAt ? displayName(sourceAt) : '(gone)'} and the new one at ${targetAt ? displayName(targetAt) : '(gone)'}`);
    }
    // Writes made after cutover flow back through the inverse mapping; outside the lock first, then the rest.
    const replayBack = () => replayBatch(client, input.reverse, input.targetOid, REPLAY_BATCH, 'upsert').catch((err: unknown) => {
      const code = pgErrorCode(err);
      if (code && /^2[23]/.test(code)) {
        throw fatal('SwapBackUnsafe', `a write made after cutover cannot go back into ${displayName(retired)}: ${(err as Error).message}; ` +
          `both tables are left as they are: the new table is live at ${displayName(spec.source)}, the original is ${displayName(retired)}`);
      }
      throw err;
    });
    let replayedBack = 0;
    for (let n = (await inTransaction(client, replayBack)).changes; n > 0; n = (await inTransaction(client, replayBack)).changes) {
      replayedBack += n;
      Context.current().heartbeat({ replayedBack });
    }
    const result = await underLock(client, input.lockTimeoutMs, input.attempts, async () => {
      await lockExclusive(client, spec.source);
      await lockExclusive(client, retired);
      for (let done = await replayBack(); done.changes > 0; done = await replayBack()) replayedBack += done.changes;
      const bound = await captureBoundObjects(client, input.targetOid, spec.source);
      await moveTable(client, spec.source, spec.target);
      await moveTable(client, retired, spec.source);
      const moved = await moveBoundObjects(client, bound, input.targetOid, { ref: spec.source, oid: input.sourceOid });
      if (moved.problems.length) throw fatal('SwapBackUnsafe', `cannot swap back, these cannot move to the original table: ${moved.problems.join('; ')}`);
      await dropCaptureObjects(client, input.targetOid);
      return { message: `swapped back: ${displayName(spec.source)} is the original table again, with ${replayedBack} changes made after cutover carried back`, foreignKeys: moved.notValidForeignKeys };
    });
    await heartbeating(() => validateForeignKeys(client, result.foreignKeys));
    return result.message;
  });
}
