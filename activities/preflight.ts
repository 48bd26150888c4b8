/**
 * Phase 1, preflight: check the plan against the live database and refuse, with the object named, anything the
 * later phases could not finish safely. Read-only: the target DDL is tried inside a transaction that is always
 * rolled back. No compensation: nothing is changed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Plan } from '../src/plan/schema';
import { captureBoundObjects, describeBoundObjects, moveToNewTable } from '../src/bound-objects';
import { accessControl, columnTypes, estimatedRowCount, tableInfo, tableOid, typesWithoutBinaryIo, type TableInfo } from '../src/catalog';
import { accessAs, keepsOwnName, moveTable, newTableHome, renamesAway, setLockTimeout, whileAt } from '../src/swap';
import { fatal } from '../src/errors';
import { errorText } from '../src/redact';
import { pgErrorCode } from '../src/db';
import { exportKey } from '../src/export';
import { BACKUP_KEY_ENV } from '../src/messages';
import { columnRenames, type CompatColumn, type CopySpec, type MappedColumn } from '../src/projection';
import { adoptNames, namesNotCarried } from '../src/names';
import { keyWidening } from '../src/key-widening';
import { compatReaderWarning, riskWarning, rollbackRisks, type ReverseColumn, type RollbackRisk } from '../src/rollback-feasibility';
import { displayName, nameWithSuffix, quoteIdent, type TableRef } from '../src/sql';
import { addForeignKeys, describeForeignKeys, outboundForeignKeys, type OutboundForeignKey } from '../src/foreign-keys';
import { checkConstraints } from '../src/constraints';
import {
  attachPartition, childPartitions, defaultPartitionedDdl, detachPartition, inheritanceProblems, pairPartitions, partitionOf, swapPartitions,
  type ChildPartition, type PartitionOf, type PartitionPair,
} from '../src/partition';
import { createLikeSql, relationOids, relationsCreatedBesides, targetDdlProblems } from '../src/target-ddl';
import { catalogChanges, takeCatalogSnapshot } from '../src/catalog-snapshot';
import { checkMappedExpressions, codeUses, ddlCallProblems, targetCodeProblems } from '../src/target-code';
import { rowFilterProblems } from '../src/row-filter';
import { splitNote, withSplitSource } from '../src/split-view';
import { planCodeProblems } from '../src/plan/load';
import { pathNote } from '../src/in-place';
import { sealTree } from '../src/seal';
import { accessDifferences, readAccess } from '../src/access-matrix';
import { compatViewRights } from '../src/bound/compat-view';
import { throttleProblems } from '../src/throttle';
import { copyConnectionProblems } from './copy';
import { withDatabase } from './support';

export interface PreflightReport {
  sourceOid: number;
  spec: CopySpec;
  /** Why the copy runs in `spec.format`, for status and the audit trail. */
  copyFormatReason: string;
  rowsEstimate: number;
  sourceBytes: number;
  /** Name the source gets at cutover (same schema), free at preflight time. */
  retired: TableRef;
  /** Backup table in `safeshift_backup`, free at preflight time. */
  backup: TableRef;
  /** Not errors, but what an approver should know: what the cutover will move to the new table. */
  warnings: string[];
  /**
   * How writes made after cutover flow back into the retired table on rollback: the inverse of the mapping
   * (source = the live name, which is then the new table; target = the retired table), and the source columns
   * it cannot give back (their values stay as they were for updated rows; new rows get defaults). `risks`: the
   * columns whose values a rollback can fail on or change (narrower type, lossy cast, NOT NULL, expression).
   */
  reverse: { spec: CopySpec; notInvertible: string[]; risks: RollbackRisk[] };
  /** Foreign keys the new table gets at cutover (NOT VALID, validated after the commit); kept off the target until then. */
  foreignKeys: OutboundForeignKey[];
  /** The source is a partition: the new table takes its place in the partitioned table at cutover. */
  partition: PartitionOf | null;
  /** The source is partitioned: its partitions whose names the new table's partitions take at cutover. */
  partitions: PartitionPair[];
  /** The DDL that makes the target: the plan's, or made like the source (partitioned like it, when it is). */
  createSql: string;
  /** `cutover.compatView`: the columns of the view that takes the old name; null without one. */
  compatView: CompatColumn[] | null;
  snapshot: {
    columns: { name: string; type: string; notNull: boolean }[];
    primaryKey: string[];
    rls: boolean;
    policies: string[];
    grants: string[];
    triggers: string[];
  };
}

export class PlanCheckFailed extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
  }
}

