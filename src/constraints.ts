/**
 * Targets keep every constraint. Preflight reads the source's constraints and the target's (in its rolled-back
 * transaction, right after the plan's DDL ran) and decides for each source constraint whether the target has a
 * counterpart over the corresponding columns. One without a counterpart is refused unless the plan lists it
 * under `dropConstraints`; one over a column the target does not carry goes with that column; what the target
 * adds is shown too. The approver sees all of it at the cutover gate.
 *
 * "Constraint" here: primary key, UNIQUE, CHECK, EXCLUDE and FOREIGN KEY (pg_constraint), NOT NULL and what
 * generates a column's values, an identity or a default from a sequence (pg_attribute / pg_attrdef). Indexes that
 * back no constraint are not compared (a plain unique index of the target does count as a UNIQUE's counterpart).
 *
 * The comparison is pure (`compareConstraints`, unit-tested); reading the catalog is `readConstraints`.
 */
import type pg from 'pg';
import type { OutboundForeignKey } from './foreign-keys';
import type { DropName } from './plan/schema';
import { displayIdent, displayName, type TableRef } from './sql';

export type ConstraintKind = 'p' | 'u' | 'c' | 'x' | 'f' | 'notnull' | 'generated';

export interface TableConstraint {
  kind: ConstraintKind;
  /** The constraint's (or unique index's) name; for NOT NULL and generated values, the column's. */
  name: string;
  /** How `dropConstraints` names it. */
  drop: DropName;
  /** Its columns in the catalog's order; null: an expression element of an exclusion constraint. */
  columns: (string | null)[];
  /** Exclusion constraint: the operator of each element, in the order of `columns`. */
  operators?: string[];
  /** Foreign key: the referenced table (null: the table itself) and columns, in the order of `columns`. */
  references?: { oid: number | null; columns: string[] };
  /** UNIQUE NULLS NOT DISTINCT (PostgreSQL 15 and later). */
  nullsNotDistinct?: boolean;
  /** A unique index that backs no constraint (target side only): counts for a UNIQUE, is never listed as added. */
  indexOnly?: boolean;
  /** Cloned from a partitioned parent (conparentid set): the new table gets it again when attached in its place. */
  inherited?: boolean;
  /** As PostgreSQL prints it, for people. */
  definition: string;
}

export interface ConstraintComparison {
  /** Source constraints and their counterparts in the target. */
  kept: { source: TableConstraint; target: TableConstraint }[];
  /** No counterpart and not listed under dropConstraints: preflight refuses the plan. */
  missing: TableConstraint[];
  /** No counterpart, listed under dropConstraints: dropped on purpose. */
  dropped: TableConstraint[];
  /** Over source columns the target does not carry as is: the constraint goes with them. */
  withColumns: { constraint: TableConstraint; columns: string[] }[];
  /** Inherited from the partitioned parent and not in the target: it comes with the parent at attach. */
  withParent: TableConstraint[];
  /** Target constraints that are no source constraint's counterpart. */
  added: TableConstraint[];
  /** dropConstraints entries that name nothing the source has (typos). */
  unknown: DropName[];
  /** dropConstraints entries whose constraint the target keeps anyway. */
  listedButKept: { source: TableConstraint; target: TableConstraint }[];
}

/**
 * For each source constraint: a counterpart in the target, or why there is none. `carried` maps each target
 * column that is a source column copied as is or renamed to that source column; constraints are compared in
 * source column names. A target constraint serves as one source constraint's counterpart at most, so two source
 * CHECKs on a column are not both "kept" by one target CHECK. Counterparts with the same definition are paired
 * first, then by shape, so the order of the lists does not decide the pairing.
 */
