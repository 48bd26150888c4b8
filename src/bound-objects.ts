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
 */
import type pg from 'pg';
import { relationName } from './catalog';
import { compatViewSql, type CompatColumn } from './projection';
import { displayName, qualified, quoteIdent, quoteLiteral, sameTableRef, type TableRef } from './sql';
import { advanceOwnedSequences, moveSharedSequences, moveTable, whileAt } from './swap';

export interface BoundGrant {
  /** Role name; null for PUBLIC. */
  grantee: string | null;
  privilege: string;
  grantable: boolean;
}

export interface BoundObjects {
  live: TableRef;
  oid: number;
  owner: string;
  /** Foreign keys of other tables (or of the target) referencing the table. `definition` names the live name. */
  foreignKeys: {
    name: string;
    tableOid: number;
    table: TableRef;
    columns: string[];
    referencedColumns: string[];
    definition: string;
    validated: boolean;
    enforced: boolean;
  }[];
  /** Foreign keys of the table to itself: part of the table, the target DDL must define its own. */
  selfForeignKeys: { name: string; definition: string; columns: string[] }[];
  /** First-level views (views on views keep their OIDs when these are replaced). `definition` names the live name. */
  views: { oid: number; ref: TableRef; definition: string; options: { name: string; value: string }[] }[];
  materializedViews: TableRef[];
  /** Rewrite rules of other relations that read or write the table (not views). */
  rules: { name: string; table: TableRef }[];
  /** Policies of other tables whose expressions read the table. */
  foreignPolicies: { name: string; tableOid: number; table: TableRef; using: string | null; withCheck: string | null }[];
  /** Functions with SQL-standard bodies (BEGIN ATOMIC) that read the table: CREATE OR REPLACE keeps their OID. */
  functions: { signature: string; definition: string }[];
  /** Anything else bound to the table or its row type, as pg_describe_object names it: not movable. */
  otherDependents: string[];
  /** Sequences owned by the table's columns. */
  sequences: { sequence: TableRef; column: string; identity: boolean }[];
  grants: BoundGrant[];
  columnGrants: (BoundGrant & { column: string })[];
  rowSecurity: { enabled: boolean; forced: boolean };
  /** relreplident: d default, n nothing, f full, i index (its columns in `replicaIdentityColumns`). */
  replicaIdentity: string;
  replicaIdentityColumns: string[] | null;
  policies: {
    name: string;
    permissive: boolean;
    /** ALL, SELECT, INSERT, UPDATE or DELETE. */
    command: string;
    /** Role names; null stands for PUBLIC. */
    roles: (string | null)[];
    using: string | null;
    withCheck: string | null;
    comment: string | null;
  }[];
  triggers: { name: string; definition: string; enabled: string; comment: string | null }[];
  comment: string | null;
  columnComments: { column: string; comment: string }[];
  publications: { name: string; rowFilter: string | null; columns: string[] | null }[];
}

export interface ForeignKeyRef {
  table: TableRef;
  name: string;
}

export interface MoveOptions {
  /** Preflight: every object under its own SAVEPOINT, failures collected in `problems`; no sequence is advanced. */
  dryRun?: boolean;
  /**
   * `cutover.compatView`: leave views, other tables' policies and SQL functions that read the table (and the
   * proof that the old table is free) to `moveReaders`, once the compatibility view has the live name.
   */
  readersLater?: boolean;
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
}

const PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN']);
const POLICY_COMMANDS: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
const TRIGGER_STATES: Record<string, string> = { D: 'DISABLE TRIGGER', R: 'ENABLE REPLICA TRIGGER', A: 'ENABLE ALWAYS TRIGGER' };
const SAVEPOINT = 'safeshift_bound_object';
/** safeshift's own change-capture triggers: never carried to the new table. */
const OWN_TRIGGER_PREFIX = 'safeshift_';
/** How the compatibility view says what it is (a person reading \d+ sees it too). */
const COMPAT_VIEW_COMMENT = 'safeshift compatibility view: the old name of';

/** PostgreSQL's deparsed SQL sometimes ends with `;`; embedded in a larger statement it must not. */
function withoutSemicolon(sql: string): string {
  return sql.trim().replace(/;$/, '').trimEnd();
}

function grantee(role: string | null): string {
  return role === null ? 'PUBLIC' : quoteIdent(role);
}

