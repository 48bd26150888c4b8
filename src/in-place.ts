/**
 * The catalog-only fast path (plan field `alter:`): which changes need no rewrite of the table, and for each the
 * step applied at cutover, its inverse (the rollback) and the step that waits for the drop gate, side by side.
 * Pure: the plan's SQL is classified from libpg-query's parse tree; the SQL run is built here with the one
 * quoting helper, except where the plan's own statement is run as written (ADD COLUMN, ADD CONSTRAINT, CREATE
 * INDEX CONCURRENTLY), which is the parsed and checked statement text. Not for workflow code (native module).
 */
import { parsedStatementTexts, UnparsableSql } from './statements';
import { displayName, nameWithSuffix, qualified, quoteIdent, type TableRef } from './sql';

/** One catalog-only change, in the order the plan gives them; `statement` is its 1-based statement number. */
export type InPlaceOp = { statement: number } & (
  | { kind: 'rename_column'; from: string; to: string }
  /** `sql`: the plan's ALTER TABLE ... ADD COLUMN statement. `functions`: names its DEFAULT calls (checked not volatile). */
  | { kind: 'add_column'; column: string; sql: string; functions: string[][] }
  | { kind: 'drop_column'; column: string }
  | { kind: 'rename_table'; from: string; to: string }
  /** `sql`: the plan's ADD CONSTRAINT, always NOT VALID; `validate`: the plan did not say NOT VALID, so it is validated next. */
  | { kind: 'add_constraint'; name: string; sql: string; validate: boolean }
  | { kind: 'validate_constraint'; name: string }
  | { kind: 'set_not_null'; column: string }
  | { kind: 'create_index'; name: string; sql: string }
);

export const COPY_PATH_HINT = 'use the copy path (target/create/columns) for it';

type Node = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A parse tree's relation as a TableRef; undefined when it is not schema-qualified. */
function relationOf(rel: Node | undefined): TableRef | undefined {
  if (!rel?.relname || !rel.schemaname) return undefined;
  return { schema: rel.schemaname, name: rel.relname };
}

const AT_NAMES: Record<string, string> = {
  AT_AlterColumnType: 'ALTER COLUMN TYPE (rewrites the table, or at least rebuilds its indexes under an exclusive lock)',
  AT_ColumnDefault: 'ALTER COLUMN SET/DROP DEFAULT',
  AT_DropNotNull: 'ALTER COLUMN DROP NOT NULL',
  AT_DropConstraint: 'DROP CONSTRAINT',
  AT_AddIndex: 'ADD PRIMARY KEY / UNIQUE (builds an index under an exclusive lock)',
  AT_SetLogged: 'SET LOGGED (rewrites the table)',
  AT_SetUnLogged: 'SET UNLOGGED (rewrites the table)',
  AT_SetTableSpace: 'SET TABLESPACE (rewrites the table)',
  AT_SetAccessMethod: 'SET ACCESS METHOD (rewrites the table)',
  AT_AddIdentity: 'ADD IDENTITY',
  AT_EnableRowSecurity: 'ENABLE ROW LEVEL SECURITY',
  AT_DisableRowSecurity: 'DISABLE ROW LEVEL SECURITY',
  AT_ChangeOwner: 'OWNER TO',
  AT_ClusterOn: 'CLUSTER ON',
};

/** Function names a DEFAULT expression calls (as written: [schema?, name]); checked against pg_proc at preflight. */
function calledFunctions(node: unknown, out: string[][] = []): string[][] {
  if (Array.isArray(node)) node.forEach((n) => calledFunctions(n, out));
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node as Node)) {
      if (k === 'FuncCall') out.push(((v as Node).funcname ?? []).map((s: Node) => String(s.String?.sval ?? '')));
      calledFunctions(v, out);
    }
  }
  return out;
}

