/** Fleet pieces without a stack: template expansion and its refusals, the projects list, waves, the delegation check. */
import { generateKeyPair, signDecision, type DecisionPayload } from '../../src/identity';
import { childWorkflowId, coveringGate, type FleetDelegation } from '../../src/fleet/spec';
import { isLayoutFile, projectsFromLayout, projectsFromList, projectsFromRows } from '../../src/fleet/projects';
import { resolve } from 'node:path';
import { expandTemplate, planForProject, TemplateError } from '../../src/fleet/template';
import { buildWaves, FleetInputError } from '../../src/fleet/waves';
import { delegatedApprovers } from '../../workflows/fleet-delegation';

const template = {
  version: 1,
  name: 'items-v2',
  database: 'DATABASE_URL',
  requestedBy: 'carol',
  source: 'project_{{project.slug}}.items',
  target: 'project_{{project.slug}}.items_v2',
  create: 'CREATE TABLE project_{{project.slug}}.items_v2 (id int PRIMARY KEY, title text, owner text)',
  columns: { owner: "'{{project.id}}'" },
  approvals: { cutover: { approvers: ['alice', 'bob'] }, drop: { approvers: ['alice'] } },
};

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof TemplateError || err instanceof FleetInputError) return err.problems;
    throw err;
  }
  throw new Error('no problem raised');
}

describe('plan template expansion', () => {
  test('{{project.slug}} and {{project.id}} are expanded in tables, DDL and expressions, nowhere else changed', () => {
    const out = expandTemplate(template, { slug: 'acme', id: '42' });
    expect(out.source).toBe('project_acme.items');
    expect(out.target).toBe('project_acme.items_v2');
    expect(out.create).toBe('CREATE TABLE project_acme.items_v2 (id int PRIMARY KEY, title text, owner text)');
    expect(out.columns).toEqual({ owner: "'42'" });
    expect(out.approvals).toEqual(template.approvals);
  });

  test('the expanded plan passes every plan check (identifiers, DDL, expressions)', async () => {
    const plan = await planForProject(template, { slug: 'acme', id: '42' });
    expect(plan.source).toEqual({ schema: 'project_acme', name: 'items' });
    expect(plan.createSql).toContain('project_acme.items_v2');
  });

  test('a slug that is not a safe identifier is refused, named', () => {
    for (const slug of ['Acme', 'a-b', 'x"; DROP TABLE t; --', '1abc', 'a b', '']) {
      const problems = problemsOf(() => expandTemplate(template, { slug, id: '1' }));
      expect(problems.join('\n')).toContain(JSON.stringify(slug));
      expect(problems.join('\n')).toMatch(/not a safe identifier/);
    }
  });

  test('a metadata value that could leave a quoted literal is refused, named', () => {
    const problems = problemsOf(() => expandTemplate(template, { slug: 'acme', id: "1' OR '1'='1" }));
    expect(problems.join('\n')).toMatch(/project acme: id .* is not a safe value/);
  });

  test('a variable the project lacks, an unknown form, a template outside the checked fields or in a key: refused, named', () => {
    expect(problemsOf(() => expandTemplate({ ...template, source: 'project_{{project.region}}.items' }, { slug: 'acme' })).join('\n'))
      .toMatch(/^source: project acme has no region for \{\{project.region\}\}/);
    expect(problemsOf(() => expandTemplate({ ...template, source: '{{env.HOME}}.items' }, { slug: 'acme', id: '1' })).join('\n'))
      .toMatch(/^source: \{\{env.HOME\}\} is not a template variable/);
    expect(problemsOf(() => expandTemplate({ ...template, database: 'DB_{{project.slug}}' }, { slug: 'acme' })).join('\n'))
      .toMatch(/^database: template variables are allowed only in/);
    expect(problemsOf(() => expandTemplate({ ...template, approvals: { cutover: { approvers: ['{{project.slug}}'] }, drop: { approvers: ['alice'] } } }, { slug: 'acme', id: '1' })).join('\n'))
      .toMatch(/^approvals.cutover.approvers\[0\]: template variables are allowed only in/);
    expect(problemsOf(() => expandTemplate({ ...template, columns: { '{{project.slug}}': 'title' } }, { slug: 'acme' })).join('\n'))
      .toMatch(/columns.\{\{project.slug\}\}: template variables are not allowed in keys/);
    expect(problemsOf(() => expandTemplate({ ...template, source: 'project_{{project.slug}.items' }, { slug: 'acme' })).join('\n'))
      .toMatch(/^source: unbalanced/);
  });

  test('a value that lands outside quotes is still checked as plan text: a dash in a table name is refused by the plan checks', async () => {
    const long = { ...template, target: 'project_{{project.slug}}.{{project.region}}' };
    await expect(planForProject(long, { slug: 'acme', id: '1', region: 'eu-west' })).rejects.toThrow(/project acme: target: "project_acme.eu-west" is not schema.table/);
  });
});

