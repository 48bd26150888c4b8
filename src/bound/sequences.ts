/**
 * Sequences owned by the table's columns (serial and identity). Serial sequences the new table's defaults share
 * change owner (transactional); in a real cutover every sequence of the new table is then moved past its
 * column's values and past the old table's own sequence. setval is not transactional, so a dry run (preflight)
 * advances nothing.
 */
import { displayName, qualified, quoteLiteral, type TableRef } from '../sql';
import { advanceOwnedSequences, moveSharedSequences } from '../swap';
import type { CatalogQuery, MoveSource, MoveTarget, Mover } from './mover';

export interface BoundSequence {
  sequence: TableRef;
  column: string;
  identity: boolean;
}

export interface CapturedSequences {
  /** Sequences owned by the table's columns. */
  sequences: BoundSequence[];
}

export async function captureSequences(q: CatalogQuery): Promise<CapturedSequences> {
  const sequences = await q<{ schema: string; name: string; column: string; identity: boolean }>(
    `SELECT sn.nspname AS schema, s.relname AS name, a.attname AS column, d.deptype = 'i' AS identity
       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_namespace sn ON sn.oid = s.relnamespace
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
      ORDER BY a.attnum`);
  return { sequences: sequences.map((s) => ({ sequence: { schema: s.schema, name: s.name }, column: s.column, identity: s.identity })) };
}

/** Works from the catalog as it is now (both tables' sequences and defaults), not from the capture. */
export async function moveSequences(m: Mover, from: MoveSource, to: MoveTarget): Promise<void> {
  await m.object(`sequences of ${to.shown}`, async (run, note) => {
    const moved = await moveSharedSequences(m.client, from.oid, to.oid, to.ref);
    for (const seq of moved) note(`ALTER SEQUENCE ${seq} OWNED BY ${to.sql}.<the column whose default uses it>`);
    if (m.dryRun) return;
    await advanceOwnedSequences(m.client, to.ref, to.oid);
    note(`SELECT setval(<each sequence owned by ${to.sql}>, max(<its column>)) -- where that is ahead`);
    const pairs = await m.rows<{ column: string; newSeq: string; oldSeq: string }>(
      `SELECT a.attname AS column, pg_get_serial_sequence($2, a.attname) AS "newSeq", pg_get_serial_sequence($3, a.attname) AS "oldSeq"
         FROM pg_attribute a
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
          AND pg_get_serial_sequence($2, a.attname) IS NOT NULL AND pg_get_serial_sequence($3, a.attname) IS NOT NULL
          AND pg_get_serial_sequence($2, a.attname) <> pg_get_serial_sequence($3, a.attname)`,
      [to.oid, to.sql, qualified(from.ref)]);
    for (const p of pairs) {
      // Never hand out a value the old table's own sequence already gave (rows may have been deleted since).
      await run(`SELECT setval(${quoteLiteral(p.newSeq)}, o) FROM (SELECT pg_sequence_last_value(${quoteLiteral(p.oldSeq)}::regclass) AS o) x
                    WHERE o IS NOT NULL AND o > coalesce(pg_sequence_last_value(${quoteLiteral(p.newSeq)}::regclass), o - 1)`);
    }
  });
}

export function describeSequences(sequences: BoundSequence[]): string[] {
  return sequences.map((s) => `${s.identity ? 'identity' : 'owned'} sequence ${displayName(s.sequence)} (${s.column}): ` +
    (s.identity ? 'the new table\'s own sequence is moved past it' : 'handed to the new table if its default uses it, and advanced'));
}
