import type pg from 'pg';
import { checksumSql, type CopySpec, type KeyValue } from './projection';
import type { TableRef } from './sql';

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
