/**
 * Bringing target rows up to date with the source, key by key: the target row becomes the current source row
 * through the mapping, or goes when the source row is gone. Catch-up replay, the cutover's drain, the swap back
 * (into the retired table) and a copy chunk that meets a stale row all come through here.
 *
 * Why a unique index can refuse a valid source row, and why resolving it is safe: the target is filled from the
 * source at different moments (chunks, replay batches), so between them it holds stale copies of rows that changed
 * since. A unique value moved from row A (copied earlier) to row B collides with A's stale copy when B arrives; so
 * does a row whose key changed. Every stale row has a captured change still waiting (capture is installed before
 * the copy reads anything), so bringing A up to date now only does early what replay would do later anyway. A
 * collision that remains when both rows are current is real: the source, through the mapping, breaks a unique
 * index of the target; the original error is raised and fails the migration, named, as before.
 */
import type pg from 'pg';
import { pgErrorCode } from './db';
import { keyRange, mappedExpression, sourceProjection, targetColumnList, type CopySpec, type KeyColumn, type KeyValue } from './projection';
import { qualified, quoteIdent } from './sql';
import { andRowFilter } from './row-filter';

/** replace: the target row becomes exactly the mapped source row. upsert (swap back into the retired table):
 * columns the mapping cannot give back keep their values, so only rows gone from the source are deleted. */
export type ReplayMode = 'replace' | 'upsert';

/** Source rows arriving in the target, by key (a copy chunk arrives by its keys too: `replayRange`). */
type Arriving = { keys: string[][] };

/**
 * How a replay transaction outside the cutover lock begins: one snapshot for all its statements, so the stale rows
 * found and the rows inserted agree even while writers keep moving values (under READ COMMITTED each statement
 * would see a newer source, and a busy writer could keep a chain of stale rows from ever closing). A change
 * committed after the snapshot has its own change row, invisible here, and is replayed by a later batch. Under the
 * cutover lock writers are shut out, and the snapshot must be taken after the lock wait: plain BEGIN there.
 */
export const REPLAY_BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ';

/**
 * How many times one arrival may bring stale rows up to date before giving up with a retryable error: writers
 * moving the same values around faster than we catch them are a race, not a violation, and a retry settles it.
 */
export const MAX_STALE_ROUNDS = 25;

/** Key columns as typed rows from per-column text arrays ($offset+1, ...): keys travel as parameters, never as SQL. */
function keysFromParams(key: KeyColumn[], offset = 0): string {
  const cols = key.map((k) => quoteIdent(k.name)).join(', ');
  const typed = key.map((k) => `u.${quoteIdent(k.name)}::${k.type} AS ${quoteIdent(k.name)}`).join(', ');
  return `SELECT ${typed} FROM unnest(${key.map((_, i) => `$${offset + i + 1}::text[]`).join(', ')}) AS u(${cols})`;
}

function keyParams(key: KeyColumn[], keys: string[][]): string[][] {
  return key.map((_, i) => keys.map((k) => k[i]!));
}

function keyMatch(key: KeyColumn[], a: string, b: string): string {
  return key.map((k) => `${a}.${quoteIdent(k.name)} = ${b}.${quoteIdent(k.name)}`).join(' AND ');
}

function keyText(key: KeyColumn[]): string {
  return `ARRAY[${key.map((k) => `${quoteIdent(k.name)}::text`).join(', ')}]`;
}

/**
 * The source rows (alias s) whose keys are the parameters $offset+1...: one text array per key column, and that
 * the plan's row filter holds for (a key whose row left the filter is deleted from the target and not inserted).
 */
function sourceKeysIn(spec: Pick<CopySpec, 'key' | 'where'>, offset = 0): string {
  return `EXISTS (SELECT 1 FROM (${keysFromParams(spec.key, offset)}) k WHERE ${keyMatch(spec.key, 's', 'k')})${andRowFilter(spec.where)}`;
}

/** A predicate over the source (alias s) choosing the arriving rows, with its parameters numbered after `offset`. */
function arrivingWhere(spec: CopySpec, arriving: Arriving, offset = 0): { text: string; values: unknown[] } {
  return { text: sourceKeysIn(spec, offset), values: keyParams(spec.key, arriving.keys) };
}

/** The arriving rows as the target will store them: target column names, full target types. */
function arrivingRows(spec: CopySpec, where: string): string {
  const cols = spec.columns.map((c) => `${mappedExpression(c, 'stored')} AS ${quoteIdent(c.target)}`).join(', ');
  return `SELECT ${cols} FROM ${qualified(spec.source)} s WHERE ${where}`;
}

/**
 * Replay `keys` in the caller's transaction: the target rows of those keys are deleted and the current source rows
 * inserted through the mapping. Rows are deleted and inserted rather than updated in place, because a unique index
 * is checked row by row: two rows of one batch that swapped values would collide with each other's old value.
 * upsert keeps, for rows still in the source, the columns the mapping does not fill. A unique collision with a
 * stale row is resolved by replaying that row's key too, recursively; `budget` bounds the rounds of the call.
 */
