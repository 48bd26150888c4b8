import { describeRefusal, findRowsSql, numericPrecision, RefusedWrite, refusalText, riskWarning, rollbackRisks, typeFit, type ColumnType } from '../../src/rollback-feasibility';

/** Catalog facts as format_type / atttypmod give them (typmod of varchar(n) and char(n) is n + 4). */
const t = (type: string, base: string, typmod = -1, notNull = false, domain = false): ColumnType => ({ type, base, typmod, notNull, domain });
const varchar = (n?: number) => t(n === undefined ? 'character varying' : `character varying(${n})`, 'character varying', n === undefined ? -1 : n + 4);
const char = (n: number) => t(`character(${n})`, 'character', n + 4);
const numeric = (p: number, s: number) => t(`numeric(${p},${s})`, 'numeric', ((p << 16) | s) + 4);
const text = t('text', 'text');
const int = t('integer', 'integer');
const bigint = t('bigint', 'bigint');

describe('typeFit: does a value of the new column always go back into the original column, unchanged?', () => {
  test('the same type and modifier always fits', () => {
    expect(typeFit(char(20), char(20))).toBeUndefined();
    expect(typeFit(numeric(6, 2), numeric(6, 2))).toBeUndefined();
    expect(typeFit(text, text)).toBeUndefined();
  });

  test('a wider character type does not fit a narrower one; an equal or narrower one does', () => {
    expect(typeFit(varchar(40), char(20))).toEqual({ effect: 'refused', reason: 'values longer than 20 characters cannot go back' });
    expect(typeFit(varchar(40), varchar(20))?.effect).toBe('refused');
    expect(typeFit(text, varchar(20))?.effect).toBe('refused');
    expect(typeFit(varchar(), char(5))?.effect).toBe('refused');
    expect(typeFit(varchar(20), char(20))).toBeUndefined();
    expect(typeFit(char(10), varchar(20))).toBeUndefined();
  });

  test('anything fits unlimited text', () => {
    expect(typeFit(varchar(40), text)).toBeUndefined();
    expect(typeFit(t('uuid', 'uuid'), text)).toBeUndefined();
    expect(typeFit(t('jsonb', 'jsonb'), varchar())).toBeUndefined();
  });

  test('numeric: fewer integer digits are refused, fewer decimals are rounded', () => {
    expect(numericPrecision(numeric(6, 2).typmod)).toEqual({ precision: 6, scale: 2 });
    expect(numericPrecision(-1)).toBeUndefined();
    expect(typeFit(numeric(6, 2), numeric(4, 2))).toEqual({ effect: 'refused', reason: 'numbers with more than 2 integer digits cannot go back' });
    expect(typeFit(numeric(6, 4), numeric(6, 2))).toEqual({ effect: 'changed', reason: 'decimals beyond 2 are rounded on the way back' });
    expect(typeFit(t('numeric', 'numeric'), numeric(8, 2))?.effect).toBe('refused');
    expect(typeFit(numeric(4, 2), numeric(8, 2))).toBeUndefined();
    expect(typeFit(numeric(4, 2), t('numeric', 'numeric'))).toBeUndefined();
  });

  test('integers: narrower is refused, wider fits, numeric fits when it has the digits', () => {
    expect(typeFit(bigint, int)).toEqual({ effect: 'refused', reason: 'bigint values outside the range of integer cannot go back' });
    expect(typeFit(int, bigint)).toBeUndefined();
    expect(typeFit(int, t('numeric', 'numeric'))).toBeUndefined();
    expect(typeFit(int, numeric(12, 2))).toBeUndefined();
    expect(typeFit(int, numeric(6, 2))?.effect).toBe('refused');
  });

  test('any other cast between types is named, both types given', () => {
    expect(typeFit(t('timestamp with time zone', 'timestamp with time zone'), t('date', 'date'))).toEqual({
      effect: 'refused', reason: 'a cast from timestamp with time zone to date: a value can be refused or changed',
    });
    expect(typeFit(text, int)?.effect).toBe('refused');
    expect(typeFit(t('date', 'date'), t('timestamp without time zone', 'timestamp without time zone'))).toBeUndefined();
    expect(typeFit(t('real', 'real'), t('double precision', 'double precision'))).toBeUndefined();
  });

  test('time precision: fewer fractional digits round', () => {
    const ts = (p: number) => t(`timestamp(${p}) with time zone`, 'timestamp with time zone', p);
    expect(typeFit(ts(6), ts(3))).toEqual({ effect: 'changed', reason: 'fractional seconds are rounded to 3 digits on the way back' });
    expect(typeFit(ts(3), ts(6))).toBeUndefined();
    expect(typeFit(t('timestamp with time zone', 'timestamp with time zone'), ts(0))?.effect).toBe('changed');
  });

  test('arrays compare their elements; a domain brings its own constraints', () => {
    const arr = (n: number) => t(`character varying(${n})[]`, 'character varying[]', n + 4);
    expect(typeFit(arr(40), arr(20))?.effect).toBe('refused');
    expect(typeFit(arr(10), arr(20))).toBeUndefined();
    expect(typeFit(varchar(20), arr(20))?.effect).toBe('refused');
    const email = t('email_address', 'email_address', -1, false, true);
    expect(typeFit(text, email)).toEqual({ effect: 'refused', reason: 'email_address is a domain: its constraints can refuse a value' });
    expect(typeFit(email, email)).toBeUndefined();
  });
});

