/**
 * Phase 9, cutover: captured changes are drained, then in one short transaction (lock_timeout, retried with
 * backoff and jitter) writers are locked out, the last captured changes replayed, the capture triggers dropped,
 * the source renamed to its retired name and the target given the live name. Blocked writers then find the new
 * table under the name they asked for (PostgreSQL looks the name up again after waiting for the lock).
 *
 * With `cutover.compatView` the new table then takes its own name back and the live name becomes a view over it
 * (the old columns, `security_invoker`, the old grants), in the same transaction.
 *
 * Compensation, swapBack: writes made to the new table after cutover (reverse capture) are replayed into the
 * retired table through the inverse mapping, the last of them under the lock, then the renames are reversed
 * (the compatibility view dropped first). Nothing written after cutover is lost; a write that cannot go back
 * fails the swap back, leaving both tables.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { relationName, tableOid } from '../src/catalog';
import { dropCaptureObjects, dropCaptureTriggers, installCapture, replayBatch } from '../src/capture';
import { BULK_LIMITS, inTransaction } from '../src/db';
import { REPLAY_BEGIN } from '../src/replay';
import { makeTriggersInert, restoreTriggers } from '../src/inert-triggers';
import { adoptNames } from '../src/names';
import { addForeignKeys, type OutboundForeignKey } from '../src/foreign-keys';
import {
  addBoundCheck, attachPartition, detachPartition, lockParent, swapPartitions, validateBoundCheck, type PartitionOf, type PartitionPair,
} from '../src/partition';
import { fatal } from '../src/errors';
import { columnRenames, type CompatColumn, type CopySpec } from '../src/projection';
import { displayName, sameTableRef, type TableRef } from '../src/sql';
import { captureBoundObjects, moveBoundObjects, moveReaders, moveToNewTable, validateForeignKeys, type BoundObjects } from '../src/bound-objects';
import { dropParked, parkCompatView, parkTwins, type ParkedView, type ReaderMoves } from '../src/bound/compat-view';
import { accessAs, describeLockSteps, keepsOwnName, lockExclusive, moveTable, newTableHome, renamesAway, whileAt, type LockStep } from '../src/swap';
import { forgetAhead, readAhead, sameAsAhead } from '../src/read-ahead';
import { describeRefusal, findRowsSql, RefusedWrite, refusingColumns } from '../src/rollback-feasibility';
import { accessDifferences, readAccess } from '../src/access-matrix';
import { recordAccessBefore } from '../src/access-record';
import { heartbeating, underLock, withDatabase, type MigrationRef } from './support';
import { splitBack, splitCutover } from './split-cutover';
import { dropGuardTree, openWriteGuard } from '../src/write-guard';

const REPLAY_BATCH = 5000;
/**
 * Outside the lock, each attempt replays until a batch finds no more than this: what is left for the lock is then
 * about what writers commit during one small batch, a handful of changes.
 */
const LEFT_FOR_THE_LOCK = 50;

export interface SwapInput extends MigrationRef {
  spec: CopySpec;
  retired: TableRef;
  sourceOid: number;
  targetOid: number;
  /** The inverse mapping (preflight): how writes made after cutover go back into the retired table. */
  reverse: CopySpec;
  lockTimeoutMs: number;
  attempts: number;
  /** yyyymmddhhmmss of the run: the suffix of the names the retired table's indexes give up. */
  stamp?: string;
  /** The source is a partition (preflight): the new table takes its place in the partitioned table. */
  partition?: PartitionOf | null;
  /** The source is partitioned (preflight): partitions of the new table that take the old ones' names. */
  partitions?: PartitionPair[];
  /** The new table's own foreign keys (preflight), added NOT VALID under the lock and validated after the commit. */
  foreignKeys?: OutboundForeignKey[];
  /** `cutover.compatView`: the view's columns (preflight); absent or null for a plain swap. */
  compatView?: CompatColumn[] | null;
  /** `cutover.newTableName` (absent in runs started before it: the source's, unless compatView). */
  newTableName?: 'source' | 'target';
}

