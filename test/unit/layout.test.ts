/**
 * The layout file (schema, template expansion, statement checks) and the difference with a live database, as
 * pure functions: no database. The live side is built by hand, as the catalog would show it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { layoutPlan } from '../../src/layout/commands';
import { actionable, diffScope, policyComment, SEALED } from '../../src/layout/diff';
import type { LiveSchema, LiveTable } from '../../src/layout/live';
import { LayoutError, layoutProjects, parseLayout } from '../../src/layout/load';
import { checkLayout } from '../../src/layout/model';
import { expandSql } from '../../src/layout/template';
import { sampleProjects } from '../../src/layout/verify';

const ID_A = '11111111-1111-4111-8111-111111111111';
const ID_B = '22222222-2222-4222-8222-222222222222';

function baseLayout(): Record<string, unknown> {
  return {
    version: 1, name: 'unit', database: 'DATABASE_URL', requestedBy: 'carol',
    approvals: { apply: { approvers: ['alice'] } },
    membership: { table: 'members' },
    shared: { tables: [{ name: 'members', create: 'CREATE TABLE {{table}} (project_id uuid NOT NULL, user_id uuid NOT NULL)', grants: { authenticated: ['select'] }, policies: ['own'] }] },
    project: {
      usage: ['authenticated'],
      tables: [{ name: 'stories', create: 'CREATE TABLE {{table}} (id uuid PRIMARY KEY, title text NOT NULL);\nCREATE INDEX stories_title ON {{table}} (title)', grants: { authenticated: ['select', 'insert'], service_role: ['all'] }, policies: ['member'] }],
    },
    policies: {
      own: { for: 'select', to: ['authenticated'], using: 'user_id = (SELECT auth.uid())' },
      member: { to: ['authenticated'], using: 'EXISTS (SELECT 1 FROM {{shared}}.members m WHERE m.project_id = {{project.id}} AND m.user_id = (SELECT auth.uid()))' },
    },
    projects: [{ slug: 'alpha', id: ID_A, owner: 'org-a', region: 'eu-west-2' }, { slug: 'beta', id: ID_B, owner: 'org-b', region: 'ap-southeast-2', tier: 'pilot' }],
  };
}

function problemsOf(raw: unknown): string[] {
  try {
    parseLayout(raw);
    return [];
  } catch (err) {
    if (err instanceof LayoutError) return err.problems;
    throw err;
  }
}

async function checkProblems(raw: unknown): Promise<string[]> {
  try {
    await checkLayout(parseLayout(raw));
    return [];
  } catch (err) {
    if (err instanceof LayoutError) return err.problems;
    throw err;
  }
}

describe('layout file schema: every error names its field', () => {
  it('accepts a valid layout, with defaults filled and grants normalised', () => {
    const l = parseLayout(baseLayout());
    expect(l.shared.schema).toBe('shared');
    expect(l.system.schema).toBe('system');
    expect(l.project.schema).toBe('project_{{project.slug}}');
    expect(l.project.tables[0]!.grants.service_role).toEqual(['select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger']);
    expect(l.project.tables[0]!.forceRls).toBe(true);
    // A parsed layout (as workflow history carries it) parses again to itself.
    expect(parseLayout(JSON.parse(JSON.stringify(l)))).toEqual(l);
  });

  it('names unknown fields, bad slugs, duplicate ids, unknown policies and a membership table outside shared', () => {
    const raw = baseLayout() as any;
    raw.shared.tables[0].colour = 'red';
    raw.projects[0].slug = 'Alpha-1';
    raw.projects[1].id = ID_A;
    raw.project.tables[0].policies = ['nope'];
    raw.membership.table = 'elsewhere';
    raw.policies.own.check = 'true';
    expect(problemsOf(raw)).toEqual(expect.arrayContaining([
      'shared.tables[0].colour: unknown field',
      expect.stringMatching(/^projects\[0\]\.slug: must be a project slug/),
      `projects[1].id: ${ID_A} is also projects[0].id`,
      'project.tables[0].policies[0]: nope is not among policies',
      'membership.table: elsewhere is not among shared.tables',
      'policies.own.check: a select policy has only using',
    ]));
  });

  it('refuses a project schema template without the slug, and identifiers that would need quoting', () => {
    const raw = baseLayout() as any;
    raw.project.schema = 'projects';
    expect(problemsOf(raw)).toEqual(['project.schema: must be an identifier holding {{project.slug}}, like project_{{project.slug}}']);
    const quoted = baseLayout() as any;
    quoted.shared.tables[0].grants = { 'Auth"enticated': ['select'] };
    expect(problemsOf(quoted)).toEqual([expect.stringMatching(/^shared\.tables\[0\]\.grants\.Auth"enticated: must be a role name/)]);
  });

  it('layoutProjects lists the projects of the Empathy Ledger layout with their schemas', () => {
    const projects = layoutProjects(resolve(__dirname, '../../examples/empathy-ledger/layout.yaml'));
    expect(projects.length).toBeGreaterThanOrEqual(5);
    expect(projects[0]).toEqual(expect.objectContaining({ slug: 'oonchiumpa', schema: 'project_oonchiumpa', region: 'ap-southeast-2' }));
  });
});

describe('template variables become quoted tokens, never raw text', () => {
  const vars = { table: { ident: ['project_a', 'stories'] }, 'project.id': { literal: ID_A, type: 'uuid' as const }, 'project.owner': { literal: "O'Brien\\", type: 'text' as const } };

  it('expands names to quoted identifiers and values to typed literals', () => {
    expect(expandSql('CREATE TABLE {{table}} (x text DEFAULT {{project.owner}}) -- done', vars))
      .toBe(`CREATE TABLE "project_a"."stories" (x text DEFAULT E'O''Brien\\\\'::text) -- done`);
    expect(expandSql('p = {{ project.id }}', vars)).toBe(`p = '${ID_A}'::uuid`);
  });

  it('refuses a variable inside a string, a quoted name, a comment or glued to a word, and unknown variables', () => {
    expect(() => expandSql("SELECT '{{project.id}}'", vars)).toThrow(/inside a string/);
    expect(() => expandSql('SELECT "{{project.id}}"', vars)).toThrow(/inside a quoted identifier/);
    expect(() => expandSql('SELECT 1 /* {{table}} */', vars)).toThrow(/inside a comment/);
    expect(() => expandSql('SELECT $$ {{table}} $$', vars)).toThrow(/inside a dollar-quoted body/);
    expect(() => expandSql('CREATE TABLE project_{{project.id}}', vars)).toThrow(/glued to a word/);
    expect(() => expandSql('SELECT {{project.region}}', vars)).toThrow(/\{\{project\.region\}\} is not a template variable here/);
  });
});

