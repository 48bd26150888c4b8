/**
 * Phase 4, copy: key-range chunks streamed with COPY, one target transaction per chunk (delete range + copy), so
 * a chunk that is redone never leaves a duplicate. The activity copies for at most `sliceMs` and returns, so the
 * workflow can pause or abort between slices; it heartbeats the last finished key, and a retried attempt (worker
 * crash, lost connection) resumes from there. No compensation of its own: dropping the target (prepare) undoes it.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { connect, databaseUrl, pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import { displayName } from '../src/sql';
import { copyChunk, nextChunkBound } from '../src/copy';
import { keyRangeText, type CopySpec, type KeyValue } from '../src/projection';
import { isPaused, throttleReason, type ThrottleSettings } from '../src/throttle';
import type { MigrationRef } from './support';

const QUERY_CANCELED = '57014';

export interface CopySliceInput extends Pick<MigrationRef, 'db' | 'runId'> {
  spec: CopySpec;
  /** Resume after this key (null: from the start). */
  after: KeyValue;
  chunkRows: number;
  maxRowsPerSecond: number;
  throttle: ThrottleSettings;
  sliceMs: number;
}

export interface CopyProgress {
  after: KeyValue;
  rows: number;
  chunks: number;
  done: boolean;
  throttledMs: number;
  /** The last reason the copy backed off, if it did in this slice. */
  throttleReason?: string;
  /** The slice ended early because the migration was paused (the chunk in flight was rolled back). */
  paused?: boolean;
  /** Attempt number of the activity that produced this progress (1 unless a worker died or a call failed). */
  attempt: number;
}

/**
 * Data exceptions (SQLSTATE class 22: too long, out of range, bad input) and integrity violations (class 23) are
 * the same on every retry: fail the migration with the chunk named instead of retrying.
 */
function dataRejected(err: unknown, spec: CopySpec, lo: KeyValue, hi: KeyValue) {
  const code = pgErrorCode(err);
  if (!code || !/^2[23]/.test(code)) return undefined;
  return fatal('DataRejected', `${displayName(spec.target)} refused a row of key range ${keyRangeText(lo, hi)}: ${(err as Error).message} (SQLSTATE ${code})`);
}

export async function copySlice(input: CopySliceInput): Promise<CopyProgress> {
  const ctx = Context.current();
  const resumed = ctx.info.heartbeatDetails as CopyProgress | undefined;
  // The slice finished but its completion was lost: `after: null` here means "done", not "from the start".
  if (resumed?.done) return resumed;
  const progress: CopyProgress = resumed
    ? { ...resumed, attempt: ctx.info.attempt }
    : { after: input.after, rows: 0, chunks: 0, done: false, throttledMs: 0, attempt: ctx.info.attempt };
  progress.paused = false;
  const url = databaseUrl(input.db);
  const started = Date.now();
  let src: pg.Client | undefined;
  let dst: pg.Client | undefined;
  let watcher: pg.Client | undefined;
  let pauseRequested = false;
  let watching = false;
  const heartbeat = setInterval(() => ctx.heartbeat(progress), 2000);
  // A pause must take effect within a second, even in the middle of a long chunk: the watcher cancels the
  // chunk's COPY, its transaction rolls back, and the chunk is done again after resume.
  const watch = setInterval(() => {
    if (watching || pauseRequested || !watcher) return;
    watching = true;
    isPaused(watcher, input.runId)
      .then(async (paused) => {
        if (!paused) return;
        pauseRequested = true;
        const pid = (dst as unknown as { processID?: number } | undefined)?.processID;
        if (pid) await watcher!.query('SELECT pg_cancel_backend($1)', [pid]);
      })
      .catch(() => undefined)
      .finally(() => { watching = false; });
  }, 500);
  try {
    src = await connect(url, 'safeshift copy (read)');
    dst = await connect(url, 'safeshift copy (write)');
    watcher = await connect(url, 'safeshift copy (watch)');
    ctx.heartbeat(progress);
    while (Date.now() - started < input.sliceMs) {
      if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
      if (pauseRequested || (await isPaused(src, input.runId))) {
        progress.paused = true;
        break;
      }
      const reason = await throttleReason(src, input.throttle);
      if (reason) {
        progress.throttleReason = reason;
        progress.throttledMs += 1000;
        ctx.heartbeat(progress);
        await ctx.sleep(1000);
        continue;
      }
      const chunkStarted = Date.now();
      const hi = await nextChunkBound(src, input.spec, progress.after, input.chunkRows);
      let rows: number;
      try {
        rows = await copyChunk(src, dst, input.spec, progress.after, hi);
      } catch (err) {
        if (pauseRequested && pgErrorCode(err) === QUERY_CANCELED) {
          progress.paused = true;
          break;
        }
        throw dataRejected(err, input.spec, progress.after, hi) ?? err;
      }
      progress.rows += rows;
      progress.chunks += 1;
      progress.after = hi;
      ctx.heartbeat(progress);
      if (hi === null) {
        progress.done = true;
        break;
      }
      if (input.maxRowsPerSecond > 0) {
        const wait = Math.ceil((rows * 1000) / input.maxRowsPerSecond) - (Date.now() - chunkStarted);
        if (wait > 0) {
          progress.throttledMs += wait;
          await ctx.sleep(wait);
        }
      }
    }
    return progress;
  } finally {
    clearInterval(heartbeat);
    clearInterval(watch);
    // After a failed COPY the read client can be wedged mid-stream: never reuse, always end both.
    await Promise.all([src, dst, watcher].map((c) => c?.end().catch(() => undefined)));
  }
}