export interface SwapResult {
  attempts: number;
  /** From the last lock granted until COMMIT returned (0 for a retry past the commit). */
  lockHeldMs: number;
  /** Waiting for the locks in the attempt that succeeded (writers queue behind the request meanwhile). */
  lockWaitMs?: number;
  /** Where the lock time went, step by step, with the statements each sent (`lock` is the wait, `commit` last). */
  lockSteps?: LockStep[];
  /** Captured changes replayed outside the lock before the attempts, and under it. */
  replayed?: { outside: number; underLock: number };
  message: string;
  /** SQL run to move the objects bound to the table (audit log). */
  statements: string[];
  /**
   * Access through the live name that the swap changed (`src/access-matrix.ts`), one line each; the verify phase
   * fails on any. Absent on a retry past the commit, which has no "before" in memory: verify then compares the live
   * access with the matrix recorded before the swap (src/access-record.ts).
   */
  accessChanged?: string[];
}

/**
 * Replay batches until one takes no more than `until` changes (0: the change table is empty); returns how many
 * changes were replayed. `limit`: a batch that took fewer than this emptied the table (under the lock nobody adds
 * to it, so no second, empty batch is needed to know).
 */
async function drain(
  batch: () => Promise<{ changes: number }>, progress: (replayed: number) => void = () => undefined, until = 0, limit = Infinity,
): Promise<number> {
  let replayed = 0;
  for (;;) {
    const n = (await batch()).changes;
    replayed += n;
    if (n > 0) progress(replayed);
    if (n <= until || n < limit) return replayed;
  }
}

