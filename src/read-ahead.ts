/**
 * Catalog reads done ahead of a lock, confirmed under it in one round trip. The cutover reads everything bound to
 * the table (some twenty catalog queries) to recreate it on the new table; under the exclusive lock each of those
 * is a round trip writers wait for. Read ahead, the same queries are recorded with their results; under the lock
 * they are sent again as one multi-statement query, and if every one returns exactly what it returned before, what
 * was computed from them then is what would be computed now (the reading code sees nothing but those results), so
 * it is used. Anything different (a grant, a view, a policy changed meanwhile) and the caller reads again under
 * the lock, as it always did. Sound by construction, whatever the reading code asks.
 *
 * Parameters are sent inline as quoted literals: node-pg sends each parameter as text of unknown type, and an
 * unknown-typed literal of the same text resolves exactly as that parameter does.
 */
import type pg from 'pg';
import { quoteLiteral } from './sql';

interface Read {
  text: string;
  /** JSON of the rows it returned. */
  rows: string;
}

export interface ReadAhead<T> {
  value: T;
  /** The reads to confirm, or undefined if one of them cannot be sent again inline (then read again under the lock). */
  reads: Read[] | undefined;
}

/** A parameter as the literal node-pg's text would resolve to; undefined for values this does not inline. */
function literal(v: unknown): string | undefined {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return quoteLiteral(String(v));
  return undefined;
}

/**
 * `$1`, `$2`... replaced by their literals where they are placeholders: outside string literals, quoted names,
 * dollar quotes and comments. Undefined if a value is not one this inlines or a placeholder has no value.
 */
export function inline(text: string, values: unknown[]): string | undefined {
  const literals = values.map(literal);
  if (literals.some((l) => l === undefined)) return undefined;
  let out = '';
  let i = 0;
  const copyUntil = (end: number) => { out += text.slice(i, end); i = end; };
  while (i < text.length) {
    const c = text[i]!;
    const rest = text.slice(i);
    if (c === "'" || c === '"') {
      // '' and "" inside are the quote itself: the literal ends at the first lone quote.
      const escapes = c === "'" && /[eE]/.test(text[i - 1] ?? '') && !/[A-Za-z0-9_]/.test(text[i - 2] ?? '');
      let j = i + 1;
      for (; j < text.length; j++) {
        if (escapes && text[j] === '\\') j++;
        else if (text[j] === c) { if (text[j + 1] === c) j++; else break; }
      }
      copyUntil(Math.min(text.length, j + 1));
    } else if (rest.startsWith('--')) {
      const j = text.indexOf('\n', i);
      copyUntil(j < 0 ? text.length : j);
    } else if (rest.startsWith('/*')) {
      const j = text.indexOf('*/', i + 2);
      copyUntil(j < 0 ? text.length : j + 2);
    } else if (c === '$') {
      const placeholder = /^\$(\d+)/.exec(rest);
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest);
      if (placeholder) {
        const l = literals[Number(placeholder[1]) - 1];
        if (l === undefined) return undefined;
        out += l;
        i += placeholder[0].length;
      } else if (tag) {
        const j = text.indexOf(tag[0], i + tag[0].length);
        copyUntil(j < 0 ? text.length : j + tag[0].length);
      } else copyUntil(i + 1);
    } else copyUntil(i + 1);
  }
  return out;
}

/** Run `fn`, recording every query it sends through `client` with its result. */
export async function readAhead<T>(client: pg.Client, fn: () => Promise<T>): Promise<ReadAhead<T>> {
  const own = Object.prototype.hasOwnProperty.call(client, 'query');
  const query = client.query;
  let reads: Read[] | undefined = [];
  client.query = (async (...args: unknown[]) => {
    const [first, second] = args;
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | undefined)?.text;
    const values = typeof first === 'string' ? second : (first as { values?: unknown } | undefined)?.values;
    const result = await (query as (...a: unknown[]) => Promise<pg.QueryResult>).apply(client, args);
    const sent = typeof text === 'string' && (values === undefined || Array.isArray(values)) && typeof second !== 'function'
      ? inline(text, (values as unknown[] | undefined) ?? []) : undefined;
    if (sent === undefined || Array.isArray(result)) reads = undefined;
    else reads?.push({ text: sent, rows: JSON.stringify(result.rows) });
    return result;
  }) as pg.Client['query'];
  try {
    return { value: await fn(), reads };
  } finally {
    if (own) client.query = query;
    else delete (client as { query?: unknown }).query;
  }
}

const SAVEPOINT = 'safeshift_read_ahead';

/**
 * The reads sent again in one round trip: true if every one returned exactly what it did ahead of the lock. A
 * read that fails now (it should not: it ran a moment ago) is undone to the savepoint and answers false, so the
 * caller reads again the ordinary way.
 */
export async function sameAsAhead(client: pg.Client, reads: Read[] | undefined): Promise<boolean> {
  if (!reads) return false;
  if (reads.length === 0) return true;
  let result: unknown;
  try {
    result = await client.query([`SAVEPOINT ${SAVEPOINT}`, ...reads.map((r) => r.text), `RELEASE SAVEPOINT ${SAVEPOINT}`].join('\n;\n'));
  } catch {
    await client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`);
    return false;
  }
  const results = (Array.isArray(result) ? result : [result]) as pg.QueryResult[];
  const answers = results.slice(1, -1);
  return answers.length === reads.length && answers.every((r, i) => JSON.stringify(r.rows) === reads[i]!.rows);
}
