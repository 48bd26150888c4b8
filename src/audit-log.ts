/**
 * The audit log's write path and its table's guards. Each row carries an HMAC-SHA256 (src/audit-key.ts) computed
 * here, by the process that holds the key (the worker, or the CLI for what it records itself), over the row and the
 * previous row's MAC: whoever owns the table can disable its triggers and edit, delete or re-hash rows, but cannot
 * make a MAC, so `safeshift audit verify` (src/audit.ts) finds what changed. Rows written before the chain was keyed
 * (key_id NULL, the old unkeyed SHA-256 of the trigger) stay as they are: verify reports them as unkeyed.
 *
 * One writer at a time (an advisory lock held to commit), so seq order is chain order and commit order even with
 * concurrent migrations; the trigger checks, under the same lock, that a row follows the last one.
 *
 * Who owns the table: when safeshift connects as a superuser, `safeshift_audit_owner` (NOLOGIN) owns the table, its
 * trigger functions and schema `safeshift`; the connecting role and the schema's former owner keep INSERT, SELECT
 * on the log (and USAGE, CREATE on the schema), so a worker that later connects as that non-superuser role can
 * neither disable the triggers nor drop the table. A non-superuser role never creates that role: with CREATEROLE it
 * keeps ADMIN on roles it creates (PostgreSQL 16 on) or may grant itself any non-superuser role (before 16), so the
 * owner would be a role it can become, which protects nothing. It stays the owner; the key and the head anchored in
 * the workflow (MigrationStatus.auditHead) are what make a change show.
 */
import type pg from 'pg';
import { canonicalJson, requireAuditKey, rowMac } from './audit-key';
import { scrubDeep } from './redact';

const AUDIT_OWNER_ROLE = 'safeshift_audit_owner';
export const AUDIT_LOCK = `pg_advisory_xact_lock(hashtext('safeshift.audit_log'))`;
/** `at` as the MAC covers it: UTC, microseconds, no locale. */
export const AT_TEXT = `to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

const AUDIT_DDL = `
ALTER TABLE safeshift.audit_log ADD COLUMN IF NOT EXISTS key_id text;
COMMENT ON COLUMN safeshift.audit_log.key_id IS 'id of the audit key whose HMAC-SHA256 is in hash; NULL: a row of the old unkeyed SHA-256 chain';
CREATE OR REPLACE FUNCTION safeshift.audit_chain() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  prev record;
BEGIN
  -- The writer computed seq, prev_hash and the MAC under this lock; the row must follow the chain's last one.
  PERFORM ${AUDIT_LOCK};
  IF NEW.key_id IS NULL OR NEW.hash IS NULL OR NEW.hash = '' THEN
    RAISE EXCEPTION 'safeshift.audit_log takes only rows keyed by safeshift (SAFESHIFT_AUDIT_KEY)' USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT seq, hash INTO prev FROM safeshift.audit_log ORDER BY seq DESC LIMIT 1;
  IF NEW.seq IS DISTINCT FROM coalesce(prev.seq, 0) + 1 OR NEW.prev_hash IS DISTINCT FROM prev.hash THEN
    RAISE EXCEPTION 'safeshift.audit_log: row % does not follow row %', NEW.seq, coalesce(prev.seq, 0) USING ERRCODE = 'serialization_failure';
  END IF;
  RETURN NEW;
END $fn$;
CREATE OR REPLACE FUNCTION safeshift.audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'safeshift.audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $fn$;
CREATE OR REPLACE TRIGGER audit_chain BEFORE INSERT ON safeshift.audit_log
  FOR EACH ROW EXECUTE FUNCTION safeshift.audit_chain();
CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON safeshift.audit_log
  FOR EACH ROW EXECUTE FUNCTION safeshift.audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON safeshift.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION safeshift.audit_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON safeshift.audit_log FROM PUBLIC;
