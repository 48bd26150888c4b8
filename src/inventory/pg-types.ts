/**
 * Types of the selected schemas: enums (labels in their own order), domains (base type, default, NOT NULL,
 * CHECKs), composites (fields in order), ranges (subtype). Not listed: tables' and views' row types (the
 * relation documents them), array types (implicit), an extension's types (the extension documents them).
 */
import type { TypeDoc } from './docs';
import { byOid, groupBy, NOT_EXTENSION_MEMBER, type Query } from './query';

interface TypeRow {
  relid: number;
  schema: number;
  name: string;
  kind: string;
  owner: string;
  comment: string | null;
  base_type: string | null;
  default: string | null;
  not_null: boolean;
  collation: string | null;
  subtype: string | null;
}

/** `relid` is the type's oid here, so the per-type lists group with byOid. */
const TYPES_SQL = `
  SELECT t.oid::int AS relid, t.typnamespace::int AS schema, t.typname AS name, t.typtype::text AS kind, pg_get_userbyid(t.typowner) AS owner,
         obj_description(t.oid, 'pg_type') AS comment,
         CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base_type,
         CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END AS default, t.typnotnull AS not_null,
         CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> (SELECT b.typcollation FROM pg_type b WHERE b.oid = t.typbasetype)
              THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = t.typcollation) END AS collation,
         (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) AS subtype
    FROM pg_type t
   WHERE t.typnamespace = ANY($1::oid[]) AND t.typtype IN ('e', 'd', 'c', 'r')
     AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
     AND ${NOT_EXTENSION_MEMBER('pg_type', 't.oid')}
   ORDER BY t.typname COLLATE "C"`;

export async function readTypes(q: Query, nsp: number[]): Promise<Map<number, TypeDoc[]>> {
  const types = await q<TypeRow>(TYPES_SQL, [nsp]);
  const oids = types.map((t) => t.relid);
  const labels = byOid(await q<{ relid: number; label: string }>(
    `SELECT enumtypid::int AS relid, enumlabel AS label FROM pg_enum WHERE enumtypid = ANY($1::oid[]) ORDER BY enumtypid, enumsortorder`, [oids]));
  // CHECKs only: from PostgreSQL 17 on a domain's NOT NULL is a constraint too, documented as notNull.
  const checks = byOid(await q<{ relid: number; name: string; definition: string }>(
    `SELECT contypid::int AS relid, conname AS name, pg_get_constraintdef(oid, true) AS definition
       FROM pg_constraint WHERE contypid = ANY($1::oid[]) AND contype = 'c' ORDER BY contypid, conname COLLATE "C"`, [oids]));
  const fields = byOid(await q<{ relid: number; name: string; type: string; collation: string | null }>(
    `SELECT t.oid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END AS collation
       FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid JOIN pg_type at ON at.oid = a.atttypid
      WHERE t.oid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY t.oid, a.attnum`, [oids]));

  const doc = (t: TypeRow): TypeDoc => {
    const base = { name: t.name, owner: t.owner, comment: t.comment };
    switch (t.kind) {
      case 'e': return { ...base, kind: 'enum', labels: (labels.get(t.relid) ?? []).map((l) => l.label) };
      case 'd': return {
        ...base, kind: 'domain', baseType: t.base_type ?? '', default: t.default, notNull: t.not_null, collation: t.collation,
        checks: (checks.get(t.relid) ?? []).map((c) => ({ name: c.name, definition: c.definition })),
      };
      case 'c': return { ...base, kind: 'composite', fields: (fields.get(t.relid) ?? []).map((f) => ({ name: f.name, type: f.type, collation: f.collation })) };
      default: return { ...base, kind: 'range', subtype: t.subtype ?? '' };
    }
  };
  const out = new Map<number, TypeDoc[]>();
  for (const [schema, rows] of groupBy(types, (t) => t.schema)) out.set(schema, rows.map(doc));
  return out;
}
