/** Bad input gets a clear error naming the field or object, exit 2, and changes nothing in the database. */
import { basePlan, catalogSnapshot, runCli, sql, uniqueName, writePlan } from '../support/helpers';
import { seedProfiles } from '../support/seed';

let src: string;
beforeAll(async () => {
  src = uniqueName('profiles');
  await seedProfiles(src, 100);
  await sql(`CREATE TABLE public.${src}_nokey (a int, b text)`);
  await sql(`CREATE TABLE public.${src}_ckey (k text COLLATE "C" PRIMARY KEY, v int)`);
});

const cases: [string, () => Record<string, unknown>, RegExp][] = [
  ['unknown key', () => ({ ...basePlan('bad-a', `public.${src}`, `public.${src}_v2`), colums: {} }), /colums: unknown field/],
  ['unknown nested key', () => basePlan('bad-b', `public.${src}`, `public.${src}_v2`, { copy: { chunkrows: 5 } }), /copy\.chunkrows: unknown field/],
  ['bad identifier', () => basePlan('bad-c', `public.${src}; drop table x`, `public.${src}_v2`), /^.*source: .*is not schema\.table/m],
  ['bad duration', () => basePlan('bad-d', `public.${src}`, `public.${src}_v2`, { approvals: { cutover: { approvers: ['alice'], timeout: '3 days' }, drop: { approvers: ['alice'] } } }), /approvals\.cutover\.timeout: "3 days" is not a duration/],
  ['secret instead of env var name', () => ({ ...basePlan('bad-e', `public.${src}`, `public.${src}_v2`), database: 'postgres://u:p@h/db' }), /database: must be the NAME of an environment variable/],
  ['env var not set', () => ({ ...basePlan('bad-f', `public.${src}`, `public.${src}_v2`), database: 'SAFESHIFT_TEST_UNSET_URL' }), /database: environment variable SAFESHIFT_TEST_UNSET_URL is not set/],
  ['missing source table', () => basePlan('bad-g', 'public.no_such_table', `public.${src}_v2`), /source: table public\.no_such_table does not exist/],
  ['table without a key', () => basePlan('bad-h', `public.${src}_nokey`, `public.${src}_v2`), /key: .* has no primary key/],
  ['mapping to a missing column', () => basePlan('bad-i', `public.${src}`, `public.${src}_v2`, { columns: { nosuch: 'full_name' } }), /columns\.nosuch: .* has no column nosuch/],
  ['broken expression', () => basePlan('bad-j', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (id bigint primary key, n int)`, columns: { n: 'no_such_col + 1' } }), /columns\.n: no_such_col \+ 1 does not work/],
  ['expression smuggling a statement', () => basePlan('bad-k', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (id bigint primary key, n text)`, columns: { n: `'x')::text FROM pg_class; DROP TABLE public.${src}; SELECT ('y'` } }), /columns\.n: /],
  ['target DDL that does not parse', () => basePlan('bad-l', `public.${src}`, `public.${src}_v2`, { create: 'CREATE TABLE oops (' }), /create: the target DDL does not parse: syntax error/],
  ['target DDL that fails when run', () => basePlan('bad-u', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY REFERENCES public.no_such_table)` }), /create: the target DDL fails: relation "public.no_such_table" does not exist/],
  ['self-approval only', () => basePlan('bad-m', `public.${src}`, `public.${src}_v2`, { approvals: { cutover: { approvers: ['carol'] }, drop: { approvers: ['alice'] } } }), /approvals\.cutover\.required: needs 1 approvals but only 0/],
  ['existing target', () => basePlan('bad-n', `public.${src}`, `public.${src}_nokey`), /target: .* already exists/],
  ['DDL that commits behind a comment', () => basePlan('bad-o', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (LIKE public.${src}); /**/ COMMIT; CREATE TABLE public.${src}_evil (x int)` }), /create: statement 2 \(TransactionStmt\) is not allowed/],
  ['DDL that creates another object', () => basePlan('bad-p', `public.${src}`, `public.${src}_v2`, { create: `CREATE TYPE public.${src}_mood AS ENUM ('ok'); CREATE TABLE public.${src}_v2 (LIKE public.${src})` }), /create: statement 1 \(CreateEnumStmt\) is not allowed/],
  ['DDL that creates another table', () => basePlan('bad-q', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (LIKE public.${src}); CREATE TABLE public.${src}_other (x int)` }), /create: the DDL also creates table public\.\S+_other/],
  ['key collation differs', () => basePlan('bad-r', `public.${src}_ckey`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (k text PRIMARY KEY, v int)` }), /key: key column k has collation "C" in the source but "default" in the target/],
  ['more lanes than allowed', () => basePlan('bad-s', `public.${src}`, `public.${src}_v2`, { copy: { parallel: 17 } }), /copy\.parallel: .*16/],
  ['unknown copy format', () => basePlan('bad-u', `public.${src}`, `public.${src}_v2`, { copy: { format: 'csv' } }), /copy\.format: .*"auto".*"text"/],
  ['compatibility view missing an old column', () => basePlan('bad-v', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY)`, cutover: { compatView: true } }), /cutover\.compatView: column full_name of public\.\S+ cannot be derived from public\.\S+_v2; give it under reverse:/],
  ['gate timeout of zero', () => basePlan('bad-t', `public.${src}`, `public.${src}_v2`, { approvals: { cutover: { approvers: ['alice'], timeout: '0s' }, drop: { approvers: ['alice'] } } }), /approvals\.cutover\.timeout: must be at least 1s/],
];

describe.each(['plan validate', 'start'])('%s with a malformed plan', (command) => {
  test.each(cases)('%s: exit 2, the field named, database unchanged, no migration started', async (_label, make, message) => {
    const before = await catalogSnapshot();
    const plan = make();
    const file = writePlan(plan);
    const result = await runCli([...command.split(' '), file]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(await catalogSnapshot()).toBe(before);
    const status = await runCli(['status', String(plan.name)]);
    expect(status.code).toBe(2);
    expect(status.stderr).toMatch(/no migration/);
  });
});

test('a plan that is not YAML at all is refused with exit 2', async () => {
  const file = writePlan({});
  require('node:fs').writeFileSync(file, 'version: [1\n');
  const result = await runCli(['plan', 'validate', file]);
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(/not valid YAML/);
});
