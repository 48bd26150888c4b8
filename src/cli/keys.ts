/**
 * `safeshift keys`: a decider makes a key pair (`init`; the private key stays in their config, 0600), an
 * administrator registers the public key in the ledger (`add`, signed with the administrator's own key, audited) or
 * revokes it (`revoke`, the same), anyone lists what is registered and whether it counts (`list`).
 */
import { userInfo } from 'node:os';
import { ADMIN_KEYS_ENV, adminKeysFromEnv } from '../admin-keys';
import { requireAuditKey } from '../audit-key';
import { withClient } from '../db';
import { isPublicKey, keyFingerprint, type AdminKey } from '../identity';
import { findKey, keysDir, listKeys, registerKey, revokeKey, writeKeyFile, type KeyFile } from '../keys';
import { CliError, connectionString, EXIT_OK } from './exit';

type Print = (line: string) => void;

function defaultName(): string {
  return process.env.SAFESHIFT_AS || userInfo().username;
}

export async function keysInit(options: { name?: string; force?: boolean; json?: boolean }, print: Print): Promise<number> {
  const name = options.name ?? defaultName();
  let key;
  try {
    key = writeKeyFile(keysDir(), name, { overwrite: options.force });
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (options.json) {
    print(JSON.stringify({ name: key.name, publicKey: key.publicKey, file: `${keysDir()}/${name.toLowerCase()}.key` }));
  } else {
    print(`private key for ${key.name} written to ${keysDir()}/${name.toLowerCase()}.key (mode 0600; never share it)`);
    print(`public key: ${key.publicKey}`);
    print(`an administrator registers it with: safeshift keys add ${key.name} ${key.publicKey} --as <administrator>`);
  }
  return EXIT_OK;
}

/**
 * The administrator's key to sign with (`--as`, from the user's keys directory or, in dev mode, the dev stack's),
 * checked against the administrators this process knows (SAFESHIFT_ADMIN_KEYS / _FILE; in dev mode, the dev
 * stack's list). The workers' list is what counts: without one here, the CLI says so and signs anyway.
 */
function adminSigner(as: string | undefined): { admin: KeyFile; admins: AdminKey[] | undefined } {
  const name = as ?? defaultName();
  let admin: KeyFile | undefined;
  let admins: AdminKey[] | undefined;
  try {
    admin = findKey(name);
    admins = adminKeysFromEnv();
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (!admin) throw new CliError(`--as ${name}: no key for ${name} in ${keysDir()} (an administrator makes one with safeshift keys init --name ${name}, and the workers list its public key in ${ADMIN_KEYS_ENV})`);
  if (!admins) process.stderr.write(`safeshift keys: ${ADMIN_KEYS_ENV} is not set here; workers count what ${name} signs only if they list ${name}'s public key\n`);
  return { admin, admins };
}

export async function keysAdd(name: string, publicKey: string, options: { as?: string; database: string }, print: Print): Promise<number> {
  const url = connectionString(options.database);
  const key = publicKey.trim().toLowerCase();
  // Bad input first, then the audit key (nothing is written without its audit row), then who signs.
  if (!isPublicKey(key)) throw new CliError('keys add: public-key: not an Ed25519 public key (64 hex digits, as `safeshift keys init` prints it)');
  try {
    requireAuditKey();
  } catch (err) {
    throw new CliError(`keys add: ${(err as Error).message}; nothing was registered`);
  }
  const { admin, admins } = adminSigner(options.as);
  const result = await withClient(url, (client) => registerKey(client, name, key, admin, { admins }), 'safeshift keys')
    .catch((err: unknown) => { throw new CliError(`keys add: ${(err as Error).message}`); });
  print(result === 'added'
    ? `registered ${keyFingerprint(key)} for ${name.toLowerCase()}, signed by ${admin.name} (audited as keys:add); migrations started from now on accept ${name.toLowerCase()}'s signature`
    : `${keyFingerprint(key)} was already registered for ${name.toLowerCase()} with ${admin.name}'s signature`);
  return EXIT_OK;
}

export async function keysRevoke(name: string, keyOrFingerprint: string, options: { as?: string; database: string }, print: Print): Promise<number> {
  const url = connectionString(options.database);
  try {
    requireAuditKey();
  } catch (err) {
    throw new CliError(`keys revoke: ${(err as Error).message}; nothing was revoked`);
  }
  const { admin, admins } = adminSigner(options.as);
  const { result, publicKey } = await withClient(url, (client) => revokeKey(client, name, keyOrFingerprint, admin, { admins }), 'safeshift keys')
    .catch((err: unknown) => { throw new CliError(`keys revoke: ${(err as Error).message}`); });
  print(result === 'revoked'
    ? `revoked ${keyFingerprint(publicKey)} of ${name.toLowerCase()}, signed by ${admin.name} (audited as keys:revoke); migrations started from now on refuse it (those already running keep the keys they read at start)`
    : `${keyFingerprint(publicKey)} of ${name.toLowerCase()} was already revoked`);
  return EXIT_OK;
}

export async function keysList(options: { json?: boolean; database: string }, print: Print): Promise<number> {
  let admins: AdminKey[] | undefined;
  try {
    admins = adminKeysFromEnv();
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const rows = await withClient(connectionString(options.database), (client) => listKeys(client, admins), 'safeshift keys');
  if (options.json) print(JSON.stringify(rows));
  else if (!rows.length) print('no keys registered');
  else {
    for (const r of rows) {
      const state = r.revoked ? 'revoked' : r.trusted === undefined ? `unchecked (${ADMIN_KEYS_ENV} not set here)` : r.trusted ? 'trusted' : `IGNORED: ${r.why}`;
      print(`${r.name}  ${r.fingerprint}  ${r.publicKey}  added by ${r.addedBy} at ${r.addedAt}  ${state}`);
    }
  }
  return EXIT_OK;
}
