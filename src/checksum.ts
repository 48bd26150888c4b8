import type pg from 'pg';
import { checksumSql, type CopySpec, type KeyValue } from './projection';
import { qualified, quoteIdent, type TableRef } from './sql';

export interface Checksum {
  rows: number;
  checksum: string;
}

export async function checksum(client: pg.Client, spec: CopySpec, side: 'source' | 'target', lo: KeyValue = null, hi: KeyValue = null, inFlight?: TableRef): Promise<Checksum> {
  const { rows } = await client.query<{ rows: string; checksum: string }>(checksumSql(spec, side, lo, hi, inFlight));
  return { rows: Number(rows[0]!.rows), checksum: rows[0]!.checksum };
}

export function sameChecksum(a: Checksum, b: Checksum): boolean {
  return a.rows === b.rows && a.checksum === b.checksum;
}

/**
 * Count and order-independent checksum of a whole table as stored: of `columns` (in that order) or, without
 * them, of the whole row. Backup tables and file exports are checked this way against what they were made from.
 */
export async function tableChecksum(client: pg.Client, t: TableRef, columns?: string[]): Promise<Checksum> {
  const row = columns ? `ROW(${columns.map(quoteIdent).join(', ')})` : 't';
  const { rows } = await client.query<{ rows: string; checksum: string }>(
    `SELECT count(*)::bigint::text AS rows, coalesce(sum(hashtextextended(${row}::text, 0)::numeric), 0)::text AS checksum FROM ${qualified(t)} t`);
  return { rows: Number(rows[0]!.rows), checksum: rows[0]!.checksum };
}
