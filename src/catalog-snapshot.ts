/**
 * A whole-catalog snapshot, for preflight's proof that the target DDL (and its rehearsal) changed nothing but the
 * target: relations, columns, schemas, functions, types, constraints, policies, triggers, rules, comments,
 * grants (every ACL column), default privileges, inheritance, roles and memberships, extensions, publications,
 * event triggers, security labels. Taken before the DDL and again after the rehearsal, in the same transaction;
 * compared ignoring the target and what belongs to it (its partitions, indexes, TOAST, owned sequences, row
 * type, constraints, the triggers of its foreign keys on the tables they reference, its policies, their
 * comments). The static check of the DDL (src/target-ddl.ts) refuses what it can see; this finds the rest.
 */
import type pg from 'pg';

/**
 * object key (kind and identity) -> [name for messages, state, xmin of the row]. Comments and security labels (thousands of
 * built-in ones) are named only when they differ (catalogChanges), which keeps a snapshot at a few hundred ms.
 */
export type CatalogSnapshot = Map<string, [string | null, string, string]>;

const SNAPSHOT_SQL = `
WITH RECURSIVE tree(oid) AS (
  SELECT $1::oid WHERE $1::oid <> 0
  UNION SELECT i.inhrelid FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid),
mine(oid) AS (
  SELECT oid FROM tree
  UNION SELECT i.indexrelid FROM pg_index i WHERE i.indrelid IN (SELECT oid FROM tree)
  UNION SELECT c.reltoastrelid FROM pg_class c WHERE c.oid IN (SELECT oid FROM tree) AND c.reltoastrelid <> 0
  UNION SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.reltoastrelid = i.indrelid WHERE c.oid IN (SELECT oid FROM tree)
  UNION SELECT d.objid FROM pg_depend d
   WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     AND d.refobjid IN (SELECT oid FROM tree)),
my_con AS (SELECT oid FROM pg_constraint WHERE conrelid IN (SELECT oid FROM mine)),
my_trg AS (SELECT oid FROM pg_trigger WHERE tgrelid IN (SELECT oid FROM mine) OR tgconstraint IN (SELECT oid FROM my_con)),
my_pol AS (SELECT oid FROM pg_policy WHERE polrelid IN (SELECT oid FROM mine)),
my_type AS (
  SELECT t.oid FROM pg_type t WHERE t.typrelid IN (SELECT oid FROM mine)
  UNION SELECT a.oid FROM pg_type a JOIN pg_type t ON a.oid = t.typarray WHERE t.typrelid IN (SELECT oid FROM mine)),
temp_ns AS (SELECT oid FROM pg_namespace WHERE nspname ~ '^pg_(toast_)?temp_'),
my_obj(classid, oid) AS (
  SELECT 'pg_class'::regclass, oid FROM mine UNION ALL SELECT 'pg_constraint'::regclass, oid FROM my_con
  UNION ALL SELECT 'pg_trigger'::regclass, oid FROM my_trg UNION ALL SELECT 'pg_policy'::regclass, oid FROM my_pol
  UNION ALL SELECT 'pg_type'::regclass, oid FROM my_type)
SELECT 'relation ' || c.oid AS k, format('%s %I.%I', CASE c.relkind WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'table' END, n.nspname, c.relname) AS name,
       concat_ws(' ', c.relname, c.relnamespace, c.relkind, c.relowner, c.relacl, c.relrowsecurity, c.relforcerowsecurity,
                 c.reloptions, c.relispartition, c.relpersistence, c.relfilenode, c.reltablespace, c.relreplident) AS v, c.xmin::text AS xm
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid NOT IN (SELECT oid FROM mine) AND n.oid NOT IN (SELECT oid FROM temp_ns)
UNION ALL
SELECT format('column %s.%s', a.attrelid, a.attnum), format('column %I.%I.%I', n.nspname, c.relname, a.attname),
       concat_ws(' ', a.attname, a.atttypid, a.atttypmod, a.attnotnull, a.attisdropped, a.attacl, a.atthasdef, a.attgenerated, a.attidentity, a.attcollation, a.attoptions), a.xmin::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attnum > 0 AND c.oid NOT IN (SELECT oid FROM mine) AND n.oid NOT IN (SELECT oid FROM temp_ns)
   AND (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') OR a.attacl IS NOT NULL)
UNION ALL
SELECT 'schema ' || oid, format('schema %I', nspname), concat_ws(' ', nspname, nspowner, nspacl), xmin::text FROM pg_namespace WHERE oid NOT IN (SELECT oid FROM temp_ns)
UNION ALL
SELECT 'function ' || p.oid, format('function %I.%I', n.nspname, p.proname),
       concat_ws(' ', p.proname, p.pronamespace, p.proowner, p.proacl, p.provolatile, p.prosecdef, p.proconfig, p.prolang, p.proleakproof, md5(p.prosrc), p.prorettype, p.proargtypes), p.xmin::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
UNION ALL
SELECT format('type %s of %s', t.oid, coalesce(nullif(t.typrelid, 0), (SELECT e.typrelid FROM pg_type e WHERE e.oid = t.typelem), 0)), format('type %I.%I', n.nspname, t.typname), concat_ws(' ', t.typname, t.typnamespace, t.typowner, t.typacl, t.typnotnull, t.typdefault), t.xmin::text
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.oid NOT IN (SELECT oid FROM my_type) AND n.oid NOT IN (SELECT oid FROM temp_ns) AND (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') OR t.typacl IS NOT NULL)
UNION ALL
SELECT 'constraint ' || k.oid, format('constraint %I on %s', k.conname, k.conrelid::regclass),
       concat_ws(' ', k.conname, k.conrelid, k.contypid, k.contype, k.convalidated, k.condeferrable, k.condeferred, k.conindid, k.confrelid), k.xmin::text
  FROM pg_constraint k WHERE k.oid NOT IN (SELECT oid FROM my_con) AND k.connamespace NOT IN (SELECT oid FROM temp_ns)
UNION ALL
SELECT 'policy ' || p.oid, format('policy %I on %s', p.polname, p.polrelid::regclass),
       concat_ws(' ', p.polname, p.polrelid, p.polcmd, p.polpermissive, p.polroles, md5(pg_get_expr(p.polqual, p.polrelid)), md5(pg_get_expr(p.polwithcheck, p.polrelid))), p.xmin::text
  FROM pg_policy p WHERE p.oid NOT IN (SELECT oid FROM my_pol)
UNION ALL
SELECT 'trigger ' || t.oid, format('trigger %I on %s', t.tgname, t.tgrelid::regclass),
       concat_ws(' ', t.tgname, t.tgrelid, t.tgfoid, t.tgtype, t.tgenabled, t.tgisinternal, t.tgconstraint, md5(t.tgargs::text), t.tgattr), t.xmin::text
  FROM pg_trigger t WHERE t.oid NOT IN (SELECT oid FROM my_trg)
UNION ALL
SELECT format('rule %s', r.oid), format('rule %I on %s', r.rulename, r.ev_class::regclass), concat_ws(' ', r.rulename, r.ev_class, r.ev_type, r.ev_enabled, r.is_instead, md5(r.ev_action::text)), r.xmin::text
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.ev_class NOT IN (SELECT oid FROM mine) AND c.relnamespace NOT IN (SELECT oid FROM temp_ns)
UNION ALL
SELECT format('comment %s.%s.%s', d.classoid, d.objoid, d.objsubid), NULL, md5(d.description), d.xmin::text
  FROM pg_description d WHERE NOT EXISTS (SELECT 1 FROM my_obj m WHERE m.classid = d.classoid AND m.oid = d.objoid)
UNION ALL
SELECT format('shared comment %s.%s', d.classoid, d.objoid), format('comment on %s', pg_describe_object(d.classoid, d.objoid, 0)), md5(d.description), d.xmin::text FROM pg_shdescription d
UNION ALL
SELECT format('security label %s.%s.%s.%s', s.classoid, s.objoid, s.objsubid, s.provider), NULL, md5(s.label), s.xmin::text
  FROM pg_seclabel s WHERE NOT EXISTS (SELECT 1 FROM my_obj m WHERE m.classid = s.classoid AND m.oid = s.objoid)
UNION ALL
SELECT 'default acl ' || oid, format('default privileges of role %s in %s on %s', defaclrole::regrole, CASE defaclnamespace WHEN 0 THEN 'all schemas' ELSE defaclnamespace::regnamespace::text END, defaclobjtype),
       concat_ws(' ', defaclrole, defaclnamespace, defaclobjtype, defaclacl), xmin::text FROM pg_default_acl
UNION ALL
SELECT format('inherits %s.%s', i.inhrelid, i.inhparent), format('%s inherits from %s', i.inhrelid::regclass, i.inhparent::regclass), i.inhseqno::text, i.xmin::text
  FROM pg_inherits i WHERE i.inhrelid NOT IN (SELECT oid FROM mine)
UNION ALL
SELECT 'database ' || oid, format('database %I', datname), concat_ws(' ', datname, datdba, datacl, datallowconn, datconnlimit), xmin::text FROM pg_database
UNION ALL
SELECT format('role setting %s.%s', setdatabase, setrole), 'role or database settings', setconfig::text, xmin::text FROM pg_db_role_setting
UNION ALL
SELECT 'role ' || oid, format('role %I', rolname),
       concat_ws(' ', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil, rolconfig), '0' FROM pg_roles -- a view: no xmin; roles are never created by target DDL
UNION ALL
SELECT format('membership %s.%s', roleid, member), format('membership of %s in %s', member::regrole, roleid::regrole), concat_ws(' ', grantor, admin_option), xmin::text FROM pg_auth_members
UNION ALL
SELECT 'extension ' || oid, format('extension %I', extname), concat_ws(' ', extname, extowner, extnamespace, extversion), xmin::text FROM pg_extension
UNION ALL
SELECT 'event trigger ' || oid, format('event trigger %I', evtname), concat_ws(' ', evtname, evtevent, evtfoid, evtenabled, evttags), xmin::text FROM pg_event_trigger
UNION ALL
SELECT 'publication ' || oid, format('publication %I', pubname), concat_ws(' ', pubname, pubowner, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate), xmin::text FROM pg_publication
UNION ALL
SELECT format('publication table %s.%s', prpubid, prrelid), format('table %s in a publication', prrelid::regclass), '', xmin::text FROM pg_publication_rel
 WHERE prrelid NOT IN (SELECT oid FROM mine)
UNION ALL
SELECT 'language ' || oid, format('language %I', lanname), concat_ws(' ', lanname, lanowner, lanacl), xmin::text FROM pg_language
UNION ALL
SELECT 'large object ' || oid, format('large object %s', oid), concat_ws(' ', lomowner, lomacl), xmin::text FROM pg_largeobject_metadata
UNION ALL
SELECT 'foreign server ' || oid, format('server %I', srvname), concat_ws(' ', srvname, srvowner, srvacl, srvoptions), xmin::text FROM pg_foreign_server
UNION ALL
SELECT 'foreign data wrapper ' || oid, format('foreign-data wrapper %I', fdwname), concat_ws(' ', fdwname, fdwowner, fdwacl), xmin::text FROM pg_foreign_data_wrapper
UNION ALL
SELECT 'tablespace ' || oid, format('tablespace %I', spcname), concat_ws(' ', spcname, spcowner, spcacl), xmin::text FROM pg_tablespace
UNION ALL
SELECT 'parameter acl ' || oid, format('parameter %s', parname), paracl::text, xmin::text FROM pg_parameter_acl`;

