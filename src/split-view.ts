/**
 * The old name of a split table (src/row-filter.ts) while projects move out of it: a view that is the UNION ALL of
 * the shared table (the rows of projects not split yet) and every project table split from it, with an INSTEAD OF
 * trigger routing the application's writes to the table where each row lives (or, when a write moves a row to
 * another project, out of one table and into the other).
 *
 * Why a view and not a partitioned parent: a partitioned table's primary key and unique indexes must contain the
 * partition key (`project_id`), so `stories(id)` would lose its uniqueness, `ON CONFLICT (id)` and the foreign
 * keys that reference it; and a plain table cannot become a partitioned one in place (a new parent, a DEFAULT
 * partition that ATTACH scans unless a validated CHECK excludes the project, which cannot hold while its rows are
 * still there). The view leaves the shared table a plain table, with its keys, indexes and constraints, and the
 * cutover changes only the catalog: the project's rows stay in the shared table, hidden by the view (`(filter) IS
 * NOT TRUE`), until the drop phase deletes them, so a rollback finds them where they were.
 *
 * Bookkeeping in `safeshift.splits` (one row per split, by the project table's OID), from which the view and the
 * routing function are generated again at every split and every rollback. The view is `security_invoker` and
 * the routing function runs with the caller's rights: the project tables carry the shared table's grants, row
 * security flags and policies, so everyone reads and writes through the old name exactly as before.
 */
import type pg from 'pg';
import { relationName } from './catalog';
import { dollarTagFor, rowMatchesSql } from './row-filter';
import { requalifyColumns } from './statements';
import { sealRelation, sealTable } from './seal';
import { displayName, nameWithSuffix, qualified, quoteIdent, type TableRef } from './sql';

export const SPLITS = 'safeshift.splits';
export const ROUTE_TRIGGER = 'safeshift_split_route';

export interface SplitRow {
  targetOid: number;
  sharedOid: number;
  live: TableRef;
  filter: string;
  runId: string;
  state: 'live' | 'done';
}

