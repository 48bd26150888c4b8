/**
 * `safeshift audit verify [--migration <id>] [--legacy-until <seq>] [--json]`: the audit chain recomputed with the
 * key (src/audit.ts). Exit 0 intact, 1 on any finding (an unkeyed row past --legacy-until included), 2 on bad input
 * (no key, no audit log, no such migration, a --legacy-until that is not a row number).
 */
import { WorkflowNotFoundError } from '@temporalio/client';
import { AUDIT_KEY_ENV, auditKeys, type AuditKey } from '../audit-key';
import type { AuditHead } from '../audit-log';
import { auditLogShape, verifyAuditLog, type VerifyReport } from '../audit';
import { connectClient, temporalConfig } from '../config';
import { withClient } from '../db';
import { isRestoreWorkflowId, status } from '../messages';
import { CliError, connectionString, EXIT_FAILED, EXIT_OK } from './exit';
import { workflowIdOf } from './migrations';

export interface AuditVerifyOptions {
  migration?: string;
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

export async function auditVerify(opts: AuditVerifyOptions, print: (line: string) => void): Promise<number> {
  const legacyUntil = legacyUntilOf(opts.legacyUntil);
  const keys = keysOrRefuse();
  const url = connectionString(opts.database);
  const anchor = opts.migration !== undefined ? await anchoredHead(opts.migration) : undefined;
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
      : `  ${r.anchor.workflowId} has no anchored head (it wrote no keyed row): nothing to compare`);
  }
  for (const f of r.findings) lines.push(`row ${f.seq}: ${f.kind}: ${f.message}`);
  lines.push(r.ok ? 'intact' : `NOT intact: ${r.findings.length} finding(s); the first at row ${r.findings[0]!.seq}`);
  return lines;
}
