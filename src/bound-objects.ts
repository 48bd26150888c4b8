/**
 * Objects bound to a table's OID rather than to its name: a rename leaves them on the old table. At cutover they
 * must follow the live name to the new table, in the transaction that does the renames.
 *
 * How: `captureBoundObjects` reads them while the source still has the live name, with `search_path` emptied so
 * that PostgreSQL's own deparsed SQL (view, constraint, trigger, policy, function definitions) names every
 * relation schema-qualified. Those texts name the live name; after the renames the live name *is* the new table,
 * so they are run as captured, never edited. Everything else (grants, flags, publication entries) is rebuilt from
 * catalog data through `quoteIdent` / `qualified` / `quoteLiteral`. `moveBoundObjects` then re-points or
 * recreates them on the new table and proves the result: the old table must be droppable without CASCADE.
 *
 * Dry run (preflight): the caller runs the same sequence (capture, renames, move) inside a transaction it rolls
 * back; with `dryRun` each object runs under its own SAVEPOINT, so one failure is recorded (object named) and the
 * rest still run. Nothing non-transactional happens in a dry run (sequences are not advanced).
 *
 * This module orchestrates; each kind of object has one module in src/bound/ with its capture, its move (the
 * same move takes it back on swap back, with the tables' roles exchanged) and the lines that describe it to the
 * approver; src/bound/mover.ts runs the statements (and the rehearsal's savepoints).
 */
import type pg from 'pg';
import { relationName } from './catalog';
import type { CompatColumn } from './projection';
import { displayName, qualified, sameTableRef, type TableRef } from './sql';
import { moveTable, whileAt } from './swap';
import { describeComments, captureComments, moveComments, type CapturedComments } from './bound/comments';
import { bindViewsToTwins, createCompatView } from './bound/compat-view';
import { captureFunctions, describeFunctions, moveFunctions, type CapturedFunctions } from './bound/functions';
import { captureGrants, describeGrants, moveGrants, sealMovedFrom, type CapturedGrants } from './bound/grants';
import {
  captureForeignKeys, checkSelfForeignKeys, describeForeignKeys, moveForeignKeys, type CapturedForeignKeys, type ForeignKeyRef,
} from './bound/inbound-foreign-keys';
import { Mover, tableRow, type CatalogQuery, type MoveTarget } from './bound/mover';
import { captureOtherDependents, describeOtherDependents, refuseOtherDependents, type CapturedOtherDependents } from './bound/other-dependents';
import {
  captureForeignPolicies, capturePolicies, describeForeignPolicies, describePolicies, moveForeignPolicies, movePolicies,
  type CapturedForeignPolicies, type CapturedPolicies,
} from './bound/policies';
import { capturePublications, describePublications, movePublications, type CapturedPublications } from './bound/publications';
import { captureReplicaIdentity, describeReplicaIdentity, moveReplicaIdentity, type CapturedReplicaIdentity } from './bound/replica-identity';
import { captureRowSecurity, describeRowSecurity, moveRowSecurity, type CapturedRowSecurity } from './bound/rls';
import { captureSequences, describeSequences, moveSequences, type CapturedSequences } from './bound/sequences';
import { captureTriggers, describeTriggers, moveTriggers, type CapturedTriggers } from './bound/triggers';
import { captureViews, describeViews, moveViews, type CapturedViews } from './bound/views';
import {
  captureMaterializedViews, describeMaterializedViews, moveMaterializedViews, type CapturedMaterializedViews,
} from './bound/materialized-views';
import {
  captureRowTypeFunctions, describeRowTypeFunctions, moveRowTypeFunctions, type CapturedRowTypeFunctions,
} from './bound/row-type-functions';

export { isCompatViewOver } from './bound/compat-view';
export type { BoundGrant } from './bound/grants';
export { validateForeignKeys, type ForeignKeyRef } from './bound/inbound-foreign-keys';

