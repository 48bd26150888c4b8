/**
 * `safeshift layout apply|verify|plan` on the real stack, with a small layout of its own (three projects, schemas
 * named for this test): apply on an empty database through the gate, a second apply that changes nothing,
 * isolation checked with our own role-switching SQL and by verify, and a policy USING (true) found by verify.
 * (A bad layout's exit 2 is pinned in test/unit/layout.test.ts: it is refused before anything connects.)
 */
import { randomUUID } from 'node:crypto';
import { withClient } from '../../src/db';
import { convergeScope, planLayout } from '../../src/layout/converge';
import { actionable } from '../../src/layout/diff';
import { parseLayout } from '../../src/layout/load';
import { checkLayout } from '../../src/layout/model';
import { verifyLayout } from '../../src/layout/verify';
import { runCli, sql, uniqueName, writePlan } from '../support/helpers';
import { asRole } from '../support/supabase';

const p = uniqueName('lt');
const name = p.replace(/_/g, '-');
const schemas = { shared: `${p}_shared`, system: `${p}_system`, a: `${p}_a`, b: `${p}_b`, c: `${p}_c` };
const ids = { a: randomUUID(), b: randomUUID(), c: randomUUID() };
const member = 'EXISTS (SELECT 1 FROM {{shared}}.members m WHERE m.project_id = {{project.id}} AND m.user_id = (SELECT auth.uid()))';

const layout = {
  version: 1, name, database: 'DATABASE_URL', requestedBy: 'carol',
  approvals: { apply: { approvers: ['alice'], required: 1, timeout: '10m' } },
  membership: { table: 'members', user: 'user_id', project: 'project_id' },
  shared: {
    schema: schemas.shared, usage: ['authenticated', 'service_role'],
    tables: [
      { name: 'members', create: 'CREATE TABLE {{table}} (project_id uuid NOT NULL, user_id uuid NOT NULL, PRIMARY KEY (project_id, user_id))', grants: { authenticated: ['select'], service_role: ['all'] }, policies: ['own_memberships'] },
      { name: 'organizations', create: 'CREATE TABLE {{table}} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), slug text NOT NULL UNIQUE)', grants: { authenticated: ['select'], service_role: ['all'] }, policies: ['directory'] },
    ],
  },
  system: { schema: schemas.system, usage: ['service_role'], tables: [{ name: 'health_checks', create: 'CREATE TABLE {{table}} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ok boolean NOT NULL)', grants: { service_role: ['all'] } }] },
  project: {
    schema: `${p}_{{project.slug}}`, usage: ['authenticated', 'service_role'],
    tables: [
      { name: 'stories', create: 'CREATE TABLE {{table}} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL);\nCREATE INDEX stories_title ON {{table}} (title)', grants: { authenticated: ['select', 'insert', 'update', 'delete'], service_role: ['all'] }, policies: ['project_members'] },
      { name: 'analytics', create: 'CREATE TABLE {{table}} (day date NOT NULL, metric text NOT NULL, value bigint NOT NULL DEFAULT 0, PRIMARY KEY (day, metric))', grants: { authenticated: ['select'], service_role: ['all'] }, policies: ['project_members_read'] },
    ],
  },
  policies: {
    own_memberships: { for: 'select', to: ['authenticated'], using: 'user_id = (SELECT auth.uid())' },
    directory: { for: 'select', to: ['authenticated'], using: 'true' },
    project_members: { to: ['authenticated'], using: member, check: member },
    project_members_read: { for: 'select', to: ['authenticated'], using: member },
  },
  projects: [
    { slug: 'a', id: ids.a, owner: 'org-a', region: 'eu-west-2' },
    { slug: 'b', id: ids.b, owner: 'org-b', region: 'eu-west-2' },
    { slug: 'c', id: ids.c, owner: 'org-c', region: 'ap-southeast-2', tier: 'pilot' },
  ],
};
const file = writePlan(layout);
const allSchemas = Object.values(schemas);