/**
 * The checks, collecting every problem rather than stopping at the first, so `plan validate` can list them all.
 * `stamp` (yyyymmddhhmmss) makes the retired and backup names unique per run. `rehearse: false` (`plan validate`)
 * leaves out the cutover rehearsal, the one part that takes locks stronger than ACCESS SHARE on existing tables,
 * and waits for no lock longer than VALIDATE_LOCK_TIMEOUT_MS: validating never queues the application.
 */
export async function inspectPlan(client: pg.Client, plan: Plan, stamp: string, options: { rehearse?: boolean } = {}): Promise<PreflightReport> {
  // A split after the first: the plan's source is the split view; its rows to split are in the shared table behind it.
  plan = await withSplitSource(client, plan);
  const problems: string[] = [];
  const source = await tableInfo(client, plan.source);
  if (!source) throw new PlanCheckFailed([`source: table ${displayName(plan.source)} does not exist`]);
  if (source.kind !== 'r' && source.kind !== 'p') {
    throw new PlanCheckFailed([`source: ${displayName(plan.source)} is not a plain table (relkind ${source.kind}); views and other relations are not supported`]);
  }
  problems.push(...(await inheritanceProblems(client, source.oid)));
  // A partition: its new table takes its place in the tree at cutover (src/partition.ts).
  const partition = (await partitionOf(client, source.oid)) ?? null;
  if (partition && plan.cutover.compatView) problems.push(`cutover.compatView: ${displayName(plan.source)} is a partition; a view cannot take its place in the partitioned table (use false)`);
  const sourcePartitions = source.kind === 'p' ? await childPartitions(client, source.oid) : [];
  for (const p of sourcePartitions.filter((x) => x.partitioned)) {
    problems.push(`source: partition ${displayName(p.ref)} of ${displayName(plan.source)} is itself partitioned; more than one level of partitions is not supported yet`);
  }
  if (source.kind === 'p' && plan.cutover.compatView) problems.push(`cutover.compatView: not supported yet for a partitioned table (use false)`);
  if ((partition || source.kind === 'p') && renamesAway(plan.cutover)) problems.push(`cutover.newTableName: target is not supported yet for a partition or a partitioned table (use source)`);
  // Neither create nor createFile: the target is made like the source (and partitioned like it, with its partitions).
  const createSql = plan.createSql
    ?? (source.kind === 'p' ? await defaultPartitionedDdl(client, plan.source, source.oid, plan.target, stamp) : createLikeSql(plan.source, plan.target));
  if (await tableOid(client, plan.target)) {
    problems.push(`target: ${displayName(plan.target)} already exists; safeshift creates the target itself and never writes into an existing table`);
  }
  if (plan.backup.export?.encrypt) {
    try {
      exportKey(BACKUP_KEY_ENV);
    } catch (err) {
      problems.push(`backup.export.encrypt: ${(err as Error).message} (on the worker)`);
    }
  }

  const owner = await client.query<{ ok: boolean; create_ok: boolean }>(
    `SELECT pg_has_role(current_user, $1::text, 'USAGE') AS ok,
            has_schema_privilege(current_user, $2::text, 'CREATE') AS create_ok`,
    [source.owner, plan.target.schema],
  ).catch(() => undefined);
  if (owner && !owner.rows[0]?.ok) {
    problems.push(`source: the connecting role must own ${displayName(plan.source)} (owner: ${source.owner}) to rename it at cutover`);
  }
  if (owner && !owner.rows[0]?.create_ok) {
    problems.push(`target: the connecting role cannot CREATE in schema ${plan.target.schema} (or it does not exist)`);
  }

  const key = resolveKey(plan, source, problems);
  const ddlField = plan.createFile ? 'createFile' : 'create';
  if (plan.createSql) problems.push(...(await targetDdlProblems(plan.createSql, ddlField, plan.target)));
  problems.push(...(await planCodeProblems({ ...plan, createSql: undefined })));
  problems.push(...(await copyConnectionProblems(client, plan.copy.parallel)));
  problems.push(...(await throttleProblems(client, { maxReplicationLagMs: plan.copy.maxReplicationLag, throttleQuery: plan.copy.throttleQuery })));
  if (plan.cutover.compatView) {
    const { rows } = await client.query<{ v: number }>(`SELECT current_setting('server_version_num')::int AS v`);
    if (rows[0]!.v < 150000) problems.push('cutover.compatView: needs PostgreSQL 15 or later (security_invoker views); use false');
  }

  const retired = { schema: plan.source.schema, name: nameWithSuffix(plan.source.name, `_retired_${stamp}`) };
  const backup = { schema: 'safeshift_backup', name: nameWithSuffix(`${plan.source.schema}_${plan.source.name}`, `_${stamp}`) };
  if (await tableOid(client, retired)) problems.push(`cutover: the retired name ${displayName(retired)} is taken`);
  if (await tableOid(client, backup)) problems.push(`backup: the backup name ${displayName(backup)} is taken`);

  let columns: MappedColumn[] = [];
  let reverse: { columns: MappedColumn[]; notInvertible: string[]; key?: CopySpec['key'] } = { columns: [], notInvertible: [] };
  let compatView: CompatColumn[] | null = null;
  let textOnly: string[] = [];
  let risks: RollbackRisk[] = [];
  let readerRisks: RollbackRisk[] = [];
  let foreignKeys: OutboundForeignKey[] = [];
  const moves: string[] = [];
  let partitions: PartitionPair[] = [];
  let constraintNotes: string[] = [];
  if (problems.length === 0) {
    ({ columns, reverse, compatView, textOnly, risks, readerRisks, foreignKeys, partitions, constraintNotes } =
      await tryTargetDdl(client, plan, source, key, { createSql, partition, sourcePartitions, stamp, rehearse: options.rehearse ?? true }, problems, moves));
  }
  if (problems.length) throw new PlanCheckFailed(problems);

  const acl = await accessControl(client, source.oid);
  // First: which path the plan takes and why (src/in-place.ts); the in-place path has a preflight of its own.
  const warnings = [pathNote(plan), ...moves.map((m) => `at cutover: ${m}`)];
  warnings.push(...constraintNotes);
  if (reverse.notInvertible.length) {
    const strict = reverse.notInvertible.filter((n) => { const c = source.columns.find((x) => x.name === n)!; return c.notNull && !c.hasDefault && !c.identity; });
    warnings.push(`rollback after cutover: source columns ${reverse.notInvertible.join(', ')} cannot be derived from the new table (give them under reverse:); ` +
      'rows updated after cutover keep their old values there, rows inserted after cutover get defaults' +
      (strict.length ? `; ${strict.join(', ')} ${strict.length > 1 ? 'are' : 'is'} NOT NULL without a default, so a rollback after rows were inserted would fail` : ''));
  }
  warnings.push(...risks.map(riskWarning), ...readerRisks.map((r) => compatReaderWarning(r, displayName(plan.source))));
  if (plan.where !== undefined) warnings.push(splitNote(plan));
  else if (!plan.cutover.compatView) warnings.push(newTableNameWarning(plan)); // the compatibility view's own line says it
  if (compatView) {
    const readOnly = compatView.filter((c) => !c.plain).map((c) => c.name);
    const [flags] = (await client.query<{ enabled: boolean; forced: boolean }>(
      `SELECT relrowsecurity AS enabled, relforcerowsecurity AS forced FROM pg_class WHERE oid = $1`, [source.oid])).rows;
    const rights = compatViewRights({ rowSecurity: flags! }) === 'invoker'
      ? 'security_invoker: the reader\'s rights and the new table\'s policies apply'
      : 'with its owner\'s rights, as the table has no row-level security: the view\'s grants, the old table\'s, decide column by column';
    warnings.push(`at cutover: ${displayName(plan.target)} keeps its name and ${displayName(plan.source)} becomes a view over it with the old columns ` +
      `(${rights}); it stays after the drop until you drop it` +
      (readOnly.length ? `; read-only through the view (derived, not a column of the same type): ${readOnly.join(', ')}` : ''));
  }
  const size = await client.query<{ bytes: string }>(`SELECT pg_total_relation_size($1::oid)::text AS bytes`, [source.oid]);
  const copy: { format: 'text' | 'binary'; reason: string } = plan.copy.format === 'text' ? { format: 'text', reason: 'copy.format: text in the plan' }
    : textOnly.length ? { format: 'text', reason: `no binary I/O for ${textOnly.join(', ')}` }
    : { format: 'binary', reason: 'every column type has binary I/O' };

  return {
    sourceOid: source.oid,
    spec: { source: plan.source, target: plan.target, columns, key, format: copy.format, ...(plan.where === undefined ? {} : { where: plan.where }) },
    copyFormatReason: copy.reason,
    rowsEstimate: await estimatedRowCount(client, plan.source, source.oid),
    sourceBytes: Number(size.rows[0]!.bytes),
    retired,
    backup,
    warnings,
    // Reverse replay reads the new table where it lives after cutover: the live name, or its own with a compat view.
    // Its key values are the new table's (a widened key: the wider type), so they are cast to that type when read.
    reverse: { spec: { source: newTableHome(plan, keepsOwnName(plan.cutover)), target: retired, columns: reverse.columns, key: reverse.key ?? key }, notInvertible: reverse.notInvertible, risks },
    compatView,
    foreignKeys,
    partition,
    partitions,
    createSql,
    snapshot: {
      columns: source.columns.map((c) => ({ name: c.name, type: c.type, notNull: c.notNull })),
      primaryKey: source.primaryKey,
      ...acl,
    },
  };
}

