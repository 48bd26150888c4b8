/**
 * Deciders' keys on the Node side: private key files in the user's config (never in the database), public keys in
 * the ledger (`safeshift.decider_keys`, registered by an administrator, audited), and the dev stack's own keys
 * for demos and tests. What is signed and how it is verified is in src/identity.ts.
 */
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { devEnvPath, parseEnvFile, safeshiftHome } from './config';
import { generateKeyPair, isPublicKey, publicKeyOf } from './identity';
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

/** Register a public key for `name` (an administrator's act), audited; registering the same key again is a no-op. */
export async function registerKey(client: pg.Client, name: string, publicKey: string, addedBy: string): Promise<'added' | 'known'> {
  if (!KEY_NAME.test(name)) throw new Error(`name: "${name}" is not a person name (letters, digits, . _ @ -)`);
  if (!isPublicKey(publicKey)) throw new Error('public-key: not an Ed25519 public key (64 hex digits, as `safeshift keys init` prints it)');
  await ensureLedger(client);
  const { rowCount } = await client.query(
    `INSERT INTO safeshift.decider_keys (name, public_key, added_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
    [name.toLowerCase(), publicKey, addedBy]);
  if (!rowCount) return 'known';
  await appendAudit(client, {
    eventKey: `keys:add:${randomUUID()}`, workflowId: null, runId: null, actor: addedBy, action: 'keys:add',
    details: { name: name.toLowerCase(), publicKey },
  });
  return 'added';
}

/** The registered keys of these people, by lower-case name (what a workflow fixes at its start). */
export async function keysFor(client: pg.Client, names: string[]): Promise<ApproverKeys> {
  const lower = [...new Set(names.map((n) => n.toLowerCase()))];
  const out: ApproverKeys = Object.fromEntries(lower.map((n) => [n, [] as string[]]));
  const exists = await client.query(`SELECT to_regclass('safeshift.decider_keys') IS NOT NULL AS ok`);
  if (!exists.rows[0]?.ok) return out;
  const { rows } = await client.query<{ name: string; public_key: string }>(
    `SELECT name, public_key FROM safeshift.decider_keys WHERE name = ANY($1::text[]) ORDER BY name, added_at`, [lower]);
  for (const r of rows) out[r.name]!.push(r.public_key);
  return out;
}

export async function listKeys(client: pg.Client): Promise<{ name: string; publicKey: string; addedBy: string; addedAt: string }[]> {
  const exists = await client.query(`SELECT to_regclass('safeshift.decider_keys') IS NOT NULL AS ok`);
  if (!exists.rows[0]?.ok) return [];
  const { rows } = await client.query<{ name: string; public_key: string; added_by: string; added_at: Date }>(
    `SELECT name, public_key, added_by, added_at FROM safeshift.decider_keys ORDER BY name, added_at`);
  return rows.map((r) => ({ name: r.name, publicKey: r.public_key, addedBy: r.added_by, addedAt: r.added_at.toISOString() }));
}

/**
 * Dev mode only (demo, tests): a key for each name under SAFESHIFT_HOME/dev-keys, generated if missing, and
 * registered in the ledger, so `--auto-approve` can sign as the plan's approvers. Never used against a real stack.
 */
export async function ensureDevKeys(client: pg.Client, names: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const dir = devKeysDir(env);
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
    await registerKey(client, name, key.publicKey, 'safeshift-dev');
  }
}
