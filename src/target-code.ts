/**
 * The catalog half of "the plan is checked as code" for the target and the mapping, at preflight. The parser
 * (src/plan/ddl-code.ts) sees names as written; PostgreSQL resolves overloads, search_path, operators and casts.
 * So the functions the target's defaults, generated columns, CHECK and exclusion constraints, index expressions
 * and predicates and partition keys really call are read from pg_depend once the DDL has run in preflight's
 * always-rolled-back transaction (the target and all its partitions). Each must be
 *  - used the same way by the source already (same kind of object: a CHECK calling public.valid_email, a
 *    DEFAULT extensions.uuid_generate_v4()): it runs on every write of the live table today, and the default
 *    target is `LIKE source INCLUDING ALL`, so refusing it would refuse the table, not the plan;
 *  - otherwise a built-in of pg_catalog (volatile ones too: now(), gen_random_uuid(), nextval) that is not on
 *    the never-list (src/plan/expressions.ts), or a function the plan lists under allowFunctions.
 * The only relations they may read are the target's own (its sequences) or those the source's objects read the
 * same way (a LIKE target's serial default uses the source's sequence). Policies and triggers are not read here:
 * neither runs for safeshift before cutover (its copy bypasses RLS as owner; the target's triggers are inert
 * while it is filled), and their never-list functions are refused by the parser.
 * Because running the DDL can itself evaluate an expression (a non-volatile ADD COLUMN default is computed once;
 * the planner folds an IMMUTABLE function with constant arguments in an index or generated expression), the
 * functions named in those expressions are looked up by name first, before the DDL runs, with the same rule.
 */
import type pg from 'pg';
import { expressionFunctionProblems, functionKey, neverFunction } from './plan/expressions';
import { mappedExpression, plainColumn, type MappedColumn } from './projection';
import { errorText } from './redact';
import { displayName, qualified, type TableRef } from './sql';
import { targetDdlCalls } from './target-ddl';

export interface CodeUse { kind: string; label: string; what: 'function' | 'relation'; oid: string; schema: string; name: string; via: string | null; owned: boolean }

/**
 * What the defaults, constraints, indexes and partition keys of `root` and its partitions call or read. Read once
 * for the source in preflight's transaction and given to both checks below (the DDL may not change the source).
 */
export async function codeUses(client: pg.Client, root: number): Promise<CodeUse[]> {
  const { rows } = await client.query<CodeUse>(
    `WITH RECURSIVE tree(oid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid),
     objs(kind, label, classid, objid, subid) AS (
       SELECT CASE WHEN a.attgenerated <> '' THEN 'generated column' ELSE 'default' END,
              format('column %s %s', quote_ident(a.attname), CASE WHEN a.attgenerated <> '' THEN 'GENERATED' ELSE 'DEFAULT' END)
                || CASE WHEN d.adrelid <> $1::oid THEN format(' (partition %s)', d.adrelid::regclass) ELSE '' END,
              'pg_attrdef'::regclass, d.oid, NULL::int
         FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE d.adrelid IN (SELECT oid FROM tree)
       UNION ALL
       SELECT 'constraint', format('constraint %s', quote_ident(c.conname)), 'pg_constraint'::regclass, c.oid, NULL
         FROM pg_constraint c WHERE c.conrelid IN (SELECT oid FROM tree) AND c.contype IN ('c', 'x')
       UNION ALL
       SELECT 'index', format('index %s', i.indexrelid::regclass), 'pg_class'::regclass, i.indexrelid, NULL
         FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM tree)
       UNION ALL
       SELECT 'partition key', format('partition key of %s', pt.partrelid::regclass), 'pg_class'::regclass, pt.partrelid, 0
         FROM pg_partitioned_table pt WHERE pt.partrelid IN (SELECT oid FROM tree)),
     deps AS (
       SELECT o.kind, o.label, d.refclassid, d.refobjid FROM objs o
         JOIN pg_depend d ON d.classid = o.classid AND d.objid = o.objid AND (o.subid IS NULL OR d.objsubid = o.subid) AND d.deptype = 'n')
     SELECT kind, label, 'function' AS what, p.oid::text AS oid, n.nspname AS schema, p.proname AS name, NULL AS via, false AS owned
       FROM deps JOIN pg_proc p ON deps.refclassid = 'pg_proc'::regclass AND p.oid = deps.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace
     UNION ALL
     SELECT kind, label, 'function', p.oid::text, n.nspname, p.proname, format('operator %s', o.oid::regoperator), false
       FROM deps JOIN pg_operator o ON deps.refclassid = 'pg_operator'::regclass AND o.oid = deps.refobjid
       JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace n ON n.oid = p.pronamespace
     UNION ALL
     SELECT kind, label, 'relation', c.oid::text, n.nspname, c.relname, NULL,
            EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = c.oid AND o.deptype IN ('a', 'i')
                       AND o.refclassid = 'pg_class'::regclass AND o.refobjid IN (SELECT oid FROM tree))
       FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid NOT IN (SELECT oid FROM tree)`,
    [root],
  );
  return rows;
}

const key = (u: Pick<CodeUse, 'kind' | 'what' | 'oid'>) => `${u.kind}:${u.what}:${u.oid}`;
const allowKeys = (allowed: readonly TableRef[]) => new Set(allowed.map(functionKey));

