/**
 * The plan's target DDL, checked before and after it runs in preflight's always-rolled-back transaction: which
 * statements it may hold (PostgreSQL's own parser), and which relations it created besides the target and what
 * belongs to it (its partitions, indexes, TOAST, sequences). Also the default target's DDL, when the plan has none.
 */
import type pg from 'pg';
import { qualified, type TableRef } from './sql';
import { statementKinds } from './statements';

/**
 * Statements target DDL may contain: the target table and what belongs to it. Anything else (transaction
 * control, other objects, DML) would escape the dry run or outlive a rollback, so preflight refuses it.
 */
const TARGET_DDL_STATEMENTS = new Set([
  'CreateStmt', 'IndexStmt', 'AlterTableStmt', 'CommentStmt', 'GrantStmt', 'CreatePolicyStmt', 'CreateTrigStmt',
]);

/** Parse the DDL with PostgreSQL's own parser (libpg-query) and list what is not allowed, by statement number. */
export async function targetDdlProblems(ddl: string, field: string): Promise<string[]> {
  let kinds: string[];
  try {
    kinds = await statementKinds(ddl);
  } catch (err) {
    return [`${field}: the target DDL does not parse: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  kinds.forEach((kind, i) => {
    if (!TARGET_DDL_STATEMENTS.has(kind)) {
      problems.push(`${field}: statement ${i + 1} (${kind}) is not allowed in target DDL: only CREATE TABLE of the target and its indexes, constraints, comments, grants, policies and triggers (create anything else before the migration)`);
    }
  });
  if (kinds.length === 0) problems.push(`${field}: the target DDL is empty`);
  return problems;
}


/**
 * Relations that exist now and did not before the DDL (`existed`): touched in this transaction is not enough, a
 * foreign key to a table updates that table's pg_class row (relhastriggers) without creating anything.
 */
export async function relationsCreatedBesides(client: pg.Client, targetOid: number, existed: string[]): Promise<string[]> {
  // The target's own: itself, its partitions (all levels) and their indexes, TOAST tables and sequences.
  const { rows } = await client.query<{ name: string }>(
    `WITH RECURSIVE mine(oid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN mine m ON i.inhparent = m.oid)
     SELECT format('%s %I.%I', CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                   WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' ELSE 'relation' END, n.nspname, c.relname) AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.xmin = pg_current_xact_id()::xid AND n.nspname <> 'pg_toast' AND NOT (c.oid = ANY ($2::oid[]))
        AND c.oid NOT IN (SELECT oid FROM mine)
        AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = c.oid AND i.indrelid IN (SELECT oid FROM mine))
        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.refobjid IN (SELECT oid FROM mine) AND d.deptype IN ('a', 'i'))
      ORDER BY 1`,
    [targetOid, existed],
  );
  return rows.map((r) => r.name);
}

/** Every relation's OID (as text) before the DDL runs, for relationsCreatedBesides. */
export async function relationOids(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ oids: string[] }>(`SELECT coalesce(array_agg(oid::text), '{}') AS oids FROM pg_class`);
  return rows[0]!.oids;
}

export function createLikeSql(source: TableRef, target: TableRef): string {
  return `CREATE TABLE ${qualified(target)} (LIKE ${qualified(source)} INCLUDING ALL)`;
}
