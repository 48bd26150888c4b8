/**
 * Connections. Every client is opened and closed in the same function (`withClient`); sessions pin the
 * settings that change how values print, so checksums and COPY text are the same on every connection. Every client
 * is made here (`connect`), so every one survives the server dropping it (see failQueriesOnConnectionLoss), and
 * every one carries limits that protect the database from the tool (`SessionLimits`).
 */
import pg from 'pg';
import { fatal } from './errors';
import { WRITER_SETTING } from './write-guard';

/** Pinned for every session: value output must not depend on server or role defaults. */
export const SESSION_SETTINGS: ReadonlyArray<[string, string]> = [
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'postgres'],
  ['TimeZone', 'UTC'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
];

/**
 * What a session may cost the database. `statementTimeoutMs` by the class of statement the session runs (0: none);
 * `idleInTransactionMs` everywhere: a worker that stalls (or is cut off) inside a transaction must not hold its
 * locks and its snapshot (which keeps VACUUM from cleaning up) for longer than that. safeshift never waits with a
 * transaction open, except the cutover rehearsal's pause of a second between attempts.
 */
export interface SessionLimits {
  statementTimeoutMs: number;
  idleInTransactionMs: number;
}

const IDLE_IN_TRANSACTION_MS = 60_000;

/**
 * The default: catalog reads, ledger writes, DDL (which waits for locks only as long as its lock_timeout says),
 * replay batches, the chunk dispenser's bound lookups. Each takes well under a second on a healthy server; two
 * minutes stop a runaway one without cutting a slow but sound one.
 */
export const DEFAULT_LIMITS: SessionLimits = { statementTimeoutMs: 120_000, idleInTransactionMs: IDLE_IN_TRANSACTION_MS };

/**
 * Sessions whose statements read or write a whole table or a chunk of one, and so legitimately run as long as the
 * table is big: COPY chunks (copy and validation's repair), checksum scans (backup, validate), the backup's
 * INSERT ... SELECT, index builds, exports and their verification, restores, VALIDATE CONSTRAINT after cutover and
 * the swap back's replay. No statement timeout: these statements are heartbeated, cancelled on pause or abort, and
 * chosen explicitly where the session is opened. The idle limit stays.
 */
export const BULK_LIMITS: SessionLimits = { statementTimeoutMs: 0, idleInTransactionMs: IDLE_IN_TRANSACTION_MS };

/** The plan names an environment variable; the worker resolves it, so secrets never enter workflow history. */
export function databaseUrl(envName: string, env: NodeJS.ProcessEnv = process.env): string {
  const url = env[envName];
  if (!url) throw fatal('ConfigMissing', `environment variable ${envName} (plan field database) is not set on this worker`);
  return url;
}

/**
 * When PostgreSQL drops a connection (pg_terminate_backend, a restart, a failover, a reset socket), pg emits
 * 'error' on its client, even an idle one; with no listener Node ends the process, and with it the worker and, under
 * `safeshift dev`, the whole stack. Listened to, the error only makes the client unusable: the query in flight fails
 * with the server's reason, and any later one fails with pg's "not queryable" error, so the activity holding the
 * client fails and Temporal retries it on a new connection. Nothing to do here beyond that: whoever uses the client
 * learns of the loss from their next query.
 */
function failQueriesOnConnectionLoss(client: pg.Client): void {
  client.on('error', () => undefined);
}

export async function connect(url: string, applicationName = 'safeshift', limits: SessionLimits = DEFAULT_LIMITS): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  failQueriesOnConnectionLoss(client);
  await client.connect();
  try {
    const settings: [string, string][] = [
      ...SESSION_SETTINGS,
      ['statement_timeout', `${limits.statementTimeoutMs}ms`],
      ['idle_in_transaction_session_timeout', `${limits.idleInTransactionMs}ms`],
      // The write guard on a table only safeshift writes lets this session through (src/write-guard.ts).
      [WRITER_SETTING, 'on'],
    ];
    for (const [name, value] of settings) {
      await client.query('SELECT set_config($1, $2, false)', [name, value]);
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

export async function withClient<T>(
  url: string, fn: (client: pg.Client) => Promise<T>, applicationName?: string, limits: SessionLimits = DEFAULT_LIMITS,
): Promise<T> {
  const client = await connect(url, applicationName, limits);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Run fn in a transaction; roll back on any error. */
export async function inTransaction<T>(
  client: pg.Client,
  fn: () => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  await client.query(begin);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Connections safeshift may open now: the server's free ones (max_connections less those reserved for superusers
 * and, PostgreSQL 16 on, for pg_use_reserved_connections, less those in use) and the database's (its CONNECTION
 * LIMIT), each less CONNECTION_HEADROOM left to the application; and, for a role that is not a superuser, what its
 * own CONNECTION LIMIT leaves. Anyone may count pg_stat_activity's rows.
 */
export async function availableConnections(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ available: number }>(
    `SELECT least(
              current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int
                - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0)
                - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int - $1::int,
              CASE WHEN d.datconnlimit >= 0 AND NOT r.rolsuper
                   THEN d.datconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE datid = d.oid AND backend_type = 'client backend')::int - $1::int END,
              CASE WHEN r.rolconnlimit >= 0 AND NOT r.rolsuper
                   THEN r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity WHERE usesysid = r.oid AND backend_type = 'client backend')::int END
            ) AS available
       FROM pg_database d, pg_roles r WHERE d.datname = current_database() AND r.rolname = current_user`, [CONNECTION_HEADROOM]);
  return rows[0]!.available;
}

/** Connections a copy with `parallel` lanes opens: a read and a write connection per lane, and one to dispense chunks. */
export function copyConnections(parallel: number): number {
  return 2 * parallel + 1;
}

/** Left free for the application, of the server's and the database's connections, whatever the plan asks. */
export const CONNECTION_HEADROOM = 5;

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
