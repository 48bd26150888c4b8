/**
 * The in-place path's activities (plan field `alter:`, workflows/in-place.ts): preflight, the reversible part of
 * each op at cutover, its inverse on rollback, the irreversible part after the drop gate. Every ALTER runs in a
 * short transaction of its own with lock_timeout and retries (underLock); CREATE / DROP INDEX CONCURRENTLY run
 * outside any transaction, and an invalid index a failed build leaves is dropped. Each step first looks at the
 * catalog, so a retried activity (the reply lost, the worker killed) never applies or reverts a step twice.
 * The table is found by its OID: it may be under its old or its new name.
 */
import type pg from 'pg';
import { Context } from '@temporalio/activity';
import type { Plan } from '../src/plan/schema';
import { notNullCheckName, stepsOf, type ResolvedOp } from '../src/in-place';
import { relationName } from '../src/catalog';
import { BULK_LIMITS, pgErrorCode } from '../src/db';
import { fatal } from '../src/errors';
import { displayName, nameWithSuffix, qualified, quoteIdent, type TableRef } from '../src/sql';
import { sealTable } from '../src/seal';
import { errorText } from '../src/redact';
import { inspectInPlace, relfilenodeOf, type InPlaceReport } from './in-place-check';
import { PlanCheckFailed } from './preflight';
import { heartbeating, underLock, withDatabase, type MigrationRef } from './support';

export type { InPlaceReport } from './in-place-check';

export async function preflightInPlace(input: { db: string; plan: Plan; stamp: string }): Promise<InPlaceReport> {
  return withDatabase(input, async (client) => {
    try {
      return await inspectInPlace(client, input.plan, input.stamp);
    } catch (err) {
      if (err instanceof PlanCheckFailed) throw fatal('BadPlan', err.message, { problems: err.problems });
      throw err;
    }
  });
}

export interface InPlaceInput extends MigrationRef {
  sourceOid: number;
  ops: ResolvedOp[];
  stamp: string;
  lockTimeoutMs: number;
  attempts: number;
}

export interface InPlaceResult {
  /** What was done, one line per step run (steps found done already are left out). */
  steps: string[];
  relfilenode: string;
  /** Where the table is now. */
  table: string;
  notes: string[];
}

interface Live {
  name: TableRef;
  columns: Map<string, { notNull: boolean }>;
  constraints: Map<string, { validated: boolean }>;
}

