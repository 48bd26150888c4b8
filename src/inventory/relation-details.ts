/**
 * What belongs to a relation: columns, constraints, indexes, triggers, policies, grants, publications, a view's
 * definition and what it reads, a sequence's parameters, a partitioned table's partitions. One query per kind
 * for all relations at once, looked up by oid.
 */
import type { ColumnDoc, ConstraintDoc, GrantDoc, IndexDoc, PartitionDoc, PolicyDoc, SequenceDoc, TriggerDoc } from './docs';
import { byOid, grantsByOid, QUALIFIED, type Query } from './query';

const CONSTRAINT_TYPES: Record<string, ConstraintDoc['type']> = {
  p: 'primary key', u: 'unique', f: 'foreign key', c: 'check', x: 'exclusion', n: 'not null', t: 'trigger',
};
const TRIGGER_ENABLED: Record<string, TriggerDoc['enabled']> = { O: 'origin', A: 'always', R: 'replica', D: 'disabled' };

export interface RelationDetails {
  columns(relid: number): ColumnDoc[];
  constraints(relid: number): ConstraintDoc[];
  indexes(relid: number): IndexDoc[];
  triggers(relid: number): TriggerDoc[];
  policies(relid: number): PolicyDoc[];
  grants(relid: number): GrantDoc[];
  publications(relid: number): string[];
  partitions(relid: number): PartitionDoc[];
  viewDefinition(relid: number): string;
  dependsOn(relid: number): string[];
  sequence(relid: number, name: string): SequenceDoc;
}

const COLUMNS_SQL = `
  SELECT a.attrelid::int AS relid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
         pg_get_expr(d.adbin, d.adrelid) AS default, a.attgenerated::text AS generated, a.attidentity::text AS identity,
         CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN (SELECT quote_ident(collname) FROM pg_collation WHERE oid = a.attcollation) END AS collation,
         col_description(a.attrelid, a.attnum) AS comment
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
   ORDER BY a.attrelid, a.attnum`;

/**
 * A foreign key that references a partitioned table is cloned by PostgreSQL once per partition on the
 * referencing table (same conrelid as its parent constraint): bookkeeping, not a constraint anyone declared,
 * left out. A partition's copy of its parent's constraint (other conrelid) is listed, marked inherited.
 */
const CONSTRAINTS_SQL = `
  SELECT k.conrelid::int AS relid, k.conname AS name, k.contype::text AS type, pg_get_constraintdef(k.oid, true) AS definition, NOT k.conislocal AS inherited
    FROM pg_constraint k
   WHERE k.conrelid = ANY($1::oid[])
     AND NOT EXISTS (SELECT 1 FROM pg_constraint p WHERE p.oid = k.conparentid AND p.conrelid = k.conrelid)
   ORDER BY k.conrelid, k.conname COLLATE "C"`;

const INDEXES_SQL = `
  SELECT i.indrelid::int AS relid, c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition, i.indisprimary AS primary, i.indisunique AS unique,
         (SELECT k.conname FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid LIMIT 1) AS constraint
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
   WHERE i.indrelid = ANY($1::oid[]) ORDER BY i.indrelid, c.relname COLLATE "C"`;

const POLICIES_SQL = `
  SELECT p.polrelid::int AS relid, p.polname AS name,
         CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS command,
         p.polpermissive AS permissive,
         ARRAY(SELECT x.name FROM (SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END AS name FROM unnest(p.polroles) r) x
                ORDER BY x.name COLLATE "C") AS roles,
         pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
    FROM pg_policy p WHERE p.polrelid = ANY($1::oid[]) ORDER BY p.polrelid, p.polname COLLATE "C"`;

const DEPENDS_ON_SQL = `
  SELECT relid, name FROM (
    SELECT DISTINCT r.ev_class::int AS relid, ${QUALIFIED('n.nspname', 'c.relname')} AS name
      FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
      JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE r.ev_class = ANY($1::oid[]) AND d.refobjid <> r.ev_class) v
   ORDER BY relid, name COLLATE "C"`;

const SEQUENCES_SQL = `
  SELECT s.seqrelid::int AS relid, format_type(s.seqtypid, NULL) AS type, s.seqstart::text AS start, s.seqincrement::text AS increment,
         s.seqmin::text AS min, s.seqmax::text AS max, s.seqcache::text AS cache, s.seqcycle AS cycle,
         (SELECT ${QUALIFIED('tn.nspname', 't.relname')} || '.' || quote_ident(a.attname)
            FROM pg_depend d JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
           WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
           LIMIT 1) AS owned_by
    FROM pg_sequence s WHERE s.seqrelid = ANY($1::oid[])`;

