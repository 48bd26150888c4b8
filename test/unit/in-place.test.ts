/** The catalog-only fast path's pure part (src/in-place.ts): which `alter` statements are taken, and each op's steps. */
import { classifyAlter, hiddenColumnName, pathNote, stepsOf, type ResolvedOp } from '../../src/in-place';
import { planSchema } from '../../src/plan/schema';

const t = { schema: 'app', name: 'items' };

describe('classifyAlter', () => {
  test('takes each catalog-only change, in order, one op per subcommand', async () => {
    const { ops, problems, finalName } = await classifyAlter(`
      ALTER TABLE app.items RENAME COLUMN title TO name;
      ALTER TABLE app.items ADD COLUMN note text;
      ALTER TABLE app.items ADD COLUMN qty int NOT NULL DEFAULT 0;
      ALTER TABLE app.items DROP COLUMN legacy, ALTER COLUMN name SET NOT NULL;
      ALTER TABLE app.items ADD CONSTRAINT qty_positive CHECK (qty >= 0);
      ALTER TABLE app.items ADD CONSTRAINT owner_fk FOREIGN KEY (owner_id) REFERENCES app.owners (id) NOT VALID;
      ALTER TABLE app.items VALIDATE CONSTRAINT owner_fk;
      CREATE INDEX CONCURRENTLY items_qty ON app.items (qty);
      ALTER TABLE app.items RENAME TO products;
      ALTER TABLE app.products ADD COLUMN later date DEFAULT now()`, t);
    expect(problems).toEqual([]);
    expect(ops.map((o) => o.kind)).toEqual(['rename_column', 'add_column', 'add_column', 'drop_column', 'set_not_null', 'add_constraint', 'add_constraint',
      'validate_constraint', 'create_index', 'rename_table', 'add_column']);
    expect(finalName).toEqual({ schema: 'app', name: 'products' });
    // Given without NOT VALID: run as NOT VALID, then validated; given with it: run as written.
    expect(ops[5]).toMatchObject({ kind: 'add_constraint', name: 'qty_positive', sql: 'ALTER TABLE app.items ADD CONSTRAINT qty_positive CHECK (qty >= 0)\nNOT VALID', validate: true });
    expect(ops[6]).toMatchObject({ kind: 'add_constraint', name: 'owner_fk', validate: false });
    expect(ops[8]).toMatchObject({ kind: 'create_index', name: 'items_qty', sql: 'CREATE INDEX CONCURRENTLY items_qty ON app.items (qty)' });
    expect(ops[10]).toMatchObject({ kind: 'add_column', column: 'later', functions: [['now']] });
  });

  test.each([
    ['a type change', 'ALTER TABLE app.items ALTER COLUMN qty TYPE bigint', /alter: statement 1 \(AlterTableStmt\) is not catalog-only: ALTER COLUMN TYPE .*; use the copy path/],
    ['another table', 'ALTER TABLE app.other ADD COLUMN x int', /alter: statement 1 \(AlterTableStmt\) names app\.other; an in-place plan changes only its source/],
    ['an unqualified table', 'ALTER TABLE items ADD COLUMN x int', /names items \(not schema-qualified\)/],
    ['the old name after a rename', 'ALTER TABLE app.items RENAME TO products; ALTER TABLE app.items ADD COLUMN x int', /statement 2 \(AlterTableStmt\) names app\.items; .* here called app\.products/],
    ['a serial column', 'ALTER TABLE app.items ADD COLUMN n bigserial', /is not catalog-only: column n is bigserial/],
    ['NOT NULL without a default', 'ALTER TABLE app.items ADD COLUMN n int NOT NULL', /NOT NULL without a DEFAULT/],
    ['a constraint inside the column', 'ALTER TABLE app.items ADD COLUMN n int UNIQUE', /carries a UNIQUE constraint/],
    ['an index without CONCURRENTLY', 'CREATE INDEX i ON app.items (qty)', /statement 1 \(IndexStmt\) is CREATE INDEX without CONCURRENTLY/],
    ['an unnamed index', 'CREATE INDEX CONCURRENTLY ON app.items (qty)', /name the index/],
    ['an unnamed constraint', 'ALTER TABLE app.items ADD CHECK (qty > 0)', /name the constraint/],
    ['a primary key', 'ALTER TABLE app.items ADD CONSTRAINT pk PRIMARY KEY (id)', /adds a PRIMARY constraint/],
    ['DROP COLUMN CASCADE', 'ALTER TABLE app.items DROP COLUMN legacy CASCADE', /CASCADE/],
    ['other statements', 'DELETE FROM app.items', /statement 1 \(DeleteStmt\) is not an ALTER TABLE, a RENAME or a CREATE INDEX CONCURRENTLY of the source; use the copy path/],
    ['a transaction', 'ALTER TABLE app.items ADD COLUMN x int; COMMIT', /statement 2 \(TransactionStmt\)/],
    ['SET DEFAULT', 'ALTER TABLE app.items ALTER COLUMN qty SET DEFAULT 1', /ALTER COLUMN SET\/DROP DEFAULT is not one of the in-place changes/],
    ['two subcommands with an ADD COLUMN', 'ALTER TABLE app.items ADD COLUMN a int, ADD COLUMN b int', /give ADD COLUMN a as an ALTER TABLE statement of its own/],
    ['SQL that does not parse', 'ALTER TABLE app.items ADD', /alter: does not parse/],
  ])('refuses %s, naming alter and the statement', async (_label, sql, message) => {
    const { problems } = await classifyAlter(sql, t);
    expect(problems.join('\n')).toMatch(message);
  });

  test('a trailing comment cannot swallow the NOT VALID it gets (the constraint would be checked under the exclusive lock)', async () => {
    const { ops, problems } = await classifyAlter('ALTER TABLE app.items ADD CONSTRAINT c CHECK (qty > 0) -- why\n;', t);
    expect(problems).toEqual([]);
    const op = ops[0] as Extract<ResolvedOp, { kind: 'add_constraint' }>;
    expect(op.sql).toBe('ALTER TABLE app.items ADD CONSTRAINT c CHECK (qty > 0) -- why\nNOT VALID');
  });
});

