/**
 * File exports of whole tables, and their verification. An export is a directory: one `<schema>.<table>.copy.gz`
 * (or `.copy.gz.enc`) per table, COPY text of its stored columns, all read in one snapshot; and `manifest.json`
 * with what a verifier needs: columns and types, row counts, per-table checksums (computed in that snapshot, the
 * same way the migration's backup tables are checked), the SHA-256 of every file, server version, snapshot time,
 * and, when encrypted, the key id.
 *
 * Encryption (optional): AES-256-GCM over the gzip stream, key from an environment variable (32 bytes, base64 or
 * hex). File layout: `SSENC1` (6 bytes), IV (12 bytes), ciphertext, tag (16 bytes). The key id in the manifest is
 * the first 16 hex digits of SHA-256 of the key, so a wrong key is named before anything is decrypted.
 *
 * The manifest is data, never SQL, and authenticated before anything in it is used (src/manifest.ts). Exports hold
 * personal data: directories are made 0700 and files 0600 whatever the umask.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, type CipherGCM } from 'node:crypto';
import { chmodSync, closeSync, createReadStream, createWriteStream, existsSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { tableOid } from './catalog';
import { tableChecksum } from './checksum';
import { inTransaction } from './db';
import { errorText } from './redact';
import {
  authenticateManifest, columnDefinitions, ExportError, exportFileName, manifestMac, manifestText, MANIFEST, openManifest,
  readManifestFile, recordedManifestDigest, sha256Hex, type ExportedTable, type Manifest,
} from './manifest';
import { BACKUP_KEY_ENV } from './messages';
import { sealTable } from './seal';
import { displayName, qualified, quoteIdent, type TableRef } from './sql';

export { ExportError, MANIFEST, type ExportedTable, type Manifest } from './manifest';
const MAGIC = Buffer.from('SSENC1');
const IV_BYTES = 12;
const TAG_BYTES = 16;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/**
 * The key an export is written with: a named variable; none when `requested` is '' (`--no-encrypt`); by default
 * SAFESHIFT_BACKUP_KEY when it is set where the export is written (exports hold personal data: encrypted whenever
 * a key is configured).
 */
export function exportKeyEnv(requested: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (requested !== undefined) return requested || undefined;
  return env[BACKUP_KEY_ENV] ? BACKUP_KEY_ENV : undefined;
}

/** A 32-byte key from the named environment variable (base64 or hex), and its id. */
export function exportKey(envName: string, env: NodeJS.ProcessEnv = process.env): { key: Buffer; keyId: string } {
  const text = env[envName];
  if (!text) throw new ExportError(`encryption key: environment variable ${envName} is not set`);
  const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
  if (key.length !== 32) throw new ExportError(`encryption key: ${envName} must hold 32 bytes (64 hex digits or base64), it holds ${key.length}`);
  return { key, keyId: createHash('sha256').update(key).digest('hex').slice(0, 16) };
}

/** Passes bytes through, hashing and counting them. */
class Digest extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