export function compareConstraints(
  source: TableConstraint[], target: TableConstraint[], carried: ReadonlyMap<string, string>, drop: readonly DropName[],
): ConstraintComparison {
  const carriedSource = new Set(carried.values());
  const candidates = target.map((t) => ({ original: t, asSource: inSourceTerms(t, carried), used: false }));
  const result: ConstraintComparison = { kept: [], missing: [], dropped: [], withColumns: [], withParent: [], added: [], unknown: [], listedButKept: [] };
  const comparable: TableConstraint[] = [];
  for (const s of source) {
    const lost = uncarriedColumns(s, carriedSource);
    if (lost.length) result.withColumns.push({ constraint: s, columns: lost });
    else comparable.push(s);
  }
  const counterpart = new Map<TableConstraint, TableConstraint>();
  const pair = (prefer: (s: TableConstraint, t: TableConstraint) => boolean) => {
    for (const s of comparable) {
      if (counterpart.has(s)) continue;
      const c = candidates.find((x) => !x.used && x.asSource && sameConstraint(s, x.asSource) && prefer(s, x.original));
      if (c) {
        c.used = true;
        counterpart.set(s, c.original);
      }
    }
  };
  pair((s, t) => t.definition === s.definition);
  pair((s, t) => t.name === s.name);
  pair(() => true);
  const listed = (s: TableConstraint) => drop.some((d) => sameDropName(d, s.drop));
  for (const s of comparable) {
    const t = counterpart.get(s);
    if (t) {
      result.kept.push({ source: s, target: t });
      if (listed(s)) result.listedButKept.push({ source: s, target: t });
    } else if (s.inherited) result.withParent.push(s);
    else if (listed(s)) result.dropped.push(s);
    else result.missing.push(s);
  }
  result.added = candidates.filter((c) => !c.used && !c.original.indexOnly).map((c) => c.original);
  result.unknown = drop.filter((d) => !source.some((s) => sameDropName(d, s.drop)));
  return result;
}

export function sameDropName(a: DropName, b: DropName): boolean {
  return 'constraint' in a
    ? 'constraint' in b && a.constraint === b.constraint
    : 'column' in b && a.column === b.column && a.property === b.property;
}

/** The target constraint with its columns renamed to the source columns they carry; undefined if one carries none. */
function inSourceTerms(t: TableConstraint, carried: ReadonlyMap<string, string>): TableConstraint | undefined {
  const rename = (c: string | null) => (c === null ? null : carried.get(c));
  const columns = t.columns.map(rename);
  if (columns.some((c) => c === undefined)) return undefined;
  let references = t.references;
  if (references && references.oid === null) {
    // A self-reference points at the table's own columns: they are renamed too.
    const refColumns = references.columns.map((c) => carried.get(c));
    if (refColumns.some((c) => c === undefined)) return undefined;
    references = { oid: null, columns: refColumns as string[] };
  }
  return { ...t, columns: columns as (string | null)[], ...(references ? { references } : {}) };
}

/** Source columns of `s` (a self-reference's referenced columns included) that the target does not carry. */
function uncarriedColumns(s: TableConstraint, carriedSource: ReadonlySet<string>): string[] {
  const own = s.columns.filter((c): c is string => c !== null);
  const referenced = s.references?.oid === null ? s.references.columns : [];
  return [...new Set([...own, ...referenced])].filter((c) => !carriedSource.has(c));
}

/**
 * Whether target constraint `t` (in source column names) enforces what source constraint `s` does: same kind
 * over the same columns. A primary key also keeps a UNIQUE (it is stricter), and NULLS NOT DISTINCT must be kept.
 *
 * A CHECK is compared by the set of columns it uses, not by its text: the text names the target's columns (a
 * renamed column changes it), and PostgreSQL prints the same condition differently as the column types change
 * (casts appear for varchar, numeric literals). Comparing text would refuse faithful targets. The price: a target
 * CHECK over the same columns that checks something else counts as kept, so the gate shows every kept CHECK whose
 * text differs next to the source's, for the approver to read.
 */
export function sameConstraint(s: TableConstraint, t: TableConstraint): boolean {
  switch (s.kind) {
    case 'u':
      if (t.kind === 'p') return sameSet(s.columns, t.columns);
      return t.kind === 'u' && (!s.nullsNotDistinct || t.nullsNotDistinct === true) && sameSet(s.columns, t.columns);
    case 'x':
      return t.kind === 'x' && sameSet(elements(s), elements(t));
    case 'f':
      return t.kind === 'f' && s.references!.oid === t.references?.oid && sameSet(keyPairs(s), keyPairs(t));
    default:
      return t.kind === s.kind && sameSet(s.columns, t.columns);
  }
}