export async function swapTables(input: SwapInput): Promise<SwapResult> {
  // A row filter splits a shared table: the source stays live for the other rows (activities/split-cutover.ts).
  if (input.spec.where !== undefined) return splitCutover(input);
  const { spec, retired } = input;
  return withDatabase(input, async (client) => {
    // The source is renamed only by the commit, so its retired name alone says the swap happened.
    const home = newTableHome(spec, keepsOwnName(input));
    if (sameTableRef(await relationName(client, input.sourceOid), retired) && sameTableRef(await relationName(client, input.targetOid), home)) {
      // The attempt that committed may have died validating the new table's own foreign keys: finish that.
      await heartbeating(async () => validateForeignKeys(client, await ownKeysToValidate(client, input, home)));
      return { attempts: 0, lockHeldMs: 0, message: 'already swapped (retried after commit)', statements: [] };
    }
    const replay = () => replayBatch(client, spec, input.sourceOid, REPLAY_BATCH);
    const { partition } = input;
    // Who can do what through the live name, asked of PostgreSQL role by role; outside the lock (it takes a while).
    const accessBefore = await heartbeating(() => readAccess(client, spec.source));
    // Kept for verify: a retry past the commit has no "before" of its own (src/access-record.ts).
    await recordAccessBefore(client, spec.source, input.targetOid, accessBefore);
    // What is bound to the table, read before the lock (src/read-ahead.ts): some twenty catalog queries.
    const ahead = await readAhead(client, () => captureBoundObjects(client, input.sourceOid, spec.source));
    let outside = 0;
    // Before every attempt, outside the lock: what was written since (during the access read, or the backoff
    // after an attempt that could not take the lock) is replayed here, so the lock finds a handful of changes.
    const drainOutside = () => drain(() => inTransaction(client, replay, REPLAY_BEGIN), (n) => Context.current().heartbeat({ draining: outside + n }), LEFT_FOR_THE_LOCK)
      .then((n) => { outside += n; });
    const swapped = await underLock(client, { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or attempts', beforeEach: drainOutside }, async (clock) => {
      await clock.step('lock', async () => {
        if (partition) await lockParent(client, partition);
        await lockExclusive(client, spec.target);
        await lockExclusive(client, spec.source);
      });
      clock.locked();
      // Writers wait from here: each step sends its DDL in one round trip (src/swap.ts, LockClock).
      clock.batch();
      // Every change writers committed before is in the change table. Drain it all.
      const drained = await clock.step('replay', () => drain(replay, undefined, 0, REPLAY_BATCH));
      // Read ahead and confirmed here in one round trip; read again only if something bound to the table changed.
      // (Before the capture triggers go: the capture leaves safeshift's own triggers out either way.)
      const bound = await clock.step('read bound objects', async () => ((await sameAsAhead(client, ahead))
        ? ahead.value : captureBoundObjects(client, input.sourceOid, spec.source)));
      // Nobody went around the new table's write guard (src/write-guard.ts), or the cutover fails closed; then it goes.
      // The old table takes it: a swap back makes the retired table live again, so until then only safeshift writes it.
      await clock.step('write guard', () => openWriteGuard(client, input.targetOid, spec.target, input.sourceOid));
      await clock.step('capture triggers', () => dropCaptureTriggers(client, spec.source));
      const partitioning: string[] = [];
      await clock.step('rename', async () => {
        if (partition) partitioning.push(await detachPartition(client, spec.source, partition));
        await moveTable(client, spec.source, retired);
      });
      // Before the moves: a self-reference must be the new table's own when the old one's is looked at.
      const keys = input.foreignKeys?.length ? await clock.step('own foreign keys', () => addForeignKeys(client, input.foreignKeys!, input.targetOid)) : [];
      const toNewTable = (at: TableRef) => moveToNewTable(client, bound, input.sourceOid, { oid: input.targetOid, home: at }, input.compatView ?? null,
        { columnRenames: columnRenames(spec.columns) });
      // cutover.newTableName: target: what is bound moves while the new table visits the live name (the captured
      // definitions name it, and follow the table by OID), then the table takes its own name back.
      const moved = await clock.step('move bound objects', async () => (renamesAway(input)
        ? whileAt(client, input.targetOid, spec.target, spec.source, () => toNewTable(spec.source)) : toNewTable(spec.target)));
      // Preflight rehearsed this; something bound to the table changed since. Roll back rather than strand it.
      if (moved.problems.length) throw fatal('BadPlan', `cutover refused, these cannot move to the new table: ${moved.problems.join('; ')}`);
      if (moved.compatProblems.length) throw fatal('BadPlan', `cutover refused, the compatibility view cannot take the live name: ${moved.compatProblems.join('; ')}`);
      // From here on the partitioned table routes this bound's rows to the new table.
      const pairs = await clock.step('partitions', async () => {
        if (partition) partitioning.push(await attachPartition(client, home, partition));
        return swapPartitions(client, input.partitions ?? [], 'forward');
      });
      if (pairs.problems.length) throw fatal('BadPlan', `cutover refused, these cannot move to the new partitions: ${pairs.problems.join('; ')}`);
      partitioning.push(...pairs.statements);
      // The application knows the old index and constraint names (ON CONFLICT ON CONSTRAINT, error handlers). With a
      // compatibility view too: it writes through the view, and a violation names the new table's constraint. Only
      // with newTableName: target (no view) does the new table keep its own: the application uses its name now.
      const renamed = renamesAway(input) ? [] : await clock.step('names', () => adoptNames(client, input.sourceOid, input.targetOid, `_retired_${input.stamp ?? 'cutover'}`, columnRenames(spec.columns)));
      // The retired table is written only by a swap back, exactly: its triggers rest until it is live again. The
      // new table's own triggers (the plan's DDL), inert while it was filled, wake up with it.
      await clock.step('triggers', async () => {
        await makeTriggersInert(client, input.sourceOid, retired);
        for (const p of input.partitions ?? []) await makeTriggersInert(client, (await tableOid(client, p.retired))!, p.retired);
        await restoreTriggers(client, input.targetOid, home);
      });
      // Reverse capture: every write to the new table from now on is recorded, so a swap back knows exactly
      // whether it would lose something.
      await clock.step('reverse capture', () => installCapture(client, { source: home, sourceOid: input.targetOid }, spec.key));
      const now = input.compatView
        ? `${displayName(spec.target)} is the new table and ${displayName(spec.source)} a compatibility view over it`
        : renamesAway(input) ? `${displayName(spec.target)} is the new table under its own name and ${displayName(spec.source)} is gone`
        : `${displayName(spec.target)} is now ${displayName(spec.source)}`;
      return {
        message: `${now}; the old table is ${displayName(retired)}; ${drained} captured changes replayed under the lock`,
        statements: [...partitioning, ...keys.map((k) => k.statement), ...moved.statements, ...renamed.map((r) => `-- ${r.kind} ${r.to}: name taken over from the old table`)],
        foreignKeys: moved.notValidForeignKeys,
        drained,
      };
    }).finally(() => forgetAhead(client, ahead).catch(() => undefined));
    // After the commit: VALIDATE takes only SHARE UPDATE EXCLUSIVE, writers go on meanwhile. The new table's own
    // keys are found as a retry past the commit finds them: under the names they have now.
    // Access first, right after the commit: validating keys may take minutes, and a worker lost meanwhile would
    // leave a retry with no "before" to compare with.
    const accessAfter = await heartbeating(() => readAccessOfLive(client, input, home, accessBefore.objects));
    await heartbeating(async () => validateForeignKeys(client, [...(await ownKeysToValidate(client, input, home)), ...swapped.foreignKeys]));
    // The compatibility view keeps the old column names: compared as they are.
    const accessChanged = accessDifferences(accessBefore, accessAfter, input.compatView ? {} : columnRenames(spec.columns));
    return {
      attempts: swapped.attempts, lockHeldMs: swapped.lockHeldMs, lockWaitMs: swapped.lockWaitMs, lockSteps: swapped.lockSteps,
      replayed: { outside, underLock: swapped.drained }, message: `${swapped.message}; lock held ${swapped.lockHeldMs} ms: ${describeLockSteps(swapped.lockSteps)}`,
      statements: swapped.statements, accessChanged,
    };
  }, BULK_LIMITS);
}