export async function replayKeys(client: pg.Client, spec: CopySpec, keys: string[][], how: ReplayMode, budget = { rounds: MAX_STALE_ROUNDS }): Promise<void> {
  if (keys.length === 0) return;
  const kept = how === 'upsert' ? await unmappedColumns(client, spec) : [];
  const statements = kept.length ? [replaceKeepingSql(spec, kept)] : replaceSql(spec);
  let replaying = keys;
  for (;;) {
    // A savepoint per try: a refused insert must not abort the caller's transaction (the batch it belongs to).
    await client.query('SAVEPOINT safeshift_replay');
    try {
      for (const text of statements) await client.query({ text, values: keyParams(spec.key, replaying) });
      await client.query('RELEASE SAVEPOINT safeshift_replay');
      return;
    } catch (err) {
      await client.query('ROLLBACK TO SAVEPOINT safeshift_replay');
      await client.query('RELEASE SAVEPOINT safeshift_replay');
      // The stale rows join the replay: replayed apart, two rows that swapped values would refuse each other.
      replaying = [...replaying, ...(await staleChain(client, spec, { keys: replaying }, err, budget))];
    }
  }
}

/**
 * A copy chunk (lo, hi] brought in through replay, in the caller's transaction (begun with REPLAY_BEGIN): its keys
 * are read from the source and replayed with the stale rows in their way, all in that one snapshot, so the chunk's
 * rows and the stale rows agree and the chain closes, however fast writers move values meanwhile (their changes
 * are captured and replayed later). The caller deletes the range first. Returns how many rows arrived.
 */
export async function replayRange(client: pg.Client, spec: CopySpec, lo: KeyValue, hi: KeyValue, budget = { rounds: MAX_STALE_ROUNDS }): Promise<number> {
  const { rows } = await client.query<{ key: string[] }>(
    `SELECT ${keyText(spec.key)} AS key FROM ${qualified(spec.source)} s WHERE ${keyRange(spec.key, lo, hi)}${andRowFilter(spec.where)}`);
  await replayKeys(client, spec, rows.map((r) => r.key), 'replace', budget);
  return rows.length;
}

/** Delete the keys ($1...), insert their current source rows: the target row becomes exactly the mapped source row. */
function replaceSql(spec: CopySpec): string[] {
  const target = qualified(spec.target);
  return [
    `DELETE FROM ${target} t USING (${keysFromParams(spec.key)}) k WHERE ${keyMatch(spec.key, 't', 'k')}`,
    `INSERT INTO ${target} (${targetColumnList(spec)}) OVERRIDING SYSTEM VALUE
       SELECT ${sourceProjection(spec)} FROM ${qualified(spec.source)} s WHERE ${sourceKeysIn(spec)}`,
  ];
}

/**
 * The same in one statement, for a target with columns the mapping does not fill (`kept`): what the delete returns
 * gives those columns back to the rows re-inserted; rows new to the target get their defaults. The projection runs
 * in its own subquery, where operator SQL sees only the source's columns.
 */
function replaceKeepingSql(spec: CopySpec, kept: string[]): string {
  const target = qualified(spec.target);
  const mapped = spec.columns.map((c) => `p.${quoteIdent(c.target)}`).join(', ');
  const projection = spec.columns.map((c) => `${mappedExpression(c)} AS ${quoteIdent(c.target)}`).join(', ');
  return `WITH k AS (${keysFromParams(spec.key)}),
       old AS (DELETE FROM ${target} t USING k WHERE ${keyMatch(spec.key, 't', 'k')} RETURNING t.*),
       p AS (SELECT ${projection} FROM ${qualified(spec.source)} s WHERE ${sourceKeysIn(spec)}),
       again AS (INSERT INTO ${target} (${targetColumnList(spec)}, ${kept.map(quoteIdent).join(', ')}) OVERRIDING SYSTEM VALUE
                 SELECT ${mapped}, ${kept.map((c) => `old.${quoteIdent(c)}`).join(', ')} FROM p JOIN old ON ${keyMatch(spec.key, 'p', 'old')})
  INSERT INTO ${target} (${targetColumnList(spec)}) OVERRIDING SYSTEM VALUE
  SELECT ${mapped} FROM p WHERE NOT EXISTS (SELECT 1 FROM old WHERE ${keyMatch(spec.key, 'p', 'old')})`;
}

