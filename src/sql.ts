/**
 * The one place SQL identifiers are checked and quoted. Every identifier that reaches a statement goes through
 * `quoteIdent` / `qualified`; values go through query parameters, never through string building.
 */

/** Unquoted identifiers accepted in plans: the lower-case form PostgreSQL folds names to. */
export const PLAIN_IDENT = /^[a-z_][a-z0-9_$]*$/;
/** PostgreSQL truncates names to NAMEDATALEN - 1 bytes; we refuse longer ones instead of letting it truncate. */
export const MAX_IDENT_BYTES = 63;

export interface TableRef {
  schema: string;
  name: string;
}

/** Whether `a` (say, where a relation is now; undefined when it is gone) is exactly `b`. */
export function sameTableRef(a: TableRef | undefined, b: TableRef): boolean {
  return a !== undefined && a.schema === b.schema && a.name === b.name;
}

export class IdentifierError extends Error {}

/** UTF-8 length without Buffer: this module is also loaded by workflow code, which has no Node globals. */
export function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** Quote one identifier for SQL. Refuses empty, NUL-containing and over-long names. */
export function quoteIdent(name: string): string {
  if (name.length === 0) throw new IdentifierError('empty identifier');
  if (name.includes('\u0000')) throw new IdentifierError(`identifier ${JSON.stringify(name)} contains NUL`);
  if (utf8Bytes(name) > MAX_IDENT_BYTES) {
    throw new IdentifierError(`identifier ${JSON.stringify(name)} is longer than ${MAX_IDENT_BYTES} bytes`);
  }
  return `"${name.replace(/"/g, '""')}"`;
}

export function qualified(t: TableRef): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

/** One name for messages: quoted only where needed. */
export function displayIdent(name: string): string {
  return PLAIN_IDENT.test(name) ? name : quoteIdent(name);
}

/** Human form for messages and the UI: schema.name, quoting only where needed. */
export function displayName(t: TableRef): string {
  return `${displayIdent(t.schema)}.${displayIdent(t.name)}`;
}

/**
 * A regular expression source matching `name` as PostgreSQL may print it in a definition: quoted or, when it
 * needs no quotes, bare.
 */
export function identPattern(name: string): string {
  const escape = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return `(?:${escape(quoteIdent(name))}|${escape(name)})`;
}

/**
 * Parse one identifier as written in a plan: either plain (`^[a-z_][a-z0-9_$]*$`) or double-quoted with `""`
 * escapes. Returns the name as PostgreSQL stores it, or undefined if it is neither.
 */
export function parseIdent(text: string): string | undefined {
  if (PLAIN_IDENT.test(text)) return text;
  const m = /^"((?:[^"]|"")+)"$/.exec(text);
  if (!m) return undefined;
  const name = m[1]!.replace(/""/g, '"');
  if (name.includes('\u0000') || utf8Bytes(name) > MAX_IDENT_BYTES) return undefined;
  return name;
}

/** Split `schema.table` (each part plain or quoted); a bare `table` means schema `public`. */
export function parseTableRef(text: string): TableRef | undefined {
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let j: number;
    if (text[i] === '"') {
      j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) return undefined;
        if (text[q + 1] === '"') { j = q + 2; continue; }
        j = q + 1;
        break;
      }
    } else {
      j = text.indexOf('.', i);
      if (j < 0) j = text.length;
    }
    const name = parseIdent(text.slice(i, j));
    if (name === undefined) return undefined;
    parts.push(name);
    if (j === text.length) break;
    if (text[j] !== '.') return undefined;
    i = j + 1;
  }
  if (parts.length === 1) return { schema: 'public', name: parts[0]! };
  if (parts.length === 2) return { schema: parts[0]!, name: parts[1]! };
  return undefined;
}

/**
 * A SQL string literal, for the few statements that cannot take parameters (COPY). A value with a backslash is
 * written as an escape string (E'...', backslashes doubled), which reads the same whatever
 * standard_conforming_strings says, so row data can never end the literal early.
 */
export function quoteLiteral(value: string): string {
  if (value.includes('\u0000')) throw new IdentifierError('literal contains NUL');
  const quoted = value.replace(/'/g, "''");
  return value.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** Fit `base` + `suffix` into PostgreSQL's 63-byte name limit by shortening the base (never mid-character). */
export function nameWithSuffix(base: string, suffix: string): string {
  let b = base;
  while (utf8Bytes(b + suffix) > MAX_IDENT_BYTES) b = Array.from(b).slice(0, -1).join('');
  return b + suffix;
}
