/**
 * The application's triggers on a table that safeshift fills are made inert while it fills it, and given back
 * their state when the table goes live again. Copy, replay and swap back write exactly the source's values
 * through the mapping; a BEFORE trigger stamping `last_update`, say, would rewrite every row they touch (and a
 * rollback would hand back rows that differ from what the application wrote). Tables filled: the target from its
 * creation until cutover, the retired table from cutover until a swap back makes it live again. Nobody else writes
 * either meanwhile, so disabling costs the application nothing; the state each trigger had is kept in
 * `safeshift.inert_triggers`, so both steps are idempotent and survive a crash between them.
 */
import type pg from 'pg';
import { qualified, quoteIdent, type TableRef } from './sql';

/** pg_trigger.tgenabled → the ALTER TABLE clause that sets it back ('D': it was disabled already; stays so). */
const ENABLE_CLAUSE: Record<string, string> = { O: 'ENABLE TRIGGER', A: 'ENABLE ALWAYS TRIGGER', R: 'ENABLE REPLICA TRIGGER' };

/** safeshift's own triggers (change capture, the write guard of src/write-guard.ts) are never made inert: they must fire for every write. */
const OWN_TRIGGER_PREFIX = 'safeshift_';

/**
 * Disable the user triggers of `table` (at `at`), recording the state each had. In the caller's transaction. A
 * partitioned table's triggers take their clones on the partitions along; the clones are not touched on their own.
 */
export async function makeTriggersInert(client: pg.Client, tableOid: number, at: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ name: string; enabled: string }>(
    `SELECT tgname AS name, tgenabled::text AS enabled FROM pg_trigger
      WHERE tgrelid = $1 AND NOT tgisinternal AND tgparentid = 0 AND tgenabled <> 'D' AND left(tgname, length($2)) <> $2 ORDER BY tgname`,
    [tableOid, OWN_TRIGGER_PREFIX]);
  for (const t of rows) {
    // A trigger already recorded keeps its first recorded state: that is the one it goes back to.
    await client.query(
      `INSERT INTO safeshift.inert_triggers (table_oid, name, enabled) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
      [tableOid, t.name, t.enabled]);
    await client.query(`ALTER TABLE ${qualified(at)} DISABLE TRIGGER ${quoteIdent(t.name)}`);
  }
  return rows.map((r) => r.name);
}

/** Undo makeTriggersInert: every recorded trigger of `table` (at `at`) back to its state. Idempotent. */
export async function restoreTriggers(client: pg.Client, tableOid: number, at: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ name: string; enabled: string; present: boolean }>(
    `DELETE FROM safeshift.inert_triggers r WHERE table_oid = $1
      RETURNING name, enabled, EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = $1 AND t.tgname = r.name) AS present`,
    [tableOid]);
  const restored: string[] = [];
  for (const t of rows) {
    const clause = ENABLE_CLAUSE[t.enabled];
    if (!t.present || !clause) continue;
    await client.query(`ALTER TABLE ${qualified(at)} ${clause} ${quoteIdent(t.name)}`);
    restored.push(t.name);
  }
  return restored;
}

/** A dropped table's records go with it (its OID may be reused by another table one day). */
export async function forgetInertTriggers(client: pg.Client, tableOid: number): Promise<void> {
  await client.query(`DELETE FROM safeshift.inert_triggers WHERE table_oid = $1`, [tableOid]);
}