/** Stored (non-generated) columns in order, with their types: what COPY writes and a restore can load. */
export async function storedColumns(client: pg.Client, t: TableRef): Promise<{ name: string; type: string }[]> {
  const { rows } = await client.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`,
    [qualified(t)]);
  if (!rows.length) throw new ExportError(`table ${displayName(t)} does not exist (or has no columns)`);
  return rows;
}

/** `dir` and any parents it needs, each made here 0700; `dir` itself 0700 even if it existed (empty). */
function makeExportDir(dir: string): void {
  const first = mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if (first) {
    // mkdir's mode is masked by the umask: each directory made here is set explicitly, outermost first.
    const made: string[] = [];
    for (let d = resolve(dir); ; d = dirname(d)) {
      made.unshift(d);
      if (d === resolve(first) || d === dirname(d)) break;
    }
    for (const d of made) chmodSync(d, DIR_MODE);
  }
  chmodSync(dir, DIR_MODE);
}

/** A new file only the owner can read, whatever the umask (the mode given to open is masked by it). */
function createPrivateFile(path: string, data: string | Buffer): void {
  writeFileSync(path, data, { mode: FILE_MODE, flag: 'wx' });
  chmodSync(path, FILE_MODE);
}

/** The audit chain's head as this snapshot sees it (null without an audit log): anchored in the manifest. */
async function auditHeadInSnapshot(client: pg.Client): Promise<{ seq: number; hash: string } | null> {
  const { rows: [log] } = await client.query<{ readable: boolean }>(
    `SELECT coalesce(has_table_privilege(to_regclass('safeshift.audit_log'), 'SELECT'), false) AS readable`);
  if (!log!.readable) return null;
  const { rows: [head] } = await client.query<{ seq: string; hash: string }>(`SELECT a.seq::text AS seq, a.hash FROM safeshift.audit_log a ORDER BY a.seq DESC LIMIT 1`);
  return head ? { seq: Number(head.seq), hash: head.hash } : null;
}

/**
 * Export `tables` into `dir` (created; must be empty) in one REPEATABLE READ snapshot on `client`.
 * `onTable` is called after each table (progress, heartbeats).
 */
export async function exportTables(
  client: pg.Client, tables: TableRef[], dir: string, options: { id: string; keyEnv?: string; onTable?: (t: ExportedTable) => void },
): Promise<Manifest> {
  if (existsSync(dir) && readdirSync(dir).length) throw new ExportError(`--dir: ${dir} is not empty; exports go into a new or empty directory`);
  const key = options.keyEnv ? exportKey(options.keyEnv) : undefined;
  makeExportDir(dir);
  const { meta, exported } = await inTransaction(client, async () => {
    const [meta] = (await client.query<{ server: string; database: string; at: string }>(
      `SELECT 'PostgreSQL ' || current_setting('server_version') AS server, current_database() AS database,
              to_char(transaction_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`)).rows;
    const auditHead = await auditHeadInSnapshot(client);
    const exported: ExportedTable[] = [];
    for (const t of tables) {
      const columns = await storedColumns(client, t);
      const names = columns.map((c) => c.name);
      const file = exportFileName(t, key !== undefined);
      const path = join(dir, file);
      createPrivateFile(path, '');
      const digest = new Digest();
      const stages: NodeJS.ReadWriteStream[] = [createGzip()];
      let cipher: CipherGCM | undefined;
      if (key) {
        const iv = randomBytes(IV_BYTES);
        cipher = createCipheriv('aes-256-gcm', key.key, iv);
        stages.push(cipher);
        // Header first (hashed like the rest), the tag after the cipher has finished.
        const header = Buffer.concat([MAGIC, iv]);
        writeFileSync(path, header, { flag: 'a' });
        digest.hash.update(header);
        digest.bytes += header.length;
      }
      const source = client.query(copyTo(`COPY (SELECT ${names.map(quoteIdent).join(', ')} FROM ${qualified(t)}) TO STDOUT`));
      await pipeline(source, ...(stages as [NodeJS.ReadWriteStream]), digest, createWriteStream(path, { flags: 'a' }));
      if (cipher) {
        const tag = cipher.getAuthTag();
        digest.hash.update(tag);
        digest.bytes += tag.length;
        writeFileSync(path, tag, { flag: 'a' });
      }
      const sum = await tableChecksum(client, t, names);
      const entry: ExportedTable = {
        schema: t.schema, name: t.name, file, columns, rows: sum.rows, checksum: sum.checksum,
        sha256: digest.hash.digest('hex'), bytes: digest.bytes,
      };
      exported.push(entry);
      options.onTable?.(entry);
    }
    return { meta: { ...meta!, auditHead }, exported };
  }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const manifest: Manifest = {
    format: 'safeshift-export/1', id: options.id, server: meta.server, database: meta.database, snapshotAt: meta.at,
    encryption: key ? { algorithm: 'aes-256-gcm', keyId: key.keyId } : null, tables: exported, auditHead: meta.auditHead,
  };
  if (key) manifest.mac = manifestMac(manifest, key.key);
  createPrivateFile(join(dir, MANIFEST), manifestText(manifest));
  return manifest;
}

/**
 * Record a written export in `safeshift.exports`, with its manifest's SHA-256: what verify, restore and retention
 * check the manifest against later. Returns the per-table summary recorded.
 */
export async function recordExport(
  client: pg.Client, manifest: Manifest, at: { workflowId: string; dir: string; scheduleId?: string },
): Promise<{ tables: { table: string; rows: number; bytes: number }[]; bytes: number }> {
  const tables = manifest.tables.map((t) => ({ table: `${t.schema}.${t.name}`, rows: t.rows, bytes: t.bytes }));
  const bytes = manifest.tables.reduce((n, t) => n + t.bytes, 0);
  await client.query(
    `INSERT INTO safeshift.exports (id, workflow_id, dir, tables, bytes, encrypted, key_id, snapshot_at, schedule_id, manifest_sha256)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [manifest.id, at.workflowId, at.dir, JSON.stringify(tables), bytes, manifest.encryption !== null, manifest.encryption?.keyId ?? null,
      manifest.snapshotAt, at.scheduleId ?? null, sha256Hex(manifestText(manifest))]);
  return { tables, bytes };
}

/**
 * The manifest of `dir`, checked for form only (not authenticated): for listing what an export holds. Everything
 * that loads from an export goes through `trustedManifest`.
 */
export function readManifest(dir: string): Manifest {
  return readManifestFile(dir).manifest;
}