/** Everything apply sets, as the catalog holds it: to compare before and after a second apply. */
async function layoutCatalog(): Promise<string> {
  const rows = await sql<{ x: string }>(
    `SELECT json_agg(x ORDER BY x)::text AS x FROM (
       SELECT format('schema %s %s', nspname, nspacl::text) AS x FROM pg_namespace WHERE nspname = ANY ($1)
       UNION ALL SELECT format('table %s.%s oid=%s rls=%s force=%s acl=%s', n.nspname, c.relname, c.oid, c.relrowsecurity, c.relforcerowsecurity, c.relacl::text)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY ($1) AND c.relkind = 'r'
       UNION ALL SELECT format('policy %s on %s oid=%s cmd=%s roles=%s using=%s check=%s comment=%s', p.polname, p.polrelid::regclass, p.oid, p.polcmd, p.polroles::text,
                               pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid), obj_description(p.oid, 'pg_policy'))
         FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY ($1)) s`, [allSchemas]);
  return rows[0]!.x;
}

describe('layout', () => {
  it('apply on an empty database converges it through the approval gate; a second apply changes nothing', async () => {
    const first = await runCli(['layout', 'apply', file, '--auto-approve']);
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(/approved the apply gate as alice/);
    expect(first.stdout).toMatch(/^done: layout .* applied: 5 scope\(s\) converged/m);
    expect(first.code).toBe(0);

    // Every table: row-level security on and forced; anon holds nothing; authenticated exactly what the layout says.
    const tables = await sql<{ t: string; rls: boolean; force: boolean; anon: string[] | null; auth: string[] | null; policies: string[] | null }>(
      `SELECT format('%s.%s', n.nspname, c.relname) AS t, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
              (SELECT array_agg(x.privilege_type::text ORDER BY x.privilege_type::text) FROM aclexplode(c.relacl) x WHERE x.grantee = 'anon'::regrole) AS anon,
              (SELECT array_agg(x.privilege_type::text ORDER BY x.privilege_type::text) FROM aclexplode(c.relacl) x WHERE x.grantee = 'authenticated'::regrole) AS auth,
              (SELECT array_agg(polname::text ORDER BY polname::text) FROM pg_policy WHERE polrelid = c.oid) AS policies
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY ($1) AND c.relkind = 'r' ORDER BY 1`, [allSchemas]);
    expect(tables.map((t) => t.t)).toEqual([
      `${p}_a.analytics`, `${p}_a.stories`, `${p}_b.analytics`, `${p}_b.stories`, `${p}_c.analytics`, `${p}_c.stories`,
      `${p}_shared.members`, `${p}_shared.organizations`, `${p}_system.health_checks`,
    ]);
    for (const t of tables) {
      expect([t.t, t.rls, t.force, t.anon]).toEqual([t.t, true, true, null]);
    }
    // The project's metadata is in the database itself, on its schema.
    const [meta] = await sql<{ comment: string }>(`SELECT obj_description($1::regnamespace, 'pg_namespace') AS comment`, [`${p}_c`]);
    expect(JSON.parse(meta!.comment.replace(/^safeshift layout project /, ''))).toEqual({ layout: name, id: ids.c, slug: 'c', owner: 'org-c', region: 'ap-southeast-2', tier: 'pilot' });
    const stories = tables.find((t) => t.t === `${p}_b.stories`)!;
    expect(stories.auth).toEqual(['DELETE', 'INSERT', 'SELECT', 'UPDATE']);
    expect(stories.policies).toEqual(['project_members']);
    expect(tables.find((t) => t.t === `${p}_system.health_checks`)!.auth).toBeNull();

    // Audited: the gate decision, one row per converged scope, the end.
    const audit = await sql<{ action: string; actor: string; scope: string | null }>(
      `SELECT action, actor, details->>'scope' AS scope FROM safeshift.audit_log WHERE workflow_id = $1 ORDER BY seq`, [`layout-${name}`]);
    expect(audit.filter((a) => a.action === 'layout:converged').map((a) => a.scope)).toEqual(['shared', 'system', 'a', 'b', 'c']);
    expect(audit).toEqual(expect.arrayContaining([{ action: 'approve:layout', actor: 'alice', scope: null }, expect.objectContaining({ action: 'layout:applied' })]));

    const before = await layoutCatalog();
    const again = await runCli(['layout', 'apply', file, '--wait']);
    expect(again.stdout).toMatch(/^unchanged: the database already is as layout .* says/m);
    expect(again.code).toBe(0);
    expect(await layoutCatalog()).toBe(before);
    const second = await sql<{ action: string }>(
      `SELECT action FROM safeshift.audit_log WHERE workflow_id = $1 AND action IN ('layout:converged', 'layout:unchanged') ORDER BY seq`, [`layout-${name}`]);
    expect(second.map((a) => a.action)).toEqual(['layout:converged', 'layout:converged', 'layout:converged', 'layout:converged', 'layout:converged', 'layout:unchanged']);
  });

  it('isolation holds as the API roles see it; verify proves it, then finds and names a policy USING (true); a database converged in part converges only the rest', async () => {
    // Our own check first: a member of a reads a's stories and none of b's; anon reads nothing.
    const userA = randomUUID();
    await sql(`INSERT INTO ${p}_shared.members (project_id, user_id) VALUES ($1, $2)`, [ids.a, userA]);
    await sql(`INSERT INTO ${p}_a.stories (title) VALUES ('a story')`);
    await sql(`INSERT INTO ${p}_b.stories (title) VALUES ('b story')`);
    const count = async (role: string, table: string, claims: Record<string, unknown> = {}) =>
      asRole<{ n: string }>(role, `SELECT count(*) AS n FROM ${table}`, [], claims).then((r) => Number(r[0]!.n), (err: Error) => err.message);
    expect(await count('authenticated', `${p}_a.stories`, { sub: userA })).toBe(1);
    expect(await count('authenticated', `${p}_b.stories`, { sub: userA })).toBe(0);
    expect(await count('anon', `${p}_b.stories`)).toMatch(/permission denied/);
    expect(await count('service_role', `${p}_b.stories`)).toBe(1);

    const model = await checkLayout(parseLayout(layout));
    const report = await withClient(process.env.DATABASE_URL!, (c) => verifyLayout(c, model, { sample: 3 }));
    expect(report.failures).toEqual([]);
    expect(report.pairs).toEqual([['a', 'b'], ['b', 'c'], ['c', 'a']]);
    expect(report.ok).toBe(true);

    await sql(`CREATE POLICY leak ON ${p}_b.stories FOR SELECT TO authenticated USING (true)`);
    expect(await count('authenticated', `${p}_b.stories`, { sub: userA })).toBe(1);
    const verify = await runCli(['layout', 'verify', file, '--sample', '3']);
    expect(verify.stdout).toContain(`FAIL ${p}_b.stories [cross-project]: a member of a (not of b) reads`);
    expect(verify.stdout).toContain('leak (not in the layout)');
    expect(verify.code).toBe(1);
    // The plan shows the policy as extra; apply would drop it.
    const plan = await withClient(process.env.DATABASE_URL!, (c) => planLayout(c, parseLayout(layout), model));
    expect(actionable(plan.changes).map((c) => `${c.sign} ${c.object}`)).toEqual([`- policy leak on ${p}_b.stories`]);
    // A database converged in part (a crash, a dropped table) converges the rest, scope by scope, and only that.
    await sql(`DROP POLICY leak ON ${p}_b.stories`);
    await sql(`DROP TABLE ${p}_c.analytics`);
    const partial = await withClient(process.env.DATABASE_URL!, (c) => planLayout(c, parseLayout(layout), model));
    expect([...new Set(actionable(partial.changes).map((c) => c.scope))]).toEqual(['c']);
    await withClient(process.env.DATABASE_URL!, (c) => convergeScope(c, model.projects[2]!));
    const converged = await withClient(process.env.DATABASE_URL!, (c) => planLayout(c, parseLayout(layout), model));
    expect(actionable(converged.changes)).toEqual([]);
    // Nothing verify did stayed behind: only the rows this test wrote.
    expect(await sql(`SELECT user_id FROM ${p}_shared.members`)).toEqual([{ user_id: userA }]);
    expect(Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM ${p}_b.stories`))[0]!.n)).toBe(1);
  });
});
