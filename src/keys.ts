/**
 * Deciders' keys on the Node side: private key files in the user's config (never in the database), public keys in
 * the ledger (`safeshift.decider_keys`), each with a registration signed by an administrator whose public key the
 * worker holds (src/admin-keys.ts), audited; and the dev stack's own keys for demos and tests. A row nobody of
 * SAFESHIFT_ADMIN_KEYS signed counts for nothing: the table proves nothing by itself. What is signed and how it is
 * verified is in src/identity.ts.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { devEnvPath, parseEnvFile, safeshiftHome } from './config';
import { ADMIN_KEYS_ENV, ADMIN_KEYS_FILE_ENV, DEV_ADMIN, writeDevAdminKeysFile } from './admin-keys';
import { requireAuditKey } from './audit-key';
import { inTransaction } from './db';
import {
  generateKeyPair, isPublicKey, keyFingerprint, publicKeyOf, sameName, signKeyStatement, verifyKeyStatement, type AdminKey,
} from './identity';
import { appendAudit, ensureLedger } from './ledger';
import type { ApproverKeys } from './messages';

/** A person name as the plan allows it (src/plan/schema.ts personName). */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;

export interface KeyFile {
  name: string;
  publicKey: string;
  privateKey: string;
  created: string;
}

/** Where `safeshift keys init` writes: SAFESHIFT_KEYS_DIR, else $XDG_CONFIG_HOME/safeshift/keys, else ~/.config/safeshift/keys. */
export function keysDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SAFESHIFT_KEYS_DIR) return env.SAFESHIFT_KEYS_DIR;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'safeshift', 'keys');
}

/** The embedded dev stack's generated keys (demo, tests): under SAFESHIFT_HOME, used only in dev mode. */
export function devKeysDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(safeshiftHome(env), 'dev-keys');
}

/**
 * Dev mode: the CLI talks to the embedded `safeshift dev` stack (its dev.env is there and names the Temporal
 * server in use). Only then does `--auto-approve` generate and register keys for a plan's approvers.
 */
export function isDevMode(env: NodeJS.ProcessEnv = process.env): boolean {
  const file = devEnvPath(env);
  if (!existsSync(file)) return false;
  const dev = parseEnvFile(readFileSync(file, 'utf8'));
  return Boolean(dev.TEMPORAL_ADDRESS) && dev.TEMPORAL_ADDRESS === (env.TEMPORAL_ADDRESS || 'localhost:7233');
}

function keyPath(dir: string, name: string): string {
  return join(dir, `${name.toLowerCase()}.key`);
}