/**
 * After a retry past the commit: the new table's own foreign keys still NOT VALID, whatever they are called now
 * (the cutover may have given them the old table's names), except those NOT VALID where they came from.
 */
async function ownKeysToValidate(client: pg.Client, input: SwapInput, home: TableRef): Promise<{ table: TableRef; name: string }[]> {
  const keptNotValid = (input.foreignKeys ?? []).filter((fk) => fk.validated === false).map((fk) => fk.name);
  const { rows } = await client.query<{ name: string }>(
    `SELECT conname AS name FROM pg_constraint WHERE conrelid = $1 AND contype = 'f' AND NOT convalidated AND NOT (conname = ANY ($2::text[]))`,
    [input.targetOid, keptNotValid]);
  return rows.map((r) => ({ table: home, name: r.name }));
}

/**
 * Access to the table the application uses: through the live name, or with `cutover.newTableName: target` (no
 * view) through the new table's own name, keyed as the live name so it compares with what was there before.
 */
async function readAccessOfLive(client: pg.Client, input: SwapInput, home: TableRef, objects?: Parameters<typeof readAccess>[2]) {
  if (!renamesAway(input)) return readAccess(client, input.spec.source, objects);
  return accessAs(await readAccess(client, home, objects), home, input.spec.source);
}

/** What the swap back did: its message, and the SQL that carried what is bound to the table back (audit log). */
export interface SwapBackResult {
  message: string;
  statements: string[];
}

/**
 * Compensation of swapTables. Idempotent: nothing to do when the source already has its name back. (Runs started
 * before it returned its statements got the message alone: workflows/carry.ts `undoOutcome` reads both.)
 */
