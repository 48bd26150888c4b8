/**
 * A partition as the source. Copy, capture and validation work on the partition as on any table (row triggers on a
 * partition fire for rows routed through the parent, a row moving to another partition is a delete here). What is
 * particular is the cutover: the old partition is detached and the new table attached with the same bound, in the
 * cutover transaction, so the parent never routes a row to the retired table. Swap back does the reverse.
 *
 * ATTACH scans the table to prove the bound unless a valid CHECK constraint already implies it: the target gets
 * one (`safeshift_partition_bound`) when it is created empty, and a retired table gets one, validated outside the
 * lock, before a swap back attaches it again. Both are dropped once attached.
 */
import type pg from 'pg';
import { relationName } from './catalog';
import { qualified, quoteIdent, type TableRef } from './sql';

export interface PartitionOf {
  parentOid: number;
  /** `FOR VALUES ...` or `DEFAULT`, as PostgreSQL prints the bound. */
  bound: string;
  /** The implied constraint, for the CHECK that spares ATTACH its scan; null when there is none (a lone default). */
  constraint: string | null;
}

export const BOUND_CHECK = 'safeshift_partition_bound';

/** The parent and bound of table `oid` if it is a partition. */
export async function partitionOf(client: pg.Client, oid: number): Promise<PartitionOf | undefined> {
  const { rows } = await client.query<PartitionOf>(
    `SELECT i.inhparent::int8::float8 AS "parentOid", pg_get_expr(c.relpartbound, c.oid) AS bound,
            pg_get_partition_constraintdef(c.oid) AS constraint
       FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE c.oid = $1 AND c.relispartition`, [oid]);
  return rows[0] ? { ...rows[0], parentOid: Number(rows[0].parentOid) } : undefined;
}

async function parentOf(client: pg.Client, p: PartitionOf): Promise<TableRef> {
  const parent = await relationName(client, p.parentOid);
  if (!parent) throw new Error(`the partitioned table (OID ${p.parentOid}) no longer exists`);
  return parent;
}

/** The CHECK that implies the bound, added valid (the table is empty, or it is validated outside the lock after). */
export async function addBoundCheck(client: pg.Client, at: TableRef, p: PartitionOf, how: 'valid' | 'not valid' = 'valid'): Promise<void> {
  if (p.constraint === null) return;
  const { rows } = await client.query(`SELECT 1 FROM pg_constraint WHERE conrelid = $1::regclass AND conname = $2`, [qualified(at), BOUND_CHECK]);
  if (rows.length === 0) {
    await client.query(`ALTER TABLE ${qualified(at)} ADD CONSTRAINT ${quoteIdent(BOUND_CHECK)} CHECK (${p.constraint})${how === 'not valid' ? ' NOT VALID' : ''}`);
  }
}

export async function validateBoundCheck(client: pg.Client, at: TableRef, p: PartitionOf): Promise<void> {
  if (p.constraint !== null) await client.query(`ALTER TABLE ${qualified(at)} VALIDATE CONSTRAINT ${quoteIdent(BOUND_CHECK)}`);
}

/** Detach `table` from its parent. ACCESS EXCLUSIVE on the parent: callers lock the parent first. */
export async function detachPartition(client: pg.Client, table: TableRef, p: PartitionOf): Promise<string> {
  const statement = `ALTER TABLE ${qualified(await parentOf(client, p))} DETACH PARTITION ${qualified(table)}`;
  await client.query(statement);
  return statement;
}

/** Attach `table` with the bound, then drop the CHECK that spared the scan (the partition constraint holds now). */
export async function attachPartition(client: pg.Client, table: TableRef, p: PartitionOf): Promise<string> {
  const statement = `ALTER TABLE ${qualified(await parentOf(client, p))} ATTACH PARTITION ${qualified(table)} ${p.bound}`;
  await client.query(statement);
  await client.query(`ALTER TABLE ${qualified(table)} DROP CONSTRAINT IF EXISTS ${quoteIdent(BOUND_CHECK)}`);
  return statement;
}

/** ACCESS EXCLUSIVE on the parent, taken before its partitions: writers through the parent lock it first too. */
export async function lockParent(client: pg.Client, p: PartitionOf): Promise<void> {
  await client.query(`LOCK TABLE ${qualified(await parentOf(client, p))} IN ACCESS EXCLUSIVE MODE`);
}
