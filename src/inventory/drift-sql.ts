/**
 * A drift expectation written as SQL: applied in a fresh scratch schema inside a transaction that is always
 * rolled back, checked to have created or changed nothing outside that schema, and read back as an inventory.
 */
import { parse } from 'libpg-query';
import type pg from 'pg';
import { readCatalog } from '../inventory';
import { quoteIdent } from '../sql';
import { statementKinds } from '../statements';
import type { Expectation } from './drift-common';

/** Statements an expectation file may hold: schema objects only, nothing that ends the transaction. */
const EXPECTATION_STATEMENTS = new Set([
  'CreateStmt', 'IndexStmt', 'ViewStmt', 'AlterTableStmt', 'CommentStmt', 'CreatePolicyStmt', 'CreateEnumStmt',
  'CreateMatViewStmt', 'CompositeTypeStmt', 'CreateDomainStmt', 'CreateSeqStmt', 'AlterSeqStmt', 'CreateTrigStmt', 'CreateFunctionStmt', 'GrantStmt',
  'CreateRangeStmt',
]);

/**
 * Materialized views are CreateTableAsStmt, as is CREATE TABLE AS, which copies data: only the former. (Its
 * query runs once, over the scratch schema's empty tables when names are unqualified.)
 */
async function statementNames(sql: string): Promise<string[]> {
  const kinds = await statementKinds(sql);
  if (!kinds.includes('CreateTableAsStmt')) return kinds;
  const stmts = (await parse(sql)).stmts ?? [];
  return stmts.map((s, i) => {
    const ctas = (s.stmt as { CreateTableAsStmt?: { objtype?: string } } | undefined)?.CreateTableAsStmt;
    return ctas?.objtype === 'OBJECT_MATVIEW' ? 'CreateMatViewStmt' : kinds[i]!;
  });
}

export class ExpectationError extends Error {}

/** The parts of a pg_class row that DDL changes (not relhastriggers: a foreign key to a table sets it). */
const RELATION_SHAPE = `md5(ROW(c.relname, c.relnamespace, c.relowner, c.relacl, c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
  c.relreplident, c.relpersistence, c.relkind, c.relnatts, c.relchecks, c.relispartition)::text)`;

interface Before {
  oids: string[];
  shapes: string[];
}

/** Every relation before the file runs, with its shape: what "created" and "changed" are measured against. */
async function relationsBefore(client: pg.Client): Promise<Before> {
  const { rows } = await client.query<Before>(
    `SELECT coalesce(array_agg(c.oid::text ORDER BY c.oid), '{}') AS oids, coalesce(array_agg(${RELATION_SHAPE} ORDER BY c.oid), '{}') AS shapes FROM pg_class c`);
  return rows[0]!;
}

/**
 * What this transaction created or changed outside the scratch schema. Created: relations that did not exist
 * before (and that this transaction wrote: not another session's), types, functions. Changed: an existing
 * relation whose shape differs, or whose columns, defaults, constraints, triggers, policies, rules, partitions,
 * sequence parameters or comment this transaction wrote; a schema (grants). Writing a row is not enough for
 * pg_class: a foreign key to an existing table only sets its relhastriggers, which is no change to that table.
 */
