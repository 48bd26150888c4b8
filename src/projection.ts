/**
 * The plan's column mapping turned into SQL: the projection of the source that the target receives, key ranges
 * for chunks, and the shapes both sides are hashed in. Pure functions: easy to read, easy to unit-test.
 */
import { andRowFilter } from './row-filter';
import { qualified, quoteIdent, quoteLiteral, type TableRef } from './sql';

export interface MappedColumn {
  /** Target column name as stored. */
  target: string;
  /** SQL expression over source columns (operator SQL from the plan, or the quoted source column). */
  expr: string;
  /** Target column type (format_type output from the catalog). */
  type: string;
  /**
   * The same type without length or precision. COPY sends values cast to this, so the target's own input rules
   * apply: a value too long for varchar(n) is refused, where an explicit cast to varchar(n) would cut it.
   */
  copyType: string;
}

export interface KeyColumn {
  name: string;
  type: string;
}

export interface CopySpec {
  source: TableRef;
  target: TableRef;
  columns: MappedColumn[];
  /**
   * Carried from source to target under the same name, unchanged or losslessly widened (int → bigint, varchar(n) →
   * text: src/key-widening.ts), so ranges and keys read the same on both sides. `type` is the source's: key values
   * come from the source and are cast to it, and the target's wider column compares with it by the same operators.
   */
  key: KeyColumn[];
  /**
   * COPY format. Binary when every target column type (and the types inside it: array elements, domain bases,
   * range subtypes, composite fields) has binary send/receive functions and the plan does not ask for text. The
   * source side is cast to each target column's own type (`copyType`: same type, no length), so the binary
   * values always have exactly the target's types; the target applies length and precision on receive as it
   * does on text input. Text otherwise.
   */
  format?: 'binary' | 'text';
  /**
   * The plan's row filter (`where:`, src/row-filter.ts): only source rows it holds for are copied, replayed and
   * checked. Key ranges are cut over the whole source; the target side is never filtered (a row that left the
   * filter must go from there).
   */
  where?: string;
}

/** A key value as text (PostgreSQL's own output of each key column); null = open end. */
export type KeyValue = string[] | null;

export function targetColumnList(spec: CopySpec): string {
  return spec.columns.map((c) => quoteIdent(c.target)).join(', ');
}

/**
 * Each target column computed from the source, in target column order. Each expression stands on lines of its
 * own, so a `--` comment in operator SQL cannot swallow what follows. `as: 'copy'` casts to the base type (the
 * target then applies length and precision as it would to any input); `as: 'stored'` casts to the full target
 * type, which is what the target holds once the copy succeeded.
 */
export function sourceProjection(spec: CopySpec, as: 'copy' | 'stored' = 'copy'): string {
  return spec.columns.map((c) => mappedExpression(c, as)).join(', ');
}

export function mappedExpression(c: MappedColumn, as: 'copy' | 'stored' = 'copy'): string {
  return `(\n${c.expr}\n)::${as === 'copy' ? c.copyType : c.type}`;
}

/** The column a mapping expression names as it is (`"x"`, or a plain `x`), or undefined for anything else. */
export function plainColumn(expr: string): string | undefined {
  const e = expr.trim();
  const quoted = /^"((?:[^"]|"")+)"$/.exec(e);
  if (quoted) return quoted[1]!.replace(/""/g, '"');
  return /^[a-z_][a-z0-9_$]*$/.test(e) ? e : undefined;
}

/**
 * Columns the mapping carries unchanged under another name (`display_name: full_name`): old name → new name. What
 * names a column (a column grant, say) follows it there.
 */
export function columnRenames(columns: MappedColumn[]): Record<string, string> {
  const renames: Record<string, string> = {};
  for (const c of columns) {
    const from = plainColumn(c.expr);
    if (from !== undefined && from !== c.target) renames[from] = c.target;
  }
  return renames;
}

function keyTuple(key: KeyColumn[]): string {
  const cols = key.map((k) => quoteIdent(k.name));
  return cols.length === 1 ? cols[0]! : `(${cols.join(', ')})`;
}

function keyLiteral(key: KeyColumn[], value: string[]): string {
  if (value.length !== key.length) throw new Error(`key value has ${value.length} parts, key has ${key.length}`);
  const parts = key.map((k, i) => `${quoteLiteral(value[i]!)}::${k.type}`);
  return parts.length === 1 ? parts[0]! : `ROW(${parts.join(', ')})`;
}

/** A key range as operators read it in messages: `(lo, hi]`, open ends as -inf / +inf. */
export function keyRangeText(lo: KeyValue, hi: KeyValue): string {
  return `(${lo ? lo.join(', ') : '-inf'}, ${hi ? hi.join(', ') : '+inf'}]`;
}

