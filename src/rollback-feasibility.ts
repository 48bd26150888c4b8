/**
 * Rollback feasibility. Before cutover (preflight): which columns of the inverse mapping can refuse, or change, a
 * value written to the new table after cutover when a rollback carries it back into the original table. After a
 * swap back was refused: which column refused, in how many rows, told without any row value.
 *
 * The predictions are pure functions over catalog facts (format_type, atttypmod, NOT NULL), so they are unit
 * tested without a database; only `refusingColumns` reads the database.
 */
import type pg from 'pg';
import { changeTable } from './capture';
import { mappedExpression, type CopySpec } from './projection';
import { qualified, quoteIdent, quoteLiteral } from './sql';

/** One column's type as the catalog has it. */
export interface ColumnType {
  /** format_type(atttypid, atttypmod): what people read, e.g. `character varying(40)`. */
  type: string;
  /** format_type(atttypid, NULL): the type without modifier, e.g. `character varying`, `numeric`, `integer[]`. */
  base: string;
  /** atttypmod: -1 when the column has no length or precision. */
  typmod: number;
  notNull: boolean;
  /** A domain: its own constraints apply to every value written into it. */
  domain: boolean;
}

/** One column a rollback writes into the original table, and where its value comes from in the new table. */
export interface ReverseColumn {
  /** The original table's column. */
  column: string;
  into: ColumnType;
  /** The new table's column when the inverse is that column as is; absent when it is an expression. */
  from?: ColumnType;
  /** The `reverse:` expression, when the inverse is not a plain column. */
  expr?: string;
}

export interface RollbackRisk {
  /** The original table's column. */
  column: string;
  /** The new table's type, or `expression` for a `reverse:` expression. */
  from: string;
  /** The original column's type. */
  to: string;
  /** `refused`: a value can make the rollback fail; `changed`: a value goes back altered (rounded). */
  effect: 'refused' | 'changed';
  reason: string;
}

type Fit = { effect: 'refused' | 'changed'; reason: string } | undefined;

const VARHDRSZ = 4;
const CHARACTER_TYPES = new Set(['character varying', 'character']);
const TIME_TYPES = new Set(['timestamp without time zone', 'timestamp with time zone', 'time without time zone', 'time with time zone']);
const INTEGER_DIGITS: Record<string, number> = { smallint: 5, integer: 10, bigint: 19 };
/** Casts that can neither fail nor change a value, beyond the ones decided by length or digits below. */
const LOSSLESS = new Set(['real>double precision', 'date>timestamp without time zone', 'jsonb>json']);

/** varchar(n) / char(n): n, or undefined for no limit; text has none. */
function characterLimit(base: string, typmod: number): number | undefined {
  if (base === 'text' || typmod < 0) return undefined;
  return typmod - VARHDRSZ;
}

/** numeric(p, s) from its typmod (scale may be negative since PostgreSQL 15); undefined when unconstrained. */
export function numericPrecision(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < VARHDRSZ) return undefined;
  const bits = typmod - VARHDRSZ;
  return { precision: (bits >> 16) & 0xffff, scale: ((bits & 0x7ff) ^ 1024) - 1024 };
}

function elementBase(base: string): string {
  return base.endsWith('[]') ? base.slice(0, -2) : base;
}

/** Same type, different modifier: does a value of `from` fit `to`? */
function modifierFit(base: string, from: number, to: number, names: { from: string; to: string }): Fit {
  const element = elementBase(base);
  if (CHARACTER_TYPES.has(element)) {
    const [f, t] = [characterLimit(element, from), characterLimit(element, to)];
    return t !== undefined && (f === undefined || f > t) ? { effect: 'refused', reason: `values longer than ${t} characters cannot go back` } : undefined;
  }
  if (element === 'bit') return { effect: 'refused', reason: 'a bit string must have exactly the original length' };
  if (element === 'bit varying') return to >= 0 && (from < 0 || from > to) ? { effect: 'refused', reason: `bit strings longer than ${to} cannot go back` } : undefined;
  if (element === 'numeric') return numericFit(numericPrecision(from), numericPrecision(to));
  if (TIME_TYPES.has(element)) {
    // -1 is the default precision, 6.
    const [f, t] = [from < 0 ? 6 : from, to < 0 ? 6 : to];
    return f > t ? { effect: 'changed', reason: `fractional seconds are rounded to ${t} digits on the way back` } : undefined;
  }
  if (element === 'interval') return to < 0 ? undefined : { effect: 'changed', reason: 'interval fields or precision differ: values are truncated or rounded on the way back' };
  return to < 0 ? undefined : { effect: 'refused', reason: `the type modifiers differ (${names.from} into ${names.to}); a value can be refused` };
}

