/**
 * The difference between what a layout asks (src/layout/model.ts) and what the database holds (src/layout/live.ts),
 * scope by scope, as a list of changes, each with the statements that make it so. Pure: `safeshift layout plan`
 * prints it, `layout apply` runs it (recomputed inside the transaction that applies it, so a change made meanwhile
 * is converged too, and a second apply finds nothing to do).
 *
 * A policy is the layout's when its command, roles and kind are the layout's and its comment (written by apply)
 * records the hash of the layout's statement and the expressions PostgreSQL printed for it then, equal to those it
 * prints now: so an expression altered later, or a policy of that name made by someone else, is a difference.
 */
import { canonicalJson, sha256Hex } from '../identity';
import { displayName, qualified, quoteIdent, quoteLiteral, type TableRef } from '../sql';
import type { LivePolicy, LiveSchema, LiveTable } from './live';
import type { PolicySpec, ScopeSpec, TableSpec } from './model';
import { PRIVILEGES } from './schema';

export interface Change {
  /** `auth`, `shared`, `system` or a project's slug. */
  scope: string;
  /** + create or grant, - drop or revoke, ~ replace or set, ! a finding that apply does not change. */
  sign: '+' | '-' | '~' | '!';
  what: 'auth' | 'schema' | 'usage' | 'table' | 'rls' | 'grant' | 'policy';
  /** What it is about, as a person reads it: `table project_a.stories`, `policy member_all on project_a.stories`. */
  object: string;
  /** Why: missing, extra, or how it differs. */
  reason: string;
  /** What apply runs, in order. Empty for findings. */
  sql: string[];
  /** Set on a table to create: sealed right after its DDL, before any grant or policy. */
  create?: TableRef;
  /** Set on a policy to create: apply records its hash and printed expressions in its comment. */
  policy?: { table: TableRef; spec: PolicySpec };
}

/** A sealed new table (src/seal.ts): row-level security on, no grant, no policy. */
export const SEALED: LiveTable = { oid: 0, rls: true, force: false, grants: {}, columnGrantees: [], policies: [] };

export interface PolicyRecord {
  statement: string;
  using: string | null;
  check: string | null;
}

export const POLICY_COMMENT_PREFIX = 'safeshift layout ';

export function policyComment(spec: PolicySpec, printed: { using: string | null; check: string | null }): string {
  const record: PolicyRecord = { statement: sha256Hex(spec.statement), using: printed.using, check: printed.check };
  return `${POLICY_COMMENT_PREFIX}${canonicalJson(record)}`;
}

/** Why a live policy is not the layout's `spec` (undefined: it is). */
export function policyDifference(spec: PolicySpec, live: LivePolicy): string | undefined {
  if (live.command !== spec.command) return `is FOR ${live.command.toUpperCase()}, the layout says ${spec.command.toUpperCase()}`;
  if (live.permissive !== spec.permissive) return `is ${live.permissive ? 'permissive' : 'restrictive'}, the layout says ${spec.permissive ? 'permissive' : 'restrictive'}`;
  if (canonicalJson(live.roles) !== canonicalJson(spec.roles)) return `applies to ${live.roles.join(', ')}, the layout says ${spec.roles.join(', ')}`;
  let record: PolicyRecord | undefined;
  try {
    record = live.comment?.startsWith(POLICY_COMMENT_PREFIX) ? JSON.parse(live.comment.slice(POLICY_COMMENT_PREFIX.length)) as PolicyRecord : undefined;
  } catch {
    record = undefined;
  }
  if (!record) return 'was not made by layout apply (no record of its expressions)';
  if (record.statement !== sha256Hex(spec.statement)) return 'differs from the layout\'s (the layout\'s expressions changed)';
  if (record.using !== live.using || record.check !== live.check) return 'was altered after layout apply made it (its expressions are not the ones recorded)';
  return undefined;
}

const privList = (privs: string[]) => privs.map((p) => p.toUpperCase()).join(', ');
const grantee = (role: string) => (role === 'public' ? 'PUBLIC' : quoteIdent(role));

