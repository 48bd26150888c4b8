/**
 * Sealed relations: every privilege on a relation, table and column level, taken from everybody but its owner.
 * Nobody but safeshift's own role (the owner) and superusers can then read or write it.
 *
 * Why: default privileges (Supabase grants ALL on every new table in `public` to `anon` and `authenticated`)
 * open a table the moment it is created. The new table holds the old one's rows long before the cutover decides
 * who may see them, without the old table's row-level security policies; the retired table holds them after it.
 * So the new table is sealed when it is created, the retired one when its grants have moved to the new one, and
 * every move of grants first seals the relation it grants on (`grants.ts`), so the result is exactly the old
 * table's access, never the old access plus whatever the default privileges added.
 *
 * A sealed table also has row-level security on, with no policy (`sealTable`): members of `pg_read_all_data` and
 * `pg_write_all_data` bypass privileges but not row-level security, and the old table's policies did not follow
 * its rows into the new table, the backup or the change table. The owner (safeshift) is not subject to it. At
 * cutover the new table's flags are set to exactly the old table's (`rls.ts`).
 *
 * Privileges do not stop a superuser, the owner or a member of the owner role, nor BYPASSRLS with
 * pg_write_all_data: the new table and the retired table also carry a write guard (src/write-guard.ts).
 */
import type pg from 'pg';
import { relationName } from './catalog';
import { qualified, quoteIdent } from './sql';

/** One REVOKE per grantee holding something on `oid` (or a column of it), the owner excepted; the statements run. */
export async function sealRelation(client: pg.Client, oid: number): Promise<string[]> {
  const statements: string[] = [];
  // A grant made by a grant-option holder goes with the holder's (CASCADE); a second pass finds any left.
  for (let pass = 0; pass < 3; pass += 1) {
    const ran = await revokeOnce(client, oid);
    if (ran.length === 0) break;
    statements.push(...ran);
  }
  return statements;
}

async function revokeOnce(client: pg.Client, oid: number): Promise<string[]> {
  const { rows } = await client.query<{ grantee: string | null; column: string | null }>(
    `SELECT DISTINCT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee, NULL::text AS column
       FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) x WHERE c.oid = $1 AND x.grantee <> c.relowner
     UNION
     SELECT DISTINCT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END, a.attname::text
       FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid CROSS JOIN LATERAL aclexplode(a.attacl) x
      WHERE c.oid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND x.grantee <> c.relowner
     ORDER BY 2 NULLS FIRST, 1 NULLS FIRST`,
    [oid]);
  if (rows.length === 0) return [];
  const at = await relationName(client, oid);
  if (!at) return [];
  const rel = qualified(at);
  const statements: string[] = [];
  for (const r of rows) {
    const who = r.grantee === null ? 'PUBLIC' : quoteIdent(r.grantee);
    statements.push(r.column === null
      ? `REVOKE ALL ON TABLE ${rel} FROM ${who} CASCADE`
      : `REVOKE ALL (${quoteIdent(r.column)}) ON TABLE ${rel} FROM ${who} CASCADE`);
  }
  for (const s of statements) await client.query(s);
  return statements;
}

/** `sealRelation`, and row-level security on with no policy: not even `pg_read_all_data` reads a row. */
export async function sealTable(client: pg.Client, oid: number): Promise<string[]> {
  const statements = await sealRelation(client, oid);
  const at = await relationName(client, oid);
  const { rows } = await client.query<{ rls: boolean }>(`SELECT relrowsecurity AS rls FROM pg_class WHERE oid = $1 AND relkind IN ('r', 'p')`, [oid]);
  if (at && rows[0] && !rows[0].rls) {
    const statement = `ALTER TABLE ${qualified(at)} ENABLE ROW LEVEL SECURITY`;
    await client.query(statement);
    statements.push(statement);
  }
  return statements;
}

/** `sealTable` for a table and every partition under it (each is readable by its own name). */
export async function sealTree(client: pg.Client, oid: number): Promise<string[]> {
  const { rows } = await client.query<{ oid: number }>(
    `WITH RECURSIVE tree(oid) AS (SELECT $1::oid UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid)
     SELECT oid::int AS oid FROM tree`, [oid]);
  const statements: string[] = [];
  for (const r of rows) statements.push(...(await sealTable(client, r.oid)));
  return statements;
}

/**
 * A function safeshift just created (dropped and created again at cutover): every EXECUTE grant but its owner's,
 * including PUBLIC's and those default privileges added, taken away, so what is granted next is exactly what the
 * old function had. Run while safeshift still owns it (a REVOKE by anyone else revokes only their own grants).
 */
export async function sealRoutine(client: pg.Client, signature: string): Promise<string[]> {
  const { rows } = await client.query<{ grantee: string | null }>(
    `SELECT DISTINCT CASE WHEN x.grantee = 0 THEN NULL ELSE pg_get_userbyid(x.grantee) END AS grantee
       FROM pg_proc p CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x
      WHERE p.oid = $1::regprocedure AND x.grantee <> p.proowner ORDER BY 1 NULLS FIRST`, [signature]);
  const statements = rows.map((r) => `REVOKE ALL ON ROUTINE ${signature} FROM ${r.grantee === null ? 'PUBLIC' : quoteIdent(r.grantee)} CASCADE`);
  for (const statement of statements) await client.query(statement);
  return statements;
}