/** Why a column definition in ADD COLUMN is not catalog-only, or undefined when it is. */
function addColumnProblem(def: Node): string | undefined {
  const typeName = ((def.typeName?.names ?? []) as Node[]).map((s) => s.String?.sval).join('.');
  if (/^(pg_catalog\.)?(small|big)?serial[248]?$/.test(typeName) || /^serial/.test(typeName)) return `column ${def.colname} is ${typeName}: its nextval() default is volatile and fills every row (a rewrite)`;
  const constraints = ((def.constraints ?? []) as Node[]).map((c) => c.Constraint as Node);
  const hasDefault = constraints.some((c) => c.contype === 'CONSTR_DEFAULT');
  for (const c of constraints) {
    if (c.contype === 'CONSTR_DEFAULT' || c.contype === 'CONSTR_NULL') continue;
    if (c.contype === 'CONSTR_NOTNULL') {
      if (!hasDefault) return `column ${def.colname} is NOT NULL without a DEFAULT: the existing rows would have none (add it nullable, fill it, then SET NOT NULL)`;
      continue;
    }
    const what = String(c.contype).replace('CONSTR_', '').replace('_', ' ');
    return `column ${def.colname} carries a ${what} constraint in its definition (add the column plain, then the constraint by its own statement: CHECK / FOREIGN KEY as NOT VALID, or a CREATE UNIQUE INDEX CONCURRENTLY)`;
  }
  return undefined;
}

/** One statement being classified: its number, text, and where its problems go. */
interface StatementContext {
  statement: number;
  text: string;
  /** `alter: statement N (Kind)`: how every problem starts. */
  at: string;
  problems: string[];
  /** A problem that points to the copy path. */
  refuse: (why: string) => void;
}

/**
 * Classify the plan's `alter` SQL for `source`. Every statement must name the table as it is named at that point
 * (schema-qualified; after a RENAME TO, the new name); each subcommand becomes one op. Problems name `alter`, the
 * statement and what is refused, and point to the copy path.
 */
export async function classifyAlter(sql: string, source: TableRef): Promise<{ ops: InPlaceOp[]; problems: string[]; finalName: TableRef }> {
  let stmts: { stmt: Node; text: string }[];
  try {
    stmts = await parsedStatementTexts(sql);
  } catch (err) {
    if (err instanceof UnparsableSql) return { ops: [], problems: [`alter: does not parse: ${err.message}`], finalName: source };
    throw err;
  }
  const ops: InPlaceOp[] = [];
  const problems: string[] = [];
  let current = source;
  if (stmts.length === 0) problems.push('alter: holds no statement');
  stmts.forEach(({ stmt, text }, i) => {
    const kind = Object.keys(stmt)[0] ?? 'unknown';
    const body = stmt[kind] as Node;
    const at = `alter: statement ${i + 1} (${kind})`;
    const c: StatementContext = { statement: i + 1, text, at, problems, refuse: (why) => problems.push(`${at} ${why}; ${COPY_PATH_HINT}`) };
    const onTable = (rel: Node | undefined): boolean => {
      const ref = relationOf(rel);
      if (ref && ref.schema === current.schema && ref.name === current.name) return true;
      const named = ref ? displayName(ref) : rel?.relname ? `${rel.relname} (not schema-qualified)` : 'no table';
      problems.push(`${at} names ${named}; an in-place plan changes only its source, here called ${displayName(current)} (schema-qualified)`);
      return false;
    };
    if (kind === 'AlterTableStmt') {
      if (body.objtype !== 'OBJECT_TABLE') return c.refuse(`alters a ${String(body.objtype).replace('OBJECT_', '').toLowerCase()}, not a table`);
      if (!onTable(body.relation)) return;
      const cmds = ((body.cmds ?? []) as Node[]).map((x) => x.AlterTableCmd as Node);
      for (const cmd of cmds) {
        const op = alterTableCmdOp(cmd, cmds.length === 1, c);
        if (op) ops.push(op);
      }
      return;
    }
    if (kind === 'RenameStmt') {
      if (body.renameType === 'OBJECT_COLUMN' && body.relationType === 'OBJECT_TABLE') {
        if (onTable(body.relation)) ops.push({ statement: c.statement, kind: 'rename_column', from: body.subname, to: body.newname });
        return;
      }
      if (body.renameType === 'OBJECT_TABLE') {
        if (!onTable(body.relation)) return;
        ops.push({ statement: c.statement, kind: 'rename_table', from: current.name, to: body.newname });
        current = { schema: current.schema, name: body.newname };
        return;
      }
      return c.refuse(`renames a ${String(body.renameType).replace('OBJECT_', '').toLowerCase()} (only columns and the table itself are renamed in place)`);
    }
    if (kind === 'IndexStmt') {
      if (!body.concurrent) return c.refuse('is CREATE INDEX without CONCURRENTLY (it blocks writes while it builds): write CREATE INDEX CONCURRENTLY');
      if (!body.idxname) { problems.push(`${at}: name the index, so that a rollback can drop it`); return; }
      if (body.if_not_exists) { problems.push(`${at}: IF NOT EXISTS would take a foreign index for ours; leave it out`); return; }
      if (onTable(body.relation)) ops.push({ statement: c.statement, kind: 'create_index', name: body.idxname, sql: text });
      return;
    }
    c.refuse('is not an ALTER TABLE, a RENAME or a CREATE INDEX CONCURRENTLY of the source');
  });
  for (const op of ops) {
    if (op.kind === 'add_constraint' && op.validate && !(await addsNotValid(op.sql))) problems.push(`alter: statement ${op.statement}: cannot be made NOT VALID as written; write NOT VALID yourself`);
  }
  return { ops, problems, finalName: current };
}

