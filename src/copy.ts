/** Streaming COPY of one key range: source `COPY (SELECT ...) TO STDOUT` piped into target `COPY ... FROM STDIN`. */
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { chunkUpperBoundSql, copyInSql, copyOutSql, deleteRangeSql, type CopySpec, type KeyValue } from './projection';

/** The key `rows` rows after `lo`, or null when the rest of the table fits in one chunk. */
export async function nextChunkBound(src: pg.Client, spec: CopySpec, lo: KeyValue, rows: number): Promise<KeyValue> {
  const { rows: found } = await src.query<{ key: string[] }>(chunkUpperBoundSql(spec, lo), [rows - 1]);
  return found[0]?.key ?? null;
}

/**
 * Copy the range (lo, hi] in one target transaction: delete whatever an earlier attempt left there, then stream
 * the rows in. Re-running a chunk therefore never duplicates a row. `src` and `dst` must be different clients.
 * After a failure the source client may be wedged mid-COPY: the caller must discard both clients.
 */
export async function copyChunk(src: pg.Client, dst: pg.Client, spec: CopySpec, lo: KeyValue, hi: KeyValue): Promise<number> {
  await dst.query('BEGIN');
  try {
    await dst.query(deleteRangeSql(spec, lo, hi));
    const out = src.query(copyTo(copyOutSql(spec, lo, hi)));
    const into = dst.query(copyFrom(copyInSql(spec)));
    await pipeline(out, into);
    await dst.query('COMMIT');
    return into.rowCount ?? 0;
  } catch (err) {
    await dst.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
