/**
 * The plan's target DDL, checked before and after it runs in preflight's always-rolled-back transaction: which
 * statements it may hold (PostgreSQL's own parser), and which relations it created besides the target and what
 * belongs to it (its partitions, indexes, TOAST, sequences). Also the default target's DDL, when the plan has none.
 */
import type pg from 'pg';
import { displayName, qualified, sameTableRef, type TableRef } from './sql';
import { parsedStatements } from './statements';
import { ddlStatementCode, type DdlCall } from './plan/ddl-code';

/**
 * Statements target DDL may contain: the target table and what belongs to it. Anything else (transaction
 * control, other objects, DML) would escape the dry run or outlive a rollback, so preflight refuses it.
 */
const TARGET_DDL_STATEMENTS = new Set([
  'CreateStmt', 'IndexStmt', 'AlterTableStmt', 'CommentStmt', 'GrantStmt', 'CreatePolicyStmt', 'CreateTrigStmt',
]);

type Node = Record<string, unknown>;
interface RangeVar { schemaname?: string; relname: string }

/**
 * Parse the DDL with PostgreSQL's own parser (libpg-query) and list what is not allowed, by statement number and
 * kind: a statement of another kind, or one whose object is not the target (or a partition of it created by this
 * DDL, or an index created here). A policy, grant, trigger or comment on another table, a grant on a schema,
 * function or database, a partition of another table would all outlive preflight's rollback as soon as the DDL
 * runs for real at prepare. Every relation is named schema-qualified, so what it means does not depend on
 * search_path. What the parser cannot see (an index named by PostgreSQL) preflight's catalog comparison catches.
 */
export async function targetDdlProblems(ddl: string, field: string, target?: TableRef): Promise<string[]> {
  let stmts: Node[];
  try {
    stmts = await parsedStatements(ddl);
  } catch (err) {
    return [`${field}: the target DDL does not parse: ${(err as Error).message}`];
  }
  const problems: string[] = [];
  const mine = target ? [target] : [];
  const indexes: TableRef[] = [];
  stmts.forEach((stmt, i) => {
    const kind = Object.keys(stmt)[0] ?? 'unknown';
    const at = `${field}: statement ${i + 1} (${kind})`;
    if (!TARGET_DDL_STATEMENTS.has(kind)) {
      problems.push(`${at} is not allowed in target DDL: only CREATE TABLE of the target and its indexes, constraints, comments, grants, policies and triggers (create anything else before the migration)`);
      return;
    }
    problems.push(...ddlStatementCode(stmt, at).problems); // src/plan/ddl-code.ts: what its expressions may call
    if (!target) return;
    const why = objectProblem(kind, stmt[kind] as Node, mine, indexes);
    if (why) problems.push(`${at} ${why}; target DDL may touch only ${displayName(target)} and what it creates`);
  });
  if (stmts.length === 0) problems.push(`${field}: the target DDL is empty`);
  return problems;
}

/** The functions and operators the DDL's row-evaluated expressions call, by name (for preflight's catalog check before it runs). */
export async function targetDdlCalls(ddl: string, field: string): Promise<DdlCall[]> {
  return (await parsedStatements(ddl)).flatMap((stmt, i) => ddlStatementCode(stmt, `${field}: statement ${i + 1} (${Object.keys(stmt)[0] ?? 'unknown'})`).calls);
}

const refOf = (r: RangeVar): TableRef | undefined => (r.schemaname ? { schema: r.schemaname, name: r.relname } : undefined);
const shown = (r: RangeVar) => (r.schemaname ? displayName({ schema: r.schemaname, name: r.relname }) : r.relname);

