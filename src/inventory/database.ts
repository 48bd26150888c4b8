/**
 * What is not inside one schema: publications and extensions (database-wide), roles and their memberships
 * (cluster-wide; never a password or its hash: pg_roles is read, not pg_authid, and rolpassword is not selected),
 * default privileges (all-schema ones and those of the selected schemas).
 */
import type { DefaultPrivilegeDoc, ExtensionDoc, PublicationDoc, RoleDoc } from './docs';
import { byOid, grantsByOid, QUALIFIED, type Query } from './query';

export function readPublications(q: Query): Promise<PublicationDoc[]> {
  return q<PublicationDoc>(
    `SELECT p.pubname AS name, p.puballtables AS "allTables",
            array_remove(ARRAY[CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
                               CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END], NULL) AS operations,
            ARRAY(SELECT x.name FROM (SELECT ${QUALIFIED('t.schemaname', 't.tablename')} AS name FROM pg_publication_tables t
                   WHERE t.pubname = p.pubname) x ORDER BY x.name COLLATE "C") AS tables
       FROM pg_publication p ORDER BY p.pubname COLLATE "C"`);
}

export function readExtensions(q: Query): Promise<ExtensionDoc[]> {
  return q<ExtensionDoc>(
    `SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY e.extname COLLATE "C"`);
}

/**
 * Memberships merged per (member, role): from PostgreSQL 16 the same membership may be granted by several
 * grantors, which is one membership to whoever uses it. inherit_option and set_option exist from 16 on; read
 * through to_jsonb so the query also runs on older servers (null there).
 */
const MEMBERSHIPS_SQL = `
  SELECT relid, role, admin, inherit, "set" FROM (
    SELECT m.member::int AS relid, pg_get_userbyid(m.roleid)::text AS role, bool_or(m.admin_option) AS admin,
           bool_or((to_jsonb(m) ->> 'inherit_option')::boolean) AS inherit, bool_or((to_jsonb(m) ->> 'set_option')::boolean) AS "set"
      FROM pg_auth_members m GROUP BY m.member, m.roleid) x
   ORDER BY relid, role COLLATE "C"`;

export async function readRoles(q: Query): Promise<RoleDoc[]> {
  const roles = await q<Omit<RoleDoc, 'memberOf'> & { relid: number }>(
    `SELECT r.oid::int AS relid, r.rolname AS name, r.rolcanlogin AS login, r.rolsuper AS superuser, r.rolcreaterole AS "createRole",
            r.rolcreatedb AS "createDb", r.rolreplication AS replication, r.rolbypassrls AS "bypassRls", r.rolinherit AS inherit,
            r.rolconnlimit AS "connectionLimit"
       FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY r.rolname COLLATE "C"`);
  const memberships = byOid(await q<{ relid: number; role: string; admin: boolean; inherit: boolean | null; set: boolean | null }>(MEMBERSHIPS_SQL));
  return roles.map(({ relid, ...role }) => ({
    ...role,
    memberOf: (memberships.get(relid) ?? []).map((m) => ({ role: m.role, admin: m.admin, inherit: m.inherit, set: m.set })),
  }));
}

const DEFAULT_ACL_OBJECTS: Record<string, DefaultPrivilegeDoc['objects']> = {
  r: 'tables', S: 'sequences', f: 'functions', T: 'types', n: 'schemas', L: 'large objects',
};

export async function readDefaultPrivileges(q: Query, nsp: number[]): Promise<DefaultPrivilegeDoc[]> {
  const rows = await q<{ relid: number; role: string; schema: string | null; objects: string }>(
    `SELECT relid, role, schema, objects FROM (
       SELECT d.oid::int AS relid, pg_get_userbyid(d.defaclrole)::text AS role, n.nspname::text AS schema, d.defaclobjtype::text AS objects
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
        WHERE d.defaclnamespace = 0 OR d.defaclnamespace = ANY($1::oid[])) x
      ORDER BY role COLLATE "C", schema COLLATE "C" NULLS FIRST, objects COLLATE "C"`, [nsp]);
  const grants = await grantsByOid(q, `SELECT d.oid::int AS relid, d.defaclacl AS acl FROM pg_default_acl d`, []);
  return rows.map((r) => ({ role: r.role, schema: r.schema, objects: DEFAULT_ACL_OBJECTS[r.objects] ?? 'tables', grants: grants(r.relid) }));
}
