/**
 * `safeshift layout verify`: proof of isolation, by asking PostgreSQL as the API roles would, not by reading
 * policy text. Everything happens in one transaction that is always rolled back:
 *   1. the catalog: every layout table exists with row-level security on (and forced where the layout says), and
 *      no other table in a layout schema has it off;
 *   2. probe rows, written as safeshift's own role (which must bypass RLS): one member per sampled project, with its
 *      membership row, and one generated row in every table of the shared and system schemas and of each sampled
 *      project (foreign keys not enforced meanwhile when the role is a superuser: session_replication_role);
 *   3. as `authenticated` with that member's JWT claims (SET LOCAL ROLE + request.jwt.claims, as PostgREST does),
 *      for sampled pairs of projects (A, B): A's member reads A's rows (else the proof would be empty), and reads,
 *      inserts, updates and deletes 0 rows of B's tables; as `anon`, no table yields a row; as `service_role`,
 *      every table yields all its rows.
 * A failure names the table and the policies that let the role in (marked when they are not the layout's).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { pgErrorCode } from '../db';
import { displayName, qualified, quoteIdent, type TableRef } from '../sql';
import { policyDifference } from './diff';
import { readLive, type LiveSchema, type LiveTable } from './live';
import { allScopes, type LayoutModel, type ScopeSpec } from './model';

export interface VerifyFailure {
  check: 'catalog' | 'probe' | 'member-own' | 'cross-project' | 'anon' | 'service_role';
  table: string;
  message: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Checks made (each query asked as a role, each catalog fact). */
  checks: number;
  pairs: [string, string][];
  failures: VerifyFailure[];
  notes: string[];
}

/** Which projects to probe: `wanted` by slug, else up to `sample` spread evenly over the layout's order. */
export function sampleProjects(slugs: string[], sample: number, wanted?: string[]): string[] {
  if (wanted?.length) return wanted;
  if (slugs.length <= sample) return slugs;
  const n = Math.max(2, sample);
  return [...new Set(Array.from({ length: n }, (_, i) => slugs[Math.round((i * (slugs.length - 1)) / (n - 1))]!))];
}

/** A text value PostgreSQL coerces to a column of this type, for a probe row; undefined: no generic value. */
function probeValue(type: { name: string; category: string; enumLabel: string | null }): string | undefined {
  switch (type.name) {
    case 'uuid': return randomUUID();
    case 'bool': return 'false';
    case 'date': return '2026-01-01';
    case 'timestamp': case 'timestamptz': return '2026-01-01 00:00:00+00';
    case 'time': case 'timetz': return '00:00:00';
    case 'interval': return '1 second';
    case 'json': case 'jsonb': return '{}';
    case 'bytea': return '\\x00';
    case 'inet': case 'cidr': return '127.0.0.1';
    default: break;
  }
  if (type.category === 'N') return String(1_000_000 + Math.floor(Math.random() * 1_000_000_000));
  if (type.category === 'S') return `safeshift-verify-${randomUUID()}`;
  if (type.category === 'A') return '{}';
  if (type.category === 'E' && type.enumLabel !== null) return type.enumLabel;
  return undefined;
}

interface ProbeColumn { name: string; type: string; category: string; enumLabel: string | null }

/** Columns a probe row must fill: NOT NULL, no default, not identity or generated. */
async function probeColumns(client: pg.Client, table: TableRef): Promise<ProbeColumn[]> {
  const { rows } = await client.query<ProbeColumn>(
    `SELECT a.attname AS name, t.typname AS type, t.typcategory AS category,
            (SELECT e.enumlabel FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder LIMIT 1) AS "enumLabel"
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull
        AND NOT a.atthasdef AND a.attidentity = '' AND a.attgenerated = '' ORDER BY a.attnum`, [qualified(table)]);
  return rows;
}