/** Everything bound to the table, each kind's part declared in its own module. */
export interface BoundObjects extends CapturedForeignKeys, CapturedViews, CapturedMaterializedViews, CapturedForeignPolicies,
  CapturedFunctions, CapturedRowTypeFunctions,
  CapturedOtherDependents, CapturedSequences, CapturedGrants, CapturedRowSecurity, CapturedReplicaIdentity,
  CapturedPolicies, CapturedTriggers, CapturedComments, CapturedPublications {
  live: TableRef;
  oid: number;
  owner: string;
}

export interface MoveOptions {
  /** Preflight: every object under its own SAVEPOINT, failures collected in `problems`; no sequence is advanced. */
  dryRun?: boolean;
  /**
   * `cutover.compatView`: leave views, other tables' policies and SQL functions that read the table (and the
   * proof that the old table is free) to `moveReaders`, once the compatibility view has the live name.
   */
  readersLater?: boolean;
  /** Old table column → the new table column that carries it under another name (`columnRenames`). */
  columnRenames?: Record<string, string>;
  /**
   * Swap back: a column grant on a column the original table does not have (given after cutover on a column the
   * migration added) is left behind and said (`skipped`), not a problem: a rollback must not be refused for it.
   */
  skipGrantsOnMissingColumns?: boolean;
}

export interface MoveResult {
  /** Statements that ran (in a dry run: that would run), for the audit log. */
  statements: string[];
  /** Inbound foreign keys re-added NOT VALID: validate them after COMMIT (`validateForeignKeys`). */
  notValidForeignKeys: ForeignKeyRef[];
  /** What was not moved (or, in a dry run, failed), one line per object, the object named. */
  problems: string[];
  /** What the new table already had (from its DDL), so it was left as it is. */
  skipped: string[];
  /** How objects moved that the approver should know (a view dropped and created again): shown at the gate. */
  notes: string[];
}

/** Run `fn` with search_path emptied (only pg_catalog visible): deparsed SQL then qualifies every other name. */
export async function withEmptySearchPath<T>(client: pg.Client, fn: () => Promise<T>): Promise<T> {
  const { rows } = await client.query<{ path: string }>(`SELECT current_setting('search_path') AS path`);
  const saved = rows[0]!.path;
  await client.query(`SELECT set_config('search_path', '', false)`);
  try {
    return await fn();
  } finally {
    // In an aborted transaction this fails; the rollback then restores the setting anyway.
    await client.query(`SELECT set_config('search_path', $1, false)`, [saved]).catch(() => undefined);
  }
}

/** Read everything bound to `oid` (the table while it still has its live name), as SQL to recreate it on another table. */
export async function captureBoundObjects(client: pg.Client, oid: number, live: TableRef): Promise<BoundObjects> {
  const at = await relationName(client, oid);
  if (!sameTableRef(at, live)) {
    throw new Error(`captureBoundObjects: table ${oid} is ${at ? displayName(at) : '(gone)'}, not ${displayName(live)}; capture must happen before the renames`);
  }
  return withEmptySearchPath(client, async () => {
    const q: CatalogQuery = async <T extends pg.QueryResultRow>(text: string): Promise<T[]> => (await client.query<T>(text, [oid])).rows;
    const rel = await tableRow(client, oid);
    return {
      live: { schema: live.schema, name: live.name },
      oid,
      owner: rel.owner,
      ...await captureForeignKeys(q),
      ...await captureViews(q),
      ...await captureMaterializedViews(q),
      ...await captureForeignPolicies(q),
      ...await captureFunctions(q),
      ...await captureRowTypeFunctions(q),
      ...await captureOtherDependents(q),
      ...await captureSequences(q),
      ...await captureGrants(q),
      ...captureRowSecurity(rel),
      ...await captureReplicaIdentity(q, rel),
      ...await capturePolicies(q),
      ...await captureTriggers(q),
      ...await captureComments(q, rel),
      ...await capturePublications(q),
    };
  });
}

/**
 * Inside the cutover transaction, after the renames: re-point / recreate on `to` (now at the live name) what
 * `captured` lists; `fromOid` is the table they were bound to (now renamed). Returns the statements run (for the
 * audit log), the FK constraints left NOT VALID, what could not be moved (`problems`) and what the new table
 * already had (`skipped`). Outside a dry run, a statement that fails throws (its message names the object) and
 * the caller rolls back. Must run inside a transaction (it uses savepoints).
 */
