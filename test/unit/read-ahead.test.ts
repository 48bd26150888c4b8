/** Reads confirmed under the cutover lock are sent again as EXECUTEs with their parameters inline (src/read-ahead.ts). */
import { executeText } from '../../src/read-ahead';

test('parameters become quoted literals, as node-pg sends them: text of unknown type', () => {
  expect(executeText('s1', [16384, "it's", null, true])).toBe(`EXECUTE s1('16384', 'it''s', NULL, 'true')`);
  expect(executeText('s2', [])).toBe('EXECUTE s2');
});

test('a value that is not a scalar is not given inline: the read-ahead is then not confirmed but read again', () => {
  expect(executeText('s1', [[1, 2]])).toBeUndefined();
  expect(executeText('s1', [{ a: 1 }])).toBeUndefined();
});
