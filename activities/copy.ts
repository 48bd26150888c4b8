/**
 * Phase 4, copy: key-range chunks streamed with COPY, `parallel` lanes at once. Chunks are cut in key order by one
 * dispenser and copied by whichever lane is free; each is one target transaction (delete the range, COPY it in,
 * record it in `safeshift.copy_chunks`), so a chunk done twice never duplicates a row and a committed chunk is
 * never lost. The activity copies for at most `sliceMs` and returns, so the workflow can pause or abort between
 * slices. Every chunk is recorded when a lane is handed it and marked in its own transaction, so a retried attempt
 * (worker killed, connection lost) knows from the records, not from its last heartbeat, which chunks were in
 * flight: it copies exactly those again, then goes on. No compensation of its own: dropping the
 * target (prepare) undoes it.
 */
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { availableConnections, BULK_LIMITS, connect, CONNECTION_HEADROOM, copyConnections, databaseUrl, pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import { describePgError, isPgError, pgErrorColumn } from '../src/redact';
import { chunkRecords, recordCopiedChunk, recordHandedChunk } from '../src/ledger';
import { displayName, qualified } from '../src/sql';
import { andRowFilter } from '../src/row-filter';
import { copyChunkResolvingStale, nextChunkBound, resumePoint, tuneChunkRows, type ChunkSizing, openSourceReader } from '../src/copy';
import { keyRange, keyRangeText, mappedExpression, type CopySpec, type KeyValue } from '../src/projection';
import { isPaused, throttleReason, type ThrottleSettings } from '../src/throttle';
import { stallLimitMs, withStallGuard } from '../src/stall';
import type { MigrationRef } from './support';

const QUERY_CANCELED = '57014';

export interface CopySliceInput extends Pick<MigrationRef, 'db' | 'runId'> {
  spec: CopySpec;
  targetOid: number;
  /** Rows in the next chunk: the plan's chunkRows at first, then what the tuner arrived at in the last slice. */
  chunkRows: number;
  sizing: ChunkSizing;
  parallel: number;
  maxRowsPerSecond: number;
  throttle: ThrottleSettings;
  sliceMs: number;
}

export interface CopyProgress {
  /** Rows and chunks committed by the whole copy so far (from the chunk records: exact after any crash). */
  rows: number;
  chunks: number;
  /** Chunks are cut up to here. */
  lastKey: KeyValue;
  done: boolean;
  /** Rows this slice copied again: chunks an earlier attempt had in flight when it died or was paused. */
  rowsRedone: number;
  /** The tuned chunk size to start the next slice with. */
  chunkRows: number;
  throttledMs: number;
  /** The last reason the copy backed off, if it did in this slice. */
  throttleReason?: string;
  /** The slice ended early because the migration was paused (the chunks in flight were rolled back). */
  paused?: boolean;
  /** Attempt number of the activity that produced this progress (1 unless a worker died or a call failed). */
  attempt: number;
}

interface Work {
  seq: number;
  lo: KeyValue;
  hi: KeyValue;
  /** A chunk an earlier attempt had in flight. */
  redo: boolean;
}

/**
 * Data exceptions (SQLSTATE class 22: too long, out of range, bad input) and integrity violations (class 23) are
 * the same on every retry: fail the migration with the chunk named instead of retrying. Told without the value
 * (SQLSTATE, column or constraint, COPY line, src/redact.ts): history and the audit log keep this text.
 */
async function dataRejected(err: unknown, spec: CopySpec, lo: KeyValue, hi: KeyValue, client: pg.Client) {
  if (!isPgError(err) || !/^2[23]/.test(err.code)) return undefined;
  const column = err.code.startsWith('22') && !pgErrorColumn(err) ? await failingColumn(client, spec, lo, hi, err.code) : undefined;
  return fatal('DataRejected', `${displayName(spec.target)} refused a row of key range ${keyRangeText(lo, hi)}: ${describePgError(err, { column })}`);
}

/**
 * A data exception raised reading the source (a mapping's cast to the target type) names no column: PostgreSQL
 * does not say which select-list entry failed. Each column's expression is evaluated alone over the chunk's rows
 * until one fails the same way; read-only, one chunk.
 */
async function failingColumn(client: pg.Client, spec: CopySpec, lo: KeyValue, hi: KeyValue, code: string): Promise<string | undefined> {
  for (const c of spec.columns) {
    try {
      await client.query(`SELECT count(${mappedExpression(c)}) FROM ${qualified(spec.source)} WHERE ${keyRange(spec.key, lo, hi)}${andRowFilter(spec.where)}`);
    } catch (err) {
      if (pgErrorCode(err) === code) return c.target;
    }
  }
  return undefined;
}

/**
 * Preflight's part for the copy: the lanes must fit in the connections available now (src/db.ts: the server's
 * and the database's free ones less a headroom for the application, the role's limit). Counted again at the start
 * of every slice (lanesThatFit), since others connect meanwhile.
 */
export async function copyConnectionProblems(client: pg.Client, parallel: number): Promise<string[]> {
  const available = await availableConnections(client);
  const needed = copyConnections(parallel);
  return available < needed
    ? [`copy.parallel: ${parallel} lane${parallel > 1 ? 's' : ''} need ${needed} connections; ${Math.max(0, available)} are available ` +
      `(max_connections, the database's and the role's CONNECTION LIMIT, less those in use and ${CONNECTION_HEADROOM} left to the application)`]
    : [];
}

/** How many of the plan's lanes fit now (the control connection is open and counted already), two connections each. */
async function lanesThatFit(control: pg.Client, parallel: number): Promise<number> {
  return Math.max(0, Math.min(parallel, Math.floor((await availableConnections(control)) / 2)));
}

export async function copySlice(input: CopySliceInput): Promise<CopyProgress> {
  const ctx = Context.current();
  const url = databaseUrl(input.db);
  const { spec } = input;
  const started = Date.now();
  // Dispenses chunks (cuts the next bound), reads pause and throttle, cancels lanes on pause.
  const control = await connect(url, 'safeshift copy (control)');
  const lanes = new Set<pg.Client>();
  let pauseRequested = false;
  let stopping = false;
  let watching = false;
  const progress: CopyProgress = {
    rows: 0, chunks: 0, lastKey: null, done: false, rowsRedone: 0, chunkRows: input.chunkRows, throttledMs: 0, attempt: ctx.info.attempt, paused: false,
  };
  const heartbeat = setInterval(() => ctx.heartbeat(progress), 2000);
  // A pause takes effect within a second, even in the middle of long chunks: every lane's COPY is cancelled,
  // its transaction rolls back, and those chunks are done again after resume.
  const watch = setInterval(() => {
    if (watching || pauseRequested) return;
    watching = true;
    isPaused(control, input.runId)
      .then(async (paused) => {
        if (!paused) return;
        pauseRequested = true;
        stopping = true;
        for (const dst of lanes) {
          const pid = (dst as unknown as { processID?: number }).processID;
          if (pid) await control.query('SELECT pg_cancel_backend($1)', [pid]);
        }
      })
      .catch(() => undefined)
      .finally(() => { watching = false; });
  }, 500);

  try {
    const before = resumePoint(await chunkRecords(control, input.runId, input.targetOid));
    Object.assign(progress, { rows: before.rows, chunks: before.chunks, lastKey: before.frontier });
    if (before.finished && before.inFlight.length === 0) return { ...progress, done: true };
    const inFlight = before.inFlight;
    let frontier = before.frontier;
    let nextSeq = before.nextSeq;
    let exhausted = before.finished;
    let nextStartAt = Date.now();
    ctx.heartbeat(progress);

    // Connections are counted again now, not only at preflight: lanes open only while the application keeps its share.
    let parallel = await lanesThatFit(control, input.parallel);
    while (parallel === 0) {
      progress.throttleReason = `no connections available for a copy lane (each needs 2; ${CONNECTION_HEADROOM} are left to the application); waiting`;
      progress.throttledMs += 1000;
      ctx.heartbeat(progress);
      if (ctx.cancellationSignal.aborted || Date.now() - started >= input.sliceMs || (await isPaused(control, input.runId))) {
        return { ...progress, paused: await isPaused(control, input.runId) };
      }
      await ctx.sleep(1000);
      parallel = await lanesThatFit(control, input.parallel);
    }
    if (parallel < input.parallel) {
      progress.throttleReason = `${parallel} of copy.parallel's ${input.parallel} lanes fit in the connections available (${CONNECTION_HEADROOM} are left to the application)`;
    }

    // One dispenser at a time: chunks are cut in key order, each starting where the previous one ended.
    let turn: Promise<unknown> = Promise.resolve();
    const dispense = (): Promise<Work | undefined> => {
      const next = turn.then(async (): Promise<Work | undefined> => {
        for (;;) {
          if (stopping) return undefined;
          if (ctx.cancellationSignal.aborted || Date.now() - started >= input.sliceMs) {
            stopping = true;
            return undefined;
          }
          if (pauseRequested || (await isPaused(control, input.runId))) {
            pauseRequested = true;
            stopping = true;
            return undefined;
          }
          const reason = await throttleReason(control, input.throttle);
          if (reason) {
            progress.throttleReason = reason;
            progress.throttledMs += 1000;
            ctx.heartbeat(progress);
            await ctx.sleep(1000);
            continue;
          }
          if (input.maxRowsPerSecond > 0) {
            // All lanes together: each chunk may start only once the rows before it fit the rate.
            // Whole milliseconds: the pacing needs no finer, and the figure reaches status and history.
            const wait = Math.ceil(nextStartAt - Date.now());
            if (wait > 0) {
              progress.throttledMs += wait;
              await ctx.sleep(wait);
            }
            nextStartAt = Math.max(Date.now(), nextStartAt) + (progress.chunkRows * 1000) / input.maxRowsPerSecond;
          }
          const lost = inFlight.shift();
          if (lost) return { ...lost, redo: true };
          if (exhausted) return undefined;
          const hi = await nextChunkBound(control, spec, frontier, progress.chunkRows);
          const work = { seq: nextSeq, lo: frontier, hi, redo: false };
          await recordHandedChunk(control, input.runId, input.targetOid, work);
          nextSeq += 1;
          frontier = hi;
          progress.lastKey = hi;
          exhausted = hi === null;
          return work;
        }
      });
      turn = next.catch(() => undefined);
      return next;
    };

    const lane = async (n: number): Promise<void> => {
      const src = await openSourceReader(url, `safeshift copy ${n} (read)`);
      // A write client that cannot connect must not leave the read client open. A chunk is one COPY statement,
      // as long as chunkTime makes it: no statement timeout on the lanes (BULK_LIMITS).
      const dst = await connect(url, `safeshift copy ${n} (write)`, BULK_LIMITS).catch(async (err: unknown) => {
        await src.client.end().catch(() => undefined);
        throw err;
      });
      lanes.add(dst);
      try {
        for (let work = await dispense(); work; work = await dispense()) {
          const { seq, lo, hi } = work;
          const t0 = Date.now();
          let rows: number;
          try {
            // A chunk that stops moving is ended and copied again, never waited on until the activity's limit (src/stall.ts).
            rows = await withStallGuard(control, () => [src.client, dst], stallLimitMs(input.sizing.targetMs), () =>
              copyChunkResolvingStale(src, dst, spec, lo, hi, (r) => recordCopiedChunk(dst, input.runId, input.targetOid, seq, r, Date.now() - t0)));
          } catch (err) {
            stopping = true;
            if (pauseRequested && pgErrorCode(err) === QUERY_CANCELED) return;
            throw (await dataRejected(err, spec, lo, hi, control)) ?? err;
          }
          progress.rows += rows;
          progress.chunks += 1;
          if (work.redo) progress.rowsRedone += rows;
          else progress.chunkRows = tuneChunkRows(progress.chunkRows, rows, Date.now() - t0, input.sizing);
          ctx.heartbeat(progress);
        }
      } finally {
        lanes.delete(dst);
        // After a failed COPY the read client can be wedged mid-stream: never reuse, always end both.
        await Promise.all([src.client.end().catch(() => undefined), dst.end().catch(() => undefined)]);
      }
    };

    // Lanes finish the chunk they hold when another fails: the first error is reported once all have stopped.
    const results = await Promise.allSettled(Array.from({ length: parallel }, (_, i) => lane(i + 1).catch((err) => {
      stopping = true;
      throw err;
    })));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');

    const after = resumePoint(await chunkRecords(control, input.runId, input.targetOid));
    return {
      ...progress,
      rows: after.rows,
      chunks: after.chunks,
      lastKey: after.frontier,
      done: after.finished && after.inFlight.length === 0,
      paused: pauseRequested,
    };
  } finally {
    clearInterval(heartbeat);
    clearInterval(watch);
    await control.end().catch(() => undefined);
  }
}
