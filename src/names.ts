/**
 * Names an application may know, carried from the table it used to have to the one it has now: index names (and so
 * the unique, primary-key and exclusion constraints they back: `ON CONFLICT ON CONSTRAINT items_pkey`), CHECK,
 * foreign-key and (PostgreSQL 18) NOT NULL constraint names (error handlers match them), identity / serial sequence
 * names. A table the plan created is named after itself (`items_v2_pkey`); after cutover the live table must answer
 * to the old names.
 *
 * Pairs are matched by what the object is, never by name: an index by uniqueness and its definition, a constraint
 * by its kind and definition, a sequence by the column that owns it. Definitions are compared as PostgreSQL's parser
 * reads them (libpg-query), with the object's and the table's names left out and the giving table's column
 * references renamed as the plan renames them (`columns: { body: content }`): `btree (content)` on the old table
 * pairs with `btree (body)` on the new one. Index and sequence names are unique per schema, so the table giving its
 * names up takes `suffix` first; constraint names are unique per table only.
 */
import type pg from 'pg';
import { parse } from 'libpg-query';
import { nameWithSuffix, qualified, quoteIdent } from './sql';

/** What took which name, for the audit log and for callers that hold the old name. */
export interface Renamed {
  kind: 'index' | 'sequence' | 'constraint';
  from: string;
  to: string;
}

/** An old name the new table will not answer to: nothing of the same definition there, or the name is taken. */
export interface Unpaired {
  kind: 'index' | 'sequence' | 'constraint';
  name: string;
  why: string;
}

interface Named {
  table: number;
  schema: string;
  name: string;
  /** The table's own name (a self-reference names it). */
  relname: string;
  /** Flags, then the SQL that would create the object (index, constraint) or the owning column (sequence). */
  flags: string;
  definition: string;
  shape?: string;
}

/**
 * `toOid`'s objects take the names of their counterparts on `fromOid`; those get `suffix` (index, sequence) or keep
 * theirs (constraints, unique per table). `renames`: columns of `fromOid` by the name they have on `toOid`. In the
 * caller's transaction. Returns what was renamed, and the old names with no counterpart (left where they are).
 */
export async function adoptNames(
  client: pg.Client, fromOid: number, toOid: number, suffix: string, renames: Record<string, string> = {},
): Promise<Renamed[] & { unpaired: Unpaired[] }> {
  const renamed: Renamed[] = [];
  const unpaired: Unpaired[] = [];
  const relations = [['INDEX', await indexes(client, fromOid, toOid)], ['SEQUENCE', await ownedSequences(client, fromOid, toOid)]] as const;
  for (const [kind, objects] of relations) {
    const k = kind === 'INDEX' ? 'index' : 'sequence';
    const { matched, alone } = await pairs(objects, fromOid, toOid, renames);
    unpaired.push(...alone.map((o) => ({ kind: k, name: o.name, why: `the new table has no ${k} of the same definition` }) as const));
    for (const [old, mine] of matched) {
      await client.query(`ALTER ${kind} ${qualified(old)} RENAME TO ${quoteIdent(nameWithSuffix(old.name, suffix))}`);
      await client.query(`ALTER ${kind} ${qualified(mine)} RENAME TO ${quoteIdent(old.name)}`);
      renamed.push({ kind: k, from: mine.name, to: old.name });
    }
  }
  const tableConstraints = await constraints(client, fromOid, toOid);
  const taken = new Set(tableConstraints.filter((c) => Number(c.table) === toOid).map((c) => c.name));
  const { matched, alone } = await pairs(tableConstraints, fromOid, toOid, renames);
  unpaired.push(...alone.map((o) => ({ kind: 'constraint', name: o.name, why: 'the new table has no constraint of the same definition' }) as const));
  for (const [old, mine] of matched) {
    if (taken.has(old.name)) { // the table has another constraint of that name: leave both as they are
      unpaired.push({ kind: 'constraint', name: old.name, why: `the new table has another constraint of that name; its counterpart stays ${mine.name}` });
      continue;
    }
    await client.query(`ALTER TABLE ${qualified({ schema: mine.schema, name: mine.relname })} RENAME CONSTRAINT ${quoteIdent(mine.name)} TO ${quoteIdent(old.name)}`);
    taken.add(old.name);
    renamed.push({ kind: 'constraint', from: mine.name, to: old.name });
  }
  return Object.assign(renamed, { unpaired });
}

/**
 * Each object of `fromOid` with the first unclaimed object of `toOid` of the same shape, where the names differ;
 * `alone`: those of `fromOid` with none.
 */
async function pairs<T extends Named>(objects: T[], fromOid: number, toOid: number, renames: Record<string, string>): Promise<{ matched: [T, T][]; alone: T[] }> {
  for (const o of objects) o.shape = o.flags + await shapeOf(o, Number(o.table) === fromOid ? renames : {});
  const candidates = objects.filter((o) => Number(o.table) === toOid);
  const matched: [T, T][] = [];
  const alone: T[] = [];
  for (const old of objects.filter((o) => Number(o.table) === fromOid)) {
    const i = candidates.findIndex((c) => c.shape === old.shape);
    if (i < 0) { alone.push(old); continue; }
    const [mine] = candidates.splice(i, 1);
    if (mine!.name !== old.name) matched.push([old, mine!]);
  }
  return { matched, alone };
}

