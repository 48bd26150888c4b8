/**
 * Streaming COPY of key ranges (source `COPY (SELECT ...) TO STDOUT` piped into target `COPY ... FROM STDIN`),
 * the chunk bookkeeping that makes a crashed copy resume exactly, and the chunk-size tuner.
 */
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { BULK_LIMITS, connect, inTransaction, pgErrorCode } from './db';
import { chunkUpperBoundSql, copyInSql, copyOutSql, deleteRangeSql, type CopySpec, type KeyValue } from './projection';
import { REPLAY_BEGIN, replayRange } from './replay';

/** The key `rows` rows after `lo`, or null when the rest of the table fits in one chunk. */
export async function nextChunkBound(src: pg.Client, spec: CopySpec, lo: KeyValue, rows: number): Promise<KeyValue> {
  const { rows: found } = await src.query<{ key: string[] }>(chunkUpperBoundSql(spec, lo), [rows - 1]);
  return found[0]?.key ?? null;
}

/**
 * Copy the range (lo, hi] in one target transaction: delete whatever an earlier attempt left there, then stream
 * the rows in. Re-running a chunk therefore never duplicates a row. `beforeCommit` runs inside that transaction
 * (the copy records the chunk there, so the record and the rows commit together or not at all). `src` and `dst`
 * must be different clients. After a failure the source client may be wedged mid-COPY: discard both.
 */
export async function copyChunk(
  src: pg.Client, dst: pg.Client, spec: CopySpec, lo: KeyValue, hi: KeyValue,
  beforeCommit?: (rows: number) => Promise<void>,
): Promise<number> {
  await dst.query('BEGIN');
  try {
    await dst.query(deleteRangeSql(spec, lo, hi));
    const out = src.query(copyTo(copyOutSql(spec, lo, hi)));
    const into = dst.query(copyFrom(copyInSql(spec)));
    await pipeline(out, into);
    const rows = into.rowCount ?? 0;
    await beforeCommit?.(rows);
    await dst.query('COMMIT');
    return rows;
  } catch (err) {
    await dst.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** A lane's read connection. A COPY that failed mid-stream may leave it wedged: it is replaced, never reused. */
export interface SourceReader {
  client: pg.Client;
  reopen(): Promise<void>;
}

export async function openSourceReader(url: string, applicationName: string): Promise<SourceReader> {
  const reader: SourceReader = {
    // A chunk's COPY runs as long as the chunk is big: no statement timeout (src/db.ts, BULK_LIMITS).
    client: await connect(url, applicationName, BULK_LIMITS),
    async reopen() {
      await reader.client.end().catch(() => undefined);
      reader.client = await connect(url, applicationName, BULK_LIMITS);
    },
  };
  return reader;
}

/**
 * `copyChunk`, and when a unique index of the target refuses a row because a stale copy of another row still holds
 * the value (a writer moved it, or changed a key, after that row was copied), the chunk is brought in through
 * replay instead: in one target transaction with one snapshot (REPLAY_BEGIN), the range is deleted, its rows read
 * from the source, and the stale rows in their way brought up to date with them (`replayRange`). One snapshot is
 * what makes it converge: copying the chunk again after a separate fix-up raced the writer, which kept moving
 * values in between until the rounds ran out, attempt after attempt (CI: `unique-under-writes`). A real violation
 * (the source's rows themselves collide under the target's index) is raised as it came.
 */
export async function copyChunkResolvingStale(
  reader: SourceReader, dst: pg.Client, spec: CopySpec, lo: KeyValue, hi: KeyValue,
  beforeCommit?: (rows: number) => Promise<void>,
): Promise<number> {
  try {
    return await copyChunk(reader.client, dst, spec, lo, hi, beforeCommit);
  } catch (err) {
    if (pgErrorCode(err) !== '23505') throw err;
    await reader.reopen();
    return inTransaction(dst, async () => {
      await dst.query(deleteRangeSql(spec, lo, hi));
      const rows = await replayRange(dst, spec, lo, hi);
      await beforeCommit?.(rows);
      return rows;
    }, REPLAY_BEGIN);
  }
}

/**
 * A chunk as recorded in `safeshift.copy_chunks`: written when the chunk is handed to a lane (rows null), filled
 * in by the chunk's own target transaction. `seq` is the dispensing order, which is key order.
 */
export interface ChunkRecord {
  seq: number;
  lo: KeyValue;
  hi: KeyValue;
  /** null: handed out, never committed (in flight when the copy stopped). */
  rows: number | null;
}

export interface ResumePoint {
  /** Chunks handed out before the copy stopped that never committed: copied again first, same range, same seq. */
  inFlight: { seq: number; lo: KeyValue; hi: KeyValue }[];
  /** Hand out new chunks after this key. */
  frontier: KeyValue;
  nextSeq: number;
  /** The chunk that ends at the table's end was handed out: no new chunks, only `inFlight` remain. */
  finished: boolean;
  /** Committed so far. */
  rows: number;
  chunks: number;
}

/**
 * Where a copy stands, from its chunk records alone (never from a heartbeat, which may be seconds old): every
 * chunk is recorded before a lane starts it and marked in the transaction that commits its rows, so the chunks
 * that were in flight when a worker died are exactly the unmarked ones.
 */
export function resumePoint(records: ChunkRecord[]): ResumePoint {
  const sorted = [...records].sort((a, b) => a.seq - b.seq);
  const last = sorted[sorted.length - 1];
  const committed = sorted.filter((r) => r.rows !== null);
  return {
    inFlight: sorted.filter((r) => r.rows === null).map(({ seq, lo, hi }) => ({ seq, lo, hi })),
    frontier: last ? last.hi : null,
    nextSeq: last ? last.seq + 1 : 1,
    finished: last !== undefined && last.hi === null,
    rows: committed.reduce((n, r) => n + r.rows!, 0),
    chunks: committed.length,
  };
}

export interface ChunkSizing {
  /** Aim for chunks taking this long (0: keep the plan's chunkRows). */
  targetMs: number;
  min: number;
  max: number;
}

/**
 * The next chunk size, from how long the last one took: toward `targetMs`, at most doubling or halving per chunk
 * (one slow or fast chunk does not swing it), within [min, max].
 */
export function tuneChunkRows(current: number, copied: number, ms: number, sizing: ChunkSizing): number {
  if (sizing.targetMs <= 0 || copied <= 0 || ms <= 0) return current;
  const ideal = (copied / ms) * sizing.targetMs;
  const next = Math.min(current * 2, Math.max(current / 2, ideal));
  return Math.round(Math.min(sizing.max, Math.max(sizing.min, next)));
}