export async function moveBoundObjects(
  client: pg.Client,
  captured: BoundObjects,
  fromOid: number,
  to: { ref: TableRef; oid: number },
  options: MoveOptions = {},
): Promise<MoveResult> {
  const m = new Mover(client, options.dryRun ?? false);
  const live = captured.live;
  const toAt = await relationName(client, to.oid);
  const retired = await relationName(client, fromOid);
  if (!sameTableRef(toAt, live) || !sameTableRef(to.ref, live)) {
    throw new Error(`moveBoundObjects: the new table (${to.oid}) is at ${toAt ? displayName(toAt) : '(gone)'}; it must be at the live name ${displayName(live)}, where the captured definitions point`);
  }
  if (!retired || sameTableRef(retired, live)) {
    throw new Error(`moveBoundObjects: the old table (${fromOid}) is at ${retired ? displayName(retired) : '(gone)'}; it must have been renamed away from ${displayName(live)}`);
  }
  if (captured.oid !== fromOid) throw new Error(`moveBoundObjects: captured from table ${captured.oid}, asked to move from ${fromOid}`);
  const from = { oid: fromOid, ref: retired };
  const target: MoveTarget = {
    oid: to.oid, ref: to.ref, sql: qualified(to.ref), shown: displayName(to.ref),
    row: await tableRow(client, to.oid),
    columns: new Set((await m.rows<{ name: string }>(
      `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, [to.oid])).map((r) => r.name)),
  };

  // Each kind works on its own catalog rows; the order is the one the cutover has always had, kept because the
  // audit log (`statements`) and the problems the gate and preflight show are listed in it. Where it matters for
  // the result: the readers (views, other tables' policies, SQL functions) come last, since with a compatibility
  // view they must wait until the view has the live name (`readersLater`, then `moveReaders`); the proof that the
  // old table drops without CASCADE comes after everything, since the kinds before it take away what held the old
  // table (inbound foreign keys, shared sequences, readers).
  await moveGrants(m, captured, target, options.columnRenames ?? {}, options.skipGrantsOnMissingColumns ?? false);
  await sealMovedFrom(m, from);
  await moveRowSecurity(m, captured, target);
  await movePolicies(m, captured.policies, target);
  await moveTriggers(m, captured.triggers, target);
  await moveComments(m, captured, target);
  await moveReplicaIdentity(m, captured, target);
  await moveSequences(m, from, target);
  const notValidForeignKeys = await moveForeignKeys(m, captured.foreignKeys, from, target);
  await checkSelfForeignKeys(m, captured.selfForeignKeys, live, target);
  await movePublications(m, captured.publications, from, target);
  if (!options.readersLater) {
    await moveReadersWith(m, captured);
    await m.proveDroppable(retired);
  }
  return { statements: m.statements, notValidForeignKeys, problems: m.problems, skipped: m.skipped, notes: m.notes };
}

/**
 * What reads the table by OID (views, other tables' policies, SQL-standard function bodies) is recreated from its
 * captured definition, which names the live name; whatever has the live name then is what they read from now on:
 * the new table, or with `cutover.compatView` the compatibility view. Functions of the table's row type and
 * materialized views cannot be replaced in place: they are dropped and created again (new OIDs, same names,
 * owners, grants, comments), after the views and functions that are replaced in place. What cannot be re-pointed
 * is a problem.
 */
async function moveReadersWith(m: Mover, captured: BoundObjects): Promise<void> {
  await moveViews(m, captured);
  await moveForeignPolicies(m, captured.foreignPolicies);
  await moveFunctions(m, captured.functions);
  await moveRowTypeFunctions(m, captured.rowTypeFunctions ?? []);
  await moveMaterializedViews(m, captured.materializedViews ?? []);
  refuseOtherDependents(m, captured.otherDependents);
}

/**
 * `cutover.compatView`, after `createCompatView` (and in swap back, after the original table has the live name
 * again): the readers `moveBoundObjects` left (`readersLater`) are recreated on whatever now has the live name.
 * With the compatibility view there, they keep the old columns they were written against. Then the proof that
 * `fromOid` (the old table, or in swap back the view) holds nothing any more.
 */
export async function moveReaders(client: pg.Client, captured: BoundObjects, fromOid: number, options: MoveOptions = {}): Promise<Pick<MoveResult, 'statements' | 'problems' | 'notes'>> {
  const m = new Mover(client, options.dryRun ?? false);
  await moveReadersWith(m, captured);
  const from = await relationName(client, fromOid);
  const [rel] = await m.rows<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = $1`, [fromOid]);
  if (!from) m.problems.push(`relation ${fromOid} is gone`);
  else await m.proveDroppable(from, rel?.kind === 'v' ? 'VIEW' : 'TABLE');
  return { statements: m.statements, problems: m.problems, notes: m.notes };
}

interface CutoverMove extends MoveResult {
  /** `cutover.compatView`: what could not be made (the view) or re-pointed to it (its readers). */
  compatProblems: string[];
}

/**
 * The cutover's move, one function for the cutover and for preflight's rehearsal, so the rehearsal proves what
 * will run. Call once the old table (`fromOid`) has left the live name. Plain swap: the new table (`to.oid`, at
 * `to.home`) takes the live name for good and everything captured moves to it. With `compatView`: the new table
 * visits the live name while the same objects move (they follow it home by OID), then the compatibility view
 * takes the live name and the old table's readers are re-pointed to it.
 */
export async function moveToNewTable(
  client: pg.Client,
  captured: BoundObjects,
  fromOid: number,
  to: { oid: number; home: TableRef },
  compatView: CompatColumn[] | null,
  options: MoveOptions = {},
): Promise<CutoverMove> {
  const live = captured.live;
  const move = () => moveBoundObjects(client, captured, fromOid, { ref: live, oid: to.oid }, { ...options, readersLater: compatView !== null });
  if (!compatView) {
    await moveTable(client, to.home, live);
    return { ...(await move()), compatProblems: [] };
  }
  const moved = await whileAt(client, to.oid, to.home, live, move);
  // Views with their owner's rights over a table with row-level security read a twin with their owner's rights.
  const twins = await bindViewsToTwins(client, captured, to.home, compatView, options);
  const rest = { ...captured, views: captured.views.filter((v) => !twins.bound.has(v.oid)) };
  const view = await createCompatView(client, rest, to.home, compatView, options);
  const readers = await moveReaders(client, rest, fromOid, options);
  return {
    ...moved,
    statements: [...moved.statements, ...twins.statements, ...view.statements, ...readers.statements],
    notes: [...moved.notes, ...twins.notes, ...readers.notes],
    compatProblems: [...twins.problems, ...view.problems, ...readers.problems],
  };
}

/** Human lines for preflight / the approver: what will move. */
export function describeBoundObjects(b: BoundObjects, how: { compatView?: boolean } = {}): string[] {
  const readTarget = how.compatView ? 'the compatibility view' : 'the new table';
  const lines = [
    ...describeForeignKeys(b, b.live),
    ...describeViews(b, readTarget),
    ...describeForeignPolicies(b.foreignPolicies, readTarget),
    ...describeFunctions(b.functions, readTarget),
    ...describeRowTypeFunctions(b.rowTypeFunctions ?? [], readTarget),
    ...describeMaterializedViews(b.materializedViews ?? [], readTarget),
    ...describeOtherDependents(b.otherDependents),
    ...describeSequences(b.sequences),
    ...describeGrants(b),
    ...describeRowSecurity(b),
    ...describePolicies(b.policies),
    ...describeTriggers(b.triggers),
    ...describeReplicaIdentity(b),
    ...describeComments(b),
    ...describePublications(b.publications),
  ];
  if (!lines.length) lines.push(`nothing bound to ${displayName(b.live)} besides the table itself`);
  return lines;
}
