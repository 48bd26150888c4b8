/**
 * Where the dev stack's PostgreSQL binaries and data live when we run as root. PostgreSQL refuses to run as root,
 * so initdb and postgres run as the `postgres` system user, which must be able to reach both. A checkout inside
 * root's home (mode 700, a container's usual place) is out of its reach: the binaries are then hard-linked (or
 * copied) and the data directory placed under /var/tmp/safeshift-<uid>/, and `<home>/pg` becomes a symlink to
 * the data, so the data still belongs to its SAFESHIFT_HOME (a home deleted and made again starts empty).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export interface ServerAccount {
  name: string;
  uid: number;
  gid: number;
}

export interface Placement {
  /** Directory holding initdb and postgres, reachable by the account. */
  binDir: string;
  /** The data directory the server is given (a real path the account can reach). */
  dataDir: string;
  /** One line for the log when something was placed elsewhere. */
  notes: string[];
}

const SERVER_USER = 'postgres';

function idOf(flag: '-u' | '-g', name: string): number | undefined {
  const r = spawnSync('id', [flag, name], { encoding: 'utf8' });
  return r.status === 0 ? Number.parseInt(r.stdout, 10) : undefined;
}

/** The `postgres` system user, created (group and user) if missing. */
export function serverAccount(): ServerAccount {
  let uid = idOf('-u', SERVER_USER);
  if (uid === undefined) {
    try {
      execFileSync('groupadd', ['--system', SERVER_USER], { stdio: 'ignore' });
    } catch {
      // the group may exist without the user; useradd below says if anything is really wrong
    }
    try {
      execFileSync('useradd', ['--system', '-g', SERVER_USER, '--no-create-home', '--shell', '/usr/sbin/nologin', SERVER_USER], { stdio: 'pipe' });
    } catch (e) {
      throw new Error(`PostgreSQL does not run as root and there is no "${SERVER_USER}" user to run it as; creating it failed ` +
        `(${e instanceof Error ? e.message.split('\n')[0] : String(e)}). Create it (useradd --system ${SERVER_USER}), run as another user, or set DATABASE_URL to a server of your own`);
    }
    uid = idOf('-u', SERVER_USER);
  }
  const gid = idOf('-g', SERVER_USER);
  if (uid === undefined || gid === undefined) throw new Error(`cannot find the uid/gid of the "${SERVER_USER}" user`);
  return { name: SERVER_USER, uid, gid };
}

/**
 * True when `account` can search (x) `path` and every directory above it: asked of the kernel as that user, with
 * no supplementary groups, exactly as the server will be spawned.
 */
export function reachable(path: string, account: ServerAccount): boolean {
  return spawnSync('test', ['-x', path], { uid: account.uid, gid: account.gid, stdio: 'ignore' }).status === 0;
}

/**
 * Our private directory under /var/tmp (kept across reboots, unlike /tmp on many systems; os.tmpdir() if there is
 * no /var/tmp). It lives in a world-writable directory, so it must be a real directory, ours, and writable by us
 * only: anything else (someone made it first, or a symlink) is refused rather than used.
 */
function basePath(): string {
  return join(existsSync('/var/tmp') ? '/var/tmp' : tmpdir(), `safeshift-${process.getuid?.() ?? 0}`);
}

function privateBase(): string {
  const uid = process.getuid?.() ?? 0;
  const base = basePath();
  mkdirSync(base, { mode: 0o755, recursive: true });
  const st = lstatSync(base);
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new Error(`${base} is not a directory owned by uid ${uid} and writable only by it; remove it (it is safeshift's, made on demand) and start again`);
  }
  return base;
}

/** Hard links where the file system allows (instant, no space), copies otherwise; symlinks as they are. */
function linkTree(from: string, to: string): void {
  mkdirSync(to, { mode: 0o755 });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, entry.name);
    const dst = join(to, entry.name);
    if (entry.isSymbolicLink()) symlinkSync(readlinkSync(src), dst);
    else if (entry.isDirectory()) linkTree(src, dst);
    else {
      try {
        linkSync(src, dst);
      } catch {
        copyFileSync(src, dst);
      }
    }
  }
}

