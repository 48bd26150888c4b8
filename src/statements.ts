/**
 * What kind of statements a SQL text holds, by PostgreSQL's own parser (libpg-query): the check behind every
 * place that runs operator SQL in a transaction it then rolls back (plan DDL, drift expectations), so a
 * `COMMIT` or DML cannot slip through. Not for workflow code (native module).
 */
import { parse } from 'libpg-query';

export class UnparsableSql extends Error {}

/** Each statement's parse tree, in order: `{ <NodeName>: {...} }`. Throws UnparsableSql. */
export async function parsedStatements(sql: string): Promise<Record<string, unknown>[]> {
  let stmts: { stmt?: Record<string, unknown> }[];
  try {
    stmts = (await parse(sql)).stmts ?? [];
  } catch (err) {
    throw new UnparsableSql((err as Error).message);
  }
  return stmts.map((s) => s.stmt ?? { unknown: {} });
}

/** Node name of each statement in order, e.g. `CreateStmt`, `TransactionStmt`. Throws UnparsableSql. */
export async function statementKinds(sql: string): Promise<string[]> {
  return (await parsedStatements(sql)).map((s) => Object.keys(s)[0] ?? 'unknown');
}