/** Without the quotes quoteIdent always puts (one test below keeps them, for a name that needs them). */
const plain = (sql: string[]) => sql.map((x) => x.replace(/"([a-z_][a-z0-9_]*)"/g, '$1'));

describe('stepsOf: each op next to its inverse', () => {
  test('drop column: hidden at cutover (NOT NULL relaxed when it has no default), renamed back on rollback, dropped only after the drop gate', () => {
    const op: ResolvedOp = { statement: 1, kind: 'drop_column', column: 'legacy', hidden: hiddenColumnName('legacy', '20261130160000'), relaxNotNull: true };
    const s = stepsOf(op, t, '20261130160000');
    expect(plain(s.apply)).toEqual([
      'ALTER TABLE app.items RENAME COLUMN legacy TO legacy_safeshift_retired_20261130160000',
      'ALTER TABLE app.items ALTER COLUMN legacy_safeshift_retired_20261130160000 DROP NOT NULL',
    ]);
    expect(plain(s.revert)).toEqual(['ALTER TABLE app.items RENAME COLUMN legacy_safeshift_retired_20261130160000 TO legacy']);
    expect(plain(s.finish)).toEqual(['ALTER TABLE app.items DROP COLUMN IF EXISTS legacy_safeshift_retired_20261130160000']);
  });

  test('rename column and table go back; an added column is dropped; identifiers quoted', () => {
    expect(plain(stepsOf({ statement: 1, kind: 'rename_column', from: 'Title', to: 'name' }, t, 's').revert)).toEqual(['ALTER TABLE app.items RENAME COLUMN name TO "Title"']);
    expect(plain(stepsOf({ statement: 1, kind: 'rename_table', from: 'items', to: 'products' }, { schema: 'app', name: 'products' }, 's').revert)).toEqual(['ALTER TABLE app.products RENAME TO items']);
    expect(plain(stepsOf({ statement: 1, kind: 'add_column', column: 'note', sql: 'ALTER TABLE app.items ADD COLUMN note text', functions: [] }, t, 's').revert))
      .toEqual(['ALTER TABLE app.items DROP COLUMN IF EXISTS note']);
  });

  test('SET NOT NULL goes through a validated CHECK; its rollback drops NOT NULL only if the column was nullable', () => {
    const op: ResolvedOp = { statement: 1, kind: 'set_not_null', column: 'name', wasNotNull: false };
    const s = stepsOf(op, t, '20261130160000');
    expect(plain(s.apply).map((x) => x.replace(/ app\.items /, ' T '))).toEqual([
      'ALTER TABLE T ADD CONSTRAINT name_safeshift_nn_20261130160000 CHECK (name IS NOT NULL) NOT VALID',
      'ALTER TABLE T VALIDATE CONSTRAINT name_safeshift_nn_20261130160000',
      'ALTER TABLE T ALTER COLUMN name SET NOT NULL',
      'ALTER TABLE T DROP CONSTRAINT name_safeshift_nn_20261130160000',
    ]);
    expect(plain(s.revert)).toContain('ALTER TABLE app.items ALTER COLUMN name DROP NOT NULL');
    expect(stepsOf({ ...op, wasNotNull: true }, t, 'x').revert.some((x) => /DROP NOT NULL/.test(x))).toBe(false);
  });

  test('an index built concurrently is dropped concurrently', () => {
    expect(plain(stepsOf({ statement: 1, kind: 'create_index', name: 'items_qty', sql: 'CREATE INDEX CONCURRENTLY items_qty ON app.items (qty)' }, t, 's').revert))
      .toEqual(['DROP INDEX CONCURRENTLY IF EXISTS app.items_qty']);
  });
});

test('pathNote says which path a plan takes and why', () => {
  expect(pathNote({ alter: 'x', columns: {} }, [])).toMatch(/^path: in place \(catalog only\): .*no row copied/);
  expect(pathNote({ columns: {} })).toMatch(/^path: copy: the plan gives a target table made like the source, so every row is copied/);
  expect(pathNote({ createSql: 'CREATE ...', columns: { a: 'b' } })).toMatch(/^path: copy: the plan gives a new table \(create\) and column expressions/);
});

describe('plan field alter', () => {
  const base = { version: 1, name: 'p-1', database: 'DATABASE_URL', requestedBy: 'carol', source: 'app.items', approvals: { cutover: { approvers: ['alice'] }, drop: { approvers: ['alice'] } } };
  const issues = (plan: Record<string, unknown>) => {
    const r = planSchema.safeParse(plan);
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };
  test('an in-place plan has alter instead of target; a copy plan still needs its target', () => {
    expect(issues({ ...base, alter: 'ALTER TABLE app.items ADD COLUMN x int' })).toEqual([]);
    expect(issues(base)).toEqual(['target: required (the new table), unless the plan gives alter: for a catalog-only change in place']);
  });
  test('alter with a field of the copy path is refused, naming it', () => {
    expect(issues({ ...base, alter: 'ALTER TABLE app.items ADD COLUMN x int', target: 'app.items_v2', columns: { a: 'b' } })).toEqual([
      'alter: an in-place plan (alter) cannot have target, which belongs to the copy path; give one or the other',
      'alter: an in-place plan (alter) cannot have columns, which belongs to the copy path; give one or the other',
    ]);
  });
});
