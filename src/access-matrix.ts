/**
 * Who can do what through the live name: every role (but superusers and PostgreSQL's own `pg_*`) × the relation
 * at the live name and each of its columns (SELECT, INSERT, UPDATE; DELETE, TRUNCATE, REFERENCES, TRIGGER), the
 * views and materialized views that read it (SELECT per column; INSERT, UPDATE per column and DELETE too on a view
 * PostgreSQL can write through), the sequences its defaults use, the functions bound to it (EXECUTE: those taking
 * or returning its row type, or whose SQL-standard body reads it), and its row-level security (flags, and policies with their expressions, of the table that enforces them). Taken before
 * and after a swap and compared: a cutover or a swap back must leave everyone's access as it was.
 *
 * How each privilege is asked:
 * - A table, a materialized view, or a view with its owner's rights: PostgreSQL's ACL functions
 *   (`has_column_privilege(role, ...)`), all roles × columns in one query. That is exactly what PostgreSQL checks
 *   for them (a view with its owner's rights checks its base relations as its owner), it plans nothing, and it
 *   covers roles we may not switch to.
 * - A `security_invoker` view (the compatibility view on a table with row-level security, or a reader made so):
 *   its base columns are checked as the querying role, every column its definition reads, whatever is selected;
 *   no ACL function says that. So it is asked of PostgreSQL as the role itself: `SET LOCAL ROLE`, then `EXPLAIN`
 *   of a statement that needs the privilege (EXPLAIN checks privileges and runs nothing), in a READ ONLY savepoint
 *   rolled back, so a function folded while planning cannot write anything either. A probe failing for another
 *   reason than a privilege (a derived column of the view) says nothing and is left out; a lock or statement
 *   timeout, a deadlock or a lost connection is an error, never taken as an answer. A role we may not switch to is
 *   asked through the ACL functions on the view, and named in `unprobed`.
 */
import type pg from 'pg';
import { pgErrorCode } from './db';
import { displayName, qualified, quoteIdent, type TableRef } from './sql';

/** What is compared, by name, so the same objects are asked about after the swap. */
export interface AccessObjects {
  live: TableRef;
  /** Views and materialized views reading the live relation, qualified as `regclass::text` prints them. */
  readers: string[];
  sequences: string[];
  /**
   * Functions bound to the table as `schema.name(argument types)` (no argument names: to_regprocedure refuses them): asked again by that text after the swap (a
   * function recreated over the new table has a new OID and the same signature). Absent in matrices taken before.
   */
  functions?: string[];
}

export interface AccessMatrix {
  objects: AccessObjects;
  /** `<role>: <privilege> on <object>[ (<column>)]` -> granted. */
  entries: Record<string, boolean>;
  /** Row-level security of what enforces it behind the live name: flags and policies, one line each. */
  rowSecurity: string[];
  /** Roles the connection may not switch to (not a member): not probed, named. */
  unprobed: string[];
}

const SAVEPOINT = 'safeshift_access_probe';

class Prober {
  constructor(private readonly client: pg.Client) {}

  /** true: allowed; false: permission denied; undefined: failed otherwise (says nothing about privileges). */
  async allowed(statement: string): Promise<boolean | undefined> {
    await this.client.query(`SAVEPOINT ${SAVEPOINT}`);
    try {
      await this.client.query(`EXPLAIN ${statement}`);
      return true;
    } catch (err) {
      const code = pgErrorCode(err) ?? '';
      if (code === '42501') return false;
      // Not an answer about privileges: the probe could not run. Never read as "refused" or "says nothing".
      if (/^(08|25|40|53|55|57|58|XX)/.test(code)) throw err;
      return undefined;
    } finally {
      await this.client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
      await this.client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
    }
  }
}

