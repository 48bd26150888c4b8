/**
 * What a layout asks of the database, scope by scope (the shared schema, the system schema, one schema per
 * project): every table with its expanded DDL, grants, row-level security flags and policies. Every piece of SQL
 * is expanded (src/layout/template.ts: variables become quoted tokens) and then parsed with PostgreSQL's own
 * parser (libpg-query) before anything connects: a table's DDL may create that table and its indexes, constraints
 * and comments, nothing else; a policy expression must be one expression. Not for workflow code (native module).
 */
import { canonicalJson } from '../identity';
import { parsedStatements } from '../statements';
import { displayName, qualified, quoteIdent, type TableRef } from '../sql';
import { LayoutError, projectsOf, type LayoutProject } from './load';
import type { Layout, LayoutSection, PolicyCommand, Privilege } from './schema';
import { expandSql, TemplateError, type TemplateVars } from './template';

export interface PolicySpec {
  name: string;
  command: PolicyCommand;
  roles: string[];
  permissive: boolean;
  using?: string;
  check?: string;
  /** The CREATE POLICY statement, checked. */
  statement: string;
}

export interface TableSpec {
  ref: TableRef;
  /** Layout field this table comes from, for messages (`project.tables[1]`). */
  field: string;
  ddl: string;
  grants: Record<string, Privilege[]>;
  policies: PolicySpec[];
  forceRls: boolean;
}

export type ScopeKind = 'shared' | 'system' | 'project';

export interface ScopeSpec {
  /** `shared`, `system`, or the project's slug. */
  scope: string;
  kind: ScopeKind;
  schema: string;
  usage: string[];
  tables: TableSpec[];
  project?: LayoutProject;
  /** A project schema's comment: its metadata (id, slug, owner, region, tier), so the database itself knows them. */
  comment?: string;
}

export interface LayoutModel {
  shared: ScopeSpec;
  system: ScopeSpec;
  projects: ScopeSpec[];
  membership: { table: TableRef; user: string; project: string };
  /** Every role the layout grants to or names in a policy. */
  roles: string[];
}

/** What a SELECT may carry besides its one target for `SELECT (expr)` to be just the expression. */
const SELECT_CLAUSES = [
  'distinctClause', 'intoClause', 'fromClause', 'whereClause', 'groupClause', 'havingClause', 'windowClause',
  'valuesLists', 'sortClause', 'limitOffset', 'limitCount', 'lockingClause', 'withClause', 'larg', 'rarg',
];

/** Table DDL statements allowed: the table itself, its indexes and comments, constraints added after. */
const DDL_STATEMENTS = new Set(['CreateStmt', 'IndexStmt', 'CommentStmt', 'AlterTableStmt']);

type Node = Record<string, unknown>;

export function scopeVars(layout: Layout, schema: string, project?: LayoutProject): TemplateVars {
  const vars: TemplateVars = {
    schema: { ident: [schema] }, shared: { ident: [layout.shared.schema] }, system: { ident: [layout.system.schema] },
  };
  if (project) {
    Object.assign(vars, {
      'project.schema': { ident: [project.schema] },
      'project.id': { literal: project.id, type: 'uuid' },
      'project.slug': { literal: project.slug, type: 'text' },
      'project.owner': { literal: project.owner, type: 'text' },
      'project.region': { literal: project.region, type: 'text' },
      ...(project.tier !== undefined ? { 'project.tier': { literal: project.tier, type: 'text' } } : {}),
    });
  }
  return vars;
}

function expand(sql: string, vars: TemplateVars, field: string, problems: string[]): string | undefined {
  try {
    return expandSql(sql, vars);
  } catch (err) {
    if (err instanceof TemplateError) { problems.push(`${field}: ${err.message}`); return undefined; }
    throw err;
  }
}

