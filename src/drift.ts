/**
 * `safeshift drift`: what an application expects against what the live database has. The expectation is an
 * inventory (JSON from `safeshift inventory --json`) or a SQL file of CREATE statements, applied to a scratch
 * schema inside a transaction that is always rolled back, and read back as an inventory.
 *
 * Compared, in the schemas the expectation has: tables (missing, extra), columns (missing, extra, type,
 * nullability, default, generated, identity, collation), constraints and indexes (by definition, not by name:
 * generated names differ between databases), row-level security and policies, views (missing, extra,
 * definition). Not compared: grants, triggers, sequences, sizes and counts (they are documented by inventory).
 */
import type pg from 'pg';
import { readCatalog, type IndexDoc, type Inventory, type TableDoc } from './inventory';
import { displayIdent, identPattern, quoteIdent } from './sql';
import { statementKinds } from './statements';

export interface DriftItem {
  /** `schema.table`, `schema.table.column`, ... */
  object: string;
  kind: 'missing' | 'extra' | 'different';
  detail: string;
}

/** An index definition without its own name and its table's schema, so equal indexes compare equal. */
function indexShape(ix: IndexDoc, table: string, schema: string): string {
  return ix.definition.replace(
    new RegExp(`^(CREATE (?:UNIQUE )?INDEX) ${identPattern(ix.name)} ON (?:ONLY )?${identPattern(schema)}\\.${identPattern(table)} `), `$1 ON ${displayIdent(table)} `);
}

function compareSets(object: string, what: string, expected: string[], actual: string[], out: DriftItem[]): void {
  const left = [...actual];
  for (const e of expected) {
    const i = left.indexOf(e);
    if (i >= 0) left.splice(i, 1);
    else out.push({ object, kind: 'missing', detail: `${what} ${e}` });
  }
  for (const a of left) out.push({ object, kind: 'extra', detail: `${what} ${a}` });
}

function compareTables(object: string, schema: string, e: TableDoc, a: TableDoc, out: DriftItem[]): void {
  for (const ec of e.columns) {
    const ac = a.columns.find((c) => c.name === ec.name);
    const col = `${object}.${displayIdent(ec.name)}`;
    if (!ac) {
      out.push({ object: col, kind: 'missing', detail: `column ${ec.name} ${ec.type}${ec.notNull ? ' NOT NULL' : ''}` });
      continue;
    }
    const diffs: string[] = [];
    if (ec.type !== ac.type) diffs.push(`type ${ac.type}, expected ${ec.type}`);
    if (ec.notNull !== ac.notNull) diffs.push(ec.notNull ? 'nullable, expected NOT NULL' : 'NOT NULL, expected nullable');
    if (ec.default !== ac.default) diffs.push(`default ${ac.default ?? 'none'}, expected ${ec.default ?? 'none'}`);
    if (ec.generated !== ac.generated) diffs.push(`generated ${ac.generated ?? 'no'}, expected ${ec.generated ?? 'no'}`);
    if (ec.identity !== ac.identity) diffs.push(`identity ${ac.identity ?? 'no'}, expected ${ec.identity ?? 'no'}`);
    if (ec.collation !== ac.collation) diffs.push(`collation ${ac.collation ?? 'default'}, expected ${ec.collation ?? 'default'}`);
    if (diffs.length) out.push({ object: col, kind: 'different', detail: diffs.join('; ') });
  }
  for (const ac of a.columns) {
    if (!e.columns.some((c) => c.name === ac.name)) out.push({ object: `${object}.${displayIdent(ac.name)}`, kind: 'extra', detail: `column ${ac.name} ${ac.type}${ac.notNull ? ' NOT NULL' : ''}` });
  }
  // NOT NULL constraints (PostgreSQL 18 lists them) are the columns' nullability, compared above.
  const constraints = (t: TableDoc) => t.constraints.filter((c) => c.type !== 'not null').map((c) => `${c.type} ${c.definition}`);
  compareSets(object, 'constraint', constraints(e), constraints(a), out);
  // Indexes that enforce a constraint are compared as that constraint.
  const indexes = (t: TableDoc) => t.indexes.filter((ix) => !ix.constraint).map((ix) => indexShape(ix, t.name, schema));
  compareSets(object, 'index', indexes(e), indexes(a), out);
  if (e.rls.enabled !== a.rls.enabled) out.push({ object, kind: 'different', detail: `row-level security ${a.rls.enabled ? 'on' : 'off'}, expected ${e.rls.enabled ? 'on' : 'off'}` });
  const policies = (t: TableDoc) => t.policies.map((p) => `${p.name} (${p.permissive ? 'permissive' : 'restrictive'} ${p.command} to ${p.roles.join(', ')} using ${p.using ?? '-'} with check ${p.withCheck ?? '-'})`);
  compareSets(object, 'policy', policies(e), policies(a), out);
}