async function discover(client: pg.Client, live: TableRef): Promise<AccessObjects> {
  const { rows } = await client.query<{ readers: string[]; sequences: string[]; functions: string[] }>(
    `WITH rel AS (SELECT $1::regclass::oid AS oid)
     SELECT coalesce((SELECT array_agg(DISTINCT format('%I.%I', vn.nspname, v.relname) ORDER BY format('%I.%I', vn.nspname, v.relname))
                        FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                        JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
                       WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = (SELECT oid FROM rel)
                         AND r.ev_class <> (SELECT oid FROM rel) AND v.relkind IN ('v', 'm')), '{}') AS readers,
            coalesce((SELECT array_agg(DISTINCT format('%I.%I', sn.nspname, s.relname) ORDER BY format('%I.%I', sn.nspname, s.relname))
                        FROM pg_class s JOIN pg_namespace sn ON sn.oid = s.relnamespace JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid
                       WHERE s.relkind = 'S' AND (
                             (d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT ad.oid FROM pg_attrdef ad WHERE ad.adrelid = (SELECT oid FROM rel)))
                          OR (d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refobjid = (SELECT oid FROM rel))
                          OR EXISTS (SELECT 1 FROM pg_depend o WHERE o.classid = 'pg_class'::regclass AND o.objid = s.oid
                                      AND o.refobjid = (SELECT oid FROM rel) AND o.deptype IN ('a', 'i')))), '{}') AS sequences,
            coalesce((SELECT array_agg(f.sig ORDER BY f.sig) FROM (
                        SELECT DISTINCT format('%I.%I(%s)', pn.nspname, p.proname, oidvectortypes(p.proargtypes)) AS sig
                          FROM pg_proc p JOIN pg_namespace pn ON pn.oid = p.pronamespace, pg_class t JOIN pg_type rt ON rt.oid = t.reltype
                         WHERE t.oid = (SELECT oid FROM rel) AND (
                               p.prorettype IN (rt.oid, rt.typarray)
                            OR p.proargtypes::oid[] && ARRAY[rt.oid, rt.typarray]
                            OR coalesce(p.proallargtypes, '{}') && ARRAY[rt.oid, rt.typarray]
                            OR EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                          AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid))) f), '{}') AS functions`,
    [qualified(live)]);
  return { live, readers: rows[0]!.readers, sequences: rows[0]!.sequences, functions: rows[0]!.functions };
}

interface Relation {
  oid: number; label: string; sql: string; columns: string[]; invoker: boolean;
  /** pg_relation_is_updatable: bit 4 UPDATE, 8 INSERT, 16 DELETE (a view PostgreSQL writes through, or with INSTEAD OF triggers). */
  updatable: number;
}

async function relation(client: pg.Client, regclass: string, label: string): Promise<Relation | undefined> {
  const { rows } = await client.query<{ oid: number; columns: string[]; invoker: boolean; updatable: number }>(
    `SELECT c.oid::int AS oid, CASE WHEN c.relkind = 'v' THEN pg_relation_is_updatable(c.oid, true) ELSE 0 END AS updatable,
            coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum > 0), '{}') AS columns,
            c.relkind = 'v' AND coalesce((SELECT option_value FROM pg_options_to_table(c.reloptions) WHERE option_name = 'security_invoker'), 'false')
              IN ('true', 'on', '1', 'yes') AS invoker
       FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      WHERE c.oid = to_regclass($1) GROUP BY c.oid, c.relkind, c.reloptions`, [regclass]);
  const r = rows[0];
  return r && { oid: r.oid, columns: r.columns, invoker: r.invoker, updatable: r.updatable, label, sql: regclass };
}

/** What is asked of a relation: all of it for the live one; SELECT, and what PostgreSQL can write through, for a reader. */
function privilegesOf(rel: Relation, live: Relation | undefined): { columns: ('SELECT' | 'INSERT' | 'UPDATE')[]; delete: boolean } {
  if (rel === live) return { columns: ['SELECT', 'INSERT', 'UPDATE'], delete: true };
  const columns: ('SELECT' | 'INSERT' | 'UPDATE')[] = ['SELECT'];
  if (rel.updatable & 8) columns.push('INSERT');
  if (rel.updatable & 4) columns.push('UPDATE');
  return { columns, delete: (rel.updatable & 16) !== 0 };
}

/**
 * The ACL functions' answer for every role × column × privilege of `rel` (and DELETE on it when `withDelete`), in
 * one query: exact for tables and views with their owner's rights, and for roles we may not switch to.
 */
async function aclEntries(
  client: pg.Client, rel: Relation, privileges: string[], withDelete: boolean, roles: string[] | null, out: Record<string, boolean>,
): Promise<void> {
  const { rows } = await client.query<{ key: string; granted: boolean }>(
    `SELECT format('%s: %s on %s (%s)', r.rolname, p.priv, $2::text, c.col) AS key, has_column_privilege(r.oid, $1::oid, c.col, p.priv) AS granted
       FROM pg_roles r CROSS JOIN unnest($3::text[]) p(priv) CROSS JOIN unnest($4::text[]) c(col)
      WHERE r.rolname !~ '^pg_' AND NOT r.rolsuper AND ($6::text[] IS NULL OR r.rolname = ANY ($6::text[]))
     UNION ALL
     SELECT format('%s: DELETE on %s', r.rolname, $2::text), has_table_privilege(r.oid, $1::oid, 'DELETE')
       FROM pg_roles r
      WHERE $5 AND r.rolname !~ '^pg_' AND NOT r.rolsuper AND ($6::text[] IS NULL OR r.rolname = ANY ($6::text[]))`,
    [rel.oid, rel.label, privileges, rel.columns, withDelete, roles]);
  for (const row of rows) out[row.key] = row.granted;
}

