/**
 * `cutover.compatView`: the old name as a view over the new table, carrying the old table's grants. Made after
 * the move (the objects followed the new table home by OID); recognised on swap back, which drops it when it is
 * the one cutover made (or one just like it). Its swap back is here too: the view and its twins are parked while
 * the original table takes the live name again (`parkCompatView`, `parkTwins`), and dropped once what read them
 * has moved back (`dropParked`).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { BoundObjects } from '../bound-objects';
import { tableOid } from '../catalog';
import { fatal } from '../errors';
import { compatViewSql, type CompatColumn } from '../projection';
import { moveTable } from '../swap';
import { sealRelation } from '../seal';
import { displayName, nameWithSuffix, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import { grantAsOnOldTable, type CapturedGrants } from './grants';
import { moveViews, type BoundView } from './views';
import { Mover, roleName } from './mover';
import type { CapturedRowSecurity } from './rls';

/** How the compatibility view says what it is (a person reading \d+ sees it too). */
const COMPAT_VIEW_COMMENT = 'safeshift compatibility view: the old name of';
/** How a twin says what it is; swap back finds twins by it. */
const TWIN_COMMENT = 'safeshift compatibility view twin, with the rights of';

function invokerRights(v: BoundView): boolean {
  return v.options.some((o) => o.name === 'security_invoker' && /^(true|on|1|yes)$/i.test(o.value));
}

/** Where the twin for views owned by `owner` lives: beside the old name, tagged by the owner. */
export function twinName(live: TableRef, owner: string): TableRef {
  const tag = createHash('sha256').update(owner).digest('hex').slice(0, 8);
  return { schema: live.schema, name: nameWithSuffix(live.name, `_compat_${tag}`) };
}

/**
 * A table with row-level security gets a `security_invoker` compatibility view. A view over the old table with
 * its owner's rights read it as its owner, under the policies as they apply to its owner; re-pointed at a
 * `security_invoker` view it would read as whoever queries it (PostgreSQL checks an invoker view's base relations
 * as the session's role, even below an owner's-rights view), so its rows and its readers' access would change.
 * Each owner of such views gets a twin of the compatibility view with the owner's rights, owned by that owner and
 * sealed (only its owner reads it), and that owner's views are re-pointed at it: they read the new table as their
 * owner, as before. Call while the live name is free (after the move, before `createCompatView`): the twin is made
 * at the live name, the views are recreated from their definitions (which name it), and the twin takes its own
 * name. Returns the OIDs of the views re-pointed, which `moveReaders` must then leave alone.
 */
export async function bindViewsToTwins(
  client: pg.Client,
  captured: CapturedRowSecurity & { live: TableRef; views: BoundView[] },
  over: TableRef,
  columns: CompatColumn[],
  options: { dryRun?: boolean } = {},
): Promise<{ statements: string[]; problems: string[]; notes: string[]; bound: Set<number> }> {
  const m = new Mover(client, options.dryRun ?? false);
  const bound = new Set<number>();
  const candidates = compatViewRights(captured) === 'invoker' ? captured.views.filter((v) => !invokerRights(v)) : [];
  if (candidates.length === 0) return { statements: [], problems: [], notes: [], bound };
  const owners = await m.rows<{ oid: number; owner: string }>(
    `SELECT oid::int8::float8 AS oid, pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = ANY ($1::oid[])`,
    [candidates.map((v) => String(v.oid))]);
  const byOwner = new Map<string, BoundView[]>();
  for (const v of candidates) {
    const owner = owners.find((o) => Number(o.oid) === v.oid)?.owner;
    if (owner !== undefined) byOwner.set(owner, [...(byOwner.get(owner) ?? []), v]);
  }
  const live = captured.live;
  for (const [owner, views] of byOwner) {
    const twin = twinName(live, owner);
    const made = await m.object(`compatibility view twin ${displayName(twin)} (owner's rights, owned by ${owner})`, async (run, note) => {
      await run(compatViewSql(live, over, columns, false));
      await run(`ALTER VIEW ${qualified(live)} OWNER TO ${quoteIdent(owner)}`);
      await run(`COMMENT ON VIEW ${qualified(live)} IS ${quoteLiteral(`${TWIN_COMMENT} ${owner}, over ${displayName(over)} for the views ${owner} owns that read ${displayName(live)}`)}`);
      const [rel] = await m.rows<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [qualified(live)]);
      for (const statement of await sealRelation(m.client, rel!.oid)) note(statement);
    });
    if (!made) continue;
    const before = m.problems.length;
    await moveViews(m, { views, rules: [] });
    await m.object(`compatibility view twin ${displayName(twin)}: its own name`, async (run) => {
      await run(`ALTER VIEW ${qualified(live)} RENAME TO ${quoteIdent(twin.name)}`);
    });
    if (m.problems.length === before) for (const v of views) bound.add(v.oid);
  }
  return { statements: m.statements, problems: m.problems, notes: m.notes, bound };
}