describe('every statement is checked by PostgreSQL\'s parser, per project', () => {
  it('expands the template for each project (own schema, own id)', async () => {
    const model = await checkLayout(parseLayout(baseLayout()));
    expect(model.projects.map((p) => p.schema)).toEqual(['project_alpha', 'project_beta']);
    expect(model.projects[1]!.tables[0]!.ddl).toContain('CREATE TABLE "project_beta"."stories"');
    expect(model.projects[1]!.tables[0]!.policies[0]!.statement).toContain(`m.project_id = '${ID_B}'::uuid`);
    expect(model.roles).toEqual(['authenticated', 'service_role']);
  });

  it('refuses DDL that does more than create its table: other statements, other tables, RLS switched off', async () => {
    const raw = baseLayout() as any;
    raw.project.tables[0].create = 'CREATE TABLE {{table}} (id int);\nDROP TABLE {{shared}}.members';
    raw.shared.tables[0].create = 'CREATE TABLE {{schema}}.other (id int)';
    raw.system = { tables: [{ name: 'logs', create: 'CREATE TABLE {{table}} (id int); ALTER TABLE {{table}} DISABLE ROW LEVEL SECURITY' }] };
    const problems = await checkProblems(raw);
    expect(problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^project\.tables\[0\] \(project alpha\)\.create: statement 2 \(DropStmt\) is not allowed/),
      expect.stringMatching(/^shared\.tables\[0\]\.create: statement 1 \(CreateStmt\) creates shared\.other, not shared\.members/),
      'system.tables[0].create: statement 2 (AlterTableStmt): only ALTER TABLE {{table}} ADD CONSTRAINT is allowed',
    ]));
  });

  it('refuses a policy expression that closes its parenthesis to add clauses or statements', async () => {
    for (const using of ['true) WITH CHECK (true', 'true); DROP TABLE shared.members; SELECT (1', 'true) FROM shared.members WHERE (true']) {
      const raw = baseLayout() as any;
      raw.policies.member.using = using;
      const problems = await checkProblems(raw);
      expect(problems.some((p) => p.startsWith('policies.member (on project_alpha.stories, project.tables[0] (project alpha)).using: is not one SQL expression'))).toBe(true);
    }
  });
});

