/**
 * Publication membership (pg_publication_rel), which is by OID: the new table replaces the old one in each
 * publication. Row filter and column list kept; a column list naming a column the new table lacks cannot be kept
 * safely (publishing every column could leak data), so that one is not moved.
 */
import { qualified, quoteIdent } from '../sql';
import type { CatalogQuery, MoveSource, MoveTarget, Mover } from './mover';

export interface BoundPublication {
  name: string;
  rowFilter: string | null;
  columns: string[] | null;
}

export interface CapturedPublications {
  publications: BoundPublication[];
}

export async function capturePublications(q: CatalogQuery): Promise<CapturedPublications> {
  const publications = await q<BoundPublication>(
    `SELECT p.pubname AS name, pg_get_expr(pr.prqual, pr.prrelid) AS "rowFilter",
            CASE WHEN pr.prattrs IS NOT NULL THEN
              ARRAY(SELECT a.attname::text FROM unnest(pr.prattrs::int2[]) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.num ORDER BY k.ord) END AS columns
       FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = $1 ORDER BY p.pubname`);
  return { publications };
}

export async function movePublications(m: Mover, publications: BoundPublication[], from: MoveSource, to: MoveTarget): Promise<void> {
  const memberOf = new Set((await m.rows<{ name: string }>(
    `SELECT p.pubname AS name FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE pr.prrelid = $1`, [to.oid])).map((r) => r.name));
  for (const p of publications) {
    const label = `publication ${p.name}`;
    const missing = (p.columns ?? []).filter((c) => !to.columns.has(c));
    if (missing.length) {
      m.problems.push(`${label}: its column list names ${missing.join(', ')}, which ${to.shown} lacks; membership not moved`);
      continue;
    }
    await m.object(label, async (run) => {
      const [still] = await m.rows<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2`,
        [p.name, from.oid]);
      if (still!.n > 0) await run(`ALTER PUBLICATION ${quoteIdent(p.name)} DROP TABLE ONLY ${qualified(from.ref)}`);
      if (memberOf.has(p.name)) { m.skipped.push(`${label}: ${to.shown} is already a member`); return; }
      const cols = p.columns ? ` (${p.columns.map(quoteIdent).join(', ')})` : '';
      await run(`ALTER PUBLICATION ${quoteIdent(p.name)} ADD TABLE ONLY ${to.sql}${cols}${p.rowFilter !== null ? ` WHERE (${p.rowFilter})` : ''}`);
    });
  }
}

export function describePublications(publications: BoundPublication[]): string[] {
  return publications.map((p) =>
    `publication ${p.name}${p.columns ? ` (columns ${p.columns.join(', ')})` : ''}${p.rowFilter ? ` WHERE ${p.rowFilter}` : ''}: the new table replaces the old one`);
}
