/**
 * `safeshift drift`: what an application expects against what the live database has. The expectation is an
 * inventory (JSON from `safeshift inventory --json`) or a SQL file of CREATE statements, applied to a scratch
 * schema inside a transaction that is always rolled back, and read back as an inventory
 * (src/inventory/drift-sql.ts).
 *
 * Compared, in the schemas the expectation has:
 * - tables, partitions included (missing, extra; partitioning key; a partition's parent and bound), columns
 *   (type, nullability, default, generated, identity, collation), constraints and indexes (by definition, not by
 *   name: generated names differ between databases), row-level security and policies, triggers;
 * - views and materialized views (definition; a materialized view's indexes), sequences (parameters, owner column);
 * - types (enum labels in order; domain base type, default, NOT NULL, CHECKs; composite fields; range subtype);
 * - functions and procedures by name and signature (result, language, volatility, strictness, SECURITY DEFINER,
 *   parallel safety, SET clauses, body hash).
 * Only from an inventory JSON (a SQL file cannot say them): owners and grants of all of the above, and the
 * database-wide kinds: extensions, roles and memberships, default privileges, publications. A kind absent from
 * an older inventory JSON is not compared. Never compared: comments, sizes, row counts.
 */
import type { Inventory } from './inventory';
import { compareDatabaseWide, compareFunctions, compareTypes } from './inventory/drift-kinds';
import { compareRelations } from './inventory/drift-relations';
import { displayIdent } from './sql';
import type { DriftItem, Expectation } from './inventory/drift-common';

export { ExpectationError, inventoryFromSql } from './inventory/drift-sql';
export type { DriftItem, Expectation } from './inventory/drift-common';
export { expectationFromJson } from './inventory/expectation-json';

/** Differences, in the schemas the expectation covers, ordered as the expectation lists its objects. */
export function compareInventories(expected: Expectation, actual: Inventory): DriftItem[] {
  const out: DriftItem[] = [];
  for (const es of expected.schemas) {
    const as = actual.schemas.find((s) => s.name === es.name);
    if (!as) {
      out.push({ object: displayIdent(es.name), kind: 'missing', detail: `schema ${es.name}` });
      continue;
    }
    if (expected.access && es.owner !== as.owner) out.push({ object: displayIdent(es.name), kind: 'different', detail: `owner ${as.owner}, expected ${es.owner}` });
    compareRelations(es, as, expected.access, out);
    if (es.types) compareTypes(es.name, es.types, as.types, expected.access, out);
    if (es.functions) compareFunctions(es.name, es.functions, as.functions, expected.access, out);
  }
  compareDatabaseWide(expected, actual, out);
  return out;
}