/** `key > lo AND key <= hi` (row comparison for composite keys); either end may be open. */
export function keyRange(key: KeyColumn[], lo: KeyValue, hi: KeyValue): string {
  const conds: string[] = [];
  if (lo) conds.push(`${keyTuple(key)} > ${keyLiteral(key, lo)}`);
  if (hi) conds.push(`${keyTuple(key)} <= ${keyLiteral(key, hi)}`);
  return conds.length ? conds.join(' AND ') : 'true';
}

export function keyOrder(key: KeyColumn[]): string {
  return key.map((k) => quoteIdent(k.name)).join(', ');
}

/** The upper bound of the chunk that starts after `lo`: the key `rows` rows further on, or none if fewer remain. */
export function chunkUpperBoundSql(spec: CopySpec, lo: KeyValue): string {
  const keyText = spec.key.map((k) => `${quoteIdent(k.name)}::text`).join(', ');
  return `SELECT ARRAY[${keyText}] AS key FROM ${qualified(spec.source)} WHERE ${keyRange(spec.key, lo, null)}
           ORDER BY ${keyOrder(spec.key)} OFFSET $1 LIMIT 1`;
}

/** COPY's option list for the spec's format (nothing for text, the default). */
export function copyOptions(spec: Pick<CopySpec, 'format'>): string {
  return spec.format === 'binary' ? ' (FORMAT binary)' : '';
}

export function copyOutSql(spec: CopySpec, lo: KeyValue, hi: KeyValue): string {
  return `COPY (SELECT ${sourceProjection(spec)} FROM ${qualified(spec.source)}
           WHERE ${keyRange(spec.key, lo, hi)}${andRowFilter(spec.where)} ORDER BY ${keyOrder(spec.key)}) TO STDOUT${copyOptions(spec)}`;
}

export function copyInSql(spec: CopySpec): string {
  return `COPY ${qualified(spec.target)} (${targetColumnList(spec)}) FROM STDIN${copyOptions(spec)}`;
}

export function deleteRangeSql(spec: CopySpec, lo: KeyValue, hi: KeyValue): string {
  return `DELETE FROM ${qualified(spec.target)} WHERE ${keyRange(spec.key, lo, hi)}`;
}

/**
 * Count and order-independent checksum of one side. The source is hashed through the mapping and casts, the
 * target as stored; both print the same row text when the copy is exact. Sum of 64-bit hashes (as numeric, so it
 * cannot overflow) paired with the count.
 */
export function checksumSql(spec: CopySpec, side: 'source' | 'target', lo: KeyValue = null, hi: KeyValue = null, inFlight?: TableRef): string {
  const row = side === 'source' ? sourceProjection(spec, 'stored') : spec.columns.map((c) => quoteIdent(c.target)).join(', ');
  const table = side === 'source' ? spec.source : spec.target;
  // Keys with captured changes not yet replayed are left out on both sides: they differ by design until replay.
  const settled = inFlight
    ? ` AND NOT EXISTS (SELECT 1 FROM ${qualified(inFlight)} c WHERE c.key = ARRAY[${spec.key.map((k) => `t.${quoteIdent(k.name)}::text`).join(', ')}])`
    : '';
  return `SELECT count(*)::bigint::text AS rows,
                 coalesce(sum(hashtextextended(ROW(${row})::text, 0)::numeric), 0)::text AS checksum
            FROM ${qualified(table)} t WHERE ${keyRange(spec.key, lo, hi)}${side === 'source' ? andRowFilter(spec.where) : ''}${settled}`;
}

/**
 * One column of the compatibility view (`cutover.compatView`): an old-table column derived from the new table.
 * `plain` columns are a new-table column of the same type under the old name: PostgreSQL keeps them writable
 * through the view. Anything else (an expression, a cast) is read-only there.
 */
export interface CompatColumn {
  /** Old-table column name. */
  name: string;
  /** SQL over the new table's columns: a quoted column name when `plain`. */
  expr: string;
  /** The old column's type. */
  type: string;
  plain: boolean;
}

/**
 * The compatibility view: the old name, the old columns in their order, read through the new table. With
 * `securityInvoker` (a table with row-level security) the reader's own rights and the new table's policies apply
 * (a view with its owner's rights would read as its owner and bypass the policies); without, the view's own
 * grants decide, column by column, as the old table's did (see `compatViewRights`).
 */
export function compatViewSql(view: TableRef, over: TableRef, columns: CompatColumn[], securityInvoker = true): string {
  const select = columns.map((c) => `${c.plain ? c.expr : `(\n${c.expr}\n)::${c.type}`} AS ${quoteIdent(c.name)}`);
  return `CREATE VIEW ${qualified(view)} WITH (security_invoker = ${securityInvoker}) AS SELECT\n  ${select.join(',\n  ')}\nFROM ${qualified(over)}`;
}