export async function ensureSplitsTable(client: pg.Client): Promise<void> {
  await client.query('CREATE SCHEMA IF NOT EXISTS safeshift');
  await client.query(`CREATE TABLE IF NOT EXISTS ${SPLITS} (
      target_oid oid PRIMARY KEY, shared_oid oid NOT NULL, live_schema text NOT NULL, live_name text NOT NULL,
      filter text NOT NULL, run_id text NOT NULL, state text NOT NULL DEFAULT 'live', at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  const { rows } = await client.query<{ oid: number }>(`SELECT '${SPLITS}'::regclass::oid::int AS oid`);
  await sealTable(client, rows[0]!.oid);
}

const SELECT_SPLITS = `SELECT target_oid::int AS "targetOid", shared_oid::int AS "sharedOid", live_schema, live_name, filter, run_id AS "runId", state FROM ${SPLITS}`;
type RawSplit = Omit<SplitRow, 'live'> & { live_schema: string; live_name: string };
const toSplit = ({ live_schema, live_name, ...r }: RawSplit): SplitRow => ({ ...r, live: { schema: live_schema, name: live_name } });

/** The splits of one shared table, in the order they were made. */
export async function splitsOf(client: pg.Client, sharedOid: number): Promise<SplitRow[]> {
  if (!(await splitsTableExists(client))) return [];
  const { rows } = await client.query<RawSplit>(`${SELECT_SPLITS} WHERE shared_oid = $1 ORDER BY at, target_oid`, [sharedOid]);
  return rows.map(toSplit);
}

export async function splitOfTarget(client: pg.Client, targetOid: number): Promise<SplitRow | undefined> {
  if (!(await splitsTableExists(client))) return undefined;
  const { rows } = await client.query<RawSplit>(`${SELECT_SPLITS} WHERE target_oid = $1`, [targetOid]);
  return rows[0] ? toSplit(rows[0]) : undefined;
}

/** The split view standing at `live`, if there is one: its shared table. */
export async function sharedBehind(client: pg.Client, live: TableRef): Promise<TableRef | undefined> {
  if (!(await splitsTableExists(client))) return undefined;
  const { rows } = await client.query<{ oid: number }>(
    `SELECT shared_oid::int AS oid FROM ${SPLITS} WHERE live_schema = $1 AND live_name = $2 LIMIT 1`, [live.schema, live.name]);
  return rows[0] ? relationName(client, rows[0].oid) : undefined;
}

async function splitsTableExists(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query(`SELECT to_regclass('${SPLITS}') IS NOT NULL AS e`);
  return Boolean(rows[0]?.e);
}

interface Column { name: string; generated: boolean }

async function columnsOf(client: pg.Client, oid: number): Promise<Column[]> {
  const { rows } = await client.query<Column>(
    `SELECT attname AS name, attgenerated <> '' AS generated FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`, [oid]);
  return rows;
}

/** The shared table's rows that no split took: `(filter) IS NOT TRUE` for each (a NULL result stays shared, as the copy never took it). */
function sharedVisible(splits: SplitRow[]): string {
  return splits.length ? splits.map((s) => `(\n${s.filter}\n) IS NOT TRUE`).join(' AND ') : 'true';
}

interface Branches {
  live: TableRef;
  shared: TableRef;
  projects: { ref: TableRef; filter: string }[];
  columns: Column[];
  key: string[];
}

async function branchesOf(client: pg.Client, sharedOid: number, splits: SplitRow[], key: string[]): Promise<Branches> {
  const shared = (await relationName(client, sharedOid))!;
  const projects: Branches['projects'] = [];
  for (const s of splits) projects.push({ ref: (await relationName(client, s.targetOid))!, filter: s.filter });
  return { live: splits[0]!.live, shared, projects, columns: await columnsOf(client, sharedOid), key };
}

export function splitViewSql(b: Branches, splits: SplitRow[], replace: boolean): string {
  const cols = b.columns.map((c) => quoteIdent(c.name)).join(', ');
  const parts = [`SELECT ${cols} FROM ${qualified(b.shared)} WHERE ${sharedVisible(splits)}`, ...b.projects.map((p) => `SELECT ${cols} FROM ${qualified(p.ref)}`)];
  return `CREATE ${replace ? 'OR REPLACE ' : ''}VIEW ${qualified(b.live)} WITH (security_invoker = true) AS\n${parts.join('\nUNION ALL\n')}`;
}

function routeFunction(sharedOid: number): TableRef {
  return { schema: 'safeshift', name: `split_route_${sharedOid}` };
}

/**
 * The routing function. Branch 0 is the shared table, branch i the i-th project table; a row's branch is the first
 * split whose filter holds for it. An UPDATE that keeps the branch updates in place; one that changes it deletes
 * there and inserts in the new branch. A row not found where it should be (a concurrent delete) reports no row,
 * as the table would; one found changed since the statement read it fails with 40001 (never a lost update). A key
 * a visible row already has is refused (unique_violation), as the one table refused it, checked under a lock on the
 * key, so two sessions writing the same new key never both get it; a hidden copy left in the shared table by a
 * split (deleted at its drop phase) gives way to a new shared row.
 */
export function routeFunctionSql(b: Branches, sharedOid: number): string {
  const text = [...b.projects.map((p) => p.filter)].join('\n');
  const tag = dollarTagFor(text, 'route');
  const branch = (row: 'OLD' | 'NEW') => b.projects.length
    ? `CASE ${b.projects.map((p, i) => `WHEN ${rowMatchesSql(p.filter, row)} THEN ${i + 1}`).join(' ')} ELSE 0 END` : '0';
  const tables = [b.shared, ...b.projects.map((p) => p.ref)];
  const writable = b.columns.filter((c) => !c.generated).map((c) => quoteIdent(c.name));
  const keyMatch = (row: 'OLD' | 'NEW') => b.key.map((k) => `t.${quoteIdent(k)} = ${row}.${quoteIdent(k)}`).join(' AND ');
  const keyChanged = b.key.map((k) => `NEW.${quoteIdent(k)} IS DISTINCT FROM OLD.${quoteIdent(k)}`).join(' OR ');
  const each = (v: string, stmt: (t: TableRef) => string) => tables.map((t, i) => `IF ${v} = ${i} THEN ${stmt(t)}; END IF;`).join('\n      ');
  // The view hands the trigger OLD as this statement read it; a table's own UPDATE would re-read a row another
  // transaction changed meanwhile (EvalPlanQual), a trigger cannot. So a row is changed only while it still is what
  // was read; if it is there but different, the write fails as a serialization failure (40001, retry) instead of
  // overwriting the other transaction's change with values computed from the old row: a lost update, silently.
  // Generated columns follow from the others: comparing what can be written is comparing the row.
  const asRead = `ROW(${writable.map((c) => `t.${c}`).join(', ')})::text IS NOT DISTINCT FROM ROW(${writable.map((c) => `OLD.${c}`).join(', ')})::text`;
  const changedMeanwhile = (v: string) => `IF n = 0 THEN
          ${each(v, (t) => `IF EXISTS (SELECT FROM ${qualified(t)} t WHERE ${keyMatch('OLD')}) THEN
            RAISE serialization_failure USING MESSAGE = format('could not serialize access: a row of %s.%s changed after this statement read it; retry', TG_TABLE_SCHEMA, TG_TABLE_NAME);
          END IF`)}
          RETURN NULL;
        END IF;`;
  const visibleKey = `EXISTS (SELECT FROM ${qualified(b.live)} t WHERE ${keyMatch('NEW')})`;
  // The key's uniqueness spans tables no index covers together: writers of one key through the view take turns
  // (a transaction-long advisory lock on the shared table and the key), so the check sees the other's committed row.
  const keyText = `ROW(${b.key.map((k) => `NEW.${quoteIdent(k)}`).join(', ')})::text`;
  const unique = `PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('safeshift split ${sharedOid} ' || ${keyText}, 0));
      IF ${visibleKey} THEN
        RAISE unique_violation USING MESSAGE = format('duplicate key value: a row of %s.%s already has this key', TG_TABLE_SCHEMA, TG_TABLE_NAME);
      END IF;`;
  const hidden = `IF nb = 0 THEN DELETE FROM ${qualified(b.shared)} t WHERE ${keyMatch('NEW')} AND NOT (${sharedVisible(b.projects.map((p) => ({ filter: p.filter }) as SplitRow))}); END IF;`;
  return `CREATE OR REPLACE FUNCTION ${qualified(routeFunction(sharedOid))}() RETURNS trigger LANGUAGE plpgsql SET search_path = '' AS ${tag}
    DECLARE n bigint; ob int; nb int;
    BEGIN
      IF TG_OP <> 'INSERT' THEN ob := ${branch('OLD')}; END IF;
      IF TG_OP <> 'DELETE' THEN nb := ${branch('NEW')}; END IF;
      IF TG_OP = 'UPDATE' AND ob = nb THEN
        IF ${keyChanged} THEN
          ${unique}
          ${hidden}
        END IF;
        ${each('nb', (t) => `UPDATE ${qualified(t)} t SET (${writable.join(', ')}) = ROW(${writable.map((c) => `NEW.${c}`).join(', ')}) WHERE ${keyMatch('OLD')} AND ${asRead}`)}
        GET DIAGNOSTICS n = ROW_COUNT;
        ${changedMeanwhile('nb')}
        RETURN NEW;
      END IF;
      IF TG_OP <> 'INSERT' THEN
        ${each('ob', (t) => `DELETE FROM ${qualified(t)} t WHERE ${keyMatch('OLD')} AND ${asRead}`)}
        GET DIAGNOSTICS n = ROW_COUNT;
        ${changedMeanwhile('ob')}
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      END IF;
      ${unique}
      ${hidden}
      ${each('nb', (t) => `INSERT INTO ${qualified(t)} (${writable.join(', ')}) VALUES (${writable.map((c) => `NEW.${c}`).join(', ')})`)}
      RETURN NEW;
    END ${tag}`;
}

/**
 * Make the live name what `splits` say, in the caller's transaction (under the cutover lock): with splits, the view
 * (created at the first split, sealed, then given the shared table's grants; replaced later) and its routing; with
 * none left (the last split rolled back), no view and no function.
 */
export async function applySplitView(client: pg.Client, sharedOid: number, splits: SplitRow[], key: string[], live: TableRef): Promise<string[]> {
  const fn = qualified(routeFunction(sharedOid));
  if (splits.length === 0) {
    await client.query(`DROP VIEW IF EXISTS ${qualified(live)}`);
    await client.query(`DROP FUNCTION IF EXISTS ${fn}()`);
    return [`-- ${displayName(live)}: the split view dropped (no project split from it any more)`];
  }
  const b = await branchesOf(client, sharedOid, splits, key);
  const exists = (await client.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [qualified(live)])).rows[0]?.e as boolean;
  const statements = [splitViewSql(b, splits, exists), routeFunctionSql(b, sharedOid)];
  for (const s of statements) await client.query(s);
  await client.query(`REVOKE ALL ON FUNCTION ${fn}() FROM PUBLIC`);
  if (!exists) {
    const { rows } = await client.query<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [qualified(live)]);
    // Default privileges (Supabase's in public) granted the new view to everyone: exactly the shared table's grants instead.
    await sealRelation(client, rows[0]!.oid);
    statements.push(...(await copyGrants(client, sharedOid, live)));
    const trigger = `CREATE TRIGGER ${quoteIdent(ROUTE_TRIGGER)} INSTEAD OF INSERT OR UPDATE OR DELETE ON ${qualified(live)} FOR EACH ROW EXECUTE FUNCTION ${fn}()`;
    await client.query(trigger);
    statements.push(trigger);
  }
  return statements.map((s) => (s.length > 300 ? `${s.slice(0, 300)}...` : s));
}

/** The grants of `fromOid` (table and column level, with grant option), given on `to` too; the statements run. */
export async function copyGrants(client: pg.Client, fromOid: number, to: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ grantee: string | null; privilege: string; column: string | null; grantable: boolean }>(
    `SELECT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee, x.privilege_type AS privilege, NULL::text AS column, x.is_grantable AS grantable
       FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) x WHERE c.oid = $1 AND x.grantee <> c.relowner
     UNION ALL
     SELECT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END, x.privilege_type, a.attname::text, x.is_grantable
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid CROSS JOIN LATERAL aclexplode(a.attacl) x
      WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner`, [fromOid]);
  const statements = rows.map((r) => `GRANT ${r.privilege}${r.column === null ? '' : ` (${quoteIdent(r.column)})`} ON TABLE ${qualified(to)} TO ${r.grantee === null ? 'PUBLIC' : quoteIdent(r.grantee)}${r.grantable ? ' WITH GRANT OPTION' : ''}`);
  for (const s of statements) await client.query(s);
  return statements;
}

/**
 * The project table gets the shared table's access: its grants (after the seal took everyone's), its row security
 * flags and its policies, so reading and writing through the view answers as the shared table did.
 */
export async function copyAccess(client: pg.Client, sharedOid: number, targetOid: number): Promise<string[]> {
  const target = (await relationName(client, targetOid))!;
  const statements = [...(await sealRelation(client, targetOid)), ...(await copyGrants(client, sharedOid, target))];
  const sealedAndGranted = statements.length; // those ran already
  // The shared table's name comes with its flags: one round trip fewer under the cutover lock.
  const { rows: [flags] } = await client.query<{ name: string; rls: boolean; force: boolean }>(
    `SELECT relname AS name, relrowsecurity AS rls, relforcerowsecurity AS force FROM pg_class WHERE oid = $1`, [sharedOid]);
  statements.push(`ALTER TABLE ${qualified(target)} ${flags!.rls ? 'ENABLE' : 'DISABLE'} ROW LEVEL SECURITY`,
    `ALTER TABLE ${qualified(target)} ${flags!.force ? 'FORCE' : 'NO FORCE'} ROW LEVEL SECURITY`);
  const { rows: policies } = await client.query<{ name: string; permissive: boolean; cmd: string; roles: string[]; qual: string | null; check: string | null }>(
    `SELECT polname AS name, polpermissive AS permissive, polcmd::text AS cmd,
            array(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END FROM unnest(polroles) r)::text[] AS roles,
            pg_get_expr(polqual, polrelid) AS qual, pg_get_expr(polwithcheck, polrelid) AS check
       FROM pg_policy WHERE polrelid = $1 ORDER BY polname`, [sharedOid]);
  const cmds: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
  const { rows: own } = await client.query<{ name: string }>(`SELECT polname AS name FROM pg_policy WHERE polrelid = $1`, [targetOid]);
  // A policy the plan's DDL gave the project table itself is kept (the layout's per-project policy, say).
  // Deparsed for the shared table, an expression names its columns by that table's name inside a subquery
  // (`m.project_id = stories_shared.project_id`): on the project table they must name the project table.
  const forTarget = (e: string | null) => (e === null ? Promise.resolve(null) : requalifyColumns(e, flags!.name, target.name));
  for (const p of policies.filter((x) => !own.some((o) => o.name === x.name))) {
    const roles = p.roles.map((r) => (r === 'public' ? 'PUBLIC' : quoteIdent(r))).join(', ');
    const [qual, check] = [await forTarget(p.qual), await forTarget(p.check)];
    statements.push(`CREATE POLICY ${quoteIdent(p.name)} ON ${qualified(target)} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${cmds[p.cmd]} TO ${roles}` +
      `${qual ? ` USING (${qual})` : ''}${check ? ` WITH CHECK (${check})` : ''}`);
  }
  for (const s of statements.slice(sealedAndGranted)) await client.query(s);
  return statements;
}

/**
 * A CHECK on the shared table, NOT VALID (no scan, under the lock), refusing new rows of the split project: a write
 * that bypassed the view would otherwise land where the view hides it. VALIDATEd at the drop phase, once the
 * project's old rows are gone.
 */
export function splitCheckName(targetOid: number): string {
  return `safeshift_split_${targetOid}`;
}

export async function addSplitCheck(client: pg.Client, shared: TableRef, targetOid: number, filter: string): Promise<string> {
  const statement = `ALTER TABLE ${qualified(shared)} ADD CONSTRAINT ${quoteIdent(splitCheckName(targetOid))} CHECK ((\n${filter}\n) IS NOT TRUE) NOT VALID`;
  await client.query(statement);
  return statement;
}

export async function dropSplitCheck(client: pg.Client, shared: TableRef, targetOid: number): Promise<void> {
  await client.query(`ALTER TABLE ${qualified(shared)} DROP CONSTRAINT IF EXISTS ${quoteIdent(splitCheckName(targetOid))}`);
}

export async function recordSplit(client: pg.Client, s: SplitRow): Promise<void> {
  await client.query(`INSERT INTO ${SPLITS} (target_oid, shared_oid, live_schema, live_name, filter, run_id) VALUES ($1, $2, $3, $4, $5, $6)`,
    [s.targetOid, s.sharedOid, s.live.schema, s.live.name, s.filter, s.runId]);
}

export async function forgetSplit(client: pg.Client, targetOid: number): Promise<void> {
  await client.query(`DELETE FROM ${SPLITS} WHERE target_oid = $1`, [targetOid]);
}

export async function markSplitDone(client: pg.Client, targetOid: number): Promise<void> {
  await client.query(`UPDATE ${SPLITS} SET state = 'done' WHERE target_oid = $1`, [targetOid]);
}

/**
 * A split plan names the old name as its source; from the second split on that is the split view, and the rows to
 * split live in the shared table behind it: the plan is checked and run against that table.
 */
export async function withSplitSource<P extends { where?: string; source: TableRef }>(client: pg.Client, plan: P): Promise<P> {
  if (plan.where === undefined) return plan;
  const shared = await sharedBehind(client, plan.source);
  return shared ? { ...plan, source: shared } : plan;
}

/**
 * What a split needs of the catalog (preflight, target created in its transaction): the project table has exactly
 * the shared table's columns (the view is their UNION ALL); nothing else reads or references the shared table (it
 * keeps its rows of other projects under another name, and loses this project's at the drop phase: a view over it
 * or a foreign key to it would see the wrong rows); one split of a table at a time, until its drop phase (capture
 * is one per table); the name the shared table takes at the first split is free.
 */
export async function splitProblems(client: pg.Client, plan: { source: TableRef; target: TableRef; cutover?: { compatView?: boolean; newTableName?: string } }, sourceOid: number, targetOid: number): Promise<string[]> {
  const problems: string[] = [];
  if (plan.cutover?.compatView || plan.cutover?.newTableName) problems.push('cutover: compatView and newTableName do not apply to a split (where:): the old name becomes the split view, the project table keeps its own name');
  const { rows: [version] } = await client.query<{ v: number }>(`SELECT current_setting('server_version_num')::int AS v`);
  if (version!.v < 150000) problems.push('where: a split needs PostgreSQL 15 or later (the old name becomes a security_invoker view)');
  const { rows: cols } = await client.query<{ name: string; source: string | null; target: string | null }>(
    `SELECT coalesce(s.attname, t.attname)::text AS name, format_type(s.atttypid, s.atttypmod) AS source, format_type(t.atttypid, t.atttypmod) AS target
       FROM (SELECT * FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped) s
       FULL JOIN (SELECT * FROM pg_attribute WHERE attrelid = $2 AND attnum > 0 AND NOT attisdropped) t ON s.attname = t.attname
      WHERE s.attname IS NULL OR t.attname IS NULL OR s.atttypid <> t.atttypid OR s.atttypmod <> t.atttypmod ORDER BY 1`, [sourceOid, targetOid]);
  if (cols.length) {
    problems.push(`where: a split's target must have exactly the columns of ${displayName(plan.source)} (the old name becomes their UNION ALL): ` +
      cols.map((c) => `${c.name} is ${c.source ?? 'missing'} there and ${c.target ?? 'missing'} in ${displayName(plan.target)}`).join('; '));
  }
  const { rows: fks } = await client.query<{ name: string; on: string }>(
    `SELECT conname AS name, conrelid::regclass::text AS on FROM pg_constraint WHERE confrelid = $1 AND contype = 'f' AND conrelid <> $1 ORDER BY 1`, [sourceOid]);
  for (const fk of fks) problems.push(`where: foreign key ${fk.name} on ${fk.on} references ${displayName(plan.source)}; its rows of this project would leave it (split the referencing table first, or drop the key)`);
  const { rows: triggers } = await client.query<{ name: string }>(
    `SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal AND tgname NOT LIKE 'safeshift\\_%'
        AND tgname NOT IN (SELECT tgname FROM pg_trigger WHERE tgrelid = $2) ORDER BY 1`, [sourceOid, targetOid]);
  if (triggers.length) {
    problems.push(`where: ${displayName(plan.source)} has triggers (${triggers.map((t) => t.name).join(', ')}); a split does not carry them to the project table, ` +
      'so they would stop firing for the project\'s rows: give the project table triggers of the same names in the plan\'s create DDL (they fire from cutover on)');
  }
  const splits = await splitsOf(client, sourceOid);
  const live = splits[0]?.live;
  const { rows: readers } = await client.query<{ name: string }>(
    `SELECT DISTINCT r.ev_class::regclass::text AS name FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
      WHERE d.refobjid = $1 AND r.ev_class <> $1 AND ($2::text IS NULL OR r.ev_class <> to_regclass($2)) ORDER BY 1`, [sourceOid, live ? qualified(live) : null]);
  for (const v of readers) problems.push(`where: ${v.name} reads ${displayName(plan.source)}; after the split it would still read the shared table alone (make it read the old name through the split, or drop it first)`);
  const unfinished = splits.filter((s) => s.state !== 'done');
  if (unfinished.length) problems.push(`source: a split of ${displayName(plan.source)} has not passed its drop phase yet; split one project at a time`);
  if (!live && (await relationName(client, sourceOid)) && (await client.query(`SELECT to_regclass($1) IS NOT NULL AS e`, [qualified({ schema: plan.source.schema, name: nameWithSuffix(plan.source.name, '_shared') })])).rows[0]?.e) {
    problems.push(`source: ${displayName({ schema: plan.source.schema, name: nameWithSuffix(plan.source.name, '_shared') })} exists; the first split moves the shared table there`);
  }
  return problems;
}

/** What the cutover of a split does, for the approver (preflight's warnings, status, plan validate). */
export function splitNote(plan: { source: TableRef; target: TableRef; where?: string }): string {
  return `at cutover (a split, where: ${plan.where?.trim()}): ${displayName(plan.target)} takes these rows of ${displayName(plan.source)}, which stays live for the ` +
    'others; the old name is (from the first split of the table on) a view over the shared table (renamed <name>_shared) and every project table ' +
    'split from it, routing writes to the table where each row lives; the project table gets the shared table\'s grants, row security flags and ' +
    'policies; the project\'s rows stay hidden in the shared table until the drop phase deletes them, so a rollback before it loses nothing';
}
