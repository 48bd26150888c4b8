/**
 * The ledger: bookkeeping kept inside the migrated database (schema `safeshift`), so the record survives even if
 * the Temporal namespace is deleted. The audit log (src/audit-log.ts) is append-only (a trigger refuses UPDATE,
 * DELETE, TRUNCATE) and chained by an HMAC whose key the worker holds, not the database; `safeshift audit verify`
 * (src/audit.ts) checks it.
 */
import type pg from 'pg';
import type { ChunkRecord } from './copy';
import { ensureAuditLog } from './audit-log';
import { inTransaction } from './db';
import { scrubText } from './redact';
import { WRITE_GUARD_DDL } from './write-guard';

export { appendAudit, type AuditEvent, type AuditHead } from './audit-log';

const LEDGER_DDL = `
CREATE SCHEMA IF NOT EXISTS safeshift;
CREATE TABLE IF NOT EXISTS safeshift.migrations (
  run_id       text PRIMARY KEY,
  workflow_id  text NOT NULL,
  name         text NOT NULL,
  plan         jsonb NOT NULL,
  plan_hash    text NOT NULL,
  source       text NOT NULL,
  target       text NOT NULL,
  requested_by text NOT NULL,
  phase        text NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  outcome      text,
  reason       text
);
CREATE INDEX IF NOT EXISTS migrations_workflow_id ON safeshift.migrations (workflow_id);
-- Read by copy and catch-up between chunks: a pause reaches them within a second, not at the next phase.
ALTER TABLE safeshift.migrations ADD COLUMN IF NOT EXISTS paused boolean NOT NULL DEFAULT false;
-- The event number of the write that set the phase: a write that arrives late (a retried or slow event) never takes
-- the phase back to an earlier one.
ALTER TABLE safeshift.migrations ADD COLUMN IF NOT EXISTS phase_seq bigint NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS safeshift.audit_log (
  seq         bigint PRIMARY KEY,
  event_key   text NOT NULL UNIQUE,
  at          timestamptz NOT NULL,
  workflow_id text,
  run_id      text,
  actor       text NOT NULL,
  action      text NOT NULL,
  phase       text,
  details     jsonb NOT NULL DEFAULT '{}',
  prev_hash   text,
  hash        text NOT NULL
);
CREATE TABLE IF NOT EXISTS safeshift.objects (
  run_id     text NOT NULL,
  kind       text NOT NULL,
  oid        bigint NOT NULL,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, kind, oid)
);
CREATE TABLE IF NOT EXISTS safeshift.backups (
  backup_table text PRIMARY KEY,
  run_id       text NOT NULL,
  source       text NOT NULL,
  rows         bigint NOT NULL,
  checksum     text NOT NULL,
  verified_at  timestamptz NOT NULL DEFAULT now()
);
-- Backup tables are dropped when their retention (plan backup.retention) has passed after the migration ended,
-- matched by OID (backupRetentionWorkflow): the table, when it may go, when it went.
ALTER TABLE safeshift.backups ADD COLUMN IF NOT EXISTS table_oid bigint;
ALTER TABLE safeshift.backups ADD COLUMN IF NOT EXISTS keep_until timestamptz;
ALTER TABLE safeshift.backups ADD COLUMN IF NOT EXISTS dropped_at timestamptz;
-- One row per chunk: written when a lane is handed the chunk, completed in the chunk's own target transaction.
-- After a crash the copy knows exactly which key ranges are in the target and which were in flight, whatever
-- the last heartbeat said. Also the per-chunk audit of the copy.
CREATE TABLE IF NOT EXISTS safeshift.copy_chunks (
  run_id     text NOT NULL,
  target_oid bigint NOT NULL,
  seq        bigint NOT NULL,
  lo         text[],
  hi         text[],
  handed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  rows       bigint,
  ms         integer,
  copied_at  timestamptz,
  PRIMARY KEY (run_id, target_oid, seq)
);
-- Plain secondary indexes of a target, dropped right after it was created and built again after the copy
-- (phase build): loading rows and then building an index is much faster than keeping it up row by row.
CREATE TABLE IF NOT EXISTS safeshift.deferred_indexes (
  run_id     text NOT NULL,
  target_oid bigint NOT NULL,
  name       text NOT NULL,
  definition text NOT NULL,
  comment    text,
  built_at   timestamptz,
  PRIMARY KEY (run_id, target_oid, name)
);
-- Triggers of a table that safeshift fills (a target before cutover, the retired table while a swap back may
-- still replay into it), disabled so they never rewrite the values it writes, and the state each goes back to.
CREATE TABLE IF NOT EXISTS safeshift.inert_triggers (
  table_oid  bigint NOT NULL,
  name       text NOT NULL,
  enabled    text NOT NULL,
  since      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_oid, name)
);
-- File exports (safeshift backup): where they are, what they hold, whether they were verified.
CREATE TABLE IF NOT EXISTS safeshift.exports (
  id           text PRIMARY KEY,
  workflow_id  text NOT NULL,
  dir          text NOT NULL,
  tables       jsonb NOT NULL,
  bytes        bigint NOT NULL,
  encrypted    boolean NOT NULL,
  key_id       text,
  snapshot_at  timestamptz NOT NULL,
  exported_at  timestamptz NOT NULL DEFAULT now(),
  verified_at  timestamptz,
  problems     jsonb
);
-- Restores from exports (safeshift restore): what went where, checked how.
CREATE TABLE IF NOT EXISTS safeshift.restores (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  backup_id   text NOT NULL,
  source      text NOT NULL,
  into_table  text NOT NULL,
  rows        bigint NOT NULL,
  actor       text NOT NULL,
  restored_at timestamptz NOT NULL DEFAULT now()
);
-- Restores run as restoreWorkflow: into a new table, or over the live table (staged, approved, swapped in; the
-- live table kept as the retired one). One row per workflow, updated as it goes.
ALTER TABLE safeshift.restores ADD COLUMN IF NOT EXISTS workflow_id text UNIQUE;
ALTER TABLE safeshift.restores ADD COLUMN IF NOT EXISTS mode text NOT NULL DEFAULT 'new';
ALTER TABLE safeshift.restores ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'restored';
ALTER TABLE safeshift.restores ADD COLUMN IF NOT EXISTS staged_table text;
ALTER TABLE safeshift.restores ADD COLUMN IF NOT EXISTS retired_table text;
-- Scheduled exports: retention prunes by schedule, verified exports only, never the newest N.
ALTER TABLE safeshift.exports ADD COLUMN IF NOT EXISTS schedule_id text;
ALTER TABLE safeshift.exports ADD COLUMN IF NOT EXISTS pruned_at timestamptz;
-- The manifest's SHA-256 when it was written: verify, restore and retention refuse a manifest that differs.
ALTER TABLE safeshift.exports ADD COLUMN IF NOT EXISTS manifest_sha256 text;
-- Public keys of the people who decide (safeshift keys add, an administrator's act, audited): a decision is signed
-- with the private key, and each workflow verifies against the keys of its deciders read when it starts.
CREATE TABLE IF NOT EXISTS safeshift.decider_keys (
  name        text NOT NULL CHECK (name = lower(name)),
  public_key  text NOT NULL CHECK (public_key ~ '^[0-9a-f]{64}$'),
  added_by    text NOT NULL,
  added_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, public_key)
);
-- A key counts only with its registration (the canonical keys:add statement, src/identity.ts) signed by an
-- administrator the worker lists in SAFESHIFT_ADMIN_KEYS: whoever can write this table cannot make that signature.
-- A revocation is signed the same way; rows from before (no registration) are ignored until registered again.
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS registration text;
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS signature text;
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS revoked_at timestamptz;
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS revoked_by text;
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS revocation text;
ALTER TABLE safeshift.decider_keys ADD COLUMN IF NOT EXISTS revocation_signature text;
-- The trigger function that keeps everybody but safeshift from writing a table only it may write (src/write-guard.ts).
${WRITE_GUARD_DDL}`;