function numericFit(from: { precision: number; scale: number } | undefined, to: { precision: number; scale: number } | undefined): Fit {
  if (!to) return undefined;
  if (!from) return { effect: 'refused', reason: `numbers with more than ${to.precision - to.scale} integer digits cannot go back, and decimals beyond ${to.scale} are rounded` };
  if (from.precision - from.scale > to.precision - to.scale) {
    return { effect: 'refused', reason: `numbers with more than ${to.precision - to.scale} integer digits cannot go back` };
  }
  if (from.scale > to.scale) return { effect: 'changed', reason: `decimals beyond ${to.scale} are rounded on the way back` };
  return undefined;
}

/** Different types: only a few casts are known never to fail nor change a value. */
function crossTypeFit(from: ColumnType, to: ColumnType): Fit {
  const cast = { effect: 'refused' as const, reason: `a cast from ${from.type} to ${to.type}: a value can be refused or changed` };
  if (to.domain || from.base.endsWith('[]') !== to.base.endsWith('[]')) {
    return to.domain ? { effect: 'refused', reason: `${to.type} is a domain: its constraints can refuse a value` } : cast;
  }
  const [f, t] = [elementBase(from.base), elementBase(to.base)];
  // Every value has a text form: unlimited text never refuses one.
  if (t === 'text' || (t === 'character varying' && to.typmod < 0)) return undefined;
  if (CHARACTER_TYPES.has(t) && (f === 'text' || CHARACTER_TYPES.has(f))) {
    const [fl, tl] = [characterLimit(f, from.typmod), characterLimit(t, to.typmod)];
    return tl !== undefined && (fl === undefined || fl > tl) ? { effect: 'refused', reason: `values longer than ${tl} characters cannot go back` } : undefined;
  }
  if (from.domain) return cast;
  if (f in INTEGER_DIGITS && t in INTEGER_DIGITS) {
    return INTEGER_DIGITS[f]! <= INTEGER_DIGITS[t]! ? undefined : { effect: 'refused', reason: `${f} values outside the range of ${t} cannot go back` };
  }
  if (f in INTEGER_DIGITS && t === 'numeric') {
    const n = numericPrecision(to.typmod);
    return !n || n.precision - n.scale >= INTEGER_DIGITS[f]! ? undefined : { effect: 'refused', reason: `numbers with more than ${n.precision - n.scale} integer digits cannot go back` };
  }
  return LOSSLESS.has(`${f}>${t}`) ? undefined : cast;
}

/** Does a value of the new column's type always go back into the original column's type, unchanged? */
export function typeFit(from: ColumnType, to: ColumnType): Fit {
  if (from.base === to.base && from.domain === to.domain) {
    return from.typmod === to.typmod ? undefined : modifierFit(from.base, from.typmod, to.typmod, { from: from.type, to: to.type });
  }
  return crossTypeFit(from, to);
}

