/** Reads confirmed under the cutover lock are sent again with their parameters inline (src/read-ahead.ts). */
import { inline } from '../../src/read-ahead';

test('placeholders become quoted literals; the same text inside literals, quoted names, dollar quotes and comments stays', () => {
  expect(inline('SELECT * FROM pg_class WHERE oid = $1 AND relname <> $2', [16384, "it's"])).toBe(
    "SELECT * FROM pg_class WHERE oid = '16384' AND relname <> 'it''s'");
  expect(inline(`SELECT '$1', "$1", $x$ $1 $x$, $$ $1 $$, E'\\' $1', $1 -- $1\n/* $1 */ + $1`, [7])).toBe(
    `SELECT '$1', "$1", $x$ $1 $x$, $$ $1 $$, E'\\' $1', '7' -- $1\n/* $1 */ + '7'`);
  expect(inline('SELECT $1::text IS NULL, $2', [null, true])).toBe("SELECT NULL::text IS NULL, 'true'");
  expect(inline("SELECT 'a''$1'", [])).toBe("SELECT 'a''$1'");
});

test('a value that is not a scalar, or a placeholder without a value, is not inlined', () => {
  expect(inline('SELECT $1', [[1, 2]])).toBeUndefined();
  expect(inline('SELECT $1', [{ a: 1 }])).toBeUndefined();
  expect(inline('SELECT $2', [1])).toBeUndefined();
});
