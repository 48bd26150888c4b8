/** The plan's SQL checked as code by PostgreSQL's parser, without a database (issue 13, finding 3). */
import { expressionProblems, parserReady } from '../../src/plan/expressions';
import { targetDdlCalls, targetDdlProblems } from '../../src/target-ddl';
import { throttleQueryProblems } from '../../src/throttle';

beforeAll(() => parserReady());

describe('plan expressions', () => {
  test.each([
    ['a column', 'email'],
    ['a quoted column', '"Full Name"'],
    ['functions, operators, casts', "lower(trim(email)) || '@' || id::text"],
    ['CASE, COALESCE, NULLIF, GREATEST', "CASE WHEN score > 10 THEN 'hi' ELSE coalesce(nullif(name, ''), 'x') END || greatest(a, b)::text"],
    ['IS NULL, IN, BETWEEN, LIKE', "a IS NULL OR a IN (1, 2) OR b BETWEEN 1 AND 3 OR c LIKE 'x%'"],
    ['arrays, subscripts, rows, collations', '(ARRAY[a, b])[1] = (r).f AND ROW(a, b) IS NOT NULL AND c COLLATE "C" > \'x\''],
    ['a qualified built-in', 'pg_catalog.upper(name)'],
    ['current date and json operators', "current_date - (doc->>'born')::date"],
  ])('%s is allowed', async (_label, expr) => {
    expect(await expressionProblems(expr, 'columns.x')).toEqual([]);
  });

  test.each([
    ['a scalar subquery', '(SELECT rolpassword FROM pg_authid LIMIT 1)', 'columns.x: a subquery is not allowed'],
    ['EXISTS', 'EXISTS (SELECT 1 FROM pg_authid)', 'columns.x: a subquery is not allowed'],
    ['IN (subquery)', 'id IN (SELECT id FROM public.other)', 'columns.x: a subquery is not allowed'],
    ['ARRAY(subquery)', 'ARRAY(SELECT rolname FROM pg_roles)', 'columns.x: a subquery is not allowed'],
    ['a CTE behind the parenthesis', "x) FROM (WITH d AS (DELETE FROM t RETURNING 1) SELECT 1) q; SELECT (1", 'columns.x: must be one SQL expression'],
    ['a second statement', "'x')::text FROM pg_class; DROP TABLE public.p; SELECT ('y'", 'columns.x: must be one SQL expression'],
    ['a FROM clause', "x) FROM pg_authid WHERE (true", 'columns.x: must be one SQL expression'],
    ['another table\'s column', 'other.secret', 'columns.x: other.secret is not a bare column name'],
    ['a schema-qualified column', 'public.other.secret', 'columns.x: public.other.secret is not a bare column name'],
    ['query_to_xml', "query_to_xml('select * from pg_authid', true, true, '')", 'columns.x: function query_to_xml is never allowed'],
    ['table_to_xml', "pg_catalog.table_to_xml('pg_authid', true, true, '')", 'columns.x: function pg_catalog.table_to_xml is never allowed'],
    ['dblink', "dblink('host=x', 'delete from t')", 'columns.x: function dblink is never allowed'],
    ['pg_read_file', "pg_read_file('/etc/passwd')", 'columns.x: function pg_read_file is never allowed'],
    ['lo_get', 'lo_get(16384)', 'columns.x: function lo_get is never allowed'],
    ['set_config', "set_config('role', 'postgres', false)", 'columns.x: function set_config is never allowed'],
    ['current_setting', "current_setting('request.jwt.claims')", 'columns.x: function current_setting is never allowed'],
    ['nextval', "nextval('s')", 'columns.x: function nextval is never allowed'],
    ['a window function', 'row_number() OVER ()', 'columns.x: row_number(...) OVER is a window function'],
    ['an aggregate', 'count(*)', 'columns.x: count is used as an aggregate'],
    ['a parameter', '$1', 'columns.x: a parameter ($n) is not allowed'],
    ['a star', '*', 'columns.x: does not parse'],
    ['text that does not parse', 'lower(', 'columns.x: does not parse'],
  ])('%s is refused, naming the field', async (_label, expr, expected) => {
    const found = await expressionProblems(expr, 'columns.x');
    expect(found.some((p) => p.startsWith(expected))).toBe(true);
  });
});

