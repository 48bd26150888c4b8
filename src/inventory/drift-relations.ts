/**
 * Drift of one schema's relations: tables (partitions included: a partition's constraints are its own, so a
 * foreign key dropped on a partitioned table is missing on the parent and on every partition), views and
 * materialized views, sequences.
 */
import { displayIdent, identPattern } from '../sql';
import type { IndexDoc, TableDoc, ViewDoc } from './docs';
import { compareAccess, compareByKey, compareSets, fieldDiffs, type DriftItem, type ExpectedSchema, type ExpectedTable, type ExpectedView } from './drift-common';

/** An index definition without its own name and its relation's schema, so equal indexes compare equal. */
function indexShape(ix: IndexDoc, relation: string, schema: string): string {
  return ix.definition.replace(
    new RegExp(`^(CREATE (?:UNIQUE )?INDEX) ${identPattern(ix.name)} ON (?:ONLY )?${identPattern(schema)}\\.${identPattern(relation)} `), `$1 ON ${displayIdent(relation)} `);
}

function compareColumns(object: string, e: ExpectedTable, a: TableDoc, out: DriftItem[]): void {
  for (const ec of e.columns) {
    const ac = a.columns.find((c) => c.name === ec.name);
    const col = `${object}.${displayIdent(ec.name)}`;
    if (!ac) {
      out.push({ object: col, kind: 'missing', detail: `column ${ec.name} ${ec.type}${ec.notNull ? ' NOT NULL' : ''}` });
      continue;
    }
    const diffs: string[] = [];
    if (ec.type !== ac.type) diffs.push(`type ${ac.type}, expected ${ec.type}`);
    if (ec.notNull !== ac.notNull) diffs.push(ec.notNull ? 'nullable, expected NOT NULL' : 'NOT NULL, expected nullable');
    if (ec.default !== ac.default) diffs.push(`default ${ac.default ?? 'none'}, expected ${ec.default ?? 'none'}`);
    if (ec.generated !== ac.generated) diffs.push(`generated ${ac.generated ?? 'no'}, expected ${ec.generated ?? 'no'}`);
    if (ec.identity !== ac.identity) diffs.push(`identity ${ac.identity ?? 'no'}, expected ${ec.identity ?? 'no'}`);
    if (ec.collation !== ac.collation) diffs.push(`collation ${ac.collation ?? 'default'}, expected ${ec.collation ?? 'default'}`);
    if (diffs.length) out.push({ object: col, kind: 'different', detail: diffs.join('; ') });
  }
  for (const ac of a.columns) {
    if (!e.columns.some((c) => c.name === ac.name)) out.push({ object: `${object}.${displayIdent(ac.name)}`, kind: 'extra', detail: `column ${ac.name} ${ac.type}${ac.notNull ? ' NOT NULL' : ''}` });
  }
}

/** Partitioning key and, for a partition, its parent and bound. Absent in an older expectation: not compared. */
function comparePartitioning(object: string, e: ExpectedTable, a: TableDoc, out: DriftItem[]): void {
  if (e.partitioning !== undefined && (e.partitioning?.key ?? null) !== (a.partitioning?.key ?? null)) {
    out.push({ object, kind: 'different', detail: `partitioned by ${a.partitioning?.key ?? 'nothing'}, expected ${e.partitioning?.key ?? 'nothing'}` });
  }
  if (e.partitionOf !== undefined) {
    const show = (p: TableDoc['partitionOf']) => (p ? `partition of ${p.parent} ${p.bound}` : 'not a partition');
    if (show(e.partitionOf) !== show(a.partitionOf)) out.push({ object, kind: 'different', detail: `${show(a.partitionOf)}, expected ${show(e.partitionOf)}` });
  }
}