`;

/** Run by ensureLedger in its transaction, after the table exists. */
export async function ensureAuditLog(client: pg.Client): Promise<void> {
  const { rows: [me] } = await client.query<{ owns: boolean; superuser: boolean; handed: boolean }>(
    `SELECT pg_has_role(c.relowner, 'USAGE') AS owns, r.rolsuper AS superuser, pg_get_userbyid(c.relowner) = $1 AS handed
       FROM pg_class c, pg_roles r WHERE c.oid = 'safeshift.audit_log'::regclass AND r.rolname = current_user`, [AUDIT_OWNER_ROLE]);
  // Only the owner (or a superuser) may change the table; a worker that is not has the guards from whoever set them.
  if (!me?.owns) return;
  await client.query(AUDIT_DDL);
  if (me.superuser && !me.handed) await handOver(client);
}

async function handOver(client: pg.Client): Promise<void> {
  const owner = AUDIT_OWNER_ROLE; // a constant name: quoting it would change nothing
  await client.query(`DO $do$ BEGIN CREATE ROLE ${owner} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $do$`);
  const { rows: [s] } = await client.query<{ schemaOwner: string }>(
    `SELECT quote_ident(pg_get_userbyid(nspowner)) AS "schemaOwner" FROM pg_namespace WHERE nspname = 'safeshift'`);
  const writers = [...new Set([s!.schemaOwner, 'CURRENT_USER'])].join(', ');
  await client.query(`
    GRANT USAGE, CREATE ON SCHEMA safeshift TO ${writers};
    ALTER SCHEMA safeshift OWNER TO ${owner};
    ALTER TABLE safeshift.audit_log OWNER TO ${owner};
    ALTER FUNCTION safeshift.audit_chain() OWNER TO ${owner};
    ALTER FUNCTION safeshift.audit_refuse_change() OWNER TO ${owner};
    REVOKE ALL ON safeshift.audit_log FROM ${writers};
    GRANT SELECT, INSERT ON safeshift.audit_log TO ${writers};`);
}

export interface AuditEvent {
  /** Unique per event (workflow run + event number): a retried activity writes its row once. */
  eventKey: string;
  /** null for what the CLI does directly (backup verify, restore). */
  workflowId: string | null;
  runId: string | null;
  actor: string;
  action: string;
  phase?: string;
  details?: Record<string, unknown>;
}

/** The row just written (or written before by the same event): what the workflow anchors outside the database. */
export interface AuditHead {
  seq: number;
  hash: string;
}

/**
 * Appends one row, keyed. The log is never erased: whatever the caller built, PostgreSQL's value-bearing fragments
 * are cut out (src/redact.ts). In the caller's transaction when there is one (the row commits with what it
 * records), else in its own: the lock must be held from reading the last row to the commit.
 */
export async function appendAudit(client: pg.Client, e: AuditEvent): Promise<AuditHead> {
  const key = requireAuditKey();
  const details = JSON.parse(JSON.stringify(scrubDeep(e.details ?? {}))) as unknown;
  const { rows: [tx] } = await client.query<{ own: boolean }>(`SELECT statement_timestamp() = transaction_timestamp() AS own`);
  // Outside a transaction block every statement is the first of its own transaction, so both times are equal.
  const own = tx!.own;
  if (own) await client.query('BEGIN');
  try {
    await client.query(`SELECT ${AUDIT_LOCK}`);
    const { rows: [done] } = await client.query<{ seq: string; hash: string }>(
      `SELECT seq::text, hash FROM safeshift.audit_log WHERE event_key = $1`, [e.eventKey]);
    let head: AuditHead;
    if (done) {
      head = { seq: Number(done.seq), hash: done.hash };
    } else {
      const { rows: [last] } = await client.query<{ seq: string | null; hash: string | null; at: string }>(
        `SELECT l.seq::text AS seq, l.hash, ${AT_TEXT.replace('%s', 'clock_timestamp()')} AS at
           FROM (SELECT 1) one LEFT JOIN (SELECT a.seq, a.hash FROM safeshift.audit_log a ORDER BY a.seq DESC LIMIT 1) l ON true`);
      const content = {
        seq: Number(last!.seq ?? 0) + 1, prevHash: last!.hash, eventKey: e.eventKey, at: last!.at, workflowId: e.workflowId,
        runId: e.runId, actor: e.actor, action: e.action, phase: e.phase ?? null, details, keyId: key.id,
      };
      const hash = rowMac(key, content);
      const { rows: [stored] } = await client.query<{ details: unknown }>(
        `INSERT INTO safeshift.audit_log (seq, event_key, at, workflow_id, run_id, actor, action, phase, details, prev_hash, hash, key_id)
         VALUES ($1, $2, $3::timestamptz, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING details`,
        [content.seq, e.eventKey, content.at, e.workflowId, e.runId, e.actor, e.action, content.phase, canonicalJson(details),
          content.prevHash, hash, key.id]);
      // jsonb must give back what the MAC covers, or verify would call an honest row edited: refuse to write it.
      if (canonicalJson(stored!.details) !== canonicalJson(details)) throw new Error(`audit row ${e.action}: details do not survive jsonb unchanged`);
      head = { seq: content.seq, hash };
    }
    if (own) await client.query('COMMIT');
    return head;
  } catch (err) {
    if (own) await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
