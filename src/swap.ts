/**
 * The statements that run under the cutover lock, in one place so a reader can see everything that happens
 * while writers wait. Callers hold the transaction; these functions only issue statements.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { AccessMatrix } from './access-matrix';
import { relationName } from './catalog';
import { displayName, nameWithSuffix, qualified, quoteIdent, quoteLiteral, type TableRef } from './sql';

/**
 * Where the new table lives after cutover: the live name, or its own name (`ownName`: `cutover.newTableName:
 * target`, which `cutover.compatView` implies; then the source's name is gone, or the compatibility view's).
 */
export function newTableHome(spec: { source: TableRef; target: TableRef }, ownName: boolean): TableRef {
  return ownName ? spec.target : spec.source;
}

/** The new table keeps its own name after cutover. Inputs of runs started before `newTableName` have only compatView. */
export function keepsOwnName(how: { compatView?: unknown; newTableName?: 'source' | 'target' }): boolean {
  return Boolean(how.compatView) || how.newTableName === 'target';
}

/** `cutover.newTableName: target` without a compatibility view: the source's name is gone after cutover. */
export function renamesAway(how: { compatView?: unknown; newTableName?: 'source' | 'target' }): boolean {
  return !how.compatView && how.newTableName === 'target';
}

/**
 * Access read through the new table's own name, keyed as if read through `as` (the source's name), so it
 * compares with what was read there before cutover (src/access-matrix.ts keys name the relation).
 */
export function accessAs(m: AccessMatrix, read: TableRef, as: TableRef): AccessMatrix {
  const from = ` on ${displayName(read)}`;
  const entries: Record<string, boolean> = {};
  for (const [key, granted] of Object.entries(m.entries)) {
    const at = key.indexOf(from);
    const rest = at < 0 ? '' : key.slice(at + from.length);
    entries[at >= 0 && (rest === '' || rest.startsWith(' (')) ? `${key.slice(0, at)} on ${displayName(as)}${rest}` : key] = granted;
  }
  return { ...m, entries };
}

/** One step of a transaction under the cutover lock: how long it took, the statements it ran, in how many round trips. */
export interface LockStep {
  step: string;
  ms: number;
  statements: number;
  roundTrips?: number;
}

/** Where a locked transaction's time went (`LockClock.finish`): in the result and the audit row of the swap. */
export interface LockTiming {
  /** From the moment the last lock was granted until COMMIT returned: writers wait this long at least. */
  lockHeldMs: number;
  /** From BEGIN until the locks were granted: writers queue behind a lock request too, so they wait this as well. */
  lockWaitMs: number;
  /** The steps in the order they ran, `commit` last; the lock wait is the step `lock`. */
  lockSteps: LockStep[];
}

const tenths = (ms: number) => Math.round(ms * 10) / 10;

/** DDL whose result nobody reads: under the lock these are sent together (`LockClock.batch`). */
const DEFERRABLE = /^\s*(ALTER|CREATE|DROP|GRANT|REVOKE|COMMENT)\s/i;
const SAVEPOINTS_OPENED = /(^|;)\s*SAVEPOINT\s/gi;
const SAVEPOINTS_RELEASED = /\bRELEASE\s+SAVEPOINT\s/gi;
const NO_ROWS = { rows: [], rowCount: null, command: '', oid: 0, fields: [] } as unknown as pg.QueryResult;

/**
 * Times the steps of one locked transaction, so each cutover says where its lock time went (and which step to
 * shorten next). Statements are counted by wrapping the client's `query` for the duration of a step. Steps do not
 * nest.
 *
 * With `batch()` on (once the locks are granted), a step's DDL statements (ALTER, CREATE, DROP, GRANT, REVOKE,
 * COMMENT, without parameters) are not sent one by one: they are queued and sent as one multi-statement query
 * before the next statement whose result is read, and at the end of the step; under the lock every round trip is
 * time writers wait. Order is kept (anything else flushes the queue first), and inside a savepoint nothing is
 * queued, so code that expects a statement to fail there (a DROP ... RESTRICT probe) sees its error where it
 * asked. A queued statement that fails fails the step with PostgreSQL's error (its SQLSTATE decides a retry, as
 * before), only raised at the flush rather than at the statement.
 */
export class LockClock {
  private readonly began = performance.now();
  private lockedAt: number | undefined;
  private batching = false;
  private readonly steps: LockStep[] = [];