function tableChanges(scope: string, spec: TableSpec, live: LiveTable): Change[] {
  const t = qualified(spec.ref);
  const name = displayName(spec.ref);
  const out: Change[] = [];
  if (!live.rls) out.push({ scope, sign: '~', what: 'rls', object: `table ${name}`, reason: 'row-level security is off', sql: [`ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY`] });
  if (live.force !== spec.forceRls) {
    out.push({ scope, sign: '~', what: 'rls', object: `table ${name}`, reason: spec.forceRls ? 'row-level security is not forced' : 'row-level security is forced; the layout says not',
      sql: [`ALTER TABLE ${t} ${spec.forceRls ? 'FORCE' : 'NO FORCE'} ROW LEVEL SECURITY`] });
  }
  const roles = [...new Set([...Object.keys(spec.grants), ...Object.keys(live.grants), ...live.columnGrantees])].sort();
  for (const role of roles) {
    const want = spec.grants[role] ?? [];
    let have = live.grants[role] ?? [];
    if (live.columnGrantees.includes(role)) {
      // Revoking a table privilege revokes it on every column too: start from nothing, then grant what is wanted.
      out.push({ scope, sign: '-', what: 'grant', object: `column privileges on ${name} to ${role}`, reason: 'extra (the layout grants whole tables only)', sql: [`REVOKE ALL ON TABLE ${t} FROM ${grantee(role)}`] });
      have = [];
    }
    const missing = PRIVILEGES.filter((p) => want.includes(p) && !have.includes(p));
    const extra = have.filter((p) => !want.includes(p as never));
    if (missing.length) out.push({ scope, sign: '+', what: 'grant', object: `${privList(missing)} on ${name} to ${role}`, reason: 'missing', sql: [`GRANT ${privList(missing)} ON TABLE ${t} TO ${grantee(role)}`] });
    if (extra.length) out.push({ scope, sign: '-', what: 'grant', object: `${privList(extra)} on ${name} to ${role}`, reason: 'extra', sql: [`REVOKE ${privList(extra)} ON TABLE ${t} FROM ${grantee(role)}`] });
  }
  const liveByName = new Map(live.policies.map((p) => [p.name, p]));
  for (const p of live.policies) {
    if (!spec.policies.some((s) => s.name === p.name)) {
      out.push({ scope, sign: '-', what: 'policy', object: `policy ${p.name} on ${name}`, reason: `extra (not in the layout; FOR ${p.command.toUpperCase()} TO ${p.roles.join(', ')}${p.using ? ` USING (${p.using})` : ''})`, sql: [`DROP POLICY ${quoteIdent(p.name)} ON ${t}`] });
    }
  }
  for (const s of spec.policies) {
    const l = liveByName.get(s.name);
    const why = l ? policyDifference(s, l) : 'missing';
    if (!why) continue;
    out.push({
      scope, sign: l ? '~' : '+', what: 'policy', object: `policy ${s.name} on ${name}`, reason: why,
      sql: [...(l ? [`DROP POLICY ${quoteIdent(s.name)} ON ${t}`] : []), s.statement], policy: { table: spec.ref, spec: s },
    });
  }
  return out;
}

/** The changes that make one scope (a schema and its tables) what the layout says; `live` undefined: no such schema. */
export function diffScope(spec: ScopeSpec, live: LiveSchema | undefined): Change[] {
  const scope = spec.scope;
  const s = quoteIdent(spec.schema);
  const out: Change[] = [];
  if (!live) out.push({ scope, sign: '+', what: 'schema', object: `schema ${spec.schema}`, reason: 'missing', sql: [`CREATE SCHEMA ${s}`] });
  if (spec.comment !== undefined && live?.comment !== spec.comment) {
    out.push({ scope, sign: '~', what: 'schema', object: `comment on schema ${spec.schema}`, reason: live?.comment ? 'the project\'s metadata (id, owner, region, tier) differs' : 'the project\'s metadata (id, owner, region, tier) is not recorded',
      sql: [`COMMENT ON SCHEMA ${s} IS ${quoteLiteral(spec.comment)}`] });
  }
  const grants = live?.grants ?? {};
  for (const role of [...new Set([...spec.usage, ...Object.keys(grants)])].sort()) {
    const want = spec.usage.includes(role) ? ['usage'] : [];
    const have = grants[role] ?? [];
    if (want.length && !have.includes('usage')) out.push({ scope, sign: '+', what: 'usage', object: `USAGE on schema ${spec.schema} to ${role}`, reason: 'missing', sql: [`GRANT USAGE ON SCHEMA ${s} TO ${grantee(role)}`] });
    const extra = have.filter((p) => !want.includes(p));
    if (extra.length) out.push({ scope, sign: '-', what: 'usage', object: `${privList(extra)} on schema ${spec.schema} to ${role}`, reason: 'extra', sql: [`REVOKE ${privList(extra)} ON SCHEMA ${s} FROM ${grantee(role)}`] });
  }
  for (const t of spec.tables) {
    const l = live?.tables[t.ref.name];
    if (!l) out.push({ scope, sign: '+', what: 'table', object: `table ${displayName(t.ref)}`, reason: 'missing', sql: [t.ddl], create: t.ref });
    out.push(...tableChanges(scope, t, l ?? SEALED));
  }
  for (const name of Object.keys(live?.tables ?? {}).sort()) {
    if (spec.tables.some((t) => t.ref.name === name)) continue;
    const l = live!.tables[name]!;
    const ref = { schema: spec.schema, name };
    out.push({ scope, sign: '!', what: 'table', object: `table ${displayName(ref)}`, reason: `not in the layout (left alone${l.rls ? '' : '; row-level security is OFF'})`, sql: [] });
  }
  return out;
}

/** Changes apply would run (findings left out). */
export const actionable = (changes: Change[]) => changes.filter((c) => c.sign !== '!');
