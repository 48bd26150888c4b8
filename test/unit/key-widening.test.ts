import { keyWidening } from '../../src/key-widening';

const refusal = (s: string, t: string) => {
  const w = keyWidening(s, t);
  return w.kind === 'refused' ? w.reason : undefined;
};

describe('keyWidening: which key type changes keep order, equality and text form on both sides', () => {
  test('the same type is the same', () => {
    expect(keyWidening('integer', 'integer')).toEqual({ kind: 'same' });
    expect(keyWidening('character varying(20)', 'character varying(20)')).toEqual({ kind: 'same' });
    expect(keyWidening('uuid', 'uuid')).toEqual({ kind: 'same' });
  });

  test('integers widen smallint → integer → bigint, never back', () => {
    for (const [s, t] of [['smallint', 'integer'], ['smallint', 'bigint'], ['integer', 'bigint']]) {
      expect(keyWidening(s!, t!)).toEqual({ kind: 'widening' });
    }
    expect(refusal('bigint', 'integer')).toMatch(/narrowing: integer cannot hold every bigint value/);
    expect(refusal('integer', 'smallint')).toMatch(/narrowing/);
  });

  test('varchar widens to a longer varchar, to varchar and to text; text and varchar are interchangeable', () => {
    for (const [s, t] of [
      ['character varying(10)', 'character varying(20)'], ['character varying(10)', 'character varying'],
      ['character varying(10)', 'text'], ['character varying', 'text'], ['text', 'character varying'],
    ]) {
      expect(keyWidening(s!, t!)).toEqual({ kind: 'widening' });
    }
    expect(refusal('character varying(20)', 'character varying(10)')).toMatch(/values longer than 10 characters/);
    expect(refusal('text', 'character varying(10)')).toMatch(/narrowing/);
  });

  test('numeric widens its precision at the same scale, or to unconstrained numeric; a scale change is refused', () => {
    expect(keyWidening('numeric(10,2)', 'numeric(12,2)')).toEqual({ kind: 'widening' });
    expect(keyWidening('numeric(10,2)', 'numeric')).toEqual({ kind: 'widening' });
    expect(refusal('numeric(12,2)', 'numeric(10,2)')).toMatch(/narrowing/);
    expect(refusal('numeric', 'numeric(12,2)')).toMatch(/narrowing/);
    expect(refusal('numeric(10,2)', 'numeric(12,3)')).toMatch(/scale changes \(2 to 3\)/);
  });

  test('a number becoming a string, or back, is refused because the order differs', () => {
    expect(refusal('integer', 'text')).toMatch(/order differs .*'10' < '9'/);
    expect(refusal('bigint', 'character varying')).toMatch(/order differs/);
    expect(refusal('text', 'bigint')).toMatch(/order differs/);
  });

  test('character(n) is refused either way: its padding changes key text and equality', () => {
    expect(refusal('character(10)', 'text')).toMatch(/pads values with spaces/);
    expect(refusal('character varying(10)', 'character(10)')).toMatch(/pads/);
    expect(refusal('character(10)', 'character(20)')).toMatch(/pads/);
  });

  test('integer → numeric is refused: the way back would compare the original column without its index', () => {
    expect(refusal('integer', 'numeric')).toMatch(/use bigint/);
  });

  test('anything else is refused, naming what is allowed and why', () => {
    const reason = refusal('timestamp without time zone', 'timestamp with time zone');
    expect(reason).toMatch(/lossless widening .* smallint → integer → bigint/);
    expect(reason).toMatch(/chunk ranges are cut in the source's order/);
    expect(refusal('integer', 'integer[]')).toBeDefined();
    expect(refusal('uuid', 'text')).toBeDefined();
  });
});
