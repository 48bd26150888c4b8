/**
 * An export's `manifest.json`: data, never SQL. Anyone who can write the export directory can write this file, so
 * nothing in it is trusted until it is
 * - well-formed (a strict schema: every field typed, file names exactly the ones the exporter writes, so no path
 *   leaves the directory),
 * - made of type names only (each column type parsed by PostgreSQL's parser as the one type name of
 *   `SELECT NULL::<type>`, typmods constants; then resolved through the catalog, `format_type`, before it is used),
 * - authenticated: an encrypted export's manifest carries an HMAC under a key derived from the export key (it
 *   verifies anywhere the key is); every export's manifest SHA-256 is recorded in `safeshift.exports` when it is
 *   written and must match when the database has that record (a plain export has nothing else, so without a
 *   matching record it is refused).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'libpg-query';
import type pg from 'pg';
import { z } from 'zod';
import type { TableRef } from './sql';

export const MANIFEST = 'manifest.json';
/** A manifest of ten thousand tables is well under this; anything bigger is not one of ours. */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const MAC_CONTEXT = 'safeshift-export-manifest/1';

export class ExportError extends Error {}

/** The data file of one table: `<schema>.<table>.copy.gz[.enc]`, each part percent-encoded (no `/`, no `..`). */
export function exportFileName(t: TableRef, encrypted: boolean): string {
  const safe = (s: string) => encodeURIComponent(s).replace(/\./g, '%2E');
  return `${safe(t.schema)}.${safe(t.name)}.copy.gz${encrypted ? '.enc' : ''}`;
}

const hex = (digits: number) => z.string().regex(new RegExp(`^[0-9a-f]{${digits}}$`), `must be ${digits} lower-case hex digits`);
const name = z.string().min(1).max(256).refine((s) => !s.includes('\0'), 'must not contain NUL');

const tableSchema = z.strictObject({
  schema: name,
  name,
  file: z.string().min(1).max(1024),
  columns: z.array(z.strictObject({ name, type: z.string().min(1).max(1000) })).min(1),
  rows: z.number().int().nonnegative(),
  checksum: z.string().regex(/^-?\d{1,80}$/, 'must be an integer'),
  sha256: hex(64),
  bytes: z.number().int().nonnegative(),
});

const manifestSchema = z.strictObject({
  format: z.literal('safeshift-export/1'),
  id: z.string().min(1).max(1000),
  server: z.string().max(1000),
  database: z.string().max(1000),
  /** When the snapshot the export was read in was taken (server clock). */
  snapshotAt: z.string().max(100),
  encryption: z.strictObject({ algorithm: z.literal('aes-256-gcm'), keyId: hex(16) }).nullable(),
  tables: z.array(tableSchema),
  /**
   * The audit log's last row (seq and MAC) in the export's snapshot: a copy of the chain's head outside the
   * database, covered by the manifest's MAC, for `safeshift audit verify --anchor <export>` (issue 14, item 4).
   * Absent in manifests from before it; null when the database had no audit log.
   */
  auditHead: z.strictObject({ seq: z.number().int().positive(), hash: z.string().min(1).max(200) }).nullable().optional(),
  /** Encrypted exports: HMAC-SHA256 of the rest of the manifest (canonical JSON), under a key derived from the export key. */
  mac: hex(64).optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ExportedTable = Manifest['tables'][number];

/** The manifest as written: what its SHA-256 (recorded in the ledger) is taken over. */
export const manifestText = (m: Manifest): string => `${JSON.stringify(m, null, 2)}\n`;
export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * The MAC of a manifest (its `mac` left out), over canonical JSON (the schema's field order), so reformatting the
 * file does not matter and any change of a value does. The key is derived from the export key, never the key itself.
 */
export function manifestMac(m: Manifest, key: Buffer): string {
  const canonical = JSON.stringify(manifestSchema.parse({ ...m, mac: undefined }));
  const macKey = createHmac('sha256', key).update(MAC_CONTEXT).digest();
  return createHmac('sha256', macKey).update(canonical).digest('hex');
}

const issuePath = (path: readonly PropertyKey[]) =>
  path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}${s ? '.' : ''}${String(p)}`), '');

function readBounded(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_MANIFEST_BYTES) throw new ExportError(`${path}: ${size} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES}); not a safeshift export manifest`);
    const bytes = Buffer.alloc(size);
    let at = 0;
    while (at < size) {
      const n = readSync(fd, bytes, at, size - at, at);
      if (n === 0) break;
      at += n;
    }
    return bytes.subarray(0, at);
  } finally {
    closeSync(fd);
  }
}

/**
 * The manifest of `dir`, checked for form only (synchronous): fields and their types, and every file name the
 * one the exporter writes for its table. Not authenticated; see `openManifest`.
 */
export function readManifestFile(dir: string): { manifest: Manifest; sha256: string } {
  const path = join(dir, MANIFEST);
  let bytes: Buffer;
  let raw: unknown;
  try {
    bytes = readBounded(path);
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    if (err instanceof ExportError) throw err;
    throw new ExportError(`${path}: cannot read the manifest: ${(err as Error).message}`);
  }
  const format = (raw as { format?: unknown } | null)?.format;
  if (format !== 'safeshift-export/1') throw new ExportError(`${path}: not a safeshift export manifest (format ${JSON.stringify(format) ?? 'undefined'})`);
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, 5).map((i) => `${issuePath(i.path) || '(top)'}: ${i.message}`);
    throw new ExportError(`${path}: not a valid safeshift export manifest: ${problems.join('; ')}`);
  }
  const manifest = parsed.data;
  for (const [i, t] of manifest.tables.entries()) {
    const expected = exportFileName(t, manifest.encryption !== null);
    if (t.file !== expected) throw new ExportError(`${path}: tables[${i}].file: ${JSON.stringify(t.file)} is not the export's file for ${t.schema}.${t.name} (${expected})`);
  }
  return { manifest, sha256: sha256Hex(bytes) };
}