/**
 * The catalog now. `targetOid`: the target (0 before it exists); it and what belongs to it are left out. Every
 * kind is read in one statement, so both snapshots see one consistent state of the transaction.
 */
export async function takeCatalogSnapshot(client: pg.Client, targetOid = 0): Promise<CatalogSnapshot> {
  const { rows } = await client.query<{ k: string; name: string | null; v: string | null; xm: string }>(
    // pg_parameter_acl exists from PostgreSQL 15 on.
    (await hasParameterAcl(client)) ? SNAPSHOT_SQL : SNAPSHOT_SQL.replace(/\nUNION ALL\nSELECT 'parameter acl '[^\n]*$/, ''),
    [targetOid],
  );
  return new Map(rows.map((r) => [r.k, [r.name, r.v ?? '', r.xm]]));
}

async function hasParameterAcl(client: pg.Client): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`SELECT to_regclass('pg_catalog.pg_parameter_acl') IS NOT NULL AS ok`);
  return rows[0]!.ok;
}

/**
 * What this transaction changed between two snapshots, one line per object: created, changed or removed, named.
 * A row created or changed counts only when its version was written by this transaction (its xmin is still in
 * progress: another's in-progress rows are invisible), so DDL that other sessions commit meanwhile is not
 * blamed on the plan; temporary objects are left out (other sessions' come and go). A removal cannot be told
 * apart that way and always counts. With `createdRelations: false` a relation that was created is left out with
 * its columns and row type (preflight reports those already, as relations created besides the target).
 */