/**
 * The manifest of `dir`, well-formed, its types type names, authenticated (MAC with the key when encrypted, the
 * digest `safeshift.exports` recorded when there is one, and for a plain export that digest is required), with
 * the key to decrypt the files.
 */
async function trustedManifest(client: pg.Client, dir: string, keyEnv: string | undefined): Promise<{ manifest: Manifest; key: Buffer | undefined }> {
  const opened = await openManifest(dir);
  const key = decryptionKey(opened.manifest, dir, keyEnv);
  authenticateManifest(dir, opened, key, await recordedManifestDigest(client, opened.manifest.id));
  return { manifest: opened.manifest, key };
}

/**
 * The key an encrypted export needs, checked by key id before anything is decrypted; none for a plain one. Unless
 * named, SAFESHIFT_BACKUP_KEY where this runs (encrypted by default means decrypted by default).
 */
function decryptionKey(manifest: Manifest, dir: string, requested: string | undefined): Buffer | undefined {
  if (!manifest.encryption) return undefined;
  const keyEnv = requested || (process.env[BACKUP_KEY_ENV] ? BACKUP_KEY_ENV : undefined);
  if (!keyEnv) throw new ExportError(`${dir} is encrypted (key id ${manifest.encryption.keyId}): name the key's environment variable`);
  const k = exportKey(keyEnv);
  if (k.keyId !== manifest.encryption.keyId) throw new ExportError(`wrong key: ${keyEnv} has key id ${k.keyId}, the export was encrypted with ${manifest.encryption.keyId}`);
  return k.key;
}

async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), new Transform({ transform(chunk, _e, done) { hash.update(chunk); done(); } }));
  return hash.digest('hex');
}

/**
 * Streams that read one exported file as plain COPY text: decrypted and authenticated (if encrypted), gunzipped.
 * Given to `pipeline` as they are, so an error in any of them (a failed authentication) fails the whole load.
 */
function plainStreams(dir: string, t: ExportedTable, key: Buffer | undefined): [NodeJS.ReadableStream, ...NodeJS.ReadWriteStream[]] {
  const path = join(dir, t.file);
  if (!key) return [createReadStream(path), createGunzip()];
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(MAGIC.length + IV_BYTES);
  const tag = Buffer.alloc(TAG_BYTES);
  readSync(fd, head, 0, head.length, 0);
  readSync(fd, tag, 0, TAG_BYTES, size - TAG_BYTES);
  closeSync(fd);
  if (!head.subarray(0, MAGIC.length).equals(MAGIC)) throw new ExportError(`${t.file}: not a safeshift encrypted file`);
  const decipher = createDecipheriv('aes-256-gcm', key, head.subarray(MAGIC.length));
  decipher.setAuthTag(tag);
  return [createReadStream(path, { start: head.length, end: size - TAG_BYTES - 1 }), decipher, createGunzip()];
}

/** Why a present file cannot be trusted (it hashes differently from the manifest), or undefined. */
async function hashProblem(dir: string, t: ExportedTable): Promise<string | undefined> {
  const sha = await fileSha256(join(dir, t.file));
  return sha === t.sha256 ? undefined : `${t.file}: SHA-256 ${sha} differs from the manifest's ${t.sha256} (the file was changed or corrupted)`;
}

/**
 * COPY one exported file into `into` (created by the caller, in the caller's transaction) and compare count and
 * checksum with the manifest: the difference, or undefined when they are equal.
 */
async function loadExported(client: pg.Client, dir: string, t: ExportedTable, key: Buffer | undefined, into: TableRef): Promise<string | undefined> {
  const columns = t.columns.map((c) => c.name);
  await pipeline([...plainStreams(dir, t, key), client.query(copyFrom(`COPY ${qualified(into)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN`))]);
  const sum = await tableChecksum(client, into, columns);
  return sum.rows === t.rows && sum.checksum === t.checksum
    ? undefined
    : `${t.file} restores to ${sum.rows} rows (checksum ${sum.checksum}); the manifest says ${t.rows} (checksum ${t.checksum})`;
}

/** A load that threw: a failed authentication is named as such (wrong key or changed file), anything else as it is. */
function loadFailure(t: ExportedTable, err: unknown): string {
  // A COPY refusal quotes the row it refused: told without values (src/redact.ts), it reaches history and the ledger.
  const message = errorText(err);
  return /auth/i.test(message) ? `${t.file}: decryption failed authentication (wrong key or changed file)` : `${t.file}: does not restore: ${message}`;
}

export interface VerifiedTable {
  table: string;
  ok: boolean;
  problem?: string;
  rows?: number;
}

