/**
 * A database set up like Supabase's, for the integration tests of anything that creates, moves or exposes
 * tables: the API roles `anon`, `authenticated` (both NOINHERIT, no login) and `service_role` (BYPASSRLS), the
 * `authenticator` login role that switches into them, `auth.uid()` reading the JWT claims PostgREST puts in
 * `request.jwt.claims`, and Supabase's default privileges in `public`: ALL on every new table, sequence and
 * function created there by `postgres` (the role safeshift and the tests connect as) goes to the three API roles.
 *
 * The roles and the auth schema are the product's own stand-in (src/layout/auth-stand-in.ts, which `layout apply`
 * installs where Supabase's are absent); the default privileges are what makes this world Supabase-like for tests.
 * Idempotent; the integration stack's global setup installs it once, so every test runs in that world.
 */
import pg from 'pg';
import { AUTH_SCHEMA_SQL, SUPABASE_ROLES_SQL } from '../../src/layout/auth-stand-in';

export const SUPABASE_FIXTURE_SQL = `${SUPABASE_ROLES_SQL}
${AUTH_SCHEMA_SQL}
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
`;

export async function installSupabaseFixture(databaseUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // Roles are cluster-wide: two stacks' setups may race on CREATE ROLE; the DO blocks absorb that.
    await client.query(SUPABASE_FIXTURE_SQL);
  } finally {
    await client.end();
  }
}

/**
 * Runs `query` as `role` the way PostgREST does (SET LOCAL ROLE plus the JWT claims) in a transaction that is
 * rolled back, and returns its rows: what that role can see, and nothing it does survives.
 */
export async function asRole<T extends pg.QueryResultRow = Record<string, unknown>>(
  role: 'anon' | 'authenticated' | 'service_role' | string, query: string, values: unknown[] = [], claims: Record<string, unknown> = {},
): Promise<T[]> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SELECT set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ role, ...claims })]);
    await client.query(`SET LOCAL ROLE ${pg.escapeIdentifier(role)}`);
    return (await client.query<T>(query, values)).rows;
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}
