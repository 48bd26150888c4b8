/**
 * Materialized views over the table (issue 12, finding 3). A matview stores rows and reads the table through its
 * rewrite rule, bound by OID: after the renames a REFRESH would still read the old table, and the matview keeps
 * the old table from being dropped. It cannot be re-pointed in place (no CREATE OR REPLACE MATERIALIZED VIEW), so
 * it is recreated: under the cutover lock the old one is dropped and a new one with the same name is created from
 * its captured definition (pg_get_viewdef under an empty search_path, which names the live name, so it reads
 * whatever has the live name now: the new table, or with `cutover.compatView` the compatibility view), populated
 * (`WITH DATA`) if the old one was, with the old one's storage options, tablespace, indexes, owner, grants and
 * comment. Swap back is the same move the other way: the matview is recreated over the original table.
 *
 * Why drop the old one rather than keep it for swap back: its rows are derived, swap back rebuilds it from the
 * original table anyway, and kept it would hold the retired table (no drop without CASCADE).
 * Why build under the lock rather than before the gate: a copy built before the gate reads the new table as it
 * was then; the replay goes on while the gate waits, so the copy would need a REFRESH under the lock anyway to
 * be what the old matview's REFRESH gives. Cost: the matview's query runs once under the ACCESS EXCLUSIVE lock
 * (and once in preflight's rehearsal, under a savepoint); the gate says so. A recreated matview is as fresh as
 * a REFRESH at cutover (the old one's rows were as of its last refresh).
 * Refused (a problem naming the matview): a matview something else depends on (a view over it, another matview):
 * DROP ... RESTRICT fails, and recreating those too is not done here.
 */
import { sealRelation } from '../seal';
import { relationName } from '../catalog';
import { displayName, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import { dropRestrict, grantee, withoutSemicolon, type CatalogQuery, type Mover } from './mover';

/** Privileges a GRANT on a relation can name (aclexplode's privilege_type), checked before they go into SQL. */
const PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN']);

export interface BoundMaterializedView {
  oid: number;
  ref: TableRef;
  /** pg_get_viewdef: names the live name (captured with an empty search_path). */
  definition: string;
  populated: boolean;
  owner: string;
  comment: string | null;
  tablespace: string | null;
  options: { name: string; value: string }[];
  /** pg_get_indexdef of each index: names the matview, which keeps its name. */
  indexes: string[];
  /** relacl without the owner's own entry; null when relacl is NULL (the default). */
  grants: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
}

export interface CapturedMaterializedViews {
  materializedViews: BoundMaterializedView[];
}

export async function captureMaterializedViews(q: CatalogQuery): Promise<CapturedMaterializedViews> {
  const rows = await q<Omit<BoundMaterializedView, 'ref'> & { schema: string; name: string }>(
    `SELECT v.oid::int8::float8 AS oid, vn.nspname AS schema, v.relname AS name, pg_get_viewdef(v.oid, true) AS definition,
            v.relispopulated AS populated, pg_get_userbyid(v.relowner) AS owner, obj_description(v.oid, 'pg_class') AS comment,
            (SELECT spcname FROM pg_tablespace WHERE oid = v.reltablespace) AS tablespace,
            coalesce((SELECT jsonb_agg(jsonb_build_object('name', o.option_name, 'value', o.option_value))
                        FROM pg_options_to_table(v.reloptions) o), '[]'::jsonb) AS options,
            coalesce((SELECT jsonb_agg(pg_get_indexdef(x.indexrelid) ORDER BY x.indexrelid) FROM pg_index x WHERE x.indrelid = v.oid), '[]'::jsonb) AS indexes,
            CASE WHEN v.relacl IS NOT NULL THEN coalesce((
              SELECT jsonb_agg(jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                                                  'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY a.grantee, a.privilege_type)
                FROM aclexplode(v.relacl) a WHERE a.grantee <> v.relowner), '[]'::jsonb) END AS grants
       FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
      WHERE v.relkind = 'm' AND v.oid IN (
              SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
               WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1)
      ORDER BY 2, 3`);
  return {
    materializedViews: rows.map(({ schema, name, ...rest }) => ({ ...rest, oid: Number(rest.oid), ref: { schema, name } })),
  };
}

/** Drop the old matview and create it again over what has the live name; one object (one savepoint in a dry run). */
export async function moveMaterializedViews(m: Mover, views: BoundMaterializedView[]): Promise<void> {
  for (const v of views) {
    const label = `materialized view ${displayName(v.ref)}`;
    const at = await relationName(m.client, v.oid);
    if (!at) { m.problems.push(`${label}: gone`); continue; }
    const name = qualified(at);
    await m.object(label, async (run, note) => {
      // RESTRICT: a view or matview over this one would go with CASCADE; it is refused instead (named).
      await dropRestrict(run, `DROP MATERIALIZED VIEW ${name} RESTRICT`);
      const withOptions = v.options.length ? ` WITH (${v.options.map((o) => `${quoteIdent(o.name)} = ${quoteLiteral(o.value)}`).join(', ')})` : '';
      const tablespace = v.tablespace ? ` TABLESPACE ${quoteIdent(v.tablespace)}` : '';
      await run(`CREATE MATERIALIZED VIEW ${name}${withOptions}${tablespace} AS\n${withoutSemicolon(v.definition)}\n${v.populated ? 'WITH DATA' : 'WITH NO DATA'}`);
      // Default privileges may have granted it to anybody (Supabase: ALL to anon, authenticated, service_role):
      // exactly the old one's grants must hold. Sealed while it is still ours (src/seal.ts).
      const [made] = await m.rows<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [name]);
      for (const statement of await sealRelation(m.client, made!.oid)) note(statement);
      // Owner before grants: a GRANT run by a superuser is recorded as granted by the owner, as the old ones were.
      await run(`ALTER MATERIALIZED VIEW ${name} OWNER TO ${quoteIdent(v.owner)}`);
      for (const index of v.indexes) await run(withoutSemicolon(index));
      for (const g of v.grants ?? []) {
        if (!PRIVILEGES.has(g.privilege)) throw new Error(`unknown privilege ${g.privilege} granted to ${g.grantee ?? 'PUBLIC'}`);
        await run(`GRANT ${g.privilege} ON TABLE ${name} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
      }
      if (v.comment !== null) await run(`COMMENT ON MATERIALIZED VIEW ${name} IS ${quoteLiteral(v.comment)}`);
    });
  }
}

/** `readTarget`: what the matviews will read, as the approver reads it. */
export function describeMaterializedViews(views: BoundMaterializedView[], readTarget: string): string[] {
  return views.map((v) => `materialized view ${displayName(v.ref)}: recreated over ${readTarget} under the cutover lock `
    + `(${v.populated ? 'WITH DATA: its query runs while writers wait' : 'WITH NO DATA, as it is now'}; same name, `
    + `${v.indexes.length} index${v.indexes.length === 1 ? '' : 'es'}, owner, grants, comment), the old one dropped`);
}
