/**
 * Names an application may know, carried from the table it used to have to the one it has now: index names (and so
 * the unique, primary-key and exclusion constraints they back: `ON CONFLICT ON CONSTRAINT items_pkey`), CHECK and
 * foreign-key constraint names (error handlers match them), identity / serial sequence names. A table the plan
 * created is named after itself (`items_v2_pkey`); after cutover the live table must answer to the old names.
 *
 * Pairs are matched by what the object is, never by name: an index by uniqueness and its definition after `USING`
 * (so `btree (sku)` pairs with `btree (sku)` whatever the table is called), a constraint by its kind and
 * definition, a sequence by the column that owns it. Index and sequence names are unique per schema, so the table
 * giving its names up takes `suffix` first; constraint names are unique per table only.
 */
import type pg from 'pg';
import { nameWithSuffix, qualified, quoteIdent } from './sql';

/** What took which name, for the audit log and for callers that hold the old name. */
export interface Renamed {
  kind: 'index' | 'sequence' | 'constraint';
  from: string;
  to: string;
}

interface Named {
  table: number;
  schema: string;
  name: string;
  shape: string;
}

/**
 * `toOid`'s objects take the names of their counterparts on `fromOid`; those get `suffix` (index, sequence) or keep
 * theirs (constraints, unique per table). In the caller's transaction. Returns what was renamed.
 */
export async function adoptNames(client: pg.Client, fromOid: number, toOid: number, suffix: string): Promise<Renamed[]> {
  const renamed: Renamed[] = [];
  const relations = [['INDEX', await indexes(client, fromOid, toOid)], ['SEQUENCE', await ownedSequences(client, fromOid, toOid)]] as const;
  for (const [kind, objects] of relations) {
    for (const [old, mine] of pairs(objects, fromOid, toOid)) {
      await client.query(`ALTER ${kind} ${qualified(old)} RENAME TO ${quoteIdent(nameWithSuffix(old.name, suffix))}`);
      await client.query(`ALTER ${kind} ${qualified(mine)} RENAME TO ${quoteIdent(old.name)}`);
      renamed.push({ kind: kind === 'INDEX' ? 'index' : 'sequence', from: mine.name, to: old.name });
    }
  }
  const tableConstraints = await constraints(client, fromOid, toOid);
  const taken = new Set(tableConstraints.filter((c) => Number(c.table) === toOid).map((c) => c.name));
  for (const [old, mine] of pairs(tableConstraints, fromOid, toOid)) {
    if (taken.has(old.name)) continue; // the table has another constraint of that name: leave both as they are
    await client.query(`ALTER TABLE ${qualified({ schema: mine.schema, name: mine.relname })} RENAME CONSTRAINT ${quoteIdent(mine.name)} TO ${quoteIdent(old.name)}`);
    taken.add(old.name);
    renamed.push({ kind: 'constraint', from: mine.name, to: old.name });
  }
  return renamed;
}

/** Each object of `fromOid` with the first unclaimed object of `toOid` of the same shape, where the names differ. */
function pairs<T extends Named>(objects: T[], fromOid: number, toOid: number): [T, T][] {
  const candidates = objects.filter((o) => Number(o.table) === toOid);
  const out: [T, T][] = [];
  for (const old of objects.filter((o) => Number(o.table) === fromOid)) {
    const i = candidates.findIndex((c) => c.shape === old.shape);
    if (i < 0) continue;
    const [mine] = candidates.splice(i, 1);
    if (mine!.name !== old.name) out.push([old, mine!]);
  }
  return out;
}

async function indexes(client: pg.Client, a: number, b: number): Promise<Named[]> {
  const { rows } = await client.query<Named>(
    `SELECT i.indrelid::int8::float8 AS "table", n.nspname AS schema, c.relname AS name,
            i.indisunique::text || i.indisprimary::text || substr(pg_get_indexdef(i.indexrelid), strpos(pg_get_indexdef(i.indexrelid), ' USING ')) AS shape
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE i.indrelid IN ($1, $2) ORDER BY c.relname`, [a, b]);
  return rows;
}

async function ownedSequences(client: pg.Client, a: number, b: number): Promise<Named[]> {
  const { rows } = await client.query<Named>(
    `SELECT d.refobjid::int8::float8 AS "table", n.nspname AS schema, s.relname AS name, a.attname AS shape
       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid IN ($1, $2) AND d.deptype IN ('a', 'i')
      ORDER BY s.relname`, [a, b]);
  return rows;
}

/**
 * CHECK and foreign-key constraints (the others are indexes, renamed with them). `schema` and `name` here are the
 * table's and the constraint's; a self-reference prints each table's own name, so it pairs only by name. NOT VALID
 * is no part of the shape: the cutover adds the new table's foreign keys NOT VALID and validates them after.
 */
async function constraints(client: pg.Client, a: number, b: number): Promise<(Named & { relname: string })[]> {
  const { rows } = await client.query<Named & { relname: string }>(
    `SELECT k.conrelid::int8::float8 AS "table", n.nspname AS schema, c.relname, k.conname AS name,
            k.contype::text || regexp_replace(pg_get_constraintdef(k.oid), ' NOT VALID$', '') AS shape
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE k.conrelid IN ($1, $2) AND k.contype IN ('c', 'f') AND k.conparentid = 0 ORDER BY k.conname`, [a, b]);
  return rows;
}