/** An INSERT of one generated row (with `fixed` values for some columns), parameters for every value. */
async function probeInsert(client: pg.Client, table: TableRef, fixed: Record<string, string> = {}): Promise<{ sql: string; values: string[] }> {
  const cols = await probeColumns(client, table);
  const names: string[] = [];
  const values: string[] = [];
  for (const [name, value] of Object.entries(fixed)) { names.push(name); values.push(value); }
  for (const c of cols) {
    if (c.name in fixed) continue;
    const v = probeValue({ name: c.type, category: c.category, enumLabel: c.enumLabel });
    if (v === undefined) throw new Error(`cannot make a probe row for ${displayName(table)}: column ${c.name} (${c.type}) is NOT NULL without a default`);
    names.push(c.name);
    values.push(v);
  }
  if (!names.length) return { sql: `INSERT INTO ${qualified(table)} DEFAULT VALUES`, values: [] };
  return { sql: `INSERT INTO ${qualified(table)} (${names.map(quoteIdent).join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})`, values };
}

/**
 * Without session_replication_role (not a superuser) the membership row's foreign keys hold: for each single-column
 * key from a column we set (the user to a users table, say), a probe row in the referenced table with that value.
 */
async function insertParents(client: pg.Client, table: TableRef, values: Record<string, string>): Promise<void> {
  const { rows } = await client.query<{ column: string; schema: string; name: string; ref: string }>(
    `SELECT a.attname AS column, n.nspname AS schema, r.relname AS name, ra.attname AS ref
       FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
       JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
      WHERE c.conrelid = to_regclass($1) AND c.contype = 'f' AND cardinality(c.conkey) = 1`, [qualified(table)]);
  for (const r of rows) {
    const value = values[r.column];
    if (value === undefined) continue;
    const ins = await probeInsert(client, { schema: r.schema, name: r.name }, { [r.ref]: value });
    await client.query(ins.sql, ins.values);
  }
}

/**
 * Run `sql` in a savepoint that is then rolled back (`keep`: released): its row count (a count(*)'s value), or
 * the SQLSTATE it failed with. A write that got through is undone at once, so one check never changes another's.
 */
async function attempt(client: pg.Client, sql: string, values: unknown[] = [], keep = false): Promise<{ rows: number } | { code: string; message: string }> {
  await client.query('SAVEPOINT probe');
  try {
    const r = await client.query(sql, values);
    const rows = r.command === 'SELECT' ? Number((r.rows[0] as { n?: unknown } | undefined)?.n ?? r.rowCount ?? 0) : r.rowCount ?? 0;
    await client.query(keep ? 'RELEASE SAVEPOINT probe' : 'ROLLBACK TO SAVEPOINT probe');
    return { rows };
  } catch (err) {
    await client.query('ROLLBACK TO SAVEPOINT probe');
    return { code: pgErrorCode(err) ?? '?', message: (err as Error).message };
  }
}

async function actAs(client: pg.Client, role: string, claims: Record<string, unknown>): Promise<void> {
  await client.query('RESET ROLE');
  await client.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ role, ...claims })]);
  await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
}

/** Policies on `live` that apply to `role` for `command`, each marked when it is not the layout's. */
function lettingIn(spec: ScopeSpec['tables'][number] | undefined, live: LiveTable | undefined, role: string, command: string): string {
  const names = (live?.policies ?? []).filter((p) => (p.command === 'all' || p.command === command) && (p.roles.includes(role) || p.roles.includes('public')))
    .map((p) => {
      const mine = spec?.policies.find((s) => s.name === p.name);
      const why = mine ? policyDifference(mine, p) : 'not in the layout';
      return why ? `${p.name} (${why})` : p.name;
    });
  return names.length ? `policies for ${role} ${command.toUpperCase()}: ${names.join(', ')}` : `no policy for ${role} ${command.toUpperCase()} (grants: check)`;
}