/**
 * Verify an export: every file's SHA-256 against the manifest, then each table loaded into a scratch schema
 * (decrypted, gunzipped, COPY) and its count and checksum compared with the manifest's, in a transaction that
 * is rolled back (the scratch schema never outlives it). Each problem is named; nothing stops at the first.
 */
export async function verifyExport(client: pg.Client, dir: string, options: { keyEnv?: string } = {}): Promise<{ manifest: Manifest; tables: VerifiedTable[] }> {
  const { manifest, key } = await trustedManifest(client, dir, options.keyEnv);
  const results: VerifiedTable[] = [];
  for (const t of manifest.tables) {
    const table = displayName(t);
    if (!existsSync(join(dir, t.file))) { results.push({ table, ok: false, problem: `${t.file} is missing` }); continue; }
    const corrupt = await hashProblem(dir, t);
    if (corrupt) { results.push({ table, ok: false, problem: corrupt }); continue; }
    let definitions: string;
    try {
      definitions = await columnDefinitions(client, t, quoteIdent);
    } catch (err) {
      results.push({ table, ok: false, problem: (err as Error).message });
      continue;
    }
    const scratch = `safeshift_verify_${randomBytes(4).toString('hex')}`;
    await client.query('BEGIN');
    try {
      await client.query(`CREATE SCHEMA ${quoteIdent(scratch)}`);
      const into = { schema: scratch, name: t.name };
      await client.query(`CREATE TABLE ${qualified(into)} (${definitions})`);
      const differs = await loadExported(client, dir, t, key, into);
      results.push(differs ? { table, ok: false, problem: differs } : { table, ok: true, rows: t.rows });
    } catch (err) {
      results.push({ table, ok: false, problem: loadFailure(t, err) });
    } finally {
      await client.query('ROLLBACK').catch(() => undefined);
    }
  }
  return { manifest, tables: results };
}

/**
 * One table of an export, checked as far as can be without loading it: in the manifest, its key at hand (right key
 * id), its file present and hashing to the manifest's SHA-256. Everything a restore refuses before it touches the
 * database.
 */
export async function exportedTable(
  client: pg.Client, dir: string, table: TableRef, options: { keyEnv?: string } = {},
): Promise<{ manifest: Manifest; table: ExportedTable; key: Buffer | undefined }> {
  const { manifest, key } = await trustedManifest(client, dir, options.keyEnv);
  const t = manifest.tables.find((x) => x.schema === table.schema && x.name === table.name);
  if (!t) throw new ExportError(`--table: ${displayName(table)} is not in this export (it has ${manifest.tables.map((x) => displayName(x)).join(', ')})`);
  if (!existsSync(join(dir, t.file))) throw new ExportError(`${t.file} is missing from ${dir}; nothing restored`);
  const corrupt = await hashProblem(dir, t);
  if (corrupt) throw new ExportError(`${corrupt}; nothing restored`);
  return { manifest, table: t, key };
}

export interface RestoreOptions {
  keyEnv?: string;
  /** Create `into` as `LIKE <like> INCLUDING ALL` (a stand-in for a live table) instead of from the export's column types. */
  like?: TableRef;
  /** Runs inside the restore's transaction after the load checked out (constraints, ledger rows); a throw undoes everything. */
  beforeCommit?: (client: pg.Client) => Promise<void>;
}

/**
 * Restore one exported table into a new table `into` (refused if it exists): created with the exported columns
 * and types (or like a live table), loaded, then count and checksum compared with the manifest, all in one
 * transaction that commits only if they are equal. Never touches an existing table. The new table is sealed
 * (src/seal.ts): it holds the export's rows without the original's row-level security, and default privileges
 * (Supabase's in `public`) would open it to `anon`; access is granted by the operator, or moved onto it by the
 * restore's swap.
 */
export async function restoreTable(client: pg.Client, dir: string, table: TableRef, into: TableRef, options: RestoreOptions = {}): Promise<{ rows: number; checksum: string }> {
  const { table: t, key } = await exportedTable(client, dir, table, options);
  if (await tableOid(client, into)) throw new ExportError(`--into: ${displayName(into)} exists; restore goes into a new table`);
  const definitions = options.like ? `LIKE ${qualified(options.like)} INCLUDING ALL` : await columnDefinitions(client, t, quoteIdent);
  try {
    await inTransaction(client, async () => {
      await client.query(`CREATE TABLE ${qualified(into)} (${definitions})`);
      await sealTable(client, (await tableOid(client, into))!);
      const differs = await loadExported(client, dir, t, key, into);
      if (differs) throw new ExportError(`${differs}; nothing restored`);
      await options.beforeCommit?.(client);
    });
    return { rows: t.rows, checksum: t.checksum };
  } catch (err) {
    if (err instanceof ExportError) throw err;
    throw new ExportError(`${loadFailure(t, err)}; nothing restored`);
  }
}
