/**
 * Functions and procedures whose signature uses the table's row type: `RETURNS SETOF <table>`, `RETURNS <table>`,
 * an argument of the row type (issue 12, finding 3). The row type belongs to the table (pg_class.reltype) and
 * follows it when it is renamed, so after the renames such a function still returns (or takes) the old table's
 * rows. CREATE OR REPLACE cannot change a result or argument type, so the function is dropped (RESTRICT) and
 * created again from its captured definition: pg_get_functiondef under an empty search_path names the type by
 * the live name, which is the new table's row type now (or the compatibility view's). pg_get_functiondef carries
 * language, volatility, SECURITY DEFINER, SET options and the body; owner, grants and comment are set again from
 * the catalog. The function gets a new OID.
 *
 * Creating it again is the proof that its definition still compiles against the new row type (a SQL body is
 * checked at CREATE); if it does not, it is a problem naming the function, which preflight's rehearsal shows.
 * Refused, named: a function something depends on (a view calling it, a default, ...): DROP ... RESTRICT fails.
 * Aggregates (no pg_get_functiondef) stay with other-dependents.ts. Swap back is the same move the other way.
 */
import { sealRoutine } from '../seal';
import { quoteIdent, quoteLiteral } from '../sql';
import { dropRestrict, grantee, withoutSemicolon, type CatalogQuery, type Mover } from './mover';

export interface RowTypeFunction {
  oid: number;
  /** regprocedure text at capture, schema-qualified: after the renames it names the function as recreated. */
  signature: string;
  definition: string;
  owner: string;
  comment: string | null;
  /** proacl without the owner's own entry; null when proacl is NULL (the default: EXECUTE to PUBLIC). */
  grants: { grantee: string | null; grantable: boolean }[] | null;
}

export interface CapturedRowTypeFunctions {
  rowTypeFunctions: RowTypeFunction[];
}

/**
 * The functions (not aggregates) with a normal dependency on the table's row type: PostgreSQL records one for a
 * result or argument type. `functions.ts` and `other-dependents.ts` leave these out (`ROW_TYPE_FUNCTION`).
 */
export const ROW_TYPE_FUNCTION = (proc: string) =>
  `EXISTS (SELECT 1 FROM pg_depend rd JOIN pg_proc rp ON rp.oid = rd.objid
            WHERE rd.classid = 'pg_proc'::regclass AND rd.objid = ${proc} AND rd.deptype = 'n' AND rp.prokind <> 'a'
              AND rd.refclassid = 'pg_type'::regclass AND rd.refobjid = (SELECT reltype FROM pg_class WHERE oid = $1))`;

export async function captureRowTypeFunctions(q: CatalogQuery): Promise<CapturedRowTypeFunctions> {
  const rows = await q<RowTypeFunction>(
    `SELECT p.oid::int8::float8 AS oid, p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition,
            pg_get_userbyid(p.proowner) AS owner, obj_description(p.oid, 'pg_proc') AS comment,
            CASE WHEN p.proacl IS NOT NULL THEN coalesce((
              SELECT jsonb_agg(jsonb_build_object('grantee', CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                                                  'grantable', a.is_grantable) ORDER BY a.grantee)
                FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'), '[]'::jsonb) END AS grants
       FROM pg_proc p
      WHERE ${ROW_TYPE_FUNCTION('p.oid')}
      ORDER BY 2`);
  return { rowTypeFunctions: rows.map((r) => ({ ...r, oid: Number(r.oid) })) };
}

export async function moveRowTypeFunctions(m: Mover, functions: RowTypeFunction[]): Promise<void> {
  for (const f of functions) {
    const label = `function ${f.signature}`;
    // Its name now: an argument of the row type prints as the retired table's name.
    const [now] = await m.rows<{ signature: string }>(`SELECT oid::regprocedure::text AS signature FROM pg_proc WHERE oid = $1`, [f.oid]);
    if (!now?.signature) { m.problems.push(`${label}: gone`); continue; }
    await m.object(label, async (run, note) => {
      await dropRestrict(run, `DROP ROUTINE ${now.signature} RESTRICT`);
      await run(withoutSemicolon(f.definition));
      // A new function may be executed by PUBLIC and whoever default privileges name (Supabase: anon,
      // authenticated, service_role); exactly the old one's ACL must hold. Sealed while it is still ours.
      // `f.signature` names the live name's row type, i.e. the function just created.
      for (const statement of await sealRoutine(m.client, f.signature)) note(statement);
      await run(`ALTER ROUTINE ${f.signature} OWNER TO ${quoteIdent(f.owner)}`);
      // No ACL (null) is PostgreSQL's default: EXECUTE for PUBLIC.
      for (const g of f.grants ?? [{ grantee: null, grantable: false }]) {
        await run(`GRANT EXECUTE ON ROUTINE ${f.signature} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
      }
      if (f.comment !== null) await run(`COMMENT ON ROUTINE ${f.signature} IS ${quoteLiteral(f.comment)}`);
    });
  }
}

/** `readTarget`: whose row type they will use, as the approver reads it. */
export function describeRowTypeFunctions(functions: RowTypeFunction[], readTarget: string): string[] {
  return functions.map((f) => `function ${f.signature}: recreated (DROP and CREATE, same owner, grants, comment) to use the row type of ${readTarget}; refused if its definition no longer compiles`);
}