describe('rollbackRisks', () => {
  test('one risk per column, naming both types; columns that fit are left out', () => {
    const risks = rollbackRisks([
      { column: 'id', into: t('integer', 'integer', -1, true), from: t('integer', 'integer', -1, true) },
      { column: 'code', into: { ...char(20), notNull: true }, from: { ...varchar(40), notNull: true } },
      { column: 'note', into: text, from: text },
    ]);
    expect(risks).toEqual([{ column: 'code', from: 'character varying(40)', to: 'character(20)', effect: 'refused', reason: 'values longer than 20 characters cannot go back' }]);
    expect(riskWarning(risks[0]!)).toBe('rollback after cutover can fail on column code (the new table\'s character varying(40) into the original character(20)): ' +
      'values longer than 20 characters cannot go back; such a rollback waits until the data is fixed');
  });

  test('a nullable new column into a NOT NULL original column can fail, even with the same type', () => {
    expect(rollbackRisks([{ column: 'email', into: { ...text, notNull: true }, from: text }])).toEqual([
      { column: 'email', from: 'text', to: 'text', effect: 'refused', reason: 'the new column allows NULL, the original is NOT NULL' },
    ]);
  });

  test('a reverse: expression can fail by nature', () => {
    const [r] = rollbackRisks([{ column: 'full_name', into: { ...varchar(80), notNull: true }, expr: "first || ' ' || last" }]);
    expect(r).toMatchObject({ column: 'full_name', from: 'expression', to: 'character varying(80)', effect: 'refused' });
    expect(r!.reason).toContain("first || ' ' || last");
    expect(riskWarning(r!)).toMatch(/^rollback after cutover can fail on column full_name \(a reverse: expression into the original character varying\(80\)\)/);
  });

  test('a lossy but never failing cast is told as a change', () => {
    const [r] = rollbackRisks([{ column: 'price', into: numeric(8, 2), from: numeric(8, 4) }]);
    expect(r!.effect).toBe('changed');
    expect(riskWarning(r!)).toMatch(/^rollback after cutover changes values of column price/);
  });
});

describe('a refused swap back, told without values', () => {
  test('messages that quote the value are replaced by their class', () => {
    expect(refusalText('22001', 'value too long for type character(20)')).toBe('value too long for type character(20)');
    expect(refusalText('22P02', 'invalid input syntax for type integer: "secret"')).toBe('a value is not valid for the original column type');
    expect(refusalText('23999', 'something "secret"')).toBe('a constraint of the original table refuses a value');
  });

  test('only SQLSTATE classes 22 and 23 are refusals; the column, constraint and row count are named', () => {
    expect(RefusedWrite.from(Object.assign(new Error('deadlock'), { code: '40P01' }))).toBeUndefined();
    expect(RefusedWrite.from('boom')).toBeUndefined();
    const r = RefusedWrite.from(Object.assign(new Error('value too long for type character(20)'), { code: '22001' }))!;
    const { message, details } = describeRefusal(r, [{ column: 'code', type: 'character(20)', rows: 1 }], { retired: 'public.t_retired', live: 'public.t' }, 'SELECT 1');
    expect(details).toEqual({ sqlstate: '22001', column: 'code', rows: 1, findRows: 'SELECT 1' });
    expect(message).toBe('a write made after cutover cannot go back into public.t_retired: value too long for type character(20) (SQLSTATE 22001, column code); ' +
      '1 row written after cutover has a code that does not fit character(20); both tables are left as they are: the new table is live at public.t, the original is public.t_retired');
    const nn = RefusedWrite.from(Object.assign(new Error('null value in column "email" of relation "t" violates not-null constraint'), { code: '23502', column: 'email' }))!;
    expect(describeRefusal(nn, [], { retired: 'r', live: 'l' }).details).toEqual({ sqlstate: '23502', column: 'email' });
  });

  test('the query listing the refused rows quotes identifiers and the type', () => {
    const live = { schema: 'public', name: 'Codes' };
    expect(findRowsSql(live, [{ name: 'id', type: 'integer' }], { target: 'code', expr: '"code"', type: 'character(20)', copyType: 'bpchar' }))
      .toBe(`SELECT "id" FROM "public"."Codes" WHERE NOT pg_input_is_valid("code"::text, 'character(20)')`);
    expect(findRowsSql(live, [{ name: 'id', type: 'integer' }], { target: 'n', expr: 'lower(x) -- c', type: 'text', copyType: 'text' }))
      .toContain('(\nlower(x) -- c\n)::text)::text');
  });
});
