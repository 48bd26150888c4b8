/**
 * A database set up like Supabase's, for the integration tests of anything that creates, moves or exposes
 * tables: the API roles `anon`, `authenticated` (both NOINHERIT, no login) and `service_role` (BYPASSRLS), the
 * `authenticator` login role that switches into them, `auth.uid()` reading the JWT claims PostgREST puts in
 * `request.jwt.claims`, and Supabase's default privileges in `public`: ALL on every new table, sequence and
 * function created there by `postgres` (the role safeshift and the tests connect as) goes to the three API roles.
 *
 * Idempotent; the integration stack's global setup installs it once, so every test runs in that world.
 */
import pg from 'pg';

export const SUPABASE_FIXTURE_SQL = `
DO $$ BEGIN
  CREATE ROLE anon NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE authenticated NOLOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE ROLE authenticator LOGIN NOINHERIT;
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT anon, authenticated, service_role TO authenticator;

CREATE SCHEMA IF NOT EXISTS auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $fn$
  SELECT nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                         current_setting('request.jwt.claims', true)::jsonb ->> 'sub'), '')::uuid
$fn$;
CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $fn$
  SELECT nullif(coalesce(current_setting('request.jwt.claim.role', true),
                         current_setting('request.jwt.claims', true)::jsonb ->> 'role'), '')::text
$fn$;

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
