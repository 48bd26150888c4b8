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
import { captureBoundObjects, moveBoundObjects, type MoveOptions } from './bound-objects';
import { relationName, tableOid } from './catalog';
import { moveTable } from './swap';
import { displayName, nameWithSuffix, qualified, quoteIdent, type TableRef } from './sql';

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

/** A partition of a partitioned table, as the whole-table migration sees it. */
export interface ChildPartition {
  ref: TableRef;
  bound: string;
  /** Itself partitioned (a second level): not supported yet. */
  partitioned: boolean;
}

/** The direct partitions of `parentOid`, in name order. */
export async function childPartitions(client: pg.Client, parentOid: number): Promise<ChildPartition[]> {
  const { rows } = await client.query<{ schema: string; name: string; bound: string; partitioned: boolean }>(
    `SELECT n.nspname AS schema, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound, c.relkind = 'p' AS partitioned
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE i.inhparent = $1 ORDER BY n.nspname, c.relname`, [parentOid]);
  return rows.map((r) => ({ ref: { schema: r.schema, name: r.name }, bound: r.bound, partitioned: r.partitioned }));
}

/**
 * A partition of the source and the partition of the new table with the same bound: at cutover the new one takes
 * the old one's name (applications and grants may name partitions) and the old one retires under `retired`.
 */
export interface PartitionPair {
  source: TableRef;
  target: TableRef;
  retired: TableRef;
}

/**
 * The default target for a partitioned source: LIKE the parent (columns, defaults, identity, constraints, its
 * partitioned indexes), partitioned by the same key, with one partition per source partition, same bound, in the
 * source partition's schema, named `<partition>_new_<stamp>` until cutover. Key and bounds are PostgreSQL's own
 * printing of the catalog.
 */
export async function defaultPartitionedDdl(client: pg.Client, source: TableRef, sourceOid: number, target: TableRef, stamp: string): Promise<string> {
  const { rows } = await client.query<{ key: string }>(`SELECT pg_get_partkeydef($1) AS key`, [sourceOid]);
  const statements = [`CREATE TABLE ${qualified(target)} (LIKE ${qualified(source)} INCLUDING ALL) PARTITION BY ${rows[0]!.key}`];
  for (const p of await childPartitions(client, sourceOid)) {
    statements.push(`CREATE TABLE ${qualified(newPartitionName(p.ref, stamp))} PARTITION OF ${qualified(target)} ${p.bound}`);
  }
  return statements.join(';\n');
}

export function newPartitionName(p: TableRef, stamp: string): TableRef {
  return { schema: p.schema, name: nameWithSuffix(p.name, `_new_${stamp}`) };
}

/** Source and target partitions paired by equal bounds; the rest are returned as unpaired, for the gate. */
export function pairPartitions(source: ChildPartition[], target: ChildPartition[], stamp: string): { pairs: PartitionPair[]; unpaired: string[] } {
  const pairs: PartitionPair[] = [];
  const unpaired: string[] = [];
  for (const s of source) {
    const t = target.find((x) => x.bound === s.bound);
    if (t) pairs.push({ source: s.ref, target: t.ref, retired: { schema: s.ref.schema, name: nameWithSuffix(s.ref.name, `_retired_${stamp}`) } });
    else unpaired.push(`partition ${displayName(s.ref)} (${s.bound}) has no partition with that bound in the new table: it retires with the old table`);
  }
  for (const t of target) {
    if (!source.some((s) => s.bound === t.bound)) unpaired.push(`partition ${displayName(t.ref)} (${t.bound}) of the new table keeps its name`);
  }
  return { pairs, unpaired };
}

/**
 * Cutover, under its lock, after the parents were swapped: each source partition retires and its new counterpart
 * takes its name and what is bound to the partition itself (grants, policies, its own triggers, comments).
 * 'back' reverses it for a swap back. Objects that would not move come back as problems (the caller refuses).
 */
export async function swapPartitions(
  client: pg.Client, pairs: PartitionPair[], direction: 'forward' | 'back', options: MoveOptions = {},
): Promise<{ statements: string[]; problems: string[] }> {
  const statements: string[] = [];
  const problems: string[] = [];
  for (const p of pairs) {
    // Forward: the source partition leaves the name to the new one. Back: the new one leaves it to the retired one.
    const [outgoing, outgoingTo, incoming] = direction === 'forward' ? [p.source, p.retired, p.target] : [p.source, p.target, p.retired];
    const outOid = await tableOid(client, outgoing);
    const inOid = await tableOid(client, incoming);
    if (outOid === undefined || inOid === undefined) {
      problems.push(`partition ${displayName(p.source)}: ${displayName(outOid === undefined ? outgoing : incoming)} no longer exists`);
      continue;
    }
    const captured = await captureBoundObjects(client, outOid, outgoing);
    await moveTable(client, outgoing, outgoingTo);
    await moveTable(client, incoming, p.source);
    const moved = await moveBoundObjects(client, captured, outOid, { ref: p.source, oid: inOid }, options);
    statements.push(...moved.statements);
    problems.push(...moved.problems.map((x) => `partition ${displayName(p.source)}: ${x}`));
  }
  return { statements, problems };
}

/**
 * Table inheritance (INHERITS, not partitioning), either way round: reading a parent includes its children's rows
 * (a copy would carry them into the new table), and a retired child takes its rows out of every read of the parent.
 */
export async function inheritanceProblems(client: pg.Client, oid: number): Promise<string[]> {
  const { rows } = await client.query<{ parent: string; pschema: string; child: string; cschema: string }>(
    `SELECT pn.nspname AS pschema, p.relname AS parent, cn.nspname AS cschema, c.relname AS child
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
       JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
      WHERE (i.inhrelid = $1 OR i.inhparent = $1) AND NOT c.relispartition ORDER BY 3, 4`, [oid]);
  return rows.map((r) => `source: ${displayName({ schema: r.cschema, name: r.child })} inherits from ${displayName({ schema: r.pschema, name: r.parent })} ` +
    '(table inheritance): a parent\'s reads include its children\'s rows, so neither can be migrated on its own; only declarative partitions are supported');
}