export async function verifyLayout(client: pg.Client, model: LayoutModel, options: { sample: number; projects?: string[] }): Promise<VerifyReport> {
  const report: VerifyReport = { ok: false, checks: 0, pairs: [], failures: [], notes: [] };
  const fail = (check: VerifyFailure['check'], table: string, message: string) => report.failures.push({ check, table, message });
  const scopes = allScopes(model);
  const live = await readLive(client, scopes.map((s) => s.schema));
  catalogChecks(scopes, live, report, fail);

  const slugs = model.projects.map((p) => p.scope);
  const unknown = (options.projects ?? []).filter((s) => !slugs.includes(s));
  if (unknown.length) throw new Error(`--projects: ${unknown.join(', ')} not in the layout`);
  const sampled = sampleProjects(slugs, options.sample, options.projects).map((s) => model.projects.find((p) => p.scope === s)!);
  if (sampled.length < 2) report.notes.push('fewer than two projects: no cross-project check');

  const { rows: [me] } = await client.query<{ bypass: boolean; superuser: boolean }>(
    `SELECT rolbypassrls OR rolsuper AS bypass, rolsuper AS superuser FROM pg_roles WHERE rolname = current_user`);
  if (!me?.bypass) throw new Error('layout verify writes probe rows (rolled back) and needs a role that bypasses row-level security (BYPASSRLS or superuser)');

  await client.query('BEGIN');
  try {
    await client.query(`SELECT set_config('search_path', 'pg_catalog', true)`);
    // Probe rows need not satisfy foreign keys (a story without a community row): only a superuser may say so.
    if (me.superuser) await client.query(`SET LOCAL session_replication_role = replica`);
    const members = new Map<string, string>();
    const m = model.membership;
    for (const p of sampled) {
      const user = randomUUID();
      members.set(p.scope, user);
      const values = { [m.user]: user, [m.project]: p.project!.id };
      if (!me.superuser) await insertParents(client, m.table, values);
      const ins = await probeInsert(client, m.table, values);
      await client.query(ins.sql, ins.values);
    }
    const probed = [model.shared, model.system, ...sampled];
    for (const s of probed) {
      for (const t of s.tables) {
        if (!live[s.schema]?.tables[t.ref.name]) continue;
        if (t.ref.schema === m.table.schema && t.ref.name === m.table.name) continue;
        try {
          const ins = await probeInsert(client, t.ref);
          const r = await attempt(client, ins.sql, ins.values, true);
          if ('code' in r) fail('probe', displayName(t.ref), `could not write a probe row (${r.code}: ${r.message}); the table is not checked`);
        } catch (err) {
          fail('probe', displayName(t.ref), (err as Error).message);
        }
      }
    }
    for (const [i, a] of sampled.entries()) {
      const b = sampled[(i + 1) % sampled.length]!;
      if (a === b) break;
      report.pairs.push([a.scope, b.scope]);
      await crossProjectChecks(client, a, b, members.get(a.scope)!, live, report, fail);
    }
    await roleChecks(client, probed, live, report, fail);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
  }
  report.ok = report.failures.length === 0;
  return report;
}

type Fail = (check: VerifyFailure['check'], table: string, message: string) => void;

function catalogChecks(scopes: ScopeSpec[], live: Record<string, LiveSchema>, report: VerifyReport, fail: Fail): void {
  for (const s of scopes) {
    for (const t of s.tables) {
      const l = live[s.schema]?.tables[t.ref.name];
      report.checks += 1;
      if (!l) { fail('catalog', displayName(t.ref), 'does not exist (safeshift layout apply)'); continue; }
      if (!l.rls) fail('catalog', displayName(t.ref), 'row-level security is OFF');
      else if (t.forceRls && !l.force) fail('catalog', displayName(t.ref), 'row-level security is not forced (the table owner is not subject to it)');
      for (const p of l.policies) {
        const mine = t.policies.find((x) => x.name === p.name);
        const why = mine ? policyDifference(mine, p) : 'is not in the layout';
        if (why) report.notes.push(`policy ${p.name} on ${displayName(t.ref)} ${why}`);
      }
    }
    for (const [name, l] of Object.entries(live[s.schema]?.tables ?? {})) {
      if (s.tables.some((t) => t.ref.name === name)) continue;
      report.checks += 1;
      if (!l.rls) fail('catalog', displayName({ schema: s.schema, name }), 'row-level security is OFF (a table in a layout schema the layout does not declare)');
    }
  }
}