/** An exclusion constraint's elements, each column (or expression) with its operator: their order does not matter. */
function elements(c: TableConstraint): string[] {
  return c.columns.map((col, i) => JSON.stringify([col, c.operators?.[i] ?? '']));
}

/** A foreign key's column pairs (local, referenced): FOREIGN KEY (a, b) REFERENCES p (x, y) is (b, a) to (y, x). */
function keyPairs(c: TableConstraint): string[] {
  return c.columns.map((col, i) => JSON.stringify([col, c.references?.columns[i] ?? null]));
}

function sameSet<T>(a: readonly T[], b: readonly T[]): boolean {
  const x = new Set(a);
  const y = new Set(b);
  return x.size === y.size && [...x].every((v) => y.has(v));
}

const KIND_NAMES: Record<ConstraintKind, string> = {
  p: 'primary key', u: 'unique constraint', c: 'check constraint', x: 'exclusion constraint', f: 'foreign key',
  notnull: 'NOT NULL', generated: 'generated values',
};

/** `check constraint x (CHECK ((n > 0)))`, `NOT NULL on column n`, `identity on column id (GENERATED ...)`. */
export function describeConstraint(c: TableConstraint): string {
  if ('column' in c.drop) {
    const what = c.drop.property === 'NOT NULL' ? 'NOT NULL' : c.drop.property === 'IDENTITY' ? 'identity' : 'sequence default';
    return `${what} on column ${displayIdent(c.drop.column)}${c.kind === 'notnull' ? '' : ` (${c.definition})`}`;
  }
  return `${c.indexOnly ? 'unique index' : KIND_NAMES[c.kind]} ${displayIdent(c.name)} (${c.definition})`;
}

/** How to write it under dropConstraints: `name`, or `column:NOT NULL` and the like. */
export function dropLabel(d: DropName): string {
  return 'constraint' in d ? displayIdent(d.constraint) : `${displayIdent(d.column)}:${d.property}`;
}

/**
 * The refusals: a source constraint without counterpart (`field` names where the DDL comes from), a
 * dropConstraints entry that names nothing of the source. `sourceColumns` makes the typo message precise.
 */
export function constraintProblems(
  cmp: ConstraintComparison, source: { ref: TableRef; constraints: TableConstraint[]; columns: string[] }, field: string,
): string[] {
  const table = displayName(source.ref);
  const problems = cmp.missing.map((c) =>
    `${field}: the target has no counterpart for ${describeConstraint(c)} of ${table}: add it to the target DDL, or list it under dropConstraints (${dropLabel(c.drop)}) to drop it on purpose`);
  for (const d of cmp.unknown) {
    if ('constraint' in d) {
      const names = source.constraints.map((c) => dropLabel(c.drop));
      problems.push(`dropConstraints: ${dropLabel(d)} is not a constraint of ${table} (it has: ${names.join(', ') || 'none'})`);
    } else if (!source.columns.includes(d.column)) {
      problems.push(`dropConstraints: ${dropLabel(d)}: ${table} has no column ${displayIdent(d.column)}`);
    } else {
      const lacks = { 'NOT NULL': 'is not NOT NULL', IDENTITY: 'is not an identity column', DEFAULT: 'has no default from a sequence' }[d.property];
      problems.push(`dropConstraints: ${dropLabel(d)}: column ${displayIdent(d.column)} of ${table} ${lacks}`);
    }
  }
  return problems;
}

