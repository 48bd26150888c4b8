/**
 * Relations that read the table through a rewrite rule (pg_rewrite, one read): views, materialized views, and
 * rules of other relations. Views are readers: recreated from their captured definition, which names the live
 * name, so they read whatever has it then (the new table, or with `cutover.compatView` the compatibility view).
 * Materialized views are recreated by materialized-views.ts (its own capture). Rules cannot be re-pointed; they
 * are listed as problems, which refuse the cutover.
 *
 * A view whose column types change over what has the live name now (numeric(4,2) -> numeric(6,2), int -> bigint:
 * issue 12, finding 3) cannot be replaced: CREATE OR REPLACE VIEW refuses to change a column's type or typmod.
 * Which views change is asked of PostgreSQL, not guessed: the definition is described as a query (`LIMIT 0`, no
 * row read) and the types it would give now (the protocol's row description: type and typmod, a domain as its
 * base type) are compared with the view's columns. Those views are dropped (RESTRICT) and created again from the
 * definition, as materialized-views.ts does for matviews: same name, options (security_invoker, security_barrier,
 * check_option), owner, table and column grants, comment, column comments and defaults, INSTEAD OF triggers and
 * rules. The view gets a new OID. Refused, named with its dependents: a view something else depends on (a view
 * over it, a function whose SQL body reads it): DROP ... RESTRICT fails, and recreating those too is not done.
 * Swap back is the same move the other way (the types change back). Not compared: a column's collation (the row
 * description has none); a collation change is refused by CREATE OR REPLACE, named, in preflight's rehearsal.
 */