/** Swap back: the twins bindViewsToTwins made over the new table (`overOid`), by their comment. */
export async function twinsOver(client: pg.Client, overOid: number): Promise<{ oid: number; ref: TableRef }[]> {
  const { rows } = await client.query<{ oid: number; schema: string; name: string }>(
    `SELECT DISTINCT v.oid::int8::float8 AS oid, n.nspname AS schema, v.relname AS name
       FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace JOIN pg_rewrite r ON r.ev_class = v.oid
       JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1
      WHERE v.relkind = 'v' AND obj_description(v.oid, 'pg_class') LIKE $2 ORDER BY 2, 3`,
    [overOid, `${TWIN_COMMENT} %`]);
  return rows.map((r) => ({ oid: Number(r.oid), ref: { schema: r.schema, name: r.name } }));
}

/**
 * Whose rights the compatibility view reads the new table with. A table with row-level security needs the
 * reader's (`security_invoker`): with its owner's, every reader would bypass the policies. Without row-level
 * security, the owner's: PostgreSQL then checks only the view's own grants, column by column, as it checked the
 * old table's, so a role with grants on some columns, and a view over the old name with its owner's rights (which
 * through a `security_invoker` view would be checked as the session's role on the new table), read exactly as
 * before. Decided from the old table's flags, which the new table takes at cutover.
 */
export function compatViewRights(captured: CapturedRowSecurity): 'invoker' | 'owner' {
  return captured.rowSecurity.enabled || captured.rowSecurity.forced ? 'invoker' : 'owner';
}

/**
 * `cutover.compatView`, after the move: the new table has been given back its own name (`over`) and the old
 * name becomes a view over it (`compatViewSql`) carrying the old table's grants, so code that still uses the old
 * name keeps reading (and writing its plain columns) with the rights it had, under the new table's policies.
 * Grants go to the view only: the new table has them already (moveBoundObjects), and with `security_invoker`
 * the reader needs both.
 */
export async function createCompatView(
  client: pg.Client,
  captured: CapturedGrants & CapturedRowSecurity & { live: TableRef; views: BoundView[] },
  over: TableRef,
  columns: CompatColumn[],
  options: { dryRun?: boolean } = {},
): Promise<{ statements: string[]; problems: string[] }> {
  const m = new Mover(client, options.dryRun ?? false);
  const view = captured.live;
  const rights = compatViewRights(captured);
  const made = await m.object(`compatibility view ${displayName(view)}`, async (run) => {
    await run(compatViewSql(view, over, columns, rights === 'invoker'));
    await run(`COMMENT ON VIEW ${qualified(view)} IS ${quoteLiteral(`${COMPAT_VIEW_COMMENT} ${displayName(over)}`)}`);
  });
  if (made) {
    const [me] = await m.rows<{ owner: string }>(`SELECT current_user AS owner`, []);
    await grantAsOnOldTable(m, captured, view, me!.owner, new Set(columns.map((c) => c.name)));
  }
  // With the owner's rights the view's grants alone decide: nobody is refused whom the old table let in. Views
  // re-pointed at a twin (`captured.views` no longer lists them) keep their readers too.
  const refused = rights === 'owner' ? [] : [...columnOnlyReaders(captured, view, over), ...(await viewOnlyReaders(m, captured, view))];
  return { statements: m.statements, problems: [...m.problems, ...refused] };
}

/**
 * Roles that read the table only through a view over it (granted on the view, not on the table). Such a view
 * (owner's rights) is re-pointed at the compatibility view, whose `security_invoker` checks the privileges of the
 * role running the query on the new table, which it never had: it would be refused. Refused, named.
 */
async function viewOnlyReaders(m: Mover, captured: CapturedGrants & { views: BoundView[] }, table: TableRef): Promise<string[]> {
  const views = captured.views.filter((v) => !invokerRights(v));
  if (views.length === 0) return [];
  const onTable = new Set(captured.grants.filter((g) => g.privilege === 'SELECT').map((g) => g.grantee));
  const rows = await m.rows<{ view: string; grantee: string | null }>(
    `SELECT v.oid::regclass::text AS view, CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee
       FROM pg_class v CROSS JOIN LATERAL aclexplode(v.relacl) x
      WHERE v.oid = ANY ($1::oid[]) AND x.privilege_type = 'SELECT' AND x.grantee <> v.relowner ORDER BY 1, 2`,
    [views.map((v) => String(v.oid))]);
  return rows.filter((r) => !onTable.has(r.grantee) && !onTable.has(null)).map((r) =>
    `role ${roleName(r.grantee)} reads ${displayName(table)} only through view ${r.view}: the view would read the security_invoker ` +
    `compatibility view, which checks the role's own privileges on the new table, so it would be refused; grant it SELECT on the table, or use compatView: false`);
}

/**
 * Roles that hold a privilege on only some columns of the old table. Through a `security_invoker` view PostgreSQL
 * checks the reader's privilege on every column of the new table the view reads, whatever the query selects, so
 * they would be refused at the old name; granting them the other columns would widen their access. Refused, named.
 */