async function crossProjectChecks(client: pg.Client, a: ScopeSpec, b: ScopeSpec, member: string, live: Record<string, LiveSchema>, report: VerifyReport, fail: Fail): Promise<void> {
  await actAs(client, 'authenticated', { sub: member });
  for (const t of a.tables) {
    if (!live[a.schema]?.tables[t.ref.name]) continue;
    if (!(t.grants.authenticated ?? []).includes('select')) continue;
    report.checks += 1;
    const r = await attempt(client, `SELECT count(*) AS n FROM ${qualified(t.ref)}`);
    if ('code' in r || r.rows === 0) {
      fail('member-own', displayName(t.ref), `a member of ${a.scope} reads no row of its own project's table (${'code' in r ? r.message : '0 rows'}): the policies do not let members in, so isolation is not proven`);
    }
  }
  for (const t of b.tables) {
    const l = live[b.schema]?.tables[t.ref.name];
    if (!l) continue;
    const name = displayName(t.ref);
    const who = `a member of ${a.scope} (not of ${b.scope})`;
    report.checks += 4;
    const read = await attempt(client, `SELECT count(*) AS n FROM ${qualified(t.ref)}`);
    if ('rows' in read && read.rows > 0) fail('cross-project', name, `${who} reads ${read.rows} row(s); ${lettingIn(t, l, 'authenticated', 'select')}`);
    const ins = await probeInsert(client, t.ref).catch(() => undefined);
    if (ins) {
      const w = await attempt(client, ins.sql, ins.values);
      if ('rows' in w && w.rows > 0) fail('cross-project', name, `${who} inserted a row; ${lettingIn(t, l, 'authenticated', 'insert')}`);
    }
    const col = quoteIdent((await client.query<{ name: string }>(`SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attidentity = '' AND attgenerated = '' ORDER BY attnum LIMIT 1`, [qualified(t.ref)])).rows[0]?.name ?? 'ctid');
    const up = await attempt(client, `UPDATE ${qualified(t.ref)} SET ${col} = ${col}`);
    if ('rows' in up && up.rows > 0) fail('cross-project', name, `${who} updated ${up.rows} row(s); ${lettingIn(t, l, 'authenticated', 'update')}`);
    const del = await attempt(client, `DELETE FROM ${qualified(t.ref)}`);
    if ('rows' in del && del.rows > 0) fail('cross-project', name, `${who} deleted ${del.rows} row(s); ${lettingIn(t, l, 'authenticated', 'delete')}`);
  }
  await client.query('RESET ROLE');
}

async function roleChecks(client: pg.Client, probed: ScopeSpec[], live: Record<string, LiveSchema>, report: VerifyReport, fail: Fail): Promise<void> {
  const tables = probed.flatMap((s) => s.tables.filter((t) => live[s.schema]?.tables[t.ref.name]).map((t) => ({ t, l: live[s.schema]!.tables[t.ref.name]! })));
  const counts = new Map<string, number>();
  for (const { t } of tables) counts.set(displayName(t.ref), Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualified(t.ref)}`)).rows[0]!.n));
  await actAs(client, 'anon', {});
  for (const { t, l } of tables) {
    report.checks += 1;
    const r = await attempt(client, `SELECT count(*) AS n FROM ${qualified(t.ref)}`);
    if ('rows' in r && r.rows > 0) fail('anon', displayName(t.ref), `anon reads ${r.rows} row(s); ${lettingIn(t, l, 'anon', 'select')}`);
  }
  await actAs(client, 'service_role', {});
  for (const { t } of tables) {
    report.checks += 1;
    const r = await attempt(client, `SELECT count(*) AS n FROM ${qualified(t.ref)}`);
    const all = counts.get(displayName(t.ref))!;
    if ('code' in r) fail('service_role', displayName(t.ref), `service_role cannot read it (${r.message})`);
    else if (r.rows !== all) fail('service_role', displayName(t.ref), `service_role reads ${r.rows} of ${all} row(s)`);
  }
  await client.query('RESET ROLE');
}
