/** Bad input gets a clear error naming the field or object, exit 2, and changes nothing in the database. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { connectClient } from '../../src/config';
import { migrationWorkflowId } from '../../src/messages';
import { basePlan, catalogSnapshot, runCli, sql, uniqueName, writePlan } from '../support/helpers';
import { seedProfiles } from '../support/seed';

let src: string;
let temporal: Awaited<ReturnType<typeof connectClient>>;
afterAll(async () => { await temporal?.connection.close(); });
beforeAll(async () => {
  temporal = await connectClient();
  src = uniqueName('profiles');
  await seedProfiles(src, 100);
  await sql(`CREATE TABLE public.${src}_nokey (a int, b text)`);
  await sql(`CREATE TABLE public.${src}_ckey (k text COLLATE "C" PRIMARY KEY, v int)`);
  // A function that runs SQL, and an operator over it: a plan may not call them unless it lists them.
  await sql(`CREATE FUNCTION public.${src}_leak(v text) RETURNS text LANGUAGE sql STABLE AS 'SELECT string_agg(rolname, '','') FROM pg_roles'`);
  await sql(`CREATE FUNCTION public.${src}_cat(a text, b text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT a || b'`);
  await sql(`CREATE OPERATOR public.#%# (LEFTARG = text, RIGHTARG = text, FUNCTION = public.${src}_cat)`);
  await sql(`CREATE FUNCTION public.${src}_trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'`);
  // A cast through a user function (the catalog, not the parser, sees that a CHECK calls it), and a function
  // labelled IMMUTABLE that is not: it advances a sequence (never rolled back) whenever PostgreSQL evaluates it.
  await sql(`CREATE TYPE public.${src}_mood AS ENUM ('ok')`);
  await sql(`CREATE FUNCTION public.${src}_tomood(text) RETURNS public.${src}_mood LANGUAGE sql IMMUTABLE AS $$SELECT 'ok'::public.${src}_mood$$`);
  await sql(`CREATE CAST (text AS public.${src}_mood) WITH FUNCTION public.${src}_tomood(text)`);
  await sql(`CREATE SEQUENCE public.${src}_ran`);
  await sql(`CREATE FUNCTION public.${src}_mislabelled(int) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$BEGIN PERFORM nextval('public.${src}_ran'); RETURN 'x'; END$$`);
  // The source's own CHECK calls a user function: it runs on every write already, so its LIKE target keeps it.
  await sql(`CREATE TABLE public.${src}_chk (id int PRIMARY KEY, e text CHECK (public.${src}_cat(e, 'x') <> ''))`);
});

/** Target DDL of the plan: the target, then `extra` (issue 13, finding 3: each ran at prepare and outlived rollback). */
const ddl = (extra: string) => `CREATE TABLE public.${src}_v2 (LIKE public.${src} INCLUDING ALL);\n${extra}`;

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
  ['DDL that creates another table', () => basePlan('bad-q', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (LIKE public.${src}); CREATE TABLE public.${src}_other (x int)` }), /create: statement 2 \(CreateStmt\) creates public\.\S+_other, which is not the target/],
  ['key collation differs', () => basePlan('bad-r', `public.${src}_ckey`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (k text PRIMARY KEY, v int)` }), /key: key column k has collation "C" in the source but "default" in the target/],
  ['more lanes than allowed', () => basePlan('bad-s', `public.${src}`, `public.${src}_v2`, { copy: { parallel: 17 } }), /copy\.parallel: .*16/],
  ['unknown copy format', () => basePlan('bad-u', `public.${src}`, `public.${src}_v2`, { copy: { format: 'csv' } }), /copy\.format: .*"auto".*"text"/],
  ['compatibility view missing an old column', () => basePlan('bad-v', `public.${src}`, `public.${src}_v2`, { create: `CREATE TABLE public.${src}_v2 (id bigint PRIMARY KEY)`, cutover: { compatView: true } }), /cutover\.compatView: column full_name of public\.\S+ cannot be derived from public\.\S+_v2; give it under reverse:/],
  ['gate timeout of zero', () => basePlan('bad-t', `public.${src}`, `public.${src}_v2`, { approvals: { cutover: { approvers: ['alice'], timeout: '0s' }, drop: { approvers: ['alice'] } } }), /approvals\.cutover\.timeout: must be at least 1s/],
];