/** One ALTER TABLE subcommand as an op, or undefined (its problem recorded). `single`: the statement's only subcommand. */
function alterTableCmdOp(cmd: Node, single: boolean, c: StatementContext): InPlaceOp | undefined {
  const { statement, at, problems } = c;
  switch (cmd.subtype) {
    case 'AT_AddColumn': {
      const def = cmd.def?.ColumnDef as Node;
      // The plan's own statement is what runs: it must hold this one change only.
      if (!single) { problems.push(`${at}: give ADD COLUMN ${def.colname} as an ALTER TABLE statement of its own`); return undefined; }
      const why = addColumnProblem(def);
      if (why) { c.refuse(`is not catalog-only: ${why}`); return undefined; }
      const dflt = ((def.constraints ?? []) as Node[]).find((x) => x.Constraint?.contype === 'CONSTR_DEFAULT');
      return { statement, kind: 'add_column', column: def.colname, sql: c.text, functions: calledFunctions(dflt?.Constraint?.raw_expr) };
    }
    case 'AT_DropColumn':
      if (cmd.behavior === 'DROP_CASCADE') { c.refuse('drops a column with CASCADE (what depends on it would go too)'); return undefined; }
      return { statement, kind: 'drop_column', column: cmd.name };
    case 'AT_AddConstraint': {
      const con = cmd.def?.Constraint as Node;
      if (con.contype !== 'CONSTR_CHECK' && con.contype !== 'CONSTR_FOREIGN') {
        c.refuse(`adds a ${String(con.contype).replace('CONSTR_', '')} constraint (only CHECK and FOREIGN KEY are added in place, as NOT VALID then validated)`);
        return undefined;
      }
      if (!single) { problems.push(`${at}: give ADD CONSTRAINT as an ALTER TABLE statement of its own`); return undefined; }
      if (!con.conname) { problems.push(`${at}: name the constraint (ADD CONSTRAINT name ...), so that a rollback can drop it`); return undefined; }
      // On a line of its own: a trailing `-- comment` in the statement's text must not swallow it (checked after).
      return { statement, kind: 'add_constraint', name: con.conname, sql: con.skip_validation ? c.text : `${c.text}\nNOT VALID`, validate: !con.skip_validation };
    }
    case 'AT_ValidateConstraint':
      return { statement, kind: 'validate_constraint', name: cmd.name };
    case 'AT_SetNotNull':
      return { statement, kind: 'set_not_null', column: cmd.name };
    default:
      c.refuse(`is not catalog-only: ${AT_NAMES[cmd.subtype] ?? String(cmd.subtype).replace(/^AT_/, '')} is not one of the in-place changes ` +
        '(rename/add/drop column, rename table, CHECK/FOREIGN KEY NOT VALID + VALIDATE, SET NOT NULL, CREATE INDEX CONCURRENTLY)');
      return undefined;
  }
}