/** The package's `native` directory (bin, lib, share) placed once per version under `base`; returns its bin. */
function placeBinaries(nativeDir: string, version: string, base: string): string {
  const placed = join(base, `postgres-${version.replace(/[^A-Za-z0-9._-]/g, '_')}`);
  if (!existsSync(join(placed, 'bin', 'postgres'))) {
    // Built aside and renamed in one step, so a half-made tree is never taken for a whole one.
    const building = `${placed}.building-${process.pid}`;
    rmSync(building, { recursive: true, force: true });
    linkTree(nativeDir, building);
    try {
      renameSync(building, placed);
    } catch (e) {
      rmSync(building, { recursive: true, force: true });
      if (!existsSync(join(placed, 'bin', 'postgres'))) throw e; // a concurrent start placed it first: fine
    }
  }
  return join(placed, 'bin');
}

/**
 * The data directory the account can reach. `dataDir` itself when its parent is reachable; otherwise a directory
 * under `base` named after dataDir's path, with dataDir a symlink to it. A relocated directory whose symlink is
 * gone (its SAFESHIFT_HOME was deleted) is an orphan of a removed home: it is removed, never reused.
 */
function placeData(dataDir: string, account: ServerAccount, base: () => string, notes: string[]): string {
  const st = existsSync(dataDir) || isSymlink(dataDir) ? lstatSync(dataDir) : undefined;
  if (st?.isSymbolicLink()) {
    const to = resolve(dirname(dataDir), readlinkSync(dataDir));
    if (!existsSync(dirname(to))) base(); // /var/tmp was cleaned: our directory is made again (the data is gone)
    if (reachable(dirname(to), account)) return to;
    throw new Error(`${dataDir} links to ${to}, which the "${account.name}" user cannot reach; remove the link to start with an empty database`);
  }
  if (reachable(dirname(dataDir), account)) return dataDir;
  if (st) {
    throw new Error(`PostgreSQL runs as the "${account.name}" user (we are root), which cannot reach ${dataDir}: a directory above it ` +
      `is closed to other users (root's home is mode 700). Set SAFESHIFT_HOME to a directory outside it, or remove ${dataDir} ` +
      `(its database is lost) so that safeshift places the data under /var/tmp`);
  }
  const relocated = join(base(), `data-${createHash('sha256').update(dataDir).digest('hex').slice(0, 16)}`);
  rmSync(relocated, { recursive: true, force: true });
  writeFileSync(`${relocated}${OWNER}`, dataDir);
  symlinkSync(relocated, dataDir);
  notes.push(`[safeshift] ${dirname(dataDir)} is out of the "${account.name}" user's reach: data in ${relocated} (${dataDir} links to it)`);
  return relocated;
}

/** Next to each relocated data directory: the path of the `<home>/pg` link it belongs to. */
const OWNER = '.home';

/**
 * Relocated data directories whose link is gone (their SAFESHIFT_HOME was deleted, as the tests' teardown does)
 * and whose server is not running: removed, so /var/tmp does not fill up with databases nobody can reach.
 */
function sweepOrphans(base: string, log: (line: string) => void): void {
  for (const entry of readdirSync(base).filter((e) => e.startsWith('data-') && e.endsWith(OWNER))) {
    const data = join(base, entry.slice(0, -OWNER.length));
    const link = readFileSync(join(base, entry), 'utf8');
    const linked = isSymlink(link) && resolve(dirname(link), readlinkSync(link)) === data;
    if (linked || serverRunningIn(data)) continue;
    rmSync(data, { recursive: true, force: true });
    rmSync(join(base, entry), { force: true });
    log(`[safeshift] removed ${data}: the data directory of ${link}, which is gone`);
  }
}

function serverRunningIn(dataDir: string): boolean {
  try {
    const pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!, 10);
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** As root: binaries and data where `account` can reach them, placed elsewhere only when they are not. */
export function placeForServer(binDir: string, dataDir: string, version: string, account: ServerAccount): Placement {
  const notes: string[] = [];
  let base: string | undefined;
  const privateDir = (): string => (base ??= privateBase());
  let bin = binDir;
  if (!reachable(join(binDir, 'postgres'), account)) {
    bin = placeBinaries(dirname(binDir), version, privateDir());
    notes.push(`[safeshift] ${binDir} is out of the "${account.name}" user's reach: PostgreSQL runs from ${bin}`);
  }
  if (existsSync(basePath())) sweepOrphans(privateDir(), (line) => notes.push(line));
  const data = placeData(dataDir, account, privateDir, notes);
  for (const [what, path] of [['binaries', join(bin, 'postgres')], ['data directory', dirname(data)]] as const) {
    if (!reachable(path, account)) {
      throw new Error(`PostgreSQL runs as the "${account.name}" user (we are root), which cannot reach its ${what} at ${path}; ` +
        'run safeshift as another user, or set DATABASE_URL to a server of your own');
    }
  }
  return { binDir: bin, dataDir: data, notes };
}
