/**
 * Catalog reads done ahead of a lock, confirmed under it in one round trip. The cutover reads everything bound to
 * the table (some twenty catalog queries) to recreate it on the new table; under the exclusive lock those cost
 * writers their round trips and, above all, their planning (a catalog query plans in about a millisecond and runs
 * in a tenth of that). Read ahead, each query is prepared (PREPARE, a generic plan made on its first EXECUTE) and
 * recorded with its result; under the lock the same EXECUTEs are sent as one multi-statement query, and if every
 * one returns exactly what it returned before, what was computed from them then is what would be computed now (the
 * reading code sees nothing but those results), so it is used. Anything different (a grant, a view, a policy
 * changed meanwhile) and the caller reads again under the lock, as it always did. Sound by construction, whatever
 * the reading code asks.
 *
 * Parameters are given to EXECUTE as quoted literals: node-pg sends each parameter as text of unknown type, and an
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
  /** The reads to confirm, or undefined if one of them could not be prepared (then read again under the lock). */
  reads: Read[] | undefined;
  /** Names of the prepared statements (`forgetAhead`). */
  prepared: string[];
}

/** A parameter as the literal node-pg's text would resolve to; undefined for values this does not inline. */
function literal(v: unknown): string | undefined {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return quoteLiteral(String(v));
  return undefined;
}

/** `EXECUTE name('v1', ...)`, or undefined if a value is not one this gives inline. */
export function executeText(name: string, values: unknown[]): string | undefined {
  const literals = values.map(literal);
  if (literals.some((l) => l === undefined)) return undefined;
  return literals.length ? `EXECUTE ${name}(${literals.join(', ')})` : `EXECUTE ${name}`;
}

const PREFIX = 'safeshift_ahead_';
let preparedSeq = 0;

/**
 * Run `fn`, its queries through `client` prepared with generic plans and recorded with their results. A query that
 * cannot be prepared (or given its values inline) runs as asked, and the read-ahead then cannot be confirmed.
 * `forgetAhead` deallocates the statements.
 */
export async function readAhead<T>(client: pg.Client, fn: () => Promise<T>): Promise<ReadAhead<T>> {
  const own = Object.prototype.hasOwnProperty.call(client, 'query');
  const query = client.query as (...a: unknown[]) => Promise<pg.QueryResult>;
  const ahead: ReadAhead<T> = { value: undefined as T, reads: [], prepared: [] };
  const mode = await setPlanCacheMode(client, 'force_generic_plan');
  client.query = (async (...args: unknown[]) => {
    const [first, second] = args;
    const text = typeof first === 'string' ? first : (first as { text?: unknown } | undefined)?.text;
    const values = typeof first === 'string' ? second : (first as { values?: unknown } | undefined)?.values;
    const name = `${PREFIX}${++preparedSeq}`;
    const execute = typeof text === 'string' && (values === undefined || Array.isArray(values)) && args.length <= 2 && typeof second !== 'function'
      ? executeText(name, (values as unknown[] | undefined) ?? []) : undefined;
    if (execute !== undefined && ahead.reads) {
      const prepared = await query.call(client, `PREPARE ${name} AS ${text as string}`).then(() => true, () => false);
      if (prepared) {
        ahead.prepared.push(name);
        const result = await query.call(client, execute);
        ahead.reads.push({ text: execute, rows: JSON.stringify(result.rows) });
        return result;
      }
    }
    ahead.reads = undefined;
    return query.apply(client, args);
  }) as pg.Client['query'];
  try {
    ahead.value = await fn();
    return ahead;
  } finally {
    if (own) client.query = query as pg.Client['query'];
    else delete (client as { query?: unknown }).query;
    await setPlanCacheMode(client, mode);
  }
}

async function setPlanCacheMode(client: pg.Client, mode: string): Promise<string> {
  const { rows } = await client.query<{ was: string }>(
    `SELECT current_setting('plan_cache_mode') AS was, set_config('plan_cache_mode', $1, false)`, [mode]);
  return rows[0]!.was;
}

/** The prepared statements of a read-ahead deallocated (in any transaction state but an aborted one). */
export async function forgetAhead(client: pg.Client, ahead: ReadAhead<unknown>): Promise<void> {
  if (ahead.prepared.length) await client.query(ahead.prepared.map((n) => `DEALLOCATE ${n}`).join(';\n'));
  ahead.prepared = [];
  ahead.reads = undefined;
}

const SAVEPOINT = 'safeshift_read_ahead';

/**
 * The reads sent again in one round trip: true if every one returned exactly what it did ahead of the lock. A
 * read that fails now (it should not: it ran a moment ago) is undone to the savepoint and answers false, so the
 * caller reads again the ordinary way.
 */
export async function sameAsAhead(client: pg.Client, ahead: Pick<ReadAhead<unknown>, 'reads'>): Promise<boolean> {
  const { reads } = ahead;
  if (!reads) return false;
  if (reads.length === 0) return true;
  let result: unknown;
  try {
    // The generic plans made ahead are used as they are: nothing is planned under the lock.
    result = await client.query([`SAVEPOINT ${SAVEPOINT}`, `SET LOCAL plan_cache_mode = force_generic_plan`, ...reads.map((r) => r.text),
      `SET LOCAL plan_cache_mode = DEFAULT`, `RELEASE SAVEPOINT ${SAVEPOINT}`].join(';\n'));
  } catch {
    await client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`);
    return false;
  }
  const results = (Array.isArray(result) ? result : [result]) as pg.QueryResult[];
  const answers = results.slice(2, -2);
  return answers.length === reads.length && answers.every((r, i) => JSON.stringify(r.rows) === reads[i]!.rows);
}
