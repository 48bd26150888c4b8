/** The plan's SQL checked as code by PostgreSQL's parser, without a database (issue 13, finding 3). */
import { expressionProblems, parserReady } from '../../src/plan/expressions';
import { targetDdlProblems } from '../../src/target-ddl';

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