/** Write a new key file (0600, in a 0700 directory); refuses to overwrite one unless asked. */
export function writeKeyFile(dir: string, name: string, options: { overwrite?: boolean } = {}): KeyFile {
  if (!KEY_NAME.test(name)) throw new Error(`--name: "${name}" is not a person name (letters, digits, . _ @ -)`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const path = keyPath(dir, name);
  if (existsSync(path) && !options.overwrite) throw new Error(`${path} exists; keep it, or pass --force to replace it (its public key must then be registered again)`);
  const pair = generateKeyPair();
  const key: KeyFile = { name, ...pair, created: new Date().toISOString() };
  writeFileSync(path, `${JSON.stringify(key, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return key;
}

export function readKeyFile(path: string): KeyFile {
  const mode = statSync(path).mode & 0o077;
  if (mode !== 0) throw new Error(`${path} can be read by others (mode ${(statSync(path).mode & 0o777).toString(8)}); chmod 600 it`);
  const k = JSON.parse(readFileSync(path, 'utf8')) as Partial<KeyFile>;
  if (typeof k.name !== 'string' || typeof k.privateKey !== 'string' || !/^[0-9a-f]{64}$/.test(k.privateKey)) {
    throw new Error(`${path} is not a safeshift key file`);
  }
  return { name: k.name, privateKey: k.privateKey, publicKey: publicKeyOf(k.privateKey), created: k.created ?? '' };
}

/** The private key to sign as `name`: the user's keys directory, then (dev mode only) the dev stack's. */
export function findKey(name: string, env: NodeJS.ProcessEnv = process.env): KeyFile | undefined {
  const dirs = [keysDir(env), ...(isDevMode(env) ? [devKeysDir(env)] : [])];
  for (const dir of dirs) {
    const path = keyPath(dir, name);
    if (existsSync(path)) return readKeyFile(path);
  }
  return undefined;
}

/** A key to sign with as an administrator: the administrator's key file (the user's config, or the dev stack's). */
export type AdminSigner = Pick<KeyFile, 'name' | 'publicKey' | 'privateKey'>;

/** Whether `signer` is one of `admins` (name and key); the CLI checks when it knows the list, the worker always. */
export function checkAdmin(signer: AdminSigner, admins: readonly AdminKey[] | undefined): void {
  if (!admins) return;
  if (!admins.some((a) => sameName(a.name, signer.name) && a.publicKey === signer.publicKey)) {
    throw new Error(`--as ${signer.name}: not an administrator (no such name with this key in ${ADMIN_KEYS_ENV} / ${ADMIN_KEYS_FILE_ENV}); workers would ignore what it signs`);
  }
}

/** One writer of the registry at a time: the check of what is there and the write go together. */
const KEYS_LOCK = `SELECT pg_advisory_xact_lock(hashtext('safeshift.decider_keys'))`;

/** Keys revoked according to the (keyed, append-only) audit log: a cleared revoked_at alone never brings a key back. */
async function revokedInAudit(client: pg.Client, names: string[]): Promise<Set<string>> {
  const { rows } = await client.query<{ name: string; key: string }>(
    `SELECT DISTINCT details->>'name' AS name, details->>'publicKey' AS key FROM safeshift.audit_log
      WHERE action = 'keys:revoke' AND details->>'name' = ANY($1::text[])`, [names]);
  return new Set(rows.map((r) => `${r.name}/${r.key}`));
}

function checkKeyInput(name: string, publicKey: string): void {
  if (!KEY_NAME.test(name)) throw new Error(`name: "${name}" is not a person name (letters, digits, . _ @ -)`);
  if (!isPublicKey(publicKey)) throw new Error('public-key: not an Ed25519 public key (64 hex digits, as `safeshift keys init` prints it)');
}

/**
 * Register a public key for `name`: the administrator signs the registration, and the key row and its `keys:add`
 * audit row commit together (the audit key is required before anything is written). A key already registered with
 * a good signature is left as it is; a row without one (written directly, signed by someone else, or from before
 * registrations were signed) gets this administrator's. A revoked key is never registered again.
 */
export async function registerKey(
  client: pg.Client, name: string, publicKey: string, admin: AdminSigner, options: { admins?: readonly AdminKey[]; env?: NodeJS.ProcessEnv } = {},
): Promise<'added' | 'known'> {
  checkKeyInput(name, publicKey);
  requireAuditKey(options.env);
  checkAdmin(admin, options.admins);
  const lower = name.toLowerCase();
  await ensureLedger(client);
  return inTransaction(client, async () => {
    await client.query(KEYS_LOCK);
    const { rows: [row] } = await client.query<{ registration: string | null; signature: string | null; revoked: boolean }>(
      `SELECT registration, signature, revoked_at IS NOT NULL AS revoked FROM safeshift.decider_keys WHERE name = $1 AND public_key = $2`, [lower, publicKey]);
    if (row?.revoked || (await revokedInAudit(client, [lower])).has(`${lower}/${publicKey}`)) {
      throw new Error(`${keyFingerprint(publicKey)} was revoked for ${lower}; a revoked key is never registered again (make a new key pair: safeshift keys init --force)`);
    }
    const want = { action: 'keys:add' as const, name: lower, publicKey };
    if (row && verifyKeyStatement(row.registration, row.signature, want, [admin]).ok) return 'known';
    const { statement, signature } = signKeyStatement({ ...want, admin: admin.name, time: new Date().toISOString() }, admin.privateKey);
    await client.query(
      `INSERT INTO safeshift.decider_keys (name, public_key, added_by, registration, signature) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (name, public_key) DO UPDATE SET added_by = EXCLUDED.added_by, added_at = now(), registration = EXCLUDED.registration, signature = EXCLUDED.signature`,
      [lower, publicKey, admin.name.toLowerCase(), statement, signature]);
    await appendAudit(client, {
      eventKey: `keys:add:${randomUUID()}`, workflowId: null, runId: null, actor: admin.name.toLowerCase(), action: 'keys:add',
      details: { name: lower, publicKey, fingerprint: keyFingerprint(publicKey), ...(row ? { replaced: 'a row without a good administrator signature' } : {}) },
    });
    return 'added';
  });
}

/**
 * Revoke `name`'s key (the full public key or its fingerprint): signed by the administrator, the row marked and its
 * `keys:revoke` audit row written in one transaction. Migrations read keys when they start: those started before
 * keep the key until they end.
 */
export async function revokeKey(
  client: pg.Client, name: string, keyOrFingerprint: string, admin: AdminSigner, options: { admins?: readonly AdminKey[]; env?: NodeJS.ProcessEnv } = {},
): Promise<{ result: 'revoked' | 'known'; publicKey: string }> {
  if (!KEY_NAME.test(name)) throw new Error(`name: "${name}" is not a person name (letters, digits, . _ @ -)`);
  const which = keyOrFingerprint.trim().toLowerCase();
  if (!isPublicKey(which) && !/^[0-9a-f]{16}$/.test(which)) throw new Error('key: give the public key (64 hex digits) or its fingerprint (16 hex digits, as `safeshift keys list` shows it)');
  requireAuditKey(options.env);
  checkAdmin(admin, options.admins);
  const lower = name.toLowerCase();
  await ensureLedger(client);
  return inTransaction(client, async () => {
    await client.query(KEYS_LOCK);
    const { rows } = await client.query<{ public_key: string; revoked: boolean }>(
      `SELECT public_key, revoked_at IS NOT NULL AS revoked FROM safeshift.decider_keys WHERE name = $1`, [lower]);
    const hit = rows.find((r) => r.public_key === which || keyFingerprint(r.public_key) === which);
    if (!hit) throw new Error(`no key ${which.slice(0, 16)} is registered for ${lower} (safeshift keys list)`);
    if (hit.revoked) return { result: 'known' as const, publicKey: hit.public_key };
    const { statement, signature } = signKeyStatement(
      { action: 'keys:revoke', name: lower, publicKey: hit.public_key, admin: admin.name, time: new Date().toISOString() }, admin.privateKey);
    await client.query(
      `UPDATE safeshift.decider_keys SET revoked_at = now(), revoked_by = $3, revocation = $4, revocation_signature = $5 WHERE name = $1 AND public_key = $2`,
      [lower, hit.public_key, admin.name.toLowerCase(), statement, signature]);
    await appendAudit(client, {
      eventKey: `keys:revoke:${randomUUID()}`, workflowId: null, runId: null, actor: admin.name.toLowerCase(), action: 'keys:revoke',
      details: { name: lower, publicKey: hit.public_key, fingerprint: keyFingerprint(hit.public_key) },
    });
    return { result: 'revoked' as const, publicKey: hit.public_key };
  });
}

/** A registered key the reader does not count, and why (names and a fingerprint only). */
export interface IgnoredKey {
  name: string;
  fingerprint: string;
  reason: string;
}

interface KeyRow {
  name: string;
  public_key: string;
  added_by: string;
  added_at: Date;
  registration: string | null;
  signature: string | null;
  revoked_at: Date | null;
}

async function keyRows(client: pg.Client, names?: string[]): Promise<{ rows: KeyRow[]; revoked: Set<string> }> {
  const { rows: [ledger] } = await client.query<{ keys: boolean; audit: boolean }>(
    `SELECT to_regclass('safeshift.decider_keys') IS NOT NULL AS keys, to_regclass('safeshift.audit_log') IS NOT NULL AS audit`);
  if (!ledger?.keys) return { rows: [], revoked: new Set() };
  const { rows } = await client.query<KeyRow>(
    `SELECT name, public_key, added_by, added_at, registration, signature, revoked_at FROM safeshift.decider_keys
      WHERE $1::text[] IS NULL OR name = ANY($1::text[]) ORDER BY name, added_at`, [names ?? null]);
  const revoked = ledger.audit ? await revokedInAudit(client, [...new Set(rows.map((r) => r.name))]) : new Set<string>();
  return { rows, revoked };
}

/**
 * The keys of these people that count, by lower-case name (what a workflow fixes at its start): registered with a
 * registration signed by one of `admins`, and not revoked (in the row or in the audit log). Every other row of
 * theirs is returned in `ignored`, to be reported.
 */
export async function trustedKeysFor(client: pg.Client, names: string[], admins: readonly AdminKey[]): Promise<{ keys: ApproverKeys; ignored: IgnoredKey[] }> {
  const lower = [...new Set(names.map((n) => n.toLowerCase()))];
  const keys: ApproverKeys = Object.fromEntries(lower.map((n) => [n, [] as string[]]));
  const ignored: IgnoredKey[] = [];
  const { rows, revoked } = await keyRows(client, lower);
  for (const r of rows) {
    if (r.revoked_at || revoked.has(`${r.name}/${r.public_key}`)) continue;
    const check = verifyKeyStatement(r.registration, r.signature, { action: 'keys:add', name: r.name, publicKey: r.public_key }, admins);
    if (check.ok) keys[r.name]!.push(r.public_key);
    else ignored.push({ name: r.name, fingerprint: keyFingerprint(r.public_key), reason: check.reason });
  }
  return { keys, ignored };
}

export interface ListedKey {
  name: string;
  publicKey: string;
  fingerprint: string;
  addedBy: string;
  addedAt: string;
  revoked: boolean;
  /** With the administrators known here: whether workers with the same list count it, and if not, why. */
  trusted?: boolean;
  why?: string;
}

export async function listKeys(client: pg.Client, admins?: readonly AdminKey[]): Promise<ListedKey[]> {
  const { rows, revoked } = await keyRows(client);
  return rows.map((r) => {
    const gone = Boolean(r.revoked_at) || revoked.has(`${r.name}/${r.public_key}`);
    const check = admins && !gone ? verifyKeyStatement(r.registration, r.signature, { action: 'keys:add', name: r.name, publicKey: r.public_key }, admins) : undefined;
    return {
      name: r.name, publicKey: r.public_key, fingerprint: keyFingerprint(r.public_key), addedBy: r.added_by, addedAt: r.added_at.toISOString(), revoked: gone,
      ...(check ? { trusted: check.ok, ...(check.ok ? {} : { why: check.reason }) } : {}),
    };
  });
}

/**
 * The development administrator (`safeshift-dev`) of a dev home: its key pair under dev-keys/ (made once, 0600)
 * and the file that lists its public key, which `safeshift dev` gives its worker as SAFESHIFT_ADMIN_KEYS_FILE.
 */
export function ensureDevAdmin(home: string): { key: KeyFile; file: string } {
  const dir = join(home, 'dev-keys');
  const path = keyPath(dir, DEV_ADMIN);
  let key: KeyFile;
  try {
    key = existsSync(path) ? readKeyFile(path) : writeKeyFile(dir, DEV_ADMIN);
  } catch (err) {
    if (!existsSync(path)) throw err;
    key = readKeyFile(path); // made by another process meanwhile
  }
  return { key, file: writeDevAdminKeysFile(home, key.publicKey) };
}

/**
 * Dev mode only (demo, tests): a key for each name under SAFESHIFT_HOME/dev-keys, generated if missing, and
 * registered in the ledger by the development administrator, so `--auto-approve` can sign as the plan's approvers.
 * Harmless against a real stack: its workers do not list `safeshift-dev` in SAFESHIFT_ADMIN_KEYS, so they ignore
 * every key it registered.
 */
export async function ensureDevKeys(client: pg.Client, names: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const dir = devKeysDir(env);
  const admin = ensureDevAdmin(safeshiftHome(env)).key;
  for (const name of names) {
    const path = keyPath(dir, name);
    let key: KeyFile;
    try {
      key = existsSync(path) ? readKeyFile(path) : writeKeyFile(dir, name);
    } catch (err) {
      // Another start made it meanwhile: use that one.
      if (!existsSync(path)) throw err;
      key = readKeyFile(path);
    }
    await registerKey(client, name, key.publicKey, admin, { env });
  }
}