describe('projects and waves', () => {
  test('a layout file gives its projects with their metadata; a broken one is refused under --projects', () => {
    const file = resolve(__dirname, '../../examples/empathy-ledger/layout.yaml');
    expect(isLayoutFile(file)).toBe(true);
    expect(isLayoutFile('acme,globex')).toBe(false);
    const projects = projectsFromLayout(file);
    expect(projects.map((p) => p.slug)).toEqual(['oonchiumpa', 'snow_foundation', 'palm_island', 'orange_sky', 'justicehub_eu']);
    expect(projects[4]).toEqual({ slug: 'justicehub_eu', id: '6f1c2a8e-0b5d-4c1e-9a57-1d2e3f4a5b05', owner: 'justicehub', region: 'eu-west-2', tier: 'pilot' });
    const broken = resolve(__dirname, '../../examples/empathy-ledger/profiles-v2.yaml');
    expect(() => projectsFromLayout(broken)).toThrow(/--projects: /);
  });

  test('a list of slugs; a bad one or a duplicate is refused, named', () => {
    expect(projectsFromList('a, b,c')).toEqual([{ slug: 'a' }, { slug: 'b' }, { slug: 'c' }]);
    expect(() => projectsFromList('a,B')).toThrow(/"B" is not a safe identifier/);
    expect(() => projectsFromList('a,a')).toThrow(/project a is listed twice/);
  });

  test('query rows: slug required, other columns as text metadata, nulls left out', () => {
    expect(projectsFromRows(['slug', 'id', 'region'], [['a', 1, 'eu'], ['b', 2, null]])).toEqual([{ slug: 'a', id: '1', region: 'eu' }, { slug: 'b', id: '2' }]);
    expect(() => projectsFromRows(['name'], [['a']])).toThrow(/must return a column named slug/);
  });

  test('canary first, then one wave per region, each with its own parallelism; gates before the canary and the wave after it', () => {
    const projects = ['a', 'b', 'c', 'd', 'e'].map((slug, i) => ({ slug, region: i % 2 ? 'us' : 'eu' }));
    const { projects: ordered, waves } = buildWaves(projects, { canary: ['c'], groupBy: 'region', parallel: 3, parallelByWave: { us: 1 }, onError: 'continue' });
    expect(ordered.map((p) => p.slug)).toEqual(['c', 'a', 'e', 'b', 'd']);
    expect(waves.map((w) => [w.name, w.start, w.end, w.parallel, w.onError, w.gate])).toEqual([
      ['canary', 0, 1, 1, 'stop', true], ['eu', 1, 3, 3, 'continue', true], ['us', 3, 5, 1, 'continue', false],
    ]);
    expect(coveringGate(waves, 2)).toBe('eu');
    expect(childWorkflowId('fleet-x', 'a', 1)).toBe('fleet-x.a');
    expect(childWorkflowId('fleet-x', 'a', 2)).toBe('fleet-x.a.2');
  });

  test('waves of a fixed size; an unknown canary slug is refused', () => {
    const projects = Array.from({ length: 7 }, (_, i) => ({ slug: `p${i}` }));
    expect(buildWaves(projects, { canary: 2, waveSize: 2, gateEveryWave: true }).waves.map((w) => `${w.name}:${w.end - w.start}:${w.gate}`))
      .toEqual(['canary:2:true', 'wave-1:2:true', 'wave-2:2:true', 'wave-3:1:true']);
    expect(() => buildWaves(projects, { canary: ['zz'] })).toThrow(/--canary: no project zz/);
  });
});

describe('a child gate delegated to its fleet', () => {
  const alice = generateKeyPair();
  const mallory = generateKeyPair();
  const keys = { alice: [alice.publicKey], mallory: [mallory.publicKey] };
  const gate = { approvers: ['alice', 'bob'], required: 1 };
  const payload = (extra: Partial<DecisionPayload> = {}): DecisionPayload => ({
    by: 'alice', workflowId: 'fleet-x', runId: 'r1', gate: 'canary', action: 'approve', planHash: 'h'.repeat(64), reason: null,
    time: '2026-11-30T16:00:00.000Z', ...extra,
  });
  const fleet = (approvals: FleetDelegation['approvals']): FleetDelegation => ({ workflowId: 'fleet-x', planHash: 'h'.repeat(64), gate: 'canary', approvals });

  test('an approver\'s signed approval of the covering fleet gate holds when the fleet is the parent', () => {
    expect(delegatedApprovers(fleet([signDecision(payload(), alice.privateKey)]), 'fleet-x', gate, 'carol', keys)).toEqual(['alice']);
  });

  test('not started by that fleet (a client cannot set a parent): refused', () => {
    const f = fleet([signDecision(payload(), alice.privateKey)]);
    expect(() => delegatedApprovers(f, undefined, gate, 'carol', keys)).toThrow(/not started by a fleet/);
    expect(() => delegatedApprovers(f, 'fleet-other', gate, 'carol', keys)).toThrow(/started by fleet-other/);
  });

  test('forged, another gate, another fleet hash, a non-approver, the requester, not an approve: each refused', () => {
    const forged = { payload: signDecision(payload(), alice.privateKey).payload, signature: signDecision(payload(), mallory.privateKey).signature };
    const cases = [
      forged,
      signDecision(payload({ gate: 'eu' }), alice.privateKey),
      signDecision(payload({ planHash: 'f'.repeat(64) }), alice.privateKey),
      signDecision(payload({ by: 'mallory' }), mallory.privateKey),
      signDecision(payload({ action: 'resume' }), alice.privateKey),
    ];
    for (const c of cases) expect(() => delegatedApprovers(fleet([c]), 'fleet-x', gate, 'carol', keys)).toThrow(/hold 0 of the 1 needed/);
    expect(() => delegatedApprovers(fleet([signDecision(payload(), alice.privateKey)]), 'fleet-x', gate, 'alice', keys)).toThrow(/alice is not an approver/);
  });

  test('two approvals needed: the same approver twice counts once', () => {
    const a = signDecision(payload(), alice.privateKey);
    const again = signDecision(payload({ time: '2026-11-30T16:01:00.000Z' }), alice.privateKey);
    expect(() => delegatedApprovers(fleet([a, again]), 'fleet-x', { ...gate, required: 2 }, 'carol', keys)).toThrow(/hold 1 of the 2 needed/);
  });
});