function columnOnlyReaders(captured: CapturedGrants, view: TableRef, over: TableRef): string[] {
  const whole = new Set(captured.grants.map((g) => JSON.stringify([g.grantee, g.privilege])));
  const partial = new Map<string, { grantee: string | null; privilege: string; columns: string[] }>();
  for (const g of captured.columnGrants) {
    const key = JSON.stringify([g.grantee, g.privilege]);
    if (whole.has(key)) continue;
    const entry = partial.get(key) ?? { grantee: g.grantee, privilege: g.privilege, columns: [] };
    entry.columns.push(g.column);
    partial.set(key, entry);
  }
  return [...partial.values()].map((p) =>
    `role ${roleName(p.grantee)} has ${p.privilege} on only some columns of ${displayName(view)} (${p.columns.join(', ')}): through the ` +
    `security_invoker view PostgreSQL checks ${p.privilege} on every column of ${displayName(over)} the view reads, so it would be refused at ` +
    `${displayName(view)}; grant it ${p.privilege} on the whole table, or use compatView: false`);
}

/**
 * Swap back in `compatView` mode: true when `view` is a view that reads `overOid` and nothing else, i.e. the
 * compatibility view cutover made (or one just like it), so dropping it loses nothing.
 */
export async function isCompatViewOver(client: pg.Client, view: TableRef, overOid: number): Promise<boolean> {
  const { rows } = await client.query<{ reads: number[] }>(
    `SELECT array_agg(DISTINCT d.refobjid::int8::float8) AS reads
       FROM pg_class v JOIN pg_namespace n ON n.oid = v.relnamespace
       JOIN pg_rewrite r ON r.ev_class = v.oid
       JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> v.oid
      WHERE n.nspname = $1 AND v.relname = $2 AND v.relkind = 'v'`,
    [view.schema, view.name]);
  const reads = rows[0]?.reads ?? [];
  return reads.length === 1 && Number(reads[0]) === overOid;
}

/**
 * What the swap back of the view needs from src/bound-objects.ts, passed in by the caller: that module imports
 * this one (the cutover's side), so importing it back would be a cycle.
 */
export interface ReaderMoves {
  /** captureBoundObjects: what is bound to `oid`, at `live`, as SQL naming the live name. */
  capture: (oid: number, live: TableRef) => Promise<BoundObjects>;
  /** moveReaders: recreate the captured readers on what has the live name; then prove `fromOid` holds nothing. */
  moveReaders: (captured: BoundObjects, fromOid: number) => Promise<{ statements: string[]; problems: string[] }>;
}

export interface ParkedView {
  oid: number;
  /** Where it waits until what reads it has moved to the original table. */
  at: TableRef;
  readers: BoundObjects;
}

/**
 * Swap back: the compatibility view leaves the live name (the original table needs it) but is kept until what
 * reads it has moved back; it must still be just a view of the new table. A view already gone is fine.
 */
export async function parkCompatView(
  client: pg.Client, view: TableRef, newTableOid: number, home: TableRef, moves: ReaderMoves,
): Promise<ParkedView | undefined> {
  const oid = await tableOid(client, view);
  if (oid === undefined) return undefined;
  if (!(await isCompatViewOver(client, view, newTableOid))) {
    throw fatal('NotOurs', `cannot swap back: ${displayName(view)} is no longer the compatibility view over ${displayName(home)}; it was replaced after cutover`);
  }
  const readers = await moves.capture(oid, view);
  const at = { schema: view.schema, name: nameWithSuffix(view.name, '_safeshift_compat') };
  await moveTable(client, view, at);
  return { oid, at, readers };
}

/**
 * Swap back: the twins of the compatibility view (views with their owner's rights read through them,
 * `bindViewsToTwins`). Each visits the live name (free once the compatibility view is parked) while what reads it
 * is captured, so the definitions name the live name, where the original table is about to be again.
 */
export async function parkTwins(client: pg.Client, newTableOid: number, live: TableRef, moves: ReaderMoves): Promise<ParkedView[]> {
  const parked: ParkedView[] = [];
  for (const twin of await twinsOver(client, newTableOid)) {
    await moveTable(client, twin.ref, live);
    const readers = await moves.capture(twin.oid, live);
    await moveTable(client, live, twin.ref);
    parked.push({ oid: twin.oid, at: twin.ref, readers });
  }
  return parked;
}

/**
 * Swap back, once the original table has the live name: what read a parked view (the compatibility view, or a
 * twin) is recreated there, then the view is dropped (RESTRICT). `what` names the view in a refusal. Returns the
 * statements, for the audit log.
 */
export async function dropParked(client: pg.Client, parked: ParkedView, what: string, moves: ReaderMoves): Promise<string[]> {
  const readers = await moves.moveReaders(parked.readers, parked.oid);
  if (readers.problems.length) throw fatal('SwapBackUnsafe', `cannot swap back, these read ${what} and cannot move to the original table: ${readers.problems.join('; ')}`);
  const drop = `DROP VIEW ${qualified(parked.at)} RESTRICT`;
  await client.query(drop);
  return [...readers.statements, drop];
}
