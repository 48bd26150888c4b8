/**
 * Phase 7, validate: count and checksum of the mapped source projection against the target, read in one
 * snapshot by the copy's `parallel` connections (one exports it, the others import it): the whole table first
 * (one scan per side, both sides at once when there are two lanes); only when that differs, key range by key
 * range (the copy's chunk size) to find where, ranges spread over the connections. The application keeps writing, so keys with captured changes not yet
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
import { copyChunkResolvingStale, nextChunkBound, openSourceReader } from '../src/copy';
import { availableConnections, BULK_LIMITS, connect, databaseUrl, withClient } from '../src/db';
import { orphanCount, type OutboundForeignKey } from '../src/foreign-keys';
import type { KeyRangeReport, ValidationResult } from '../src/messages';
import { keyRangeText, type CopySpec, type KeyValue } from '../src/projection';
import { displayName, qualified, quoteLiteral } from '../src/sql';
import { heartbeating } from './support';

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
  /** Connections checking at once (the copy's lanes), all reading one exported snapshot. */
  parallel: number;
  /** Foreign keys the new table gets at cutover: the target must have no orphan for any of them. */
  foreignKeys?: OutboundForeignKey[];
  targetOid?: number;
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
 * `lanes` connections in one snapshot: the first exports it, the others import it, so every checksum, whichever
 * connection computes it, sees the same database.
 */
async function inOneSnapshot<T>(url: string, lanes: number, fn: (clients: pg.Client[]) => Promise<T>): Promise<T> {
  const clients: pg.Client[] = [];
  try {
    clients.push(await connect(url, 'safeshift validate 1', BULK_LIMITS));
    // More connections only while they fit (src/db.ts availableConnections): fewer lanes are slower, never wrong.
    const fit = Math.min(Math.max(1, lanes), 1 + Math.max(0, await availableConnections(clients[0]!)));
    for (let i = 1; i < fit; i++) clients.push(await connect(url, `safeshift validate ${i + 1}`, BULK_LIMITS));
    const [lead, ...others] = clients;
    await lead!.query(SNAPSHOT);
    if (others.length) {
      const { rows } = await lead!.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
      for (const c of others) {
        await c.query(SNAPSHOT);
        await c.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(rows[0]!.id)}`);
      }
    }
    return await fn(clients);
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Run every task, each client taking the next one as soon as it is free. */
async function onClients<T>(clients: pg.Client[], tasks: ((c: pg.Client) => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(clients.map(async (c) => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!(c);
    }
  }));
  return results;
}

/**
 * Check `ranges` (or, when null, every range of `chunkRows` source rows, cut in the same snapshot) on both sides,
 * each side of each range a task of its own. The per-range sums add up to the whole-table figures, reported too.
 */
async function checkRanges(url: string, input: ValidateInput, ranges: Range[] | null): Promise<Pass> {
  const inFlight = changeTable(input.sourceOid);
  // Two tasks per range (one per side): known ranges need no more connections than that.
  return inOneSnapshot(url, ranges ? Math.min(input.parallel, 2 * ranges.length) : input.parallel, async (clients) => {
    const lead = clients[0]!;
    const { rows } = await lead.query<{ n: string }>(`SELECT count(DISTINCT key)::text AS n FROM ${qualified(inFlight)}`);
    const todo: Range[] = ranges ?? [];
    if (!ranges) {
      // The last range is open upwards, so target rows beyond the source's last key are counted too.
      for (let lo: KeyValue = null, first = true; first || lo !== null; first = false) {
        const hi = await nextChunkBound(lead, input.spec, lo, input.chunkRows);
        todo.push({ lo, hi });
        lo = hi;
      }
    }
    const sums = await onClients(clients, todo.flatMap((r) => (['source', 'target'] as const).map((side) =>
      (c: pg.Client) => checksum(c, input.spec, side, r.lo, r.hi, inFlight))));
    const pass: Pass = { source: { rows: 0, checksum: '0' }, target: { rows: 0, checksum: '0' }, differing: [], inFlightKeys: Number(rows[0]!.n), ranges: todo.length };
    todo.forEach((r, i) => {
      const [source, target] = [sums[2 * i]!, sums[2 * i + 1]!];
      pass.source = add(pass.source, source);
      pass.target = add(pass.target, target);
      if (!sameChecksum(source, target)) pass.differing.push(r);
    });
    return pass;
  });
}

/** Copy each range again, exactly as the copy phase does (delete the range, COPY it in, one transaction). */
async function recopy(url: string, spec: CopySpec, ranges: Range[]): Promise<void> {
  const src = await openSourceReader(url, 'safeshift validate (repair read)');
  const dst = await connect(url, 'safeshift validate (repair write)', BULK_LIMITS);
  try {
    for (const r of ranges) await copyChunkResolvingStale(src, dst, spec, r.lo, r.hi);
  } finally {
    await Promise.all([src.client.end().catch(() => undefined), dst.end().catch(() => undefined)]);
  }
}

export async function validateCopy(input: ValidateInput): Promise<ValidationResult> {
  const { spec } = input;
  const url = databaseUrl(input.db);
  return heartbeating(async () => {
    // Sums of per-range checksums equal the whole-table one, so a clean table needs no ranges (one scan a side).
    const whole = await checkRanges(url, input, [{ lo: null, hi: null }]);
    const first = whole.differing.length ? await checkRanges(url, input, null) : whole;
    const repaired: KeyRangeReport[] = [];
    let differing = first.differing;
    for (let pass = 1; pass <= REPAIR_PASSES && differing.length > 0; pass++) {
      await recopy(url, spec, differing);
      const again = await checkRanges(url, input, differing);
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
    const result = { ok, source: first.source, target: first.target, inFlightKeys: first.inFlightKeys, rangesChecked: first.ranges, repaired, stillDifferent, message };
    return ok && input.foreignKeys?.some((fk) => fk.validated !== false) ? withForeignKeys(url, input, result) : result;
  });
}

/**
 * The foreign keys the new table gets at cutover, checked now so the approver sees the result: target rows whose
 * keys match no referenced row (keys with changes in flight left out, as above). Any orphan fails the validation,
 * named: VALIDATE at cutover would refuse the same rows.
 */
async function withForeignKeys(url: string, input: ValidateInput, result: ValidationResult): Promise<ValidationResult> {
  const fks = input.foreignKeys!.filter((fk) => fk.validated !== false);
  const counted = await withClient(url, async (client) => {
    const out: { name: string; orphans: number }[] = [];
    for (const fk of fks) {
      out.push({ name: fk.name, orphans: await orphanCount(client, fk, input.spec.target, input.targetOid!, input.spec.key.map((k) => k.name), changeTable(input.sourceOid)) });
    }
    return out;
  }, 'safeshift validate (foreign keys)', BULK_LIMITS);
  const broken = counted.filter((c) => c.orphans > 0);
  const message = broken.length
    ? `foreign keys the new table gets at cutover would refuse target rows: ${broken.map((b) => `${b.name}: ${b.orphans} rows of ${displayName(input.spec.target)} reference no existing row`).join('; ')}`
    : `${result.message}; ${fks.length} foreign key${fks.length > 1 ? 's' : ''}: no orphans`;
  return { ...result, ok: broken.length === 0, foreignKeys: counted, message };
}