/**
 * Why `type` is not exactly one type name, or undefined. PostgreSQL's parser reads `SELECT NULL::<type>`: it must
 * be that one statement and nothing else, the cast's type a plain type name (no SETOF, no %TYPE) whose modifiers
 * are constants. Anything that closes the column list, adds a statement or an expression fails here.
 */
export async function typeNameProblem(type: string): Promise<string | undefined> {
  let stmts: { stmt?: Record<string, unknown> }[];
  try {
    stmts = (await parse(`SELECT NULL::${type}`)).stmts ?? [];
  } catch (err) {
    return `not a type name (${(err as Error).message})`;
  }
  const only = (o: unknown, keys: string[]): o is Record<string, unknown> =>
    typeof o === 'object' && o !== null && Object.keys(o).every((k) => keys.includes(k));
  if (stmts.length !== 1) return `not a type name (${stmts.length} statements)`;
  const select = stmts[0]!.stmt?.SelectStmt;
  if (!only(select, ['targetList', 'limitOption', 'op']) || select.op !== 'SETOP_NONE') return 'not a type name';
  const targets = select.targetList as { ResTarget?: unknown }[] | undefined;
  if (!targets || targets.length !== 1 || !only(targets[0]!.ResTarget, ['val', 'location'])) return 'not a type name';
  const cast = (targets[0]!.ResTarget as { val?: { TypeCast?: unknown } }).val?.TypeCast;
  if (!only(cast, ['arg', 'typeName', 'location'])) return 'not a type name';
  const arg = (cast.arg as { A_Const?: { isnull?: boolean } } | undefined)?.A_Const;
  if (!arg?.isnull) return 'not a type name';
  const typeName = cast.typeName;
  if (!only(typeName, ['names', 'typmods', 'typemod', 'arrayBounds', 'location'])) return 'not a plain type name (SETOF or %TYPE)';
  const mods = (typeName.typmods ?? []) as Record<string, unknown>[];
  for (const m of mods) {
    if (!only(m, ['A_Const']) || !only(m.A_Const, ['ival', 'sval', 'fval', 'location'])) return 'a type modifier that is not a constant';
  }
  return undefined;
}

/**
 * The manifest of `dir`, checked for form and with every column type a type name (not yet resolved, not yet
 * authenticated: `authenticateManifest`).
 */
export async function openManifest(dir: string): Promise<{ manifest: Manifest; sha256: string }> {
  const opened = readManifestFile(dir);
  for (const [i, t] of opened.manifest.tables.entries()) {
    for (const [j, c] of t.columns.entries()) {
      const problem = await typeNameProblem(c.type);
      if (problem) throw new ExportError(`${join(dir, MANIFEST)}: tables[${i}].columns[${j}].type of ${t.schema}.${t.name}.${c.name}: ${JSON.stringify(c.type)} is ${problem}; the manifest is refused, nothing loaded`);
    }
  }
  return opened;
}

/**
 * What `safeshift.exports` recorded for export `id` when it was written: its manifest's SHA-256; null when the row
 * predates the digest; undefined when this database has no record of it (or no ledger at all).
 */