/**
 * Column privileges of one role on one relation: one probe for all columns, one per column only when the role
 * has some but not all (rare), none when it has none at all (most roles, most relations).
 */
async function columnProbes(
  p: Prober, client: pg.Client, role: string, rel: Relation, privilege: 'SELECT' | 'INSERT' | 'UPDATE', out: Record<string, boolean>,
): Promise<void> {
  const set = (column: string, granted: boolean | undefined) => {
    if (granted !== undefined) out[`${role}: ${privilege} on ${rel.label} (${column})`] = granted;
  };
  const cols = rel.columns;
  if (cols.length === 0) return;
  // Asked as the role itself (SET LOCAL ROLE): without the privilege on any column, no statement could pass.
  const { rows } = await client.query<{ any: boolean }>(`SELECT has_any_column_privilege($1::oid, $2) AS any`, [rel.oid, privilege]);
  if (!rows[0]!.any) { for (const c of cols) set(c, false); return; }
  const statement = (c: string[]) => privilege === 'SELECT'
    ? `SELECT ${c.map(quoteIdent).join(', ')} FROM ${rel.sql}`
    : privilege === 'INSERT'
      ? `INSERT INTO ${rel.sql} (${c.map(quoteIdent).join(', ')}) VALUES (${c.map(() => 'NULL').join(', ')})`
      : `UPDATE ${rel.sql} SET ${c.map((x) => `${quoteIdent(x)} = NULL`).join(', ')} WHERE false`;
  const all = await p.allowed(statement(cols));
  if (all === true) { for (const c of cols) set(c, true); return; }
  for (const c of cols) set(c, await p.allowed(statement([c])));
}

export async function readAccess(client: pg.Client, live: TableRef, objects?: AccessObjects): Promise<AccessMatrix> {
  // Probes need a transaction to roll back in: the caller's (preflight's), or one of our own.
  const own = !(await inTransactionBlock(client));
  if (own) await client.query('BEGIN');
  try {
    const what = objects ?? await discover(client, live);
    const entries: Record<string, boolean> = {};
    const unprobed: string[] = [];
    const liveRel = await relation(client, qualified(live), displayName(live));
    const readers = (await Promise.all(what.readers.map((r) => relation(client, r, r)))).filter((r): r is Relation => r !== undefined);
    const { rows: roles } = await client.query<{ role: string }>(
      `SELECT rolname AS role FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper ORDER BY 1`);
    const tableLike = [liveRel, ...readers].filter((r): r is Relation => r !== undefined && !r.invoker);
    const invokerViews = [liveRel, ...readers].filter((r): r is Relation => r !== undefined && r.invoker);
    for (const r of tableLike) {
      const p = privilegesOf(r, liveRel);
      await aclEntries(client, r, p.columns, p.delete, null, entries);
    }
    if (invokerViews.length) {
      const p = new Prober(client);
      for (const { role } of roles) {
        await client.query(`SAVEPOINT safeshift_access_role`);
        try {
          try {
            await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
          } catch {
            unprobed.push(role);
            continue;
          }
          // Nothing a probe plans (a function folded in a view or a policy) may write, as this role or any.
          await client.query(`SET LOCAL transaction_read_only = on`);
          for (const r of invokerViews) {
            const privileges = privilegesOf(r, liveRel);
            for (const privilege of privileges.columns) await columnProbes(p, client, role, r, privilege, entries);
            if (privileges.delete) {
              const deleted = await p.allowed(`DELETE FROM ${r.sql} WHERE false`);
              if (deleted !== undefined) entries[`${role}: DELETE on ${r.label}`] = deleted;
            }
          }
        } finally {
          await client.query(`ROLLBACK TO SAVEPOINT safeshift_access_role`);
          await client.query(`RELEASE SAVEPOINT safeshift_access_role`);
        }
      }
      // Roles we may not switch to: what their grants on the view say (the base columns are not checked for them).
      for (const r of invokerViews) {
        if (!unprobed.length) continue;
        const privileges = privilegesOf(r, liveRel);
        await aclEntries(client, r, privileges.columns, privileges.delete, unprobed, entries);
      }
    }
    // ACL-only privileges (no statement to EXPLAIN), asked as ourselves about each role.
    const { rows: acl } = await client.query<{ key: string; granted: boolean }>(
      `SELECT format('%s: %s on %s', r.rolname, p.priv, $2::text) AS key, has_table_privilege(r.oid, to_regclass($1), p.priv) AS granted
         FROM pg_roles r CROSS JOIN unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) p(priv)
        WHERE r.rolname !~ '^pg_' AND NOT r.rolsuper AND to_regclass($1) IS NOT NULL
       UNION ALL
       SELECT format('%s: %s on sequence %s', r.rolname, p.priv, s.name), has_sequence_privilege(r.oid, to_regclass(s.name), p.priv)
         FROM pg_roles r CROSS JOIN unnest($3::text[]) s(name) CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) p(priv)
        WHERE r.rolname !~ '^pg_' AND NOT r.rolsuper AND to_regclass(s.name) IS NOT NULL
       UNION ALL
       SELECT format('%s: EXECUTE on function %s', r.rolname, f.sig), has_function_privilege(r.oid, to_regprocedure(f.sig), 'EXECUTE')
         FROM pg_roles r CROSS JOIN unnest($4::text[]) f(sig)
        WHERE r.rolname !~ '^pg_' AND NOT r.rolsuper AND to_regprocedure(f.sig) IS NOT NULL`,
      [qualified(live), displayName(live), what.sequences, what.functions ?? []]);
    for (const a of acl) entries[a.key] = a.granted;
    return { objects: what, entries, rowSecurity: await rowSecurityBehind(client, live), unprobed };
  } finally {
    if (own) await client.query('ROLLBACK');
  }
}

