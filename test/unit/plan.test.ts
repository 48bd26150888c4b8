import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration } from '../../src/plan/duration';
import { invalidUtf8Offset, loadCheckedPlan, loadPlan, MAX_PLAN_BYTES, PlanError } from '../../src/plan/load';

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

describe('the plan file itself (issue 13, finding 10)', () => {
  test.each([
    ['columns: __proto__', good.replace('  email: lower(email)', '  email: lower(email)\n  __proto__: full_name'), 'columns.__proto__: the key __proto__ is reserved'],
    ['columns: constructor', good.replace('  email: lower(email)', '  email: lower(email)\n  constructor: full_name'), 'columns.constructor: the key constructor is reserved'],
    ['reverse: prototype', good.replace('columns:', 'reverse:\n  prototype: email\ncolumns:'), 'reverse.prototype: the key prototype is reserved'],
    ['top-level __proto__', good + '__proto__: { version: 2 }\n', '__proto__: the key __proto__ is reserved'],
  ])('%s is refused by name, never dropped', (_label, text, expected) => {
    expect(problems(text)).toEqual(expect.arrayContaining([expect.stringContaining(expected)]));
  });

  test('a JSON plan with __proto__ is refused the same way', () => {
    const { parse } = require('yaml');
    const json = JSON.stringify(parse(good)).replace('"columns":{', '"columns":{"__proto__":"full_name",');
    expect(problems(json, 'plan.json')).toEqual([expect.stringContaining('columns.__proto__: the key __proto__ is reserved')]);
  });

  test.each([
    ['malformed JSON', '{"version": 1, "name": "x",', 'plan.json', /^not valid JSON: /],
    ['JSON that is not an object', '[1, 2]', 'plan.json', /^\(plan\): Invalid input: expected object/],
    ['a JSON plan nested 400,000 deep (the checks that walk it must not crash)', `{"version": ${'['.repeat(400_000)}${']'.repeat(400_000)}}`, 'plan.json', /^plan file nests \[ \] or \{ \} more than 32 levels deep$/],
    ['a YAML plan nested deep by indentation', `version: 1\n${Array.from({ length: 40 }, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n')} 1\n`, 'plan.yaml', /^\(plan\): nested more than 32 levels deep$/],
  ])('%s is refused quickly, named', (_label, text, name, expected) => {
    const started = Date.now();
    expect(problems(text, name)).toEqual([expect.stringMatching(expected)]);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('a YAML alias bomb (billion laughs) is refused at once, not expanded', () => {
    let bomb = 'version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
    for (let i = 1; i <= 9; i += 1) bomb += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
    const started = Date.now();
    expect(problems(bomb)).toEqual(['not valid YAML: Excessive alias count indicates a resource exhaustion attack']);
    expect(Date.now() - started).toBeLessThan(2000);
    // An anchor used a few times (one approvers list for both gates) stays fine.
    expect(problems(good.replace('approvers: [alice, bob]', 'approvers: &team [alice, bob]').replace('approvers: [alice]', 'approvers: *team'))).toEqual([]);
  });

  test.each([
    ['a string', '"4"'], ['a fraction', '1.5'], ['a list', '[2]'], ['null', 'null'],
  ])('copy.parallel as %s is refused, named', (_label, value) => {
    expect(problems(good.replace('parallel: 2', `parallel: ${value}`))).toEqual([expect.stringMatching(/^copy\.parallel: /)]);
  });

  test('bytes that are not UTF-8 are refused with their offset, never replaced', () => {
    const text = Buffer.concat([Buffer.from(good.replace('carol', 'car')), Buffer.from([0xff]), Buffer.from('\n')]);
    const offset = good.replace('carol', 'car').length;
    const path = file('');
    writeFileSync(path, Buffer.concat([Buffer.from(good.slice(0, good.indexOf('carol'))), Buffer.from([0x63, 0xe9, 0x6c]), Buffer.from(good.slice(good.indexOf('carol') + 3))]));
    expect(() => loadPlan(path, env)).toThrow(new RegExp(`plan file is not UTF-8: invalid byte 0xe9 at byte offset ${good.indexOf('carol') + 1}`));
    expect(invalidUtf8Offset(text)).toBe(offset);
    expect(invalidUtf8Offset(Buffer.from('héllo ✓ 𝄞'))).toBeUndefined();
    expect(invalidUtf8Offset(Buffer.from([0x61, 0xc0, 0x80]))).toBe(1); // overlong
    expect(invalidUtf8Offset(Buffer.from([0x61, 0xed, 0xa0, 0x80]))).toBe(1); // surrogate
    expect(invalidUtf8Offset(Buffer.from([0x61, 0xe2, 0x9c]))).toBe(1); // cut short
  });

  test('a plan over 1 MiB is refused before it is parsed', () => {
    const path = file(good + `# ${'x'.repeat(MAX_PLAN_BYTES)}\n`);
    const started = Date.now();
    expect(() => loadPlan(path, env)).toThrow(/plan file is 1\.0 MiB; the limit is 1 MiB/);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('a createFile over 1 MiB or not UTF-8 is refused, named', () => {
    const path = file(good.replace(/create: \|\n.*\n/, 'createFile: target.sql\n'));
    writeFileSync(join(path, '..', 'target.sql'), `-- ${'x'.repeat(MAX_PLAN_BYTES)}\nCREATE TABLE public.profiles_v2 (id uuid)`);
    expect(() => loadPlan(path, env)).toThrow(/createFile: target\.sql is 1\.0 MiB; the limit is 1 MiB/);
    writeFileSync(join(path, '..', 'target.sql'), Buffer.from([0x43, 0x52, 0xfe]));
    expect(() => loadPlan(path, env)).toThrow(/createFile: target\.sql is not UTF-8: invalid byte 0xfe at byte offset 2/);
  });

  test('the database variable\'s value never appears in an error', () => {
    const secret = '/usr/local/sbin:/usr/secret-token-123';
    const text = good.replace('database: DATABASE_URL', 'database: PATH');
    let message = '';
    try {
      loadPlan(file(text), { PATH: secret });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/database: environment variable PATH does not hold a postgres:\/\/ or postgresql:\/\/ URL/);
    expect(message).not.toContain('secret-token');
  });
});

describe('the plan checked as code, offline (issue 13, finding 3)', () => {
  async function codeProblems(text: string): Promise<string[]> {
    try {
      await loadCheckedPlan(file(text), env);
    } catch (err) {
      if (err instanceof PlanError) return err.problems;
      throw err;
    }
    return [];
  }

  test('the example plan passes', async () => {
    expect(await codeProblems(good)).toEqual([]);
  });

  test.each([
    ['a subquery reading password hashes', good.replace('email: lower(email)', 'email: (SELECT rolpassword FROM pg_authid LIMIT 1)'), 'columns.email: a subquery is not allowed'],
    ['query_to_xml in reverse', good.replace('columns:', 'reverse:\n  full_name: "query_to_xml(\'select 1\', true, true, \'\')::text"\ncolumns:'), 'reverse.full_name: function query_to_xml is never allowed'],
    ['a policy on another table', good.replace('email text)', 'email text);\n  CREATE POLICY open ON public.profiles TO anon USING (true)'), 'create: statement 2 (CreatePolicyStmt) creates a policy on public.profiles, which is not the target'],
    ['a grant on a schema', good.replace('email text)', 'email text);\n  GRANT USAGE ON SCHEMA safeshift TO anon'), 'create: statement 2 (GrantStmt) grants or revokes on a schema'],
  ])('%s is refused, naming the field', async (_label, text, expected) => {
    expect(await codeProblems(text)).toEqual(expect.arrayContaining([expect.stringContaining(expected)]));
  });

  test.each([
    ['a default running a query', 'ALTER TABLE public.profiles ADD COLUMN leak text DEFAULT query_to_xml(\'select 1\', true, true, \'\')::text',
      'alter: statement 1 (AlterTableStmt), column leak DEFAULT: function query_to_xml is never allowed in an in-place change'],
    ['a CHECK reaching another database', 'ALTER TABLE public.profiles ADD CONSTRAINT c CHECK (dblink_exec(\'x\', \'y\') IS NOT NULL) NOT VALID',
      'alter: statement 1 (AlterTableStmt), CHECK c: function dblink_exec is never allowed in an in-place change'],
    ['an index on a file read', 'CREATE INDEX CONCURRENTLY profiles_f ON public.profiles ((pg_read_file(\'/etc/passwd\')))',
      'alter: statement 1 (IndexStmt), index profiles_f expression: function pg_read_file is never allowed in an in-place change'],
  ])('an in-place plan whose alter holds %s is refused, named', async (_label, alter, expected) => {
    const inPlace = good.replace('target: public.profiles_v2\n', '').replace('key: [id]\n', '').replace(/^create: \|\n.*\n/m, `alter: "${alter}"\n`).replace(/^columns:\n(  .*\n)+/m, '');
    expect(await codeProblems(inPlace)).toEqual(expect.arrayContaining([expect.stringContaining(expected)]));
  });

  test('allowFunctions takes schema.name', async () => {
    expect(loadPlan(file(good + 'allowFunctions: [public.normalize_phone]\n'), env).plan.allowFunctions).toEqual([{ schema: 'public', name: 'normalize_phone' }]);
    expect(problems(good + 'allowFunctions: ["bad name"]\n')).toEqual([expect.stringMatching(/^allowFunctions\[0\]: /)]);
  });
});