/** For the gate (and `plan validate`): what the target keeps, drops on purpose, loses with columns, adds. */
export function constraintNotes(cmp: ConstraintComparison, sourceCount: number): string[] {
  const notes: string[] = [];
  if (sourceCount > 0) {
    const kept = cmp.kept.length === sourceCount ? `all ${sourceCount} of the source's` : `${cmp.kept.length} of the source's ${sourceCount}`;
    notes.push(`the target keeps ${kept} constraints (NOT NULL, identity and sequence defaults counted)`);
  }
  for (const { source, target } of cmp.kept) {
    if (target.definition !== source.definition) notes.push(`${describeConstraint(source)} is kept as ${describeCounterpart(target)}`);
  }
  for (const { source, target } of cmp.listedButKept) {
    notes.push(`${dropLabel(source.drop)} is listed under dropConstraints, but the target keeps it (${describeCounterpart(target)}): nothing is dropped`);
  }
  for (const c of cmp.dropped) notes.push(`${describeConstraint(c)} is dropped on purpose (dropConstraints): the new table will not enforce it`);
  for (const { constraint, columns } of cmp.withColumns) {
    notes.push(`${describeConstraint(constraint)} goes with column${columns.length > 1 ? 's' : ''} ${columns.map(displayIdent).join(', ')}, which the target does not carry as is`);
  }
  for (const c of cmp.withParent) notes.push(`${describeConstraint(c)} comes from the partitioned table: the new table gets it when attached in the source's place`);
  for (const c of cmp.added) notes.push(`the target adds ${describeConstraint(c)}, which the source does not have`);
  return notes.map((n) => `constraints: ${n}`);
}

/** A counterpart as the approver reads it next to the source's: its name and definition (a column's: as described). */
function describeCounterpart(t: TableConstraint): string {
  return 'column' in t.drop ? describeConstraint(t) : `${t.indexOnly ? 'unique index ' : ''}${displayIdent(t.name)} (${t.definition})`;
}

/** A foreign key as preflight has it (what the new table gets at cutover), in this module's terms. */
export function foreignKeyConstraint(fk: OutboundForeignKey): TableConstraint {
  return {
    kind: 'f', name: fk.name, drop: { constraint: fk.name }, columns: fk.columns,
    references: { oid: fk.referencedOid, columns: fk.referencedColumns }, definition: fk.definition,
  };
}

/**
 * Read both sides and compare (preflight, after the plan's DDL ran in its rolled-back transaction). The target's
 * foreign keys are `foreignKeys`, what the new table gets at cutover: the DDL's, or the source's for the default
 * target, which has none of its own until then.
 */
export async function checkConstraints(
  client: pg.Client,
  args: {
    source: { ref: TableRef; oid: number; columns: string[] }; targetOid: number; carried: ReadonlyMap<string, string>;
    foreignKeys: OutboundForeignKey[]; drop: readonly DropName[]; field: string;
  },
): Promise<{ problems: string[]; notes: string[] }> {
  const source = await readConstraints(client, args.source.oid);
  const target = [
    ...(await readConstraints(client, args.targetOid, { uniqueIndexes: true })).filter((c) => c.kind !== 'f'),
    ...args.foreignKeys.map(foreignKeyConstraint),
  ];
  const cmp = compareConstraints(source, target, args.carried, args.drop);
  return {
    problems: constraintProblems(cmp, { ref: args.source.ref, constraints: source, columns: args.source.columns }, args.field),
    notes: constraintNotes(cmp, source.length),
  };
}

type ConstraintRow = {
  name: string; kind: 'p' | 'u' | 'c' | 'x' | 'f'; columns: (string | null)[]; operators: string[];
  referencedOid: number; referencedColumns: string[]; nullsNotDistinct: boolean; inherited: boolean; definition: string;
};
export type ColumnRow = { name: string; notNull: boolean; identity: string; sequenceDefault: string | null };

/**
 * The constraints of table `oid`, in name order, then its columns' NOT NULL and generated values in column order.
 * Those cloned from a partitioned parent (conparentid set) are marked `inherited`: a target without them is not
 * missing anything, attaching it in the source's place clones them again. NOT NULL is read from pg_attribute only: PostgreSQL 18 also lists it in pg_constraint (contype
 * 'n'), which would count it twice. `uniqueIndexes`: also plain unique indexes that back no constraint (no
 * predicate, no expressions), as counterparts for a UNIQUE.
 */
