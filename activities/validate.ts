/**
 * Phase 7, validate: count and checksum of the mapped source projection against the target, read in one
 * snapshot: the whole table first (one scan per side); only when that differs, key range by key range (the
 * copy's chunk size) to find where. The application keeps writing, so keys with captured changes not yet
 * replayed at that snapshot are left out on both sides (every other key must be equal: its changes were all
 * replayed).
 *
 * Ranges that differ are repaired: copied again (delete the range, COPY it in, one transaction, as the copy
 * does) and checked again in a fresh snapshot, at most `REPAIR_PASSES` times. Ranges that still differ fail the
 * migration before anyone is asked to approve, each named. No compensation: a repair only rewrites target rows
 * from the source, which dropping the target (prepare) undoes like the copy.
 */
import type pg from 'pg';
import { changeTable } from '../src/capture';
import { checksum, sameChecksum, type Checksum } from '../src/checksum';
import { copyChunk, nextChunkBound } from '../src/copy';
import { connect, databaseUrl, inTransaction } from '../src/db';
import type { KeyRangeReport, ValidationResult } from '../src/messages';
import { keyRangeText, type CopySpec, type KeyValue } from '../src/projection';
import { displayName, qualified } from '../src/sql';
import { heartbeating, withDatabase } from './support';

/** Copy-and-check-again rounds for ranges that differ. A range still differing after them is a real problem. */
export const REPAIR_PASSES = 2;
/** Ranges listed in the message (all of them are in `stillDifferent` / `repaired`). */
const LISTED = 10;

export interface ValidateInput {
  db: string;
  spec: CopySpec;
  sourceOid: number;
  /** Rows per checked range: the copy's chunk size. */
  chunkRows: number;
}

interface Range {
  lo: KeyValue;
  hi: KeyValue;
}

interface Pass {
  source: Checksum;
  target: Checksum;
  differing: Range[];
  inFlightKeys: number;
  ranges: number;
}

const SNAPSHOT = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';

function add(a: Checksum, b: Checksum): Checksum {
  return { rows: a.rows + b.rows, checksum: (BigInt(a.checksum) + BigInt(b.checksum)).toString() };
}

/**
 * Check `ranges` (or, when null, every range of `chunkRows` source rows, cut in the same snapshot) on both sides.
 * The per-range sums add up to the whole-table figures, which are reported too.
 */
async function checkRanges(client: pg.Client, input: ValidateInput, ranges: Range[] | null): Promise<Pass> {
  const inFlight = changeTable(input.sourceOid);
  return inTransaction(client, async () => {
    const { rows } = await client.query<{ n: string }>(`SELECT count(DISTINCT key)::text AS n FROM ${qualified(inFlight)}`);
    const pass: Pass = { source: { rows: 0, checksum: '0' }, target: { rows: 0, checksum: '0' }, differing: [], inFlightKeys: Number(rows[0]!.n), ranges: 0 };
    const check = async (r: Range) => {
      const source = await checksum(client, input.spec, 'source', r.lo, r.hi, inFlight);
      const target = await checksum(client, input.spec, 'target', r.lo, r.hi, inFlight);
      pass.source = add(pass.source, source);
      pass.target = add(pass.target, target);
      pass.ranges += 1;
      if (!sameChecksum(source, target)) pass.differing.push(r);
    };
    if (ranges) {
      for (const r of ranges) await check(r);
    } else {
      // The last range is open upwards, so target rows beyond the source's last key are counted too.
      for (let lo: KeyValue = null, first = true; first || lo !== null; first = false) {
        const hi = await nextChunkBound(client, input.spec, lo, input.chunkRows);
        await check({ lo, hi });
        lo = hi;
      }
    }
    return pass;
  }, SNAPSHOT);
}

/** Copy each range again, exactly as the copy phase does (delete the range, COPY it in, one transaction). */
async function recopy(url: string, spec: CopySpec, ranges: Range[]): Promise<void> {
  const src = await connect(url, 'safeshift validate (repair read)');
  const dst = await connect(url, 'safeshift validate (repair write)');
  try {
    for (const r of ranges) await copyChunk(src, dst, spec, r.lo, r.hi);
  } finally {
    await Promise.all([src.end().catch(() => undefined), dst.end().catch(() => undefined)]);
  }
}

export async function validateCopy(input: ValidateInput): Promise<ValidationResult> {
  const { spec } = input;
  return withDatabase(input, (client) =>
    heartbeating(async () => {
      // Sums of per-range checksums equal the whole-table one, so a clean table needs no ranges (one scan a side).
      const whole = await checkRanges(client, input, [{ lo: null, hi: null }]);
      const first = whole.differing.length ? await checkRanges(client, input, null) : whole;
      const repaired: KeyRangeReport[] = [];
      let differing = first.differing;
      for (let pass = 1; pass <= REPAIR_PASSES && differing.length > 0; pass++) {
        await recopy(databaseUrl(input.db), spec, differing);
        const again = await checkRanges(client, input, differing);
        const still = new Set(again.differing);
        repaired.push(...differing.filter((r) => !still.has(r)).map((r) => ({ lo: r.lo, hi: r.hi, pass })));
        differing = again.differing;
      }
      const stillDifferent: KeyRangeReport[] = differing.map((r) => ({ lo: r.lo, hi: r.hi }));
      const ok = stillDifferent.length === 0;
      const excluded = first.inFlightKeys ? ` (${first.inFlightKeys} keys with changes in flight left out; replayed before cutover)` : '';
      const list = (rs: KeyRangeReport[]) => rs.slice(0, LISTED).map((r) => keyRangeText(r.lo, r.hi)).join(', ') + (rs.length > LISTED ? `, and ${rs.length - LISTED} more` : '');
      const repairedText = repaired.length ? `; ${repaired.length} differing key range(s) copied again and now equal: ${list(repaired)}` : '';
      const message = ok
        ? `${first.target.rows} rows${first.ranges > 1 ? ` in ${first.ranges} key ranges` : ''}; checksum of the mapped projection equal on ${displayName(spec.source)} and ${displayName(spec.target)}${repairedText}${excluded}`
        : `${stillDifferent.length} of ${first.ranges} key ranges still differ after ${REPAIR_PASSES} repair passes: ${list(stillDifferent)}; ` +
          `${displayName(spec.source)} maps to ${first.source.rows} rows (checksum ${first.source.checksum}), ${displayName(spec.target)} held ${first.target.rows} (checksum ${first.target.checksum}) before repair${excluded}`;
      return { ok, source: first.source, target: first.target, inFlightKeys: first.inFlightKeys, rangesChecked: first.ranges, repaired, stillDifferent, message };
    }),
  );
}