/** A mapping expression that is just the column `name` (quoted, or written plainly), not an expression over it. */
function isColumn(expr: string, name: string): boolean {
  return expr === quoteIdent(name) || expr.trim() === name;
}

function resolveKey(plan: Plan, source: TableInfo, problems: string[]): CopySpec['key'] {
  const names = plan.key ?? (source.primaryKey.length ? source.primaryKey : source.uniqueNotNullKeys[0]);
  if (!names) {
    problems.push(`key: ${displayName(plan.source)} has no primary key and no unique index on NOT NULL columns; add a primary key (or such an index) and name it under key:`);
    return [];
  }
  const key: CopySpec['key'] = [];
  for (const name of names) {
    const col = source.columns.find((c) => c.name === name);
    if (!col) problems.push(`key: column ${name} does not exist in ${displayName(plan.source)}`);
    else key.push({ name, type: col.type });
  }
  if (plan.key && key.length === names.length && !source.uniqueNotNullKeys.some((k) => sameSet(k, names))) {
    problems.push(`key: (${names.join(', ')}) is not backed by a unique index on NOT NULL columns of ${displayName(plan.source)}`);
  }
  return key;
}

function sameSet(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * Run the target DDL in a transaction that is always rolled back, then check the mapping against the table it
 * made: every mapped column exists, every expression compiles over the source and casts to the target type,
 * the key is carried unchanged or losslessly widened (src/key-widening.ts).
 */
type Mappings = {
  columns: MappedColumn[];
  /** `key`: the key as the new table has it (a widened key's wider type), for replay back into the source. */
  reverse: { columns: MappedColumn[]; notInvertible: string[]; key?: CopySpec['key'] };
  compatView: CompatColumn[] | null;
  /** Target column types without binary I/O (the copy then uses text). */
  textOnly: string[];
  /** Inverse-mapping columns a rollback can fail on or change. */
  risks: RollbackRisk[];
  /** The same for readers of the compatibility view (empty without one). */
  readerRisks: RollbackRisk[];
  /** Foreign keys the new table gets at cutover: the source's (default target) or the plan DDL's. */
  foreignKeys: OutboundForeignKey[];
  /** A partitioned source: its partitions and the new table's with the same bounds, which take their names. */
  partitions: PartitionPair[];
  /** For the gate: what the target keeps of the source's constraints, drops on purpose, adds (src/constraints.ts). */
  constraintNotes: string[];
};

/** What the target is made from and where it will stand: the DDL to run, and the source's place among partitions. */
interface TargetShape {
  createSql: string;
  /** The source is a partition. */
  partition: PartitionOf | null;
  /** The source is partitioned: its partitions. */
  sourcePartitions: ChildPartition[];
  stamp: string;
  /** Rehearse the cutover (at start); without it (validate) only describe what it would move. */
  rehearse: boolean;
}

async function tryTargetDdl(
  client: pg.Client, plan: Plan, source: TableInfo, key: CopySpec['key'], shape: TargetShape, problems: string[], moves: string[],
): Promise<Mappings> {
  const { partition } = shape;
  const none: Mappings = { columns: [], reverse: { columns: [], notInvertible: [] }, compatView: null, textOnly: [], risks: [], readerRisks: [], foreignKeys: [], partitions: [], constraintNotes: [] };
  // One snapshot for the whole transaction: the catalog before and after the DDL differ only by what this
  // transaction did, not by DDL other sessions commit meanwhile (other migrations of a fleet in the same database).
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  try {
    // Validate: a lock the DDL needs on an existing table (a foreign key's SHARE ROW EXCLUSIVE) is asked for
    // briefly, never queued for: writers of that table would wait behind the request.
    if (!shape.rehearse) await setLockTimeout(client, VALIDATE_LOCK_TIMEOUT_MS);
    const existed = await relationOids(client);
    const catalogBefore = await takeCatalogSnapshot(client);
    // What the target's defaults, CHECKs and indexes call (src/target-code.ts): by name before the DDL runs (running it can evaluate them), from pg_depend after.
    const codeField = plan.createFile ? 'createFile' : plan.createSql ? 'create' : 'target';
    const sourceUses = await codeUses(client, source.oid);
    const calls = await ddlCallProblems(client, shape.createSql, codeField, sourceUses, plan.allowFunctions ?? []);
    if (calls.length) {
      problems.push(...calls);
      return none;
    }
    try {
      await client.query(shape.createSql);
    } catch (err) {
      problems.push(`${plan.createFile ? 'createFile' : 'create'}: the target DDL fails: ${(err as Error).message}` +
        (pgErrorCode(err) === '55P03' ? ` (a table it references is busy; validate waits ${VALIDATE_LOCK_TIMEOUT_MS} ms at most, start tries again)` : ''));
      return none;
    }
    const target = await tableInfo(client, plan.target);
    if (!target) {
      problems.push(`${plan.createFile ? 'createFile' : 'create'}: the DDL ran but did not create ${displayName(plan.target)}`);
      return none;
    }
    await sealTree(client, target.oid); // as createTarget does
    problems.push(...(await targetCodeProblems(client, target.oid, sourceUses, plan.allowFunctions ?? [], codeField)));
    for (const other of await relationsCreatedBesides(client, target.oid, existed)) {
      problems.push(`${plan.createFile ? 'createFile' : 'create'}: the DDL also creates ${other}; only the target and what belongs to it may be created`);
    }
    const columns: MappedColumn[] = [];
    for (const [name] of Object.entries(plan.columns)) {
      const col = target.columns.find((c) => c.name === name);
      if (!col) problems.push(`columns.${name}: ${displayName(plan.target)} has no column ${name}`);
      else if (col.generated) problems.push(`columns.${name}: is a generated column of the target; it is computed, not copied`);
    }
    for (const col of target.columns) {
      if (col.generated) continue;
      const expr = (Object.hasOwn(plan.columns, col.name) ? plan.columns[col.name] : undefined) ?? (source.columns.some((s) => s.name === col.name && !s.generated) ? quoteIdent(col.name) : undefined);
      if (expr === undefined) {
        if (col.notNull && !col.hasDefault && !col.identity) {
          problems.push(`columns.${col.name}: target column is NOT NULL without a default and the source has no column of that name; map it`);
        }
        continue;
      }
      columns.push({ target: col.name, expr, type: col.type, copyType: col.baseType });
    }
    const reverseKey = new Map<string, string>();
    for (const k of key) {
      const mapped = columns.find((c) => c.target === k.name);
      if (!mapped || !isColumn(mapped.expr, k.name)) {
        // Chunks and replay find a row by the same key value on both sides: a key computed by an expression (or
        // renamed) has no such value in the source to cut ranges by.
        problems.push(`key: key column ${k.name} must be copied unchanged into a target column of the same name (a key computed by an expression or renamed is not supported: ` +
          'chunks and replay find each row by the same key value on both sides)');
      } else {
        mapped.expr = quoteIdent(k.name);
        const tcol = target.columns.find((c) => c.name === k.name)!;
        const scol = source.columns.find((c) => c.name === k.name)!;
        const widening = keyWidening(k.type, tcol.type); // src/key-widening.ts: why only these
        if (widening.kind === 'refused') problems.push(`key: key column ${k.name} is ${k.type} in the source but ${tcol.type} in the target: ${widening.reason}`);
        // Chunk ranges are cut in the source's order and deleted in the target's: the orders must be the same.
        else if (tcol.collation !== scol.collation) problems.push(`key: key column ${k.name} has collation "${scol.collation}" in the source but "${tcol.collation}" in the target`);
        else if (widening.kind === 'widening') reverseKey.set(k.name, tcol.type);
      }
    }
    await checkMappedExpressions(client, columns, plan.source, 'columns', problems, plan.allowFunctions ?? []);
    problems.push(...(await rowFilterProblems(client, plan, source.oid, target.oid)));
    if (columns.length === 0) problems.push(`columns: nothing would be copied into ${displayName(plan.target)}`);
    const reverse = inverseMapping(plan, source, columns, problems);
    await checkMappedExpressions(client, reverse.columns, plan.target, 'reverse', problems, plan.allowFunctions ?? []);
    const compatView = plan.cutover.compatView ? compatViewColumns(source, target, reverse.columns, problems) : null;
    // The default target (LIKE) has no foreign keys: it gets the source's. A DDL target gets its own.
    const foreignKeys = await outboundForeignKeys(client, plan.createSql ? target.oid : source.oid);
    const partitions = await partitionPairs(client, target, shape, problems, moves);
    // A split swaps nothing away (activities/split-cutover.ts): no swap to rehearse or describe.
    if (problems.length === 0 && shape.rehearse && plan.where === undefined) await rehearseCutover(client, plan, source.oid, target.oid, { compatView, foreignKeys, partition, partitions, columns }, problems, moves);
    else if (problems.length === 0 && plan.where === undefined) moves.push(...(await cutoverMoves(client, plan, source.oid, compatView, foreignKeys, partition)));
    const inverse = problems.length ? [] : await reverseColumns(client, source, target, reverse.columns);
    const risks = rollbackRisks(inverse);
    // Read through the compatibility view: the same casts, without the original table's NOT NULL (a rule for writes).
    const readerRisks = compatView ? rollbackRisks(inverse.map((c) => ({ ...c, into: { ...c.into, notNull: false } }))) : [];
    const constraints = await checkConstraints(client, {
      source: { ref: plan.source, oid: source.oid, columns: source.columns.map((c) => c.name) }, targetOid: target.oid,
      carried: carriedColumns(source, target, columns), foreignKeys, drop: plan.dropConstraints,
      field: plan.createSql ? (plan.createFile ? 'createFile' : 'create') : 'target',
    });
    problems.push(...constraints.problems);
    // Nothing but the target may have changed (src/catalog-snapshot.ts): what the DDL's parse tree could not show.
    for (const change of await catalogChanges(client, catalogBefore, await takeCatalogSnapshot(client, target.oid), { createdRelations: false })) {
      problems.push(`${plan.createFile ? 'createFile' : plan.createSql ? 'create' : 'target'}: ${change} outside the target; preflight may change only ${displayName(plan.target)} and what belongs to it`);
    }
    const reverseWithKey = { ...reverse, key: key.map((k) => ({ name: k.name, type: reverseKey.get(k.name) ?? k.type })) };
    return { columns, reverse: reverseWithKey, compatView, textOnly: plan.copy.format === 'text' ? [] : await typesWithoutBinaryIo(client, target.oid), risks, readerRisks, foreignKeys, partitions, constraintNotes: constraints.notes };
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
}

/**
 * A partitioned source: which of its partitions the new table's take the place of (same bound), the names they
 * retire under (free now), and, for the gate, the partitions with no counterpart.
 */
async function partitionPairs(client: pg.Client, target: TableInfo, shape: TargetShape, problems: string[], moves: string[]): Promise<PartitionPair[]> {
  if (shape.sourcePartitions.length === 0) return [];
  const targetPartitions = target.kind === 'p' ? await childPartitions(client, target.oid) : [];
  const { pairs, unpaired } = pairPartitions(shape.sourcePartitions, targetPartitions, shape.stamp);
  for (const p of pairs) if (await tableOid(client, p.retired)) problems.push(`cutover: the retired name ${displayName(p.retired)} of partition ${displayName(p.source)} is taken`);
  moves.push(...unpaired, ...(pairs.length ? [`${pairs.length} partitions of the new table take the names of the old ones with the same bounds`] : []));
  return pairs;
}

/**
 * The mapping run backwards, for writes made after cutover: a source column copied as is or renamed comes back
 * from its target column; `reverse:` in the plan gives the rest; what is left cannot be derived.
 */
export function inverseMapping(plan: Plan, source: TableInfo, forward: MappedColumn[], problems: string[]): { columns: MappedColumn[]; notInvertible: string[] } {
  for (const name of Object.keys(plan.reverse)) {
    if (!source.columns.some((c) => c.name === name && !c.generated)) problems.push(`reverse.${name}: ${displayName(plan.source)} has no (non-generated) column ${name}`);
  }
  const columns: MappedColumn[] = [];
  const notInvertible: string[] = [];
  for (const sc of source.columns) {
    if (sc.generated) continue;
    const given = Object.hasOwn(plan.reverse, sc.name) ? plan.reverse[sc.name] : undefined; // own keys only: a column may be called constructor
    const carried = forward.find((f) => isColumn(f.expr, sc.name));
    const expr = given ?? (carried ? quoteIdent(carried.target) : undefined);
    if (expr === undefined) notInvertible.push(sc.name);
    else columns.push({ target: sc.name, expr, type: sc.type, copyType: sc.baseType });
  }
  return { columns, notInvertible };
}

/**
 * Target column -> the source column it carries as is or renamed (a generated column: the source's generated
 * column of its name), for comparing constraints over the mapping.
 */
function carriedColumns(source: TableInfo, target: TableInfo, columns: MappedColumn[]): Map<string, string> {
  const carried = new Map<string, string>();
  for (const c of columns) {
    const from = source.columns.find((s) => !s.generated && isColumn(c.expr, s.name));
    if (from) carried.set(c.target, from.name);
  }
  for (const t of target.columns) {
    if (t.generated && source.columns.some((s) => s.generated && s.name === t.name)) carried.set(t.name, t.name);
  }
  return carried;
}

/** The inverse mapping with the catalog's types at both ends (the target exists only in preflight's transaction). */
async function reverseColumns(client: pg.Client, source: TableInfo, target: TableInfo, reverse: MappedColumn[]): Promise<ReverseColumn[]> {
  const [oldTypes, newTypes] = [await columnTypes(client, source.oid), await columnTypes(client, target.oid)];
  return reverse.map((r) => {
    const plain = target.columns.find((t) => isColumn(r.expr, t.name));
    return { column: r.target, into: oldTypes.get(r.target)!, ...(plain ? { from: newTypes.get(plain.name)! } : { expr: r.expr }) };
  });
}

/**
 * The compatibility view's columns: every old-table column, in order, derived from the new table through the
 * inverse mapping (a generated old column reads the new column of its name). One that cannot be derived is a
 * problem: a view quietly missing a column would break `SELECT *` readers in ways nobody approved.
 */
export function compatViewColumns(source: TableInfo, target: TableInfo, reverse: MappedColumn[], problems: string[]): CompatColumn[] {
  const out: CompatColumn[] = [];
  for (const sc of source.columns) {
    const expr = reverse.find((r) => r.target === sc.name)?.expr ?? (sc.generated && target.columns.some((t) => t.name === sc.name) ? quoteIdent(sc.name) : undefined);
    if (expr === undefined) {
      problems.push(`cutover.compatView: column ${sc.name} of ${displayName(source.ref)} cannot be derived from ${displayName(target.ref)}; give it under reverse: (or use compatView: false)`);
      continue;
    }
    const column = target.columns.find((t) => isColumn(expr, t.name));
    out.push(column && column.type === sc.type
      ? { name: sc.name, expr: quoteIdent(column.name), type: sc.type, plain: true }
      : { name: sc.name, expr, type: sc.type, plain: false });
  }
  return out;
}

/** What the cutover will move, from the catalog alone (no lock beyond ACCESS SHARE): validate's account of it. */
async function cutoverMoves(
  client: pg.Client, plan: Plan, sourceOid: number, compatView: CompatColumn[] | null, foreignKeys: OutboundForeignKey[], partition: PartitionOf | null,
): Promise<string[]> {
  const captured = await captureBoundObjects(client, sourceOid, plan.source);
  return [
    ...describeBoundObjects(captured, { compatView: compatView !== null }), ...describeForeignKeys(foreignKeys),
    ...(partition ? [`${displayName(plan.source)} is detached from its partitioned table and the new table attached in its place (${partition.bound}); the partitioned table is locked for that moment`] : []),
  ];
}

/** `plan validate` waits at most this long for any lock (it asks only for ACCESS SHARE, except a DDL foreign key's). */
export const VALIDATE_LOCK_TIMEOUT_MS = 100;
/** The rehearsal at start: lock_timeout of each attempt (the plan's, if shorter), attempts, pause between them. */
export const REHEARSAL_LOCK = { timeoutMs: 1000, attempts: 3, pauseMs: 1000 };

/**
 * The cutover, rehearsed: renames and the move of every object bound to the source (views, foreign keys,
 * grants, policies, triggers, publications, ...), inside a savepoint that is always rolled back. What would not
 * move is a problem now, with the object named, instead of a failed cutover later. It takes the cutover's
 * ACCESS EXCLUSIVE locks, so it runs only at start, each attempt with a short lock_timeout (REHEARSAL_LOCK): an
 * application read queues behind it for a second at most, and a busy table is reported, not waited on.
 */
async function rehearseCutover(
  client: pg.Client, plan: Plan, sourceOid: number, targetOid: number,
  objects: { compatView: CompatColumn[] | null; foreignKeys: OutboundForeignKey[]; partition: PartitionOf | null; partitions: PartitionPair[]; columns: MappedColumn[] },
  problems: string[], moves: string[],
): Promise<void> {
  const lockTimeoutMs = Math.min(plan.cutover.lockTimeoutMs, REHEARSAL_LOCK.timeoutMs);
  const [p0, m0] = [problems.length, moves.length];
  for (let attempt = 1; ; attempt++) {
    const busy = await rehearseOnce(client, plan, sourceOid, targetOid, objects, lockTimeoutMs, problems, moves);
    if (!busy) return;
    problems.length = p0;
    moves.length = m0;
    if (attempt >= REHEARSAL_LOCK.attempts) {
      problems.push(`cutover: ${displayName(plan.source)} is busy (or an object bound to it): another transaction holds a lock the cutover rehearsal needs ` +
        `(${attempt} attempts, each waiting ${lockTimeoutMs} ms); nothing was changed; start again when it is free (see pg_stat_activity)`);
      return;
    }
    await sleep(REHEARSAL_LOCK.pauseMs);
  }
}

/** One attempt of the rehearsal; true when a lock was not had within `lockTimeoutMs` (nothing recorded then). */
async function rehearseOnce(
  client: pg.Client, plan: Plan, sourceOid: number, targetOid: number,
  { compatView, foreignKeys, partition, partitions, columns }: {
    compatView: CompatColumn[] | null; foreignKeys: OutboundForeignKey[]; partition: PartitionOf | null; partitions: PartitionPair[]; columns: MappedColumn[];
  },
  lockTimeoutMs: number, problems: string[], moves: string[],
): Promise<boolean> {
  await client.query('SAVEPOINT rehearsal');
  try {
    await setLockTimeout(client, lockTimeoutMs);
    const accessBefore = await readAccess(client, plan.source);
    const captured = await captureBoundObjects(client, sourceOid, plan.source);
    moves.push(...describeBoundObjects(captured, { compatView: compatView !== null }), ...describeForeignKeys(foreignKeys));
    if (partition) {
      moves.push(`${displayName(plan.source)} is detached from its partitioned table and the new table attached in its place (${partition.bound}); the partitioned table is locked for that moment`);
      await detachPartition(client, plan.source, partition);
    }
    await moveTable(client, plan.source, { schema: plan.source.schema, name: nameWithSuffix(plan.source.name, '_retired_rehearsal') });
    await addForeignKeys(client, foreignKeys, targetOid);
    const toNewTable = (at: TableRef) => moveToNewTable(client, captured, sourceOid, { oid: targetOid, home: at }, compatView, { dryRun: true, columnRenames: columnRenames(columns) });
    // As the cutover does it (activities/cutover.ts): with newTableName: target the new table visits the live name.
    const result = renamesAway(plan.cutover) ? await whileAt(client, targetOid, plan.target, plan.source, () => toNewTable(plan.source)) : await toNewTable(plan.target);
    moves.push(...result.notes);
    if (partitions.length && result.problems.length === 0) {
      problems.push(...(await swapPartitions(client, partitions, 'forward', { dryRun: true })).problems.map((p) => `cutover: ${p}`));
    }
    if (partition && result.problems.length === 0) {
      // The shape must fit the partitioned table exactly (same columns and types, its unique indexes): ATTACH says.
      await client.query('SAVEPOINT attach');
      try {
        await attachPartition(client, plan.source, partition);
      } catch (err) {
        problems.push(`cutover: the new table cannot take the place of partition ${displayName(plan.source)}: ${errorText(err)}`);
      } finally {
        await client.query('ROLLBACK TO SAVEPOINT attach');
      }
    }
    problems.push(...result.problems.map((p) => `cutover: ${p}`));
    problems.push(...result.compatProblems.map((p) => `cutover.compatView: ${p}`));
    // The old index and constraint names, taken over as the cutover takes them; those that cannot be go to the gate.
    if (result.problems.length === 0 && !renamesAway(plan.cutover)) moves.push(...namesNotCarried((await adoptNames(client, sourceOid, targetOid, '_retired_rehearsal', columnRenames(columns))).unpaired, displayName(plan.source)));
    if (result.problems.length === 0 && result.compatProblems.length === 0) {
      // The cutover must leave every role's access through the live name as it is: asked of PostgreSQL, role by role.
      const after = renamesAway(plan.cutover)
        ? accessAs(await readAccess(client, plan.target, accessBefore.objects), plan.target, plan.source)
        : await readAccess(client, plan.source, accessBefore.objects);
      // The compatibility view keeps the old column names: compared as they are.
      for (const d of accessDifferences(accessBefore, after, compatView ? {} : columnRenames(columns))) problems.push(`cutover: access would change: ${d}`);
    }
    return false;
  } catch (err) {
    if (pgErrorCode(err) === '55P03') return true;
    problems.push(`cutover: the rehearsal failed: ${errorText(err)}`);
    return false;
  } finally {
    await client.query('ROLLBACK TO SAVEPOINT rehearsal');
  }
}

/** Relations created in this transaction that are neither the target nor its indexes, TOAST or sequences. */
export interface PreflightInput {
  db: string;
  plan: Plan;
  stamp: string;
}

export async function preflight(input: PreflightInput): Promise<PreflightReport> {
  return withDatabase(input, async (client) => {
    try {
      return await inspectPlan(client, input.plan, input.stamp);
    } catch (err) {
      if (err instanceof PlanCheckFailed) throw fatal('BadPlan', err.message, { problems: err.problems });
      throw err;
    }
  });
}

/** Which name the new table has after cutover, said for every plan: the target's name is either kept or only where it is built. */
function newTableNameWarning(plan: Plan): string {
  const [source, target] = [displayName(plan.source), displayName(plan.target)];
  if (renamesAway(plan.cutover)) {
    return `at cutover: the new table keeps its own name ${target} (cutover.newTableName: target) and ${source} is gone: what names ${source} ` +
      `(queries, functions with string bodies) fails from then on (cutover.compatView: true keeps it as a view); a rollback gives ${source} back`;
  }
  return `at cutover: the new table takes the name ${source} (cutover.newTableName: source, the default); ${target} is only where it is built ` +
    `(cutover.newTableName: target keeps it)`;
}