import type pg from 'pg';
import { relationName } from '../catalog';
import { sealRelation } from '../seal';
import { displayName, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import { dropRestrict, grantee, withoutSemicolon, type CatalogQuery, type Mover } from './mover';

/** Privileges a GRANT on a relation can name (aclexplode's privilege_type), checked before they go into SQL. */
const PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN']);

export interface BoundView {
  oid: number;
  ref: TableRef;
  definition: string;
  options: { name: string; value: string }[];
  /**
   * What a view recreated by DROP and CREATE must get back (absent in captures made before it was read: such a
   * view is only ever replaced in place, as before).
   */
  recreate?: ViewRecreation;
}

export interface ViewRecreation {
  /** The view's columns in order: type as the row description sends it (a domain as its base type) and as shown. */
  columns: { name: string; type: number; typmod: number; shown: string; comment: string | null; default: string | null }[];
  owner: string;
  comment: string | null;
  /** relacl without the owner's own entry; null when relacl is NULL (the default). */
  grants: { grantee: string | null; privilege: string; grantable: boolean }[] | null;
  columnGrants: { column: string; grantee: string | null; privilege: string; grantable: boolean }[];
  /** CREATE TRIGGER / CREATE RULE of the view's own triggers and rules (besides its _RETURN), as deparsed. */
  own: string[];
}

export interface CapturedViews {
  /** First-level views (views on views keep their OIDs when these are replaced). `definition` names the live name. */
  views: BoundView[];
  /** Rewrite rules of other relations that read or write the table (not views). */
  rules: { name: string; table: TableRef }[];
}

const RECREATION = `
  CASE WHEN v.relkind = 'v' AND r.rulename = '_RETURN' THEN jsonb_build_object(
    'owner', pg_get_userbyid(v.relowner),
    'comment', obj_description(v.oid, 'pg_class'),
    'columns', coalesce((
      SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'type', b.type, 'typmod', b.typmod,
                                          'shown', format_type(a.atttypid, a.atttypmod), 'comment', col_description(v.oid, a.attnum),
                                          'default', (SELECT pg_get_expr(ad.adbin, ad.adrelid) FROM pg_attrdef ad WHERE ad.adrelid = v.oid AND ad.adnum = a.attnum))
                       ORDER BY a.attnum)
        FROM pg_attribute a
        CROSS JOIN LATERAL (
          WITH RECURSIVE base(type, typmod) AS (
            SELECT a.atttypid, a.atttypmod
            UNION ALL
            SELECT t.typbasetype, t.typtypmod FROM base JOIN pg_type t ON t.oid = base.type WHERE t.typtype = 'd')
          SELECT base.type::int8::float8 AS type, base.typmod FROM base JOIN pg_type t ON t.oid = base.type WHERE t.typtype <> 'd') b
       WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
    'grants', CASE WHEN v.relacl IS NOT NULL THEN coalesce((
      SELECT jsonb_agg(jsonb_build_object('grantee', CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END,
                                          'privilege', x.privilege_type, 'grantable', x.is_grantable) ORDER BY x.grantee, x.privilege_type)
        FROM aclexplode(v.relacl) x WHERE x.grantee <> v.relowner), '[]'::jsonb) END,
    'columnGrants', coalesce((
      SELECT jsonb_agg(jsonb_build_object('column', a.attname, 'grantee', CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END,
                                          'privilege', x.privilege_type, 'grantable', x.is_grantable) ORDER BY a.attnum, x.grantee, x.privilege_type)
        FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) x
       WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> v.relowner), '[]'::jsonb),
    'own', coalesce((
      SELECT jsonb_agg(o.def ORDER BY o.kind, o.name) FROM (
        SELECT 1 AS kind, t.tgname::text AS name, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t WHERE t.tgrelid = v.oid AND NOT t.tgisinternal
        UNION ALL
        SELECT 2, ru.rulename::text, pg_get_ruledef(ru.oid) FROM pg_rewrite ru WHERE ru.ev_class = v.oid AND ru.rulename <> '_RETURN') o), '[]'::jsonb)
  ) END`;

export async function captureViews(q: CatalogQuery): Promise<CapturedViews> {
  const rewrites = await q<{ oid: number; schema: string; name: string; kind: string; rule: string; definition: string | null; options: { name: string; value: string }[]; recreate: ViewRecreation | null }>(
    `SELECT DISTINCT v.oid::int8::float8 AS oid, vn.nspname AS schema, v.relname AS name, v.relkind::text AS kind, r.rulename AS rule,
            CASE WHEN v.relkind = 'v' AND r.rulename = '_RETURN' THEN pg_get_viewdef(v.oid, true) END AS definition,
            coalesce((SELECT jsonb_agg(jsonb_build_object('name', o.option_name, 'value', o.option_value))
                        FROM pg_options_to_table(v.reloptions) o), '[]'::jsonb) AS options,
            ${RECREATION} AS recreate
       FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
       JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND r.ev_class <> $1
      ORDER BY 2, 3, 5`);
  return {
    views: rewrites.filter((r) => r.definition !== null).map((r) => ({
      oid: Number(r.oid), ref: { schema: r.schema, name: r.name }, definition: r.definition!, options: r.options,
      ...(r.recreate ? { recreate: { ...r.recreate, columns: r.recreate.columns.map((c) => ({ ...c, type: Number(c.type) })) } } : {}),
    })),
    rules: rewrites.filter((r) => r.definition === null && r.kind !== 'm').map((r) => ({ name: r.rule, table: { schema: r.schema, name: r.name } })),
  };
}

/**
 * The columns whose type the definition would change over what it reads now, as `name old → new`; empty when
 * CREATE OR REPLACE can keep the view. One round trip: the definition described as a query that reads no row.
 */
async function typeChanges(client: pg.Client, v: BoundView): Promise<string[]> {
  const was = v.recreate?.columns;
  if (!was) return [];
  const { fields } = await client.query(`SELECT * FROM (\n${withoutSemicolon(v.definition)}\n) AS safeshift_view_columns LIMIT 0`);
  const changed = was.map((c, i) => ({ c, now: fields[i] }))
    .filter(({ c, now }) => now !== undefined && (now.dataTypeID !== c.type || now.dataTypeModifier !== c.typmod));
  if (changed.length === 0) return [];
  const { rows } = await client.query<{ shown: string[] }>(
    `SELECT array_agg(format_type(t, m) ORDER BY n) AS shown FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS u(t, m, n)`,
    [changed.map(({ now }) => now!.dataTypeID), changed.map(({ now }) => now!.dataTypeModifier)]);
  return changed.map(({ c }, i) => `${c.name} ${c.shown} → ${rows[0]!.shown[i]}`);
}

function optionsSql(v: BoundView): string {
  return v.options.length ? ` WITH (${v.options.map((o) => `${quoteIdent(o.name)} = ${quoteLiteral(o.value)}`).join(', ')})` : '';
}

/**
 * Views: CREATE OR REPLACE keeps the view's OID (views on it, grants, owner, comments stay). A view whose column
 * types change is dropped and created again (`recreateView`), and said in `notes`.
 */
export async function moveViews(m: Mover, captured: CapturedViews): Promise<void> {
  for (const v of captured.views) {
    const label = `view ${displayName(v.ref)}`;
    const ref = await relationName(m.client, v.oid);
    if (!ref) { m.problems.push(`${label}: gone`); continue; }
    let changes: string[] = [];
    const moved = await m.object(label, async (run, note) => {
      changes = await typeChanges(m.client, v);
      if (changes.length === 0) {
        await run(`CREATE OR REPLACE VIEW ${qualified(ref)}${optionsSql(v)} AS\n${withoutSemicolon(v.definition)}`);
        return;
      }
      await recreateView(m, v, ref, run, note);
    });
    if (moved && changes.length) {
      m.notes.push(`${label}: column types change (${changes.join(', ')}): dropped and created again (DROP ... RESTRICT, `
        + `then CREATE with its options, owner, table and column grants, comments, defaults, triggers and rules); a new OID`);
    }
  }
  for (const r of captured.rules) {
    m.problems.push(`rule ${r.name} on ${displayName(r.table)}: uses the old table; not moved`);
  }
}

/** DROP (RESTRICT: a dependent is refused, named) and CREATE, with everything the old view had. */
async function recreateView(
  m: Mover, v: BoundView, ref: TableRef, run: (sql: string) => Promise<pg.QueryResult>, note: (sql: string) => void,
): Promise<void> {
  const r = v.recreate!;
  const name = qualified(ref);
  await dropRestrict(run, `DROP VIEW ${name} RESTRICT`);
  await run(`CREATE VIEW ${name}${optionsSql(v)} AS\n${withoutSemicolon(v.definition)}`);
  // Default privileges may have granted it to anybody (Supabase: ALL to anon, authenticated, service_role):
  // exactly the old one's grants must hold. Sealed while it is still ours (src/seal.ts).
  const [made] = await m.rows<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [name]);
  for (const statement of await sealRelation(m.client, made!.oid)) note(statement);
  // Owner before grants: a GRANT run by a superuser is recorded as granted by the owner, as the old ones were.
  await run(`ALTER VIEW ${name} OWNER TO ${quoteIdent(r.owner)}`);
  for (const g of r.grants ?? []) {
    if (!PRIVILEGES.has(g.privilege)) throw new Error(`unknown privilege ${g.privilege} granted to ${g.grantee ?? 'PUBLIC'}`);
    await run(`GRANT ${g.privilege} ON TABLE ${name} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  for (const g of r.columnGrants) {
    if (!PRIVILEGES.has(g.privilege)) throw new Error(`unknown privilege ${g.privilege} granted to ${g.grantee ?? 'PUBLIC'} on column ${g.column}`);
    await run(`GRANT ${g.privilege} (${quoteIdent(g.column)}) ON TABLE ${name} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
  }
  if (r.comment !== null) await run(`COMMENT ON VIEW ${name} IS ${quoteLiteral(r.comment)}`);
  for (const c of r.columns) {
    if (c.comment !== null) await run(`COMMENT ON COLUMN ${name}.${quoteIdent(c.name)} IS ${quoteLiteral(c.comment)}`);
    if (c.default !== null) await run(`ALTER VIEW ${name} ALTER COLUMN ${quoteIdent(c.name)} SET DEFAULT ${c.default}`);
  }
  for (const own of r.own) await run(withoutSemicolon(own));
}

/** `readTarget`: what the views will read, as the approver reads it. */
export function describeViews(b: CapturedViews, readTarget: string): string[] {
  return [
    ...b.views.map((v) => `view ${displayName(v.ref)}${v.options.length ? ` (${v.options.map((o) => `${o.name}=${o.value}`).join(', ')})` : ''}: replaced to read ${readTarget}`),
    ...b.rules.map((r) => `rule ${r.name} on ${displayName(r.table)}: NOT movable`),
  ];
}
