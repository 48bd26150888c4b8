/**
 * Row-level security policies, both sides: the table's own policies (created on the new table from the captured
 * expressions, unless its DDL has one of that name), and policies of other tables whose expressions read the
 * table (readers: ALTER POLICY re-parses the captured expressions, which name the live name). The RLS flags
 * themselves are in rls.ts.
 */
import { relationName } from '../catalog';
import { displayName, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import { grantee, roleName, type CatalogQuery, type MoveTarget, type Mover } from './mover';

const POLICY_COMMANDS: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };

export interface BoundPolicy {
  name: string;
  permissive: boolean;
  /** ALL, SELECT, INSERT, UPDATE or DELETE. */
  command: string;
  /** Role names; null stands for PUBLIC. */
  roles: (string | null)[];
  using: string | null;
  withCheck: string | null;
  comment: string | null;
}

export interface ForeignPolicy {
  name: string;
  tableOid: number;
  table: TableRef;
  using: string | null;
  withCheck: string | null;
}

export interface CapturedPolicies {
  policies: BoundPolicy[];
}

export interface CapturedForeignPolicies {
  /** Policies of other tables whose expressions read the table. */
  foreignPolicies: ForeignPolicy[];
}

export async function capturePolicies(q: CatalogQuery): Promise<CapturedPolicies> {
  const policies = await q<BoundPolicy & { cmd: string }>(
    `SELECT p.polname AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
            ARRAY(SELECT CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r) AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS "withCheck",
            obj_description(p.oid, 'pg_policy') AS comment
       FROM pg_policy p WHERE p.polrelid = $1 ORDER BY p.polname`);
  return { policies: policies.map(({ cmd, ...p }) => ({ ...p, command: POLICY_COMMANDS[cmd] ?? cmd })) };
}

export async function captureForeignPolicies(q: CatalogQuery): Promise<CapturedForeignPolicies> {
  const foreignPolicies = await q<Omit<ForeignPolicy, 'table'> & { schema: string; relname: string }>(
    `SELECT DISTINCT p.polname AS name, p.polrelid::int8::float8 AS "tableOid", n.nspname AS schema, c.relname AS relname,
            pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS "withCheck"
       FROM pg_depend d JOIN pg_policy p ON p.oid = d.objid
       JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE d.classid = 'pg_policy'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND p.polrelid <> $1
      ORDER BY 3, 4, 1`);
  return {
    foreignPolicies: foreignPolicies.map((p) => ({
      name: p.name, tableOid: Number(p.tableOid), table: { schema: p.schema, name: p.relname }, using: p.using, withCheck: p.withCheck,
    })),
  };
}

/** `USING (...)` and `WITH CHECK (...)` as a policy has them. */
function expressions(p: { using: string | null; withCheck: string | null }): string {
  return (p.using !== null ? ` USING (${p.using})` : '') + (p.withCheck !== null ? ` WITH CHECK (${p.withCheck})` : '');
}

/** The table's own policies, created on the new table unless it defines one of that name. */
export async function movePolicies(m: Mover, policies: BoundPolicy[], to: MoveTarget): Promise<void> {
  const existing = new Set((await m.rows<{ name: string }>(`SELECT polname AS name FROM pg_policy WHERE polrelid = $1`, [to.oid])).map((r) => r.name));
  for (const p of policies) {
    const label = `policy ${p.name} on ${to.shown}`;
    if (existing.has(p.name)) { m.skipped.push(`${label}: the new table defines its own`); continue; }
    if (!Object.values(POLICY_COMMANDS).includes(p.command)) { m.problems.push(`${label}: unknown command ${p.command}`); continue; }
    await m.object(label, async (run) => {
      const roles = p.roles.length ? p.roles.map(grantee).join(', ') : 'PUBLIC';
      await run(`CREATE POLICY ${quoteIdent(p.name)} ON ${to.sql} AS ${p.permissive ? 'PERMISSIVE' : 'RESTRICTIVE'} FOR ${p.command} TO ${roles}${expressions(p)}`);
      if (p.comment !== null) await run(`COMMENT ON POLICY ${quoteIdent(p.name)} ON ${to.sql} IS ${quoteLiteral(p.comment)}`);
    });
  }
}

/** Policies of other tables that read the table: ALTER POLICY re-parses the captured expressions. */
export async function moveForeignPolicies(m: Mover, policies: ForeignPolicy[]): Promise<void> {
  for (const p of policies) {
    const table = await relationName(m.client, p.tableOid);
    const label = `policy ${p.name} on ${table ? displayName(table) : displayName(p.table)}`;
    if (!table) { m.problems.push(`${label}: the table is gone`); continue; }
    await m.object(label, async (run) => {
      await run(`ALTER POLICY ${quoteIdent(p.name)} ON ${qualified(table)}${expressions(p)}`);
    });
  }
}

export function describePolicies(policies: BoundPolicy[]): string[] {
  return policies.map((p) =>
    `policy ${p.name} (${p.permissive ? 'permissive' : 'restrictive'}, ${p.command}, to ${p.roles.map(roleName).join(', ') || 'PUBLIC'}): created on the new table unless it has one of that name`);
}

/** `readTarget`: what the policies will read, as the approver reads it. */
export function describeForeignPolicies(policies: ForeignPolicy[], readTarget: string): string[] {
  return policies.map((p) => `policy ${p.name} on ${displayName(p.table)}: re-pointed (ALTER POLICY) to ${readTarget}`);
}