/**
 * After the DDL ran (preflight's transaction): what the target's defaults, generated columns, constraints, indexes
 * and partition keys call, by the rule at the top. `field`: create / createFile / target (the default LIKE target).
 */
export async function targetCodeProblems(
  client: pg.Client, targetOid: number, sourceUses: readonly CodeUse[], allowed: readonly TableRef[], field: string,
): Promise<string[]> {
  const source = new Set(sourceUses.map(key));
  const allow = allowKeys(allowed);
  const problems = new Set<string>();
  for (const u of await codeUses(client, targetOid)) {
    if (source.has(key(u))) continue;
    const name = `${u.schema}.${u.name}`;
    const how = u.via ? ` (${u.via})` : '';
    const notSource = `the source's ${u.kind === 'default' ? 'defaults' : `${u.kind}s`} do not`;
    if (u.what === 'relation') {
      if (!u.owned) problems.add(`${field}: ${u.label} reads ${name}, which is not the target's own (${notSource}); a default, CHECK or index of the target may read only the target and its sequences`);
    } else if (neverFunction(u.name)) {
      problems.add(`${field}: ${u.label} calls ${name}${how}, which is never allowed in target DDL (it runs SQL, reads relations or files, or acts outside the transaction)`);
    } else if (u.schema !== 'pg_catalog' && !allow.has(name)) {
      problems.add(`${field}: ${u.label} calls ${name}${how}, which is not a built-in and ${notSource} call it; list it under allowFunctions if it is safe to run on every copied row`);
    }
  }
  return [...problems];
}

/**
 * Before the DDL runs: every function (or operator's function) a row-evaluated expression of it names must be a
 * built-in, listed under allowFunctions, or one the source's objects call. By name, conservatively: an unqualified
 * name counts every function of that name on the search path outside pg_catalog.
 */
export async function ddlCallProblems(client: pg.Client, ddl: string, field: string, sourceUses: readonly CodeUse[], allowed: readonly TableRef[]): Promise<string[]> {
  const calls = await targetDdlCalls(ddl, field);
  if (calls.length === 0) return [];
  const allow = allowKeys(allowed);
  for (const u of sourceUses) if (u.what === 'function') allow.add(`${u.schema}.${u.name}`);
  const problems = new Set<string>();
  // One lookup per name: every CHECK names `=` or `>`, and each lookup is a round trip.
  const found = new Map<string, { name: string; via: string | null }[]>();
  for (const c of calls) {
    const inSchema = `(n.nspname::text = $1::text OR ($1::text IS NULL AND n.nspname = ANY (current_schemas(false))))`;
    const lookup = JSON.stringify([c.schema ?? null, c.name, c.operator]);
    const rows = found.get(lookup) ?? (await client.query<{ name: string; via: string | null }>(c.operator
      ? `SELECT format('%s.%s', pn.nspname, p.proname) AS name, format('operator %s', o.oid::regoperator) AS via
           FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace pn ON pn.oid = p.pronamespace
          WHERE o.oprname = $2 AND pn.nspname <> 'pg_catalog' AND ${inSchema}`
      : `SELECT format('%s.%s', n.nspname, p.proname) AS name, NULL AS via FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.proname = $2 AND n.nspname <> 'pg_catalog' AND ${inSchema}`,
      [c.schema ?? null, c.name],
    )).rows;
    found.set(lookup, rows);
    for (const r of rows) {
      if (allow.has(r.name)) continue;
      problems.add(`${c.where}: calls ${r.name}${r.via ? ` (${r.via})` : ''}, which is not a built-in and the source does not call it (refused before the DDL runs: ` +
        'PostgreSQL may evaluate it while it runs); list it under allowFunctions if it is safe to run on every copied row');
    }
  }
  return [...problems];
}

/**
 * Each mapping (or reverse) expression on its own, so the problem names the column that is wrong. The catalog
 * check comes first and is made from a view, which is never planned: the SELECT that checks the expression
 * compiles and casts is planned, and the planner folds an IMMUTABLE function with constant arguments (runs it),
 * so a mislabelled user function would run before it is refused. With a problem the SELECT is not run at all.
 * Extended protocol: the text must be exactly one statement, so an expression cannot smuggle in a second.
 */
export async function checkMappedExpressions(
  client: pg.Client, columns: MappedColumn[], over: TableRef, field: string, problems: string[], allowed: TableRef[],
): Promise<void> {
  for (const c of columns) {
    if (!plainColumn(c.expr)) {
      const found = await expressionFunctionProblems(client, c.expr, over, `${field}.${c.target}`, allowed);
      problems.push(...found);
      if (found.length) continue;
    }
    await client.query('SAVEPOINT expr');
    try {
      await client.query({ text: `SELECT ${mappedExpression(c)} FROM ${qualified(over)} LIMIT 0`, queryMode: 'extended' } as pg.QueryConfig);
      await client.query('RELEASE SAVEPOINT expr');
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT expr');
      problems.push(`${field}.${c.target}: ${c.expr} does not work over ${displayName(over)}: ${errorText(err)}`);
    }
  }
}
