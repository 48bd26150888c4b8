/** Comments on the table and its columns: kept where the new table has none of its own (and has the column). */
import { quoteIdent, quoteLiteral } from '../sql';
import type { CatalogQuery, MoveTarget, Mover, TableRow } from './mover';

export interface CapturedComments {
  comment: string | null;
  columnComments: { column: string; comment: string }[];
}

export async function captureComments(q: CatalogQuery, rel: TableRow): Promise<CapturedComments> {
  const columnComments = await q<{ column: string; comment: string }>(
    `SELECT a.attname AS column, col_description(a.attrelid, a.attnum) AS comment
       FROM pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        AND col_description(a.attrelid, a.attnum) IS NOT NULL ORDER BY a.attnum`);
  return { comment: rel.comment, columnComments };
}

export async function moveComments(m: Mover, captured: CapturedComments, to: MoveTarget): Promise<void> {
  if (captured.comment !== null) {
    if (to.row.comment !== null) m.skipped.push(`comment on ${to.shown}: the new table has its own`);
    else await m.object(`comment on ${to.shown}`, async (run) => { await run(`COMMENT ON TABLE ${to.sql} IS ${quoteLiteral(captured.comment!)}`); });
  }
  const existing = new Set((await m.rows<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND col_description(attrelid, attnum) IS NOT NULL`,
    [to.oid])).map((r) => r.name));
  for (const c of captured.columnComments) {
    const label = `comment on column ${to.shown}.${c.column}`;
    if (!to.columns.has(c.column)) { m.problems.push(`${label}: the new table has no such column; comment not kept`); continue; }
    if (existing.has(c.column)) { m.skipped.push(`${label}: the new table has its own`); continue; }
    await m.object(label, async (run) => { await run(`COMMENT ON COLUMN ${to.sql}.${quoteIdent(c.column)} IS ${quoteLiteral(c.comment)}`); });
  }
}

export function describeComments(b: CapturedComments): string[] {
  const lines: string[] = [];
  if (b.comment !== null) lines.push('table comment: kept unless the new table has one');
  for (const c of b.columnComments) lines.push(`comment on column ${c.column}: kept where the column exists`);
  return lines;
}
