/**
 * Plan expressions (`columns`, `reverse`, and the compatibility view built from them) are operator SQL that runs
 * on every copied and replayed row, before any approval. They are checked as code, by PostgreSQL's own parser
 * (libpg-query), before anything connects: an expression may read only the row's columns (bare names), constants,
 * operators, casts, CASE / COALESCE / NULLIF / GREATEST / LEAST, arrays, rows, and function calls. No subquery,
 * no other relation, no `table.column`, no parameters, no window or aggregate. Which functions and operators it
 * may call is settled at preflight against the catalog (`expressionFunctionProblems`): built-ins of pg_catalog
 * that are immutable or stable, or functions the plan lists under `allowFunctions`; never a denied one (deniedFunction),
 * which run SQL, read files or relations, or depend on session settings.
 */
import type pg from 'pg';
import { loadModule, parse } from 'libpg-query';
import { errorText } from '../redact';
import { displayName, qualified, type TableRef } from '../sql';

/**
 * Functions never allowed anywhere the plan puts SQL (row expressions, target DDL, the throttle query): they run
 * SQL text the parser cannot check, reach other databases or sessions (dblink_exec writes through a session of its
 * own, which READ ONLY and the rollback do not stop), read or write server files or large objects, change settings,
 * signal backends, take session locks that outlive a rollback, or stall. Matched by name in any schema, even when
 * listed under allowFunctions.
 */
const NEVER_FUNCTIONS: readonly RegExp[] = [
  /^(query|table|cursor|schema|database)_to_xml/, // run a query / read a table
  /^query_to_xmlschema$/, /^ts_stat$/, /^ts_rewrite$/, // run SQL text
  /^dblink/, /^postgres_fdw/, // other databases
  /^pg_read_(binary_)?file$/, /^pg_ls_/, /^pg_stat_file$/, /^pg_file_/, // server files
  /^lo_/, /^loread$/, /^lowrite$/, // large objects
  /^set_config$/, // session settings
  /^pg_(sleep|advisory|try_advisory|notify|terminate_backend|cancel_backend|reload_conf|rotate_logfile)/,
  /^setval$/, // another sequence's state
];

/**
 * Also refused in a row expression (columns, reverse, where), though legitimate in DDL or a throttle query: a mapping
 * that depends on a setting would copy one value and replay another, catalog definitions and statistics are not row
 * data, and sequences are not repeatable on replay. (A target column's DEFAULT nextval(...) or current_setting(...),
 * Supabase's auth.uid(), is normal DDL.)
 */
const ROW_ONLY_DENIED: readonly RegExp[] = [
  /^(current_setting|pg_settings_get_flags)$/,
  /^pg_get_/, /^pg_stat_get_/, /^pg_catalog_/,
  /^(nextval|currval|lastval)$/,
];

/** A function never allowed in a row expression (columns, reverse, where). */
export function deniedFunction(name: string): boolean {
  return neverFunction(name) || ROW_ONLY_DENIED.some((re) => re.test(name));
}

/** A function never allowed anywhere in a plan: target DDL and the throttle query included. */
export function neverFunction(name: string): boolean {
  return NEVER_FUNCTIONS.some((re) => re.test(name));
}

/** Node kinds an expression may contain (libpg-query's raw parse tree); anything else is refused by name. */
const ALLOWED_NODES = new Set([
  'ColumnRef', 'A_Const', 'TypeCast', 'A_Expr', 'BoolExpr', 'NullTest', 'BooleanTest', 'CaseExpr', 'CaseWhen',
  'CoalesceExpr', 'MinMaxExpr', 'FuncCall', 'A_ArrayExpr', 'A_Indirection', 'A_Indices', 'RowExpr', 'CollateClause',
  'SQLValueFunction', 'List', 'String', 'Integer', 'Float', 'Boolean', 'BitString', 'TypeName',
]);

/** What a raw SELECT may carry besides its one target for `SELECT (expr)` to be just the expression. */
const SELECT_CLAUSES = [
  'distinctClause', 'intoClause', 'fromClause', 'whereClause', 'groupClause', 'havingClause', 'windowClause',
  'valuesLists', 'sortClause', 'limitOffset', 'limitCount', 'lockingClause', 'withClause', 'larg', 'rarg',
];

const NODE_WORDS: Record<string, string> = {
  SubLink: 'a subquery', ParamRef: 'a parameter ($n)', A_Star: '*', GroupingFunc: 'GROUPING', SetToDefault: 'DEFAULT',
  RangeVar: 'a relation', RangeSubselect: 'a subquery', XmlExpr: 'an XML expression', XmlSerialize: 'XMLSERIALIZE',
};

let loaded: Promise<void> | undefined;
/** libpg-query's WASM module, loaded once. */
export function parserReady(): Promise<void> {
  loaded ??= loadModule();
  return loaded;
}

type Node = Record<string, unknown>;

/**
 * Static problems of one expression (no database), each starting with `field` (e.g. `columns.email`). The text
 * is parsed exactly as it runs, `(expr)` inside a SELECT, so text that closes the parenthesis and goes on
 * (`x) FROM pg_authid; DROP ...`) is refused here, not only by the extended protocol.
 */
export async function expressionProblems(expr: string, field: string): Promise<string[]> {
  let stmts: { stmt?: Node }[];
  try {
    stmts = (await parse(`SELECT (\n${expr}\n)`)).stmts ?? [];
  } catch (err) {
    return [`${field}: does not parse as one SQL expression: ${(err as Error).message}`];
  }
  const select = stmts.length === 1 ? (stmts[0]!.stmt?.SelectStmt as Node | undefined) : undefined;
  const targets = select?.targetList as Node[] | undefined;
  if (!select || targets?.length !== 1 || SELECT_CLAUSES.some((k) => select[k] !== undefined && !(Array.isArray(select[k]) && (select[k] as unknown[]).length === 0))
    || (select.op !== undefined && select.op !== 'SETOP_NONE')) {
    return [`${field}: must be one SQL expression over the row's columns, not a statement or a list`];
  }
  const res = targets[0]!.ResTarget as Node;
  const problems = new Set<string>();
  walk(res.val, field, problems);
  return [...problems];
}

