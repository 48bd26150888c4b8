/**
 * Whatever else depends on the table or its row type that no kind in src/bound/ moves (an aggregate over the
 * row type, a column of the row type, ...): captured as pg_describe_object names it, and a problem at the move,
 * which refuses the cutover. Its query leaves out what the other kinds capture: a kind that learns to move
 * something more takes it out of this query too.
 */
import type { CatalogQuery, Mover } from './mover';
import { ROW_TYPE_FUNCTION } from './row-type-functions';

export interface CapturedOtherDependents {
  /** Anything else bound to the table or its row type, as pg_describe_object names it: not movable. */
  otherDependents: string[];
}

export async function captureOtherDependents(q: CatalogQuery): Promise<CapturedOtherDependents> {
  // Normal dependencies on the table or its row type that none of the other kinds captures. Objects of the table
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
        -- Materialized views (their rewrite rule, left out above) and functions of the row type are recreated:
        -- materialized-views.ts, row-type-functions.ts.
        AND NOT (d.classid = 'pg_proc'::regclass AND ${ROW_TYPE_FUNCTION('d.objid')})
        -- The table's own column defaults and generated expressions: part of the table, like its indexes.
        AND NOT (d.classid = 'pg_attrdef'::regclass AND EXISTS (SELECT 1 FROM pg_attrdef ad WHERE ad.oid = d.objid AND ad.adrelid = $1))
      ORDER BY 1`);
  return { otherDependents: others.map((o) => o.what) };
}

export function refuseOtherDependents(m: Mover, otherDependents: string[]): void {
  for (const what of otherDependents) {
    m.problems.push(`${what}: depends on the old table (or its row type); not moved`);
  }
}

export function describeOtherDependents(otherDependents: string[]): string[] {
  return otherDependents.map((o) => `${o}: NOT movable`);
}
