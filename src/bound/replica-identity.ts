/**
 * Replica identity (pg_class.relreplident): what logical decoding, e.g. Supabase Realtime, sends for UPDATE and
 * DELETE. Set on the new table when it still has the default; an index identity is matched by its columns.
 */
import { quoteIdent } from '../sql';
import type { CatalogQuery, MoveTarget, Mover, TableRow } from './mover';

export interface CapturedReplicaIdentity {
  /** relreplident: d default, n nothing, f full, i index (its columns in `replicaIdentityColumns`). */
  replicaIdentity: string;
  replicaIdentityColumns: string[] | null;
}

export async function captureReplicaIdentity(q: CatalogQuery, rel: TableRow): Promise<CapturedReplicaIdentity> {
  const replicaIndex = await q<{ columns: string[] }>(
    `SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) AS columns
       FROM pg_index i WHERE i.indrelid = $1 AND i.indisreplident`);
  return { replicaIdentity: rel.replident, replicaIdentityColumns: replicaIndex[0]?.columns ?? null };
}

export async function moveReplicaIdentity(m: Mover, captured: CapturedReplicaIdentity, to: MoveTarget): Promise<void> {
  if (captured.replicaIdentity === 'd' || to.row.replident !== 'd') return;
  const label = `replica identity of ${to.shown}`;
  if (captured.replicaIdentity === 'f' || captured.replicaIdentity === 'n') {
    const kind = captured.replicaIdentity === 'f' ? 'FULL' : 'NOTHING';
    await m.object(label, async (run) => { await run(`ALTER TABLE ${to.sql} REPLICA IDENTITY ${kind}`); });
  } else if (captured.replicaIdentity === 'i' && captured.replicaIdentityColumns) {
    const [index] = await m.rows<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.indrelid = $1 AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL
          AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
                      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) = $2::text[]
        ORDER BY c.relname LIMIT 1`, [to.oid, captured.replicaIdentityColumns]);
    if (index) await m.object(label, async (run) => { await run(`ALTER TABLE ${to.sql} REPLICA IDENTITY USING INDEX ${quoteIdent(index.name)}`); });
    else m.problems.push(`${label}: the old table used an index on (${captured.replicaIdentityColumns.join(', ')}); the new table has no unique index on those columns`);
  }
}

export function describeReplicaIdentity(b: CapturedReplicaIdentity): string[] {
  if (b.replicaIdentity === 'd') return [];
  const shown = { f: 'FULL', n: 'NOTHING', i: `index (${(b.replicaIdentityColumns ?? []).join(', ')})` }[b.replicaIdentity] ?? b.replicaIdentity;
  return [`replica identity ${shown}: set on the new table`];
}