/** Whether `sql` is one ALTER TABLE ... ADD CONSTRAINT that PostgreSQL's parser reads as NOT VALID. */
async function addsNotValid(sql: string): Promise<boolean> {
  try {
    const stmts = await parsedStatementTexts(sql);
    const cmds = (stmts[0]?.stmt as Node | undefined)?.AlterTableStmt?.cmds as Node[] | undefined;
    return stmts.length === 1 && cmds?.length === 1 && cmds[0]!.AlterTableCmd?.def?.Constraint?.skip_validation === true;
  } catch {
    return false;
  }
}

/** The name a dropped column is hidden under between cutover and the drop: the application no longer sees it. */
export function hiddenColumnName(column: string, stamp: string): string {
  return nameWithSuffix(column, `_safeshift_retired_${stamp}`);
}

/** The temporary CHECK that lets SET NOT NULL skip its scan under the exclusive lock (PostgreSQL 12+). */
export function notNullCheckName(column: string, stamp: string): string {
  return nameWithSuffix(column, `_safeshift_nn_${stamp}`);
}

/** What the drop of a column needs to know from the catalog, read at preflight. */
export interface DroppedColumn {
  notNull: boolean;
  hasDefault: boolean;
}

/** An op resolved against the live table at preflight: what its rollback has to give back. */
export type ResolvedOp = InPlaceOp & { hidden?: string; relaxNotNull?: boolean; wasNotNull?: boolean };

/**
 * The SQL of each part of an op, on the table as it is named when the step runs (`t`). `apply` runs at cutover
 * (reversible), `revert` undoes it, `finish` runs after the drop gate (irreversible). Each statement is one
 * short transaction with lock_timeout; CREATE / DROP INDEX CONCURRENTLY outside any. The activity checks the
 * catalog before each step, so a retried step never runs twice.
 */
export function stepsOf(op: ResolvedOp, t: TableRef, stamp: string): { apply: string[]; revert: string[]; finish: string[] } {
  const table = qualified(t);
  const col = (name: string) => quoteIdent(name);
  switch (op.kind) {
    case 'rename_column':
      return { apply: [`ALTER TABLE ${table} RENAME COLUMN ${col(op.from)} TO ${col(op.to)}`], revert: [`ALTER TABLE ${table} RENAME COLUMN ${col(op.to)} TO ${col(op.from)}`], finish: [] };
    case 'add_column':
      return { apply: [op.sql], revert: [`ALTER TABLE ${table} DROP COLUMN IF EXISTS ${col(op.column)}`], finish: [] };
    case 'drop_column': {
      const hidden = op.hidden ?? hiddenColumnName(op.column, stamp);
      return {
        apply: [
          `ALTER TABLE ${table} RENAME COLUMN ${col(op.column)} TO ${col(hidden)}`,
          // The application's inserts no longer name the column: without a default, NOT NULL would refuse them.
          ...(op.relaxNotNull ? [`ALTER TABLE ${table} ALTER COLUMN ${col(hidden)} DROP NOT NULL`] : []),
        ],
        revert: [`ALTER TABLE ${table} RENAME COLUMN ${col(hidden)} TO ${col(op.column)}`],
        finish: [`ALTER TABLE ${table} DROP COLUMN IF EXISTS ${col(hidden)}`],
      };
    }
    case 'rename_table':
      return { apply: [`ALTER TABLE ${table} RENAME TO ${quoteIdent(op.to)}`], revert: [`ALTER TABLE ${table} RENAME TO ${quoteIdent(op.from)}`], finish: [] };
    case 'add_constraint':
      return {
        apply: [op.sql, ...(op.validate ? [`ALTER TABLE ${table} VALIDATE CONSTRAINT ${quoteIdent(op.name)}`] : [])],
        revert: [`ALTER TABLE ${table} DROP CONSTRAINT IF EXISTS ${quoteIdent(op.name)}`],
        finish: [],
      };
    case 'validate_constraint':
      // Validation only adds a promise that already holds: nothing to give back.
      return { apply: [`ALTER TABLE ${table} VALIDATE CONSTRAINT ${quoteIdent(op.name)}`], revert: [], finish: [] };
    case 'set_not_null': {
      const check = quoteIdent(notNullCheckName(op.column, stamp));
      return {
        apply: [
          `ALTER TABLE ${table} ADD CONSTRAINT ${check} CHECK (${col(op.column)} IS NOT NULL) NOT VALID`,
          `ALTER TABLE ${table} VALIDATE CONSTRAINT ${check}`,
          `ALTER TABLE ${table} ALTER COLUMN ${col(op.column)} SET NOT NULL`,
          `ALTER TABLE ${table} DROP CONSTRAINT ${check}`,
        ],
        revert: [`ALTER TABLE ${table} DROP CONSTRAINT IF EXISTS ${check}`, ...(op.wasNotNull ? [] : [`ALTER TABLE ${table} ALTER COLUMN ${col(op.column)} DROP NOT NULL`])],
        finish: [],
      };
    }
    case 'create_index':
      return { apply: [op.sql], revert: [`DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(t.schema)}.${quoteIdent(op.name)}`], finish: [] };
  }
}