async function live(client: pg.Client, oid: number): Promise<Live> {
  const name = await relationName(client, oid);
  if (!name) throw fatal('SourceMissing', `the table (oid ${oid}) no longer exists`);
  const cols = await client.query<{ n: string; nn: boolean }>(`SELECT attname AS n, attnotnull AS nn FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, [oid]);
  const cons = await client.query<{ n: string; v: boolean }>(`SELECT conname AS n, convalidated AS v FROM pg_constraint WHERE conrelid = $1`, [oid]);
  return { name, columns: new Map(cols.rows.map((r) => [r.n, { notNull: r.nn }])), constraints: new Map(cons.rows.map((r) => [r.n, { validated: r.v }])) };
}

/** The index `name` in the table's schema: whether it is on our table, and valid. */
async function indexState(client: pg.Client, oid: number, schema: string, name: string): Promise<{ ours: boolean; valid: boolean } | undefined> {
  const { rows } = await client.query<{ ours: boolean; valid: boolean }>(
    `SELECT i.indrelid = $1 AS ours, i.indisvalid AS valid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_index i ON i.indexrelid = c.oid WHERE n.nspname = $2 AND c.relname = $3`, [oid, schema, name]);
  return rows[0];
}

function runner(client: pg.Client, input: InPlaceInput, done: string[]) {
  const lock = { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or cutover.attempts' };
  /** One ALTER in a short transaction of its own, with lock_timeout and retries. */
  const ddl = async (sql: string): Promise<void> => {
    await underLock(client, lock, async () => { await client.query(sql); return {}; });
    done.push(sql);
  };
  /** CREATE / DROP INDEX CONCURRENTLY: no transaction; lock_timeout for the session while it runs, retried. */
  const concurrently = async (sql: string, cleanup: () => Promise<void>): Promise<void> => {
    const ctx = Context.current();
    for (let attempt = 1; ; attempt++) {
      try {
        await client.query(`SET lock_timeout = ${Math.trunc(input.lockTimeoutMs)}`);
        await heartbeating(() => client.query(sql));
        await client.query('RESET lock_timeout');
        done.push(sql);
        return;
      } catch (err) {
        await client.query('RESET lock_timeout').catch(() => undefined);
        await cleanup();
        if (pgErrorCode(err) !== '55P03' || attempt >= input.attempts) throw err;
        await ctx.sleep(Math.min(10_000, 100 * 2 ** attempt));
      }
    }
  };
  return { ddl, concurrently };
}

/** At cutover: the reversible part of each op, in the plan's order. */
export async function applyInPlace(input: InPlaceInput): Promise<InPlaceResult> {
  return withDatabase(input, async (client) => {
    const done: string[] = [];
    const { ddl, concurrently } = runner(client, input, done);
    for (const op of input.ops) {
      let t = await live(client, input.sourceOid);
      const steps = stepsOf(op, t.name, input.stamp);
      switch (op.kind) {
        case 'rename_column':
          if (t.columns.has(op.from) && !t.columns.has(op.to)) await ddl(steps.apply[0]!);
          break;
        case 'add_column':
          if (!t.columns.has(op.column)) await ddl(steps.apply[0]!);
          break;
        case 'drop_column':
          if (t.columns.has(op.column) && !t.columns.has(op.hidden!)) await ddl(steps.apply[0]!);
          t = await live(client, input.sourceOid);
          if (op.relaxNotNull && t.columns.get(op.hidden!)?.notNull) await ddl(steps.apply[1]!);
          break;
        case 'rename_table':
          if (t.name.name !== op.to) await ddl(steps.apply[0]!);
          break;
        case 'add_constraint':
          if (!t.constraints.has(op.name)) await ddl(steps.apply[0]!);
          if (op.validate && !(await live(client, input.sourceOid)).constraints.get(op.name)?.validated) await ddl(steps.apply[1]!);
          break;
        case 'validate_constraint':
          if (!t.constraints.get(op.name)?.validated) await ddl(steps.apply[0]!);
          break;
        case 'set_not_null': {
          if (t.columns.get(op.column)?.notNull) break;
          const [add, validate, setNotNull, dropCheck] = steps.apply as [string, string, string, string];
          if (!t.constraints.has(notNullCheckName(op.column, input.stamp))) await ddl(add);
          await ddl(validate);
          await ddl(setNotNull);
          await ddl(dropCheck);
          break;
        }
        case 'create_index': {
          const dropInvalid = () => dropInvalidIndex(client, input, t.name.schema, op.name, done);
          const idx = await indexState(client, input.sourceOid, t.name.schema, op.name);
          if (idx && !idx.ours) throw fatal('NotOurs', `an index ${op.name} on another table took the name in ${t.name.schema}; rename it and retry`);
          if (idx?.valid) break;
          await dropInvalid();
          await concurrently(steps.apply[0]!, dropInvalid);
          break;
        }
      }
    }
    const now = await live(client, input.sourceOid);
    return { steps: done, relfilenode: await relfilenodeOf(client, input.sourceOid), table: displayName(now.name), notes: [] };
  }, BULK_LIMITS);
}

/** An invalid index of ours under `name` (a failed or interrupted CONCURRENTLY build) is dropped. */
async function dropInvalidIndex(client: pg.Client, input: InPlaceInput, schema: string, name: string, done: string[]): Promise<void> {
  const idx = await indexState(client, input.sourceOid, schema, name);
  if (!idx || !idx.ours || idx.valid) return;
  const sql = `DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(schema)}.${quoteIdent(name)}`;
  await client.query(`SET lock_timeout = ${Math.trunc(input.lockTimeoutMs)}`);
  try {
    await client.query(sql);
    done.push(sql);
  } finally {
    await client.query('RESET lock_timeout').catch(() => undefined);
  }
}

/**
 * The rollback: each op's inverse, newest first, for the ops found applied. An added column's values are first
 * kept in a sealed table in safeshift_backup (rows where it is not null, whole), taken under a SHARE lock in the
 * same transaction as the DROP, so no write to it is lost; a dropped column hidden at cutover is renamed back with
 * every value, its NOT NULL given back if no row written meanwhile left it null (else said in the notes).
 */
export async function revertInPlace(input: InPlaceInput): Promise<InPlaceResult> {
  return withDatabase(input, async (client) => {
    const done: string[] = [];
    const notes: string[] = [];
    const { ddl, concurrently } = runner(client, input, done);
    const lock = { timeoutMs: input.lockTimeoutMs, attempts: input.attempts, settings: 'cutover.lockTimeoutMs or cutover.attempts' };
    for (const op of [...input.ops].reverse()) {
      const t = await live(client, input.sourceOid);
      const steps = stepsOf(op, t.name, input.stamp);
      switch (op.kind) {
        case 'rename_column':
          if (t.columns.has(op.to) && !t.columns.has(op.from)) await ddl(steps.revert[0]!);
          break;
        case 'add_column': {
          if (!t.columns.has(op.column)) break;
          const keep = { schema: 'safeshift_backup', name: nameWithSuffix(`${t.name.name}_${op.column}`, `_added_${input.stamp}`) };
          const r = await underLock(client, lock, async () => {
            await client.query(`LOCK TABLE ${qualified(t.name)} IN SHARE MODE`);
            await client.query('CREATE SCHEMA IF NOT EXISTS safeshift_backup');
            await client.query(`DROP TABLE IF EXISTS ${qualified(keep)}`);
            const { rowCount } = await client.query(`CREATE TABLE ${qualified(keep)} AS SELECT * FROM ${qualified(t.name)} WHERE ${quoteIdent(op.column)} IS NOT NULL`);
            const { rows } = await client.query<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [qualified(keep)]);
            await sealTable(client, rows[0]!.oid);
            if (!rowCount) await client.query(`DROP TABLE ${qualified(keep)}`);
            await client.query(steps.revert[0]!);
            return { rows: rowCount ?? 0 };
          });
          done.push(steps.revert[0]!);
          notes.push(r.rows ? `the ${r.rows} rows with a value in ${op.column} are kept in ${displayName(keep)} (whole rows)` : `no row had a value in ${op.column}`);
          break;
        }
        case 'drop_column': {
          if (!t.columns.has(op.hidden!) || t.columns.has(op.column)) break;
          await ddl(steps.revert[0]!);
          if (op.relaxNotNull) notes.push(await restoreNotNull(client, input, ddl, op.column));
          break;
        }
        case 'rename_table':
          if (t.name.name === op.to) await ddl(steps.revert[0]!);
          break;
        case 'add_constraint':
          if (t.constraints.has(op.name)) await ddl(steps.revert[0]!);
          break;
        case 'validate_constraint':
          break;
        case 'set_not_null':
          if (t.constraints.has(notNullCheckName(op.column, input.stamp))) await ddl(steps.revert[0]!);
          if (!op.wasNotNull && t.columns.get(op.column)?.notNull) await ddl(steps.revert[1]!);
          break;
        case 'create_index': {
          const idx = await indexState(client, input.sourceOid, t.name.schema, op.name);
          if (idx?.ours) await concurrently(steps.revert[0]!, async () => undefined);
          break;
        }
      }
    }
    const now = await live(client, input.sourceOid);
    return { steps: done, relfilenode: await relfilenodeOf(client, input.sourceOid), table: displayName(now.name), notes };
  }, BULK_LIMITS);
}

/** NOT NULL back on a column hidden at cutover, through a validated CHECK; left off (and said) if a row is null. */
async function restoreNotNull(client: pg.Client, input: InPlaceInput, ddl: (sql: string) => Promise<void>, column: string): Promise<string> {
  const t = (await live(client, input.sourceOid)).name;
  const check = quoteIdent(notNullCheckName(column, input.stamp));
  await ddl(`ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${check}`);
  await ddl(`ALTER TABLE ${qualified(t)} ADD CONSTRAINT ${check} CHECK (${quoteIdent(column)} IS NOT NULL) NOT VALID`);
  try {
    await ddl(`ALTER TABLE ${qualified(t)} VALIDATE CONSTRAINT ${check}`);
  } catch (err) {
    await ddl(`ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${check}`);
    if (pgErrorCode(err) !== '23514') throw err;
    return `${column} is back with every value, but rows inserted after cutover have no value in it, so it stays nullable: fill them, then SET NOT NULL (${errorText(err)})`;
  }
  await ddl(`ALTER TABLE ${qualified(t)} ALTER COLUMN ${quoteIdent(column)} SET NOT NULL`);
  await ddl(`ALTER TABLE ${qualified(t)} DROP CONSTRAINT IF EXISTS ${check}`);
  return `${column} is back with every value and NOT NULL again`;
}

/** After the drop gate: the irreversible part (a dropped column's real DROP COLUMN). */
export async function finishInPlace(input: InPlaceInput): Promise<InPlaceResult> {
  return withDatabase(input, async (client) => {
    const done: string[] = [];
    const { ddl } = runner(client, input, done);
    for (const op of input.ops) {
      const t = await live(client, input.sourceOid);
      if (op.kind === 'drop_column' && t.columns.has(op.hidden!)) await ddl(stepsOf(op, t.name, input.stamp).finish[0]!);
    }
    const now = await live(client, input.sourceOid);
    return { steps: done, relfilenode: await relfilenodeOf(client, input.sourceOid), table: displayName(now.name), notes: [] };
  }, BULK_LIMITS);
}