/** Every column of the inverse mapping that can make a rollback fail or change a value, with the reason. */
export function rollbackRisks(columns: ReverseColumn[]): RollbackRisk[] {
  const risks: RollbackRisk[] = [];
  for (const c of columns) {
    if (!c.from) {
      risks.push({ column: c.column, from: 'expression', to: c.into.type, effect: 'refused',
        reason: `reverse: ${c.expr ?? '(expression)'} is computed at rollback; its result can be refused by ${c.into.type}${c.into.notNull ? ' NOT NULL' : ''} like any value` });
      continue;
    }
    const reasons: Fit[] = [typeFit(c.from, c.into)];
    if (c.into.notNull && !c.from.notNull) reasons.push({ effect: 'refused', reason: 'the new column allows NULL, the original is NOT NULL' });
    const found = reasons.filter((r): r is NonNullable<Fit> => r !== undefined);
    if (found.length === 0) continue;
    risks.push({
      column: c.column, from: c.from.type, to: c.into.type,
      effect: found.some((r) => r.effect === 'refused') ? 'refused' : 'changed',
      reason: found.map((r) => r.reason).join('; '),
    });
  }
  return risks;
}

/** The line the cutover gate shows for one risk. */
export function riskWarning(r: RollbackRisk): string {
  const from = r.from === 'expression' ? 'a reverse: expression' : `the new table's ${r.from}`;
  return r.effect === 'refused'
    ? `rollback after cutover can fail on column ${r.column} (${from} into the original ${r.to}): ${r.reason}; such a rollback waits until the data is fixed`
    : `rollback after cutover changes values of column ${r.column} (${from} into the original ${r.to}): ${r.reason}`;
}

/**
 * What readers of the old name see through the compatibility view for one column at risk (the view casts the new
 * value to the old type; NOT NULL is a rule for writes and does not apply to a view's readers). An explicit cast to
 * a shorter character type cuts the value; other casts that do not fit fail the whole read.
 */
export function compatReaderWarning(r: RollbackRisk, view: string): string {
  const from = r.from === 'expression' ? 'a reverse: expression' : `the new table's ${r.from}`;
  const seen = r.effect === 'changed' ? 'see it rounded to the old type'
    : /^character/.test(r.to) ? 'see values longer than the old type cut to fit (an explicit cast truncates)'
    : 'fail reading that column on any row whose value does not fit (e.g. numeric field overflow)';
  return `readers of ${view} (compatibility view): column ${r.column} is ${from} read as the old ${r.to}: ${r.reason}; they ${seen}; ` +
    'a reverse: expression for the column (say, a clamp) decides what they see instead';
}

/**
 * SQLSTATEs whose PostgreSQL message names types, columns or constraints but never a value: these are shown as
 * they are. Others (22P02 invalid input, 22007 / 22008 dates, ...) quote the value, so only their class is told.
 */
const VALUE_FREE_MESSAGES = new Set(['22001', '22003', '23502', '23503', '23505', '23514', '23P01']);

/** What refused a write, in words that carry no row value. */
export function refusalText(sqlstate: string, message: string): string {
  if (VALUE_FREE_MESSAGES.has(sqlstate)) return message;
  return sqlstate.startsWith('23') ? 'a constraint of the original table refuses a value' : 'a value is not valid for the original column type';
}

/**
 * After a swap back was refused with a data exception (class 22, which PostgreSQL does not tie to a column): the
 * columns whose pending values (writes made after cutover, not yet carried back) the original column type
 * refuses, and how many rows each. Read-only; needs pg_input_is_valid (PostgreSQL 16), else answers nothing.
 */