export async function readConstraints(client: pg.Client, oid: number, options: { uniqueIndexes?: boolean } = {}): Promise<TableConstraint[]> {
  const { rows } = await client.query<ConstraintRow>(
    `SELECT c.conname AS name, c.contype::text AS kind,
            array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                    LEFT JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS columns,
            array(SELECT op.oprname FROM unnest(c.conexclop) WITH ORDINALITY e(op, o) JOIN pg_operator op ON op.oid = e.op ORDER BY e.o)::text[] AS operators,
            c.confrelid::int8::float8 AS "referencedOid",
            array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o)::text[] AS "referencedColumns",
            coalesce((SELECT (to_jsonb(i) ->> 'indnullsnotdistinct')::boolean FROM pg_index i WHERE i.indexrelid = c.conindid), false) AS "nullsNotDistinct",
            c.conparentid <> 0 AS inherited, pg_get_constraintdef(c.oid) AS definition
       FROM pg_constraint c
      WHERE c.conrelid = $1 AND c.contype IN ('p', 'u', 'c', 'x', 'f')
      ORDER BY c.conname`,
    [oid]);
  const constraints: TableConstraint[] = rows.map((r) => ({
    kind: r.kind, name: r.name, drop: { constraint: r.name }, columns: r.columns, definition: r.definition,
    ...(r.kind === 'x' ? { operators: r.operators } : {}),
    ...(r.kind === 'u' ? { nullsNotDistinct: r.nullsNotDistinct } : {}),
    ...(r.inherited ? { inherited: true } : {}),
    ...(r.kind === 'f' ? { references: { oid: Number(r.referencedOid) === oid ? null : Number(r.referencedOid), columns: r.referencedColumns } } : {}),
  }));
  if (options.uniqueIndexes) constraints.push(...(await uniqueIndexes(client, oid)));
  return [...constraints, ...columnConstraints(await columnRows(client, oid))];
}

async function columnRows(client: pg.Client, oid: number): Promise<ColumnRow[]> {
  // A default "from a sequence" is one that depends on a sequence (nextval('s'::regclass) records that).
  const { rows } = await client.query<ColumnRow>(
    `SELECT a.attname AS name, a.attnotnull AS "notNull", a.attidentity::text AS identity,
            CASE WHEN EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_class s ON s.oid = dep.refobjid
                               WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid
                                 AND dep.refclassid = 'pg_class'::regclass AND s.relkind = 'S')
                 THEN pg_get_expr(d.adbin, d.adrelid) END AS "sequenceDefault"
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [oid]);
  return rows;
}

/** NOT NULL and generated values (identity, default from a sequence) as constraints of their columns. */
export function columnConstraints(rows: ColumnRow[]): TableConstraint[] {
  const out: TableConstraint[] = [];
  for (const r of rows) {
    if (r.notNull) out.push({ kind: 'notnull', name: r.name, drop: { column: r.name, property: 'NOT NULL' }, columns: [r.name], definition: 'NOT NULL' });
  }
  for (const r of rows) {
    if (r.identity === 'a' || r.identity === 'd') {
      out.push({ kind: 'generated', name: r.name, drop: { column: r.name, property: 'IDENTITY' }, columns: [r.name],
        definition: `GENERATED ${r.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY` });
    } else if (r.sequenceDefault !== null) {
      out.push({ kind: 'generated', name: r.name, drop: { column: r.name, property: 'DEFAULT' }, columns: [r.name], definition: `DEFAULT ${r.sequenceDefault}` });
    }
  }
  return out;
}

async function uniqueIndexes(client: pg.Client, oid: number): Promise<TableConstraint[]> {
  const { rows } = await client.query<{ name: string; columns: string[]; nullsNotDistinct: boolean; definition: string }>(
    `SELECT ic.relname AS name,
            array(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k(n) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)::text[] AS columns,
            coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS "nullsNotDistinct",
            pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      WHERE i.indrelid = $1 AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
      ORDER BY 1`,
    [oid]);
  return rows.map((r) => ({ kind: 'u', name: r.name, drop: { constraint: r.name }, columns: r.columns, nullsNotDistinct: r.nullsNotDistinct, indexOnly: true, definition: r.definition }));
}