  constructor(private readonly client: pg.Client) {}

  async step<T>(step: string, fn: () => Promise<T>): Promise<T> {
    const client = this.client;
    const own = Object.prototype.hasOwnProperty.call(client, 'query');
    const query = client.query as (...a: unknown[]) => Promise<pg.QueryResult>;
    let statements = 0;
    let roundTrips = 0;
    let savepoints = 0;
    let queued: string[] = [];
    const flush = async () => {
      if (!queued.length) return;
      const text = queued.join(';\n');
      queued = [];
      roundTrips++;
      await query.call(client, text);
    };
    const batching = this.batching;
    client.query = (async (...args: unknown[]) => {
      const [first, second] = args;
      statements++;
      if (batching && typeof first === 'string' && args.length === 1 && savepoints === 0 && DEFERRABLE.test(first)) {
        queued.push(first);
        return NO_ROWS;
      }
      await flush();
      if (typeof first === 'string' && typeof second !== 'function') {
        savepoints = Math.max(0, savepoints + (first.match(SAVEPOINTS_OPENED) ?? []).length - (first.match(SAVEPOINTS_RELEASED) ?? []).length);
      }
      roundTrips++;
      return query.apply(client, args);
    }) as pg.Client['query'];
    const t = performance.now();
    try {
      const result = await fn();
      await flush();
      return result;
    } finally {
      if (own) client.query = query as pg.Client['query'];
      else delete (client as { query?: unknown }).query;
      const ms = performance.now() - t;
      const same = this.steps.find((s) => s.step === step);
      if (same) { same.ms += ms; same.statements += statements; same.roundTrips = (same.roundTrips ?? 0) + roundTrips; }
      else this.steps.push({ step, ms, statements, roundTrips });
    }
  }

  /** The last lock was granted: the held time starts here (without a call, at BEGIN). */
  locked(): void {
    this.lockedAt = performance.now();
  }

  /** From now on, steps send their DDL statements together (see the class comment). */
  batch(): void {
    this.batching = true;
  }

  finish(): LockTiming {
    const end = performance.now();
    const lockedAt = this.lockedAt ?? this.began;
    return {
      lockHeldMs: Math.round(end - lockedAt),
      lockWaitMs: Math.round(lockedAt - this.began),
      lockSteps: this.steps.map((s) => ({ ...s, ms: tenths(s.ms) })),
    };
  }
}

/** `replay 12.3 ms (4 statements in 2 round trips), ...`: a breakdown for people (message, bench). */
export function describeLockSteps(steps: LockStep[]): string {
  return steps.map((s) => `${s.step} ${s.ms} ms (${s.statements}${s.roundTrips !== undefined && s.roundTrips !== s.statements ? ` in ${s.roundTrips}` : ''})`).join(', ');
}