function walk(value: unknown, field: string, problems: Set<string>): void {
  if (Array.isArray(value)) {
    for (const v of value) walk(v, field, problems);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const keys = Object.keys(value);
  // A node is `{ Kind: payload }`; anything else is a struct inside a payload (a type name, a window, a const).
  if (keys.length === 1 && /^[A-Z]/.test(keys[0]!)) {
    const kind = keys[0]!;
    const payload = (value as Node)[kind] as Node;
    if (!ALLOWED_NODES.has(kind)) {
      problems.add(`${field}: ${NODE_WORDS[kind] ?? kind} is not allowed in a plan expression (only the row's columns, constants, operators, casts, CASE and functions)`);
      return;
    }
    if (kind === 'ColumnRef') {
      const fields = payload.fields as Node[];
      if (fields.length !== 1 || !fields[0]!.String) {
        problems.add(`${field}: ${fields.map((f) => (f.String as Node | undefined)?.sval ?? '*').join('.')} is not a bare column name; an expression reads only its own row's columns`);
      }
      return;
    }
    if (kind === 'FuncCall') funcCallProblems(payload, field, problems);
    for (const k of Object.keys(payload)) walk(payload[k], field, problems);
    return;
  }
  for (const k of keys) walk((value as Node)[k], field, problems);
}

function funcCallProblems(call: Node, field: string, problems: Set<string>): void {
  const name = (call.funcname as Node[]).map((n) => String((n.String as Node).sval)).join('.');
  const bare = name.split('.').pop()!;
  if (deniedFunction(bare)) problems.add(`${field}: function ${name} is never allowed in a plan expression (it runs SQL, reads relations, files or settings)`);
  if (call.over !== undefined) problems.add(`${field}: ${name}(...) OVER is a window function; an expression sees one row`);
  if (call.agg_star || call.agg_order || call.agg_filter || call.agg_distinct || call.agg_within_group) {
    problems.add(`${field}: ${name} is used as an aggregate; an expression sees one row`);
  }
}

/** A function named under the plan's `allowFunctions` (schema.name), as stored. */
export function functionKey(ref: TableRef): string {
  return `${ref.schema}.${ref.name}`;
}

/**
 * The catalog part, at preflight: the functions an expression really calls, as PostgreSQL resolved them
 * (overloads, search_path, casts, operators' functions), read from the dependencies of a view made over it in
 * preflight's transaction (a savepoint rolled back at once). Each must be a built-in of pg_catalog that is not
 * volatile, or listed under allowFunctions; none may be denied; the only relation it may read is `over`.
 */
export async function expressionFunctionProblems(
  client: pg.Client, expr: string, over: TableRef, field: string, allowed: readonly TableRef[],
): Promise<string[]> {
  const allow = new Set(allowed.map(functionKey));
  await client.query('SAVEPOINT expr_deps');
  try {
    const view = `pg_temp.safeshift_expr_${process.pid}`;
    // The expression as written, without the cast to the column's type (the target DDL chose that type).
    try {
      await client.query({ text: `CREATE TEMPORARY VIEW ${view.split('.')[1]} AS SELECT (\n${expr}\n) AS v FROM ${qualified(over)}`, queryMode: 'extended' } as pg.QueryConfig);
    } catch (err) {
      return [`${field}: ${expr} does not work over ${displayName(over)}: ${errorText(err)}`];
    }
    const { rows } = await client.query<{ kind: string; schema: string; name: string; volatile: string; via: string | null }>(
      `WITH deps AS (
         SELECT d.refclassid, d.refobjid FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
          WHERE r.ev_class = $1::regclass)
       SELECT 'function' AS kind, n.nspname AS schema, p.proname AS name, p.provolatile::text AS volatile, NULL AS via
         FROM deps JOIN pg_proc p ON deps.refclassid = 'pg_proc'::regclass AND p.oid = deps.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace
       UNION ALL
       SELECT 'function', n.nspname, p.proname, p.provolatile::text, format('operator %s', o.oid::regoperator)
         FROM deps JOIN pg_operator o ON deps.refclassid = 'pg_operator'::regclass AND o.oid = deps.refobjid
         JOIN pg_proc p ON p.oid = o.oprcode JOIN pg_namespace n ON n.oid = p.pronamespace
       UNION ALL
       SELECT 'relation', n.nspname, c.relname, '', NULL
         FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid <> $1::regclass AND c.oid <> $2::regclass`,
      [view, qualified(over)],
    );
    const problems: string[] = [];
    for (const r of rows) {
      const name = `${r.schema}.${r.name}`;
      const how = r.via ? ` (${r.via})` : '';
      if (r.kind === 'relation') problems.push(`${field}: reads ${name}; an expression may read only its own row of ${displayName(over)}`);
      else if (deniedFunction(r.name)) problems.push(`${field}: calls ${name}${how}, which is never allowed in a plan expression (it runs SQL, reads relations, files or settings)`);
      else if (allow.has(name)) continue;
      else if (r.schema !== 'pg_catalog') problems.push(`${field}: calls ${name}${how}, which is not a built-in; list it under allowFunctions if it is safe to run on every row`);
      else if (r.volatile === 'v') problems.push(`${field}: calls ${name}${how}, which is volatile; list it under allowFunctions if it is safe to run on every row`);
    }
    return [...new Set(problems)];
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT expr_deps');
  }
}