/** Create or upgrade the ledger; safe to call concurrently and repeatedly. */
export async function ensureLedger(client: pg.Client): Promise<void> {
  await inTransaction(client, async () => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('safeshift.ledger'))`);
    await client.query(LEDGER_DDL);
    await ensureAuditLog(client);
  });
}

export interface MigrationRecord {
  runId: string;
  workflowId: string;
  name: string;
  plan: unknown;
  planHash: string;
  source: string;
  target: string;
  requestedBy: string;
}

export async function upsertMigration(client: pg.Client, m: MigrationRecord, phase: string): Promise<void> {
  await client.query(
    `INSERT INTO safeshift.migrations (run_id, workflow_id, name, plan, plan_hash, source, target, requested_by, phase)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (run_id) DO UPDATE SET phase = EXCLUDED.phase, updated_at = now()`,
    [m.runId, m.workflowId, m.name, JSON.stringify(m.plan), m.planHash, m.source, m.target, m.requestedBy, phase],
  );
}

/**
 * `seq`: the event's number in its run (event keys end in it). Applied only if no later event has set the phase:
 * events are numbered in the order they happened, their writes may land in another order.
 */
export async function setMigrationPhase(client: pg.Client, runId: string, phase: string, outcome?: { reason: string }, seq?: number): Promise<void> {
  await client.query(
    `UPDATE safeshift.migrations SET phase = $2, updated_at = now(), phase_seq = coalesce($5, phase_seq),
            finished_at = CASE WHEN $3::boolean THEN now() ELSE finished_at END,
            outcome = CASE WHEN $3::boolean THEN $2 ELSE outcome END,
            reason = coalesce($4, reason)
      WHERE run_id = $1 AND ($5::bigint IS NULL OR phase_seq <= $5::bigint)`,
    [runId, phase, outcome !== undefined, outcome === undefined ? null : scrubText(outcome.reason), seq ?? null],
  );
}

/** The event number an event key ends in (`<runId>/<n>`), if it does. */
export function eventNumber(eventKey: string): number | undefined {
  const m = /\/(\d+)$/.exec(eventKey);
  return m ? Number(m[1]) : undefined;
}

export async function setPaused(client: pg.Client, runId: string, paused: boolean): Promise<void> {
  await client.query(`UPDATE safeshift.migrations SET paused = $2, updated_at = now() WHERE run_id = $1`, [runId, paused]);
}

export async function recordCreatedObject(client: pg.Client, runId: string, kind: string, oid: number, name: string): Promise<void> {
  await client.query(
    `INSERT INTO safeshift.objects (run_id, kind, oid, name) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
    [runId, kind, oid, name],
  );
}

