/**
 * The access matrix taken before a cutover, kept in the database for verify to compare the live access with (never
 * deleted: it holds role and privilege names only). The cutover compares it itself right after its commit, but a retry past the commit (the worker lost between
 * the commit and that comparison) starts with no "before" in memory: verify then reads it from here, so access
 * changed by the swap is never taken as unchanged. Keyed by the live name and the new table's OID (one cutover).
 */
import type pg from 'pg';
import { accessDifferences, type AccessMatrix } from './access-matrix';
import { pgErrorCode } from './db';
import { displayName, type TableRef } from './sql';

const TABLE = 'safeshift.access_before';

async function ensureTable(client: pg.Client): Promise<void> {
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (
      live       text NOT NULL,
      target_oid bigint NOT NULL,
      matrix     jsonb NOT NULL,
      taken_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (live, target_oid))`);
  } catch (err) {
    // Two cutovers creating it at once: the other one did.
    if (!['23505', '42P07'].includes(pgErrorCode(err) ?? '')) throw err;
  }
}

/** Before the swap, committed on its own (the swap's transaction has not begun): the last attempt's matrix wins. */
export async function recordAccessBefore(client: pg.Client, live: TableRef, targetOid: number, matrix: AccessMatrix): Promise<void> {
  await ensureTable(client);
  await client.query(
    `INSERT INTO ${TABLE} (live, target_oid, matrix) VALUES ($1, $2, $3)
     ON CONFLICT (live, target_oid) DO UPDATE SET matrix = EXCLUDED.matrix, taken_at = now()`,
    [displayName(live), targetOid, JSON.stringify(matrix)]);
}

/**
 * What differs between the recorded matrix and the live access (`readAfter` asks the same objects); with no record
 * (a run whose cutover began before records were kept), one line saying so: not comparable is not "unchanged".
 */
export async function accessChangedSinceRecord(
  client: pg.Client, live: TableRef, targetOid: number, readAfter: (objects: AccessMatrix['objects']) => Promise<AccessMatrix>,
  renames: Record<string, string>,
): Promise<string[]> {
  const { rows: exists } = await client.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [TABLE]);
  const { rows } = exists[0]!.ok
    ? await client.query<{ matrix: AccessMatrix }>(`SELECT matrix FROM ${TABLE} WHERE live = $1 AND target_oid = $2`, [displayName(live), targetOid])
    : { rows: [] };
  const before = rows[0]?.matrix;
  if (!before) return [`no record of the access through ${displayName(live)} before the swap, so it cannot be shown unchanged`];
  return accessDifferences(before, await readAfter(before.objects), renames);
}
