/**
 * The write guard: a statement-level BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE trigger on a table only safeshift
 * may write, refusing every statement of a session that is not safeshift's own. Privileges (src/seal.ts) stop
 * `anon`, `authenticated` and the like; they do not stop a superuser, the table's owner or a member of the owner
 * role (on Supabase the owner is typically `postgres`, which the SQL editor uses), nor a role with BYPASSRLS and
 * pg_write_all_data. A row any of them wrote to the new table before cutover would go live with it.
 *
 * Guarded: the new table (and every partition of it: a statement trigger on a partitioned table does not fire for
 * a statement on a partition) from its creation until the cutover transaction, and the retired table (and its
 * partitions) from cutover until a swap back makes it live again or the drop phase drops it: a swap back writes
 * the retired table and makes it live, so a row planted there would go live as well.
 *
 * Whose session is safeshift's: one with the setting `safeshift.writer` = `on`, which every connection safeshift
 * opens sets (src/db.ts). This is a declaration, not a secret: anyone who reads this can set it, and a superuser or
 * the owner can always drop or disable a trigger. So the guard stops mistakes and anyone not deliberately going
 * around it (a query in the SQL editor, an application or job connected as the owner, an analyst with
 * pg_write_all_data), and the cutover checks under its lock that the guard is still there, enabled ALWAYS, unaltered,
 * on every partition, and refuses (fails closed, the migration rolls back) if not (`openWriteGuard`). A role
 * that can drop the trigger, write, and create it again can also rewrite safeshift's ledger: that is outside what
 * any tool inside the database can prevent.
 *
 * Statement-level: one call per statement, so a COPY of a whole chunk costs one call, not one per row. ENABLE
 * ALWAYS: a session with session_replication_role = replica (which skips ordinary triggers) is refused too.
 */
import type pg from 'pg';
import { fatal } from './errors';
import { displayName, qualified, quoteIdent, type TableRef } from './sql';

export const WRITE_GUARD_TRIGGER = 'safeshift_write_guard';
/**
 * The ledger's record (safeshift.objects, kind) that a run's new table was guarded when it was created: a run
 * started by a version without the guard has none, and its cutover does not ask for a guard it never had.
 */
export const GUARD_RECORD = 'write guard';
/** The session setting that says "this is safeshift" (src/db.ts sets it on every connection). */
export const WRITER_SETTING = 'safeshift.writer';

/** BEFORE (2) | INSERT (4) | DELETE (8) | UPDATE (16) | TRUNCATE (32), not ROW (1), not INSTEAD (64): pg_trigger.tgtype. */
const GUARD_TGTYPE = 62;

const GUARD_BODY = `
BEGIN
  -- A retired table's guard ('cascades') lets through what a trigger does (depth > 1): a foreign key's ON DELETE /
  -- ON UPDATE action from a parent the application changes must still reach it, as it did before cutover.
  IF pg_catalog.current_setting('${WRITER_SETTING}', true) IS DISTINCT FROM 'on'
     AND NOT (TG_NARGS > 0 AND TG_ARGV[0] = 'cascades' AND pg_catalog.pg_trigger_depth() > 1) THEN
    RAISE EXCEPTION USING ERRCODE = '42501',
      MESSAGE = pg_catalog.format('%s on %I.%I refused: the table is sealed by safeshift (a migration''s new table before cutover, or its retired table), only safeshift writes it', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME),
      HINT = 'A write here would not be kept, or would go live unchecked with the migration. Write to the live table; see safeshift status.';
  END IF;
  RETURN NULL;
END
`;

/** In the ledger's DDL (src/ledger.ts), under its advisory lock; also created by `guardTree` if missing. */
export const WRITE_GUARD_DDL = `
CREATE OR REPLACE FUNCTION safeshift.write_guard() RETURNS trigger LANGUAGE plpgsql SET search_path = '' AS $write_guard$${GUARD_BODY}$write_guard$;
REVOKE ALL ON FUNCTION safeshift.write_guard() FROM PUBLIC;
`;

/** The table and every partition below it, all levels: each gets (and is checked for) its own guard. */
const TREE = `WITH RECURSIVE tree(oid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)`;

/** The tables of the tree, and whether the guard function exists (one round trip: the cutover runs this under its lock). */
async function treeOf(client: pg.Client, oid: number): Promise<{ tables: TableRef[]; functionPresent: boolean }> {
  const { rows } = await client.query<TableRef & { present: boolean }>(
    `${TREE} SELECT n.nspname AS schema, c.relname AS name, to_regprocedure('safeshift.write_guard()') IS NOT NULL AS present
       FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') ORDER BY 1, 2`, [oid]);
  return { tables: rows.map((r) => ({ schema: r.schema, name: r.name })), functionPresent: rows[0]?.present ?? true };
}

/** Guard table `oid` and its partitions (in the caller's transaction). Idempotent. */
export async function guardTree(client: pg.Client, oid: number): Promise<void> {
  const { tables, functionPresent } = await treeOf(client, oid);
  // The ledger installs the function; a ledger from before this version gets it here.
  if (!functionPresent) await client.query(WRITE_GUARD_DDL);
  await guardTables(client, tables, 'strict');
}

/**
 * DDL only: under a batching LockClock these go with the step's next round trip. `strict` (a new table before
 * cutover: it has no foreign keys yet, nothing cascades into it): only safeshift writes. `cascades` (a retired
 * table, which keeps its foreign keys for a swap back): also what a trigger does, so an application's delete of a
 * parent row still cascades into it, as it did before cutover.
 */
