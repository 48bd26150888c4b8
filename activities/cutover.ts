/**
 * Phase 9, cutover: in one short transaction (lock_timeout, retried with backoff and jitter) the source is
 * renamed to its retired name and the target takes the live name. Until change capture exists (issue 3), writes
 * made after validation cannot be carried over, so under the lock the source's count and checksum are compared
 * with what was validated, and any difference refuses the cutover.
 *
 * Compensation, swapBack: the reverse renames, only while the live table still equals what was validated, so
 * that no write made after cutover is thrown away silently.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { checksum, sameChecksum, type Checksum } from '../src/checksum';
import { relationName } from '../src/catalog';
import { pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import type { CopySpec } from '../src/projection';
import { displayName, type TableRef } from '../src/sql';
import { advanceOwnedSequences, lockAgainstWrites, lockExclusive, moveSharedSequences, moveTable, setLockTimeout } from '../src/swap';
import { heartbeating, withDatabase, type MigrationRef } from './support';

export interface SwapInput extends MigrationRef {
  spec: CopySpec;
  retired: TableRef;
  sourceOid: number;
  targetOid: number;
  /** Validated figures: the source (mapped) and the target must still show these. */
  expected: { source: Checksum; target: Checksum };
  lockTimeoutMs: number;
  attempts: number;
}

export interface SwapResult {
  attempts: number;
  lockHeldMs: number;
  message: string;
}

/** Lock timeout and deadlock (a writer that read then wrote while we upgraded our lock): both worth retrying. */
const RETRY_CODES = new Set(['55P03', '40P01']);
/** Kept well under the heartbeat timeout: the activity must keep heartbeating while it backs off. */
const MAX_BACKOFF_MS = 10_000;

function same(a: TableRef | undefined, b: TableRef): boolean {
  return a !== undefined && a.schema === b.schema && a.name === b.name;
}

/** Run `fn` in a transaction with lock_timeout, retrying lock timeouts with exponential backoff and jitter. */
async function underLock(client: pg.Client, lockTimeoutMs: number, attempts: number, fn: () => Promise<string>): Promise<SwapResult> {
  const ctx = Context.current();
  for (let attempt = 1; ; attempt++) {
    await client.query('BEGIN');
    const began = Date.now();
    try {
      // Heartbeats go on while the statements under the lock run (a checksum scan can take a while), so the
      // server never starts a second attempt that would fight this one for the same locks.
      const message = await heartbeating(async () => {
        await setLockTimeout(client, lockTimeoutMs);
        return fn();
      }, () => ({ attempt }));
      await client.query('COMMIT');
      return { attempts: attempt, lockHeldMs: Date.now() - began, message };
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
      return { attempts: 0, lockHeldMs: 0, message: 'already swapped (retried after commit)' };
    }
    return underLock(client, input.lockTimeoutMs, input.attempts, async () => {
      await lockAgainstWrites(client, spec.source);
      const now = await checksum(client, spec, 'source');
      if (!sameChecksum(now, input.expected.source)) {
        throw fatal('SourceChanged',
          `${displayName(spec.source)} changed after validation (${input.expected.source.rows} rows then, ${now.rows} now, checksum ${now.checksum === input.expected.source.checksum ? 'equal' : 'different'}); ` +
          'writes made during a migration are not captured yet (issue 3), so cutover is refused and the migration rolled back; run it again when writes to the table are stopped');
      }
      await lockExclusive(client, spec.target);
      const target = await checksum(client, spec, 'target');
      if (!sameChecksum(target, input.expected.target)) {
        throw fatal('ValidationMismatch', `${displayName(spec.target)} changed after validation (${input.expected.target.rows} rows then, ${target.rows} now); cutover refused`);
      }
      await lockExclusive(client, spec.source);
      await moveTable(client, spec.source, retired);
      await moveTable(client, spec.target, spec.source);
      const moved = await moveSharedSequences(client, input.sourceOid, input.targetOid, spec.source);
      await advanceOwnedSequences(client, spec.source, input.targetOid);
      return `${displayName(spec.target)} is now ${displayName(spec.source)}; the old table is ${displayName(retired)}` +
        (moved.length ? `; sequences ${moved.join(', ')} now belong to the new table` : '');
    });
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
    const live: CopySpec = { ...spec, target: spec.source };
    const result = await underLock(client, input.lockTimeoutMs, input.attempts, async () => {
      await lockAgainstWrites(client, spec.source);
      const now = await checksum(client, live, 'target');
      if (!sameChecksum(now, input.expected.target)) {
        throw fatal('SwapBackUnsafe',
          `${displayName(spec.source)} was written after cutover (${input.expected.target.rows} rows at cutover, ${now.rows} now); swapping back would lose those writes, ` +
          `so both tables are left as they are: the new table is live at ${displayName(spec.source)}, the original is ${displayName(retired)}`);
      }
      await lockExclusive(client, spec.source);
      await lockExclusive(client, retired);
      await moveTable(client, spec.source, spec.target);
      await moveTable(client, retired, spec.source);
      await moveSharedSequences(client, input.targetOid, input.sourceOid, spec.source);
      return `swapped back: ${displayName(spec.source)} is the original table again`;
    });
    return result.message;
  });
}
