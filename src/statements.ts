/**
 * What kind of statements a SQL text holds, by PostgreSQL's own parser (libpg-query): the check behind every
 * place that runs operator SQL in a transaction it then rolls back (plan DDL, drift expectations), so a
 * `COMMIT` or DML cannot slip through. Not for workflow code (native module).
 */
import { parse, scan } from 'libpg-query';
import { quoteIdent } from './sql';

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

/** An identifier token's name: unquoted ones fold to lower case, quoted ones lose their quotes ("" is one "). */
function tokenName(text: string): string {
  return text.startsWith('"') ? text.slice(1, -1).replace(/""/g, '"') : text.toLowerCase();
}

/**
 * An expression PostgreSQL deparsed for one table (a policy's USING / WITH CHECK), made to read another table:
 * column references qualified by the old table's name (`stories_shared.project_id`, as the deparser writes the
 * table's own columns inside a subquery) name the new table instead. By PostgreSQL's own lexer, so string
 * constants and comments are never touched, and a schema-qualified name (`public.stories`: a relation, not a
 * column reference) stays as it is.
 */
export async function requalifyColumns(expression: string, from: string, to: string): Promise<string> {
  if (from === to) return expression;
  const { tokens } = await scan(expression);
  const bytes = Buffer.from(expression, 'utf8');
  const parts: Buffer[] = [];
  let at = 0;
  tokens.forEach((t, i) => {
    const name = t.tokenName === 'IDENT' || t.keywordKind > 0 ? tokenName(t.text) : undefined;
    if (name !== from || tokens[i + 1]?.text !== '.' || tokens[i - 1]?.text === '.') return;
    parts.push(bytes.subarray(at, t.start), Buffer.from(quoteIdent(to), 'utf8'));
    at = t.end;
  });
  parts.push(bytes.subarray(at));
  return Buffer.concat(parts).toString('utf8');
}