/** Stored columns of the target that the mapping does not fill. */
async function unmappedColumns(client: pg.Client, spec: CopySpec): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`,
    [qualified(spec.target)]);
  const filled = new Set(spec.columns.map((c) => c.target));
  return rows.map((r) => r.name).filter((n) => !filled.has(n));
}

/**
 * `err` refused the arriving rows. If it is a unique collision with target rows that are stale (their current
 * source rows do not collide), return the keys of those rows, to be replayed together with the arriving ones.
 * Otherwise throw `err` itself: not ours to resolve, or a real violation.
 *
 * Stale rows chain: the value an arriving row needs sits on stale row B, whose current value sits on stale row C,
 * and so on (a writer passing values along). The chain is followed with lookups, so one round settles it however
 * long it is; the arriving rows are never part of it.
 */
async function staleChain(client: pg.Client, spec: CopySpec, arriving: Arriving, err: unknown, budget: { rounds: number }): Promise<string[][]> {
  const index = await collidedIndex(client, spec, err);
  if (!index) throw err;
  const first = await staleCollisions(client, spec, arriving, index);
  if (first.length === 0 || (await sourceCollides(client, spec, arriving, first, index))) throw err;
  if (--budget.rounds < 0) {
    throw new Error(`unique index ${index.name}: writers kept moving values onto rows being copied faster than stale copies were brought up to date; retrying`);
  }
  const seen = new Set(arriving.keys.map((k) => JSON.stringify(k)));
  const chain: string[][] = [];
  let next = first;
  for (let link = 0; next.length > 0 && link < MAX_CHAIN_LINKS; link++) {
    const fresh = next.filter((k) => !seen.has(JSON.stringify(k)));
    for (const k of fresh) seen.add(JSON.stringify(k));
    chain.push(...fresh);
    next = fresh.length ? await staleCollisions(client, spec, { keys: fresh }, index) : [];
  }
  return chain;
}

/** Links of a chain of stale rows followed in one round; a longer chain is settled over further rounds. */
const MAX_CHAIN_LINKS = 1000;

interface UniqueIndex {
  name: string;
  /** Each key column as PostgreSQL deparses it: a column name or an expression over unqualified column names. */
  columns: string[];
  predicate: string | null;
}

/**
 * The unique index behind a 23505, if collisions on it can be found: every column it uses (keys, expressions,
 * predicate) is one the copy fills, and NULLs are distinct (NULLS NOT DISTINCT indexes are left to fail as before).
 */
async function collidedIndex(client: pg.Client, spec: CopySpec, err: unknown): Promise<UniqueIndex | undefined> {
  const name = (err as { constraint?: unknown }).constraint;
  if (pgErrorCode(err) !== '23505' || typeof name !== 'string') return undefined;
  const { rows } = await client.query<UniqueIndex & { uses: string[]; nullsNotDistinct: boolean }>(
    `SELECT c.relname AS name,
            array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k)::text[] AS columns,
            pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
            coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS "nullsNotDistinct",
            array(SELECT a.attname FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                   WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.refobjid = i.indrelid AND d.refobjsubid > 0)::text[] AS uses
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1::regclass AND c.relname = $2 AND i.indisunique`,
    [qualified(spec.target), name],
  );
  const index = rows[0];
  const filled = new Set(spec.columns.map((c) => c.target));
  if (!index || index.nullsNotDistinct || !index.uses.every((u) => filled.has(u))) return undefined;
  return { name: index.name, columns: index.columns, predicate: index.predicate };
}

/**
 * `(e1, ...) IN (SELECT e1, ... FROM (<rows>) x WHERE <predicate>)`: the index's own expressions, unqualified, so
 * outside the subquery they read the outer relation and inside it the arriving rows; the planner can probe the
 * unique index itself. NULLs never match, as in the index.
 */
function collidesWith(index: UniqueIndex, rows: string): string {
  const cols = index.columns.join(', ');
  const pred = index.predicate ? ` WHERE ${index.predicate}` : '';
  return `(${cols}) IN (SELECT ${cols} FROM (${rows}) x${pred})${index.predicate ? ` AND (${index.predicate})` : ''}`;
}

/** Keys of target rows, other than the arriving ones, whose index values an arriving row also has. */
async function staleCollisions(client: pg.Client, spec: CopySpec, arriving: Arriving, index: UniqueIndex): Promise<string[][]> {
  const where = arrivingWhere(spec, arriving);
  const { rows } = await client.query<{ key: string[] }>({
    text: `SELECT ${keyText(spec.key)} AS key FROM ${qualified(spec.target)} WHERE ${collidesWith(index, arrivingRows(spec, where.text))}`,
    values: where.values,
  });
  const arrivingKeys = new Set(arriving.keys.map((k) => JSON.stringify(k)));
  return rows.map((r) => r.key).filter((k) => !arrivingKeys.has(JSON.stringify(k)));
}

/** Whether the current source rows of `stale` collide with the arriving ones too: then the violation is real. */
async function sourceCollides(client: pg.Client, spec: CopySpec, arriving: Arriving, stale: string[][], index: UniqueIndex): Promise<boolean> {
  const incoming = arrivingWhere(spec, arriving);
  const current = arrivingWhere(spec, { keys: stale }, incoming.values.length);
  const { rows } = await client.query({
    text: `SELECT 1 FROM (${arrivingRows(spec, current.text)}) b WHERE ${collidesWith(index, arrivingRows(spec, incoming.text))} LIMIT 1`,
    values: [...incoming.values, ...current.values],
  });
  return rows.length > 0;
}
