/**
 * `safeshift audit verify [--migration <id> | --anchor <export-dir|seq:mac>] [--legacy-until <seq>] [--json]`: the
 * audit chain recomputed with the key (src/audit.ts), and compared with one head kept outside the database: the
 * migration's (its workflow state), a backup export's (its manifest, written in the export's snapshot) or one
 * written down. Exit 0 intact, 1 on any finding (an unkeyed row past --legacy-until included), 2 on bad input (no
 * key, no audit log, no such migration, a --legacy-until that is not a row number, an --anchor that is neither,
 * an export manifest whose MAC does not match).
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { WorkflowNotFoundError } from '@temporalio/client';
import { AUDIT_KEY_ENV, auditKeys, type AuditKey } from '../audit-key';
import type { AuditHead } from '../audit-log';
import { auditLogShape, verifyAuditLog, type VerifyReport } from '../audit';
import { connectClient, temporalConfig } from '../config';
import { withClient } from '../db';
import { exportKey, exportKeyEnv } from '../export';
import { authenticateManifest, ExportError, MANIFEST, readManifestFile } from '../manifest';
import { BACKUP_KEY_ENV, isRestoreWorkflowId, status } from '../messages';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';
import { workflowIdOf } from './migrations';

export interface AuditVerifyOptions {
  migration?: string;
  /** A head recorded outside the database: an export's directory (its manifest's auditHead) or `<seq>:<mac>`. */
  anchor?: string;
  /** For --anchor with an encrypted export: the environment variable holding its key (the manifest's MAC). */
  keyEnv?: string;
  /** The last seq of the old unkeyed chain, recorded outside the database when the audit key was introduced. */
  legacyUntil?: string;
  json?: boolean;
  database: string;
}

function keysOrRefuse(): Map<string, AuditKey> {
  let keys: Map<string, AuditKey>;
  try {
    keys = auditKeys();
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (keys.size === 0) throw new CliError(`no audit key: set ${AUDIT_KEY_ENV} (or SAFESHIFT_AUDIT_KEY_FILE) to the key the worker writes with`);
  return keys;
}

/** The head the workflow anchored (MigrationStatus.auditHead); read before the table, so that row is committed. */
async function anchoredHead(idOrName: string): Promise<{ workflowId: string; head: AuditHead | null }> {
  const workflowId = workflowIdOf(idOrName);
  if (isRestoreWorkflowId(workflowId)) throw new CliError(`--migration: ${workflowId} is a restore; only migrations anchor their audit head`);
  const config = temporalConfig();
  let client;
  try {
    client = await connectClient(config);
  } catch (err) {
    throw new CliError(`cannot reach Temporal at ${config.address} (TEMPORAL_ADDRESS): ${(err as Error).message}`);
  }
  try {
    const s = await client.workflow.getHandle(workflowId).query(status);
    return { workflowId, head: s.auditHead ?? null };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CliError(`--migration: no migration ${workflowId}`);
    throw err;
  } finally {
    await client.connection.close().catch(() => undefined);
  }
}

/** A row number, or refused naming the option: never a guess that would let unkeyed rows pass. */
function legacyUntilOf(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d{1,15}$/.test(value.trim())) throw new CliError(`--legacy-until: ${JSON.stringify(value)} is not a row number (the seq of the last unkeyed row, recorded when the audit key was introduced)`);
  return Number(value.trim());
}

/**
 * A head given with --anchor: `<seq>:<mac>` as written down, or an export directory whose manifest carries the
 * head of its snapshot. An encrypted export's manifest is authenticated by its MAC (the export key); a plain one
 * is only as trustworthy as the storage it sits in, which the report says.
 */
function givenHead(value: string, keyEnv: string | undefined): { workflowId: string; head: AuditHead | null } {
  const literal = /^(\d{1,15}):([0-9a-f]{64})$/.exec(value.trim());
  if (literal) return { workflowId: '--anchor', head: { seq: Number(literal[1]), hash: literal[2]! } };
  const dir = basename(value) === MANIFEST ? dirname(value) : value;
  if (!existsSync(join(dir, MANIFEST))) throw new CliError(`--anchor: ${value} is neither <seq>:<64 hex digits> nor an export directory with a ${MANIFEST}`);
  try {
    const opened = readManifestFile(dir);
    const { manifest } = opened;
    if (manifest.encryption) {
      const env = exportKeyEnv(keyEnv);
      if (!env) throw new CliError(`--anchor: export ${manifest.id} is encrypted: give its key (--key-env, default ${BACKUP_KEY_ENV}) to authenticate its manifest`);
      authenticateManifest(dir, opened, exportKey(env).key, undefined);
    }
    if (manifest.auditHead === undefined) throw new CliError(`--anchor: export ${manifest.id} was written before manifests carried the audit head`);
    return { workflowId: `export ${manifest.id}${manifest.encryption ? '' : ' (plain: its manifest is not authenticated)'}`, head: manifest.auditHead };
  } catch (err) {
    if (err instanceof ExportError) throw new CliError(`--anchor: ${err.message}`);
    throw err;
  }
}

export async function auditVerify(opts: AuditVerifyOptions, print: (line: string) => void): Promise<number> {
  const legacyUntil = legacyUntilOf(opts.legacyUntil);
  if (opts.migration !== undefined && opts.anchor !== undefined) throw new CliError('--migration and --anchor: give one anchor at a time');
  const keys = keysOrRefuse();
  const url = connectionString(opts.database);
  const anchor = opts.migration !== undefined ? await anchoredHead(opts.migration)
    : opts.anchor !== undefined ? givenHead(opts.anchor, opts.keyEnv) : undefined;
  const report = await withClient(url, async (c) => {
    if ((await auditLogShape(c)) === 'none') throw new CliError(`--database: ${opts.database} has no audit log (safeshift.audit_log)`);
    return verifyAuditLog(c, keys, anchor, legacyUntil);
  }, 'safeshift audit verify');
  print(opts.json ? JSON.stringify(report, null, 2) : render(report).join('\n'));
  return report.ok ? EXIT_OK : EXIT_FAILED;
}

const short = (h: string) => h.slice(0, 12);

function render(r: VerifyReport): string[] {
  const lines = [`audit log: ${r.rows} rows, ${r.keyedRows} keyed${r.keyIds.length ? ` (key ${r.keyIds.join(', ')})` : ''}` +
    (r.head ? `; head row ${r.head.seq} ${short(r.head.hash)}` : '')];
  if (r.unkeyed.rows) {
    lines.push(`  ${r.unkeyed.rows} rows unkeyed up to row ${r.unkeyed.legacyUntil} (before ${r.unkeyed.before}, --legacy-until): the old unkeyed chain, checked for consistency only`);
  }
  if (r.anchor) {
    lines.push(r.anchor.head
      ? `  ${r.anchor.workflowId} anchored row ${r.anchor.head.seq} ${short(r.anchor.head.hash)}`
      : `  ${r.anchor.workflowId} has no anchored head (no keyed row when it was taken): nothing to compare`);
  }
  for (const f of r.findings) lines.push(`row ${f.seq}: ${f.kind}: ${f.message}`);
  lines.push(r.ok ? 'intact' : `NOT intact: ${r.findings.length} finding(s); the first at row ${r.findings[0]!.seq}`);
  return lines;
}
