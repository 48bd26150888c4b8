/**
 * The layout file (`layout.yaml`, DESIGN.md "Multi-project layout"): strict, every unknown key is an error, every
 * error names its field. It declares the shared schema (cross-project tables, project membership), the per-project
 * template (one schema per project, the same tables in each), the system schema, the policy templates and the
 * projects themselves. Names are plain identifiers (a_b): they become schema, table, role and policy names, and
 * the project's slug becomes part of its schema's name, so neither may need quoting to be read right.
 */
import { z } from 'zod';
import { MAX_IDENT_BYTES, PLAIN_IDENT, utf8Bytes } from '../sql';
import { parseDuration } from '../plan/duration';

export const PRIVILEGES = ['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger'] as const;
export type Privilege = (typeof PRIVILEGES)[number];
export const POLICY_COMMANDS = ['all', 'select', 'insert', 'update', 'delete'] as const;
export type PolicyCommand = (typeof POLICY_COMMANDS)[number];

const ident = (what: string) => z.string().refine((s) => PLAIN_IDENT.test(s) && s.length <= MAX_IDENT_BYTES,
  `must be a ${what}: lower-case letters, digits and underscores, starting with a letter or underscore, at most ${MAX_IDENT_BYTES} bytes`);

/** A project slug: also the tail of its schema's name (`project_<slug>`), so identifier characters only. */
export const projectSlug = z.string().regex(/^[a-z][a-z0-9_]{0,39}$/,
  'must be a project slug: lower-case letters, digits and underscores, starting with a letter, at most 40 chars');

