/** What every inventory reader shares: the query function, grouping by owner object, ACLs as grants. */
import type pg from 'pg';
import type { GrantDoc } from './docs';

/** Rows of one catalog query, run in the inventory's transaction (one snapshot, search_path emptied). */
export type Query = <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<R[]>;

export function queryOn(client: pg.Client): Query {
  return async (text, values = []) => (await client.query(text, values)).rows;
}

/** Group rows by a key, keeping the query's order within each group. */
export function groupBy<R, K>(rows: R[], key: (row: R) => K): Map<K, R[]> {
  const out = new Map<K, R[]>();
  for (const r of rows) {
    const k = key(r);
    const list = out.get(k);
    if (list) list.push(r);
    else out.set(k, [r]);
  }
  return out;
}

/** Group rows by their owner's oid (`relid`), keeping the query's order. */
export function byOid<R extends { relid: number }>(rows: R[]): Map<number, R[]> {
  return groupBy(rows, (r) => r.relid);
}

/**
 * Privileges per grantee of the ACLs `source` yields as (relid int, acl aclitem[]), as stored: once anything was
 * granted the owner's own rights are in it too; an object never granted on (ACL null) lists none.
 */
export function aclGrantsSql(source: string): string {
  return `
    SELECT relid, grantee, privileges FROM (
      SELECT s.relid, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
             array_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' (with grant option)' ELSE '' END ORDER BY a.privilege_type COLLATE "C") AS privileges
        FROM (${source}) s CROSS JOIN LATERAL aclexplode(s.acl) a
       WHERE s.acl IS NOT NULL
       GROUP BY s.relid, a.grantee) g
     ORDER BY relid, grantee COLLATE "C"`;
}

export async function grantsByOid(q: Query, source: string, values: unknown[]): Promise<(relid: number) => GrantDoc[]> {
  const grants = byOid(await q<{ relid: number; grantee: string; privileges: string[] }>(aclGrantsSql(source), values));
  return (relid) => (grants.get(relid) ?? []).map((g) => ({ grantee: g.grantee, privileges: g.privileges }));
}

/** `"schema"."name"` as PostgreSQL prints a qualified name (quotes only where needed), in SQL. */
export const QUALIFIED = (nsp: string, name: string) => `quote_ident(${nsp}) || '.' || quote_ident(${name})`;

/** An object created by an extension (pg_depend 'e'): documented by the extension, not listed on its own. */
export const NOT_EXTENSION_MEMBER = (catalog: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${catalog}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;