export async function recordedManifestDigest(client: pg.Client, id: string): Promise<string | null | undefined> {
  const { rows: [ledger] } = await client.query<{ table: boolean; digest: boolean }>(
    `SELECT to_regclass('safeshift.exports') IS NOT NULL AS table,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('safeshift.exports') AND attname = 'manifest_sha256' AND NOT attisdropped) AS digest`);
  if (!ledger!.table) return undefined;
  const { rows: [row] } = await client.query<{ digest: string | null }>(
    `SELECT ${ledger!.digest ? 'manifest_sha256' : 'NULL::text'} AS digest FROM safeshift.exports WHERE id = $1`, [id]);
  return row ? row.digest : undefined;
}

const sameHex = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * Refuses a manifest that cannot be shown to be the one written at export time. Encrypted: its MAC under the
 * export key (already checked by key id). Any export the ledger has a digest for: that digest. A plain export
 * has only the ledger, so one this database has no digest for is refused.
 */
export function authenticateManifest(
  dir: string, opened: { manifest: Manifest; sha256: string }, key: Buffer | undefined, recorded: string | null | undefined,
): void {
  const { manifest: m, sha256 } = opened;
  const path = join(dir, MANIFEST);
  if (m.encryption) {
    if (!key) throw new ExportError(`${path}: encrypted export without its key; the manifest cannot be authenticated`);
    if (!m.mac) throw new ExportError(`${path}: the manifest of an encrypted export has no MAC (changed, or written before manifests were authenticated); refused, nothing loaded`);
    if (!sameHex(m.mac, manifestMac(m, key))) {
      throw new ExportError(`${path}: the manifest's MAC does not match (the manifest was changed after export ${m.id} was written); refused, nothing loaded`);
    }
  }
  if (typeof recorded === 'string') {
    if (!sameHex(recorded, sha256)) {
      throw new ExportError(`${path}: SHA-256 ${sha256} differs from the ${recorded} safeshift.exports recorded when export ${m.id} was written (the manifest was changed); refused, nothing loaded`);
    }
    return;
  }
  if (m.encryption) return;
  throw new ExportError(recorded === null
    ? `${path}: export ${m.id} is plain and safeshift.exports has no manifest digest for it (written before manifests were authenticated), so its manifest cannot be authenticated; refused, nothing loaded. Export again (encrypted exports carry a MAC and verify anywhere)`
    : `${path}: export ${m.id} is plain and this database's safeshift.exports has no record of it, so its manifest cannot be authenticated; refused, nothing loaded. A plain export verifies against the database that recorded it; encrypted exports carry a MAC and verify anywhere`);
}

/**
 * Each column of an authenticated table as a CREATE TABLE column definition, the type as this database's catalog
 * names it: the type is looked up with `to_regtype` (a parameter), its modifier read from the server's description
 * of a statement that returns no row (the type name, already proven to be only that, sent with the extended
 * protocol: one statement only), and `format_type` of the two is what goes into DDL. A domain keeps its name
 * (the description would give its base type). A type this database does not have is named.
 */
export async function columnDefinitions(client: pg.Client, t: ExportedTable, quote: (s: string) => string): Promise<string> {
  const defs: string[] = [];
  for (const c of t.columns) {
    const where = `column ${c.name} of ${t.schema}.${t.name}`;
    const { rows: [found] } = await client.query<{ oid: number; kind: string }>(
      `SELECT t.oid::int AS oid, t.typtype::text AS kind FROM pg_type t WHERE t.oid = to_regtype($1)`, [c.type]);
    if (!found) throw new ExportError(`${where}: type ${c.type} does not exist here`);
    if (found.kind === 'p') throw new ExportError(`${where}: ${c.type} is a pseudo-type, not a column type`);
    let typmod = -1;
    if (found.kind !== 'd') {
      let described: pg.FieldDef;
      try {
        // The newline ends a trailing `--` comment the parser allowed; the parameter makes it the extended protocol.
        described = (await client.query(`SELECT NULL::${c.type}\n AS t WHERE $1::boolean`, [false])).fields[0]!;
      } catch (err) {
        throw new ExportError(`${where}: type ${c.type} does not resolve here (${(err as Error).message})`);
      }
      if (described.dataTypeID !== found.oid) throw new ExportError(`${where}: type ${c.type} resolves to two different types`);
      typmod = described.dataTypeModifier;
    }
    const { rows: [resolved] } = await client.query<{ type: string }>(`SELECT format_type($1::oid, $2::int) AS type`, [found.oid, typmod]);
    defs.push(`${quote(c.name)} ${resolved!.type}`);
  }
  return defs.join(', ');
}