/** Issue 13, findings 3 and 10: each ran SQL before approval, or was silently dropped. */
const attacks: typeof cases = [
  ['a subquery reading password hashes', () => basePlan('bad-w', `public.${src}`, `public.${src}_v2`, { columns: { email: '(SELECT rolpassword FROM pg_authid LIMIT 1)' } }), /columns\.email: a subquery is not allowed/],
  ['query_to_xml in reverse', () => basePlan('bad-x', `public.${src}`, `public.${src}_v2`, { reverse: { bio: `query_to_xml('SELECT * FROM pg_authid', true, true, '')::text` } }), /reverse\.bio: function query_to_xml is never allowed/],
  ['a function that is not a built-in', () => basePlan('bad-y', `public.${src}`, `public.${src}_v2`, { columns: { email: `${src}_leak(email)` } }), /columns\.email: calls public\.\S+_leak, which is not a built-in; list it under allowFunctions/],
  ['an operator over such a function', () => basePlan('bad-z', `public.${src}`, `public.${src}_v2`, { columns: { email: `email #%# 'x'` } }), /columns\.email: calls public\.\S+_cat \(operator #%#\(text,text\)\), which is not a built-in/],
  ['a policy on another table', () => basePlan('bad-aa', `public.${src}`, `public.${src}_v2`, { create: ddl(`CREATE POLICY open ON public.${src} TO anon USING (true)`) }), /create: statement 2 \(CreatePolicyStmt\) creates a policy on public\.\S+, which is not the target/],
  ['a grant on a schema', () => basePlan('bad-ab', `public.${src}`, `public.${src}_v2`, { create: ddl('GRANT USAGE ON SCHEMA safeshift TO anon') }), /create: statement 2 \(GrantStmt\) grants or revokes on a schema/],
  ['a trigger on another table', () => basePlan('bad-ac', `public.${src}`, `public.${src}_v2`, { create: ddl(`CREATE TRIGGER t BEFORE INSERT ON public.${src}_ckey FOR EACH ROW EXECUTE FUNCTION public.${src}_trg()`) }), /create: statement 2 \(CreateTrigStmt\) creates a trigger on public\.\S+_ckey, which is not the target/],
  ['a comment on another table', () => basePlan('bad-ad', `public.${src}`, `public.${src}_v2`, { create: ddl(`COMMENT ON TABLE public.${src} IS 'owned'`) }), /create: statement 2 \(CommentStmt\) comments on public\.\S+, which is not the target/],
  // What the parse tree cannot tell (an index PostgreSQL named) the catalog comparison finds.
  ['a comment on another table\'s index', () => basePlan('bad-ae', `public.${src}`, `public.${src}_v2`, { create: ddl(`COMMENT ON INDEX public.${src}_pkey IS 'owned'`) }), /create: comment on index \S+_pkey was created outside the target/],
  // Target DDL expressions (the default of a column the mapping leaves out runs on every copied row; a CHECK or index on every write).
  ['a default running a query', () => basePlan('bad-ag', `public.${src}`, `public.${src}_v2`, { create: ddl(`ALTER TABLE public.${src}_v2 ADD COLUMN leak text DEFAULT query_to_xml('select rolpassword from pg_authid', true, true, '')::text`) }),
    /create: statement 2 \(AlterTableStmt\), column leak DEFAULT: function query_to_xml is never allowed in target DDL/],
  ['a CHECK calling a function that is not a built-in', () => basePlan('bad-ah', `public.${src}`, `public.${src}_v2`, { create: ddl(`ALTER TABLE public.${src}_v2 ADD CONSTRAINT evil CHECK (public.${src}_leak(email) IS NOT NULL)`) }),
    /create: statement 2 \(AlterTableStmt\), CHECK evil: calls public\.\S+_leak, which is not a built-in and the source does not call it/],
  ['an index on an operator over such a function', () => basePlan('bad-ai', `public.${src}`, `public.${src}_v2`, { create: ddl(`CREATE INDEX ON public.${src}_v2 ((email #%# 'x'))`) }),
    /create: statement 2 \(IndexStmt\), index expression: calls public\.\S+_cat \(operator #%#\(text,text\)\), which is not a built-in/],
  ['a CHECK through a cast the catalog resolves to a user function', () => basePlan('bad-aj', `public.${src}`, `public.${src}_v2`, { create: ddl(`ALTER TABLE public.${src}_v2 ADD CONSTRAINT moody CHECK (email::public.${src}_mood IS NOT NULL)`) }),
    /create: constraint moody calls public\.\S+_tomood, which is not a built-in and the source's constraints do not call it/],
  ['a reserved key', () => basePlan('bad-af', `public.${src}`, `public.${src}_v2`, { columns: JSON.parse('{"__proto__": "email"}') }), /columns\.__proto__: the key __proto__ is reserved/],
];
/** `start` runs the same checks as validate (and rehearses): a few attacks show it, so the suite stays lean. */
const startAttacks = attacks.filter(([label]) => ['a subquery reading password hashes', 'a policy on another table', 'a comment on another table\'s index'].includes(label));

describe.each([['plan validate', [...cases, ...attacks]], ['start', [...cases, ...startAttacks]]] as const)('%s with a malformed plan', (command, table) => {
  test.each(table)('%s: exit 2, the field named, database unchanged, no migration started', async (_label, make, message) => {
    const before = await catalogSnapshot();
    const plan = make();
    const file = writePlan(plan);
    const result = await runCli([...command.split(' '), file]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(await catalogSnapshot()).toBe(before);
    // No migration was started: Temporal has no workflow of that id (asked directly; a CLI process per case cost
    // about 100 s of the suite; `safeshift status` of an unknown migration is pinned once, below).
    await expect(temporal.workflow.getHandle(migrationWorkflowId(String(plan.name))).describe()).rejects.toBeInstanceOf(WorkflowNotFoundError);
  });
});

test('status of a migration that was never started: exit 2, named', async () => {
  const status = await runCli(['status', 'never-started-plan']);
  expect(status.code).toBe(2);
  expect(status.stderr).toMatch(/no migration/);
});

test('a plan that is not YAML at all is refused with exit 2', async () => {
  const file = writePlan({});
  require('node:fs').writeFileSync(file, 'version: [1\n');
  const result = await runCli(['plan', 'validate', file]);
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(/not valid YAML/);
});

describe('the plan file itself (issue 13, finding 10): exit 2, named, nothing changed', () => {
  const { writeFileSync } = require('node:fs') as typeof import('node:fs');
  /** A .json plan next to the YAML one (JSON.parse reads it). */
  const json = (file: string, text: string) => { const path = file.replace(/\.yaml$/, '.json'); writeFileSync(path, text); return path; };
  test.each([
    ['bytes that are not UTF-8', (file: string) => writeFileSync(file, Buffer.concat([Buffer.from('version: 1\nname: caf'), Buffer.from([0xe9]), Buffer.from('\n')])), /plan file is not UTF-8: invalid byte 0xe9 at byte offset 20/],
    ['a 28 MB plan', (file: string) => writeFileSync(file, `version: 1\n# ${'x'.repeat(28_000_000)}\n`), /plan file is 26\.7 MiB; the limit is 1 MiB/],
    ['malformed JSON', (file: string) => json(file, '{"version": 1, "name": "x",'), /not valid JSON: /],
    ['JSON nested 400,000 deep (crashed the checks that walk it: exit 1 and a stack trace)', (file: string) => json(file, `{"version": ${'['.repeat(400_000)}${']'.repeat(400_000)}}`), /plan file nests \[ \] or \{ \} more than 32 levels deep/],
    ['a YAML alias bomb (billion laughs)', (file: string) => {
      let bomb = 'version: 1\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n';
      for (let i = 1; i <= 9; i += 1) bomb += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
      writeFileSync(file, bomb);
    }, /not valid YAML: Excessive alias count indicates a resource exhaustion attack/],
  ] as [string, (file: string) => string | void, RegExp][])('%s', async (_label, write, message) => {
    const before = await catalogSnapshot();
    const planned = writePlan({});
    const file = write(planned) ?? planned;
    const started = Date.now();
    const result = await runCli(['plan', 'validate', file]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await catalogSnapshot()).toBe(before);
  });

  test('an environment variable that is not a connection string: named, its value never printed', async () => {
    const file = writePlan({ ...basePlan('bad-env', `public.${src}`, `public.${src}_v2`), database: 'SAFESHIFT_TEST_NOT_A_URL' });
    const secret = '/usr/local/bin:/opt/secret-token-4711';
    const result = await runCli(['plan', 'validate', file], { SAFESHIFT_TEST_NOT_A_URL: secret });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/database: environment variable SAFESHIFT_TEST_NOT_A_URL does not hold a postgres:\/\/ or postgresql:\/\/ URL/);
    expect(result.stderr + result.stdout).not.toContain('secret-token');
  });
});

test('a function listed under allowFunctions may be called; the plan validates and the catalog is unchanged', async () => {
  const before = await catalogSnapshot();
  const file = writePlan(basePlan('ok-allow', `public.${src}`, `public.${src}_v2`, { columns: { email: `${src}_leak(email)` }, allowFunctions: [`public.${src}_leak`] }));
  const result = await runCli(['plan', 'validate', file]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  expect(await catalogSnapshot()).toBe(before);
});

test('a column named like an Object.prototype member (constructor, "toString") is copied by name, not mistaken for a mapping', async () => {
  await sql(`CREATE TABLE public.${src}_js (id int PRIMARY KEY, constructor text, "toString" text)`);
  const result = await runCli(['plan', 'validate', writePlan(basePlan('ok-js-names', `public.${src}_js`, `public.${src}_js_v2`))]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
});

describe('a function labelled IMMUTABLE that is not never runs before it is refused (the planner folds constants)', () => {
  test.each([
    ['a mapping expression', () => basePlan('bad-imm-a', `public.${src}`, `public.${src}_v2`, { columns: { email: `public.${src}_mislabelled(1)` } }),
      /columns\.email: calls public\.\S+_mislabelled, which is not a built-in/],
    ['an index expression of the target DDL', () => basePlan('bad-imm-b', `public.${src}`, `public.${src}_v2`, { create: ddl(`CREATE INDEX ON public.${src}_v2 ((public.${src}_mislabelled(1)))`) }),
      /create: statement 2 \(IndexStmt\), index expression: calls public\.\S+_mislabelled, which is not a built-in/],
    ['a row filter (where:)', () => basePlan('bad-imm-c', `public.${src}`, `public.${src}_v2`, { where: `public.${src}_mislabelled(1) = 'x' AND id IS NOT NULL` }),
      /where: calls public\.\S+_mislabelled, which is not a built-in/],
  ])('%s: refused, exit 2, and the function did not run', async (_label, make, message) => {
    const before = await catalogSnapshot();
    const result = await runCli(['plan', 'validate', writePlan(make())]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(2);
    expect(await catalogSnapshot()).toBe(before);
    const [ran] = await sql<{ is_called: boolean }>(`SELECT is_called FROM public.${src}_ran`);
    expect(ran!.is_called).toBe(false);
  });
});

test('the source\'s own CHECK calling a user function stays accepted in its LIKE target', async () => {
  const result = await runCli(['plan', 'validate', writePlan(basePlan('ok-source-check', `public.${src}_chk`, `public.${src}_chk_v2`))]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
});