/** Direct partitions (sub-partitions are listed by their own parent), schema-qualified, with bounds. */
const PARTITIONS_SQL = `
  SELECT relid, name, bound FROM (
    SELECT i.inhparent::int AS relid, ${QUALIFIED('n.nspname', 'p.relname')} AS name, pg_get_expr(p.relpartbound, p.oid) AS bound
      FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid JOIN pg_namespace n ON n.oid = p.relnamespace
     WHERE i.inhparent = ANY($1::oid[]) AND p.relispartition) x
   ORDER BY relid, name COLLATE "C"`;

type ColumnRow = { relid: number; name: string; type: string; not_null: boolean; default: string | null; generated: string; identity: string; collation: string | null; comment: string | null };
type SequenceRow = { relid: number; type: string; start: string; increment: string; min: string; max: string; cache: string; cycle: boolean; owned_by: string | null };

export async function readRelationDetails(q: Query, relids: number[], nsp: number[]): Promise<RelationDetails> {
  const columns = byOid(await q<ColumnRow>(COLUMNS_SQL, [relids]));
  const constraints = byOid(await q<{ relid: number; name: string; type: string; definition: string; inherited: boolean }>(CONSTRAINTS_SQL, [relids]));
  const indexes = byOid(await q<{ relid: number } & IndexDoc>(INDEXES_SQL, [relids]));
  const triggers = byOid(await q<{ relid: number; name: string; definition: string; enabled: string }>(
    `SELECT tgrelid::int AS relid, tgname AS name, pg_get_triggerdef(oid) AS definition, tgenabled::text AS enabled
       FROM pg_trigger WHERE tgrelid = ANY($1::oid[]) AND NOT tgisinternal ORDER BY tgrelid, tgname COLLATE "C"`, [relids]));
  const policies = byOid(await q<{ relid: number; name: string; command: string; permissive: boolean; roles: string[]; using: string | null; with_check: string | null }>(POLICIES_SQL, [relids]));
  const grants = await grantsByOid(q, `SELECT c.oid::int AS relid, c.relacl AS acl FROM pg_class c WHERE c.relnamespace = ANY($1::oid[])`, [nsp]);
  const published = byOid(await q<{ relid: number; name: string }>(
    `SELECT pr.prrelid::int AS relid, p.pubname AS name FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = ANY($1::oid[]) ORDER BY pr.prrelid, p.pubname COLLATE "C"`, [relids]));
  const viewDefs = new Map((await q<{ relid: number; definition: string }>(
    `SELECT c.oid::int AS relid, pg_get_viewdef(c.oid, true) AS definition FROM pg_class c WHERE c.oid = ANY($1::oid[]) AND c.relkind IN ('v', 'm')`, [relids]))
    .map((r) => [r.relid, r.definition]));
  const dependsOn = byOid(await q<{ relid: number; name: string }>(DEPENDS_ON_SQL, [relids]));
  const sequences = new Map((await q<SequenceRow>(SEQUENCES_SQL, [relids])).map((r) => [r.relid, r]));
  const partitions = byOid(await q<{ relid: number; name: string; bound: string }>(PARTITIONS_SQL, [relids]));

  return {
    columns: (relid) => (columns.get(relid) ?? []).map((c) => ({
      name: c.name,
      type: c.type,
      notNull: c.not_null,
      default: c.generated ? null : c.default,
      generated: c.generated ? c.default : null,
      identity: c.identity === 'a' ? 'always' : c.identity === 'd' ? 'by default' : null,
      collation: c.collation,
      comment: c.comment,
    })),
    constraints: (relid) => (constraints.get(relid) ?? []).map((c) => ({ name: c.name, type: CONSTRAINT_TYPES[c.type] ?? 'check', definition: c.definition, inherited: c.inherited })),
    indexes: (relid) => (indexes.get(relid) ?? []).map(({ name, definition, primary, unique, constraint }) => ({ name, definition, primary, unique, constraint })),
    triggers: (relid) => (triggers.get(relid) ?? []).map((t) => ({ name: t.name, definition: t.definition, enabled: TRIGGER_ENABLED[t.enabled] ?? 'origin' })),
    policies: (relid) => (policies.get(relid) ?? []).map((p) => ({ name: p.name, command: p.command, permissive: p.permissive, roles: p.roles, using: p.using, withCheck: p.with_check })),
    grants,
    publications: (relid) => (published.get(relid) ?? []).map((p) => p.name),
    partitions: (relid) => (partitions.get(relid) ?? []).map((p) => ({ name: p.name, bound: p.bound })),
    viewDefinition: (relid) => viewDefs.get(relid) ?? '',
    dependsOn: (relid) => (dependsOn.get(relid) ?? []).map((d) => d.name),
    sequence: (relid, name) => {
      const s = sequences.get(relid)!;
      return { name, type: s.type, start: s.start, increment: s.increment, min: s.min, max: s.max, cache: s.cache, cycle: s.cycle, ownedBy: s.owned_by };
    },
  };
}
