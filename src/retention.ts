/**
 * What retention may delete. A row of `safeshift.exports` is not proof of anything (anyone who can write that
 * table can plant a `dir`), so an export's directory is removed only when the files say it is that export:
 * exactly `<the schedule's root>/<export id>` (no symbolic link on the way, nowhere else), a real directory holding
 * `manifest.json` of that export (its id, and the SHA-256 the ledger recorded when it was written) and nothing but
 * that manifest and the data files it lists. Then exactly those files are removed, and the empty directory.
 * Anything else is refused with the reason, and nothing of it deleted.
 */
import { lstatSync, readdirSync, realpathSync, rmdirSync, unlinkSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { ExportError, MANIFEST, readManifestFile } from './manifest';

export interface RecordedExport {
  id: string;
  dir: string;
  /** The manifest's SHA-256 recorded at export time; null for exports recorded before it was. */
  manifestSha256: string | null;
}

const lstat = (path: string): Stats | undefined => {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
};

/**
 * The files to remove for export `e` under `root` (the data files and the manifest, then the directory), 'gone'
 * when its directory no longer exists, or the reason it must not be touched.
 */
export function exportDirToPrune(root: string, e: RecordedExport): { files: string[]; dir: string } | 'gone' | { refused: string } {
  const refuse = (why: string) => ({ refused: `export ${e.id}: ${e.dir} ${why}; not deleted` });
  if (!e.id || e.id.includes('/') || e.id.includes('\0') || e.id === '.' || e.id === '..') return refuse(`has an id that is not a directory name (${JSON.stringify(e.id)})`);
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
  } catch (err) {
    return refuse(`is not checked: the schedule's root ${root} cannot be resolved (${(err as Error).message})`);
  }
  const dir = resolve(e.dir);
  if (dir !== join(resolve(root), e.id) && dir !== join(realRoot, e.id)) return refuse(`is not the schedule's directory for it (${join(root, e.id)})`);
  const stat = lstat(dir);
  if (!stat) return 'gone';
  if (stat.isSymbolicLink()) return refuse('is a symbolic link');
  if (!stat.isDirectory()) return refuse('is not a directory');
  if (realpathSync(dir) !== join(realRoot, e.id)) return refuse(`resolves outside the schedule's root ${realRoot}`);
  const manifestStat = lstat(join(dir, MANIFEST));
  if (!manifestStat?.isFile()) return refuse(`holds no ${MANIFEST} (a plain file)`);
  let opened: ReturnType<typeof readManifestFile>;
  try {
    opened = readManifestFile(dir);
  } catch (err) {
    if (err instanceof ExportError) return refuse(`holds no valid manifest (${err.message})`);
    throw err;
  }
  if (opened.manifest.id !== e.id) return refuse(`holds the manifest of another export (${opened.manifest.id})`);
  if (e.manifestSha256 !== null && opened.sha256 !== e.manifestSha256) {
    return refuse(`holds a manifest whose SHA-256 ${opened.sha256} is not the ${e.manifestSha256} recorded when the export was written`);
  }
  const files = opened.manifest.tables.map((t) => t.file);
  const expected = new Set([...files, MANIFEST]);
  const others = readdirSync(dir).filter((f) => !expected.has(f));
  if (others.length) return refuse(`holds files that are not the export's (${others.slice(0, 5).join(', ')}${others.length > 5 ? ', ...' : ''})`);
  for (const f of files) {
    const s = lstat(join(dir, f));
    if (s && !s.isFile()) return refuse(`holds ${f}, which is not a plain file`);
  }
  return { files: [...files, MANIFEST].map((f) => join(dir, f)), dir };
}

/** Remove what `exportDirToPrune` allowed: the listed files (already gone is fine), then the empty directory. */
export function removeExportDir(target: { files: string[]; dir: string }): void {
  for (const f of target.files) {
    try {
      unlinkSync(f);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  rmdirSync(target.dir);
}
