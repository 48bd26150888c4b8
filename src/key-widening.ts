/**
 * Which type changes a key column may go through between source and target. Pure: format_type strings in, a
 * verdict out, unit tested without a database.
 *
 * Why the list is short. Chunk and capture work by the source's key: a chunk is a key range cut in the source's
 * order and deleted, copied and checksummed as the same range in the target; a captured change is the key's text
 * (`key::text`) and is replayed by casting that text back and comparing it with the target's column. So a new key
 * type must keep, for every source value: the same order (a range covers the same rows on both sides), the same
 * equality (a key finds exactly its row) and the same text form (a captured key and the target's own key text are
 * equal). And a swap back compares the new table's values with the old column: the wider type must be comparable
 * with the narrower one by an operator the old column's index serves (smallint/integer/bigint are one btree
 * family; varchar is text to its operators; numeric is numeric), so reverse replay never scans the old table.
 *
 * Allowed: smallint → integer → bigint; numeric(p,s) → numeric(q≥p, s) or unconstrained numeric; varchar(n) →
 * varchar(m≥n), varchar or text; text ↔ varchar (no length). Collation must stay the same (checked by preflight).
 * Not allowed, with the reason named: integer → numeric (the old integer column would be compared as numeric on the
 * way back, without its index), anything between numbers and strings (order differs), character(n) (its padding
 * makes its key text differ), narrowings, and every other change of type.
 */

/** A key column's type as format_type prints it (`integer`, `character varying(40)`, `numeric(12,2)`, `text`). */
export type KeyWidening = { kind: 'same' } | { kind: 'widening' } | { kind: 'refused'; reason: string };

const INTEGERS = ['smallint', 'integer', 'bigint'];
const NUMBERS = new Set([...INTEGERS, 'numeric', 'real', 'double precision']);
const STRINGS = new Set(['text', 'character varying', 'character']);

interface Parsed {
  /** The type without modifier. */
  base: string;
  /** varchar(n) / char(n): n; numeric(p,s): [p, s]; absent when the type has no modifier. */
  length?: number;
  numeric?: [number, number];
}

function parse(type: string): Parsed {
  const t = type.trim();
  const string = /^(character varying|character)\((\d+)\)$/.exec(t);
  if (string) return { base: string[1]!, length: Number(string[2]) };
  const numeric = /^numeric\((\d+),(-?\d+)\)$/.exec(t);
  if (numeric) return { base: 'numeric', numeric: [Number(numeric[1]), Number(numeric[2])] };
  return { base: t === 'bpchar' ? 'character' : t };
}

const ALLOWED = 'a key may change type only by a lossless widening that keeps order, equality and text form: ' +
  'smallint → integer → bigint, numeric(p,s) → numeric(q≥p,s) or numeric, varchar(n) → varchar(m≥n), varchar or text';
const WHY = 'chunk ranges are cut in the source\'s order and deleted in the target\'s, and captured keys are replayed by their text';

/** Whether a key column of type `source` may be carried into a target column of type `target`, and why not. */
export function keyWidening(source: string, target: string): KeyWidening {
  if (source === target) return { kind: 'same' };
  const [s, t] = [parse(source), parse(target)];
  const refused = (reason: string): KeyWidening => ({ kind: 'refused', reason });

  if (INTEGERS.includes(s.base) && INTEGERS.includes(t.base)) {
    return INTEGERS.indexOf(s.base) <= INTEGERS.indexOf(t.base) ? { kind: 'widening' }
      : refused(`a narrowing: ${target} cannot hold every ${source} value`);
  }
  if (INTEGERS.includes(s.base) && t.base === 'numeric') {
    return refused(`not supported for a key: a rollback would compare the original ${source} column as numeric, without its index; use bigint`);
  }
  if (s.base === 'numeric' && t.base === 'numeric') {
    if (!t.numeric) return { kind: 'widening' }; // unconstrained numeric keeps every value and its scale (its text)
    if (!s.numeric) return refused(`a narrowing: ${target} cannot hold every unconstrained numeric value`);
    const [[sp, ss], [tp, ts]] = [s.numeric, t.numeric];
    if (ss !== ts) return refused(`the scale changes (${ss} to ${ts}): a number prints with ${ts} decimals instead of ${ss}, so captured keys would not find their rows`);
    return tp >= sp ? { kind: 'widening' } : refused(`a narrowing: ${target} cannot hold every ${source} value`);
  }
  if (s.base === 'character' || t.base === 'character') {
    return refused('character(n) pads values with spaces and compares them ignoring the padding; across a change of type its key text and equality differ');
  }
  if (STRINGS.has(s.base) && STRINGS.has(t.base)) {
    // text and varchar share their operators and collation rules: only the length limit can differ.
    if (t.length === undefined) return { kind: 'widening' };
    if (s.length === undefined || s.length > t.length) return refused(`a narrowing: values longer than ${t.length} characters would not fit ${target}`);
    return { kind: 'widening' };
  }
  if ((NUMBERS.has(s.base) && STRINGS.has(t.base)) || (STRINGS.has(s.base) && NUMBERS.has(t.base))) {
    return refused(`the order differs (as numbers 9 < 10, as text '10' < '9'), so a key range cut in the source would not cover the same rows in the target; ${WHY}`);
  }
  return refused(`${ALLOWED}; ${WHY}`);
}
