/**
 * Relations that read the table through a rewrite rule (pg_rewrite, one read): views, materialized views, and
 * rules of other relations. Views are readers: recreated from their captured definition, which names the live
 * name, so they read whatever has it then (the new table, or with `cutover.compatView` the compatibility view).
 * Materialized views are recreated by materialized-views.ts (its own capture). Rules cannot be re-pointed; they
 * are listed as problems, which refuse the cutover.
 */
import { relationName } from '../catalog';
import { displayName, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import { withoutSemicolon, type CatalogQuery, type Mover } from './mover';

export interface BoundView {
  oid: number;
  ref: TableRef;
  definition: string;
  options: { name: string; value: string }[];
}

export interface CapturedViews {
  /** First-level views (views on views keep their OIDs when these are replaced). `definition` names the live name. */
  views: BoundView[];
  /** Rewrite rules of other relations that read or write the table (not views). */
  rules: { name: string; table: TableRef }[];
}

export async function captureViews(q: CatalogQuery): Promise<CapturedViews> {
  const rewrites = await q<{ oid: number; schema: string; name: string; kind: string; rule: string; definition: string | null; options: { name: string; value: string }[] }>(
    `SELECT DISTINCT v.oid::int8::float8 AS oid, vn.nspname AS schema, v.relname AS name, v.relkind::text AS kind, r.rulename AS rule,
            CASE WHEN v.relkind = 'v' AND r.rulename = '_RETURN' THEN pg_get_viewdef(v.oid, true) END AS definition,
            coalesce((SELECT jsonb_agg(jsonb_build_object('name', o.option_name, 'value', o.option_value))
                        FROM pg_options_to_table(v.reloptions) o), '[]'::jsonb) AS options
       FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
       JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
      WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND r.ev_class <> $1
      ORDER BY 2, 3, 5`);
  return {
    views: rewrites.filter((r) => r.definition !== null).map((r) => ({
      oid: Number(r.oid), ref: { schema: r.schema, name: r.name }, definition: r.definition!, options: r.options,
    })),
    rules: rewrites.filter((r) => r.definition === null && r.kind !== 'm').map((r) => ({ name: r.rule, table: { schema: r.schema, name: r.name } })),
  };
}

/** Views: CREATE OR REPLACE keeps the view's OID (views on it, grants, owner, comments stay). */
export async function moveViews(m: Mover, captured: CapturedViews): Promise<void> {
  for (const v of captured.views) {
    const label = `view ${displayName(v.ref)}`;
    const ref = await relationName(m.client, v.oid);
    if (!ref) { m.problems.push(`${label}: gone`); continue; }
    const withOptions = v.options.length
      ? ` WITH (${v.options.map((o) => `${quoteIdent(o.name)} = ${quoteLiteral(o.value)}`).join(', ')})` : '';
    await m.object(label, async (run) => {
      await run(`CREATE OR REPLACE VIEW ${qualified(ref)}${withOptions} AS\n${withoutSemicolon(v.definition)}`);
    });
  }
  for (const r of captured.rules) {
    m.problems.push(`rule ${r.name} on ${displayName(r.table)}: uses the old table; not moved`);
  }
}

/** `readTarget`: what the views will read, as the approver reads it. */
export function describeViews(b: CapturedViews, readTarget: string): string[] {
  return [
    ...b.views.map((v) => `view ${displayName(v.ref)}${v.options.length ? ` (${v.options.map((o) => `${o.name}=${o.value}`).join(', ')})` : ''}: replaced to read ${readTarget}`),
    ...b.rules.map((r) => `rule ${r.name} on ${displayName(r.table)}: NOT movable`),
  ];
}
