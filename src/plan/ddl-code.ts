/**
 * The expressions inside the plan's target DDL, checked as code by PostgreSQL's parser, without a database. Which
 * object a statement touches is src/target-ddl.ts; this is what its expressions may call. A target column's
 * DEFAULT (every copied row of a column the mapping leaves out gets it), a CHECK, a generated column, an index
 * expression or predicate, a partition key or bound, an ALTER ... TYPE ... USING: PostgreSQL evaluates them on
 * every row the copy writes, or once while the DDL runs (a non-volatile ADD COLUMN default, constants folded in
 * an index or generated expression), all before any approval. So:
 *  - no function of the never-list (src/plan/expressions.ts: query_to_xml, dblink*, pg_read_file, lo_*,
 *    set_config, ...) anywhere in the DDL, policies and trigger conditions included;
 *  - no subquery, except in a policy's USING / WITH CHECK: PostgreSQL refuses one in a default, CHECK, index or
 *    generated column anyway (refused here first, named), while a policy that looks up a membership table
 *    (`USING (org_id IN (SELECT org_id FROM public.members WHERE user_id = auth.uid()))`, Supabase's pattern) is
 *    legitimate, and a policy never runs for safeshift: the owner's copy and replay bypass RLS, and the policies
 *    apply to the application only after the cutover an approver allowed;
 *  - volatile built-ins are normal in DDL (`DEFAULT gen_random_uuid()`, `now()`, `clock_timestamp()`,
 *    `nextval(...)` of a serial, `current_setting(...)` behind Supabase's auth.uid()) and stay accepted.
 * Which functions the expressions really call (overloads, user functions, operators' functions) is settled
 * against the catalog at preflight (src/target-code.ts), before and after the DDL runs in its rehearsal.
 */
import { parsedStatements } from '../statements';
import { neverFunction } from './expressions';

type Node = Record<string, unknown>;

/** A function or operator a row-evaluated DDL expression calls, by name as written (schema when qualified). */
export interface DdlCall {
  schema?: string;
  name: string;
  operator: boolean;
  /** Where, for messages: `statement 1 (CreateStmt), column n DEFAULT`. */
  where: string;
}

/**
 * Problems of one statement's expressions (`at`: `create: statement 2 (AlterTableStmt)`), and the functions and
 * operators its row-evaluated expressions call (not a policy's, not a trigger's WHEN: neither runs for safeshift
 * before cutover, the target's triggers being inert while it is filled, src/inert-triggers.ts).
 */