async function guardTables(client: pg.Client, tables: TableRef[], mode: 'strict' | 'cascades'): Promise<string[]> {
  const args = mode === 'cascades' ? `'cascades'` : '';
  const statements = tables.flatMap((t) => [
    `CREATE OR REPLACE TRIGGER ${quoteIdent(WRITE_GUARD_TRIGGER)} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${qualified(t)} FOR EACH STATEMENT EXECUTE FUNCTION safeshift.write_guard(${args})`,
    `ALTER TABLE ${qualified(t)} ENABLE ALWAYS TRIGGER ${quoteIdent(WRITE_GUARD_TRIGGER)}`,
  ]);
  for (const s of statements) await client.query(s);
  return statements;
}

interface GuardState {
  /** The guarded table and its partitions. */
  tables: TableRef[];
  /** The ledger records that the table was guarded when created (runs started before the guard have no record). */
  expected: boolean;
  /** One line per table whose guard is missing, not enabled ALWAYS, or altered (none if not expected). */
  problems: string[];
  /** The tree of `retiring` (the table that retires in this transaction), if one was given. */
  retiring: TableRef[];
}

/**
 * The guard of table `oid` and its partitions, in one query: missing, not enabled ALWAYS, or altered (its events,
 * a WHEN condition, its function or that function's body or settings). With `retiring`, that table's tree too,
 * in the same round trip (the cutover asks under its lock).
 */
export async function guardState(client: pg.Client, oid: number, retiring?: number): Promise<GuardState> {
  const { rows } = await client.query<{ root: number; schema: string; name: string; expected: boolean; problem: string | null }>(
    `WITH RECURSIVE tree(oid, root) AS (
       SELECT r, r FROM unnest($6::oid[]) r UNION SELECT i.inhrelid, t.root FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
     SELECT tree.root::int8::float8 AS root, n.nspname AS schema, c.relname AS name,
            EXISTS (SELECT 1 FROM safeshift.objects o WHERE o.kind = $5 AND o.oid = $1) AS expected,
            CASE WHEN g.oid IS NULL THEN 'its write guard was dropped'
                 WHEN g.tgenabled <> 'A' THEN 'its write guard is not enabled ALWAYS (state ' || g.tgenabled::text || ')'
                 WHEN g.tgtype <> $2 OR g.tgqual IS NOT NULL OR g.tgnargs <> 0 OR g.tgfoid <> coalesce(to_regprocedure('safeshift.write_guard()'), 0)
                   THEN 'its write guard was altered'
                 WHEN p.prosrc IS DISTINCT FROM $3 OR p.prosecdef OR p.proconfig IS DISTINCT FROM ARRAY['search_path=""']
                   THEN 'the write guard function safeshift.write_guard() was replaced' END AS problem
       FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_trigger g ON g.tgrelid = c.oid AND g.tgname = $4
       LEFT JOIN pg_proc p ON p.oid = g.tgfoid
      WHERE c.relkind IN ('r', 'p') ORDER BY 2, 3`,
    [oid, GUARD_TGTYPE, GUARD_BODY, WRITE_GUARD_TRIGGER, GUARD_RECORD, retiring === undefined ? [oid] : [oid, retiring]]);
  const guarded = rows.filter((r) => r.root === oid);
  const expected = guarded.some((r) => r.expected);
  return {
    tables: guarded.map((r) => ({ schema: r.schema, name: r.name })),
    expected,
    problems: expected ? guarded.filter((r) => r.problem !== null).map((r) => `${displayName(r)}: ${r.problem}`) : [],
    retiring: rows.filter((r) => r.root !== oid).map((r) => ({ schema: r.schema, name: r.name })),
  };
}

/**
 * Under the cutover lock, before the new table's grants and policies are applied: its guard must be intact on
 * the table and every partition, or somebody went around it and may have written rows that would go live; the
 * cutover is refused (GuardBroken, non-retryable: the migration rolls back). Then the guard is dropped in the same
 * transaction, and `retiring` (the old table, about to be the retired one: a swap back would make it live again)
 * and its partitions are guarded; a trigger follows its table through the renames. One query; the rest is DDL, sent
 * with the step's next round trip under a batching LockClock.
 */
export async function openWriteGuard(client: pg.Client, oid: number, shown: TableRef, retiring?: number): Promise<string[]> {
  const state = await guardState(client, oid, retiring);
  if (state.problems.length) {
    throw fatal('GuardBroken', `cutover refused: ${displayName(shown)} may hold writes safeshift did not make (${state.problems.join('; ')}); the migration rolls back, start it again`);
  }
  // A run started before the guard existed: the function may be missing too, so nothing is guarded.
  return [...(await dropGuards(client, state.tables)), ...(state.expected ? await guardTables(client, state.retiring, 'cascades') : [])];
}

/** Drop the guard of table `oid` and its partitions (a swap back: the retired table goes live again). Idempotent. */
export async function dropGuardTree(client: pg.Client, oid: number): Promise<string[]> {
  return dropGuards(client, (await treeOf(client, oid)).tables);
}

async function dropGuards(client: pg.Client, tables: TableRef[]): Promise<string[]> {
  const statements = tables.map((t) => `DROP TRIGGER IF EXISTS ${quoteIdent(WRITE_GUARD_TRIGGER)} ON ${qualified(t)}`);
  for (const s of statements) await client.query(s);
  return statements;
}