export async function createdByRun(client: pg.Client, runId: string, kind: string, oid: number): Promise<boolean> {
  const { rowCount } = await client.query(
    `SELECT 1 FROM safeshift.objects WHERE run_id = $1 AND kind = $2 AND oid = $3`, [runId, kind, oid]);
  return (rowCount ?? 0) > 0;
}

/** Before a lane starts a chunk (its own statement, committed at once): the chunk is now in flight. */
export async function recordHandedChunk(client: pg.Client, runId: string, targetOid: number, c: Omit<ChunkRecord, 'rows'>): Promise<void> {
  await client.query(
    `INSERT INTO safeshift.copy_chunks (run_id, target_oid, seq, lo, hi) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (run_id, target_oid, seq) DO NOTHING`,
    [runId, targetOid, c.seq, c.lo, c.hi]);
}

/** Inside the chunk's target transaction: the chunk's rows are in the target. */
export async function recordCopiedChunk(client: pg.Client, runId: string, targetOid: number, seq: number, rows: number, ms: number): Promise<void> {
  const { rowCount } = await client.query(
    `UPDATE safeshift.copy_chunks SET rows = $4, ms = $5, copied_at = clock_timestamp() WHERE run_id = $1 AND target_oid = $2 AND seq = $3`,
    [runId, targetOid, seq, rows, Math.round(ms)]);
  if (rowCount !== 1) throw new Error(`chunk ${seq} of run ${runId} was never handed out`);
}

export async function chunkRecords(client: pg.Client, runId: string, targetOid: number): Promise<ChunkRecord[]> {
  const { rows } = await client.query<{ seq: string; lo: string[] | null; hi: string[] | null; rows: string | null }>(
    `SELECT seq::text, lo, hi, rows::text FROM safeshift.copy_chunks WHERE run_id = $1 AND target_oid = $2 ORDER BY seq`,
    [runId, targetOid]);
  return rows.map((r) => ({ seq: Number(r.seq), lo: r.lo, hi: r.hi, rows: r.rows === null ? null : Number(r.rows) }));
}