export function ddlStatementCode(stmt: Node, at: string, what = 'target DDL'): { problems: string[]; calls: DdlCall[] } {
  const problems = new Set<string>();
  const calls: DdlCall[] = [];
  const kind = Object.keys(stmt)[0] ?? 'unknown';
  const visit = (value: unknown, place: string, rowEvaluated: boolean): void => {
    if (Array.isArray(value)) {
      for (const v of value) visit(v, place, rowEvaluated);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const keys = Object.keys(value);
    if (!(keys.length === 1 && /^[A-Z]/.test(keys[0]!))) {
      for (const k of keys) visit((value as Node)[k], place, rowEvaluated);
      return;
    }
    const node = keys[0]!;
    const payload = (value as Node)[node] as Node;
    const here = placeOf(node, payload, place);
    const where = here ? `${at}, ${here}` : at;
    if (node === 'SubLink' && kind !== 'CreatePolicyStmt') {
      problems.add(`${where}: a subquery is not allowed in ${what} (only in a policy's USING / WITH CHECK); a default, CHECK, index or generated column sees only its own row`);
      return;
    }
    if (node === 'FuncCall' || (node === 'A_Expr' && payload.kind === 'AEXPR_OP')) {
      const names = ((node === 'FuncCall' ? payload.funcname : payload.name) as Node[]).map((n) => String((n.String as Node | undefined)?.sval));
      const name = names.at(-1)!;
      if (node === 'FuncCall' && neverFunction(name)) {
        problems.add(`${where}: function ${names.join('.')} is never allowed in ${what} (it runs SQL, reads relations or files, or acts outside the transaction)`);
      }
      if (rowEvaluated) calls.push({ ...(names.length > 1 ? { schema: names.at(-2)! } : {}), name, operator: node === 'A_Expr', where });
    }
    for (const k of Object.keys(payload)) {
      const sub = subPlace(node, k, payload);
      visit(payload[k], sub ?? here, rowEvaluated && !(node === 'CreateTrigStmt' && k === 'whenClause'));
    }
  };
  visit(stmt, '', kind !== 'CreatePolicyStmt');
  return { problems: [...problems], calls };
}

const CONSTRAINT_WORDS: Record<string, string> = {
  CONSTR_DEFAULT: 'DEFAULT', CONSTR_CHECK: 'CHECK', CONSTR_GENERATED: 'GENERATED', CONSTR_EXCLUSION: 'EXCLUDE',
};

/** Where in its statement a node is, for messages (the column, constraint, index, policy or trigger). */
function placeOf(node: string, p: Node, place: string): string {
  const join = (...parts: (string | undefined)[]) => parts.filter((x) => x).join(' ');
  switch (node) {
    case 'ColumnDef': return typeof p.colname === 'string' ? `column ${p.colname}` : place; // ALTER ... TYPE's has none
    case 'Constraint': return join(place, CONSTRAINT_WORDS[String(p.contype)] ?? 'constraint', typeof p.conname === 'string' ? p.conname : undefined);
    case 'AlterTableCmd': {
      const column = typeof p.name === 'string' && p.subtype !== 'AT_AddConstraint' ? `column ${p.name}` : undefined;
      return join(column, p.subtype === 'AT_ColumnDefault' ? 'DEFAULT' : p.subtype === 'AT_AlterColumnType' ? 'TYPE ... USING' : undefined);
    }
    case 'IndexStmt': return join('index', typeof p.idxname === 'string' ? p.idxname : undefined);
    case 'CreatePolicyStmt': return `policy ${String(p.policy_name)}`;
    case 'CreateTrigStmt': return `trigger ${String(p.trigname)}`;
    default: return place;
  }
}

/** A clause of a statement that names its own place (an index's predicate, a partition key), or undefined. */
function subPlace(node: string, key: string, p: Node): string | undefined {
  const index = `index${typeof p.idxname === 'string' ? ` ${p.idxname}` : ''}`;
  if (node === 'IndexStmt' && key === 'indexParams') return `${index} expression`;
  if (node === 'IndexStmt' && key === 'whereClause') return `${index} WHERE`;
  if (node === 'CreatePolicyStmt' && (key === 'qual' || key === 'with_check')) return `policy ${String(p.policy_name)} ${key === 'qual' ? 'USING' : 'WITH CHECK'}`;
  if (node === 'CreateTrigStmt' && key === 'whenClause') return `trigger ${String(p.trigname)} WHEN`;
  if (node === 'CreateStmt' && key === 'partspec') return 'PARTITION BY';
  if (node === 'CreateStmt' && key === 'partbound') return 'partition bound';
  return undefined;
}

/**
 * The same check for an in-place plan's `alter` (src/in-place.ts): its ADD COLUMN default is evaluated once on the
 * live table, its CHECK on every row when validated, its index expressions on every row. Text that does not parse
 * is classifyAlter's to report.
 */
export async function alterCodeProblems(sql: string): Promise<string[]> {
  let stmts: Node[];
  try {
    stmts = await parsedStatements(sql);
  } catch {
    return [];
  }
  return stmts.flatMap((stmt, i) => ddlStatementCode(stmt, `alter: statement ${i + 1} (${Object.keys(stmt)[0] ?? 'unknown'})`, 'an in-place change').problems);
}