function roleName(role: string | null): string {
  return role === null ? 'PUBLIC' : role;
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
    const q = async <T extends pg.QueryResultRow>(text: string): Promise<T[]> => (await client.query<T>(text, [oid])).rows;

    const [rel] = await q<{ owner: string; rls: boolean; force: boolean; replident: string; comment: string | null }>(
      `SELECT pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
              c.relreplident AS replident, obj_description(c.oid, 'pg_class') AS comment
         FROM pg_class c WHERE c.oid = $1`);

    type FkRow = Omit<BoundObjects['foreignKeys'][number], 'table'> & { schema: string; relname: string; self: boolean };
    const fks = await q<FkRow>(
      `SELECT c.conname AS name, c.conrelid::int8::float8 AS "tableOid", n.nspname AS schema, t.relname AS relname,
              c.conrelid = c.confrelid AS self,
              ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
              ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.num ORDER BY k.ord) AS "referencedColumns",
              pg_get_constraintdef(c.oid) AS definition, c.convalidated AS validated,
              coalesce((to_jsonb(c) ->> 'conenforced')::boolean, true) AS enforced
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE c.contype = 'f' AND c.confrelid = $1 AND c.conparentid = 0
        ORDER BY n.nspname, t.relname, c.conname`);

    const rewrites = await q<{ oid: number; schema: string; name: string; kind: string; rule: string; definition: string | null; options: { name: string; value: string }[] }>(
      `SELECT DISTINCT v.oid::int8::float8 AS oid, vn.nspname AS schema, v.relname AS name, v.relkind::text AS kind, r.rulename AS rule,
              CASE WHEN v.relkind = 'v' AND r.rulename = '_RETURN' THEN pg_get_viewdef(v.oid, true) END AS definition,
              coalesce((SELECT jsonb_agg(jsonb_build_object('name', o.option_name, 'value', o.option_value))
                          FROM pg_options_to_table(v.reloptions) o), '[]'::jsonb) AS options
         FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
         JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND r.ev_class <> $1
        ORDER BY 2, 3, 5`);

    const foreignPolicies = await q<{ name: string; tableOid: number; schema: string; relname: string; using: string | null; withCheck: string | null }>(
      `SELECT DISTINCT p.polname AS name, p.polrelid::int8::float8 AS "tableOid", n.nspname AS schema, c.relname AS relname,
              pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS "withCheck"
         FROM pg_depend d JOIN pg_policy p ON p.oid = d.objid
         JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND p.polrelid <> $1
        ORDER BY 3, 4, 1`);

    const functions = await q<{ signature: string; definition: string }>(
      `SELECT DISTINCT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition
         FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
        WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1
          AND p.prosqlbody IS NOT NULL
        ORDER BY 1`);

    // Normal dependencies on the table or its row type that none of the lists above covers. Objects of the table
    // itself (indexes, constraints, triggers, policies, owned sequences) depend on it automatically or only on
    // its own columns, and go with it.
    const others = await q<{ what: string }>(
      `SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) AS what
         FROM pg_depend d
        WHERE d.deptype = 'n'
          AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = $1)
               OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = (SELECT reltype FROM pg_class WHERE oid = $1)))
          AND NOT (d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass)
          AND NOT (d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass)
          AND NOT (d.classid = 'pg_publication_rel'::regclass AND d.refclassid = 'pg_class'::regclass)
          AND NOT (d.classid = 'pg_constraint'::regclass
                   AND EXISTS (SELECT 1 FROM pg_constraint c WHERE c.oid = d.objid AND (c.contype = 'f' OR c.conrelid = $1)))
          AND NOT (d.classid = 'pg_trigger'::regclass AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.oid = d.objid AND t.tgrelid = $1))
          AND NOT (d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_class'::regclass
                   AND EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = d.objid AND p.prosqlbody IS NOT NULL))
          AND NOT (d.classid = 'pg_class'::regclass AND d.objid = $1)
          -- The table's own column defaults and generated expressions: part of the table, like its indexes.
          AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (SELECT 1 FROM pg_attrdef ad WHERE ad.oid = d.objid AND ad.adrelid = $1))
        ORDER BY 1`);

    const sequences = await q<{ schema: string; name: string; column: string; identity: boolean }>(
      `SELECT sn.nspname AS schema, s.relname AS name, a.attname AS column, d.deptype = 'i' AS identity
         FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
         JOIN pg_namespace sn ON sn.oid = s.relnamespace
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.deptype IN ('a', 'i')
        ORDER BY a.attnum`);

    const grants = await q<BoundGrant>(
      `SELECT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee,
              x.privilege_type AS privilege, x.is_grantable AS grantable
         FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) x WHERE c.oid = $1
        ORDER BY 1 NULLS FIRST, 2`);

    const columnGrants = await q<BoundGrant & { column: string }>(
      `SELECT a.attname AS column, CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee,
              x.privilege_type AS privilege, x.is_grantable AS grantable
         FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) x
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum, 2 NULLS FIRST, 3`);

    const replicaIndex = await q<{ columns: string[] }>(
      `SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) AS columns
         FROM pg_index i WHERE i.indrelid = $1 AND i.indisreplident`);

    const policies = await q<BoundObjects['policies'][number] & { cmd: string }>(
      `SELECT p.polname AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
              ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r) AS roles,
              pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS "withCheck",
              obj_description(p.oid, 'pg_policy') AS comment
         FROM pg_policy p WHERE p.polrelid = $1 ORDER BY p.polname`);

    const triggers = await q<BoundObjects['triggers'][number]>(
      `SELECT t.tgname AS name, pg_get_triggerdef(t.oid) AS definition, t.tgenabled::text AS enabled,
              obj_description(t.oid, 'pg_trigger') AS comment
         FROM pg_trigger t WHERE t.tgrelid = $1 AND NOT t.tgisinternal AND t.tgparentid = 0 ORDER BY t.tgname`);

    const columnComments = await q<{ column: string; comment: string }>(
      `SELECT a.attname AS column, col_description(a.attrelid, a.attnum) AS comment
         FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
          AND col_description(a.attrelid, a.attnum) IS NOT NULL ORDER BY a.attnum`);

    const publications = await q<{ name: string; rowFilter: string | null; columns: string[] | null }>(
      `SELECT p.pubname AS name, pg_get_expr(pr.prqual, pr.prrelid) AS "rowFilter",
              CASE WHEN pr.prattrs IS NOT NULL THEN
                ARRAY(SELECT a.attname::text FROM unnest(pr.prattrs::int2[]) WITH ORDINALITY k(num, ord)
                        JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.num ORDER BY k.ord) END AS columns
         FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
        WHERE pr.prrelid = $1 ORDER BY p.pubname`);

    return {
      live: { schema: live.schema, name: live.name },
      oid,
      owner: rel!.owner,
      foreignKeys: fks.filter((f) => !f.self).map((f) => ({
        name: f.name, tableOid: Number(f.tableOid), table: { schema: f.schema, name: f.relname },
        columns: f.columns, referencedColumns: f.referencedColumns, definition: f.definition,
        validated: f.validated, enforced: f.enforced,
      })),
      selfForeignKeys: fks.filter((f) => f.self).map((f) => ({ name: f.name, definition: f.definition, columns: f.columns })),
      views: rewrites.filter((r) => r.definition !== null).map((r) => ({
        oid: Number(r.oid), ref: { schema: r.schema, name: r.name }, definition: r.definition!, options: r.options,
      })),
      materializedViews: rewrites.filter((r) => r.kind === 'm').map((r) => ({ schema: r.schema, name: r.name })),
      rules: rewrites.filter((r) => r.definition === null && r.kind !== 'm').map((r) => ({ name: r.rule, table: { schema: r.schema, name: r.name } })),
      foreignPolicies: foreignPolicies.map((p) => ({
        name: p.name, tableOid: Number(p.tableOid), table: { schema: p.schema, name: p.relname }, using: p.using, withCheck: p.withCheck,
      })),
      functions,
      otherDependents: others.map((o) => o.what),
      sequences: sequences.map((s) => ({ sequence: { schema: s.schema, name: s.name }, column: s.column, identity: s.identity })),
      grants,
      columnGrants,
      rowSecurity: { enabled: rel!.rls, forced: rel!.force },
      replicaIdentity: rel!.replident,
      replicaIdentityColumns: replicaIndex[0]?.columns ?? null,
      policies: policies.map(({ cmd, ...p }) => ({ ...p, command: POLICY_COMMANDS[cmd] ?? cmd })),
      triggers: triggers.filter((t) => !t.name.startsWith(OWN_TRIGGER_PREFIX)),
      comment: rel!.comment,
      columnComments,
      publications,
    };
  });
}

