/**
 * The target's outbound foreign keys: read (from the source for the default target, from the plan's DDL
 * otherwise), kept off the target while it is filled, checked for orphans before the cutover gate, added to the
 * new table under the cutover lock as NOT VALID and validated right after the commit.
 *
 * Why not on the target from the start: it holds stale rows until replay catches up, and a foreign key there is
 * enforced on the parent's side too: the application deleting a child and then its parent (valid in the source)
 * would be refused because the target still held the child. Added at cutover, the key guards the table from the
 * moment it is live, and VALIDATE (SHARE UPDATE EXCLUSIVE) runs after the commit while writers go on.
 *
 * Every statement is built from catalog facts (names through the quoting helper), never from deparsed text, so a
 * self-reference can follow the new table whatever it is called at the moment.
 */
import type pg from 'pg';
import { relationName } from './catalog';
import { qualified, quoteIdent, type TableRef } from './sql';

export interface OutboundForeignKey {
  name: string;
  columns: string[];
  /** The referenced table's OID; null for a self-reference, which follows the new table. */
  referencedOid: number | null;
  referencedColumns: string[];
  /** pg_constraint codes: confupdtype, confdeltype ('a' no action, 'r' restrict, 'c' cascade, 'n' set null, 'd' set default). */
  onUpdate: string;
  onDelete: string;
  /** ON DELETE SET NULL / SET DEFAULT (columns), PostgreSQL 15 and later. */
  onDeleteColumns: string[];
  matchFull: boolean;
  deferrable: boolean;
  initiallyDeferred: boolean;
  /** As PostgreSQL prints it, for people. */
  definition: string;
  /**
   * Validated where it comes from. One left NOT VALID on purpose (old rows that break it) stays so on the new
   * table: no orphan check before the gate, no VALIDATE after cutover. Absent: validated.
   */
  validated?: boolean;
}

const ACTIONS: Record<string, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };

/** The foreign keys declared on `tableOid` (inherited partition clones left out), in name order. */
export async function outboundForeignKeys(client: pg.Client, tableOid: number): Promise<OutboundForeignKey[]> {
  const { rows } = await client.query<Omit<OutboundForeignKey, 'referencedOid'> & { referencedOid: number }>(
    `SELECT c.conname AS name,
            array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS columns,
            c.confrelid::int8::float8 AS "referencedOid",
            array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS "referencedColumns",
            c.confupdtype::text AS "onUpdate", c.confdeltype::text AS "onDelete",
            array(SELECT a.attname FROM unnest(coalesce((to_jsonb(c) ->> 'confdelsetcols')::int2[], '{}')) WITH ORDINALITY k(n, o)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS "onDeleteColumns",
            c.confmatchtype = 'f' AS "matchFull", c.condeferrable AS deferrable, c.condeferred AS "initiallyDeferred", c.convalidated AS validated,
            pg_get_constraintdef(c.oid) AS definition
       FROM pg_constraint c WHERE c.conrelid = $1 AND c.contype = 'f' AND c.conparentid = 0 ORDER BY c.conname`,
    [tableOid]);
  return rows.map((r) => ({ ...r, referencedOid: Number(r.referencedOid) === tableOid ? null : Number(r.referencedOid) }));
}

/** `ALTER TABLE table ADD CONSTRAINT ... NOT VALID`, the referenced table named as given. */
export function addForeignKeySql(fk: OutboundForeignKey, table: TableRef, referenced: TableRef): string {
  const cols = (names: string[]) => names.map(quoteIdent).join(', ');
  const action = (code: string) => ACTIONS[code] ?? 'NO ACTION';
  const onDelete = action(fk.onDelete) + (fk.onDeleteColumns.length ? ` (${cols(fk.onDeleteColumns)})` : '');
  return `ALTER TABLE ${qualified(table)} ADD CONSTRAINT ${quoteIdent(fk.name)} FOREIGN KEY (${cols(fk.columns)})` +
    ` REFERENCES ${qualified(referenced)} (${cols(fk.referencedColumns)})${fk.matchFull ? ' MATCH FULL' : ''}` +
    ` ON UPDATE ${action(fk.onUpdate)} ON DELETE ${onDelete}` +
    `${fk.deferrable ? ` DEFERRABLE INITIALLY ${fk.initiallyDeferred ? 'DEFERRED' : 'IMMEDIATE'}` : ''} NOT VALID`;
}

