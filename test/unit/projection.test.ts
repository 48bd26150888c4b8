import { checksumSql, compatViewSql, copyInSql, copyOutSql, deleteRangeSql, keyRange, keyRangeText, type CopySpec } from '../../src/projection';

const spec: CopySpec = {
  source: { schema: 'public', name: 'profiles' },
  target: { schema: 'public', name: 'profiles_v2' },
  columns: [
    { target: 'id', expr: '"id"', type: 'bigint', copyType: 'bigint' },
    { target: 'display_name', expr: 'full_name -- a comment', type: 'character varying(40)', copyType: 'character varying' },
  ],
  key: [{ name: 'id', type: 'bigint' }],
};

describe('projection SQL', () => {
  test('key ranges are half-open (lo, hi] with typed literals; open ends drop the condition', () => {
    expect(keyRange(spec.key, ['10'], ['20'])).toBe(`"id" > '10'::bigint AND "id" <= '20'::bigint`);
    expect(keyRange(spec.key, null, ['20'])).toBe(`"id" <= '20'::bigint`);
    expect(keyRange(spec.key, null, null)).toBe('true');
  });

  test('key ranges read (lo, hi] in messages, open ends as infinities', () => {
    expect(keyRangeText(null, ['100'])).toBe('(-inf, 100]');
    expect(keyRangeText(['0000', "o'brien"], null)).toBe("(0000, o'brien, +inf]");
  });

  test('composite keys compare as rows, and key text is quoted as a literal', () => {
    const key = [{ name: 'tenant', type: 'uuid' }, { name: 'slug', type: 'text' }];
    expect(keyRange(key, ['0000', "o'brien"], null)).toBe(`("tenant", "slug") > ROW('0000'::uuid, 'o''brien'::text)`);
  });

  test('a -- comment in a mapping expression cannot swallow the rest of the statement', () => {
    const sql = copyOutSql(spec, ['1'], ['2']);
    expect(sql).toContain('(\nfull_name -- a comment\n)::character varying FROM');
    expect(sql.split('\n').find((l) => l.includes('--'))).toBe('full_name -- a comment');
  });

  test('COPY sends values cast to the base type, so the target refuses what does not fit instead of a cast cutting it', () => {
    expect(copyOutSql(spec, null, null)).not.toContain('varying(40)');
    expect(checksumSql(spec, 'source')).toContain('varying(40)');
  });

  test('copy in names target columns, delete covers the same range as copy out', () => {
    expect(copyInSql(spec)).toBe('COPY "public"."profiles_v2" ("id", "display_name") FROM STDIN');
    expect(deleteRangeSql(spec, ['1'], null)).toBe(`DELETE FROM "public"."profiles_v2" WHERE "id" > '1'::bigint`);
  });

  test('both sides are hashed in the same row shape: mapped and cast on the source, as stored on the target', () => {
    expect(checksumSql(spec, 'source')).toContain('ROW((\n"id"\n)::bigint, (\nfull_name -- a comment\n)::character varying(40))');
    expect(checksumSql(spec, 'target')).toContain('ROW("id", "display_name")');
  });
});

describe('compatibility view SQL', () => {
  test('plain columns stay bare (writable through the view); expressions are cast and read-only; security_invoker always', () => {
    const sql = compatViewSql({ schema: 'public', name: 'profiles' }, { schema: 'shared', name: 'Profiles' }, [
      { name: 'id', expr: '"id"', type: 'bigint', plain: true },
      { name: 'full_name', expr: '"legal_name"', type: 'text', plain: true },
      { name: 'elder_status', expr: "CASE WHEN is_elder THEN 'yes' END -- c", type: 'text', plain: false },
    ]);
    expect(sql).toBe(`CREATE VIEW "public"."profiles" WITH (security_invoker = true) AS SELECT
  "id" AS "id",
  "legal_name" AS "full_name",
  (
CASE WHEN is_elder THEN 'yes' END -- c
)::text AS "elder_status"
FROM "shared"."Profiles"`);
  });
});