/** Runs statements object by object: in a dry run each object under a SAVEPOINT, failures become problems. */
class Mover {
  readonly statements: string[] = [];
  readonly problems: string[] = [];
  readonly skipped: string[] = [];

  constructor(private readonly client: pg.Client, private readonly dryRun: boolean) {}

  /** One object: its statements succeed together or (dry run) fail together as one problem naming `label`. */
  async object(
    label: string,
    fn: (run: (sql: string) => Promise<pg.QueryResult>, note: (sql: string) => void) => Promise<void>,
  ): Promise<boolean> {
    const ran: string[] = [];
    const run = async (sql: string) => {
      const result = await this.client.query(sql);
      ran.push(sql);
      return result;
    };
    /** Statements run by a helper (src/swap.ts), recorded in the audit log as their shape. */
    const note = (sql: string) => { ran.push(sql); };
    if (!this.dryRun) {
      try {
        await fn(run, note);
      } catch (err) {
        // Keep the error itself (its SQLSTATE decides whether the cutover is retried); name the object in it.
        if (err instanceof Error) err.message = `${label}: ${err.message}`;
        throw err;
      }
      this.statements.push(...ran);
      return true;
    }
    await this.client.query(`SAVEPOINT ${SAVEPOINT}`);
    try {
      await fn(run, note);
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      this.statements.push(...ran);
      return true;
    } catch (err) {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
      this.problems.push(`${label}: ${(err as Error).message}`);
      return false;
    }
  }

  async rows<T extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<T[]> {
    return (await this.client.query<T>(text, values)).rows;
  }
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
  const dryRun = options.dryRun ?? false;
  const m = new Mover(client, dryRun);
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
  const newTable = qualified(to.ref);
  const shown = displayName(to.ref);

