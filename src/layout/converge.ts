/**
 * Plan and apply a layout against a database. `planLayout` reads only. `convergeScope` makes one scope (a schema
 * and its tables) what the layout says in one transaction, recomputing the difference inside it: create what is
 * missing, change what differs, nothing where it already is as said; so it can run again after a crash or a retry,
 * and a second apply changes nothing. A new table is sealed (src/seal.ts) right after its DDL, before it gets the
 * grants and policies the layout lists, so it is never open to more than that.
 */
import type pg from 'pg';
import { quoteLiteral, qualified, quoteIdent } from '../sql';
import { sealTable } from '../seal';
import { authStandInMissing, API_ROLES, installAuthStandIn } from './auth-stand-in';
import { actionable, diffScope, policyComment, type Change } from './diff';
import { missingRoles, readLive } from './live';
import { allScopes, type LayoutModel, type ScopeSpec } from './model';
import type { Layout } from './schema';

export interface LayoutPlan {
  changes: Change[];
  /** What stops the layout from being applied at all (a role that does not exist, no auth and no stand-in). */
  problems: string[];
}

/** How long one scope's DDL waits for a lock before the attempt gives up (and the activity retries). */
export const LAYOUT_LOCK_TIMEOUT_MS = 5000;

export async function planLayout(client: pg.Client, layout: Layout, model: LayoutModel): Promise<LayoutPlan> {
  const problems: string[] = [];
  const changes: Change[] = [];
  const auth = await authStandInMissing(client);
  if (auth.length) {
    if (layout.auth.standIn) {
      changes.push({ scope: 'auth', sign: '+', what: 'auth', object: 'Supabase auth stand-in (roles, auth.uid(), auth.users)', reason: `missing: ${auth.join(', ')}`, sql: [] });
    } else {
      problems.push(`auth.standIn: false, and this database lacks ${auth.join(', ')} (not a Supabase database?)`);
    }
  }
  const standInRoles: string[] = layout.auth.standIn ? [...API_ROLES, 'authenticator'] : [];
  const roles = (await missingRoles(client, model.roles)).filter((r) => !standInRoles.includes(r));
  for (const r of roles) problems.push(`role ${r} does not exist (named in grants, usage or policies); create it first`);
  const scopes = allScopes(model);
  const live = await readLive(client, scopes.map((s) => s.schema));
  for (const s of scopes) changes.push(...diffScope(s, live[s.schema]));
  return { changes, problems };
}

export function scopeOf(model: LayoutModel, scope: string): ScopeSpec | undefined {
  return allScopes(model).find((s) => s.scope === scope);
}

export interface ScopeResult {
  scope: string;
  /** The changes made (empty: the scope already was as the layout says). */
  changes: { sign: Change['sign']; object: string; reason: string }[];
  statements: number;
}

/**
 * Converge one scope in one transaction (lock_timeout LAYOUT_LOCK_TIMEOUT_MS). `record` runs last in that
 * transaction (the audit row commits with what it records, or neither does).
 */
export async function convergeScope(client: pg.Client, spec: ScopeSpec, record?: (r: ScopeResult) => Promise<unknown>): Promise<ScopeResult> {
  await client.query('BEGIN');
  try {
    await client.query(`SELECT set_config('lock_timeout', $1, true)`, [`${LAYOUT_LOCK_TIMEOUT_MS}ms`]);
    const live = await readLive(client, [spec.schema], true);
    const changes = actionable(diffScope(spec, live[spec.schema]));
    let statements = 0;
    for (const c of changes) {
      for (const sql of c.sql) {
        await client.query(sql);
        statements += 1;
      }
      if (c.create) statements += (await sealNew(client, c.create.schema, c.create.name)).length;
      if (c.policy) {
        await recordPolicy(client, c.policy.table, c.policy.spec);
        statements += 1;
      }
    }
    const result = { scope: spec.scope, changes: changes.map((c) => ({ sign: c.sign, object: c.object, reason: c.reason })), statements };
    if (record) await record(result);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

async function sealNew(client: pg.Client, schema: string, name: string): Promise<string[]> {
  const { rows } = await client.query<{ oid: number }>(`SELECT to_regclass($1)::oid::int AS oid`, [qualified({ schema, name })]);
  if (!rows[0]?.oid) throw new Error(`table ${schema}.${name} was not created by its DDL`);
  return sealTable(client, rows[0].oid);
}

/** Write into the policy's comment what it was made from and how PostgreSQL printed it (src/layout/diff.ts). */
async function recordPolicy(client: pg.Client, table: { schema: string; name: string }, spec: ScopeSpec['tables'][number]['policies'][number]): Promise<void> {
  const { rows } = await client.query<{ using: string | null; check: string | null }>(
    `SELECT pg_get_expr(polqual, polrelid) AS using, pg_get_expr(polwithcheck, polrelid) AS check FROM pg_policy
      WHERE polrelid = to_regclass($1) AND polname = $2`, [qualified(table), spec.name]);
  if (!rows[0]) throw new Error(`policy ${spec.name} on ${table.schema}.${table.name} was not created`);
  await client.query(`COMMENT ON POLICY ${quoteIdent(spec.name)} ON ${qualified(table)} IS ${quoteLiteral(policyComment(spec, rows[0]))}`);
}

/** The auth stand-in, where it is missing and the layout allows it; returns what was missing. */
export async function convergeAuth(client: pg.Client, layout: Layout): Promise<string[]> {
  if (!layout.auth.standIn) return [];
  return installAuthStandIn(client);
}