const OUTSIDE_SQL = `
  WITH before AS (SELECT unnest($2::oid[]) AS oid, unnest($3::text[]) AS shape),
       mine AS (SELECT pg_current_xact_id()::xid AS x), scratch AS (SELECT $1::regnamespace::oid AS nsp),
       written AS (
         SELECT attrelid AS oid FROM pg_attribute, mine WHERE xmin = mine.x
         UNION SELECT adrelid FROM pg_attrdef, mine WHERE xmin = mine.x
         UNION SELECT conrelid FROM pg_constraint, mine WHERE xmin = mine.x
         UNION SELECT tgrelid FROM pg_trigger, mine WHERE xmin = mine.x AND NOT tgisinternal
         UNION SELECT polrelid FROM pg_policy, mine WHERE xmin = mine.x
         UNION SELECT ev_class FROM pg_rewrite, mine WHERE xmin = mine.x
         UNION SELECT inhparent FROM pg_inherits, mine WHERE xmin = mine.x
         UNION SELECT seqrelid FROM pg_sequence, mine WHERE xmin = mine.x
         UNION SELECT objoid FROM pg_description, mine WHERE xmin = mine.x AND classoid = 'pg_class'::regclass
         UNION SELECT c.oid FROM pg_class c JOIN before b ON b.oid = c.oid, mine WHERE c.xmin = mine.x AND ${RELATION_SHAPE} <> b.shape)
  SELECT name FROM (
    SELECT c.oid::regclass::text AS name FROM pg_class c, mine, scratch
     WHERE c.xmin = mine.x AND c.relnamespace NOT IN (scratch.nsp, 'pg_toast'::regnamespace) AND c.oid NOT IN (SELECT oid FROM before)
    UNION
    SELECT c.oid::regclass::text FROM pg_class c, scratch
     WHERE c.oid IN (SELECT oid FROM written) AND c.oid IN (SELECT oid FROM before) AND c.relnamespace NOT IN (scratch.nsp, 'pg_toast'::regnamespace)
    UNION
    SELECT 'type ' || format_type(t.oid, NULL) FROM pg_type t, mine, scratch
     WHERE t.xmin = mine.x AND t.typnamespace <> scratch.nsp AND t.typrelid = 0 AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
    UNION
    SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p, mine, scratch WHERE p.xmin = mine.x AND p.pronamespace <> scratch.nsp
    UNION
    SELECT 'schema ' || quote_ident(n.nspname) FROM pg_namespace n, mine, scratch WHERE n.xmin = mine.x AND n.oid <> scratch.nsp) o
  ORDER BY name COLLATE "C"`;

/** `scratch.` as printed in definitions, replaced by `printed.` (the compared schema as PostgreSQL prints it). */
function renamer(scratch: string, printed: string): (text: string) => string {
  return (text) => text.split(`${scratch}.`).join(`${printed}.`);
}

/**
 * The expectation `sql` describes, as if it had been run in `schema`: run in a fresh scratch schema (search_path
 * set to it, so unqualified names land there) in a transaction that is always rolled back, then read back with
 * the scratch name replaced by `schema`. Statements that create or change anything outside the scratch schema
 * are refused, so the expectation can only describe, never touch, the live database. It describes one schema:
 * nothing database-wide, and no owners or grants (see Expectation.access).
 */
export async function inventoryFromSql(client: pg.Client, sql: string, schema: string, file: string): Promise<Expectation> {
  let kinds: string[];
  try {
    kinds = await statementNames(sql);
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
    const before = await relationsBefore(client);
    try {
      await client.query(sql);
    } catch (err) {
      throw new ExpectationError(`${file}: fails when applied to a scratch schema: ${(err as Error).message}`);
    }
    const { rows: outside } = await client.query<{ name: string }>(OUTSIDE_SQL, [scratch, before.oids, before.shapes]);
    if (outside.length) throw new ExpectationError(`${file}: creates or changes ${outside.map((o) => o.name).join(', ')} outside the compared schema; write names unqualified`);
    await client.query(`SELECT set_config('search_path', '', true)`);
    const { rows } = await client.query<{ q: string }>('SELECT quote_ident($1) AS q', [schema]);
    const inv = await readCatalog(client, { schemas: [scratch], printed: renamer(scratch, rows[0]!.q) });
    // Definitions name the scratch schema where the live ones name `schema` (inside JSON strings: escaped).
    const inJson = renamer(scratch, JSON.stringify(rows[0]!.q).slice(1, -1));
    const [read] = (JSON.parse(inJson(JSON.stringify(inv))) as typeof inv).schemas;
    return { schemas: [{ ...read!, name: schema }], access: false };
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}
