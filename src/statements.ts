/**
 * What kind of statements a SQL text holds, by PostgreSQL's own parser (libpg-query): the check behind every
 * place that runs operator SQL in a transaction it then rolls back (plan DDL, drift expectations), so a
 * `COMMIT` or DML cannot slip through. Not for workflow code (native module).
 */
import { parse } from 'libpg-query';

export class UnparsableSql extends Error {}

/** Each statement's parse tree, in order: `{ <NodeName>: {...} }`. Throws UnparsableSql. */
export async function parsedStatements(sql: string): Promise<Record<string, unknown>[]> {
  return (await parsedStatementTexts(sql)).map((s) => s.stmt);
}

/** Each statement's parse tree and its own text (by the parser's byte offsets), for SQL run statement by statement. */
export async function parsedStatementTexts(sql: string): Promise<{ stmt: Record<string, unknown>; text: string }[]> {
  let stmts: { stmt?: Record<string, unknown>; stmt_location?: number; stmt_len?: number }[];
  try {
    stmts = (await parse(sql)).stmts ?? [];
  } catch (err) {
    throw new UnparsableSql((err as Error).message);
  }
  const bytes = Buffer.from(sql, 'utf8');
  return stmts.map((s) => {
    const from = s.stmt_location ?? 0;
    return { stmt: s.stmt ?? { unknown: {} }, text: bytes.subarray(from, s.stmt_len ? from + s.stmt_len : undefined).toString('utf8').trim() };
  });
}

/** Node name of each statement in order, e.g. `CreateStmt`, `TransactionStmt`. Throws UnparsableSql. */
export async function statementKinds(sql: string): Promise<string[]> {
  return (await parsedStatements(sql)).map((s) => Object.keys(s)[0] ?? 'unknown');
}