function compareTable(object: string, schema: string, access: boolean, e: ExpectedTable, a: TableDoc, out: DriftItem[]): void {
  comparePartitioning(object, e, a, out);
  compareColumns(object, e, a, out);
  // NOT NULL constraints (PostgreSQL 18 lists them) are the columns' nullability, compared above.
  const constraints = (t: ExpectedTable) => t.constraints.filter((c) => c.type !== 'not null').map((c) => `${c.type} ${c.definition}`);
  compareSets(object, 'constraint', constraints(e), constraints(a), out);
  // Indexes that enforce a constraint are compared as that constraint.
  const indexes = (t: ExpectedTable) => t.indexes.filter((ix) => !ix.constraint).map((ix) => indexShape(ix, t.name, schema));
  compareSets(object, 'index', indexes(e), indexes(a), out);
  if (e.rls.enabled !== a.rls.enabled) out.push({ object, kind: 'different', detail: `row-level security ${a.rls.enabled ? 'on' : 'off'}, expected ${e.rls.enabled ? 'on' : 'off'}` });
  const policies = (t: ExpectedTable) => t.policies.map((p) => `${p.name} (${p.permissive ? 'permissive' : 'restrictive'} ${p.command} to ${p.roles.join(', ')} using ${p.using ?? '-'} with check ${p.withCheck ?? '-'})`);
  compareSets(object, 'policy', policies(e), policies(a), out);
  const triggers = (t: ExpectedTable) => t.triggers.map((tr) => `${tr.definition}${tr.enabled === 'origin' ? '' : ` (enabled: ${tr.enabled})`}`);
  compareSets(object, 'trigger', triggers(e), triggers(a), out);
  compareAccess(object, e, a, access, out);
}

const tableLabel = (t: ExpectedTable) => (t.partitionOf ? `partition ${t.name} of ${t.partitionOf.parent} ${t.partitionOf.bound}` : `${t.kind === 'table' ? 'table' : t.kind} ${t.name}`);

function compareView(object: string, schema: string, access: boolean, e: ExpectedView, a: ViewDoc, out: DriftItem[]): void {
  if (a.kind !== e.kind) out.push({ object, kind: 'different', detail: `${a.kind}, expected ${e.kind}` });
  if (a.definition.trim() !== e.definition.trim()) out.push({ object, kind: 'different', detail: `${e.kind} definition differs: live ${a.definition.trim()} expected ${e.definition.trim()}` });
  if (e.indexes) compareSets(object, 'index', e.indexes.map((ix) => indexShape(ix, e.name, schema)), a.indexes.map((ix) => indexShape(ix, a.name, schema)), out);
  compareAccess(object, e, a, access, out);
}

/** Tables, views and sequences of one schema the expectation describes, against the live one. */
export function compareRelations(es: ExpectedSchema, as: { tables: TableDoc[]; views: ViewDoc[]; sequences: ExpectedSchema['sequences'] }, access: boolean, out: DriftItem[]): void {
  const name = (n: string) => `${displayIdent(es.name)}.${displayIdent(n)}`;
  const byName = (x: { name: string }) => x.name;
  // An inventory JSON written before partitions were listed has no partitionOf at all: its silence about the
  // live partitions is not an expectation that there are none.
  const describesPartitions = es.tables.every((t) => t.partitionOf !== undefined);
  const liveTables = describesPartitions ? as.tables : as.tables.filter((t) => !t.partitionOf);
  compareByKey(es.tables, liveTables, byName,
    (e) => ({ object: name(e.name), kind: 'missing', detail: `${tableLabel(e)} (${e.columns.map((c) => c.name).join(', ')})` }),
    (a) => ({ object: name(a.name), kind: 'extra', detail: tableLabel(a) }),
    (e, a) => compareTable(name(e.name), es.name, access, e, a, out), out);
  compareByKey(es.views, as.views, byName,
    (e) => ({ object: name(e.name), kind: 'missing', detail: `${e.kind} ${e.name}` }),
    (a) => ({ object: name(a.name), kind: 'extra', detail: `${a.kind} ${a.name}` }),
    (e, a) => compareView(name(e.name), es.name, access, e, a, out), out);
  compareByKey(es.sequences, as.sequences, byName,
    (e) => ({ object: name(e.name), kind: 'missing', detail: `sequence ${e.name}` }),
    (a) => ({ object: name(a.name), kind: 'extra', detail: `sequence ${a.name}` }),
    (e, a) => {
      const diffs = fieldDiffs([['type', a.type, e.type], ['start', a.start, e.start], ['increment', a.increment, e.increment], ['min', a.min, e.min],
        ['max', a.max, e.max], ['cache', a.cache, e.cache], ['cycle', a.cycle, e.cycle], ['owned by', a.ownedBy, e.ownedBy]]);
      if (diffs.length) out.push({ object: name(e.name), kind: 'different', detail: `sequence ${diffs.join('; ')}` });
    }, out);
}
