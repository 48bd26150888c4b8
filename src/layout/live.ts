/**
 * What the database holds of a layout, read from the catalog in a few queries for any number of schemas: the
 * schemas and who may use them, the tables with their row-level security flags and grants, and their policies
 * with the expressions PostgreSQL stores. Read-only; takes no lock beyond reading the catalog.
 */
import type pg from 'pg';

export interface LivePolicy {
  name: string;
  command: 'all' | 'select' | 'insert' | 'update' | 'delete';
  permissive: boolean;
  /** Role names sorted; `public` for PUBLIC. */
  roles: string[];
  using: string | null;
  check: string | null;
  comment: string | null;
}

export interface LiveTable {
  oid: number;
  rls: boolean;
  force: boolean;
  /** Table-level privileges (lower case) by grantee (`public` for PUBLIC), the owner left out. */
  grants: Record<string, string[]>;
  /** Grantees holding a privilege on one of its columns. */
  columnGrantees: string[];
  policies: LivePolicy[];
}

export interface LiveSchema {
  comment: string | null;
  /** Privileges (lower case: usage, create) by grantee, the owner left out. */
  grants: Record<string, string[]>;
  tables: Record<string, LiveTable>;
}

const COMMANDS: Record<string, LivePolicy['command']> = { '*': 'all', r: 'select', a: 'insert', w: 'update', d: 'delete' };

/**
 * Expressions as PostgreSQL prints them depend on search_path (names it can see are printed bare): read and
 * recorded with this one, so what apply recorded and what plan reads compare equal.
 */
export const PRINT_SEARCH_PATH = 'pg_catalog';

/**
 * The live state of `schemas` (absent schemas are absent from the result): in a read-only snapshot of its own, or
 * (`within`) in the caller's transaction, whose search_path it sets for the rest of that transaction.
 */
export async function readLive(client: pg.Client, schemas: string[], within = false): Promise<Record<string, LiveSchema>> {
  if (!within) await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    await client.query(`SELECT set_config('search_path', $1, true)`, [PRINT_SEARCH_PATH]);
    const out: Record<string, LiveSchema> = {};
    const { rows: ns } = await client.query<{ name: string; comment: string | null; grantee: string | null; privilege: string | null }>(
      `SELECT n.nspname AS name, obj_description(n.oid, 'pg_namespace') AS comment, CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee) END AS grantee, lower(x.privilege_type) AS privilege
         FROM pg_namespace n LEFT JOIN LATERAL aclexplode(n.nspacl) x ON x.grantee <> n.nspowner
        WHERE n.nspname = ANY ($1::text[])`, [schemas]);
    for (const r of ns) {
      const s = (out[r.name] ??= { comment: r.comment, grants: {}, tables: {} });
      if (r.grantee && r.privilege) (s.grants[r.grantee] ??= []).push(r.privilege);
    }
    const { rows: tables } = await client.query<{ schema: string; name: string; oid: number; rls: boolean; force: boolean; grants: [string, string][] | null; columns: string[] | null }>(
      `SELECT n.nspname AS schema, c.relname AS name, c.oid::int AS oid, c.relrowsecurity AS rls, c.relforcerowsecurity AS force,
              (SELECT json_agg(json_build_array(CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee) END, lower(x.privilege_type)))
                 FROM aclexplode(c.relacl) x WHERE x.grantee <> c.relowner) AS grants,
              (SELECT array_agg(DISTINCT CASE WHEN x.grantee = 0 THEN 'public' ELSE pg_get_userbyid(x.grantee)::text END)
                 FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) x
                WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner) AS columns
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY ($1::text[]) AND c.relkind IN ('r', 'p')`, [schemas]);
    const byOid = new Map<number, LiveTable>();
    for (const r of tables) {
      const t: LiveTable = { oid: r.oid, rls: r.rls, force: r.force, grants: {}, columnGrantees: (r.columns ?? []).sort(), policies: [] };
      for (const [grantee, privilege] of r.grants ?? []) (t.grants[grantee] ??= []).push(privilege);
      for (const list of Object.values(t.grants)) list.sort();
      out[r.schema]!.tables[r.name] = t;
      byOid.set(r.oid, t);
    }
    const { rows: policies } = await client.query<{ oid: number; name: string; cmd: string; permissive: boolean; roles: string[]; using: string | null; check: string | null; comment: string | null }>(
      `SELECT p.polrelid::int AS oid, p.polname AS name, p.polcmd AS cmd, p.polpermissive AS permissive,
              ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r ORDER BY 1) AS roles,
              pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS check,
              obj_description(p.oid, 'pg_policy') AS comment
         FROM pg_policy p WHERE p.polrelid = ANY ($1::oid[]) ORDER BY p.polname`, [[...byOid.keys()]]);
    for (const r of policies) {
      byOid.get(r.oid)?.policies.push({
        name: r.name, command: COMMANDS[r.cmd] ?? 'all', permissive: r.permissive, roles: r.roles, using: r.using, check: r.check, comment: r.comment,
      });
    }
    return out;
  } finally {
    if (!within) await client.query('ROLLBACK').catch(() => undefined);
  }
}

/** Roles among `names` that do not exist. */
export async function missingRoles(client: pg.Client, names: string[]): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT r AS name FROM unnest($1::text[]) r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) ORDER BY 1`, [names]);
  return rows.map((r) => r.name);
}