describe('the difference with the live database', () => {
  async function projectScope() {
    const model = await checkLayout(parseLayout(baseLayout()));
    return model.projects[0]!;
  }
  /** The live table as apply leaves it: RLS on and forced, the layout's grants, its policies with their records. */
  async function converged(): Promise<LiveSchema> {
    const spec = await projectScope();
    const t = spec.tables[0]!;
    const printed = { using: '(EXISTS ( SELECT 1 ...))', check: null };
    const table: LiveTable = {
      oid: 1, rls: true, force: true, grants: { ...t.grants }, columnGrantees: [],
      policies: t.policies.map((p) => ({ name: p.name, command: p.command, permissive: p.permissive, roles: p.roles, ...printed, comment: policyComment(p, printed) })),
    };
    return { comment: spec.comment!, grants: { authenticated: ['usage'] }, tables: { stories: table } };
  }

  it('a missing schema: create it, its usage, each table (sealed), grants, forced RLS and policies', async () => {
    const changes = diffScope(await projectScope(), undefined);
    expect(changes.map((c) => `${c.sign} ${c.object}`)).toEqual([
      '+ schema project_alpha', '~ comment on schema project_alpha', '+ USAGE on schema project_alpha to authenticated', '+ table project_alpha.stories',
      '~ table project_alpha.stories', '+ SELECT, INSERT on project_alpha.stories to authenticated',
      '+ SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER on project_alpha.stories to service_role', '+ policy member on project_alpha.stories',
    ]);
    expect(changes[1]!.sql).toEqual([`COMMENT ON SCHEMA "project_alpha" IS 'safeshift layout project {"id":"${ID_A}","layout":"unit","owner":"org-a","region":"eu-west-2","slug":"alpha"}'`]);
    expect(changes[3]!.create).toEqual({ schema: 'project_alpha', name: 'stories' });
    expect(changes[4]!.sql).toEqual(['ALTER TABLE "project_alpha"."stories" FORCE ROW LEVEL SECURITY']);
  });

  it('nothing to do where the database is as the layout says', async () => {
    expect(diffScope(await projectScope(), await converged())).toEqual([]);
  });

  it('extra grants and policies are revoked and dropped, RLS switched back on, an altered policy replaced', async () => {
    const live = await converged();
    const t = live.tables.stories!;
    t.rls = false;
    t.grants.anon = ['delete', 'select'];
    t.policies.push({ name: 'leak', command: 'select', permissive: true, roles: ['authenticated'], using: 'true', check: null, comment: null });
    t.policies[0]!.using = 'true';
    const changes = diffScope(await projectScope(), live);
    expect(changes.map((c) => `${c.sign} ${c.object}: ${c.sql.join('; ')}`)).toEqual([
      '~ table project_alpha.stories: ALTER TABLE "project_alpha"."stories" ENABLE ROW LEVEL SECURITY',
      '- DELETE, SELECT on project_alpha.stories to anon: REVOKE DELETE, SELECT ON TABLE "project_alpha"."stories" FROM "anon"',
      '- policy leak on project_alpha.stories: DROP POLICY "leak" ON "project_alpha"."stories"',
      expect.stringMatching(/^~ policy member on project_alpha.stories: DROP POLICY "member" ON "project_alpha"."stories"; CREATE POLICY "member"/),
    ]);
    expect(changes[3]!.reason).toMatch(/altered after layout apply/);
  });

  it('a table the layout does not declare is a finding, not a change', async () => {
    const live = await converged();
    live.tables.scratch = { ...SEALED, rls: false };
    const changes = diffScope(await projectScope(), live);
    expect(changes).toEqual([expect.objectContaining({ sign: '!', object: 'table project_alpha.scratch', sql: [] })]);
    expect(actionable(changes)).toEqual([]);
  });
});

describe('verify samples projects spread over the layout', () => {
  it('takes all when few, else first, last and evenly between', () => {
    expect(sampleProjects(['a', 'b'], 4)).toEqual(['a', 'b']);
    expect(sampleProjects(['a', 'b', 'c', 'd', 'e', 'f', 'g'], 3)).toEqual(['a', 'd', 'g']);
    expect(sampleProjects(['a', 'b', 'c'], 2, ['c', 'a'])).toEqual(['c', 'a']);
  });
});

describe('the layout commands refuse bad input before connecting', () => {
  it('a layout whose DDL does more than create its table: exit 2, the field named, nothing connected to', async () => {
    const bad = baseLayout() as any;
    bad.shared.tables[0].create = 'CREATE TABLE {{table}} (id int);\nDROP TABLE {{system}}.health_checks';
    bad.database = 'SAFESHIFT_LAYOUT_UNIT_NOT_SET';
    const file = join(mkdtempSync(join(tmpdir(), 'layout-')), 'layout.yaml');
    writeFileSync(file, stringify(bad));
    const printed: string[] = [];
    await expect(layoutPlan(file, {}, (l) => printed.push(l))).rejects.toMatchObject({
      exitCode: 2, message: expect.stringMatching(/shared\.tables\[0\]\.create: statement 2 \(DropStmt\) is not allowed/),
    });
    expect(printed).toEqual([]);
  });
});
