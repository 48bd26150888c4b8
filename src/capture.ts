/**
 * Change capture and replay (DESIGN.md phases 3 and 6). A trigger on the source records the key of every row
 * inserted, updated or deleted (both keys when an update changes the key) into `safeshift.changes_<oid>`. Replay
 * takes a batch of those keys, deletes them from the target and re-inserts them from the *current* source rows
 * through the mapping: idempotent and order-free, so a key replayed twice or a change the copy already saw does
 * no harm, and a change committed while a batch runs is simply in a later batch.
 */
import type pg from 'pg';
import { tableOid } from './catalog';
import { sealTable } from './seal';
import type { CopySpec } from './projection';
import { replayKeys, type ReplayMode } from './replay';
import { qualified, quoteIdent, type TableRef } from './sql';
import { dollarTagFor, rowMatchesSql } from './row-filter';

export interface CaptureRef {
  source: TableRef;
  sourceOid: number;
}

export const CAPTURE_TRIGGER = 'safeshift_capture';
export const NO_TRUNCATE_TRIGGER = 'safeshift_no_truncate';

export function changeTable(sourceOid: number): TableRef {
  return { schema: 'safeshift', name: `changes_${sourceOid}` };
}

function captureFunction(sourceOid: number): TableRef {
  return { schema: 'safeshift', name: `capture_${sourceOid}` };
}

function noTruncateFunction(sourceOid: number): TableRef {
  return { schema: 'safeshift', name: `no_truncate_${sourceOid}` };
}

function keyArray(key: CopySpec['key'], row: 'OLD' | 'NEW'): string {
  return `ARRAY[${key.map((k) => `${row}.${quoteIdent(k.name)}::text`).join(', ')}]`;
}

/**
 * Create the change table and the triggers. Runs in the caller's transaction. The trigger function is SECURITY
 * DEFINER with an empty search_path: application roles (Supabase's anon, authenticated) keep writing to the
 * source without any privilege on schema safeshift. ENABLE ALWAYS: it fires for replica-role sessions too.
 */