export async function catalogChanges(
  client: pg.Client, before: CatalogSnapshot, after: CatalogSnapshot, options: { createdRelations?: boolean } = {},
): Promise<string[]> {
  const created = new Set<string>();
  for (const k of after.keys()) if (k.startsWith('relation ') && !before.has(k)) created.add(k.slice('relation '.length));
  const ofCreated = (k: string) => {
    if (options.createdRelations !== false) return false;
    const m = /^(?:relation (\d+)|column (\d+)\.\d+|type \d+ of (\d+))$/.exec(k);
    const rel = m && (m[1] ?? m[2] ?? m[3]);
    return rel !== null && rel !== undefined && created.has(rel);
  };
  const out: [string, string | null, string, string][] = [];
  for (const [k, [name, v, xm]] of after) {
    const was = before.get(k);
    if (!was) { if (!ofCreated(k)) out.push([k, name, 'was created', xm]); }
    else if (was[1] !== v) out.push([k, name, 'was changed', xm]);
  }
  const mine = await writtenHere(client, out.map((o) => o[3]));
  const lines: string[] = [];
  for (const [k, name, what, xm] of out) if (mine.has(xm)) lines.push(`${name ?? (await describeKey(client, k))} ${what}`);
  for (const [k, [name]] of before) if (!after.has(k)) lines.push(`${name ?? (await describeKey(client, k))} was removed`);
  return lines.sort();
}