/**
 * The definition as PostgreSQL's parser reads it, without positions, the object's own name, the table's name (or
 * NOT VALID: the cutover adds foreign keys NOT VALID and validates them after), and with column references renamed.
 * A sequence's definition is its owning column's name.
 */
async function shapeOf(o: Named, renames: Record<string, string>): Promise<string> {
  if (o.flags.startsWith('sequence')) return renameColumn(o.definition, renames);
  const tree = (await parse(o.definition)).stmts?.[0]?.stmt;
  return JSON.stringify(canonical(tree, renames, o));
}

function renameColumn(name: string, renames: Record<string, string>): string {
  return Object.hasOwn(renames, name) ? renames[name]! : name;
}

const LEFT_OUT = new Set(['location', 'idxname', 'conname', 'relation', 'initially_valid', 'skip_validation']);

function canonical(node: unknown, renames: Record<string, string>, self: { schema: string; relname: string }): unknown {
  if (Array.isArray(node)) return node.map((n) => canonical(n, renames, self));
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (LEFT_OUT.has(key)) continue;
    out[key] = canonical(value, renames, self);
  }
  const names = (list: unknown) => (Array.isArray(list) ? list.map((s: { String?: { sval?: string } }) => (s.String?.sval !== undefined
    ? { String: { sval: renameColumn(s.String.sval, renames) } } : s)) : list);
  if (out.IndexElem && typeof (out.IndexElem as { name?: unknown }).name === 'string') {
    const elem = out.IndexElem as { name: string };
    elem.name = renameColumn(elem.name, renames);
  }
  // A column reference of the table's own (definitions of an index or a constraint name no other table's columns).
  if (out.ColumnRef) {
    const ref = out.ColumnRef as { fields: unknown[] };
    if (ref.fields.length === 1) ref.fields = names(ref.fields) as unknown[];
  }
  if (out.Constraint) {
    const c = out.Constraint as Record<string, unknown>;
    for (const key of ['keys', 'fk_attrs', 'including']) if (c[key]) c[key] = names(c[key]);
    // A self-reference names each table itself: the same once both say "self" (and the referenced columns renamed).
    const pk = c.pktable as { relname?: string; schemaname?: string } | undefined;
    if (pk?.relname === self.relname && (pk.schemaname ?? self.schema) === self.schema) { c.pktable = 'self'; c.pk_attrs = names(c.pk_attrs); }
  }
  return out;
}

async function indexes(client: pg.Client, a: number, b: number): Promise<Named[]> {
  const { rows } = await client.query<Named>(
    `SELECT i.indrelid::int8::float8 AS "table", n.nspname AS schema, c.relname AS name,
            t.relname, i.indisunique::text || i.indisprimary::text AS flags, pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = i.indrelid
      WHERE i.indrelid IN ($1, $2) ORDER BY c.relname`, [a, b]);
  return rows;
}

async function ownedSequences(client: pg.Client, a: number, b: number): Promise<Named[]> {
  const { rows } = await client.query<Named>(
    `SELECT d.refobjid::int8::float8 AS "table", n.nspname AS schema, s.relname AS name, '' AS relname, 'sequence' AS flags, a.attname AS definition
       FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid IN ($1, $2) AND d.deptype IN ('a', 'i')
      ORDER BY s.relname`, [a, b]);
  return rows;
}

/**
 * CHECK, foreign-key and NOT NULL constraints (the others are indexes, renamed with them). `schema` and `name` here
 * are the table's and the constraint's. An inherited NOT NULL (a partition's) takes its name from its parent and
 * cannot be renamed on its own: left out.
 */
async function constraints(client: pg.Client, a: number, b: number): Promise<Named[]> {
  const { rows } = await client.query<Named>(
    `SELECT k.conrelid::int8::float8 AS "table", n.nspname AS schema, c.relname, k.conname AS name,
            k.contype::text AS flags, format('ALTER TABLE %I ADD CONSTRAINT %I %s', c.relname, k.conname, pg_get_constraintdef(k.oid)) AS definition
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE k.conrelid IN ($1, $2) AND k.contype IN ('c', 'f', 'n') AND k.conparentid = 0
        AND NOT (k.contype = 'n' AND k.coninhcount > 0) ORDER BY k.conname`, [a, b]);
  return rows;
}

/**
 * Gate lines (preflight's rehearsal): each old index or constraint name the live table will not answer to after
 * cutover. Sequences are left out: a sequence keeps its own name wherever it goes (the new table's defaults name it
 * by OID).
 */
export function namesNotCarried(unpaired: Unpaired[], table: string): string[] {
  return unpaired.filter((u) => u.kind !== 'sequence').map((u) =>
    `names: ${u.kind} ${u.name} of ${table} is not carried to the new table (${u.why}): after cutover the live table does not answer to that name`);
}