/** Differences, in the schemas the expectation covers, ordered as the expectation lists its objects. */
export function compareInventories(expected: Inventory, actual: Inventory): DriftItem[] {
  const out: DriftItem[] = [];
  for (const es of expected.schemas) {
    const as = actual.schemas.find((s) => s.name === es.name);
    if (!as) {
      out.push({ object: displayIdent(es.name), kind: 'missing', detail: `schema ${es.name}` });
      continue;
    }
    const name = (n: string) => `${displayIdent(es.name)}.${displayIdent(n)}`;
    for (const et of es.tables) {
      const at = as.tables.find((t) => t.name === et.name);
      if (!at) out.push({ object: name(et.name), kind: 'missing', detail: `table ${et.name} (${et.columns.map((c) => c.name).join(', ')})` });
      else compareTables(name(et.name), es.name, et, at, out);
    }
    for (const at of as.tables) if (!es.tables.some((t) => t.name === at.name)) out.push({ object: name(at.name), kind: 'extra', detail: `table ${at.name}` });
    for (const ev of es.views) {
      const av = as.views.find((v) => v.name === ev.name);
      if (!av) out.push({ object: name(ev.name), kind: 'missing', detail: `${ev.kind} ${ev.name}` });
      else if (av.definition.trim() !== ev.definition.trim()) out.push({ object: name(ev.name), kind: 'different', detail: `${ev.kind} definition differs: live ${av.definition.trim()} expected ${ev.definition.trim()}` });
    }
    for (const av of as.views) if (!es.views.some((v) => v.name === av.name)) out.push({ object: name(av.name), kind: 'extra', detail: `${av.kind} ${av.name}` });
  }
  return out;
}

/** Statements an expectation file may hold: schema objects only, nothing that ends the transaction. */
const EXPECTATION_STATEMENTS = new Set([
  'CreateStmt', 'IndexStmt', 'ViewStmt', 'AlterTableStmt', 'CommentStmt', 'CreatePolicyStmt', 'CreateEnumStmt',
  'CompositeTypeStmt', 'CreateDomainStmt', 'CreateSeqStmt', 'AlterSeqStmt', 'CreateTrigStmt', 'CreateFunctionStmt', 'GrantStmt',
]);

export class ExpectationError extends Error {}

/**
 * The inventory of `sql` as if it had been run in `schema`: run in a fresh scratch schema (search_path set to
 * it, so unqualified names land there) in a transaction that is always rolled back, then read back with the
 * scratch name replaced by `schema`. Statements that create or change anything outside the scratch schema are
 * refused, so the expectation can only describe, never touch, the live database.
 */
export async function inventoryFromSql(client: pg.Client, sql: string, schema: string, file: string): Promise<Inventory> {
  let kinds: string[];
  try {
    kinds = await statementKinds(sql);
  } catch (err) {
    throw new ExpectationError(`${file}: does not parse: ${(err as Error).message}`);
  }
  kinds.forEach((kind, i) => {
    if (!EXPECTATION_STATEMENTS.has(kind)) throw new ExpectationError(`${file}: statement ${i + 1} (${kind}) is not allowed: only CREATE / ALTER / COMMENT of schema objects`);
  });
  const scratch = `safeshift_drift_${Math.random().toString(16).slice(2, 10)}`;
  await client.query('BEGIN');
  try {
    await client.query(`CREATE SCHEMA ${quoteIdent(scratch)}`);
    await client.query(`SELECT set_config('search_path', $1, true)`, [quoteIdent(scratch)]);
    try {
      await client.query(sql);
    } catch (err) {
      throw new ExpectationError(`${file}: fails when applied to a scratch schema: ${(err as Error).message}`);
    }
    const { rows: outside } = await client.query<{ name: string }>(
      `SELECT c.oid::regclass::text AS name FROM pg_class c
        WHERE c.xmin = pg_current_xact_id()::xid AND c.relnamespace NOT IN ($1::regnamespace, 'pg_toast'::regnamespace) ORDER BY 1`, [scratch]);
    if (outside.length) throw new ExpectationError(`${file}: creates or changes ${outside.map((o) => o.name).join(', ')} outside the compared schema; write names unqualified`);
    await client.query(`SELECT set_config('search_path', '', true)`);
    const inv = await readCatalog(client, { schemas: [scratch] });
    // Definitions name the scratch schema where the live ones name `schema`, printed as PostgreSQL prints it.
    const { rows } = await client.query<{ q: string }>('SELECT quote_ident($1) AS q', [schema]);
    const text = JSON.stringify(inv).split(`${scratch}.`).join(`${JSON.stringify(rows[0]!.q).slice(1, -1)}.`);
    const renamed = JSON.parse(text) as Inventory;
    renamed.schemas[0]!.name = schema;
    return renamed;
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}
