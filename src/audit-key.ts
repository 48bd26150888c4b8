/**
 * The audit key: the HMAC-SHA256 key that chains `safeshift.audit_log`. The worker holds it, the database does not:
 * whoever owns the table can still disable its triggers and edit, delete or re-hash rows, but cannot compute the MAC
 * of a row it made up, so `safeshift audit verify` (src/audit.ts) finds the change.
 *
 * Where the key comes from, first found wins:
 *   SAFESHIFT_AUDIT_KEY        32 bytes or more, hex or base64
 *   SAFESHIFT_AUDIT_KEY_FILE   a file holding such a key (mode 0600)
 *   $SAFESHIFT_HOME/audit.key  written by `safeshift dev` (a development default, never for production)
 * SAFESHIFT_AUDIT_PREVIOUS_KEYS (comma-separated, same encodings): keys used before a rotation, for verify only.
 * Each row records the id of its key (a digest of the key, never the key), so rows of an older key still verify.
 */
import { canonicalJson } from './identity';
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { safeshiftHome } from './config';
import { fatal } from './errors';

export const AUDIT_KEY_ENV = 'SAFESHIFT_AUDIT_KEY';
export const AUDIT_KEY_FILE_ENV = 'SAFESHIFT_AUDIT_KEY_FILE';
const AUDIT_PREVIOUS_KEYS_ENV = 'SAFESHIFT_AUDIT_PREVIOUS_KEYS';
const DEV_AUDIT_KEY_FILE = 'audit.key';
const MIN_KEY_BYTES = 32;

export interface AuditKey {
  id: string;
  secret: Buffer;
}

/** Hex (64+ digits) or base64 of 32+ bytes; anything else is refused by name, never echoed. */
export function parseAuditKey(text: string, where: string): AuditKey {
  const t = text.trim();
  let secret: Buffer | undefined;
  if (/^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0) secret = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) secret = Buffer.from(t, 'base64');
  if (!secret || secret.length < MIN_KEY_BYTES) {
    throw fatal('ConfigMissing', `${where}: the audit key must be at least ${MIN_KEY_BYTES} bytes, hex or base64`);
  }
  return { id: keyId(secret), secret };
}

/** A digest of the key, not the key: tells which key wrote a row (rotation) without revealing it. */
export function keyId(secret: Buffer): string {
  return createHash('sha256').update('safeshift-audit-key-id\n').update(secret).digest('hex').slice(0, 16);
}

/** The key rows are written with, or undefined if none is configured. */
export function currentAuditKey(env: NodeJS.ProcessEnv = process.env): AuditKey | undefined {
  if (env[AUDIT_KEY_ENV]) return parseAuditKey(env[AUDIT_KEY_ENV]!, AUDIT_KEY_ENV);
  const file = env[AUDIT_KEY_FILE_ENV] || (existsSync(join(safeshiftHome(env), DEV_AUDIT_KEY_FILE)) ? join(safeshiftHome(env), DEV_AUDIT_KEY_FILE) : undefined);
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw fatal('ConfigMissing', `${env[AUDIT_KEY_FILE_ENV] ? AUDIT_KEY_FILE_ENV : 'audit key file'} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseAuditKey(text, file);
}

/** The key to write with: refused, naming the setting, when there is none (no row is written unkeyed). */
export function requireAuditKey(env: NodeJS.ProcessEnv = process.env): AuditKey {
  const key = currentAuditKey(env);
  if (!key) {
    throw fatal('ConfigMissing',
      `no audit key: set ${AUDIT_KEY_ENV} (32+ bytes, hex or base64) or ${AUDIT_KEY_FILE_ENV} where safeshift writes the audit log (the worker)`);
  }
  return key;
}

/** Every key verify may meet, by id: the current one and the previous ones. */
export function auditKeys(env: NodeJS.ProcessEnv = process.env): Map<string, AuditKey> {
  const keys = new Map<string, AuditKey>();
  const current = currentAuditKey(env);
  if (current) keys.set(current.id, current);
  for (const [i, part] of (env[AUDIT_PREVIOUS_KEYS_ENV] ?? '').split(',').entries()) {
    if (!part.trim()) continue;
    const k = parseAuditKey(part, `${AUDIT_PREVIOUS_KEYS_ENV} (entry ${i + 1})`);
    keys.set(k.id, k);
  }
  return keys;
}

/** `safeshift dev`: a random key in $SAFESHIFT_HOME/audit.key (0600), kept across runs so old rows still verify. */
export function ensureDevAuditKey(home: string): string {
  const file = join(home, DEV_AUDIT_KEY_FILE);
  if (!existsSync(file)) writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** What a row's MAC covers: every column but the MAC itself, and the previous row's MAC (the chain). */
export interface AuditRowContent {
  seq: number;
  prevHash: string | null;
  eventKey: string;
  /** clock_timestamp() of the insert, as to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') in UTC: microseconds, exact. */
  at: string;
  workflowId: string | null;
  runId: string | null;
  actor: string;
  action: string;
  phase: string | null;
  details: unknown;
  keyId: string;
}

// Sorted keys at every level (jsonb keeps its own key order, so the MAC must not depend on any order).
export { canonicalJson };

/** HMAC-SHA256 over a JSON array of the fields (no separator a value could contain), hex. */
export function rowMac(key: AuditKey, r: AuditRowContent): string {
  const fields = [r.seq, r.prevHash, r.eventKey, r.at, r.workflowId, r.runId, r.actor, r.action, r.phase, canonicalJson(r.details), r.keyId];
  return createHmac('sha256', key.secret).update('safeshift-audit-v1\n').update(JSON.stringify(fields)).digest('hex');
}

export function macEquals(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}