/** Problems of one table's DDL: it parses, creates exactly `ref` (schema-qualified) first, and does nothing else. */
export async function tableDdlProblems(ddl: string, ref: TableRef, field: string): Promise<string[]> {
  let stmts: Node[];
  try {
    stmts = await parsedStatements(ddl);
  } catch (err) {
    return [`${field}: does not parse: ${(err as Error).message}`];
  }
  if (stmts.length === 0) return [`${field}: is empty`];
  const problems: string[] = [];
  const same = (r: Node | undefined) => r !== undefined && r.schemaname === ref.schema && r.relname === ref.name;
  stmts.forEach((stmt, i) => {
    const kind = Object.keys(stmt)[0] ?? 'unknown';
    const s = stmt[kind] as Node;
    const at = `${field}: statement ${i + 1} (${kind})`;
    if (!DDL_STATEMENTS.has(kind)) {
      problems.push(`${at} is not allowed: a table's DDL is CREATE TABLE of the table, then its indexes, constraints and comments (grants and policies are layout fields)`);
    } else if (kind === 'CreateStmt') {
      if (i !== 0) problems.push(`${at}: only one CREATE TABLE, the first statement`);
      else if (!same(s.relation as Node)) problems.push(`${at} creates ${shown(s.relation as Node)}, not ${displayName(ref)} (write CREATE TABLE {{table}})`);
      else if (s.inhRelations || s.partbound || s.partspec) problems.push(`${at}: inheritance and partitioning are not supported in a layout`);
    } else if (i === 0) {
      problems.push(`${at}: the first statement must be CREATE TABLE {{table}}`);
    } else if (kind === 'IndexStmt') {
      if (!same(s.relation as Node)) problems.push(`${at} indexes ${shown(s.relation as Node)}, not ${displayName(ref)}`);
    } else if (kind === 'AlterTableStmt') {
      const cmds = ((s.cmds as Node[] | undefined) ?? []).map((c) => (c.AlterTableCmd as Node).subtype);
      if (s.objtype !== 'OBJECT_TABLE' || !same(s.relation as Node)) problems.push(`${at} alters ${shown(s.relation as Node)}, not ${displayName(ref)}`);
      // Row-level security, ownership and the rest are the layout's to set; only constraints may be added here.
      else if (cmds.some((c) => c !== 'AT_AddConstraint')) problems.push(`${at}: only ALTER TABLE {{table}} ADD CONSTRAINT is allowed`);
    } else if (kind === 'CommentStmt') {
      const items = (((s.object as Node).List as Node | undefined)?.items as Node[] | undefined ?? []).map((n) => String((n.String as Node | undefined)?.sval));
      const onTable = s.objtype === 'OBJECT_TABLE' ? items : s.objtype === 'OBJECT_COLUMN' ? items.slice(0, 2) : undefined;
      if (!onTable || onTable[0] !== ref.schema || onTable[1] !== ref.name) problems.push(`${at}: only comments on ${displayName(ref)} and its columns are allowed`);
    }
  });
  return problems;
}

const shown = (r: Node | undefined) => (r ? (r.schemaname ? displayName({ schema: String(r.schemaname), name: String(r.relname) }) : `${String(r.relname)} (write schema.name)`) : '(nothing)');

/** `expr` is one expression: `SELECT (expr)` parses into one SELECT of one target with no other clause. */
export async function expressionProblem(expr: string): Promise<string | undefined> {
  let stmts: Node[];
  try {
    stmts = await parsedStatements(`SELECT (${expr})`);
  } catch (err) {
    return `is not one SQL expression: ${(err as Error).message}`;
  }
  const select = stmts.length === 1 ? (stmts[0]!.SelectStmt as Node | undefined) : undefined;
  if (!select || (select.targetList as Node[] | undefined)?.length !== 1 || SELECT_CLAUSES.some((c) => select[c] !== undefined)) {
    return 'is not one SQL expression (it closes its parenthesis)';
  }
  return undefined;
}

const COMMAND_SQL: Record<PolicyCommand, string> = { all: 'ALL', select: 'SELECT', insert: 'INSERT', update: 'UPDATE', delete: 'DELETE' };

export function createPolicySql(table: TableRef, p: Omit<PolicySpec, 'statement'>): string {
  return `CREATE POLICY ${quoteIdent(p.name)} ON ${qualified(table)} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${COMMAND_SQL[p.command]}` +
    ` TO ${p.roles.map(quoteIdent).join(', ')}` +
    (p.using !== undefined ? ` USING (${p.using})` : '') + (p.check !== undefined ? ` WITH CHECK (${p.check})` : '');
}