export async function swapBack(input: SwapInput): Promise<SwapBackResult> {
  if (input.spec.where !== undefined) return { message: await splitBack(input), statements: [] };
  const { spec, retired } = input;
  const home = newTableHome(spec, keepsOwnName(input));
  return withDatabase(input, async (client) => {
    const sourceAt = await relationName(client, input.sourceOid);
    const targetAt = await relationName(client, input.targetOid);
    if (sameTableRef(sourceAt, spec.source)) return { message: `${displayName(spec.source)} is the original table; nothing to swap back`, statements: [] };
    if (!sameTableRef(sourceAt, retired) || !sameTableRef(targetAt, home)) {
      throw fatal('NotOurs', `cannot swap back: the original table is at ${sourceAt ? displayName(sourceAt) : '(gone)'} and the new one at ${targetAt ? displayName(targetAt) : '(gone)'}`);
    }
    // Writes made after cutover flow back through the inverse mapping; outside the lock first, then the rest. A
    // value the original table refuses rolls its batch back (its changes stay recorded for the next attempt) and
    // is explained once that transaction has ended (refusedBack).
    const replayBack = () => replayBatch(client, input.reverse, input.targetOid, REPLAY_BATCH, 'upsert').catch((err: unknown) => {
      throw RefusedWrite.from(err) ?? err;
    });
    const explain = (err: unknown) => refusedBack(client, input, err);
    const { partition } = input;
    // Attaching the original partition again must not scan it under the lock: a CHECK implying the bound, validated
    // now (only replay writes the retired table, with rows the new partition held).
    if (partition) {
      await addBoundCheck(client, retired, partition, 'not valid');
      await heartbeating(() => validateBoundCheck(client, retired, partition));
    }
    const accessBefore = await heartbeating(() => readAccessOfLive(client, input, home));
    let replayedBack = 0;
    // As in the cutover: before every attempt, what was written since is carried back outside the lock.
    const drainOutside = () => drain(() => inTransaction(client, replayBack, REPLAY_BEGIN), (n) => Context.current().heartbeat({ replayedBack: replayedBack + n }), LEFT_FOR_THE_LOCK)
      .then((n) => { replayedBack += n; });
    const result = await underLock(client, { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or attempts', beforeEach: drainOutside }, async (clock) => {
      await clock.step('lock', async () => {
        // The view first: writers through it lock the view, then the table.
        if (partition) await lockParent(client, partition);
        if (input.compatView && (await tableOid(client, spec.source))) await lockExclusive(client, spec.source);
        await lockExclusive(client, home);
        await lockExclusive(client, retired);
      });
      clock.locked();
      replayedBack += await clock.step('replay', () => drain(replayBack, undefined, 0, REPLAY_BATCH));
      // newTableName: target without a view: the new table goes back to the live name (free) and leaves it as in a plain swap back.
      if (renamesAway(input)) await moveTable(client, home, spec.source);
      let bound: BoundObjects;
      // The compatibility view's swap back (src/bound/compat-view.ts) captures and moves its readers with these.
      const moves: ReaderMoves = {
        capture: (oid, live) => captureBoundObjects(client, oid, live),
        moveReaders: (captured, fromOid) => moveReaders(client, captured, fromOid),
      };
      let parked: ParkedView | undefined;
      let twins: ParkedView[] = [];
      if (input.compatView) {
        parked = await parkCompatView(client, spec.source, input.targetOid, home, moves);
        twins = await parkTwins(client, input.targetOid, spec.source, moves);
        // Captured definitions must name the live name, where the original table is about to be again.
        bound = await whileAt(client, input.targetOid, home, spec.source, () => captureBoundObjects(client, input.targetOid, spec.source));
        // The parked view and the twins read the new table too; they are dropped below, not moved.
        const ours = new Set([parked?.oid, ...twins.map((t) => t.oid)]);
        bound.views = bound.views.filter((v) => !ours.has(v.oid));
      } else {
        if (partition) await detachPartition(client, spec.source, partition);
        bound = await captureBoundObjects(client, input.targetOid, spec.source);
        await moveTable(client, spec.source, spec.target);
      }
      await moveTable(client, retired, spec.source);
      if (partition) await attachPartition(client, spec.source, partition);
      const pairs = await swapPartitions(client, input.partitions ?? [], 'back');
      if (pairs.problems.length) throw fatal('SwapBackUnsafe', `cannot swap back, these cannot move to the original partitions: ${pairs.problems.join('; ')}`);
      // With a compatibility view, what reads the new table moves last: the parked view reads it until dropped.
      const moved = await moveBoundObjects(client, bound, input.targetOid, { ref: spec.source, oid: input.sourceOid }, { readersLater: Boolean(input.compatView), columnRenames: columnRenames(input.reverse.columns), skipGrantsOnMissingColumns: true });
      if (moved.problems.length) throw fatal('SwapBackUnsafe', `cannot swap back, these cannot move to the original table: ${moved.problems.join('; ')}`);
      // For the audit log, as the cutover's: what carried each bound object back.
      const statements = [...moved.statements];
      if (parked) statements.push(...(await dropParked(client, parked, 'the compatibility view', moves)));
      for (const twin of twins) statements.push(...(await dropParked(client, twin, displayName(twin.at), moves)));
      if (input.compatView) {
        const readers = await moveReaders(client, bound, input.targetOid);
        if (readers.problems.length) throw fatal('SwapBackUnsafe', `cannot swap back, these cannot move to the original table: ${readers.problems.join('; ')}`);
        statements.push(...readers.statements);
      }
      if (!renamesAway(input)) {
        const renamed = await adoptNames(client, input.targetOid, input.sourceOid, `_rolledback_${input.stamp ?? 'cutover'}`, columnRenames(input.reverse.columns));
        statements.push(...renamed.map((r) => `-- ${r.kind} ${r.to}: name given back to the original table`));
      }
      await restoreTriggers(client, input.sourceOid, spec.source);
      for (const p of input.partitions ?? []) await restoreTriggers(client, (await tableOid(client, p.source))!, p.source);
      await dropGuardTree(client, input.sourceOid);
      await dropCaptureObjects(client, input.targetOid);
      return { message: `swapped back: ${displayName(spec.source)} is the original table again, with ${replayedBack} changes made after cutover carried back`, foreignKeys: moved.notValidForeignKeys, statements };
    }).catch(explain);
    await heartbeating(() => validateForeignKeys(client, result.foreignKeys));
    // A rollback is not refused for this (it must finish), but a changed access is said, in the audit log too.
    const accessAfter = await heartbeating(() => readAccess(client, spec.source, accessBefore.objects));
    const changed = accessDifferences(accessBefore, accessAfter, input.compatView ? {} : columnRenames(input.reverse.columns));
    return {
      message: changed.length ? `${result.message}; ACCESS CHANGED by the swap back, check: ${changed.join('; ')}` : `${result.message}; access through ${displayName(spec.source)} unchanged`,
      statements: result.statements,
    };
  }, BULK_LIMITS);
}

/**
 * A write the original table refused, as SwapBackUnsafe: what refused (SQLSTATE, column, constraint) and, for a
 * data exception (which PostgreSQL ties to no column), which columns of how many pending rows do not fit. No
 * value is told. Anything else is rethrown as it is.
 */
async function refusedBack(client: pg.Client, input: SwapInput, err: unknown): Promise<never> {
  if (!(err instanceof RefusedWrite)) throw err;
  const found = err.sqlstate.startsWith('22') ? await refusingColumns(client, input.reverse, input.targetOid).catch(() => []) : [];
  const first = input.reverse.columns.find((c) => c.target === found[0]?.column);
  const live = newTableHome(input.spec, keepsOwnName(input));
  const findRows = first ? findRowsSql(live, input.reverse.key, first) : undefined;
  const { message, details } = describeRefusal(err, found, { retired: displayName(input.retired), live: displayName(live) }, findRows);
  throw fatal('SwapBackUnsafe', message, details);
}