  const [target] = await m.rows<{ owner: string; rls: boolean; force: boolean; replident: string; comment: string | null }>(
    `SELECT pg_get_userbyid(relowner) AS owner, relrowsecurity AS rls, relforcerowsecurity AS force,
            relreplident AS replident, obj_description(oid, 'pg_class') AS comment FROM pg_class WHERE oid = $1`, [to.oid]);
  const columns = new Set((await m.rows<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped`, [to.oid])).map((r) => r.name));
  if (target!.owner !== captured.owner) {
    m.problems.push(`owner: ${shown} is owned by ${target!.owner}, the old table by ${captured.owner} (not changed; the old owner's privileges are granted below)`);
  }

  // 1. Grants on the table. The new owner holds every privilege already.
  await grantAsOnOldTable(m, captured, to.ref, target!.owner, columns);
  // Privileges the new table has and the old one had not (default privileges, target DDL): widened access.
  const had = new Set(captured.grants.map((g) => JSON.stringify([g.grantee, g.privilege])));
  const extra = await m.rows<{ grantee: string | null; privilege: string }>(
    `SELECT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee, x.privilege_type AS privilege
       FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) x WHERE c.oid = $1 AND x.grantee <> c.relowner ORDER BY 1 NULLS FIRST, 2`,
    [to.oid]);
  for (const e of extra) {
    if (!had.has(JSON.stringify([e.grantee, e.privilege])) && e.grantee !== captured.owner) {
      m.problems.push(`grant ${e.privilege} on ${shown} to ${roleName(e.grantee)}: the new table has it, the old table did not (default privileges or target DDL); not revoked`);
    }
  }

  // 2. Row-level security: flags the old table had are turned on (never off: the target DDL may want them).
  if (captured.rowSecurity.enabled && !target!.rls) {
    await m.object(`row level security on ${shown}`, async (run) => { await run(`ALTER TABLE ${newTable} ENABLE ROW LEVEL SECURITY`); });
  }
  if (captured.rowSecurity.forced && !target!.force) {
    await m.object(`forced row level security on ${shown}`, async (run) => { await run(`ALTER TABLE ${newTable} FORCE ROW LEVEL SECURITY`); });
  }
  const existingPolicies = new Set((await m.rows<{ name: string }>(`SELECT polname AS name FROM pg_policy WHERE polrelid = $1`, [to.oid])).map((r) => r.name));
  for (const p of captured.policies) {
    const label = `policy ${p.name} on ${shown}`;
    if (existingPolicies.has(p.name)) { m.skipped.push(`${label}: the new table defines its own`); continue; }
    if (!Object.values(POLICY_COMMANDS).includes(p.command)) { m.problems.push(`${label}: unknown command ${p.command}`); continue; }
    await m.object(label, async (run) => {
      const roles = p.roles.length ? p.roles.map(grantee).join(', ') : 'PUBLIC';
      await run(`CREATE POLICY ${quoteIdent(p.name)} ON ${newTable} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${p.command} TO ${roles}` +
        (p.using !== null ? ` USING (${p.using})` : '') + (p.withCheck !== null ? ` WITH CHECK (${p.withCheck})` : ''));
      if (p.comment !== null) await run(`COMMENT ON POLICY ${quoteIdent(p.name)} ON ${newTable} IS ${quoteLiteral(p.comment)}`);
    });
  }

  // 3. Triggers: the captured definition says ON <live name>, which is the new table now.
  const existingTriggers = new Set((await m.rows<{ name: string }>(`SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1`, [to.oid])).map((r) => r.name));
  for (const t of captured.triggers) {
    const label = `trigger ${t.name} on ${shown}`;
    if (t.name.startsWith(OWN_TRIGGER_PREFIX)) continue;
    if (existingTriggers.has(t.name)) { m.skipped.push(`${label}: the new table defines its own`); continue; }
    await m.object(label, async (run) => {
      await run(withoutSemicolon(t.definition));
      const state = TRIGGER_STATES[t.enabled];
      if (state) await run(`ALTER TABLE ${newTable} ${state} ${quoteIdent(t.name)}`);
      if (t.comment !== null) await run(`COMMENT ON TRIGGER ${quoteIdent(t.name)} ON ${newTable} IS ${quoteLiteral(t.comment)}`);
    });
  }

  // 4. Comments, where the new table has none.
  if (captured.comment !== null) {
    if (target!.comment !== null) m.skipped.push(`comment on ${shown}: the new table has its own`);
    else await m.object(`comment on ${shown}`, async (run) => { await run(`COMMENT ON TABLE ${newTable} IS ${quoteLiteral(captured.comment!)}`); });
  }
  const existingColumnComments = new Set((await m.rows<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND col_description(attrelid, attnum) IS NOT NULL`,
    [to.oid])).map((r) => r.name));
  for (const c of captured.columnComments) {
    const label = `comment on column ${shown}.${c.column}`;
    if (!columns.has(c.column)) { m.problems.push(`${label}: the new table has no such column; comment not kept`); continue; }
    if (existingColumnComments.has(c.column)) { m.skipped.push(`${label}: the new table has its own`); continue; }
    await m.object(label, async (run) => { await run(`COMMENT ON COLUMN ${newTable}.${quoteIdent(c.column)} IS ${quoteLiteral(c.comment)}`); });
  }

  // 5. Replica identity (what logical decoding, e.g. Supabase Realtime, sends for UPDATE and DELETE).
  if (captured.replicaIdentity !== 'd' && target!.replident === 'd') {
    const label = `replica identity of ${shown}`;
    if (captured.replicaIdentity === 'f' || captured.replicaIdentity === 'n') {
      const kind = captured.replicaIdentity === 'f' ? 'FULL' : 'NOTHING';
      await m.object(label, async (run) => { await run(`ALTER TABLE ${newTable} REPLICA IDENTITY ${kind}`); });
    } else if (captured.replicaIdentity === 'i' && captured.replicaIdentityColumns) {
      const [index] = await m.rows<{ schema: string; name: string }>(
        `SELECT n.nspname AS schema, c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
            AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) = $2::text[]
          ORDER BY c.relname LIMIT 1`, [to.oid, captured.replicaIdentityColumns]);
      if (index) await m.object(label, async (run) => { await run(`ALTER TABLE ${newTable} REPLICA IDENTITY USING INDEX ${quoteIdent(index.name)}`); });
      else m.problems.push(`${label}: the old table used an index on (${captured.replicaIdentityColumns.join(', ')}); the new table has no unique index on those columns`);
    }
  }

  // 6. Sequences: serial sequences the new defaults share change owner (transactional); in a real cutover every
  // sequence of the new table is then moved past its column's values and past the old table's own sequence.
  await m.object(`sequences of ${shown}`, async (run, note) => {
    const moved = await moveSharedSequences(client, fromOid, to.oid, to.ref);
    for (const seq of moved) note(`ALTER SEQUENCE ${seq} OWNED BY ${newTable}.<the column whose default uses it>`);
    if (!dryRun) {
      await advanceOwnedSequences(client, to.ref, to.oid);
      note(`SELECT setval(<each sequence owned by ${newTable}>, max(<its column>)) -- where that is ahead`);
      const pairs = await m.rows<{ column: string; newSeq: string; oldSeq: string }>(
        `SELECT a.attname AS column, pg_get_serial_sequence($2, a.attname) AS "newSeq", pg_get_serial_sequence($3, a.attname) AS "oldSeq"
           FROM pg_attribute a
          WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            AND pg_get_serial_sequence($2, a.attname) IS NOT NULL AND pg_get_serial_sequence($3, a.attname) IS NOT NULL
            AND pg_get_serial_sequence($2, a.attname) <> pg_get_serial_sequence($3, a.attname)`,
        [to.oid, newTable, qualified(retired)]);
      for (const p of pairs) {
        // Never hand out a value the old table's own sequence already gave (rows may have been deleted since).
        await run(`SELECT setval(${quoteLiteral(p.newSeq)}, o) FROM (SELECT pg_sequence_last_value(${quoteLiteral(p.oldSeq)}::regclass) AS o) x
                    WHERE o IS NOT NULL AND o > coalesce(pg_sequence_last_value(${quoteLiteral(p.newSeq)}::regclass), o - 1)`);
      }
    }
  });

  // 7. Inbound foreign keys: dropped and re-added NOT VALID in one ALTER TABLE (one lock on the referencing table).
  const notValidForeignKeys: ForeignKeyRef[] = [];
  for (const fk of captured.foreignKeys) {
    const table = await relationName(client, fk.tableOid);
    const label = `foreign key ${fk.name} on ${table ? displayName(table) : displayName(fk.table)}`;
    if (!table) { m.problems.push(`${label}: the referencing table is gone`); continue; }
    if (!fk.definition.startsWith('FOREIGN KEY (')) { m.problems.push(`${label}: unexpected definition ${fk.definition}`); continue; }
    const [now] = await m.rows<{ confrelid: number }>(
      `SELECT confrelid::int8::float8 AS confrelid FROM pg_constraint WHERE conrelid = $1 AND conname = $2 AND contype = 'f'`, [fk.tableOid, fk.name]);
    if (now && Number(now.confrelid) === to.oid) { m.skipped.push(`${label}: already references ${shown}`); continue; }
    if (!now || Number(now.confrelid) !== fromOid) { m.problems.push(`${label}: no longer references the old table; left as it is`); continue; }
    // An FK that was valid comes back NOT VALID (no scan under the lock) and is validated after commit; one that
    // was NOT VALID or NOT ENFORCED already says so in its definition and stays so.
    const notValid = fk.validated && fk.enforced;
    const ok = await m.object(label, async (run) => {
      await run(`ALTER TABLE ${qualified(table)} DROP CONSTRAINT ${quoteIdent(fk.name)}, ADD CONSTRAINT ${quoteIdent(fk.name)} ${withoutSemicolon(fk.definition)}${notValid ? ' NOT VALID' : ''}`);
      const [after] = await m.rows<{ confrelid: number }>(
        `SELECT confrelid::int8::float8 AS confrelid FROM pg_constraint WHERE conrelid = $1 AND conname = $2 AND contype = 'f'`, [fk.tableOid, fk.name]);
      if (!after || Number(after.confrelid) !== to.oid) throw new Error(`re-added constraint does not reference ${shown}`);
    });
    if (ok && notValid) notValidForeignKeys.push({ table, name: fk.name });
  }
  for (const fk of captured.selfForeignKeys) {
    // The new table's own self-reference: by name, or (the plan's DDL names it after the new table) by its columns.
    const [own] = await m.rows<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_constraint c WHERE c.conrelid = $1 AND c.confrelid = $1 AND c.contype = 'f'
          AND (c.conname = $2 OR array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                                        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)::text[] = $3::text[])`,
      [to.oid, fk.name, fk.columns]);
    if (own!.n > 0) m.skipped.push(`self-referencing foreign key ${fk.name}: the new table defines its own`);
    else m.problems.push(`self-referencing foreign key ${fk.name} of ${displayName(live)} (${fk.definition}): part of the old table, not moved; the target DDL must define its own`);
  }

  // 11. Publications: membership is by OID. Row filter and column list kept; a column list naming a column the
  // new table lacks cannot be kept safely (publishing every column could leak data), so that one is not moved.
  const memberOf = new Set((await m.rows<{ name: string }>(
    `SELECT p.pubname AS name FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = $1`, [to.oid])).map((r) => r.name));
  for (const p of captured.publications) {
    const label = `publication ${p.name}`;
    const missing = (p.columns ?? []).filter((c) => !columns.has(c));
    if (missing.length) {
      m.problems.push(`${label}: its column list names ${missing.join(', ')}, which ${shown} lacks; membership not moved`);
      continue;
    }
    await m.object(label, async (run) => {
      const [still] = await m.rows<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2`,
        [p.name, fromOid]);
      if (still!.n > 0) await run(`ALTER PUBLICATION ${quoteIdent(p.name)} DROP TABLE ONLY ${qualified(retired)}`);
      if (memberOf.has(p.name)) { m.skipped.push(`${label}: ${shown} is already a member`); return; }
      const cols = p.columns ? ` (${p.columns.map(quoteIdent).join(', ')})` : '';
      await run(`ALTER PUBLICATION ${quoteIdent(p.name)} ADD TABLE ONLY ${newTable}${cols}${p.rowFilter !== null ? ` WHERE (${p.rowFilter})` : ''}`);
    });
  }

  if (!options.readersLater) {
    await moveReadersWith(m, client, captured);
    await proveDroppable(client, retired, m.problems);
  }
  return { statements: m.statements, notValidForeignKeys, problems: m.problems, skipped: m.skipped };
}

/**
 * Steps 8-10 of the move: what reads the table by OID (views, other tables' policies, SQL-standard function
 * bodies) is recreated from its captured definition, which names the live name; whatever has the live name then
 * is what they read from now on: the new table, or with `cutover.compatView` the compatibility view.
 */
async function moveReadersWith(m: Mover, client: pg.Client, captured: BoundObjects): Promise<void> {
  const live = captured.live;
  // 8. Views: CREATE OR REPLACE keeps the view's OID (views on it, grants, owner, comments stay).
  for (const v of captured.views) {
    const label = `view ${displayName(v.ref)}`;
    const ref = await relationName(client, v.oid);
    if (!ref) { m.problems.push(`${label}: gone`); continue; }
    const withOptions = v.options.length
      ? ` WITH (${v.options.map((o) => `${quoteIdent(o.name)} = ${quoteLiteral(o.value)}`).join(', ')})` : '';
    await m.object(label, async (run) => {
      await run(`CREATE OR REPLACE VIEW ${qualified(ref)}${withOptions} AS\n${withoutSemicolon(v.definition)}`);
    });
  }
  for (const v of captured.materializedViews) {
    m.problems.push(`materialized view ${displayName(v)}: reads the old table and cannot be re-pointed without being rebuilt (REFRESH would read the old table; it also keeps the old table from being dropped); recreate it on ${displayName(live)}`);
  }
  for (const r of captured.rules) {
    m.problems.push(`rule ${r.name} on ${displayName(r.table)}: uses the old table; not moved`);
  }

  // 9. Policies of other tables that read the table: ALTER POLICY re-parses the captured expressions.
  for (const p of captured.foreignPolicies) {
    const table = await relationName(client, p.tableOid);
    const label = `policy ${p.name} on ${table ? displayName(table) : displayName(p.table)}`;
    if (!table) { m.problems.push(`${label}: the table is gone`); continue; }
    await m.object(label, async (run) => {
      await run(`ALTER POLICY ${quoteIdent(p.name)} ON ${qualified(table)}` +
        (p.using !== null ? ` USING (${p.using})` : '') + (p.withCheck !== null ? ` WITH CHECK (${p.withCheck})` : ''));
    });
  }

  // 10. SQL-standard function bodies: CREATE OR REPLACE keeps the OID.
  for (const f of captured.functions) {
    await m.object(`function ${f.signature}`, async (run) => { await run(withoutSemicolon(f.definition)); });
  }
  for (const what of captured.otherDependents) {
    m.problems.push(`${what}: depends on the old table (or its row type); not moved`);
  }
}

/** Step 12, the proof: nothing else still holds the old table (or view). Tried, then undone. */
async function proveDroppable(client: pg.Client, retired: TableRef, problems: string[], kind: 'TABLE' | 'VIEW' = 'TABLE'): Promise<void> {
  await client.query(`SAVEPOINT ${SAVEPOINT}`);
  try {
    await client.query(`DROP ${kind} ${qualified(retired)} RESTRICT`);
  } catch (err) {
    const detail = (err as { detail?: string }).detail;
    problems.push(`old ${kind.toLowerCase()} ${displayName(retired)} cannot be dropped without CASCADE: ${(err as Error).message}${detail ? ` (${detail.replace(/\n/g, '; ')})` : ''}`);
  }
  await client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
  await client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
}

/**
 * `cutover.compatView`, after `createCompatView` (and in swap back, after the original table has the live name
 * again): the readers `moveBoundObjects` left (`readersLater`) are recreated on whatever now has the live name.
 * With the compatibility view there, they keep the old columns they were written against. Then the proof that
 * `fromOid` (the old table, or in swap back the view) holds nothing any more.
 */
export async function moveReaders(client: pg.Client, captured: BoundObjects, fromOid: number, options: MoveOptions = {}): Promise<Pick<MoveResult, 'statements' | 'problems'>> {
  const m = new Mover(client, options.dryRun ?? false);
  await moveReadersWith(m, client, captured);
  const from = await relationName(client, fromOid);
  const [rel] = await m.rows<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = $1`, [fromOid]);
  if (!from) m.problems.push(`relation ${fromOid} is gone`);
  else await proveDroppable(client, from, m.problems, rel?.kind === 'v' ? 'VIEW' : 'TABLE');
  return { statements: m.statements, problems: m.problems };
}

/**
 * The old table's grants, table and column level, given on `on` (the new table, or the compatibility view);
 * `owner` (who holds every privilege on `on` already) is skipped, as are columns `on` lacks (a problem each).
 */
async function grantAsOnOldTable(m: Mover, captured: BoundObjects, on: TableRef, owner: string, columns: Set<string>): Promise<void> {
  const shown = displayName(on);
  const byGrantee = new Map<string, { grantee: string | null; grantable: boolean; privileges: string[] }>();
  for (const g of captured.grants) {
    if (g.grantee === owner) continue;
    if (!PRIVILEGES.has(g.privilege)) {
      m.problems.push(`grant ${g.privilege} on ${shown} to ${roleName(g.grantee)}: unknown privilege, not granted`);
      continue;
    }
    const key = JSON.stringify([g.grantee, g.grantable]);
    const entry = byGrantee.get(key) ?? { grantee: g.grantee, grantable: g.grantable, privileges: [] };
    entry.privileges.push(g.privilege);
    byGrantee.set(key, entry);
  }
  for (const g of byGrantee.values()) {
    await m.object(`grant ${g.privileges.join(', ')} on ${shown} to ${roleName(g.grantee)}`, async (run) => {
      await run(`GRANT ${g.privileges.join(', ')} ON TABLE ${qualified(on)} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
    });
  }
  for (const g of captured.columnGrants) {
    const label = `column grant ${g.privilege} (${g.column}) on ${shown} to ${roleName(g.grantee)}`;
    if (!PRIVILEGES.has(g.privilege)) { m.problems.push(`${label}: unknown privilege, not granted`); continue; }
    if (!columns.has(g.column)) { m.problems.push(`${label}: ${shown} has no column ${g.column}; not granted`); continue; }
    if (g.grantee === owner) continue;
    await m.object(label, async (run) => {
      await run(`GRANT ${g.privilege} (${quoteIdent(g.column)}) ON TABLE ${qualified(on)} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
    });
  }
}

/**
 * `cutover.compatView`, after the move: the new table has been given back its own name (`over`) and the old
 * name becomes a view over it (`compatViewSql`) carrying the old table's grants, so code that still uses the old
 * name keeps reading (and writing its plain columns) with the rights it had, under the new table's policies.
 * Grants go to the view only: the new table has them already (moveBoundObjects), and with `security_invoker`
 * the reader needs both.
 */
async function createCompatView(
  client: pg.Client,
  captured: BoundObjects,
  over: TableRef,
  columns: CompatColumn[],
  options: MoveOptions = {},
): Promise<Pick<MoveResult, 'statements' | 'problems'>> {
  const m = new Mover(client, options.dryRun ?? false);
  const view = captured.live;
  const made = await m.object(`compatibility view ${displayName(view)}`, async (run) => {
    await run(compatViewSql(view, over, columns));
    await run(`COMMENT ON VIEW ${qualified(view)} IS ${quoteLiteral(`${COMPAT_VIEW_COMMENT} ${displayName(over)}`)}`);
  });
  if (made) {
    const [me] = await m.rows<{ owner: string }>(`SELECT current_user AS owner`, []);
    await grantAsOnOldTable(m, captured, view, me!.owner, new Set(columns.map((c) => c.name)));
  }
  return { statements: m.statements, problems: m.problems };
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
  const view = await createCompatView(client, captured, to.home, compatView, options);
  const readers = await moveReaders(client, captured, fromOid, options);
  return { ...moved, statements: [...moved.statements, ...view.statements, ...readers.statements], compatProblems: [...view.problems, ...readers.problems] };
}

/** After COMMIT: VALIDATE each NOT VALID FK (SHARE UPDATE EXCLUSIVE on the referencing table only). */
export async function validateForeignKeys(client: pg.Client, fks: ForeignKeyRef[]): Promise<void> {
  const failures: string[] = [];
  for (const fk of fks) {
    try {
      await client.query(`ALTER TABLE ${qualified(fk.table)} VALIDATE CONSTRAINT ${quoteIdent(fk.name)}`);
    } catch (err) {
      failures.push(`foreign key ${fk.name} on ${displayName(fk.table)}: ${(err as Error).message}`);
    }
  }
  if (failures.length) throw new Error(`could not validate: ${failures.join('; ')}`);
}

/** Human lines for preflight / the approver: what will move. */
export function describeBoundObjects(b: BoundObjects, how: { compatView?: boolean } = {}): string[] {
  const live = displayName(b.live);
  const readTarget = how.compatView ? 'the compatibility view' : 'the new table';
  const lines: string[] = [];
  for (const fk of b.foreignKeys) {
    lines.push(`foreign key ${fk.name} on ${displayName(fk.table)} (${fk.columns.join(', ')}) -> ${live} (${fk.referencedColumns.join(', ')}): ` +
      (fk.validated && fk.enforced ? 're-added NOT VALID on the new table, validated after commit' : 're-added on the new table as it is (not validated)'));
  }
  for (const fk of b.selfForeignKeys) lines.push(`self-referencing foreign key ${fk.name}: not moved, the new table must define its own`);
  for (const v of b.views) {
    lines.push(`view ${displayName(v.ref)}${v.options.length ? ` (${v.options.map((o) => `${o.name}=${o.value}`).join(', ')})` : ''}: replaced to read ${readTarget}`);
  }
  for (const v of b.materializedViews) lines.push(`materialized view ${displayName(v)}: NOT movable, must be rebuilt`);
  for (const r of b.rules) lines.push(`rule ${r.name} on ${displayName(r.table)}: NOT movable`);
  for (const p of b.foreignPolicies) lines.push(`policy ${p.name} on ${displayName(p.table)}: re-pointed (ALTER POLICY) to ${readTarget}`);
  for (const f of b.functions) lines.push(`function ${f.signature}: replaced to read ${readTarget}`);
  for (const o of b.otherDependents) lines.push(`${o}: NOT movable`);
  for (const s of b.sequences) {
    lines.push(`${s.identity ? 'identity' : 'owned'} sequence ${displayName(s.sequence)} (${s.column}): ` +
      (s.identity ? 'the new table\'s own sequence is moved past it' : 'handed to the new table if its default uses it, and advanced'));
  }
  const grants = new Map<string, string[]>();
  for (const g of b.grants) {
    if (g.grantee === b.owner) continue;
    const key = `${roleName(g.grantee)}${g.grantable ? ' (with grant option)' : ''}`;
    grants.set(key, [...(grants.get(key) ?? []), g.privilege]);
  }
  for (const [who, privs] of grants) lines.push(`grant ${privs.join(', ')} to ${who}: granted on the new table`);
  for (const g of b.columnGrants) lines.push(`column grant ${g.privilege} (${g.column}) to ${roleName(g.grantee)}: granted where the column exists`);
  if (b.rowSecurity.enabled) lines.push('row level security: enabled on the new table');
  if (b.rowSecurity.forced) lines.push('row level security forced: forced on the new table');
  for (const p of b.policies) {
    lines.push(`policy ${p.name} (${p.permissive ? 'permissive' : 'restrictive'}, ${p.command}, to ${p.roles.map(roleName).join(', ') || 'PUBLIC'}): created on the new table unless it has one of that name`);
  }
  for (const t of b.triggers) {
    const state = { O: 'enabled', D: 'disabled', R: 'replica', A: 'always' }[t.enabled] ?? t.enabled;
    lines.push(`trigger ${t.name} (${state}): created on the new table unless it has one of that name`);
  }
  if (b.replicaIdentity !== 'd') {
    lines.push(`replica identity ${{ f: 'FULL', n: 'NOTHING', i: `index (${(b.replicaIdentityColumns ?? []).join(', ')})` }[b.replicaIdentity] ?? b.replicaIdentity}: set on the new table`);
  }
  if (b.comment !== null) lines.push('table comment: kept unless the new table has one');
  for (const c of b.columnComments) lines.push(`comment on column ${c.column}: kept where the column exists`);
  for (const p of b.publications) {
    lines.push(`publication ${p.name}${p.columns ? ` (columns ${p.columns.join(', ')})` : ''}${p.rowFilter ? ` WHERE ${p.rowFilter}` : ''}: the new table replaces the old one`);
  }
  if (!lines.length) lines.push(`nothing bound to ${live} besides the table itself`);
  return lines;
}
