/**
 * Connections. Every client is opened and closed in the same function (`withClient`); sessions pin the
 * settings that change how values print, so checksums and COPY text are the same on every connection.
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

export async function connect(url: string, applicationName = 'safeshift'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
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