/** Where `fk` points now: its referenced table by OID, or the table itself (`tableOid`). */
async function referencedTable(client: pg.Client, fk: OutboundForeignKey, tableOid: number): Promise<TableRef> {
  const ref = await relationName(client, fk.referencedOid ?? tableOid);
  if (!ref) throw new Error(`foreign key ${fk.name}: the table it references (OID ${fk.referencedOid}) no longer exists`);
  return ref;
}

/**
 * Add the keys to table `tableOid` as NOT VALID, in the caller's transaction (the cutover's, or the preflight's
 * rehearsal). A key the table already has by that name (the plan's DDL kept it) is left alone. Returns the
 * statements run; the keys to VALIDATE after the commit are the same names on the same table.
 */
export async function addForeignKeys(client: pg.Client, fks: OutboundForeignKey[], tableOid: number): Promise<{ table: TableRef; name: string; statement: string }[]> {
  const table = await relationName(client, tableOid);
  if (!table) throw new Error(`table OID ${tableOid} no longer exists`);
  const { rows } = await client.query<{ name: string }>(`SELECT conname AS name FROM pg_constraint WHERE conrelid = $1 AND contype = 'f'`, [tableOid]);
  const present = new Set(rows.map((r) => r.name));
  const added: { table: TableRef; name: string; statement: string }[] = [];
  for (const fk of fks) {
    if (present.has(fk.name)) continue;
    const statement = addForeignKeySql(fk, table, await referencedTable(client, fk, tableOid));
    await client.query(statement);
    added.push({ table, name: fk.name, statement });
  }
  return added;
}

/** Drop every foreign key of the table (the target right after its DDL ran: they come back at cutover). */
export async function dropForeignKeys(client: pg.Client, fks: OutboundForeignKey[], at: TableRef): Promise<void> {
  for (const fk of fks) await client.query(`ALTER TABLE ${qualified(at)} DROP CONSTRAINT IF EXISTS ${quoteIdent(fk.name)}`);
}

/**
 * Rows of `table` whose key columns are all set and match no row of the referenced table (a self-reference: of
 * `table` itself), leaving out rows whose key has changes waiting in `inFlight` (they differ from the source by
 * design until replay). What VALIDATE would find; MATCH FULL rows with some columns null count too.
 */
export async function orphanCount(client: pg.Client, fk: OutboundForeignKey, table: TableRef, tableOid: number, key: string[], inFlight?: TableRef): Promise<number> {
  const referenced = await referencedTable(client, fk, tableOid);
  const match = fk.columns.map((c, i) => `p.${quoteIdent(fk.referencedColumns[i]!)} = t.${quoteIdent(c)}`).join(' AND ');
  const allSet = fk.columns.map((c) => `t.${quoteIdent(c)} IS NOT NULL`).join(' AND ');
  const someSet = fk.columns.map((c) => `t.${quoteIdent(c)} IS NOT NULL`).join(' OR ');
  const partial = fk.matchFull ? ` OR ((${someSet}) AND NOT (${allSet}))` : '';
  const settled = inFlight
    ? ` AND NOT EXISTS (SELECT 1 FROM ${qualified(inFlight)} c WHERE c.key = ARRAY[${key.map((k) => `t.${quoteIdent(k)}::text`).join(', ')}])`
    : '';
  const { rows } = await client.query<{ n: string }>(
    `SELECT count(*)::text AS n FROM ${qualified(table)} t
      WHERE ((${allSet} AND NOT EXISTS (SELECT 1 FROM ${qualified(referenced)} p WHERE ${match}))${partial})${settled}`);
  return Number(rows[0]!.n);
}

/** For the gate: what the new table will get. */
export function describeForeignKeys(fks: OutboundForeignKey[]): string[] {
  return fks.map((fk) => `foreign key ${fk.name} (${fk.definition}${fk.referencedOid === null ? ', the table itself' : ''}) added at cutover as NOT VALID, validated right after the commit`);
}
