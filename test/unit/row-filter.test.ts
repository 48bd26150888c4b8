/** The plan's row filter (`where:`, src/row-filter.ts): checked as code like the other expressions, named `where`. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckedPlan, loadPlan, PlanError } from '../../src/plan/load';
import { andRowFilter, dollarTagFor, rowMatchesSql } from '../../src/row-filter';
import { routeFunctionSql, splitViewSql } from '../../src/split-view';
import { copyOutSql, checksumSql, type CopySpec } from '../../src/projection';

const env = { DATABASE_URL: 'postgres://x' };
const plan = (where: string) => `
version: 1
name: stories-split
database: DATABASE_URL
requestedBy: carol
source: public.stories
target: project_a1.stories
where: ${JSON.stringify(where)}
approvals:
  cutover: { approvers: [alice], required: 1 }
  drop: { approvers: [alice], required: 1 }
`;

const scratch = mkdtempSync(join(tmpdir(), 'row-filter-unit-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function problems(text: string): Promise<string[]> {
  const dir = mkdtempSync(join(scratch, 'p-'));
  writeFileSync(join(dir, 'plan.yaml'), text);
  try {
    await loadCheckedPlan(join(dir, 'plan.yaml'), env);
  } catch (err) {
    if (err instanceof PlanError) return err.problems;
    throw err;
  }
  return [];
}

describe('where: the row filter of a split', () => {
  test('an expanded project filter is valid and kept verbatim, the target in another schema', async () => {
    const where = "project_id = 'a1b2c3d4-0000-4000-8000-000000000001'";
    expect(await problems(plan(where))).toEqual([]);
    const dir = mkdtempSync(join(scratch, 'p-'));
    writeFileSync(join(dir, 'plan.yaml'), plan(where));
    const loaded = loadPlan(join(dir, 'plan.yaml'), env).plan;
    expect(loaded.where).toBe(where);
    expect(loaded.target).toEqual({ schema: 'project_a1', name: 'stories' });
  });

  test.each([
    ['empty', '   ', 'where: must not be empty'],
    ['a subquery', 'project_id IN (SELECT id FROM public.projects)', 'where: a subquery is not allowed'],
    ['a second statement', "true); DELETE FROM public.stories; SELECT (true", 'where: must be one SQL expression'],
    ['another table\'s column', 'projects.id = project_id', 'where: projects.id is not a bare column name'],
    ['a denied function', "current_setting('app.project') = project_id::text", 'where: function current_setting is never allowed'],
    ['an aggregate', 'count(*) > 0', 'where: count is used as an aggregate'],
    ['text that does not parse', "project_id = 'a1", 'where: does not parse'],
  ])('%s is refused, naming where', async (_label, where, expected) => {
    expect(await problems(plan(where))).toEqual(expect.arrayContaining([expect.stringContaining(expected)]));
  });

  const spec: CopySpec = {
    source: { schema: 'public', name: 'stories' }, target: { schema: 'project_a1', name: 'stories' },
    columns: [{ target: 'id', expr: 'id', type: 'bigint', copyType: 'bigint' }], key: [{ name: 'id', type: 'bigint' }],
    where: "project_id = 'a' -- a comment",
  };

  test('the copy and the source checksum read only matching rows; the target checksum is not filtered', () => {
    expect(copyOutSql(spec, ['1'], ['9'])).toContain("AND (\nproject_id = 'a' -- a comment\n) ORDER BY");
    expect(checksumSql(spec, 'source')).toContain("AND (\nproject_id = 'a' -- a comment\n)");
    expect(checksumSql(spec, 'target')).not.toContain('project_id');
    expect(andRowFilter(undefined)).toBe('');
  });

  test('the capture trigger reads the old and the new row as a relation, and its dollar quote cannot be closed by the filter', () => {
    expect(rowMatchesSql('project_id = 1', 'OLD')).toBe('EXISTS (SELECT FROM (SELECT OLD.*) s WHERE (\nproject_id = 1\n))');
    expect(dollarTagFor("note = 'x'")).toBe('$fn$');
    expect(dollarTagFor("note = '$fn$' OR note = '$fn_1$'")).toBe('$fn_2$');
  });
});

describe('the split view and its routing (src/split-view.ts)', () => {
  const splits = [
    { targetOid: 1, sharedOid: 9, live: { schema: 'public', name: 'stories' }, filter: "project_id = 'a'", runId: 'r', state: 'done' as const },
    { targetOid: 2, sharedOid: 9, live: { schema: 'public', name: 'stories' }, filter: "note = '$route$'", runId: 'r', state: 'live' as const },
  ];
  const b = {
    live: { schema: 'public', name: 'stories' }, shared: { schema: 'public', name: 'stories_shared' },
    projects: [{ ref: { schema: 'project_a', name: 'stories' }, filter: splits[0]!.filter }, { ref: { schema: 'project_b', name: 'stories' }, filter: splits[1]!.filter }],
    columns: [{ name: 'id', generated: false }, { name: 'project_id', generated: false }, { name: 'note', generated: false }, { name: 'len', generated: true }],
    key: ['id'],
  };

  test('the shared branch shows only rows no split took (a NULL filter result stays shared), then each project table', () => {
    const view = splitViewSql(b, splits, false);
    expect(view).toContain('CREATE VIEW "public"."stories" WITH (security_invoker = true) AS');
    expect(view).toContain("FROM \"public\".\"stories_shared\" WHERE (\nproject_id = 'a'\n) IS NOT TRUE AND (\nnote = '$route$'\n) IS NOT TRUE");
    expect(view.split('UNION ALL')).toHaveLength(3);
    expect(splitViewSql(b, splits, true)).toContain('CREATE OR REPLACE VIEW');
  });

  test('routing writes generated columns never, and its dollar quote cannot be closed by a filter', () => {
    const fn = routeFunctionSql(b, 9);
    expect(fn).toContain('AS $route_1$');
    expect(fn.trimEnd().endsWith('END $route_1$')).toBe(true);
    expect(fn).toContain('INSERT INTO "project_b"."stories" ("id", "project_id", "note") VALUES (NEW."id", NEW."project_id", NEW."note")');
    expect(fn).not.toContain('"len"');
    expect(fn).toContain('RAISE unique_violation');
  });
});
