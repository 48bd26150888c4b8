/** What the database holds: read-only catalog queries, values always passed as parameters. */
import type pg from 'pg';
import type { ColumnType } from './rollback-feasibility';
import { qualified, type TableRef } from './sql';

export interface ColumnInfo {
  name: string;
  /** format_type() output: a type name PostgreSQL itself produced, safe to use in a cast. */
  type: string;
  /**
   * The type without length / precision (format_type(oid, NULL)): casting to it never truncates or rounds. Except
   * that `character` means char(1), so char(n) (and its arrays) use the unconstrained `bpchar` instead.
   */
  baseType: string;
  /** Collation name, or null for types without one. */
  collation: string | null;
  notNull: boolean;
  generated: boolean;
  identity: boolean;
  hasDefault: boolean;
}

export interface TableInfo {
  oid: number;
  ref: TableRef;
  kind: string;
  owner: string;
  columns: ColumnInfo[];
  primaryKey: string[];
  /** Unique indexes whose columns are all NOT NULL, as column lists (candidate keys). */
  uniqueNotNullKeys: string[][];
}

export async function tableOid(client: pg.Client, ref: TableRef): Promise<number | undefined> {
  const { rows } = await client.query<{ oid: number }>(
    `SELECT c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2`,
    [ref.schema, ref.name],
  );
  return rows[0]?.oid;
}

export async function relationName(client: pg.Client, oid: number): Promise<TableRef | undefined> {
  const { rows } = await client.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = $1`,
    [oid],
  );
  return rows[0];
}

export async function tableInfo(client: pg.Client, ref: TableRef): Promise<TableInfo | undefined> {
  const rel = await client.query<{ oid: number; kind: string; owner: string }>(
    `SELECT c.oid::int AS oid, c.relkind AS kind, pg_get_userbyid(c.relowner) AS owner
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [ref.schema, ref.name],
  );
  const row = rel.rows[0];
  if (!row) return undefined;
  const cols = await client.query<ColumnInfo>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, CASE a.atttypid WHEN 'pg_catalog.bpchar'::regtype THEN 'bpchar' WHEN 'pg_catalog._bpchar'::regtype THEN 'bpchar[]'
                 ELSE format_type(a.atttypid, NULL) END AS "baseType",
            CASE WHEN a.attcollation <> 0 THEN (SELECT collname FROM pg_collation WHERE oid = a.attcollation) END AS collation,
            a.attnotnull AS "notNull",
            a.attgenerated <> '' AS generated, a.attidentity <> '' AS identity, a.atthasdef AS "hasDefault"
       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [row.oid],
  );
  const keys = await client.query<{ primary: boolean; columns: string[] }>(
    `SELECT i.indisprimary AS primary,
            array_agg(a.attname ORDER BY k.ord)::text[] AS columns,
            bool_and(a.attnotnull) AS all_not_null
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
      GROUP BY i.indexrelid, i.indisprimary
     HAVING bool_and(a.attnotnull)
      ORDER BY i.indisprimary DESC, count(*), i.indexrelid`,
    [row.oid],
  );
  return {
    oid: row.oid,
    ref,
    kind: row.kind,
    owner: row.owner,
    columns: cols.rows,
    primaryKey: keys.rows.find((k) => k.primary)?.columns ?? [],
    uniqueNotNullKeys: keys.rows.map((k) => k.columns),
  };
}

/**
 * Each column's type as rollback feasibility compares them (src/rollback-feasibility.ts): the type with and
 * without its modifier, the modifier itself (atttypmod), NOT NULL, and whether it is a domain.
 */
export async function columnTypes(client: pg.Client, oid: number): Promise<Map<string, ColumnType>> {
  const { rows } = await client.query<ColumnType & { name: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, format_type(a.atttypid, NULL) AS base,
            a.atttypmod AS typmod, a.attnotnull AS "notNull", t.typtype = 'd' AS domain
       FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`,
    [oid],
  );
  return new Map(rows.map(({ name, ...type }) => [name, type]));
}

/** Privileges and RLS settings the target will not have unless its DDL grants them: shown to approvers. */
export async function accessControl(client: pg.Client, oid: number): Promise<{ rls: boolean; policies: string[]; grants: string[]; triggers: string[] }> {
  const rel = await client.query<{ rls: boolean; acl: string[] | null }>(
    `SELECT relrowsecurity AS rls, relacl::text[] AS acl FROM pg_class WHERE oid = $1`, [oid]);
  const policies = await client.query<{ name: string }>(`SELECT polname AS name FROM pg_policy WHERE polrelid = $1 ORDER BY 1`, [oid]);
  const triggers = await client.query<{ name: string }>(
    `SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY 1`, [oid]);
  return {
    rls: rel.rows[0]?.rls ?? false,
    grants: rel.rows[0]?.acl ?? [],
    policies: policies.rows.map((r) => r.name),
    triggers: triggers.rows.map((r) => r.name),
  };
}

export async function exactRowCount(client: pg.Client, ref: TableRef): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${qualified(ref)}`);
  return Number(rows[0]!.n);
}

/** Planner estimate (free); falls back to an exact count for never-analysed tables. */
export async function estimatedRowCount(client: pg.Client, ref: TableRef, oid: number): Promise<number> {
  const { rows } = await client.query<{ n: number }>(`SELECT reltuples::float8 AS n FROM pg_class WHERE oid = $1`, [oid]);
  const n = rows[0]?.n ?? -1;
  return n >= 0 ? Math.round(n) : exactRowCount(client, ref);
}

/**
 * Types used by the table's stored (non-generated) columns, down to array elements, domain bases, composite
 * fields and range subtypes, that have no binary send/receive functions: COPY can carry such a table in text only.
 */
export async function typesWithoutBinaryIo(client: pg.Client, tableOid: number): Promise<string[]> {
  const { rows } = await client.query<{ type: string }>(
    `WITH RECURSIVE used(oid) AS (
       SELECT a.atttypid FROM pg_attribute a
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
       UNION
       SELECT inside.oid FROM used JOIN pg_type ty ON ty.oid = used.oid
        CROSS JOIN LATERAL (
          SELECT ty.typelem WHERE ty.typelem <> 0
          UNION ALL SELECT ty.typbasetype WHERE ty.typbasetype <> 0
          UNION ALL SELECT f.atttypid FROM pg_attribute f WHERE ty.typrelid <> 0 AND f.attrelid = ty.typrelid AND f.attnum > 0 AND NOT f.attisdropped
          UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = ty.oid
          UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = ty.oid
        ) AS inside(oid)
     )
     SELECT format_type(ty.oid, NULL) AS type FROM used JOIN pg_type ty ON ty.oid = used.oid
      WHERE ty.typsend = 0 OR ty.typreceive = 0 ORDER BY 1`,
    [tableOid],
  );
  return rows.map((r) => r.type);
}