export async function setLockTimeout(client: pg.Client, ms: number): Promise<void> {
  await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${ms}ms`]);
}

export async function lockExclusive(client: pg.Client, t: TableRef): Promise<void> {
  await client.query(`LOCK TABLE ${qualified(t)} IN ACCESS EXCLUSIVE MODE`);
}

/** Move table `from` to the name `to` (schema and name), in at most two statements. */
export async function moveTable(client: pg.Client, from: TableRef, to: TableRef): Promise<void> {
  let at = from;
  if (from.schema !== to.schema) {
    await client.query(`ALTER TABLE ${qualified(at)} SET SCHEMA ${quoteIdent(to.schema)}`);
    at = { schema: to.schema, name: from.name };
  }
  if (at.name !== to.name) await client.query(`ALTER TABLE ${qualified(at)} RENAME TO ${quoteIdent(to.name)}`);
}

/**
 * Sequences owned by `fromOid`'s columns that `toOid`'s column defaults use (a target made with LIKE ... INCLUDING
 * ALL shares the source's serial sequence): hand them to `to`, or dropping the retired table would drop them. An
 * owned sequence must live in its table's schema, so one elsewhere moves to `to`'s schema first (column defaults
 * hold its OID and keep working; SQL naming it by its old schema would not).
 */
export async function moveSharedSequences(client: pg.Client, fromOid: number, toOid: number, to: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ schema: string; name: string; col: string }>(
    `SELECT DISTINCT sn.nspname AS schema, s.relname AS name, ta.attname AS col
       FROM pg_depend own
       JOIN pg_class s ON s.oid = own.objid AND s.relkind = 'S'
       JOIN pg_namespace sn ON sn.oid = s.relnamespace
       JOIN pg_depend dep ON dep.refobjid = s.oid AND dep.classid = 'pg_attrdef'::regclass
       JOIN pg_attrdef ad ON ad.oid = dep.objid AND ad.adrelid = $2
       JOIN pg_attribute ta ON ta.attrelid = ad.adrelid AND ta.attnum = ad.adnum
      WHERE own.classid = 'pg_class'::regclass AND own.refobjid = $1 AND own.deptype = 'a'`,
    [fromOid, toOid],
  );
  const moved: string[] = [];
  for (const r of rows) {
    let seq: TableRef = { schema: r.schema, name: r.name };
    if (seq.schema !== to.schema) {
      // PostgreSQL moves an owned sequence only with its table: released first, owned again below.
      await client.query(`ALTER SEQUENCE ${qualified(seq)} OWNED BY NONE`);
      await client.query(`ALTER SEQUENCE ${qualified(seq)} SET SCHEMA ${quoteIdent(to.schema)}`);
      seq = { schema: to.schema, name: r.name };
    }
    await client.query(`ALTER SEQUENCE ${qualified(seq)} OWNED BY ${qualified(to)}.${quoteIdent(r.col)}`);
    moved.push(displayName(seq));
  }
  return moved;
}

/** Every sequence owned by a column of `t` (serial or identity) moved past the column's max, never backwards. */
export async function advanceOwnedSequences(client: pg.Client, t: TableRef, oid: number): Promise<void> {
  const { rows } = await client.query<{ col: string; seq: string }>(
    `SELECT a.attname AS col, pg_get_serial_sequence($2, a.attname) AS seq FROM pg_attribute a
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND pg_get_serial_sequence($2, a.attname) IS NOT NULL`,
    [oid, qualified(t)],
  );
  for (const r of rows) {
    await client.query(
      `SELECT setval(${quoteLiteral(r.seq)}, m) FROM (SELECT max(${quoteIdent(r.col)})::bigint AS m FROM ${qualified(t)}) x
        WHERE m IS NOT NULL AND m > (SELECT last_value FROM ${r.seq})`,
    );
  }
}

/**
 * Run `fn` while table `oid` stands at `at`, then move it back to `home`. `cutover.compatView` needs this: the
 * definitions captured from the old table name the live name, so the new table visits the live name while they
 * are recreated, then takes its own name back (what was recreated follows it by OID). Indexes and owned
 * sequences travel with a table across schemas; any whose name is taken in `at`'s schema (the old table's
 * `<name>_pkey`, typically) is renamed for the visit and named back afterwards.
 */
export async function whileAt<T>(client: pg.Client, oid: number, home: TableRef, at: TableRef, fn: () => Promise<T>): Promise<T> {
  const { rows: clashes } = await client.query<{ oid: number; name: string; kind: string }>(
    `SELECT c.oid::int8::float8 AS oid, c.relname AS name, c.relkind AS kind FROM pg_class c
      WHERE c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = $1)
        AND (c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1)
             OR (c.relkind = 'S' AND c.oid IN (SELECT objid FROM pg_depend WHERE classid = 'pg_class'::regclass AND refobjid = $1 AND deptype IN ('a', 'i'))))
        AND EXISTS (SELECT 1 FROM pg_class o JOIN pg_namespace n ON n.oid = o.relnamespace WHERE n.nspname = $2 AND o.relname = c.relname)`,
    [oid, at.schema],
  );
  const kindOf = (k: string) => (k === 'S' ? 'SEQUENCE' : 'INDEX');
  for (const c of clashes) {
    const now = (await relationName(client, c.oid))!;
    await client.query(`ALTER ${kindOf(c.kind)} ${qualified(now)} RENAME TO ${quoteIdent(nameWithSuffix(c.name, `_safeshift_${c.oid}`))}`);
  }
  await moveTable(client, home, at);
  const result = await fn();
  await moveTable(client, at, home);
  for (const c of clashes) {
    const now = (await relationName(client, c.oid))!;
    await client.query(`ALTER ${kindOf(c.kind)} ${qualified(now)} RENAME TO ${quoteIdent(c.name)}`);
  }
  return result;
}
