import {
  columnConstraints, compareConstraints, constraintNotes, constraintProblems, foreignKeyConstraint, type TableConstraint,
} from '../../src/constraints';
import type { OutboundForeignKey } from '../../src/foreign-keys';
import type { DropName } from '../../src/plan/schema';

const check = (name: string, columns: string[], definition = `CHECK (${columns.join(' + ')} > 0)`): TableConstraint =>
  ({ kind: 'c', name, drop: { constraint: name }, columns, definition });
const unique = (name: string, columns: string[], extra: Partial<TableConstraint> = {}): TableConstraint =>
  ({ kind: 'u', name, drop: { constraint: name }, columns, definition: `UNIQUE (${columns.join(', ')})`, ...extra });
const pkey = (name: string, columns: string[]): TableConstraint =>
  ({ kind: 'p', name, drop: { constraint: name }, columns, definition: `PRIMARY KEY (${columns.join(', ')})` });
const exclusion = (name: string, columns: (string | null)[], operators: string[]): TableConstraint =>
  ({ kind: 'x', name, drop: { constraint: name }, columns, operators, definition: `EXCLUDE USING gist (...)` });
const fk = (name: string, columns: string[], oid: number | null, refColumns: string[]): TableConstraint =>
  ({ kind: 'f', name, drop: { constraint: name }, columns, references: { oid, columns: refColumns }, definition: `FOREIGN KEY (${columns.join(', ')}) REFERENCES ...` });
const columns = (rows: { name: string; notNull?: boolean; identity?: string; sequenceDefault?: string }[]) =>
  columnConstraints(rows.map((r) => ({ notNull: false, identity: '', sequenceDefault: null, ...r })));

/** Same names on both sides, each column carried as is. */
const identity = (...names: string[]) => new Map(names.map((n) => [n, n]));

