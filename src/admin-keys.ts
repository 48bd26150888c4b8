/**
 * The administrators: the people whose signature makes a decider's key count. Their PUBLIC keys are trusted from
 * outside the database, like the codec and audit keys, so whoever can write `safeshift.decider_keys` (its owner, a
 * superuser, anyone who runs `keys add` without an administrator's private key) still cannot make a key count.
 *
 * Where the list comes from (both may be set: the union is trusted):
 *   SAFESHIFT_ADMIN_KEYS        name=public-key entries, separated by commas, spaces or new lines
 *   SAFESHIFT_ADMIN_KEYS_FILE   a file of such entries (`#` starts a comment), not writable by group or others
 * A public key is 64 hex digits (as `safeshift keys init` prints it) or the base64 of its 32 bytes. `safeshift dev`
 * makes a development administrator (`safeshift-dev`) in $SAFESHIFT_HOME and gives its worker that file only.
 */
import { existsSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { fatal } from './errors';
import type { AdminKey } from './identity';

export const ADMIN_KEYS_ENV = 'SAFESHIFT_ADMIN_KEYS';
export const ADMIN_KEYS_FILE_ENV = 'SAFESHIFT_ADMIN_KEYS_FILE';
/** The development administrator of `safeshift dev`: signs the dev keys of demos and tests, trusted only by the dev worker. */
export const DEV_ADMIN = 'safeshift-dev';
const DEV_ADMIN_KEYS_FILE = 'admin.keys';
const NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$/;

/** A public key as hex (64 digits) or base64 (32 bytes); undefined for anything else. */
function publicKeyHex(text: string): string | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return text.toLowerCase();
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(text)) {
    const bytes = Buffer.from(text, 'base64');
    if (bytes.length === 32) return bytes.toString('hex');
  }
  return undefined;
}

/** Parse a list of name=public-key entries; an entry that is not one is refused by its place, never echoed. */
export function parseAdminKeys(text: string, where: string): AdminKey[] {
  const entries = text.split('\n').map((line) => line.replace(/#.*$/, '')).join(' ').split(/[\s,]+/).filter(Boolean);
  return entries.map((entry, i) => {
    const eq = entry.indexOf('=');
    const name = eq > 0 ? entry.slice(0, eq) : '';
    const key = eq > 0 ? publicKeyHex(entry.slice(eq + 1)) : undefined;
    if (!NAME.test(name) || !key) {
      throw fatal('ConfigMissing', `${where}: entry ${i + 1} is not name=public-key (an Ed25519 public key: 64 hex digits or base64 of 32 bytes)`);
    }
    return { name: name.toLowerCase(), publicKey: key };
  });
}

/** The administrators this process trusts, or undefined when neither setting is there. */
export function adminKeysFromEnv(env: NodeJS.ProcessEnv = process.env): AdminKey[] | undefined {
  const inline = env[ADMIN_KEYS_ENV]?.trim();
  const file = env[ADMIN_KEYS_FILE_ENV]?.trim();
  if (!inline && !file) return undefined;
  const keys = inline ? parseAdminKeys(inline, ADMIN_KEYS_ENV) : [];
  if (file) {
    let text: string;
    let mode: number;
    try {
      mode = statSync(file).mode;
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw fatal('ConfigMissing', `${ADMIN_KEYS_FILE_ENV} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    // Whoever may write this file may make themselves an administrator.
    if (mode & 0o022) throw fatal('ConfigMissing', `${ADMIN_KEYS_FILE_ENV} ${file}: writable by group or others (mode ${(mode & 0o777).toString(8)}); chmod go-w it`);
    keys.push(...parseAdminKeys(text, `${ADMIN_KEYS_FILE_ENV} ${file}`));
  }
  if (!keys.length) throw fatal('ConfigMissing', `${inline ? ADMIN_KEYS_ENV : ADMIN_KEYS_FILE_ENV}: lists no administrator`);
  return keys;
}

/**
 * The administrators, required: without them no decider's key can be trusted, so nothing that needs a decision
 * starts. The message names both settings.
 */
export function requireAdminKeys(env: NodeJS.ProcessEnv = process.env): AdminKey[] {
  const keys = adminKeysFromEnv(env);
  if (!keys) {
    throw fatal('ConfigMissing',
      `no administrator keys: set ${ADMIN_KEYS_ENV} (name=public-key, ...) or ${ADMIN_KEYS_FILE_ENV} where the worker runs. ` +
      'A decider\'s key counts only when an administrator listed there signed its registration (safeshift keys add --as <admin>); ' +
      'without them no decision could be trusted, so no migration starts');
  }
  return keys;
}

/** `safeshift dev`: the file listing the development administrator (its public key only), written next to its private key. */
export function writeDevAdminKeysFile(home: string, publicKey: string): string {
  const file = join(home, DEV_ADMIN_KEYS_FILE);
  const text = `# safeshift dev: the development administrator (never for production)\n${DEV_ADMIN}=${publicKey}\n`;
  if (!existsSync(file) || readFileSync(file, 'utf8') !== text) writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}