async function inTransactionBlock(client: pg.Client): Promise<boolean> {
  try {
    await client.query(`SAVEPOINT ${SAVEPOINT}`);
  } catch (err) {
    if (pgErrorCode(err) === '25P01') return false; // SAVEPOINT can only be used in transaction blocks
    throw err;
  }
  await client.query(`RELEASE SAVEPOINT ${SAVEPOINT}`);
  return true;
}

/**
 * The flags and policies of the table behind the live name: the live table itself, or the tables a view at the
 * live name reads (a compatibility view reads with its readers' rights exactly when they have row-level security). Policies by name, command,
 * kind, roles and expressions (a same-named policy in the target DDL with another expression is a difference).
 */
async function rowSecurityBehind(client: pg.Client, live: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ line: string }>(
    `WITH rel AS (SELECT to_regclass($1) AS oid),
          behind AS (
            SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c WHERE c.oid = (SELECT oid FROM rel) AND c.relkind IN ('r', 'p')
            UNION
            SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity
              FROM pg_class v JOIN pg_rewrite r ON r.ev_class = v.oid
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
              JOIN pg_class c ON c.oid = d.refobjid AND c.oid <> v.oid AND c.relkind IN ('r', 'p')
             WHERE v.oid = (SELECT oid FROM rel) AND v.relkind = 'v')
     SELECT format('row level security %s%s', CASE WHEN b.relrowsecurity THEN 'enabled' ELSE 'disabled' END,
                   CASE WHEN b.relforcerowsecurity THEN ', forced' ELSE '' END) AS line FROM behind b
     UNION ALL
     SELECT format('policy %s: %s %s to %s using (%s) with check (%s)', p.polname, p.polcmd,
                   CASE WHEN p.polpermissive THEN 'permissive' ELSE 'restrictive' END,
                   (SELECT string_agg(x.name, ', ' ORDER BY x.name)
                      FROM (SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r) END AS name FROM unnest(p.polroles) r) x),
                   coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
       FROM pg_policy p JOIN behind b ON b.oid = p.polrelid
     ORDER BY 1`, [qualified(live)]);
  return rows.map((r) => r.line);
}

/**
 * What differs between two matrices, one line each: a privilege granted on one side and refused on the other,
 * row-level security changed. Privileges asked on one side only (a column the new shape does not have) are not
 * differences; `renames` maps an old column name to the one it has after (`columnRenames`).
 */
export function accessDifferences(before: AccessMatrix, after: AccessMatrix, renames: Record<string, string> = {}): string[] {
  const renamed = (key: string) => (key.includes(' on function ') ? key : key.replace(/ \(([^()]*)\)$/, (whole, column: string) => (Object.hasOwn(renames, column) ? ` (${renames[column]})` : whole)));
  const lines: string[] = [];
  for (const [key, was] of Object.entries(before.entries)) {
    const afterKey = renamed(key);
    if (!Object.hasOwn(after.entries, afterKey)) continue;
    const now = after.entries[afterKey];
    if (now !== was) lines.push(`${afterKey}: ${was ? 'granted before, refused after' : 'refused before, granted after'}`);
  }
  const rls = (m: AccessMatrix) => new Set(m.rowSecurity);
  const a = rls(before);
  const b = rls(after);
  for (const line of a) if (!b.has(line)) lines.push(`${line}: before only`);
  for (const line of b) if (!a.has(line)) lines.push(`${line}: after only`);
  return lines;
}