/** Which of these xmins are this transaction's (top level or a subtransaction): the ones still in progress. */
async function writtenHere(client: pg.Client, xmins: string[]): Promise<Set<string>> {
  const candidates = [...new Set(xmins)].filter((x) => Number(x) >= 3); // 0-2: invalid, bootstrap, frozen
  if (candidates.length === 0) return new Set();
  // xmin is 32 bits; pg_xact_status wants the 64-bit id: in the current epoch, or the one before for an id more
  // than 2^31 ahead of ours (wrapped). Our subtransactions' ids are a little above our own.
  const { rows } = await client.query<{ x: string }>(
    `WITH cur AS (SELECT pg_current_xact_id()::text::bigint AS c),
          full_id AS (SELECT x, CASE WHEN ((c >> 32) << 32 | x) - c > 2147483648 THEN ((c >> 32) << 32 | x) - 4294967296 ELSE ((c >> 32) << 32 | x) END AS f
                        FROM unnest($1::bigint[]) x, cur)
     SELECT x::text FROM full_id WHERE f > 0 AND pg_xact_status(f::text::xid8) = 'in progress'`,
    [candidates],
  );
  return new Set(rows.map((r) => r.x));
}

/** `comment 1259.16384.0` -> `comment on table public.x` (the key itself when the object is gone). */
async function describeKey(client: pg.Client, key: string): Promise<string> {
  const m = /^(comment|security label) (\d+)\.(\d+)\.(-?\d+)/.exec(key);
  if (!m) return key;
  const { rows } = await client.query<{ d: string | null }>(`SELECT pg_describe_object($1::oid, $2::oid, $3::int) AS d`, [m[2], m[3], m[4]]);
  return rows[0]?.d ? `${m[1]} on ${rows[0].d}` : key;
}