const personName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/, 'must be a person name without spaces');
const uuid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'must be a lower-case UUID');
const label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$/, 'must be letters, digits, dots, dashes, colons or underscores (1-63 chars)');
const duration = z.string().transform((text, ctx): number => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration like 30s, 15m, 24h or 7d` });
    return z.NEVER;
  }
  return ms;
});
const sqlText = z.string().trim().min(1, 'must not be empty').max(64 * 1024, 'is longer than 64 KiB');

/** Table-level privileges by role: `{ authenticated: [select, insert], service_role: [all] }`. */
const grants = z.record(ident('role name'), z.array(z.enum([...PRIVILEGES, 'all'])).min(1, 'lists no privilege'))
  .default({})
  .transform((g) => Object.fromEntries(Object.entries(g).map(([role, list]) =>
    [role, PRIVILEGES.filter((p) => list.includes('all') || list.includes(p))]))) as unknown as z.ZodType<Record<string, Privilege[]>>;

const table = z.strictObject({
  name: ident('table name'),
  /** CREATE TABLE {{table}} (...), and its indexes, constraints and comments; checked with PostgreSQL's parser. */
  create: sqlText,
  grants,
  /** Names of policy templates (`policies:` at the top) this table gets, exactly. */
  policies: z.array(ident('policy name')).default([]),
  /** Row-level security is on for every table; forced (the owner is subject to it too) unless said otherwise. */
  forceRls: z.boolean().default(true),
});
export type LayoutTable = z.infer<typeof table>;

const section = (defaultSchema: string) => z.strictObject({
  schema: z.string().min(1).default(defaultSchema),
  /** Roles given USAGE on the schema (and nothing else on it). */
  usage: z.array(ident('role name')).default([]),
  tables: z.array(table).default([]),
});

const policy = z.strictObject({
  for: z.enum(POLICY_COMMANDS).default('all'),
  to: z.array(ident('role name')).min(1, 'names no role'),
  permissive: z.boolean().default(true),
  using: sqlText.optional(),
  check: sqlText.optional(),
}).superRefine((p, ctx) => {
  if (p.for === 'insert' && p.using !== undefined) ctx.addIssue({ code: 'custom', path: ['using'], message: 'an insert policy has only check (WITH CHECK)' });
  if (p.for === 'select' || p.for === 'delete') {
    if (p.check !== undefined) ctx.addIssue({ code: 'custom', path: ['check'], message: `a ${p.for} policy has only using` });
  }
  if (p.using === undefined && p.check === undefined) ctx.addIssue({ code: 'custom', path: ['using'], message: 'a policy needs using or check' });
});
export type LayoutPolicy = z.infer<typeof policy>;

const project = z.strictObject({
  slug: projectSlug,
  id: uuid,
  /** The organisation that owns the project (a slug of shared.organizations, or whatever the platform uses). */
  owner: label,
  /** Where the project's data must live (data residency); fleets group by it. */
  region: label,
  tier: label.optional(),
});
export type LayoutProjectEntry = z.infer<typeof project>;

export const layoutSchema = z.strictObject({
  version: z.literal(1),
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/, 'must be a slug: lower-case letters, digits and dashes, 2-63 chars'),
  database: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be the NAME of an environment variable (e.g. DATABASE_URL), never a URL'),
  requestedBy: personName,
  approvals: z.strictObject({
    apply: z.strictObject({
      approvers: z.array(personName).min(1, 'needs at least one approver'),
      required: z.number().int().min(1).default(1),
      // A number (ms) too: a parsed layout, as workflow history carries it, parses again to itself.
      timeout: z.union([z.number().int().min(0), duration]).default(24 * 3_600_000),
    }),
  }),
  /** Where Supabase's auth schema is absent: create a stand-in (roles, auth.uid(), auth.users). */
  auth: z.strictObject({ standIn: z.boolean().default(true) }).default({ standIn: true }),
  /** Project membership: a table of the shared schema with a user column and a project column (both uuid). */
  membership: z.strictObject({
    table: ident('table name'),
    user: ident('column name').default('user_id'),
    project: ident('column name').default('project_id'),
  }),
  // prefault: an absent section is parsed as {}, so its own defaults (schema name, no tables) are filled in.
  shared: section('shared').prefault({}),
  system: section('system').prefault({}),
  /** The per-project template: `schema` holds `{{project.slug}}`; every project gets these tables. */
  project: section('project_{{project.slug}}').prefault({}),
  policies: z.record(ident('policy name'), policy).default({}),
  projects: z.array(project).default([]),
}).superRefine((l, ctx) => {
  for (const key of ['shared', 'system'] as const) {
    if (!PLAIN_IDENT.test(l[key].schema)) ctx.addIssue({ code: 'custom', path: [key, 'schema'], message: 'must be a plain identifier (a_b)' });
  }
  const template = l.project.schema;
  if (!template.includes('{{project.slug}}') || !PLAIN_IDENT.test(template.replace(/\{\{project\.slug\}\}/g, 'x'))) {
    ctx.addIssue({ code: 'custom', path: ['project', 'schema'], message: 'must be an identifier holding {{project.slug}}, like project_{{project.slug}}' });
  }
  if (l.shared.schema === l.system.schema) ctx.addIssue({ code: 'custom', path: ['system', 'schema'], message: `is the same as shared.schema (${l.shared.schema})` });
  if (!l.shared.tables.some((t) => t.name === l.membership.table)) {
    ctx.addIssue({ code: 'custom', path: ['membership', 'table'], message: `${l.membership.table} is not among shared.tables` });
  }
  for (const key of ['shared', 'system', 'project'] as const) {
    const seen = new Set<string>();
    l[key].tables.forEach((t, i) => {
      if (seen.has(t.name)) ctx.addIssue({ code: 'custom', path: [key, 'tables', i, 'name'], message: `${t.name} is declared twice` });
      seen.add(t.name);
      t.policies.forEach((p, j) => {
        if (!(p in l.policies)) ctx.addIssue({ code: 'custom', path: [key, 'tables', i, 'policies', j], message: `${p} is not among policies` });
      });
      if (new Set(t.policies).size !== t.policies.length) ctx.addIssue({ code: 'custom', path: [key, 'tables', i, 'policies'], message: 'names a policy twice' });
    });
  }
  const unique = (field: 'slug' | 'id') => {
    const seen = new Map<string, number>();
    l.projects.forEach((p, i) => {
      const before = seen.get(p[field]);
      if (before !== undefined) ctx.addIssue({ code: 'custom', path: ['projects', i, field], message: `${p[field]} is also projects[${before}].${field}` });
      else seen.set(p[field], i);
    });
  };
  unique('slug');
  unique('id');
  l.projects.forEach((p, i) => {
    const schema = projectSchemaName(template, p.slug);
    if (utf8Bytes(schema) > MAX_IDENT_BYTES) ctx.addIssue({ code: 'custom', path: ['projects', i, 'slug'], message: `makes schema ${schema}, longer than ${MAX_IDENT_BYTES} bytes` });
    if (schema === l.shared.schema || schema === l.system.schema) ctx.addIssue({ code: 'custom', path: ['projects', i, 'slug'], message: `makes schema ${schema}, which is the shared or system schema` });
  });
});

export type Layout = z.output<typeof layoutSchema>;
export type LayoutSection = Layout['shared'];

/** A project's schema: the template with the slug put in (the slug is identifier characters only). */
export function projectSchemaName(template: string, slug: string): string {
  return template.replace(/\{\{project\.slug\}\}/g, slug);
}
