/**
 * Grants: the table's privileges, table level (pg_class.relacl) and column level (pg_attribute.attacl), and its
 * owner. Captured as catalog data and rebuilt as GRANT statements: on the new table at cutover, on the
 * compatibility view (compat-view.ts), on the original table on swap back (the same move, the other way).
 */
import { displayName, qualified, quoteIdent, type TableRef } from '../sql';
import { sealRelation, sealTable } from '../seal';
import { grantee, roleName, type CatalogQuery, type MoveSource, type MoveTarget, type Mover } from './mover';

const PRIVILEGES = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER', 'MAINTAIN']);

export interface BoundGrant {
  /** Role name; null for PUBLIC. */
  grantee: string | null;
  privilege: string;
  grantable: boolean;
}

export interface CapturedGrants {
  grants: BoundGrant[];
  columnGrants: (BoundGrant & { column: string })[];
}

export async function captureGrants(q: CatalogQuery): Promise<CapturedGrants> {
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
  return { grants, columnGrants };
}

/**
 * The old table's grants, table and column level, given on `on` (the new table, or the compatibility view);
 * `owner` (who holds every privilege on `on` already) is skipped, as are columns `on` lacks (a problem each).
 */
export async function grantAsOnOldTable(
  m: Mover, captured: CapturedGrants, on: TableRef, owner: string, columns: Set<string>, renames: Record<string, string> = {},
  skipMissingColumns = false,
): Promise<void> {
  const shown = displayName(on);
  // Exactly the old table's access: what `on` had before (default privileges, the target DDL) goes first.
  await m.object(`access to ${shown}: only what the old table granted`, async (_run, note) => {
    const [rel] = await m.rows<{ oid: number }>(`SELECT $1::regclass::oid::int AS oid`, [qualified(on)]);
    for (const statement of await sealRelation(m.client, rel!.oid)) note(statement);
  });
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
    // A column the mapping renamed keeps its grants under its new name.
    const column = Object.hasOwn(renames, g.column) ? renames[g.column]! : g.column;
    const label = `column grant ${g.privilege} (${column}) on ${shown} to ${roleName(g.grantee)}`;
    if (!PRIVILEGES.has(g.privilege)) { m.problems.push(`${label}: unknown privilege, not granted`); continue; }
    if (!columns.has(column)) {
      (skipMissingColumns ? m.skipped : m.problems).push(`${label}: ${shown} has no column ${column}; not granted`);
      continue;
    }
    if (g.grantee === owner) continue;
    await m.object(label, async (run) => {
      await run(`GRANT ${g.privilege} (${quoteIdent(column)}) ON TABLE ${qualified(on)} TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''}`);
    });
  }
}

/** The owner is not changed; the old owner's privileges are granted instead. The new owner holds every privilege already. */
export async function moveGrants(
  m: Mover, captured: CapturedGrants & { owner: string }, to: MoveTarget, renames: Record<string, string>, skipMissingColumns = false,
): Promise<void> {
  if (to.row.owner !== captured.owner) {
    m.problems.push(`owner: ${to.shown} is owned by ${to.row.owner}, the old table by ${captured.owner} (not changed; the old owner's privileges are granted below)`);
  }
  await grantAsOnOldTable(m, captured, to.ref, to.row.owner, to.columns, renames, skipMissingColumns);
}

/**
 * The table the grants moved from (the retired table at cutover, the new table on swap back) keeps none: it holds
 * the same rows, and from now on nothing that reads it is meant to (`src/seal.ts`).
 */
export async function sealMovedFrom(m: Mover, from: MoveSource): Promise<void> {
  await m.object(`access to ${displayName(from.ref)}: sealed (its grants moved)`, async (_run, note) => {
    for (const statement of await sealTable(m.client, from.oid)) note(statement);
  });
}

export function describeGrants(b: CapturedGrants & { owner: string }): string[] {
  const grants = new Map<string, string[]>();
  for (const g of b.grants) {
    if (g.grantee === b.owner) continue;
    const key = `${roleName(g.grantee)}${g.grantable ? ' (with grant option)' : ''}`;
    grants.set(key, [...(grants.get(key) ?? []), g.privilege]);
  }
  const lines = [...grants].map(([who, privs]) => `grant ${privs.join(', ')} to ${who}: granted on the new table`);
  for (const g of b.columnGrants) lines.push(`column grant ${g.privilege} (${g.column}) to ${roleName(g.grantee)}: granted where the column exists`);
  return lines;
}
