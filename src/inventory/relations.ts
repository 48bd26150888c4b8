/**
 * Tables (partitions included), views, materialized views and sequences of the selected schemas. A partitioned
 * table holds no rows itself: its row estimate and sizes are summed over its partition tree (every level), so it
 * does not show as empty and "never analyzed" while its partitions are full and analyzed.
 */
import { qualified } from '../sql';
import type { SequenceDoc, TableDoc, ViewDoc } from './docs';
import { readRelationDetails, type RelationDetails } from './relation-details';
import { groupBy, QUALIFIED, type Query } from './query';

const RELATION_KINDS: Record<string, TableDoc['kind'] | ViewDoc['kind'] | 'sequence'> = {
  r: 'table', p: 'partitioned table', f: 'foreign table', v: 'view', m: 'materialized view', S: 'sequence',
};

interface RelationRow {
  relid: number;
  schema: number;
  name: string;
  kind: string;
  owner: string;
  comment: string | null;
  rls: boolean;
  forced: boolean;
  populated: boolean;
  partition_key: string | null;
  parent: string | null;
  bound: string | null;
  estimate: string | null;
  table_bytes: string;
  index_bytes: string;
  total_bytes: string;
}

/** Over the tree for a partitioned table (`c`), of the relation itself otherwise. */
const treeSum = (size: string) =>
  `coalesce(CASE WHEN c.relkind = 'p' THEN (SELECT sum(${size}(t.relid)) FROM pg_partition_tree(c.oid) t) ELSE ${size}(c.oid) END, 0)::text`;

/**
 * A partitioned table's estimate is the sum over its leaf partitions that were analyzed; null only when it has
 * leaves and none was ever analyzed (0 with no leaves: there is nowhere for a row to be).
 */
const RELATIONS_SQL = `
  SELECT c.oid::int AS relid, c.relnamespace::int AS schema, c.relname AS name, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner,
         obj_description(c.oid, 'pg_class') AS comment, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced, c.relispopulated AS populated,
         CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
         CASE WHEN c.relispartition THEN (SELECT ${QUALIFIED('pn.nspname', 'pc.relname')} FROM pg_inherits i
                JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid) END AS parent,
         CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS bound,
         CASE WHEN c.relkind = 'p' THEN (
                SELECT CASE WHEN count(*) = 0 OR bool_or(l.reltuples >= 0) THEN coalesce(sum(greatest(l.reltuples, 0)), 0)::bigint::text END
                  FROM pg_partition_tree(c.oid) t JOIN pg_class l ON l.oid = t.relid WHERE t.isleaf)
              WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint::text END AS estimate,
         ${treeSum('pg_table_size')} AS table_bytes, ${treeSum('pg_indexes_size')} AS index_bytes, ${treeSum('pg_total_relation_size')} AS total_bytes
    FROM pg_class c
   WHERE c.relnamespace = ANY($1::oid[]) AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
   ORDER BY c.relname COLLATE "C"`;

export interface SchemaRelations {
  tables: TableDoc[];
  views: ViewDoc[];
  sequences: SequenceDoc[];
}

/** count(*) of every table, partitioned table (its whole tree) and populated materialized view: a full scan each. */
async function exactCounts(q: Query, relations: RelationRow[], schemaName: (oid: number) => string): Promise<Map<number, number>> {
  const exact = new Map<number, number>();
  for (const r of relations.filter((x) => ['r', 'p'].includes(x.kind) || (x.kind === 'm' && x.populated))) {
    const [row] = await q<{ n: string }>(`SELECT count(*)::text AS n FROM ${qualified({ schema: schemaName(r.schema), name: r.name })}`);
    exact.set(r.relid, Number(row!.n));
  }
  return exact;
}

function tableDoc(r: RelationRow, d: RelationDetails, exact: Map<number, number>): TableDoc {
  return {
    name: r.name,
    kind: RELATION_KINDS[r.kind] as TableDoc['kind'],
    owner: r.owner,
    comment: r.comment,
    partitioning: r.kind === 'p' ? { key: r.partition_key ?? '', partitions: d.partitions(r.relid) } : null,
    partitionOf: r.parent !== null ? { parent: r.parent, bound: r.bound ?? '' } : null,
    rls: { enabled: r.rls, forced: r.forced },
    columns: d.columns(r.relid),
    constraints: d.constraints(r.relid),
    indexes: d.indexes(r.relid),
    triggers: d.triggers(r.relid),
    policies: d.policies(r.relid),
    grants: d.grants(r.relid),
    publications: d.publications(r.relid),
    measuredOver: r.kind === 'p' ? 'partition tree' : 'table',
    rows: { estimate: r.estimate === null ? null : Number(r.estimate), ...(exact.has(r.relid) ? { exact: exact.get(r.relid)! } : {}) },
    bytes: { table: Number(r.table_bytes), indexes: Number(r.index_bytes), total: Number(r.total_bytes) },
  };
}

function viewDoc(r: RelationRow, d: RelationDetails, exact: Map<number, number>): ViewDoc {
  return {
    name: r.name,
    kind: RELATION_KINDS[r.kind] as ViewDoc['kind'],
    owner: r.owner,
    comment: r.comment,
    columns: d.columns(r.relid).map((c) => ({ name: c.name, type: c.type })),
    definition: d.viewDefinition(r.relid),
    dependsOn: d.dependsOn(r.relid),
    indexes: d.indexes(r.relid),
    materialized: r.kind === 'm'
      ? {
          populated: r.populated,
          rows: { estimate: r.estimate === null ? null : Number(r.estimate), ...(exact.has(r.relid) ? { exact: exact.get(r.relid)! } : {}) },
          bytes: { table: Number(r.table_bytes), indexes: Number(r.index_bytes), total: Number(r.total_bytes) },
        }
      : null,
    grants: d.grants(r.relid),
  };
}

/** Relations of the schemas `nsp` (oid → name), per schema oid. */
export async function readRelations(q: Query, nsp: Map<number, string>, options: { exactCounts?: boolean }): Promise<Map<number, SchemaRelations>> {
  const relations = await q<RelationRow>(RELATIONS_SQL, [[...nsp.keys()]]);
  const details = await readRelationDetails(q, relations.map((r) => r.relid), [...nsp.keys()]);
  const exact = options.exactCounts ? await exactCounts(q, relations, (oid) => nsp.get(oid)!) : new Map<number, number>();
  const out = new Map<number, SchemaRelations>();
  for (const [schema, rows] of groupBy(relations, (r) => r.schema)) {
    out.set(schema, {
      tables: rows.filter((r) => ['r', 'p', 'f'].includes(r.kind)).map((r) => tableDoc(r, details, exact)),
      views: rows.filter((r) => ['v', 'm'].includes(r.kind)).map((r) => viewDoc(r, details, exact)),
      sequences: rows.filter((r) => r.kind === 'S').map((r) => details.sequence(r.relid, r.name)),
    });
  }
  return out;
}
