/**
 * `safeshift inventory`: the live database as it is, read from the catalog. Stable: every list is ordered by
 * name (C collation), every object has its keys in one order, nothing depends on the session (search_path is
 * emptied, so every name is schema-qualified) or on the clock, so two runs on an unchanged database are equal.
 */
import type pg from 'pg';
import { qualified } from './sql';
import { inTransaction } from './db';

export interface ColumnDoc {
  name: string;
  type: string;
  notNull: boolean;
  default: string | null;
  /** Expression of a stored generated column. */
  generated: string | null;
  identity: 'always' | 'by default' | null;
  collation: string | null;
  comment: string | null;
}

export interface ConstraintDoc {
  name: string;
  type: 'primary key' | 'unique' | 'foreign key' | 'check' | 'exclusion' | 'not null' | 'trigger';
  definition: string;
}

export interface IndexDoc {
  name: string;
  definition: string;
  primary: boolean;
  unique: boolean;
  /** The constraint (primary key, unique, exclusion) this index enforces, if any. */
  constraint: string | null;
}

export interface TriggerDoc {
  name: string;
  definition: string;
  enabled: 'origin' | 'always' | 'replica' | 'disabled';
}

export interface PolicyDoc {
  name: string;
  command: string;
  permissive: boolean;
  roles: string[];
  using: string | null;
  withCheck: string | null;
}

export interface GrantDoc {
  grantee: string;
  privileges: string[];
}

export interface TableDoc {
  name: string;
  kind: 'table' | 'partitioned table' | 'foreign table';
  owner: string;
  comment: string | null;
  rls: { enabled: boolean; forced: boolean };
  columns: ColumnDoc[];
  constraints: ConstraintDoc[];
  indexes: IndexDoc[];
  triggers: TriggerDoc[];
  policies: PolicyDoc[];
  grants: GrantDoc[];
  publications: string[];
  /** reltuples (null: never analyzed); exact only with `exactCounts`. */
  rows: { estimate: number | null; exact?: number };
  bytes: { table: number; indexes: number; total: number };
}

export interface ViewDoc {
  name: string;
  kind: 'view' | 'materialized view';
  owner: string;
  comment: string | null;
  columns: { name: string; type: string }[];
  definition: string;
  /** Relations the view reads, schema-qualified. */
  dependsOn: string[];
  grants: GrantDoc[];
}

export interface SequenceDoc {
  name: string;
  type: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
  /** `schema.table.column` for owned sequences (serial, identity). */
  ownedBy: string | null;
}

export interface SchemaDoc {
  name: string;
  owner: string;
  comment: string | null;
  tables: TableDoc[];
  views: ViewDoc[];
  sequences: SequenceDoc[];
}

export interface PublicationDoc {
  name: string;
  allTables: boolean;
  operations: string[];
  tables: string[];
}

export interface Inventory {
  format: 'safeshift-inventory/1';
  server: string;
  database: string;
  schemas: SchemaDoc[];
  publications: PublicationDoc[];
}

/** `schemas` named a schema the database does not have. */
export class MissingSchemaError extends Error {
  constructor(readonly schemas: string[], database: string) {
    super(`schema ${schemas.join(', ')} does not exist in database ${database}`);
  }
}

export interface InventoryOptions {
  /** Only these schemas (default: every schema but PostgreSQL's own). */
  schemas?: string[];
  /** count(*) every table (a full scan each). */
  exactCounts?: boolean;
}

const CONSTRAINT_TYPES: Record<string, ConstraintDoc['type']> = {
  p: 'primary key', u: 'unique', f: 'foreign key', c: 'check', x: 'exclusion', n: 'not null', t: 'trigger',
};
const TRIGGER_ENABLED: Record<string, TriggerDoc['enabled']> = { O: 'origin', A: 'always', R: 'replica', D: 'disabled' };
const RELATION_KINDS: Record<string, TableDoc['kind'] | ViewDoc['kind'] | 'sequence'> = {
  r: 'table', p: 'partitioned table', f: 'foreign table', v: 'view', m: 'materialized view', S: 'sequence',
};