export async function installCapture(client: pg.Client, ref: CaptureRef, key: CopySpec['key'], where?: string): Promise<void> {
  const changes = qualified(changeTable(ref.sourceOid));
  const keyTuple = (row: 'OLD' | 'NEW') => `ROW(${key.map((k) => `${row}.${quoteIdent(k.name)}`).join(', ')})`;
  await client.query('CREATE SCHEMA IF NOT EXISTS safeshift');
  await client.query(`CREATE TABLE IF NOT EXISTS ${changes} (
      seq bigserial PRIMARY KEY, key text[] NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  await client.query(`CREATE INDEX IF NOT EXISTS ${quoteIdent(`changes_${ref.sourceOid}_key`)} ON ${changes} (key)`);
  // The keys of changed rows are row data: nobody's default privileges may open them (src/seal.ts).
  await sealTable(client, (await tableOid(client, changeTable(ref.sourceOid)))!);
  // With a row filter (src/row-filter.ts) only changes whose old or new row matches are recorded; the filter is
  // operator SQL, so the body's dollar quote is one it cannot close.
  const tag = where === undefined ? '$fn$' : dollarTagFor(where);
  const skip = where === undefined ? '' : `
      IF NOT ((TG_OP <> 'INSERT' AND ${rowMatchesSql(where, 'OLD')}) OR (TG_OP <> 'DELETE' AND ${rowMatchesSql(where, 'NEW')})) THEN
        RETURN NULL;
      END IF;`;
  await client.query(`CREATE OR REPLACE FUNCTION ${qualified(captureFunction(ref.sourceOid))}() RETURNS trigger
      LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS ${tag}
    BEGIN${skip}
      IF TG_OP <> 'INSERT' THEN
        INSERT INTO ${changes} (key) VALUES (${keyArray(key, 'OLD')});
      END IF;
      IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ${keyTuple('NEW')} IS DISTINCT FROM ${keyTuple('OLD')}) THEN
        INSERT INTO ${changes} (key) VALUES (${keyArray(key, 'NEW')});
      END IF;
      RETURN NULL;
    END ${tag}`);
  // TRUNCATE fires no row triggers: it would empty the source without a trace. Refuse it while we migrate.
  await client.query(`CREATE OR REPLACE FUNCTION ${qualified(noTruncateFunction(ref.sourceOid))}() RETURNS trigger
      LANGUAGE plpgsql AS $fn$
    BEGIN
      RAISE EXCEPTION 'TRUNCATE of % refused: safeshift is migrating this table (its changes are being captured)', TG_TABLE_NAME;
    END $fn$`);
  await client.query(`REVOKE ALL ON FUNCTION ${qualified(captureFunction(ref.sourceOid))}() FROM PUBLIC`);
  await client.query(`CREATE OR REPLACE TRIGGER ${quoteIdent(CAPTURE_TRIGGER)} AFTER INSERT OR UPDATE OR DELETE ON ${qualified(ref.source)}
      FOR EACH ROW EXECUTE FUNCTION ${qualified(captureFunction(ref.sourceOid))}()`);
  await client.query(`CREATE OR REPLACE TRIGGER ${quoteIdent(NO_TRUNCATE_TRIGGER)} BEFORE TRUNCATE ON ${qualified(ref.source)}
      FOR EACH STATEMENT EXECUTE FUNCTION ${qualified(noTruncateFunction(ref.sourceOid))}()`);
  await client.query(`ALTER TABLE ${qualified(ref.source)} ENABLE ALWAYS TRIGGER ${quoteIdent(CAPTURE_TRIGGER)}`);
  // A partitioned source: the row trigger above is cloned to every partition (and to partitions added later), but
  // a TRUNCATE of one partition fires only that partition's statement triggers.
  for (const p of await partitionsBelow(client, ref.source)) {
    await client.query(`CREATE OR REPLACE TRIGGER ${quoteIdent(NO_TRUNCATE_TRIGGER)} BEFORE TRUNCATE ON ${qualified(p)}
        FOR EACH STATEMENT EXECUTE FUNCTION ${qualified(noTruncateFunction(ref.sourceOid))}()`);
  }
}

/** Every partition below `t`, all levels (none for a plain table). */
async function partitionsBelow(client: pg.Client, t: TableRef): Promise<TableRef[]> {
  const { rows } = await client.query<TableRef>(
    `WITH RECURSIVE below(oid) AS (
       SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::regclass
       UNION SELECT i.inhrelid FROM pg_inherits i JOIN below b ON i.inhparent = b.oid)
     SELECT n.nspname AS schema, c.relname AS name FROM below JOIN pg_class c ON c.oid = below.oid
       JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY 1, 2`, [qualified(t)]);
  return rows;
}

/** Drop the triggers from wherever the source now lives (`at`), in the caller's transaction. */
export async function dropCaptureTriggers(client: pg.Client, at: TableRef): Promise<void> {
  await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(CAPTURE_TRIGGER)} ON ${qualified(at)}`);
  await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(NO_TRUNCATE_TRIGGER)} ON ${qualified(at)}`);
  for (const p of await partitionsBelow(client, at)) await client.query(`DROP TRIGGER IF EXISTS ${quoteIdent(NO_TRUNCATE_TRIGGER)} ON ${qualified(p)}`);
}

/** Drop what installCapture made; the triggers must be gone already (or their table). Idempotent. */
export async function dropCaptureObjects(client: pg.Client, sourceOid: number): Promise<void> {
  await client.query(`DROP FUNCTION IF EXISTS ${qualified(captureFunction(sourceOid))}() CASCADE`);
  await client.query(`DROP FUNCTION IF EXISTS ${qualified(noTruncateFunction(sourceOid))}() CASCADE`);
  await client.query(`DROP TABLE IF EXISTS ${qualified(changeTable(sourceOid))}`);
}

export interface Backlog {
  rows: number;
  /** Age of the oldest change not yet replayed, in seconds (0 when there is none). */
  lagSeconds: number;
}

export async function backlog(client: pg.Client, sourceOid: number): Promise<Backlog> {
  const { rows } = await client.query<{ rows: string; lag: number | null }>(
    `SELECT count(*)::text AS rows, extract(epoch FROM clock_timestamp() - min(at))::float8 AS lag FROM ${qualified(changeTable(sourceOid))}`);
  return { rows: Number(rows[0]!.rows), lagSeconds: Math.max(0, rows[0]!.lag ?? 0) };
}

/**
 * Replay up to `limit` captured changes, in the caller's transaction: take them off the change table (exactly
 * the rows returned, so a change committed meanwhile stays for the next batch), then bring those keys up to date
 * in the target (`replayKeys`: delete, insert the current source rows, stale unique collisions resolved). Returns
 * how many changes and distinct keys it handled.
 */
export async function replayBatch(client: pg.Client, spec: CopySpec, sourceOid: number, limit: number, how: ReplayMode = 'replace'): Promise<{ changes: number; keys: number }> {
  const changes = qualified(changeTable(sourceOid));
  const taken = await client.query<{ key: string[] }>({
    text: `DELETE FROM ${changes} WHERE seq IN (SELECT seq FROM ${changes} ORDER BY seq LIMIT $1) RETURNING key`,
    values: [limit],
  });
  if (taken.rows.length === 0) return { changes: 0, keys: 0 };
  const distinct = new Map<string, string[]>();
  for (const r of taken.rows) distinct.set(JSON.stringify(r.key), r.key);
  await replayKeys(client, spec, [...distinct.values()], how);
  return { changes: taken.rows.length, keys: distinct.size };
}