async function policySpec(layout: Layout, name: string, table: TableRef, vars: TemplateVars, field: string, problems: string[]): Promise<PolicySpec | undefined> {
  const t = layout.policies[name]!;
  const at = `policies.${name} (on ${displayName(table)}, ${field})`;
  const before = problems.length;
  const using = t.using === undefined ? undefined : expand(t.using, vars, `${at}.using`, problems);
  const check = t.check === undefined ? undefined : expand(t.check, vars, `${at}.check`, problems);
  for (const [key, e] of [['using', using], ['check', check]] as const) {
    const why = e === undefined ? undefined : await expressionProblem(e);
    if (why) problems.push(`${at}.${key}: ${why}`);
  }
  if (problems.length > before) return undefined;
  const spec = { name, command: t.for, roles: [...t.to].sort(), permissive: t.permissive, using, check };
  const statement = createPolicySql(table, spec);
  // The whole statement too: one CREATE POLICY, on this table.
  const stmts = await parsedStatements(statement).catch(() => []);
  const p = stmts.length === 1 ? (stmts[0]!.CreatePolicyStmt as Node | undefined) : undefined;
  const rel = p?.table as Node | undefined;
  if (!p || rel?.schemaname !== table.schema || rel?.relname !== table.name) {
    problems.push(`${at}: does not make one CREATE POLICY on ${displayName(table)}`);
    return undefined;
  }
  return { ...spec, statement };
}

async function scopeSpec(layout: Layout, kind: ScopeKind, section: LayoutSection, schema: string, problems: string[], project?: LayoutProject): Promise<ScopeSpec> {
  const tables: TableSpec[] = [];
  for (const [i, t] of section.tables.entries()) {
    const ref = { schema, name: t.name };
    const field = `${kind}.tables[${i}]${project ? ` (project ${project.slug})` : ''}`;
    const vars = { ...scopeVars(layout, schema, project), table: { ident: [schema, t.name] } };
    const ddl = expand(t.create, vars, `${field}.create`, problems);
    if (ddl !== undefined) problems.push(...(await tableDdlProblems(ddl, ref, `${field}.create`)));
    const policies: PolicySpec[] = [];
    for (const name of t.policies) {
      const p = await policySpec(layout, name, ref, vars, field, problems);
      if (p) policies.push(p);
    }
    tables.push({ ref, field, ddl: ddl ?? '', grants: t.grants, policies, forceRls: t.forceRls });
  }
  return {
    scope: project?.slug ?? kind, kind, schema, usage: [...new Set(section.usage)].sort(), tables,
    ...(project ? { project, comment: projectComment(layout.name, project) } : {}),
  };
}

export const PROJECT_COMMENT_PREFIX = 'safeshift layout project ';

/** The comment on a project's schema: `safeshift layout project {"id":...,"layout":...,"owner":...,"region":...,"slug":...}`. */
export function projectComment(layoutName: string, p: LayoutProject): string {
  return `${PROJECT_COMMENT_PREFIX}${canonicalJson({ layout: layoutName, id: p.id, slug: p.slug, owner: p.owner, region: p.region, tier: p.tier })}`;
}

/**
 * Expand and check every statement of the layout for every project (or only `onlyProjects`). Throws LayoutError
 * listing every problem (each naming its field and, for the project template, the project).
 */
export async function checkLayout(layout: Layout, where = '(layout)', onlyProjects?: string[]): Promise<LayoutModel> {
  const problems: string[] = [];
  const shared = await scopeSpec(layout, 'shared', layout.shared, layout.shared.schema, problems);
  const system = await scopeSpec(layout, 'system', layout.system, layout.system.schema, problems);
  const projects: ScopeSpec[] = [];
  // `onlyProjects`: an activity converging a few projects of a large layout expands only those.
  for (const p of projectsOf(layout).filter((x) => !onlyProjects || onlyProjects.includes(x.slug))) {
    const before = problems.length;
    projects.push(await scopeSpec(layout, 'project', layout.project, p.schema, problems, p));
    // The template is the same for every project: its problems once are enough, not once per project.
    if (problems.length > before) break;
  }
  if (problems.length) throw new LayoutError(where, problems);
  const roles = new Set<string>();
  for (const s of [shared, system, ...projects]) {
    s.usage.forEach((r) => roles.add(r));
    for (const t of s.tables) {
      Object.keys(t.grants).forEach((r) => roles.add(r));
      t.policies.forEach((p) => p.roles.forEach((r) => roles.add(r)));
    }
  }
  return {
    shared, system, projects,
    membership: { table: { schema: layout.shared.schema, name: layout.membership.table }, user: layout.membership.user, project: layout.membership.project },
    roles: [...roles].sort(),
  };
}

export function allScopes(model: LayoutModel): ScopeSpec[] {
  return [model.shared, model.system, ...model.projects];
}