/** Group rows by relation oid, keeping the query's order. */
function byOid<R extends { relid: number }>(rows: R[]): Map<number, R[]> {
  const out = new Map<number, R[]>();
  for (const r of rows) {
    const list = out.get(r.relid);
    if (list) list.push(r);
    else out.set(r.relid, [r]);
  }
  return out;
}

/**
 * Privileges per grantee from a relation's ACL, as stored: once anything was granted the owner's own rights are
 * in it too; a relation never granted on (ACL null) lists none (the owner has all, implicitly).
 */
const GRANTS_SQL = `
  SELECT relid, grantee, privileges FROM (
    SELECT c.oid::int AS relid, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END AS grantee,
           array_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' (with grant option)' ELSE '' END ORDER BY a.privilege_type COLLATE "C") AS privileges
      FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
     WHERE c.relnamespace = ANY($1::oid[]) AND c.relacl IS NOT NULL
     GROUP BY c.oid, a.grantee) g
   ORDER BY relid, grantee COLLATE "C"`;

/**
 * Read the inventory in one REPEATABLE READ snapshot, so every part describes the same moment. The caller's
 * client is used as is: the function opens and closes its own transaction.
 */
export async function readInventory(client: pg.Client, options: InventoryOptions = {}): Promise<Inventory> {
  return inTransaction(client, async () => {
    // Every name printed schema-qualified, whatever the role's search_path.
    await client.query(`SELECT set_config('search_path', '', true)`);
    return readCatalog(client, options);
  }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
}

/** The reading itself, in the caller's transaction; the caller empties search_path so names print qualified. */
export async function readCatalog(client: pg.Client, options: InventoryOptions): Promise<Inventory> {
  const q = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []) => (await client.query<R>(text, values)).rows;
  const [meta] = await q<{ server: string; database: string }>(
    `SELECT 'PostgreSQL ' || current_setting('server_version') AS server, current_database() AS database`);

  const schemas = await q<{ oid: number; name: string; owner: string; comment: string | null }>(
    `SELECT n.oid::int AS oid, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, obj_description(n.oid, 'pg_namespace') AS comment
       FROM pg_namespace n
      WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
        AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))
      ORDER BY n.nspname COLLATE "C"`, [options.schemas?.length ? options.schemas : null]);
  if (options.schemas) {
    const missing = options.schemas.filter((s) => !schemas.some((x) => x.name === s));
    if (missing.length) throw new MissingSchemaError(missing, meta!.database);
  }
  const nsp = schemas.map((s) => s.oid);

  const relations = await q<{ relid: number; schema: number; name: string; kind: string; owner: string; comment: string | null; rls: boolean; forced: boolean; estimate: number | null; table_bytes: string; index_bytes: string; total_bytes: string }>(
    `SELECT c.oid::int AS relid, c.relnamespace::int AS schema, c.relname AS name, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner,
            obj_description(c.oid, 'pg_class') AS comment, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
            CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS estimate,
            pg_table_size(c.oid)::text AS table_bytes, pg_indexes_size(c.oid)::text AS index_bytes, pg_total_relation_size(c.oid)::text AS total_bytes
       FROM pg_class c
      WHERE c.relnamespace = ANY($1::oid[]) AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND NOT c.relispartition
      ORDER BY c.relname COLLATE "C"`, [nsp]);
  const relids = relations.map((r) => r.relid);

  const columns = byOid(await q<{ relid: number; name: string; type: string; not_null: boolean; default: string | null; generated: string; identity: string; collation: string | null; comment: string | null }>(
    `SELECT a.attrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
            pg_get_expr(d.adbin, d.adrelid) AS default, a.attgenerated::text AS generated, a.attidentity::text AS identity,
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END AS collation,
            col_description(a.attrelid, a.attnum) AS comment
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attrelid, a.attnum`, [relids]));
  const constraints = byOid(await q<{ relid: number; name: string; type: string; definition: string }>(
    `SELECT conrelid::int AS relid, conname AS name, contype::text AS type, pg_get_constraintdef(oid, true) AS definition
       FROM pg_constraint WHERE conrelid = ANY($1::oid[]) ORDER BY conrelid, conname COLLATE "C"`, [relids]));
  const indexes = byOid(await q<{ relid: number; name: string; definition: string; primary: boolean; unique: boolean; constraint: string | null }>(
    `SELECT i.indrelid::int AS relid, c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisprimary AS primary, i.indisunique AS unique,
            (SELECT k.conname FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid LIMIT 1) AS constraint
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = ANY($1::oid[]) ORDER BY i.indrelid, c.relname COLLATE "C"`, [relids]));
  const triggers = byOid(await q<{ relid: number; name: string; definition: string; enabled: string }>(
    `SELECT tgrelid::int AS relid, tgname AS name, pg_get_triggerdef(oid) AS definition, tgenabled::text AS enabled
       FROM pg_trigger WHERE tgrelid = ANY($1::oid[]) AND NOT tgisinternal ORDER BY tgrelid, tgname COLLATE "C"`, [relids]));
  const policies = byOid(await q<{ relid: number; name: string; command: string; permissive: boolean; roles: string[]; using: string | null; with_check: string | null }>(
    `SELECT p.polrelid::int AS relid, p.polname AS name,
            CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
            p.polpermissive AS permissive,
            ARRAY(SELECT x.name FROM (SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END AS name FROM unnest(p.polroles) r) x
                   ORDER BY x.name COLLATE "C") AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
       FROM pg_policy p WHERE p.polrelid = ANY($1::oid[]) ORDER BY p.polrelid, p.polname COLLATE "C"`, [relids]));
  const grants = byOid(await q<{ relid: number; grantee: string; privileges: string[] }>(GRANTS_SQL, [nsp]));
  const published = byOid(await q<{ relid: number; name: string }>(
    `SELECT pr.prrelid::int AS relid, p.pubname AS name FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = ANY($1::oid[]) ORDER BY pr.prrelid, p.pubname COLLATE "C"`, [relids]));
  const viewDefs = new Map((await q<{ relid: number; definition: string }>(
    `SELECT c.oid::int AS relid, pg_get_viewdef(c.oid, true) AS definition FROM pg_class c WHERE c.oid = ANY($1::oid[]) AND c.relkind IN ('v', 'm')`, [relids]))
    .map((r) => [r.relid, r.definition]));
  const dependsOn = byOid(await q<{ relid: number; name: string }>(
    `SELECT relid, name FROM (
       SELECT DISTINCT r.ev_class::int AS relid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name
         FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.ev_class = ANY($1::oid[]) AND d.refobjid <> r.ev_class) v
      ORDER BY relid, name COLLATE "C"`, [relids]));
  const sequences = new Map((await q<{ relid: number; type: string; start: string; increment: string; min: string; max: string; cache: string; cycle: boolean; owned_by: string | null }>(
    `SELECT s.seqrelid::int AS relid, format_type(s.seqtypid, NULL) AS type, s.seqstart::text AS start, s.seqincrement::text AS increment,
            s.seqmin::text AS min, s.seqmax::text AS max, s.seqcache::text AS cache, s.seqcycle AS cycle,
            (SELECT quote_ident(tn.nspname) || '.' || quote_ident(t.relname) || '.' || quote_ident(a.attname)
               FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
               JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
              WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
              LIMIT 1) AS owned_by
       FROM pg_sequence s WHERE s.seqrelid = ANY($1::oid[])`, [relids])).map((r) => [r.relid, r]));

  const exact = new Map<number, number>();
  if (options.exactCounts) {
    for (const r of relations.filter((x) => ['r', 'p', 'm'].includes(x.kind))) {
      const schema = schemas.find((s) => s.oid === r.schema)!.name;
      const [row] = await q<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualified({ schema, name: r.name })}`);
      exact.set(r.relid, Number(row!.n));
    }
  }

  const grantDocs = (relid: number): GrantDoc[] => (grants.get(relid) ?? []).map((g) => ({ grantee: g.grantee, privileges: g.privileges }));
  return {
    format: 'safeshift-inventory/1',
    server: meta!.server,
    database: meta!.database,
    schemas: schemas.map((s) => {
      const mine = relations.filter((r) => r.schema === s.oid);
      return {
        name: s.name,
        owner: s.owner,
        comment: s.comment,
        tables: mine.filter((r) => ['r', 'p', 'f'].includes(r.kind)).map((r): TableDoc => ({
          name: r.name,
          kind: RELATION_KINDS[r.kind] as TableDoc['kind'],
          owner: r.owner,
          comment: r.comment,
          rls: { enabled: r.rls, forced: r.forced },
          columns: (columns.get(r.relid) ?? []).map((c) => ({
            name: c.name,
            type: c.type,
            notNull: c.not_null,
            default: c.generated ? null : c.default,
            generated: c.generated ? c.default : null,
            identity: c.identity === 'a' ? 'always' : c.identity === 'd' ? 'by default' : null,
            collation: c.collation,
            comment: c.comment,
          })),
          constraints: (constraints.get(r.relid) ?? []).map((c) => ({ name: c.name, type: CONSTRAINT_TYPES[c.type] ?? 'check', definition: c.definition })),
          indexes: (indexes.get(r.relid) ?? []).map(({ name, definition, primary, unique, constraint }) => ({ name, definition, primary, unique, constraint })),
          triggers: (triggers.get(r.relid) ?? []).map((t) => ({ name: t.name, definition: t.definition, enabled: TRIGGER_ENABLED[t.enabled] ?? 'origin' })),
          policies: (policies.get(r.relid) ?? []).map((p) => ({ name: p.name, command: p.command, permissive: p.permissive, roles: p.roles, using: p.using, withCheck: p.with_check })),
          grants: grantDocs(r.relid),
          publications: (published.get(r.relid) ?? []).map((p) => p.name),
          rows: { estimate: r.estimate === null ? null : Number(r.estimate), ...(exact.has(r.relid) ? { exact: exact.get(r.relid)! } : {}) },
          bytes: { table: Number(r.table_bytes), indexes: Number(r.index_bytes), total: Number(r.total_bytes) },
        })),
        views: mine.filter((r) => ['v', 'm'].includes(r.kind)).map((r): ViewDoc => ({
          name: r.name,
          kind: RELATION_KINDS[r.kind] as ViewDoc['kind'],
          owner: r.owner,
          comment: r.comment,
          columns: (columns.get(r.relid) ?? []).map((c) => ({ name: c.name, type: c.type })),
          definition: viewDefs.get(r.relid) ?? '',
          dependsOn: (dependsOn.get(r.relid) ?? []).map((d) => d.name),
          grants: grantDocs(r.relid),
        })),
        sequences: mine.filter((r) => r.kind === 'S').map((r): SequenceDoc => {
          const seq = sequences.get(r.relid)!;
          return { name: r.name, type: seq.type, start: seq.start, increment: seq.increment, min: seq.min, max: seq.max, cache: seq.cache, cycle: seq.cycle, ownedBy: seq.owned_by };
        }),
      };
    }),
    publications: await q<PublicationDoc>(
      `SELECT p.pubname AS name, p.puballtables AS "allTables",
              array_remove(ARRAY[CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
                                 CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END], NULL) AS operations,
              ARRAY(SELECT x.name FROM (SELECT quote_ident(t.schemaname) || '.' || quote_ident(t.tablename) AS name FROM pg_publication_tables t
                     WHERE t.pubname = p.pubname) x ORDER BY x.name COLLATE "C") AS tables
         FROM pg_publication p ORDER BY p.pubname COLLATE "C"`),
  };
}