/** Why a statement of an allowed kind touches something besides the target (undefined: it does not). */
function objectProblem(kind: string, s: Node, mine: TableRef[], indexes: TableRef[]): string | undefined {
  const isMine = (r: RangeVar | undefined) => { const ref = r && refOf(r); return ref !== undefined && mine.some((m) => sameTableRef(m, ref)); };
  const onlyMine = (r: RangeVar, what: string) => {
    if (!r.schemaname) return `names ${what} ${r.relname} without its schema; write schema.table`;
    return isMine(r) ? undefined : `${what} ${shown(r)}, which is not the target`;
  };
  switch (kind) {
    case 'CreateStmt': {
      const rel = s.relation as RangeVar;
      const parents = ((s.inhRelations as Node[] | undefined) ?? []).map((n) => n.RangeVar as RangeVar);
      if (!rel.schemaname) return `creates ${rel.relname} without its schema; write schema.table`;
      if (parents.length === 0) return isMine(rel) ? undefined : `creates ${shown(rel)}, which is not the target`;
      // A partition of the target (or of one of its partitions) belongs to it; one of any other table changes that table.
      if (s.partbound === undefined) return `makes ${shown(rel)} inherit from ${parents.map(shown).join(', ')}; inheritance is not supported`;
      if (!isMine(parents[0])) return `creates ${shown(rel)} as a partition of ${shown(parents[0]!)}, which is not the target`;
      mine.push(refOf(rel)!);
      return undefined;
    }
    case 'IndexStmt': {
      const why = onlyMine(s.relation as RangeVar, 'indexes');
      if (!why && typeof s.idxname === 'string') indexes.push({ schema: (s.relation as RangeVar).schemaname!, name: s.idxname });
      return why;
    }
    case 'AlterTableStmt': {
      if (s.objtype !== 'OBJECT_TABLE') return `alters ${String(s.objtype).replace('OBJECT_', '').toLowerCase()} ${shown(s.relation as RangeVar)}; only ALTER TABLE of the target is allowed`;
      const why = onlyMine(s.relation as RangeVar, 'alters');
      if (why) return why;
      for (const c of (s.cmds as Node[]).map((n) => n.AlterTableCmd as Node)) {
        const part = (c.def as Node | undefined)?.PartitionCmd as Node | undefined;
        if (part && !isMine(part.name as RangeVar)) return `attaches or detaches ${shown(part.name as RangeVar)}, which is not the target's own partition`;
      }
      return undefined;
    }
    case 'CreatePolicyStmt':
      return onlyMine(s.table as RangeVar, 'creates a policy on');
    case 'CreateTrigStmt': {
      const why = onlyMine(s.relation as RangeVar, 'creates a trigger on');
      if (why) return why;
      if (s.constrrel !== undefined && !isMine(s.constrrel as RangeVar)) return `creates a constraint trigger FROM ${shown(s.constrrel as RangeVar)}, which is not the target`;
      return undefined;
    }
    case 'GrantStmt': {
      const what = String(s.objtype).replace('OBJECT_', '').toLowerCase();
      if (s.targtype !== 'ACL_TARGET_OBJECT' || s.objtype !== 'OBJECT_TABLE') return `grants or revokes on ${s.targtype === 'ACL_TARGET_OBJECT' ? `a ${what}` : `all ${what}s in a schema`}; only privileges on the target may be granted`;
      for (const o of (s.objects as Node[]).map((n) => n.RangeVar as RangeVar)) {
        const why = onlyMine(o, 'grants or revokes on');
        if (why) return why;
      }
      return undefined;
    }
    case 'CommentStmt': {
      const names = (((s.object as Node).List as Node | undefined)?.items as Node[] | undefined ?? []).map((n) => String((n.String as Node | undefined)?.sval));
      const rel = (schemaAt: number): RangeVar => ({ schemaname: names.length > schemaAt + 1 ? names[schemaAt] : undefined, relname: names[schemaAt + 1] ?? names[schemaAt]! });
      switch (s.objtype) {
        case 'OBJECT_TABLE': return onlyMine(rel(0), 'comments on');
        case 'OBJECT_COLUMN': case 'OBJECT_TABCONSTRAINT': case 'OBJECT_POLICY': case 'OBJECT_TRIGGER':
          return names.length === 3 ? onlyMine(rel(0), `comments on a ${String(s.objtype).replace('OBJECT_', '').toLowerCase()} of`) : `names the table of the commented object without its schema; write schema.table`;
        case 'OBJECT_INDEX': {
          // An index the DDL names, or one PostgreSQL named (a primary key's): in the target's schema; the catalog comparison checks it is the target's.
          const r = rel(0);
          if (!r.schemaname) return `comments on index ${r.relname} without its schema; write schema.index`;
          return indexes.some((x) => sameTableRef(x, refOf(r)!)) || mine.some((m) => m.schema === r.schemaname) ? undefined : `comments on index ${shown(r)}, which is not the target's`;
        }
        default: return `comments on a ${String(s.objtype).replace('OBJECT_', '').toLowerCase()}; only comments on the target, its columns, constraints, indexes, policies and triggers are allowed`;
      }
    }
    default:
      return undefined;
  }
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