describe('compareConstraints', () => {
  test('identical sides (the default target): everything kept, nothing missing or added', () => {
    const side = [pkey('t_pkey', ['id']), unique('t_code_key', ['code']), check('t_qty', ['qty']), exclusion('t_x', ['during'], ['&&']),
      fk('t_org_fkey', ['org_id'], 42, ['id']), ...columns([{ name: 'id', notNull: true, identity: 'd' }, { name: 'code', notNull: true }])];
    const cmp = compareConstraints(side, side, identity('id', 'code', 'qty', 'during', 'org_id'), []);
    expect(cmp.kept).toHaveLength(side.length);
    expect(cmp).toMatchObject({ missing: [], dropped: [], withColumns: [], added: [], unknown: [], listedButKept: [] });
    expect(constraintNotes(cmp, side.length)).toEqual([`constraints: the target keeps all ${side.length} of the source's constraints (NOT NULL, identity and sequence defaults counted)`]);
  });

  test('a CHECK left out is missing; listed under dropConstraints it is dropped on purpose', () => {
    const source = [pkey('t_pkey', ['id']), check('t_qty', ['qty'])];
    const target = [pkey('t2_pkey', ['id'])];
    const carried = identity('id', 'qty');
    const missing = compareConstraints(source, target, carried, []);
    expect(missing.missing.map((c) => c.name)).toEqual(['t_qty']);
    expect(constraintProblems(missing, { ref: { schema: 'public', name: 't' }, constraints: source, columns: ['id', 'qty'] }, 'create')).toEqual([
      'create: the target has no counterpart for check constraint t_qty (CHECK (qty > 0)) of public.t: add it to the target DDL, or list it under dropConstraints (t_qty) to drop it on purpose',
    ]);
    const dropped = compareConstraints(source, target, carried, [{ constraint: 't_qty' }]);
    expect(dropped).toMatchObject({ missing: [], dropped: [source[1]], unknown: [] });
    expect(constraintNotes(dropped, 2)).toContain('constraints: check constraint t_qty (CHECK (qty > 0)) is dropped on purpose (dropConstraints): the new table will not enforce it');
  });

  test('a renamed column: the CHECK is found over the mapping whatever its text, and shown next to the source\'s', () => {
    const cmp = compareConstraints([check('t_qty', ['qty'], 'CHECK ((qty > 0))')], [check('amount_positive', ['amount'], 'CHECK ((amount > 0))')], new Map([['amount', 'qty']]), []);
    expect(cmp.kept).toHaveLength(1);
    expect(constraintNotes(cmp, 1)).toContain('constraints: check constraint t_qty (CHECK ((qty > 0))) is kept as amount_positive (CHECK ((amount > 0)))');
  });

  test('a CHECK over other columns, or a column computed by an expression, is no counterpart', () => {
    const source = [check('t_ab', ['a', 'b'])];
    expect(compareConstraints(source, [check('t2_a', ['a'])], identity('a', 'b'), []).missing).toEqual(source);
    // b is computed in the target (not in `carried`): the source CHECK goes with it; the target's is added.
    const cmp = compareConstraints(source, [check('t2_ab', ['a', 'b'])], identity('a'), []);
    expect(cmp.withColumns).toEqual([{ constraint: source[0], columns: ['b'] }]);
    expect(cmp.added.map((c) => c.name)).toEqual(['t2_ab']);
    expect(cmp.missing).toEqual([]);
  });

  test('one target CHECK is the counterpart of one source CHECK only; the same text is paired first', () => {
    const source = [check('lo', ['n'], 'CHECK ((n > 0))'), check('hi', ['n'], 'CHECK ((n < 100))')];
    const cmp = compareConstraints(source, [check('t2_hi', ['n'], 'CHECK ((n < 100))')], identity('n'), []);
    expect(cmp.kept.map((k) => [k.source.name, k.target.name])).toEqual([['hi', 't2_hi']]);
    expect(cmp.missing.map((c) => c.name)).toEqual(['lo']);
  });

  test('UNIQUE: kept by a UNIQUE or a primary key over the same columns (any order), or a plain unique index; NULLS NOT DISTINCT must stay', () => {
    const source = [unique('u', ['a', 'b'])];
    expect(compareConstraints(source, [unique('u2', ['b', 'a'])], identity('a', 'b'), []).kept).toHaveLength(1);
    expect(compareConstraints(source, [pkey('p2', ['a', 'b'])], identity('a', 'b'), []).kept).toHaveLength(1);
    const index = unique('u2_idx', ['a', 'b'], { indexOnly: true, definition: 'CREATE UNIQUE INDEX u2_idx ON t2 USING btree (a, b)' });
    const viaIndex = compareConstraints(source, [index], identity('a', 'b'), []);
    expect(viaIndex.kept).toHaveLength(1);
    expect(constraintNotes(viaIndex, 1)).toContain('constraints: unique constraint u (UNIQUE (a, b)) is kept as unique index u2_idx (CREATE UNIQUE INDEX u2_idx ON t2 USING btree (a, b))');
    // An unused plain unique index is not a constraint the target adds.
    expect(compareConstraints([], [index], identity('a', 'b'), []).added).toEqual([]);
    const strict = [unique('u', ['a'], { nullsNotDistinct: true })];
    expect(compareConstraints(strict, [unique('u2', ['a'])], identity('a'), []).missing).toEqual(strict);
    expect(compareConstraints(strict, [unique('u2', ['a'], { nullsNotDistinct: true })], identity('a'), []).kept).toHaveLength(1);
    // A UNIQUE does not keep a primary key.
    expect(compareConstraints([pkey('p', ['a'])], [unique('u2', ['a'])], identity('a'), []).missing).toHaveLength(1);
  });

  test('exclusion constraints compare columns with their operators', () => {
    const source = [exclusion('x', ['room', 'during'], ['=', '&&'])];
    expect(compareConstraints(source, [exclusion('x2', ['during', 'room'], ['&&', '='])], identity('room', 'during'), []).kept).toHaveLength(1);
    expect(compareConstraints(source, [exclusion('x2', ['room', 'during'], ['=', '-|-'])], identity('room', 'during'), []).missing).toEqual(source);
    expect(compareConstraints(source, [exclusion('x2', ['during'], ['&&'])], identity('room', 'during'), []).missing).toEqual(source);
  });

  test('foreign keys: same referenced table and columns; a self-reference follows renamed columns', () => {
    const source = [fk('to_org', ['org_id'], 42, ['id']), fk('to_self', ['manager_id'], null, ['id'])];
    const carried = new Map([['org', 'org_id'], ['boss', 'manager_id'], ['pk', 'id']]);
    const kept = compareConstraints(source, [fk('a', ['org'], 42, ['id']), fk('b', ['boss'], null, ['pk'])], carried, []);
    expect(kept.kept).toHaveLength(2);
    const other = compareConstraints(source, [fk('a', ['org'], 43, ['id']), fk('b', ['boss'], null, ['org'])], carried, []);
    expect(other.missing.map((c) => c.name)).toEqual(['to_org', 'to_self']);
    expect(other.added.map((c) => c.name)).toEqual(['a', 'b']);
    // The target's foreign keys as preflight has them (OutboundForeignKey): referencedOid null is the table itself.
    const fromPreflight = foreignKeyConstraint({
      name: 'b', columns: ['boss'], referencedOid: null, referencedColumns: ['pk'], onUpdate: 'a', onDelete: 'a',
      onDeleteColumns: [], matchFull: false, deferrable: false, initiallyDeferred: false, definition: 'FOREIGN KEY (boss) REFERENCES t2(pk)',
    } as OutboundForeignKey);
    expect(compareConstraints([source[1]!], [fromPreflight], carried, []).kept).toHaveLength(1);
    // A self-reference whose referenced column the target does not carry goes with that column.
    expect(compareConstraints([source[1]!], [], new Map([['boss', 'manager_id']]), []).withColumns).toEqual([{ constraint: source[1], columns: ['id'] }]);
  });

  test('NOT NULL and generated values: per column; identity and a sequence default keep each other', () => {
    const source = columns([{ name: 'id', notNull: true, identity: 'a' }, { name: 'n', notNull: true, sequenceDefault: "nextval('s'::regclass)" }, { name: 'v' }]);
    expect(source.map((c) => [c.kind, c.drop])).toEqual([
      ['notnull', { column: 'id', property: 'NOT NULL' }], ['notnull', { column: 'n', property: 'NOT NULL' }],
      ['generated', { column: 'id', property: 'IDENTITY' }], ['generated', { column: 'n', property: 'DEFAULT' }],
    ]);
    const swapped = columns([{ name: 'id', notNull: true, sequenceDefault: "nextval('t2_id_seq'::regclass)" }, { name: 'n', notNull: true, identity: 'd' }]);
    expect(compareConstraints(source, swapped, identity('id', 'n', 'v'), []).kept).toHaveLength(4);
    const bare = columns([{ name: 'id', notNull: true }, { name: 'n' }, { name: 'v', notNull: true }]);
    const cmp = compareConstraints(source, bare, identity('id', 'n', 'v'), [{ column: 'n', property: 'NOT NULL' }]);
    expect(cmp.missing.map((c) => c.drop)).toEqual([{ column: 'id', property: 'IDENTITY' }, { column: 'n', property: 'DEFAULT' }]);
    expect(cmp.dropped.map((c) => c.drop)).toEqual([{ column: 'n', property: 'NOT NULL' }]);
    expect(cmp.added.map((c) => c.drop)).toEqual([{ column: 'v', property: 'NOT NULL' }]);
    const problems = constraintProblems(cmp, { ref: { schema: 'public', name: 't' }, constraints: source, columns: ['id', 'n', 'v'] }, 'createFile');
    expect(problems).toEqual([
      'createFile: the target has no counterpart for identity on column id (GENERATED ALWAYS AS IDENTITY) of public.t: add it to the target DDL, or list it under dropConstraints (id:IDENTITY) to drop it on purpose',
      "createFile: the target has no counterpart for sequence default on column n (DEFAULT nextval('s'::regclass)) of public.t: add it to the target DDL, or list it under dropConstraints (n:DEFAULT) to drop it on purpose",
    ]);
    expect(constraintNotes(cmp, source.length)).toEqual([
      "constraints: the target keeps 1 of the source's 4 constraints (NOT NULL, identity and sequence defaults counted)",
      'constraints: NOT NULL on column n is dropped on purpose (dropConstraints): the new table will not enforce it',
      'constraints: the target adds NOT NULL on column v, which the source does not have',
    ]);
  });

  test('dropConstraints entries that name nothing of the source are problems, each saying why', () => {
    const source = [check('t_qty', ['qty']), ...columns([{ name: 'qty', notNull: true }, { name: 'note' }])];
    const drop: DropName[] = [{ constraint: 't_qyt' }, { column: 'note', property: 'NOT NULL' }, { column: 'qty', property: 'IDENTITY' },
      { column: 'qty', property: 'DEFAULT' }, { column: 'nope', property: 'NOT NULL' }, { constraint: 'Odd Name' }];
    const cmp = compareConstraints(source, source, identity('qty', 'note'), drop);
    expect(constraintProblems(cmp, { ref: { schema: 'public', name: 't' }, constraints: source, columns: ['qty', 'note'] }, 'create')).toEqual([
      'dropConstraints: t_qyt is not a constraint of public.t (it has: t_qty, qty:NOT NULL)',
      'dropConstraints: note:NOT NULL: column note of public.t is not NOT NULL',
      'dropConstraints: qty:IDENTITY: column qty of public.t is not an identity column',
      'dropConstraints: qty:DEFAULT: column qty of public.t has no default from a sequence',
      'dropConstraints: nope:NOT NULL: public.t has no column nope',
      'dropConstraints: "Odd Name" is not a constraint of public.t (it has: t_qty, qty:NOT NULL)',
    ]);
  });

  test('a constraint a partition inherits from its parent is never missing: kept by a counterpart, or it comes with the parent', () => {
    const inherited: TableConstraint = { ...pkey('part_pkey', ['id']), inherited: true };
    expect(compareConstraints([inherited], [pkey('t2_pkey', ['id'])], identity('id'), [])).toMatchObject({ missing: [], added: [], withParent: [] });
    const cmp = compareConstraints([inherited], [], identity('id'), []);
    expect(cmp).toMatchObject({ missing: [], withParent: [inherited] });
    expect(constraintNotes(cmp, 1)).toContain('constraints: primary key part_pkey (PRIMARY KEY (id)) comes from the partitioned table: the new table gets it when attached in the source\'s place');
  });

  test('a listed constraint the target keeps anyway is said so, not dropped', () => {
    const source = [check('t_qty', ['qty'])];
    const cmp = compareConstraints(source, source, identity('qty'), [{ constraint: 't_qty' }]);
    expect(cmp).toMatchObject({ dropped: [], unknown: [], missing: [] });
    expect(constraintNotes(cmp, 1)).toContain('constraints: t_qty is listed under dropConstraints, but the target keeps it (t_qty (CHECK (qty > 0))): nothing is dropped');
  });
});