export async function refusingColumns(client: pg.Client, reverse: CopySpec, newTableOid: number): Promise<{ column: string; type: string; rows: number }[]> {
  const { rows: [probe] } = await client.query<{ ok: boolean }>(`SELECT to_regprocedure('pg_catalog.pg_input_is_valid(text,text)') IS NOT NULL AS ok`);
  if (!probe?.ok) return [];
  const pending = `EXISTS (SELECT 1 FROM ${qualified(changeTable(newTableOid))} k WHERE k.key = ARRAY[${reverse.key.map((k) => `s.${quoteIdent(k.name)}::text`).join(', ')}])`;
  const found: { column: string; type: string; rows: number }[] = [];
  // A key of the same type always fits; a widened key (bigint in the new table, integer in the original) may not,
  // and its value is read as it is: cast to the original type first, it would fail this query instead of counting.
  const widenedKey = (c: CopySpec['columns'][number]) => reverse.key.some((k) => k.name === c.target && k.type !== c.type);
  for (const c of reverse.columns.filter((x) => widenedKey(x) || !reverse.key.some((k) => k.name === x.target))) {
    const value = widenedKey(c) ? c.expr : mappedExpression(c);
    const { rows: [r] } = await client.query<{ n: string }>({
      text: `SELECT count(*)::text AS n FROM ${qualified(reverse.source)} s
              WHERE ${pending} AND NOT pg_input_is_valid((${value})::text, $1)`,
      values: [c.type],
    });
    if (Number(r!.n) > 0) found.push({ column: c.target, type: c.type, rows: Number(r!.n) });
  }
  return found;
}

/** A query an operator can run to find the rows of the live table whose `column` the original type refuses. */
export function findRowsSql(live: CopySpec['source'], key: CopySpec['key'], c: CopySpec['columns'][number]): string {
  const keys = key.map((k) => quoteIdent(k.name)).join(', ');
  // A plain column reads best as itself; an expression keeps its own lines, so a -- comment in it stays harmless.
  const value = /^"(?:[^"]|"")+"$/.test(c.expr) ? c.expr : `(${mappedExpression(c)})`;
  return `SELECT ${keys} FROM ${qualified(live)} WHERE NOT pg_input_is_valid(${value}::text, ${quoteLiteral(c.type)})`;
}

/** A value the original table refused while a swap back carried writes made after cutover into it. */
export class RefusedWrite extends Error {
  private constructor(readonly sqlstate: string, readonly column: string | undefined, readonly constraint: string | undefined, message: string) {
    super(message);
  }

  /** A refusal by the original table (SQLSTATE class 22, data exception, or 23, integrity), told without values. */
  static from(err: unknown): RefusedWrite | undefined {
    const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; column?: unknown; constraint?: unknown; message?: unknown };
    if (typeof e.code !== 'string' || !/^2[23]/.test(e.code)) return undefined;
    const text = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
    return new RefusedWrite(e.code, text(e.column), text(e.constraint), refusalText(e.code, String(e.message ?? '')));
  }
}

/** What status and audit carry about a refused swap back (the details of the SwapBackUnsafe failure). */
export interface SwapBackRefusal {
  sqlstate: string;
  column?: string;
  constraint?: string;
  rows?: number;
  findRows?: string;
}

/**
 * The refusal as the operator reads it: what refused (SQLSTATE, column, constraint, how many rows), where the
 * tables are. `found` is refusingColumns' answer (class 22 only); `findRows` a query listing those rows' keys.
 */
export function describeRefusal(r: RefusedWrite, found: { column: string; type: string; rows: number }[], where: { retired: string; live: string }, findRows?: string): { message: string; details: SwapBackRefusal } {
  const column = r.column ?? (found.length ? found.map((f) => f.column).join(', ') : undefined);
  const rows = found.length ? found.reduce((n, f) => n + f.rows, 0) : undefined;
  const named = [`SQLSTATE ${r.sqlstate}`, ...(column ? [`column ${column}`] : []), ...(r.constraint ? [`constraint ${r.constraint}`] : [])].join(', ');
  const fit = found.map((f) => `${f.rows} row${f.rows === 1 ? '' : 's'} written after cutover ha${f.rows === 1 ? 's' : 've'} a ${f.column} that does not fit ${f.type}`);
  return {
    message: `a write made after cutover cannot go back into ${where.retired}: ${r.message} (${named})${fit.length ? `; ${fit.join('; ')}` : ''}; ` +
      `both tables are left as they are: the new table is live at ${where.live}, the original is ${where.retired}`,
    details: { sqlstate: r.sqlstate, ...(column ? { column } : {}), ...(r.constraint ? { constraint: r.constraint } : {}), ...(rows !== undefined ? { rows } : {}), ...(findRows ? { findRows } : {}) },
  };
}
