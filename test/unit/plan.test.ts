import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration } from '../../src/plan/duration';
import { loadPlan, PlanError } from '../../src/plan/load';

const env = { DATABASE_URL: 'postgres://x' };
const good = `
version: 1
name: profiles-v2
database: DATABASE_URL
requestedBy: carol
source: public.profiles
target: public.profiles_v2
key: [id]
create: |
  CREATE TABLE public.profiles_v2 (id uuid PRIMARY KEY, display_name text NOT NULL, email text)
columns:
  id: id
  display_name: full_name
  email: lower(email)
copy: { chunkRows: 50000, parallel: 2, maxRowsPerSecond: 0 }
backup: { table: true }
cutover: { mode: swap, lockTimeoutMs: 2000, attempts: 10, compatView: false }
approvals:
  cutover: { approvers: [alice, bob], required: 1, timeout: 72h, onTimeout: rollback }
  drop:    { approvers: [alice], required: 1, notBefore: 7d }
`;

const scratch = mkdtempSync(join(tmpdir(), 'plan-unit-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function file(text: string, name = 'plan.yaml'): string {
  const dir = mkdtempSync(join(scratch, 'p-'));
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problems(text: string, name?: string): string[] {
  try {
    loadPlan(file(text, name), env);
  } catch (err) {
    if (err instanceof PlanError) return err.problems;
    throw err;
  }
  return [];
}

describe('plan file', () => {
  test('the DESIGN.md example is valid and normalised', () => {
    const { plan, hash } = loadPlan(file(good), env);
    expect(plan.source).toEqual({ schema: 'public', name: 'profiles' });
    expect(plan.approvals.cutover.timeout).toBe(72 * 3_600_000);
    expect(plan.approvals.drop.notBefore).toBe(7 * 86_400_000);
    expect(plan.createSql).toContain('CREATE TABLE public.profiles_v2');
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  test('defaults fill what is left out', () => {
    const minimal = good.replace(/^copy:.*\n|^backup:.*\n|^cutover:.*\n/gm, '');
    const { plan } = loadPlan(file(minimal), env);
    expect(plan.copy).toEqual({ chunkRows: 50_000, chunkTime: 2000, parallel: 1, format: 'auto', maxRowsPerSecond: 0, maxReplicationLag: 30_000 });
    expect(plan.reverse).toEqual({});
    expect(plan.backup.table).toBe(true);
    expect(plan.cutover).toEqual({ mode: 'swap', lockTimeoutMs: 2000, attempts: 10, compatView: false });
  });

  test('dropConstraints: constraint names and column:NOT NULL / IDENTITY / DEFAULT, normalised', () => {
    const text = good.replace('columns:', 'dropConstraints: [profiles_score_check, \'"Odd:Name"\', "email: not null", \'"Full:Name":identity\', id:DEFAULT]\ncolumns:');
    expect(loadPlan(file(text), env).plan.dropConstraints).toEqual([
      { constraint: 'profiles_score_check' },
      { constraint: 'Odd:Name' },
      { column: 'email', property: 'NOT NULL' },
      { column: 'Full:Name', property: 'IDENTITY' },
      { column: 'id', property: 'DEFAULT' },
    ]);
    expect(loadPlan(file(good), env).plan.dropConstraints).toEqual([]);
  });

  test('the same plan as JSON is accepted', () => {
    const { parse } = require('yaml');
    expect(problems(JSON.stringify(parse(good)), 'plan.json')).toEqual([]);
  });

  test.each([
    ['unknown top-level key', good + 'extra: 1\n', 'extra: unknown field'],
    ['unknown nested key', good.replace('mode: swap', 'mode: swap, fast: true'), 'cutover.fast: unknown field'],
    ['bad identifier', good.replace('target: public.profiles_v2', 'target: public.Profiles'), 'target: "public.Profiles" is not schema.table'],
    ['bad duration', good.replace('timeout: 72h', 'timeout: 3 days'), 'approvals.cutover.timeout: "3 days" is not a duration'],
    ['connection string instead of a name', good.replace('database: DATABASE_URL', 'database: postgres://u:p@h/db'), 'database: must be the NAME'],
    ['env var not set', good.replace('database: DATABASE_URL', 'database: OTHER_URL'), 'database: environment variable OTHER_URL is not set'],
    ['wrong version', good.replace('version: 1', 'version: 2'), 'version:'],
    ['bad column name', good.replace('  email: lower(email)', '  Email: lower(email)'), 'columns.Email: "Email" is not an identifier'],
    ['source equals target', good.replace('target: public.profiles_v2', 'target: profiles'), 'target: must differ from source'],
    ['create and createFile', good.replace('key: [id]', 'key: [id]\ncreateFile: x.sql'), 'createFile: give either create or createFile'],
    ['too few approvers besides the requester', good.replace('approvers: [alice, bob], required: 1', 'approvers: [carol, bob], required: 2'), 'approvals.cutover.required: needs 2 approvals but only 1'],
    ['bad reverse column name', good.replace('columns:', 'reverse:\n  Full_Name: display_name\ncolumns:'), 'reverse.Full_Name: "Full_Name" is not an identifier'],
    ['bad replication lag', good.replace('maxRowsPerSecond: 0', 'maxRowsPerSecond: 0, maxReplicationLag: 10'), 'copy.maxReplicationLag:'],
    ['negative chunk size', good.replace('chunkRows: 50000', 'chunkRows: -1'), 'copy.chunkRows:'],
    ['missing approvals', good.replace(/approvals:[\s\S]*$/, ''), 'approvals:'],
    ['bad dropConstraints name', good.replace('columns:', 'dropConstraints: [Profiles_Check]\ncolumns:'), 'dropConstraints[0]: "Profiles_Check" is neither a constraint name'],
    ['bad dropConstraints column', good.replace('columns:', 'dropConstraints: ["Full Name:NOT NULL"]\ncolumns:'), 'dropConstraints[0]: "Full Name:NOT NULL": "Full Name" is not a column name'],
    ['dropConstraints listing one twice', good.replace('columns:', 'dropConstraints: [a_check, "email:not null", "email:NOT NULL"]\ncolumns:'), 'dropConstraints[2]: lists a constraint twice'],
    ['dropConstraints not a list', good.replace('columns:', 'dropConstraints: a_check\ncolumns:'), 'dropConstraints: Invalid input: expected array'],
  ])('%s is an error naming the field', (_label, text, expected) => {
    const found = problems(text);
    expect(found.some((p) => p.startsWith(expected) || p.includes(expected))).toBe(true);
  });

  test('every problem is reported, not just the first', () => {
    const text = good.replace('version: 1', 'version: 3').replace('timeout: 72h', 'timeout: soon') + 'extra: 1\n';
    expect(problems(text).length).toBeGreaterThanOrEqual(3);
  });

  test('createFile is read relative to the plan and is part of the plan hash', () => {
    const path = file(good.replace(/create: \|\n.*\n/, 'createFile: target.sql\n'));
    const ddl = join(path, '..', 'target.sql');
    writeFileSync(ddl, 'CREATE TABLE public.profiles_v2 (id uuid PRIMARY KEY)');
    const first = loadPlan(path, env);
    expect(first.plan.createSql).toContain('CREATE TABLE');
    writeFileSync(ddl, 'CREATE TABLE public.profiles_v2 (id uuid PRIMARY KEY, x int)');
    expect(loadPlan(path, env).hash).not.toBe(first.hash);
  });

  test('durations', () => {
    expect(parseDuration('0s')).toBe(0);
    expect(parseDuration('15m')).toBe(900_000);
    expect(parseDuration('1.5h')).toBeUndefined();
    expect(parseDuration('h')).toBeUndefined();
  });
});
