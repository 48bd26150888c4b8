/**
 * Inbound foreign keys: other tables' keys that reference the table (by OID, so a rename leaves them on the old
 * table), and the table's references to itself. Not to be confused with src/foreign-keys.ts, the new table's own
 * OUTBOUND foreign keys (built from catalog facts, added at cutover).
 *
 * Move: each inbound key is dropped and re-added on its table from the captured definition (which names the live
 * name), NOT VALID when it was valid, and validated after the commit (`validateForeignKeys`). A self-reference is
 * part of the table: it does not move, the new table must define its own.
 */
import type pg from 'pg';
import { relationName } from '../catalog';
import { errorText } from '../redact';
import { displayName, qualified, quoteIdent, type TableRef } from '../sql';
import { withoutSemicolon, type CatalogQuery, type MoveSource, type MoveTarget, type Mover } from './mover';

export interface InboundForeignKey {
  name: string;
  tableOid: number;
  table: TableRef;
  columns: string[];
  referencedColumns: string[];
  definition: string;
  validated: boolean;
  enforced: boolean;
}

export interface SelfForeignKey {
  name: string;
  definition: string;
  columns: string[];
}

export interface CapturedForeignKeys {
  /** Foreign keys of other tables (or of the target) referencing the table. `definition` names the live name. */
  foreignKeys: InboundForeignKey[];
  /** Foreign keys of the table to itself: part of the table, the target DDL must define its own. */
  selfForeignKeys: SelfForeignKey[];
}

export interface ForeignKeyRef {
  table: TableRef;
  name: string;
}

export async function captureForeignKeys(q: CatalogQuery): Promise<CapturedForeignKeys> {
  type FkRow = Omit<InboundForeignKey, 'table'> & { schema: string; relname: string; self: boolean };
  const fks = await q<FkRow>(
    `SELECT c.conname AS name, c.conrelid::int8::float8 AS "tableOid", n.nspname AS schema, t.relname AS relname,
            c.conrelid = c.confrelid AS self,
            ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, ord)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
            ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(num, ord)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.ord) AS "referencedColumns",
            pg_get_constraintdef(c.oid) AS definition, c.convalidated AS validated,
            coalesce((to_jsonb(c) ->> 'conenforced')::boolean, true) AS enforced
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE c.contype = 'f' AND c.confrelid = $1 AND c.conparentid = 0
      ORDER BY n.nspname, t.relname, c.conname`);
  return {
    foreignKeys: fks.filter((f) => !f.self).map((f) => ({
      name: f.name, tableOid: Number(f.tableOid), table: { schema: f.schema, name: f.relname },
      columns: f.columns, referencedColumns: f.referencedColumns, definition: f.definition,
      validated: f.validated, enforced: f.enforced,
    })),
    selfForeignKeys: fks.filter((f) => f.self).map((f) => ({ name: f.name, definition: f.definition, columns: f.columns })),
  };
}

async function referencedBy(m: Mover, tableOid: number, name: string): Promise<number | undefined> {
  const [row] = await m.rows<{ confrelid: number }>(
    `SELECT confrelid::int8::float8 AS confrelid FROM pg_constraint WHERE conrelid = $1 AND conname = $2 AND contype = 'f'`, [tableOid, name]);
  return row ? Number(row.confrelid) : undefined;
}

/**
 * Inbound foreign keys: dropped and re-added NOT VALID in one ALTER TABLE (one lock on the referencing table).
 * Returns the keys left NOT VALID, to validate after COMMIT.
 */
export async function moveForeignKeys(m: Mover, fks: InboundForeignKey[], from: MoveSource, to: MoveTarget): Promise<ForeignKeyRef[]> {
  const notValidForeignKeys: ForeignKeyRef[] = [];
  for (const fk of fks) {
    const table = await relationName(m.client, fk.tableOid);
    const label = `foreign key ${fk.name} on ${table ? displayName(table) : displayName(fk.table)}`;
    if (!table) { m.problems.push(`${label}: the referencing table is gone`); continue; }
    if (!fk.definition.startsWith('FOREIGN KEY (')) { m.problems.push(`${label}: unexpected definition ${fk.definition}`); continue; }
    const now = await referencedBy(m, fk.tableOid, fk.name);
    if (now === to.oid) { m.skipped.push(`${label}: already references ${to.shown}`); continue; }
    if (now !== from.oid) { m.problems.push(`${label}: no longer references the old table; left as it is`); continue; }
    // An FK that was valid comes back NOT VALID (no scan under the lock) and is validated after commit; one that
    // was NOT VALID or NOT ENFORCED already says so in its definition and stays so.
    const notValid = fk.validated && fk.enforced;
    const ok = await m.object(label, async (run) => {
      await run(`ALTER TABLE ${qualified(table)} DROP CONSTRAINT ${quoteIdent(fk.name)}, ADD CONSTRAINT ${quoteIdent(fk.name)} ${withoutSemicolon(fk.definition)}${notValid ? ' NOT VALID' : ''}`);
      if (await referencedBy(m, fk.tableOid, fk.name) !== to.oid) throw new Error(`re-added constraint does not reference ${to.shown}`);
    });
    if (ok && notValid) notValidForeignKeys.push({ table, name: fk.name });
  }
  return notValidForeignKeys;
}

/** Self-references do not move: skipped when the new table has its own, otherwise a problem. */
export async function checkSelfForeignKeys(m: Mover, fks: SelfForeignKey[], live: TableRef, to: MoveTarget): Promise<void> {
  for (const fk of fks) {
    // The new table's own self-reference: by name, or (the plan's DDL names it after the new table) by its columns.
    const [own] = await m.rows<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_constraint c WHERE c.conrelid = $1 AND c.confrelid = $1 AND c.contype = 'f'
          AND (c.conname = $2 OR array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] = $3::text[])`,
      [to.oid, fk.name, fk.columns]);
    if (own!.n > 0) m.skipped.push(`self-referencing foreign key ${fk.name}: the new table defines its own`);
    else m.problems.push(`self-referencing foreign key ${fk.name} of ${displayName(live)} (${fk.definition}): part of the old table, not moved; the target DDL must define its own`);
  }
}

/** After COMMIT: VALIDATE each NOT VALID FK (SHARE UPDATE EXCLUSIVE on the referencing table only). */
export async function validateForeignKeys(client: pg.Client, fks: ForeignKeyRef[]): Promise<void> {
  const failures: string[] = [];
  for (const fk of fks) {
    try {
      await client.query(`ALTER TABLE ${qualified(fk.table)} VALIDATE CONSTRAINT ${quoteIdent(fk.name)}`);
    } catch (err) {
      failures.push(`foreign key ${fk.name} on ${displayName(fk.table)}: ${errorText(err)}`);
    }
  }
  if (failures.length) throw new Error(`could not validate: ${failures.join('; ')}`);
}

export function describeForeignKeys(b: CapturedForeignKeys, live: TableRef): string[] {
  const shown = displayName(live);
  const lines = b.foreignKeys.map((fk) =>
    `foreign key ${fk.name} on ${displayName(fk.table)} (${fk.columns.join(', ')}) -> ${shown} (${fk.referencedColumns.join(', ')}): ` +
    (fk.validated && fk.enforced ? 're-added NOT VALID on the new table, validated after commit' : 're-added on the new table as it is (not validated)'));
  for (const fk of b.selfForeignKeys) lines.push(`self-referencing foreign key ${fk.name}: not moved, the new table must define its own`);
  return lines;
}
