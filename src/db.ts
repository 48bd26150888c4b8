/**
 * Connections. Every client is opened and closed in the same function (`withClient`); sessions pin the
 * settings that change how values print, so checksums and COPY text are the same on every connection. Every client
 * is made here (`connect`), so every one survives the server dropping it (see failQueriesOnConnectionLoss).
 */
import pg from 'pg';
import { fatal } from './errors';

/** Pinned for every session: value output must not depend on server or role defaults. */
export const SESSION_SETTINGS: ReadonlyArray<[string, string]> = [
  ['DateStyle', 'ISO, YMD'],
  ['IntervalStyle', 'postgres'],
  ['TimeZone', 'UTC'],
  ['extra_float_digits', '3'],
  ['bytea_output', 'hex'],
  ['statement_timeout', '0'],
  ['idle_in_transaction_session_timeout', '0'],
  ['client_encoding', 'UTF8'],
  ['standard_conforming_strings', 'on'],
];

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

export async function connect(url: string, applicationName = 'safeshift'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  failQueriesOnConnectionLoss(client);
  await client.connect();
  try {
    for (const [name, value] of SESSION_SETTINGS) {
      await client.query('SELECT set_config($1, $2, false)', [name, value]);
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>, applicationName?: string): Promise<T> {
  const client = await connect(url, applicationName);
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

export function pgErrorCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