/** One line per op, for the preflight report, status and audit: what changes at cutover, what the rollback does. */
export function describeOp(op: ResolvedOp): string {
  switch (op.kind) {
    case 'rename_column': return `rename column ${op.from} to ${op.to} (rollback: renames it back)`;
    case 'add_column': return `add column ${op.column} (rollback: drops it; what was written to it meanwhile is in the live table until then, not in the backup)`;
    case 'drop_column': return `drop column ${op.column}: hidden at cutover as ${op.hidden ?? '(retired name)'}${op.relaxNotNull ? ', its NOT NULL relaxed so inserts without it work' : ''}; dropped for good after the drop gate (rollback before then: renamed back, data intact)`;
    case 'rename_table': return `rename the table ${op.from} to ${op.to} (rollback: renames it back; no compatibility view under the old name)`;
    case 'add_constraint': return `add constraint ${op.name} NOT VALID${op.validate ? ', then VALIDATE (no write blocked)' : ''} (rollback: drops it)`;
    case 'validate_constraint': return `validate constraint ${op.name} (no write blocked; rollback: nothing to undo)`;
    case 'set_not_null': return `set NOT NULL on ${op.column} through a validated CHECK, so no scan under the exclusive lock (rollback: ${op.wasNotNull ? 'nothing to undo' : 'drops NOT NULL'})`;
    case 'create_index': return `create index ${op.name} concurrently (rollback: drops it concurrently; an invalid index left by a failed build is dropped)`;
  }
}

/** The preflight line that says which path a plan takes and why. */
export function pathNote(plan: { alter?: string; createSql?: string; columns: Record<string, string> }, ops: ResolvedOp[] = []): string {
  if (plan.alter) {
    const count = ops.length ? `${ops.length} change${ops.length === 1 ? '' : 's'}` : 'changes';
    return `path: in place (catalog only): ${count} to the table's catalog, no row copied or rewritten; ` +
      'a backup first, then each change at cutover with a short lock_timeout and retries, its inverse ready for a rollback until the drop gate';
  }
  const why = plan.createSql ? 'the plan gives a new table (create)' : 'the plan gives a target table made like the source';
  return `path: copy: ${why}${Object.keys(plan.columns).length ? ' and column expressions' : ''}, so every row is copied into it, kept in step by capture, validated and swapped in (give alter: for a catalog-only change done in place)`;
}