describe('target DDL touches only the target', () => {
  const target = { schema: 'public', name: 'p_v2' };
  const ok = 'CREATE TABLE public.p_v2 (id bigint PRIMARY KEY, n text, o bigint REFERENCES public.other)';

  test('the target, its partitions, indexes, grants, policies, triggers and comments are allowed', async () => {
    const ddl = [
      'CREATE TABLE public.p_v2 (id bigint, k int) PARTITION BY LIST (k)',
      'CREATE TABLE public.p_v2_1 PARTITION OF public.p_v2 FOR VALUES IN (1)',
      'CREATE INDEX p_v2_n ON public.p_v2 (id)', 'CREATE INDEX ON public.p_v2_1 (k)',
      'ALTER TABLE public.p_v2 ADD CONSTRAINT c CHECK (k > 0)', 'ALTER TABLE public.p_v2 ENABLE ROW LEVEL SECURITY',
      'GRANT SELECT ON public.p_v2 TO authenticated', 'GRANT SELECT (id) ON TABLE public.p_v2 TO anon', 'REVOKE ALL ON public.p_v2 FROM anon',
      'CREATE POLICY own ON public.p_v2 TO authenticated USING (id = 1)',
      'CREATE TRIGGER t BEFORE INSERT ON public.p_v2 FOR EACH ROW EXECUTE FUNCTION public.f()',
      "COMMENT ON TABLE public.p_v2 IS 'x'", "COMMENT ON COLUMN public.p_v2.id IS 'x'", "COMMENT ON POLICY own ON public.p_v2 IS 'x'",
      "COMMENT ON INDEX public.p_v2_n IS 'x'", "COMMENT ON CONSTRAINT c ON public.p_v2 IS 'x'", "COMMENT ON TRIGGER t ON public.p_v2 IS 'x'",
    ].join(';\n');
    expect(await targetDdlProblems(ddl, 'create', target)).toEqual([]);
  });

  test.each([
    ['a policy on another table', 'CREATE POLICY open ON public.victim TO anon USING (true)', 'create: statement 2 (CreatePolicyStmt) creates a policy on public.victim, which is not the target'],
    ['a grant on a schema', 'GRANT USAGE ON SCHEMA safeshift TO anon', 'create: statement 2 (GrantStmt) grants or revokes on a schema'],
    ['a grant on a function', 'GRANT EXECUTE ON FUNCTION public.f() TO anon', 'create: statement 2 (GrantStmt) grants or revokes on a function'],
    ['a grant on a database', 'GRANT CONNECT ON DATABASE postgres TO anon', 'create: statement 2 (GrantStmt) grants or revokes on a database'],
    ['a grant on all tables', 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO anon', 'create: statement 2 (GrantStmt) grants or revokes on all tables in a schema'],
    ['a grant on another table', 'GRANT SELECT ON public.p_v2, public.victim TO anon', 'create: statement 2 (GrantStmt) grants or revokes on public.victim, which is not the target'],
    ['a role grant', 'GRANT service_role TO anon', 'create: statement 2 (GrantRoleStmt) is not allowed'],
    ['a trigger on another table', 'CREATE TRIGGER t BEFORE INSERT ON public.victim FOR EACH ROW EXECUTE FUNCTION public.f()', 'create: statement 2 (CreateTrigStmt) creates a trigger on public.victim'],
    ['a constraint trigger from another table', 'CREATE CONSTRAINT TRIGGER t AFTER INSERT ON public.p_v2 FROM public.victim FOR EACH ROW EXECUTE FUNCTION public.f()', 'create: statement 2 (CreateTrigStmt) creates a constraint trigger FROM public.victim'],
    ['a comment on another table', "COMMENT ON TABLE public.victim IS 'x'", 'create: statement 2 (CommentStmt) comments on public.victim'],
    ['a comment on another table\'s column', "COMMENT ON COLUMN public.victim.id IS 'x'", 'create: statement 2 (CommentStmt) comments on a column of public.victim'],
    ['a comment on a schema', "COMMENT ON SCHEMA public IS 'x'", 'create: statement 2 (CommentStmt) comments on a schema'],
    ['a comment on a function', "COMMENT ON FUNCTION public.f() IS 'x'", 'create: statement 2 (CommentStmt) comments on a function'],
    ['an index on another table', 'CREATE INDEX ON public.victim (id)', 'create: statement 2 (IndexStmt) indexes public.victim'],
    ['altering another table', 'ALTER TABLE public.victim DISABLE ROW LEVEL SECURITY', 'create: statement 2 (AlterTableStmt) alters public.victim'],
    ['altering another index', 'ALTER INDEX public.victim_pkey SET (fillfactor = 50)', 'create: statement 2 (AlterTableStmt) alters index public.victim_pkey'],
    ['attaching another table', 'ALTER TABLE public.p_v2 ATTACH PARTITION public.victim FOR VALUES IN (2)', 'create: statement 2 (AlterTableStmt) attaches or detaches public.victim'],
    ['a partition of another table', 'CREATE TABLE public.p_v2_x PARTITION OF public.victim FOR VALUES IN (3)', 'create: statement 2 (CreateStmt) creates public.p_v2_x as a partition of public.victim'],
    ['another table', 'CREATE TABLE public.evil (x int)', 'create: statement 2 (CreateStmt) creates public.evil, which is not the target'],
    ['an unqualified name', 'GRANT SELECT ON p_v2 TO anon', 'create: statement 2 (GrantStmt) names grants or revokes on p_v2 without its schema'],
    ['a function', "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'select 1'", 'create: statement 2 (CreateFunctionStmt) is not allowed'],
  ])('%s is refused, naming the statement', async (_label, stmt, expected) => {
    const found = await targetDdlProblems(`${ok};\n${stmt}`, 'create', target);
    expect(found.some((p) => p.startsWith(expected))).toBe(true);
  });
});

describe('target DDL expressions are checked as code (what they may call)', () => {
  const target = { schema: 'public', name: 'p_v2' };
  const ok = 'CREATE TABLE public.p_v2 (id bigint PRIMARY KEY, n text)';

  test('volatile built-in defaults, built-in CHECKs, generated columns, index expressions and membership policies are accepted', async () => {
    const ddl = [
      `CREATE TABLE public.p_v2 (id bigserial PRIMARY KEY, u uuid DEFAULT gen_random_uuid(), t timestamptz NOT NULL DEFAULT now(),
         c timestamptz DEFAULT clock_timestamp(), s bigint DEFAULT nextval('public.p_v2_s_seq'),
         sub uuid DEFAULT (nullif(current_setting('request.jwt.claim.sub', true), ''))::uuid, o uuid DEFAULT auth.uid(),
         email text CHECK (email ~* '^[^@]+@[^@]+$' AND length(email) < 320), lower_email text GENERATED ALWAYS AS (lower(email)) STORED,
         org bigint, CONSTRAINT t_after CHECK (t >= '2020-01-01'::timestamptz))`,
      'CREATE UNIQUE INDEX p_v2_email ON public.p_v2 (lower(email)) WHERE email IS NOT NULL',
      "ALTER TABLE public.p_v2 ADD COLUMN z text DEFAULT 'x', ALTER COLUMN n SET DEFAULT md5(random()::text), ADD CONSTRAINT n_len CHECK (char_length(n) < 100)",
      'CREATE POLICY members ON public.p_v2 TO authenticated USING (org IN (SELECT m.org FROM public.members m WHERE m.user_id = auth.uid())) WITH CHECK (EXISTS (SELECT 1 FROM public.members m WHERE m.org = org))',
    ].join(';\n');
    expect(await targetDdlProblems(ddl, 'create', target)).toEqual([]);
  });

  test.each([
    ['a default running a query', `ALTER TABLE public.p_v2 ADD COLUMN leak text DEFAULT query_to_xml('select rolpassword from pg_authid', true, true, '')::text`,
      'create: statement 2 (AlterTableStmt), column leak DEFAULT: function query_to_xml is never allowed in target DDL'],
    ['a column default in CREATE TABLE', "CREATE TABLE public.p_v2 (id bigint, leak text DEFAULT pg_catalog.table_to_xml('pg_authid', true, true, '')::text)",
      'create: statement 2 (CreateStmt), column leak DEFAULT: function pg_catalog.table_to_xml is never allowed'],
    ['SET DEFAULT', "ALTER TABLE public.p_v2 ALTER COLUMN n SET DEFAULT pg_read_file('/etc/passwd')",
      'create: statement 2 (AlterTableStmt), column n DEFAULT: function pg_read_file is never allowed'],
    ['a CHECK writing elsewhere', "ALTER TABLE public.p_v2 ADD CONSTRAINT c CHECK (dblink_exec('dbname=postgres', 'drop table public.victim') IS NOT NULL)",
      'create: statement 2 (AlterTableStmt), CHECK c: function dblink_exec is never allowed'],
    ['a generated column', "CREATE TABLE public.p_v2 (id bigint, g text GENERATED ALWAYS AS (set_config('role', 'postgres', false)) STORED)",
      'create: statement 2 (CreateStmt), column g GENERATED: function set_config is never allowed'],
    ['an index expression', "CREATE INDEX p_v2_x ON public.p_v2 ((lo_import('/etc/passwd')))",
      'create: statement 2 (IndexStmt), index p_v2_x expression: function lo_import is never allowed'],
    ['an index predicate', "CREATE INDEX p_v2_w ON public.p_v2 (id) WHERE pg_sleep(10) IS NOT NULL",
      'create: statement 2 (IndexStmt), index p_v2_w WHERE: function pg_sleep is never allowed'],
    ['a partition key', "CREATE TABLE public.p_v2 (id bigint) PARTITION BY RANGE ((setval('public.other_seq', 1)))",
      'create: statement 2 (CreateStmt), PARTITION BY: function setval is never allowed'],
    ['ALTER ... TYPE ... USING', "ALTER TABLE public.p_v2 ALTER COLUMN n TYPE text USING query_to_xml('select 1', true, true, '')::text",
      'create: statement 2 (AlterTableStmt), column n TYPE ... USING: function query_to_xml is never allowed'],
    ['a policy', "CREATE POLICY p ON public.p_v2 USING (dblink('dbname=postgres', 'select true') IS NOT NULL)",
      'create: statement 2 (CreatePolicyStmt), policy p USING: function dblink is never allowed'],
    ['a subquery in a policy calling a never-function', "CREATE POLICY p ON public.p_v2 USING (EXISTS (SELECT 1 FROM dblink('x', 'select 1') AS t(a int)))",
      'create: statement 2 (CreatePolicyStmt), policy p USING: function dblink is never allowed'],
    ['a trigger condition', 'CREATE TRIGGER t BEFORE INSERT ON public.p_v2 FOR EACH ROW WHEN (pg_notify(\'x\', \'y\') IS NULL) EXECUTE FUNCTION public.f()',
      'create: statement 2 (CreateTrigStmt), trigger t WHEN: function pg_notify is never allowed'],
    ['a subquery in a CHECK', 'ALTER TABLE public.p_v2 ADD CONSTRAINT c CHECK (id IN (SELECT id FROM public.victim))',
      'create: statement 2 (AlterTableStmt), CHECK c: a subquery is not allowed in target DDL'],
    ['a subquery in a default', "CREATE TABLE public.p_v2 (id bigint, s text DEFAULT (SELECT rolpassword FROM pg_authid LIMIT 1))",
      'create: statement 2 (CreateStmt), column s DEFAULT: a subquery is not allowed in target DDL'],
  ])('%s is refused, naming the statement and the function', async (_label, stmt, expected) => {
    const found = await targetDdlProblems(`${ok};\n${stmt}`, 'create', target);
    expect(found.some((p) => p.startsWith(expected))).toBe(true);
  });

  test('the functions a row-evaluated expression calls are listed for preflight, a policy\'s are not', async () => {
    const calls = await targetDdlCalls(`${ok};
      ALTER TABLE public.p_v2 ADD CONSTRAINT c CHECK (public.evil(id) AND n #%# 'x');
      CREATE INDEX ON public.p_v2 ((evil2(id)));
      CREATE POLICY p ON public.p_v2 USING (auth.uid() IS NOT NULL)`, 'create');
    expect(calls.map((c) => `${c.schema ?? ''}.${c.name}${c.operator ? ' (op)' : ''} @ ${c.where}`)).toEqual([
      'public.evil @ create: statement 2 (AlterTableStmt), CHECK c',
      '.#%# (op) @ create: statement 2 (AlterTableStmt), CHECK c',
      '.evil2 @ create: statement 3 (IndexStmt), index expression',
    ]);
  });
});

describe('the throttle query may not call a never-allowed function (READ ONLY does not stop another session)', () => {
  test.each([
    ["SELECT dblink_exec('dbname=postgres', 'DELETE FROM public.victim') IS NULL", 'copy.throttleQuery: function dblink_exec is never allowed'],
    ["SELECT count(*) > 0 FROM dblink('dbname=postgres', 'select 1') AS t(a int)", 'copy.throttleQuery: function dblink is never allowed'],
    ["SELECT query_to_xml('select 1', true, true, '') IS NULL", 'copy.throttleQuery: function query_to_xml is never allowed'],
    ['SELECT pg_advisory_lock(1) IS NULL', 'copy.throttleQuery: function pg_advisory_lock is never allowed'],
    ["SELECT 1 FROM pg_stat_activity WHERE EXISTS (SELECT public.x(pg_catalog.lo_import('/etc/passwd')))", 'copy.throttleQuery: function pg_catalog.lo_import is never allowed'],
  ])('%s is refused, the function named', async (sql, expected) => {
    expect(await throttleQueryProblems(sql)).toEqual([expect.stringMatching(new RegExp(`^${expected.replace(/[.()]/g, '\\$&')}`))]);
  });

  test('reads of load figures and settings stay allowed', async () => {
    expect(await throttleQueryProblems("SELECT count(*) > current_setting('max_connections')::int / 2 FROM pg_stat_activity WHERE state = 'active'")).toEqual([]);
    expect(await throttleQueryProblems('SELECT pg_stat_get_backend_idset() IS NULL')).toEqual([]);
  });
});
